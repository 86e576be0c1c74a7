//! The plumbing every entry point shares: dispatch keys, the sharded maps that hold the
//! layer's per-object state, the loader's chain-link structures, pNext walking and copying, and
//! the panic guard.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_void};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ash::vk;
use ash::vk::TaggedStructure;

/// The dispatch key of a dispatchable handle: the first pointer-sized word of the object, which
/// the loader points at its dispatch table. A `VkInstance` and its `VkPhysicalDevice`s share one
/// key, and so do a `VkDevice` and its `VkQueue`s.
///
/// # Safety
/// `handle` is a live dispatchable handle created through the loader (not NULL).
pub unsafe fn dispatch_key(handle: u64) -> usize {
    // SAFETY: per the caller's contract, `handle` points to an object whose first word is the
    // loader's dispatch pointer.
    unsafe { *(handle as usize as *const usize) }
}

const SHARDS: usize = 16;

type Hasher = BuildHasherDefault<DefaultHasher>;

/// A concurrent map: a fixed number of independently locked shards, so lookups on different
/// keys rarely meet on one lock and readers never block each other. Values are cloned out
/// (they are `Arc`s or small copies), so no lock is held while the caller works.
pub struct ShardedMap<K, V> {
    shards: [RwLock<HashMap<K, V, Hasher>>; SHARDS],
}

impl<K: Hash + Eq + Copy, V: Clone> ShardedMap<K, V> {
    pub const fn new() -> ShardedMap<K, V> {
        ShardedMap {
            shards: [const { RwLock::new(HashMap::with_hasher(BuildHasherDefault::new())) }; SHARDS],
        }
    }

    fn shard(&self, key: &K) -> &RwLock<HashMap<K, V, Hasher>> {
        let hash = Hasher::new().hash_one(key);
        &self.shards[(hash as usize) % SHARDS]
    }

    fn read(lock: &RwLock<HashMap<K, V, Hasher>>) -> RwLockReadGuard<'_, HashMap<K, V, Hasher>> {
        lock.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(lock: &RwLock<HashMap<K, V, Hasher>>) -> RwLockWriteGuard<'_, HashMap<K, V, Hasher>> {
        lock.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &K) -> Option<V> {
        Self::read(self.shard(key)).get(key).cloned()
    }

    pub fn insert(&self, key: K, value: V) {
        Self::write(self.shard(&key)).insert(key, value);
    }

    pub fn remove(&self, key: &K) -> Option<V> {
        Self::write(self.shard(key)).remove(key)
    }

    /// Removes every entry whose key `doomed` selects, returning the values (so their
    /// destructors run after the locks are released).
    pub fn drain_where(&self, mut doomed: impl FnMut(&K) -> bool) -> Vec<V> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut map = Self::write(shard);
            let keys: Vec<K> = map.keys().filter(|k| doomed(k)).copied().collect();
            out.extend(keys.iter().filter_map(|k| map.remove(k)));
        }
        out
    }
}

impl<K: Hash + Eq + Copy, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs an entry point's body, turning a panic into `fallback` (no panic may cross
/// `extern "system"`).
pub fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// `Err(result)` short-circuits a command body with that result.
pub type VkResult<T> = Result<T, vk::Result>;

/// Converts a body that uses `?` into a `vk::Result`.
pub fn result(r: VkResult<()>) -> vk::Result {
    match r {
        Ok(()) => vk::Result::SUCCESS,
        Err(e) => e,
    }
}

/// Compares a C string argument with a name.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
pub unsafe fn name_of<'a>(name: *const c_char) -> Option<&'a CStr> {
    if name.is_null() {
        None
    } else {
        // SAFETY: per the caller's contract.
        Some(unsafe { CStr::from_ptr(name) })
    }
}

/// Erases an entry point's type for a `vkGet*ProcAddr` answer.
macro_rules! pfn {
    ($f:expr) => {{
        let f: *const () = $f as *const ();
        // SAFETY: a function pointer cast to the generic `PFN_vkVoidFunction`; the caller casts it
        // back to the command's real type before calling it, as Vulkan's proc-addr model requires.
        Some(unsafe { std::mem::transmute::<*const (), unsafe extern "system" fn()>(f) })
    }};
}
pub(crate) use pfn;

/// Looks a command up through a `vkGet*ProcAddr` and gives it its real type.
///
/// # Safety
/// `F` is the function-pointer type of the command `name`.
pub unsafe fn typed<F: Copy>(f: vk::PFN_vkVoidFunction) -> Option<F> {
    assert_eq!(size_of::<F>(), size_of::<unsafe extern "system" fn()>());
    // SAFETY: per the caller's contract `F` is a function-pointer type of the same size.
    f.map(|f| unsafe { std::mem::transmute_copy::<unsafe extern "system" fn(), F>(&f) })
}

// ---------------------------------------------------------------------------------------------
// The loader's layer interface (vk_layer.h), which ash does not define.

/// `VkLayerFunction`.
pub const VK_LAYER_LINK_INFO: u32 = 0;

/// `PFN_GetPhysicalDeviceProcAddr`.
pub type PfnGetPhysicalDeviceProcAddr =
    unsafe extern "system" fn(instance: vk::Instance, name: *const c_char) -> vk::PFN_vkVoidFunction;

/// `VkLayerInstanceLink`.
#[repr(C)]
pub struct LayerInstanceLink {
    pub next: *mut LayerInstanceLink,
    pub next_get_instance_proc_addr: Option<vk::PFN_vkGetInstanceProcAddr>,
    pub next_get_physical_device_proc_addr: Option<PfnGetPhysicalDeviceProcAddr>,
}

/// `VkLayerInstanceCreateInfo` (only the `pLayerInfo` arm of its union is read).
#[repr(C)]
pub struct LayerInstanceCreateInfo {
    pub s_type: vk::StructureType,
    pub p_next: *const c_void,
    pub function: u32,
    pub layer_info: *mut LayerInstanceLink,
}

/// `VkLayerDeviceLink`.
#[repr(C)]
pub struct LayerDeviceLink {
    pub next: *mut LayerDeviceLink,
    pub next_get_instance_proc_addr: Option<vk::PFN_vkGetInstanceProcAddr>,
    pub next_get_device_proc_addr: Option<vk::PFN_vkGetDeviceProcAddr>,
}

/// `VkLayerDeviceCreateInfo` (only the `pLayerInfo` arm of its union is read).
#[repr(C)]
pub struct LayerDeviceCreateInfo {
    pub s_type: vk::StructureType,
    pub p_next: *const c_void,
    pub function: u32,
    pub layer_info: *mut LayerDeviceLink,
}

/// Finds the loader's link-info structure of type `s_type` in a create-info chain.
///
/// # Safety
/// `p_next` is a valid pNext chain. The loader owns the link structures and expects the layer
/// to advance them in place, so the result is handed out mutable.
pub unsafe fn find_link<T>(p_next: *const c_void, s_type: vk::StructureType) -> Option<*mut T> {
    let mut p = p_next.cast::<LayerInstanceCreateInfo>();
    for _ in 0..MAX_CHAIN_DEPTH {
        if p.is_null() {
            break;
        }
        // SAFETY: every element of a valid chain starts with sType and pNext; the function field
        // follows in the loader's structures of this sType.
        let s = unsafe { &*p };
        if s.s_type == s_type && s.function == VK_LAYER_LINK_INFO {
            return Some(p.cast_mut().cast::<T>());
        }
        p = s.p_next.cast();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// pNext chains.

/// The most structures of a pNext chain the layer walks: a longer chain (in practice, a loop,
/// which is invalid usage) is cut there, as the driver cuts it, instead of hanging the caller.
pub const MAX_CHAIN_DEPTH: usize = 64;

/// Finds a structure in a pNext chain.
///
/// # Safety
/// `p_next` is a valid chain, and a structure of `T`'s sType in it is a `T`.
pub unsafe fn find_in_chain<'a, T: TaggedStructure>(p_next: *const c_void) -> Option<&'a T> {
    let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
    for _ in 0..MAX_CHAIN_DEPTH {
        if p.is_null() {
            break;
        }
        // SAFETY: every element of a valid chain starts with sType and pNext.
        let s = unsafe { &*p };
        if s.s_type == T::STRUCTURE_TYPE {
            // SAFETY: per the caller's contract.
            return Some(unsafe { &*p.cast::<T>() });
        }
        p = s.p_next;
    }
    None
}

/// Whether a chain holds a structure of type `s_type`.
///
/// # Safety
/// `p_next` is a valid chain.
pub unsafe fn chain_has(p_next: *const c_void, s_type: vk::StructureType) -> bool {
    let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
    for _ in 0..MAX_CHAIN_DEPTH {
        if p.is_null() {
            break;
        }
        // SAFETY: every element of a valid chain starts with sType and pNext.
        let s = unsafe { &*p };
        if s.s_type == s_type {
            return true;
        }
        p = s.p_next;
    }
    false
}

/// The sizes of the structures that may extend the create and submit infos the layer rewrites
/// (`VkFenceCreateInfo`, `VkSemaphoreCreateInfo`, `VkSubmitInfo`), so they can be copied.
fn known_size(s_type: vk::StructureType) -> Option<usize> {
    use vk::StructureType as S;
    Some(match s_type {
        S::EXPORT_FENCE_CREATE_INFO => size_of::<vk::ExportFenceCreateInfo<'_>>(),
        S::EXPORT_FENCE_WIN32_HANDLE_INFO_KHR => size_of::<vk::ExportFenceWin32HandleInfoKHR<'_>>(),
        S::EXPORT_SEMAPHORE_CREATE_INFO => size_of::<vk::ExportSemaphoreCreateInfo<'_>>(),
        S::EXPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR => size_of::<vk::ExportSemaphoreWin32HandleInfoKHR<'_>>(),
        S::SEMAPHORE_TYPE_CREATE_INFO => size_of::<vk::SemaphoreTypeCreateInfo<'_>>(),
        S::EXPORT_METAL_OBJECT_CREATE_INFO_EXT => size_of::<vk::ExportMetalObjectCreateInfoEXT<'_>>(),
        S::IMPORT_METAL_SHARED_EVENT_INFO_EXT => size_of::<vk::ImportMetalSharedEventInfoEXT<'_>>(),
        S::QUERY_LOW_LATENCY_SUPPORT_NV => size_of::<vk::QueryLowLatencySupportNV<'_>>(),
        S::D3D12_FENCE_SUBMIT_INFO_KHR => size_of::<vk::D3D12FenceSubmitInfoKHR<'_>>(),
        S::TIMELINE_SEMAPHORE_SUBMIT_INFO => size_of::<vk::TimelineSemaphoreSubmitInfo<'_>>(),
        S::DEVICE_GROUP_SUBMIT_INFO => size_of::<vk::DeviceGroupSubmitInfo<'_>>(),
        S::PERFORMANCE_QUERY_SUBMIT_INFO_KHR => size_of::<vk::PerformanceQuerySubmitInfoKHR<'_>>(),
        S::PROTECTED_SUBMIT_INFO => size_of::<vk::ProtectedSubmitInfo<'_>>(),
        S::WIN32_KEYED_MUTEX_ACQUIRE_RELEASE_INFO_KHR => size_of::<vk::Win32KeyedMutexAcquireReleaseInfoKHR<'_>>(),
        S::WIN32_KEYED_MUTEX_ACQUIRE_RELEASE_INFO_NV => size_of::<vk::Win32KeyedMutexAcquireReleaseInfoNV<'_>>(),
        S::AMIGO_PROFILING_SUBMIT_INFO_SEC => size_of::<vk::AmigoProfilingSubmitInfoSEC<'_>>(),
        S::FRAME_BOUNDARY_EXT => size_of::<vk::FrameBoundaryEXT<'_>>(),
        S::LATENCY_SUBMISSION_PRESENT_ID_NV => size_of::<vk::LatencySubmissionPresentIdNV<'_>>(),
        _ => return None,
    })
}

/// A rewritable copy of a pNext chain (the application's chain is `const`, maybe in read-only
/// memory, and may be shared between threads, so it is never written).
///
/// Structures of a known type are copied (shallowly: arrays they point to stay the
/// application's) and may be edited, removed, or joined by new ones. The chain is copied up to
/// the first structure of a type the layer does not know; that one and everything after it (the
/// tail) are passed on untouched.
pub struct ChainCopy {
    /// Copies, in chain order. Each is 8-byte aligned storage; boxes do not move when the vector
    /// grows, so links into them stay valid.
    nodes: Vec<Box<[u64]>>,
    tail: *const c_void,
}

impl ChainCopy {
    /// Copies `p_next`.
    ///
    /// # Safety
    /// `p_next` is a valid chain.
    pub unsafe fn new(p_next: *const c_void) -> ChainCopy {
        let mut nodes = Vec::new();
        let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
        // A looping chain is copied up to the depth limit and its tail left as it is.
        while !p.is_null() && nodes.len() < MAX_CHAIN_DEPTH {
            // SAFETY: every element of a valid chain starts with sType and pNext.
            let s = unsafe { &*p };
            let Some(size) = known_size(s.s_type) else { break };
            let mut node = vec![0u64; size.div_ceil(8)].into_boxed_slice();
            // SAFETY: a structure of this sType is `size` bytes long; the node holds at least that.
            unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), node.as_mut_ptr().cast::<u8>(), size) };
            nodes.push(node);
            p = s.p_next;
        }
        ChainCopy { nodes, tail: p.cast() }
    }

    fn s_type(node: &[u64]) -> vk::StructureType {
        // SAFETY: every node starts with a copied sType.
        unsafe { *node.as_ptr().cast::<vk::StructureType>() }
    }

    /// The copy of a structure of type `T`, to edit.
    pub fn find_mut<T: TaggedStructure>(&mut self) -> Option<&mut T> {
        let node = self.nodes.iter_mut().find(|n| Self::s_type(n) == T::STRUCTURE_TYPE)?;
        // SAFETY: the node is a byte copy of a `T` (its sType says so), 8-byte aligned, and
        // exclusively borrowed through `self`.
        Some(unsafe { &mut *node.as_mut_ptr().cast::<T>() })
    }

    /// Drops the copy of a structure of type `s_type`. Returns whether one was dropped.
    /// How many structures of type `s_type` the copied part holds.
    pub fn count(&self, s_type: vk::StructureType) -> usize {
        self.nodes.iter().filter(|n| Self::s_type(n) == s_type).count()
    }

    /// Removes every structure of type `s_type`; whether there was one.
    pub fn remove(&mut self, s_type: vk::StructureType) -> bool {
        let before = self.nodes.len();
        self.nodes.retain(|n| Self::s_type(n) != s_type);
        self.nodes.len() != before
    }

    /// Whether the untouched tail holds a structure of type `s_type` (one the layer cannot edit).
    pub fn tail_has(&self, s_type: vk::StructureType) -> bool {
        // SAFETY: the tail is the rest of the valid chain `new` was given.
        unsafe { chain_has(self.tail, s_type) }
    }

    /// Adds a structure at the front of the chain.
    pub fn push_front<T: TaggedStructure>(&mut self, value: T) {
        let mut node = vec![0u64; size_of::<T>().div_ceil(8)].into_boxed_slice();
        // SAFETY: the node is large enough and 8-byte aligned; `T` is a plain C structure.
        unsafe { node.as_mut_ptr().cast::<T>().write(value) };
        self.nodes.insert(0, node);
    }

    /// Links the copies and the tail; the result is valid while `self` lives and is not changed.
    pub fn link(&mut self) -> *const c_void {
        let mut next = self.tail;
        for node in self.nodes.iter_mut().rev() {
            // SAFETY: every node starts with sType and pNext (`VkBaseOutStructure`'s layout).
            unsafe { (*node.as_mut_ptr().cast::<vk::BaseOutStructure<'_>>()).p_next = next.cast_mut().cast() };
            next = node.as_ptr().cast();
        }
        next
    }
}

/// A slice from a Vulkan (pointer, count) pair; empty for a zero count.
///
/// # Safety
/// A non-zero `count` comes with a pointer to that many elements, valid for `'a`.
pub unsafe fn slice<'a, T>(ptr: *const T, count: u32) -> &'a [T] {
    if count == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: per the caller's contract.
        unsafe { std::slice::from_raw_parts(ptr, count as usize) }
    }
}

/// Writes a two-call-idiom array answer: the count alone when `out` is NULL, else as many
/// elements as fit, with `VK_INCOMPLETE` when they did not all fit.
///
/// # Safety
/// `count` is writable; a non-NULL `out` has `*count` writable elements.
pub unsafe fn write_array<T: Copy>(items: &[T], count: *mut u32, out: *mut T) -> vk::Result {
    if count.is_null() {
        return vk::Result::ERROR_VALIDATION_FAILED_EXT;
    }
    if out.is_null() {
        // SAFETY: per the caller's contract.
        unsafe { *count = items.len() as u32 };
        return vk::Result::SUCCESS;
    }
    // SAFETY: per the caller's contract.
    let room = unsafe { *count } as usize;
    let n = room.min(items.len());
    // SAFETY: `out` has `room` ≥ `n` writable elements.
    unsafe {
        std::ptr::copy_nonoverlapping(items.as_ptr(), out, n);
        *count = n as u32;
    }
    if n < items.len() {
        vk::Result::INCOMPLETE
    } else {
        vk::Result::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s_types(mut p: *const c_void) -> Vec<vk::StructureType> {
        let mut out = Vec::new();
        while !p.is_null() {
            // SAFETY: a chain built in these tests.
            let s = unsafe { &*p.cast::<vk::BaseInStructure<'_>>() };
            out.push(s.s_type);
            p = s.p_next.cast();
        }
        out
    }

    #[test]
    fn chain_copy_edits_without_touching_the_original() {
        let mut export =
            vk::ExportSemaphoreCreateInfo::default().handle_types(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32);
        let mut win32 = vk::ExportSemaphoreWin32HandleInfoKHR::default();
        let mut ty = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
        let ci = vk::SemaphoreCreateInfo::default()
            .push_next(&mut export)
            .push_next(&mut win32)
            .push_next(&mut ty);
        let original = s_types(ci.p_next);
        // SAFETY: a valid chain.
        let mut copy = unsafe { ChainCopy::new(ci.p_next) };
        assert!(copy.remove(vk::StructureType::EXPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR));
        assert!(!copy.remove(vk::StructureType::EXPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR));
        copy.find_mut::<vk::ExportSemaphoreCreateInfo<'_>>()
            .unwrap()
            .handle_types = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
        copy.push_front(vk::ProtectedSubmitInfo::default());
        let head = copy.link();
        assert_eq!(
            s_types(head),
            [
                vk::StructureType::PROTECTED_SUBMIT_INFO,
                vk::StructureType::SEMAPHORE_TYPE_CREATE_INFO,
                vk::StructureType::EXPORT_SEMAPHORE_CREATE_INFO,
            ]
        );
        // SAFETY: the linked copy is a valid chain while `copy` lives.
        let edited = unsafe { find_in_chain::<vk::ExportSemaphoreCreateInfo<'_>>(head) }.unwrap();
        assert_eq!(edited.handle_types, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
        // SAFETY: as above.
        let timeline = unsafe { find_in_chain::<vk::SemaphoreTypeCreateInfo<'_>>(head) }.unwrap();
        assert_eq!(timeline.semaphore_type, vk::SemaphoreType::TIMELINE);
        assert_eq!(s_types(ci.p_next), original, "the application's chain is untouched");
        assert_eq!(export.handle_types, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32);
    }

    #[test]
    fn chain_copy_stops_at_an_unknown_structure() {
        // An sType the layer has no size for: it and everything after it stay as they are.
        let export = vk::ExportFenceCreateInfo::default();
        let unknown = vk::PhysicalDeviceVulkan11Features {
            p_next: (&raw const export).cast_mut().cast(),
            ..Default::default()
        };
        let ci = vk::FenceCreateInfo {
            p_next: (&raw const unknown).cast(),
            ..Default::default()
        };
        // SAFETY: a valid chain.
        let mut copy = unsafe { ChainCopy::new(ci.p_next) };
        assert!(copy.find_mut::<vk::ExportFenceCreateInfo<'_>>().is_none());
        assert!(copy.tail_has(vk::StructureType::EXPORT_FENCE_CREATE_INFO));
        assert_eq!(copy.link(), ci.p_next);
    }

    #[test]
    fn sharded_map() {
        let map: ShardedMap<(usize, u64), u32> = ShardedMap::new();
        for i in 0..100 {
            map.insert((i % 3, i as u64), i as u32);
        }
        assert_eq!(map.get(&(1, 4)), Some(4));
        assert_eq!(map.remove(&(1, 4)), Some(4));
        assert_eq!(map.get(&(1, 4)), None);
        let mut gone = map.drain_where(|k| k.0 == 0);
        gone.sort();
        assert_eq!(gone, (0..100).filter(|i| i % 3 == 0).collect::<Vec<u32>>());
        assert_eq!(map.get(&(0, 3)), None);
        assert_eq!(map.get(&(2, 5)), Some(5));
    }

    #[test]
    fn two_call_idiom() {
        let items = [1u32, 2, 3];
        let mut n = 0;
        // SAFETY: a count query.
        let r = unsafe { write_array(&items, &mut n, std::ptr::null_mut()) };
        assert_eq!(r, vk::Result::SUCCESS);
        assert_eq!(n, 3);
        let mut out = [0u32; 2];
        n = 2;
        // SAFETY: room for 2.
        let r = unsafe { write_array(&items, &mut n, out.as_mut_ptr()) };
        assert_eq!(r, vk::Result::INCOMPLETE);
        assert_eq!((n, out), (2, [1, 2]));
    }
}

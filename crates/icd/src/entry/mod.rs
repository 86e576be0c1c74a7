//! Every `vk*` command the driver implements, as C ABI functions. This is where raw pointers,
//! pNext chains and handle values are turned into safe references; nothing below this module
//! sees a pointer.
//!
//! | file | commands |
//! |---|---|
//! | `instance.rs` | instance, enumeration, physical-device queries, external capability queries |
//! | `device.rs` | device, queues |
//! | `sync.rs` | fences, semaphores, events, host waits and signals |
//! | `queue.rs` | `vkQueueSubmit`, `vkQueueSubmit2`, idle waits |
//! | `external_fd.rs` | `vkGetFenceFdKHR`, `vkImportFenceFdKHR`, `vkGetSemaphoreFdKHR`, `vkImportSemaphoreFdKHR` |
//! | `external_win32.rs` | `vkGetFenceWin32HandleKHR`, `vkImportFenceWin32HandleKHR`, `vkGetSemaphoreWin32HandleKHR`, `vkImportSemaphoreWin32HandleKHR` |
//! | `memory.rs` | device memory and buffers |
//! | `command.rs` | command pools, command buffers, recorded commands |
//! | `debug_utils.rs` | `VK_EXT_debug_utils` |

pub mod command;
pub mod debug_utils;
pub mod device;
pub mod external_fd;
pub mod external_win32;
pub mod instance;
pub mod memory;
pub mod queue;
pub mod sync;

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ash::vk;
use ash::vk::Handle;

use crate::host_memory::HostAllocator;
use crate::objects::Dispatchable;
use crate::objects::device::Device;

/// The allocator for a new child of `dev`: the command's `pAllocator`, else the device's (which
/// is the instance's when the device has none).
///
/// # Safety
/// `callbacks` must be NULL or a valid `VkAllocationCallbacks`.
pub unsafe fn child_allocator(dev: &Device, callbacks: *const vk::AllocationCallbacks<'_>) -> HostAllocator {
    // SAFETY: per the caller's contract.
    unsafe { HostAllocator::from_ptr(callbacks) }.or(dev.allocator)
}

/// Reports a destroy command whose `pAllocator` does not match the object's creation (one NULL,
/// the other not); the storage went back to the allocator it came from.
pub fn allocator_mismatch(debug: &crate::debug::DebugReporter, kind: &str) {
    debug.validation(
        "tether-destroy-allocator-mismatch",
        &format!(
            "a {kind} must be destroyed with VkAllocationCallbacks compatible with those it was created with (none if none were given); its memory was freed through the allocator it came from"
        ),
    );
}

/// The longest pNext chain we walk; longer ones (or loops) are cut here.
pub const MAX_CHAIN_DEPTH: usize = 64;

/// Runs a command body, turning a panic into `VK_ERROR_UNKNOWN` so none crosses the C ABI.
pub fn guard(body: impl FnOnce() -> vk::Result) -> vk::Result {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(vk::Result::ERROR_UNKNOWN)
}

/// As [`guard`] for commands that return nothing (or a plain value).
pub fn guard_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
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

/// The object behind a dispatchable handle, or `None` for NULL.
///
/// # Safety
/// A non-null `raw` must be a handle this driver returned for a `T` that is still alive.
pub unsafe fn dispatchable<'a, T>(raw: u64) -> Option<&'a T> {
    let ptr = raw as usize as *const Dispatchable<T>;
    // SAFETY: per the caller's contract, a non-null pointer is a live `Dispatchable<T>`.
    unsafe { ptr.as_ref() }.map(|d| &d.object)
}

/// The device behind a `VkDevice`.
///
/// # Safety
/// As for [`dispatchable`].
pub unsafe fn device<'a>(handle: vk::Device) -> VkResult<&'a Device> {
    // SAFETY: forwarded contract.
    unsafe { dispatchable::<Device>(handle.as_raw()) }.ok_or(vk::Result::ERROR_DEVICE_LOST)
}

/// Reads a required input pointer.
///
/// # Safety
/// A non-null `ptr` must point to a valid `T` for `'a`.
pub unsafe fn input<'a, T>(ptr: *const T) -> Option<&'a T> {
    // SAFETY: per the caller's contract.
    unsafe { ptr.as_ref() }
}

/// Reads a required input structure with an sType, checked: NULL is reported as
/// `VUID-<cmd>-<param>-parameter`, a wrong top-level sType as `VUID-<structure>-sType-sType`
/// (both refused with `VK_ERROR_VALIDATION_FAILED_EXT`); then, where `known` is given, the pNext
/// chain goes through [`check_chain`] (reported only). `known: None` skips the chain (instance and
/// device creation, where the loader adds structures of its own).
///
/// # Safety
/// A non-null `ptr` must point to a valid `T` (whatever its sType says) with a valid chain.
pub unsafe fn input_struct<'a, T: vk::TaggedStructure>(
    debug: &crate::debug::DebugReporter,
    ptr: *const T,
    cmd: &str,
    param: &str,
    structure: &str,
    known: Option<&[vk::StructureType]>,
) -> VkResult<&'a T> {
    // SAFETY: per the caller's contract (valid usage).
    let Some(header) = (unsafe { ptr.cast::<vk::BaseInStructure<'a>>().as_ref() }) else {
        debug.validation(
            &format!("VUID-{cmd}-{param}-parameter"),
            &format!("{cmd}: {param} must be a valid pointer to a {structure}"),
        );
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    };
    if header.s_type != T::STRUCTURE_TYPE {
        debug.validation(
            &format!("VUID-{structure}-sType-sType"),
            &format!(
                "{cmd}: {param}->sType is {:?}, not {:?}",
                header.s_type,
                T::STRUCTURE_TYPE
            ),
        );
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    }
    if let Some(known) = known {
        // SAFETY: per the caller's contract.
        unsafe { check_chain(debug, structure, header.p_next.cast(), known) };
    // SAFETY: per the caller's contract (valid usage).
    } else if unsafe { chain(header.p_next.cast()) }.count() == MAX_CHAIN_DEPTH {
        // Only a loop (or an absurdly long chain) is reported where others add structures.
        debug.validation(
            &format!("VUID-{structure}-sType-unique"),
            &format!("the pNext chain of {structure} loops (or is longer than {MAX_CHAIN_DEPTH})"),
        );
    }
    // SAFETY: non-null and valid per the caller's contract.
    Ok(unsafe { &*ptr })
}

/// The top-level sType of `value` (an element of an input array) is the one `T` requires;
/// otherwise `VUID-<structure>-sType-sType` is reported and `false` returned.
pub fn check_s_type<T: vk::TaggedStructure>(debug: &crate::debug::DebugReporter, value: &T, structure: &str) -> bool {
    // SAFETY: every `TaggedStructure` begins with the sType/pNext header.
    let header = unsafe { &*(value as *const T).cast::<vk::BaseInStructure<'_>>() };
    if header.s_type == T::STRUCTURE_TYPE {
        return true;
    }
    debug.validation(
        &format!("VUID-{structure}-sType-sType"),
        &format!("{structure}.sType is {:?}, not {:?}", header.s_type, T::STRUCTURE_TYPE),
    );
    false
}

/// Reads an input array; an empty slice for a zero count, `None` for NULL with a non-zero count.
///
/// # Safety
/// A non-null `ptr` must point to `count` valid `T`s for `'a`.
pub unsafe fn input_slice<'a, T>(ptr: *const T, count: u32) -> Option<&'a [T]> {
    if count == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: per the caller's contract, non-null with `count` elements.
    Some(unsafe { std::slice::from_raw_parts(ptr, count as usize) })
}

/// The structures of an input pNext chain, at most [`MAX_CHAIN_DEPTH`] of them.
///
/// # Safety
/// `p_next` must be NULL or a valid chain of Vulkan structures.
pub unsafe fn chain<'a>(p_next: *const c_void) -> impl Iterator<Item = &'a vk::BaseInStructure<'a>> {
    let mut next = p_next.cast::<vk::BaseInStructure<'a>>();
    std::iter::from_fn(move || {
        // SAFETY: per the caller's contract every non-null link is a valid structure header.
        let s = unsafe { next.as_ref() }?;
        next = s.p_next;
        Some(s)
    })
    .take(MAX_CHAIN_DEPTH)
}

/// Reports what an input chain must not hold, and otherwise leaves the command to ignore it: a
/// structure this driver does not know for `structure` (`VUID-<structure>-pNext-pNext`), or a
/// structure type twice, which is also how a loop shows (`VUID-<structure>-sType-unique`).
/// Returns whether the chain was clean.
///
/// # Safety
/// As for [`chain`].
pub unsafe fn check_chain(
    debug: &crate::debug::DebugReporter,
    structure: &str,
    p_next: *const c_void,
    known: &[vk::StructureType],
) -> bool {
    let mut seen = Vec::new();
    let mut next = p_next.cast::<vk::BaseInStructure<'_>>();
    // SAFETY: per the caller's contract every non-null link is a valid structure header.
    while let Some(s) = unsafe { next.as_ref() } {
        if seen.contains(&s.s_type) || seen.len() == MAX_CHAIN_DEPTH {
            debug.validation(
                &format!("VUID-{structure}-sType-unique"),
                &format!("the pNext chain of {structure} repeats {:?} (or loops)", s.s_type),
            );
            return false;
        }
        if !known.contains(&s.s_type) {
            debug.validation(
                &format!("VUID-{structure}-pNext-pNext"),
                &format!(
                    "{structure} cannot chain a structure of type {:?}; it is ignored",
                    s.s_type
                ),
            );
        }
        seen.push(s.s_type);
        next = s.p_next;
    }
    seen.iter().all(|t| known.contains(t))
}

/// The first structure of type `T` in an input chain.
///
/// # Safety
/// As for [`chain`].
pub unsafe fn find_in_chain<'a, T: vk::TaggedStructure>(p_next: *const c_void) -> Option<&'a T> {
    // SAFETY: forwarded contract; the sType match makes the cast valid.
    unsafe { chain(p_next) }
        .find(|s| s.s_type == T::STRUCTURE_TYPE)
        .map(|s| unsafe { &*(s as *const vk::BaseInStructure<'_>).cast::<T>() })
}

/// Calls `fill` for each structure of an output pNext chain (at most [`MAX_CHAIN_DEPTH`]).
///
/// # Safety
/// `p_next` must be NULL or a valid, writable chain of Vulkan structures.
pub unsafe fn for_each_out(p_next: *mut c_void, mut fill: impl FnMut(*mut vk::BaseOutStructure<'_>)) {
    let mut next = p_next.cast::<vk::BaseOutStructure<'_>>();
    for _ in 0..MAX_CHAIN_DEPTH {
        if next.is_null() {
            return;
        }
        fill(next);
        // SAFETY: per the caller's contract `next` is a valid structure header.
        next = unsafe { (*next).p_next };
    }
}

/// Writes `T`'s fields (but not its sType and pNext) into an output structure of that type.
///
/// # Safety
/// `out` must point to a writable `T`.
pub unsafe fn fill_out<T: vk::TaggedStructure>(out: *mut vk::BaseOutStructure<'_>, value: T) {
    let out = out.cast::<T>();
    // SAFETY: `out` is a writable `T`; its header is saved and put back so the chain survives.
    unsafe {
        let header = std::ptr::read(out.cast::<vk::BaseOutStructure<'_>>());
        std::ptr::write(out, value);
        std::ptr::write(out.cast::<vk::BaseOutStructure<'_>>(), header);
    }
}

/// The two-call idiom: writes the count, or up to `*count` items and `VK_INCOMPLETE` if short.
///
/// # Safety
/// `count` must be valid; a non-null `out` must have room for `*count` items.
pub unsafe fn write_array<T: Copy>(items: &[T], count: *mut u32, out: *mut T) -> vk::Result {
    // SAFETY: per the caller's contract.
    let Some(count) = (unsafe { count.as_mut() }) else {
        return vk::Result::ERROR_VALIDATION_FAILED_EXT;
    };
    if out.is_null() {
        *count = items.len() as u32;
        return vk::Result::SUCCESS;
    }
    let n = (*count as usize).min(items.len());
    // SAFETY: `out` has room for `*count >= n` items.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), out, n) };
    *count = n as u32;
    if n < items.len() {
        vk::Result::INCOMPLETE
    } else {
        vk::Result::SUCCESS
    }
}

/// Writes a handle through an output pointer.
///
/// # Safety
/// A non-null `out` must be writable.
pub unsafe fn write_out<T>(out: *mut T, value: T) -> VkResult<()> {
    if out.is_null() {
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    }
    // SAFETY: non-null and writable per the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

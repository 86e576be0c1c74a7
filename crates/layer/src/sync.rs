//! Fences and semaphores: create (export types rewritten to OPAQUE_FD), destroy, and the four
//! Win32 commands, each built on the driver's `vkGet*FdKHR` / `vkImport*FdKHR` with OPAQUE_FD.
//!
//! The handle model is DESIGN.md's contracts 2–4 (`tether_handles`): an NT handle
//! (OPAQUE_WIN32, D3D12_FENCE) *is* a driver OPAQUE_FD, a new one per export, that the caller
//! owns; a KMT value and a name are broker registrations of a driver fd (the broker holds its own
//! duplicate), made and dropped through the object's [`Win32Exports`], exactly as the ICD does.

use std::ffi::{c_int, c_ulong, c_void};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ash::vk;
use ash::vk::{Handle, TaggedStructure};
use tether_handles::nt::{MIN_HANDLE_FD, duplicate_handle};
use tether_handles::{
    BorrowedHandle, Broker, ExportError, HandleError, KmtHandle, NtHandle, ObjectName, Win32ExportAttributes,
    Win32Exports,
};

use crate::caps::{FENCE_WIN32_TYPES, SEMAPHORE_WIN32_TYPES};
use crate::device::{DeviceData, Mode, device_of};
use crate::dispatch::{ChainCopy, ShardedMap, VkResult, find_in_chain, guard, result};
use crate::fd_kind::{self, FdKind, Object};

/// What the layer remembers of any object it exports as Win32 handles.
pub struct Win32State {
    /// The Win32 types it was created exportable as (raw bits of its kind's handle-type flags).
    pub export_types: u32,
    pub exports: Win32Exports,
    /// A payload was imported into it (so any Win32 type may be exported, as the driver's
    /// OPAQUE_FD `exportFromImportedHandleTypes` allows).
    pub imported: AtomicBool,
}

impl Win32State {
    fn new(export_types: u32, attributes: Win32ExportAttributes) -> Win32State {
        Win32State {
            export_types,
            exports: Win32Exports::new(attributes),
            imported: AtomicBool::new(false),
        }
    }
}

/// What the layer remembers of a fence.
pub struct FenceData {
    pub win32: Win32State,
}

/// What the layer remembers of a semaphore.
pub struct SemaphoreData {
    pub win32: Win32State,
    pub timeline: bool,
    /// Its payload is a D3D12 fence: created exportable as D3D12_FENCE, or a D3D12_FENCE payload
    /// imported permanently. `VkD3D12FenceSubmitInfoKHR` values apply only to these.
    pub d3d12: AtomicBool,
    /// The highest value the layer let a D3D12 signal submit (see `submit`).
    pub last_signal: AtomicU64,
}

/// Keyed by (device dispatch key, handle): non-dispatchable handles are only unique per device.
pub static FENCES: ShardedMap<(usize, u64), Arc<FenceData>> = ShardedMap::new();
pub static SEMAPHORES: ShardedMap<(usize, u64), Arc<SemaphoreData>> = ShardedMap::new();

/// Forgets every object of a device (its destruction destroys them); their broker
/// registrations go when the last reference drops.
pub fn forget_device(key: usize) {
    drop(FENCES.drain_where(|k| k.0 == key));
    drop(SEMAPHORES.drain_where(|k| k.0 == key));
}

/// The broker tag of the layer's registrations: a prefix and the kind of object, so an import by
/// name or KMT value can tell a fence from a semaphore, and a binary from a timeline payload.
const TAG_PREFIX: u32 = 0x7e7e_0000;
const TAG_FENCE: u32 = TAG_PREFIX | 1;
const TAG_BINARY: u32 = TAG_PREFIX | 2;
const TAG_TIMELINE: u32 = TAG_PREFIX | 3;
const TAG_D3D12: u32 = TAG_PREFIX | 4;

fn semaphore_tag(s: &SemaphoreData) -> u32 {
    match (s.timeline, s.d3d12.load(Ordering::Relaxed)) {
        (false, _) => TAG_BINARY,
        (true, false) => TAG_TIMELINE,
        (true, true) => TAG_D3D12,
    }
}

/// Reads `VkExport{Fence,Semaphore}Win32HandleInfoKHR` fields into export attributes.
///
/// # Safety
/// `attributes` is NULL or a `SECURITY_ATTRIBUTES`; `name` NULL or a NUL-terminated UTF-16 string.
unsafe fn export_attributes(
    dev: &DeviceData,
    attributes: *const c_void,
    access: c_ulong,
    name: *const u16,
    vuid: &str,
) -> VkResult<Win32ExportAttributes> {
    // SAFETY: per the caller's contract.
    unsafe { Win32ExportAttributes::from_raw(attributes, access, name) }
        .map_err(|e| dev.reporter().validation(vuid, &format!("bad export name: {e}")))
}

/// The device of an intercepted device-level command.
///
/// # Safety
/// `device` is a live `VkDevice` (or `VkQueue`) of the loader.
unsafe fn device(device: u64) -> VkResult<Arc<DeviceData>> {
    // SAFETY: per the caller's contract.
    unsafe { device_of(device) }.ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)
}

/// A required input structure.
///
/// # Safety
/// `p` is NULL or valid for `'a`.
unsafe fn input<'a, T>(p: *const T) -> VkResult<&'a T> {
    // SAFETY: per the caller's contract.
    unsafe { p.as_ref() }.ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)
}

// ---------------------------------------------------------------------------------------------
// The two kinds of object.

/// The valid-usage ids of one `vkGet*Win32HandleKHR`.
struct GetVuids {
    object_parameter: &'static str,
    not_exportable: &'static str,
    already_exported: &'static str,
}

/// A kind of object the layer exports and imports: what differs between fences and semaphores
/// (their structures, the driver's commands, the layer's table, the ids) is here, and the create,
/// destroy, export and import paths are written once over it.
trait Kind: 'static {
    type Handle: Handle + Copy;
    /// `Vk{Fence,Semaphore}CreateInfo`.
    type CreateInfo: Copy;
    /// `VkExport{Fence,Semaphore}CreateInfo`.
    type ExportInfo: TaggedStructure;
    /// `VkExport{Fence,Semaphore}Win32HandleInfoKHR`.
    type Win32Info: TaggedStructure;
    /// What the layer remembers of one.
    type Data: Send + Sync + 'static;

    const OBJECT: Object;
    /// For messages: `fence`, `semaphore`.
    const NAME: &'static str;
    /// `VkFenceCreateInfo`, `VkSemaphoreCreateInfo`.
    const CREATE_INFO: &'static str;
    /// `VK_KHR_external_{fence,semaphore}_win32`.
    const EXTENSION: &'static str;
    /// Raw handle-type bits: the Win32 types, those of them that are NT handles, KMT, OPAQUE_FD.
    const WIN32_TYPES: u32;
    const NT_TYPES: u32;
    const KMT: u32;
    const OPAQUE_FD: u32;
    /// The raw `TEMPORARY` import flag.
    const TEMPORARY: u32;
    /// `VUID-VkExport*Win32HandleInfoKHR-name-parameter`.
    const EXPORT_NAME_VUID: &'static str;
    const GET: GetVuids;
    const IMPORT: ImportVuids;

    fn objects() -> &'static ShardedMap<(usize, u64), Arc<Self::Data>>;
    /// How the device treats the kind's Win32 extension.
    fn mode(dev: &DeviceData) -> Mode;
    fn export_types(export: &Self::ExportInfo) -> u32;
    fn set_export_types(export: &mut Self::ExportInfo, types: u32);
    /// `pAttributes`, `dwAccess`, `name`.
    fn export_attributes(info: &Self::Win32Info) -> (*const c_void, c_ulong, *const u16);
    fn p_next(info: &Self::CreateInfo) -> *const c_void;
    fn with_p_next(info: &Self::CreateInfo, p_next: *const c_void) -> Self::CreateInfo;

    /// The driver's `vkCreate*`.
    ///
    /// # Safety
    /// Per the command.
    unsafe fn driver_create(
        dev: &DeviceData,
        device: vk::Device,
        info: *const Self::CreateInfo,
        allocator: *const vk::AllocationCallbacks<'_>,
        out: *mut Self::Handle,
    ) -> vk::Result;

    /// The driver's `vkDestroy*`.
    ///
    /// # Safety
    /// Per the command.
    unsafe fn driver_destroy(
        dev: &DeviceData,
        device: vk::Device,
        object: Self::Handle,
        allocator: *const vk::AllocationCallbacks<'_>,
    );

    /// The driver's `vkGet*FdKHR` for OPAQUE_FD (`None`: the driver has no such command).
    fn driver_get_fd(dev: &DeviceData, object: Self::Handle, fd: &mut c_int) -> Option<vk::Result>;

    /// The driver's `vkImport*FdKHR` of an OPAQUE_FD with `flags` (`None`: no such command).
    ///
    /// # Safety
    /// `fd` is an fd the caller hands over (the driver owns it on success).
    unsafe fn driver_import_fd(dev: &DeviceData, object: Self::Handle, flags: u32, fd: c_int) -> Option<vk::Result>;
}

/// Implements [`Kind`]: the facts of the kind as written in the invocation (its constants), and
/// the rest from the names of its structures, commands and fields (a fence and a semaphore have
/// the same structures under other names).
macro_rules! kind {
    (
        $kind:ident: vk::$handle:ident (field $field:ident), $data:ident in $objects:ident,
        structures $create_info:ident, $export_info:ident, $win32_info:ident, $get_fd_info:ident, $import_fd_info:ident,
        flags $handle_types:ident, $import_flags:ident,
        driver $create:ident, $destroy:ident, $get_fd:ident, $import_fd:ident;
        $($facts:item)*
    ) => {
        impl Kind for $kind {
            type Handle = vk::$handle;
            type CreateInfo = vk::$create_info<'static>;
            type ExportInfo = vk::$export_info<'static>;
            type Win32Info = vk::$win32_info<'static>;
            type Data = $data;

            const OBJECT: Object = Object::$handle;
            const CREATE_INFO: &'static str = concat!("Vk", stringify!($create_info));
            const EXPORT_NAME_VUID: &'static str = concat!("VUID-Vk", stringify!($win32_info), "-name-parameter");
            const KMT: u32 = vk::$handle_types::OPAQUE_WIN32_KMT.as_raw();
            const OPAQUE_FD: u32 = vk::$handle_types::OPAQUE_FD.as_raw();
            const TEMPORARY: u32 = vk::$import_flags::TEMPORARY.as_raw();
            $($facts)*

            fn objects() -> &'static ShardedMap<(usize, u64), Arc<$data>> {
                &$objects
            }

            fn mode(dev: &DeviceData) -> Mode {
                dev.$field
            }

            fn export_types(export: &Self::ExportInfo) -> u32 {
                export.handle_types.as_raw()
            }

            fn set_export_types(export: &mut Self::ExportInfo, types: u32) {
                export.handle_types = vk::$handle_types::from_raw(types);
            }

            fn export_attributes(info: &Self::Win32Info) -> (*const c_void, c_ulong, *const u16) {
                (info.p_attributes, info.dw_access, info.name)
            }

            fn p_next(info: &Self::CreateInfo) -> *const c_void {
                info.p_next
            }

            fn with_p_next(info: &Self::CreateInfo, p_next: *const c_void) -> Self::CreateInfo {
                vk::$create_info { p_next, ..*info }
            }

            unsafe fn driver_create(
                dev: &DeviceData,
                device: vk::Device,
                info: *const Self::CreateInfo,
                allocator: *const vk::AllocationCallbacks<'_>,
                out: *mut vk::$handle,
            ) -> vk::Result {
                // SAFETY: per the caller's contract.
                unsafe { (dev.fns.$create)(device, info, allocator, out) }
            }

            unsafe fn driver_destroy(
                dev: &DeviceData,
                device: vk::Device,
                object: vk::$handle,
                allocator: *const vk::AllocationCallbacks<'_>,
            ) {
                // SAFETY: per the caller's contract.
                unsafe { (dev.fns.$destroy)(device, object, allocator) }
            }

            fn driver_get_fd(dev: &DeviceData, object: vk::$handle, fd: &mut c_int) -> Option<vk::Result> {
                let get = dev.fns.$get_fd?;
                let info = vk::$get_fd_info::default()
                    .$field(object)
                    .handle_type(vk::$handle_types::OPAQUE_FD);
                // SAFETY: valid input and output per the driver's command.
                Some(unsafe { get(dev.handle, &info, fd) })
            }

            unsafe fn driver_import_fd(dev: &DeviceData, object: vk::$handle, flags: u32, fd: c_int) -> Option<vk::Result> {
                let import = dev.fns.$import_fd?;
                let info = vk::$import_fd_info::default()
                    .$field(object)
                    .flags(vk::$import_flags::from_raw(flags))
                    .handle_type(vk::$handle_types::OPAQUE_FD)
                    .fd(fd);
                // SAFETY: a valid import of an fd the caller hands over.
                Some(unsafe { import(dev.handle, &info) })
            }
        }
    };
}

/// Fences.
enum FenceKind {}

kind! {
    FenceKind: vk::Fence (field fence), FenceData in FENCES,
    structures FenceCreateInfo, ExportFenceCreateInfo, ExportFenceWin32HandleInfoKHR, FenceGetFdInfoKHR, ImportFenceFdInfoKHR,
    flags ExternalFenceHandleTypeFlags, FenceImportFlags,
    driver create_fence, destroy_fence, get_fence_fd, import_fence_fd;

    const NAME: &'static str = "fence";
    const EXTENSION: &'static str = "VK_KHR_external_fence_win32";
    const WIN32_TYPES: u32 = FENCE_WIN32_TYPES.as_raw();
    const NT_TYPES: u32 = vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32.as_raw();
    const GET: GetVuids = GetVuids {
        object_parameter: "VUID-VkFenceGetWin32HandleInfoKHR-fence-parameter",
        not_exportable: "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01448",
        already_exported: "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01449",
    };
    const IMPORT: ImportVuids = ImportVuids {
        object_parameter: "VUID-VkImportFenceWin32HandleInfoKHR-fence-parameter",
        handle_and_name: "VUID-VkImportFenceWin32HandleInfoKHR-handle-01462",
        name_with_kmt: "VUID-VkImportFenceWin32HandleInfoKHR-handleType-01459",
    };
}

/// Semaphores (binary and timeline).
enum SemaphoreKind {}

kind! {
    SemaphoreKind: vk::Semaphore (field semaphore), SemaphoreData in SEMAPHORES,
    structures SemaphoreCreateInfo, ExportSemaphoreCreateInfo, ExportSemaphoreWin32HandleInfoKHR,
        SemaphoreGetFdInfoKHR, ImportSemaphoreFdInfoKHR,
    flags ExternalSemaphoreHandleTypeFlags, SemaphoreImportFlags,
    driver create_semaphore, destroy_semaphore, get_semaphore_fd, import_semaphore_fd;

    const NAME: &'static str = "semaphore";
    const EXTENSION: &'static str = "VK_KHR_external_semaphore_win32";
    const WIN32_TYPES: u32 = SEMAPHORE_WIN32_TYPES.as_raw();
    const NT_TYPES: u32 = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32.as_raw()
        | vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE.as_raw();
    const GET: GetVuids = GetVuids {
        object_parameter: "VUID-VkSemaphoreGetWin32HandleInfoKHR-semaphore-parameter",
        not_exportable: "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01126",
        already_exported: "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01127",
    };
    const IMPORT: ImportVuids = ImportVuids {
        object_parameter: "VUID-VkImportSemaphoreWin32HandleInfoKHR-semaphore-parameter",
        handle_and_name: "VUID-VkImportSemaphoreWin32HandleInfoKHR-handle-01469",
        name_with_kmt: "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-01466",
    };
}

/// A Win32 command of a kind: the device; where the driver has the extension itself, its own
/// command (`native`), and where nobody enabled it, a refusal; the input structure; what the
/// layer knows of the object (`object` picks it from the input; an unknown one breaks
/// `object_vuid`); then `body`. A panic or an error becomes the command's result.
///
/// # Safety
/// `device` is a live device; `info` is NULL or valid.
unsafe fn command<K: Kind, I>(
    device: vk::Device,
    info: *const I,
    native: impl FnOnce(&DeviceData) -> vk::Result,
    object: impl FnOnce(&I) -> K::Handle,
    object_vuid: &str,
    body: impl FnOnce(&DeviceData, &I, &K::Data) -> VkResult<()>,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        result((|| {
            // SAFETY: per the caller's contract.
            let dev = unsafe { self::device(device.as_raw()) }?;
            match K::mode(&dev) {
                Mode::Emulated => {}
                Mode::Native => return Err(native(&dev)),
                Mode::Off => return Err(not_enabled(&dev, K::EXTENSION)),
            }
            // SAFETY: per the caller's contract.
            let info = unsafe { input(info) }?;
            let Some(data) = K::objects().get(&(dev.key, object(info).as_raw())) else {
                return Err(dev
                    .reporter()
                    .validation(object_vuid, &format!("not a {} of this device", K::NAME)));
            };
            body(&dev, info, &data)
        })())
    })
}

// ---------------------------------------------------------------------------------------------
// Create and destroy.

/// `vkCreate{Fence,Semaphore}` through the driver: the Win32 export types of
/// `VkExport*CreateInfo` become OPAQUE_FD and `VkExport*Win32HandleInfoKHR` leaves the chain
/// (the driver knows neither). `check` sees the Win32 types first. Returns the Win32 types and
/// the export attributes.
///
/// # Safety
/// Per `vkCreate*`; `info` is `create_info`.
unsafe fn create<K: Kind>(
    dev: &DeviceData,
    device: vk::Device,
    info: &K::CreateInfo,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut K::Handle,
    check: impl FnOnce(u32) -> VkResult<()>,
) -> VkResult<(u32, Win32ExportAttributes)> {
    let p_next = K::p_next(info);
    // SAFETY: the chain is valid.
    let (export, win32_info) = unsafe {
        (
            find_in_chain::<K::ExportInfo>(p_next),
            find_in_chain::<K::Win32Info>(p_next),
        )
    };
    let win32 = export.map_or(0, |e| K::export_types(e) & K::WIN32_TYPES);
    check(win32)?;
    let attributes = match win32_info {
        // Ignored unless the export types hold an NT type (VUID-VkExportFenceWin32HandleInfoKHR-
        // handleTypes-01447, VUID-VkExportSemaphoreWin32HandleInfoKHR-handleTypes-01125).
        Some(i) if win32 & K::NT_TYPES != 0 => {
            let (attributes, access, name) = K::export_attributes(i);
            // SAFETY: the structure's pointers are valid per valid usage.
            unsafe { export_attributes(dev, attributes, access, name, K::EXPORT_NAME_VUID) }?
        }
        _ => Win32ExportAttributes::default(),
    };
    let r = if win32 == 0 && win32_info.is_none() {
        // SAFETY: the application's arguments, passed on.
        unsafe { K::driver_create(dev, device, info, allocator, out) }
    } else {
        // SAFETY: the chain is valid.
        let mut chain = unsafe { ChainCopy::new(p_next) };
        strip_win32_export(dev, &mut chain, K::Win32Info::STRUCTURE_TYPE, K::CREATE_INFO);
        if win32 != 0 {
            let Some(e) = chain.find_mut::<K::ExportInfo>() else {
                return Err(unknown_structure(dev, K::CREATE_INFO));
            };
            K::set_export_types(e, (K::export_types(e) & !K::WIN32_TYPES) | K::OPAQUE_FD);
        }
        let modified = K::with_p_next(info, chain.link());
        // SAFETY: the application's create info with the rewritten chain.
        unsafe { K::driver_create(dev, device, &modified, allocator, out) }
    };
    if r != vk::Result::SUCCESS {
        return Err(r);
    }
    Ok((win32, attributes))
}

/// # Safety
/// Per `vkCreateFence`.
pub unsafe extern "system" fn create_fence(
    device: vk::Device,
    create_info: *const vk::FenceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    fence: *mut vk::Fence,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device.as_raw()) }?;
            // SAFETY: as above.
            let ci = unsafe { input(create_info.cast::<vk::FenceCreateInfo<'static>>()) }?;
            // SAFETY: as above.
            let (win32, attributes) = unsafe { create::<FenceKind>(&dev, device, ci, allocator, fence, |_| Ok(())) }?;
            let data = FenceData {
                win32: Win32State::new(win32, attributes),
            };
            // SAFETY: the fence was just written.
            FENCES.insert((dev.key, unsafe { *fence }.as_raw()), Arc::new(data));
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkCreateSemaphore`.
pub unsafe extern "system" fn create_semaphore(
    device: vk::Device,
    create_info: *const vk::SemaphoreCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    semaphore: *mut vk::Semaphore,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device.as_raw()) }?;
            // SAFETY: as above.
            let ci = unsafe { input(create_info.cast::<vk::SemaphoreCreateInfo<'static>>()) }?;
            // SAFETY: the chain is valid.
            let type_info = unsafe { find_in_chain::<vk::SemaphoreTypeCreateInfo<'_>>(ci.p_next) };
            let timeline = type_info.is_some_and(|t| t.semaphore_type == vk::SemaphoreType::TIMELINE);
            let initial = type_info.filter(|_| timeline).map_or(0, |t| t.initial_value);
            let d3d12_bit = vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE.as_raw();
            let check = |win32: u32| {
                if win32 & d3d12_bit != 0 && !(timeline && dev.d3d12) {
                    return Err(dev.reporter().validation(
                        "VUID-VkExportSemaphoreCreateInfo-handleTypes-01124",
                        if timeline {
                            "D3D12_FENCE is not offered: the driver has no exportable and importable timeline OPAQUE_FD"
                        } else {
                            "through this layer D3D12_FENCE is offered for timeline semaphores only"
                        },
                    ));
                }
                Ok(())
            };
            // SAFETY: as above.
            let (win32, attributes) =
                unsafe { create::<SemaphoreKind>(&dev, device, ci, allocator, semaphore, check) }?;
            let data = SemaphoreData {
                win32: Win32State::new(win32, attributes),
                timeline,
                d3d12: AtomicBool::new(win32 & d3d12_bit != 0),
                last_signal: AtomicU64::new(initial),
            };
            // SAFETY: the semaphore was just written.
            SEMAPHORES.insert((dev.key, unsafe { *semaphore }.as_raw()), Arc::new(data));
            Ok(())
        })())
    })
}

/// Takes the Win32 export structure out of a copied chain (the driver does not know it); a
/// second one breaks `VUID-<parent>-sType-unique`, which the driver can no longer see, so the
/// layer reports it.
fn strip_win32_export(dev: &DeviceData, chain: &mut ChainCopy, s_type: vk::StructureType, parent: &str) {
    let copies = chain.count(s_type);
    chain.remove(s_type);
    if copies > 1 {
        let _ = dev.reporter().validation(
            &format!("VUID-{parent}-sType-unique"),
            &format!("the pNext chain of {parent} holds {s_type:?} more than once"),
        );
    }
}

fn unknown_structure(dev: &DeviceData, parent: &str) -> vk::Result {
    dev.reporter().failure(
        "tether-layer-unknown-structure",
        &format!(
            "the {parent} chain holds a structure type the layer cannot copy before the one it must rewrite; \
             put the export structures first"
        ),
        vk::Result::ERROR_OUT_OF_HOST_MEMORY,
    )
}

/// `vkDestroy{Fence,Semaphore}`: dropping the layer's data unregisters the object's name and
/// KMT value.
///
/// # Safety
/// Per `vkDestroy*`.
unsafe fn destroy<K: Kind>(device: vk::Device, object: K::Handle, allocator: *const vk::AllocationCallbacks<'_>) {
    guard((), || {
        // SAFETY: a live device per valid usage.
        let Ok(dev) = (unsafe { self::device(device.as_raw()) }) else {
            return;
        };
        drop(K::objects().remove(&(dev.key, object.as_raw())));
        // SAFETY: the application's arguments, passed on.
        unsafe { K::driver_destroy(&dev, device, object, allocator) };
    })
}

/// # Safety
/// Per `vkDestroyFence`.
pub unsafe extern "system" fn destroy_fence(
    device: vk::Device,
    fence: vk::Fence,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    // SAFETY: per the caller's contract.
    unsafe { destroy::<FenceKind>(device, fence, allocator) }
}

/// # Safety
/// Per `vkDestroySemaphore`.
pub unsafe extern "system" fn destroy_semaphore(
    device: vk::Device,
    semaphore: vk::Semaphore,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    // SAFETY: per the caller's contract.
    unsafe { destroy::<SemaphoreKind>(device, semaphore, allocator) }
}

// ---------------------------------------------------------------------------------------------
// Export.

fn export_failed(dev: &DeviceData, e: &HandleError) -> vk::Result {
    let code = match e {
        HandleError::Io(io) if io.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => {
            vk::Result::ERROR_TOO_MANY_OBJECTS
        }
        _ => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
    };
    dev.reporter()
        .failure("tether-export-failed", &format!("Win32 export failed: {e}"), code)
}

/// The layer cannot make a read-only handle to a driver's payload (see the crate docs). Of the
/// two codes the spec allows for `vkGet*Win32HandleKHR` (`VK_ERROR_TOO_MANY_OBJECTS`,
/// `VK_ERROR_OUT_OF_HOST_MEMORY`), the closest: no handle of the kind asked for can be made. It
/// is the code the ICD gives for an export name taken by another object; the message id tells
/// the two apart.
fn read_only_refused(dev: &DeviceData, access: u32) -> vk::Result {
    dev.reporter().failure(
        "tether-layer-read-only-access",
        &format!(
            "dwAccess {access:#x} asks for a handle that cannot signal; the layer cannot restrict a driver's OPAQUE_FD, \
             so it refuses the NT export with VK_ERROR_TOO_MANY_OBJECTS (export with full access, or use a KMT handle)"
        ),
        vk::Result::ERROR_TOO_MANY_OBJECTS,
    )
}

/// Turns a driver fd into an NT handle value: the fd itself (≥ 3, inheritable as asked). The
/// flags are changed only when the driver's differ (one syscall fewer on the usual path: a
/// driver's fd is close-on-exec, and most exports ask for no inheritance).
fn into_nt_handle(fd: OwnedFd, inheritable: bool) -> std::io::Result<NtHandle> {
    if fd.as_raw_fd() >= MIN_HANDLE_FD {
        let handle = NtHandle::from(fd);
        if handle.is_inheritable()? != inheritable {
            handle.set_inheritable(inheritable)?;
        }
        Ok(handle)
    } else {
        duplicate_handle(fd.as_fd(), inheritable)
    }
}

/// Exports a driver fd of an object as a Win32 handle value: an NT handle (the fd itself) or
/// the object's KMT value (the broker keeps its own duplicate; `fd` is closed here).
fn export(
    dev: &DeviceData,
    exports: &Win32Exports,
    type_bit: u32,
    nt: bool,
    fd: OwnedFd,
    tag: u32,
    nt_vuid: &str,
) -> VkResult<isize> {
    if !nt {
        return match exports.kmt(fd.as_fd(), tag) {
            Ok(kmt) => Ok(kmt.as_raw_handle()),
            Err(ExportError::Broker(e)) => Err(export_failed(dev, &e)),
            Err(ExportError::AlreadyExported) => Err(vk::Result::ERROR_UNKNOWN),
        };
    }
    if let Err(e) = exports.begin_nt_export(type_bit, fd.as_fd(), tag) {
        return Err(match e {
            ExportError::AlreadyExported => dev.reporter().validation(
                nt_vuid,
                "an NT handle of this type was already exported from this object; duplicate that handle instead",
            ),
            // The spec allows only TOO_MANY_OBJECTS and OUT_OF_HOST_MEMORY here; a name taken by
            // another object is the closest (as in the ICD, with the same message id).
            ExportError::Broker(HandleError::AlreadyExists) => dev.reporter().failure(
                "tether-name-in-use",
                "the export name is already in use by another object",
                vk::Result::ERROR_TOO_MANY_OBJECTS,
            ),
            ExportError::Broker(e) => export_failed(dev, &e),
        });
    }
    into_nt_handle(fd, exports.attributes.inheritable)
        .map(NtHandle::into_raw_handle)
        .map_err(|e| {
            exports.abandon_nt_export(type_bit);
            export_failed(dev, &HandleError::Io(e))
        })
}

/// Hands an exported handle to the caller, or takes it back if the output pointer is NULL.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn write_handle(out: *mut vk::HANDLE, handle: isize, nt: bool) -> VkResult<()> {
    if out.is_null() {
        if nt {
            // SAFETY: the handle was just created by `export` and never handed out.
            unsafe { tether_handles::nt::close_handle(handle) };
        }
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    }
    // SAFETY: per the caller's contract.
    unsafe { out.write(handle) };
    Ok(())
}

/// The driver's OPAQUE_FD of an object (learning the kind of file the driver exports).
fn driver_fd<K: Kind>(dev: &DeviceData, object: K::Handle) -> VkResult<OwnedFd> {
    let mut fd = -1;
    let r = K::driver_get_fd(dev, object, &mut fd).ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
    if r != vk::Result::SUCCESS {
        return Err(r);
    }
    if fd < 0 {
        return Err(export_failed(dev, &HandleError::InvalidHandle));
    }
    // SAFETY: the driver returned a new fd the caller owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    dev.fd_kinds.learn(K::OBJECT, fd.as_fd());
    Ok(fd)
}

/// What `vkGet{Fence,Semaphore}Win32HandleKHR` do once the kind has checked the handle type
/// `ty` (raw): the object must be exportable as it (or hold an import), `payload` checks what
/// the kind needs of the payload, a read-only NT handle is refused, and the driver's OPAQUE_FD
/// becomes the handle written to `out`.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn get_win32_handle<K: Kind>(
    dev: &DeviceData,
    object: K::Handle,
    state: &Win32State,
    ty: u32,
    tag: u32,
    payload: impl FnOnce() -> VkResult<()>,
    out: *mut vk::HANDLE,
) -> VkResult<()> {
    if !state.imported.load(Ordering::Relaxed) && state.export_types & ty != ty {
        return Err(dev.reporter().validation(
            K::GET.not_exportable,
            &format!("the {} was not created exportable as this handle type", K::NAME),
        ));
    }
    payload()?;
    let nt = ty != K::KMT;
    if nt && !state.exports.attributes.allows_signal() {
        return Err(read_only_refused(dev, state.exports.attributes.access));
    }
    let fd = driver_fd::<K>(dev, object)?;
    let handle = export(dev, &state.exports, ty, nt, fd, tag, K::GET.already_exported)?;
    // SAFETY: per the caller's contract.
    unsafe { write_handle(out, handle, nt) }
}

/// # Safety
/// Per `vkGetFenceWin32HandleKHR`.
pub unsafe extern "system" fn get_fence_win32_handle(
    device: vk::Device,
    info: *const vk::FenceGetWin32HandleInfoKHR<'_>,
    out: *mut vk::HANDLE,
) -> vk::Result {
    let body = |dev: &DeviceData, info: &vk::FenceGetWin32HandleInfoKHR<'_>, fence: &FenceData| {
        let ty = info.handle_type;
        if ty != vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32
            && ty != vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT
        {
            return Err(dev.reporter().validation(
                "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01452",
                &format!("{ty:?} is not a Win32 handle type for fences"),
            ));
        }
        // SAFETY: writable output per valid usage.
        unsafe { get_win32_handle::<FenceKind>(dev, info.fence, &fence.win32, ty.as_raw(), TAG_FENCE, || Ok(()), out) }
    };
    // SAFETY: valid handle and pointers per valid usage; the driver's own command gets the
    // application's arguments.
    unsafe {
        command::<FenceKind, _>(
            device,
            info,
            |dev| native_get_fence(dev, info, out),
            |i| i.fence,
            FenceKind::GET.object_parameter,
            body,
        )
    }
}

/// # Safety
/// Per `vkGetSemaphoreWin32HandleKHR`.
pub unsafe extern "system" fn get_semaphore_win32_handle(
    device: vk::Device,
    info: *const vk::SemaphoreGetWin32HandleInfoKHR<'_>,
    out: *mut vk::HANDLE,
) -> vk::Result {
    let body = |dev: &DeviceData, info: &vk::SemaphoreGetWin32HandleInfoKHR<'_>, sem: &SemaphoreData| {
        let ty = info.handle_type;
        let offered = offered_semaphore_types(dev, sem.timeline);
        if ty.is_empty() || !offered.contains(ty) || ty.as_raw().count_ones() != 1 {
            return Err(dev.reporter().validation(
                "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01131",
                &format!(
                    "{ty:?} is not a Win32 handle type offered for a {} semaphore",
                    if sem.timeline { "timeline" } else { "binary" }
                ),
            ));
        }
        let d3d12_payload = || {
            if ty == vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE && !sem.d3d12.load(Ordering::Relaxed) {
                return Err(dev.reporter().validation(
                    SemaphoreKind::GET.not_exportable,
                    "the semaphore's payload is not a D3D12 fence",
                ));
            }
            Ok(())
        };
        // SAFETY: writable output per valid usage.
        unsafe {
            get_win32_handle::<SemaphoreKind>(
                dev,
                info.semaphore,
                &sem.win32,
                ty.as_raw(),
                semaphore_tag(sem),
                d3d12_payload,
                out,
            )
        }
    };
    // SAFETY: valid handle and pointers per valid usage; the driver's own command gets the
    // application's arguments.
    unsafe {
        command::<SemaphoreKind, _>(
            device,
            info,
            |dev| native_get_semaphore(dev, info, out),
            |i| i.semaphore,
            SemaphoreKind::GET.object_parameter,
            body,
        )
    }
}

/// The Win32 semaphore types the layer offers on a device for one semaphore type.
fn offered_semaphore_types(dev: &DeviceData, timeline: bool) -> vk::ExternalSemaphoreHandleTypeFlags {
    let mut t =
        vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32 | vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
    if timeline && dev.d3d12 {
        t |= vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Import.

fn invalid_handle(dev: &DeviceData, text: &str) -> vk::Result {
    dev.reporter().failure(
        "tether-invalid-external-handle",
        text,
        vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
    )
}

/// The valid-usage ids of one import command.
struct ImportVuids {
    object_parameter: &'static str,
    handle_and_name: &'static str,
    name_with_kmt: &'static str,
}

/// Resolves what a Win32 import names (an NT handle, a KMT value, a name) to an fd of our own:
/// a duplicate of the NT handle (a Win32 import never takes ownership), or the broker's fd.
/// Also returns the broker's tag for a name or KMT value.
///
/// # Safety
/// `name` is NULL or a NUL-terminated UTF-16 string; `handle` is only borrowed.
unsafe fn resolve(
    dev: &DeviceData,
    handle: isize,
    name: *const u16,
    kmt: bool,
    vuids: &ImportVuids,
) -> VkResult<(Option<u32>, OwnedFd)> {
    let named = !name.is_null();
    if handle != 0 && named {
        return Err(dev
            .reporter()
            .validation(vuids.handle_and_name, "handle and name must not both be set"));
    }
    if named && kmt {
        return Err(dev
            .reporter()
            .validation(vuids.name_with_kmt, "a KMT handle cannot be imported by name"));
    }
    if named {
        // SAFETY: per the caller's contract; the scan is bounded by the name length limit.
        let name =
            unsafe { ObjectName::from_lpcwstr(name) }.map_err(|e| invalid_handle(dev, &format!("bad name: {e}")))?;
        let (tag, fd) = Broker::shared()
            .open_name(&name)
            .map_err(|e| invalid_handle(dev, &format!("name {:?}: {e}", name.key())))?;
        return Ok((Some(tag), fd));
    }
    if kmt {
        let value = KmtHandle::from_raw_handle(handle)
            .ok_or_else(|| invalid_handle(dev, &format!("{handle:#x} is not a KMT value")))?;
        let (tag, fd) = Broker::shared()
            .open_kmt(value)
            .map_err(|e| invalid_handle(dev, &format!("KMT {value}: {e}")))?;
        return Ok((Some(tag), fd));
    }
    if handle == 0 {
        return Err(invalid_handle(dev, "NULL handle and no name"));
    }
    // SAFETY: the handle is only borrowed for this call; `duplicate` checks it is open.
    let borrowed = unsafe { BorrowedHandle::borrow_raw(handle) }
        .ok_or_else(|| invalid_handle(dev, &format!("{handle:#x} is not an NT handle")))?;
    let dup = borrowed
        .duplicate(false)
        .map_err(|e| invalid_handle(dev, &format!("NT handle {handle:#x}: {e}")))?;
    Ok((None, dup.into_owned_fd()))
}

/// Refuses an fd that is not the kind of file the driver exports (see [`crate::fd_kind`]).
fn check_kind(dev: &DeviceData, object: Object, fd: BorrowedFd<'_>) -> VkResult<()> {
    let expected = dev.fd_kinds.get(object, || match object {
        Object::Fence => fd_kind::probe_fence(dev),
        Object::Semaphore => fd_kind::probe_semaphore(dev),
    });
    match expected {
        Some(kind) if FdKind::of(fd) != Some(kind) => Err(invalid_handle(
            dev,
            &format!(
                "the handle is not a {} payload of this driver ({})",
                if object == Object::Fence { "fence" } else { "semaphore" },
                fd_kind::describe(fd)
            ),
        )),
        _ => Ok(()),
    }
}

/// Maps a driver's failure to import a Win32 handle's fd: the spec's code is
/// `VK_ERROR_INVALID_EXTERNAL_HANDLE` whatever the driver said (NVIDIA returns
/// `VK_ERROR_INITIALIZATION_FAILED` for a non-payload fd), except for running out of memory and
/// for `VK_ERROR_VALIDATION_FAILED_EXT`: a driver that checks valid usage has found a broken
/// rule of the fd import, and the only one the layer's well-formed OPAQUE_FD import can break is
/// the object being tied to unfinished queue work, which is reported under the Win32 command's
/// id.
fn driver_import_failed(dev: &DeviceData, object: Object, r: vk::Result) -> vk::Result {
    match r {
        vk::Result::ERROR_OUT_OF_HOST_MEMORY => r,
        vk::Result::ERROR_VALIDATION_FAILED_EXT => dev.reporter().validation(
            match object {
                Object::Fence => "VUID-vkImportFenceWin32HandleKHR-fence-04448",
                // No VUID in the spec (Khronos issue 3507); the ICD uses this id.
                Object::Semaphore => "VUID-vkImportSemaphoreWin32HandleKHR-semaphore-in-use",
            },
            "the driver refused the OPAQUE_FD import as invalid usage: the object is tied to unfinished queue work",
        ),
        _ => invalid_handle(
            dev,
            &format!("the driver refused the handle's payload as an OPAQUE_FD import ({r:?})"),
        ),
    }
}

/// What `vkImport{Fence,Semaphore}Win32HandleKHR` do once the kind has checked the handle type:
/// resolve what the import names to an fd of the layer's own; `check` sees the broker's tag of
/// a name or KMT value (and returns what the kind's bookkeeping needs); a file that is not the
/// driver's kind of payload is refused.
///
/// # Safety
/// `name` is NULL or a NUL-terminated UTF-16 string; `handle` is only borrowed.
unsafe fn resolve_import<K: Kind, T>(
    dev: &DeviceData,
    handle: isize,
    name: *const u16,
    kmt: bool,
    check: impl FnOnce(Option<u32>) -> VkResult<T>,
) -> VkResult<(T, OwnedFd)> {
    // SAFETY: per the caller's contract.
    let (tag, fd) = unsafe { resolve(dev, handle, name, kmt, &K::IMPORT) }?;
    let checked = check(tag.filter(|t| t & 0xffff_0000 == TAG_PREFIX))?;
    check_kind(dev, K::OBJECT, fd.as_fd())?;
    Ok((checked, fd))
}

/// Imports `fd` into the driver's object as OPAQUE_FD with `flags` (the driver owns the fd on
/// success) and records it: a permanent import replaces the payload, so the object's Win32
/// exports are forgotten. Returns whether the import was temporary.
fn install<K: Kind>(
    dev: &DeviceData,
    object: K::Handle,
    state: &Win32State,
    flags: u32,
    fd: OwnedFd,
) -> VkResult<bool> {
    let raw = fd.into_raw_fd();
    // SAFETY: a valid import of an fd the layer owns; on success the driver owns it.
    let r = unsafe { K::driver_import_fd(dev, object, flags, raw) };
    if r != Some(vk::Result::SUCCESS) {
        // SAFETY: the driver did not take the fd; it is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(r.map_or(vk::Result::ERROR_INITIALIZATION_FAILED, |r| {
            driver_import_failed(dev, K::OBJECT, r)
        }));
    }
    let temporary = flags & K::TEMPORARY != 0;
    if !temporary {
        state.exports.forget();
    }
    state.imported.store(true, Ordering::Relaxed);
    Ok(temporary)
}

/// # Safety
/// Per `vkImportFenceWin32HandleKHR`.
pub unsafe extern "system" fn import_fence_win32_handle(
    device: vk::Device,
    info: *const vk::ImportFenceWin32HandleInfoKHR<'_>,
) -> vk::Result {
    let body = |dev: &DeviceData, info: &vk::ImportFenceWin32HandleInfoKHR<'_>, fence: &FenceData| {
        let ty = info.handle_type;
        let kmt = ty == vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT;
        if ty != vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32 && !kmt {
            return Err(dev.reporter().validation(
                "VUID-VkImportFenceWin32HandleInfoKHR-handleType-01457",
                &format!("{ty:?} is not a Win32 handle type for fences"),
            ));
        }
        let tag = |tag: Option<u32>| match tag {
            Some(tag) if tag != TAG_FENCE => Err(invalid_handle(dev, "the handle names a semaphore, not a fence")),
            _ => Ok(()),
        };
        // SAFETY: `name` is NULL or a NUL-terminated string per valid usage; the handle is borrowed.
        let ((), fd) = unsafe { resolve_import::<FenceKind, _>(dev, info.handle, info.name, kmt, tag) }?;
        install::<FenceKind>(dev, info.fence, &fence.win32, info.flags.as_raw(), fd)?;
        Ok(())
    };
    // SAFETY: valid handle and pointers per valid usage; the driver's own command gets the
    // application's arguments.
    unsafe {
        command::<FenceKind, _>(
            device,
            info,
            |dev| native_import_fence(dev, info),
            |i| i.fence,
            FenceKind::IMPORT.object_parameter,
            body,
        )
    }
}

/// # Safety
/// Per `vkImportSemaphoreWin32HandleKHR`.
pub unsafe extern "system" fn import_semaphore_win32_handle(
    device: vk::Device,
    info: *const vk::ImportSemaphoreWin32HandleInfoKHR<'_>,
) -> vk::Result {
    let body = |dev: &DeviceData, info: &vk::ImportSemaphoreWin32HandleInfoKHR<'_>, sem: &SemaphoreData| {
        let ty = info.handle_type;
        let not_offered = || {
            dev.reporter().validation(
                "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-01140",
                &format!(
                    "{ty:?} is not a Win32 handle type offered for a {} semaphore",
                    if sem.timeline { "timeline" } else { "binary" }
                ),
            )
        };
        if ty.is_empty() || !SEMAPHORE_WIN32_TYPES.contains(ty) || ty.as_raw().count_ones() != 1 {
            return Err(not_offered());
        }
        if info.flags.contains(vk::SemaphoreImportFlags::TEMPORARY) && sem.timeline {
            return Err(dev.reporter().validation(
                "VUID-VkImportSemaphoreWin32HandleInfoKHR-flags-03322",
                "a timeline semaphore payload cannot be imported temporarily",
            ));
        }
        let kmt = ty == vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
        // Whether the payload is a D3D12 fence.
        let tag = |tag: Option<u32>| {
            let d3d12 = ty == vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
            match tag {
                Some(TAG_FENCE) => Err(invalid_handle(dev, "the handle names a fence, not a semaphore")),
                Some(tag) if (tag == TAG_BINARY) == sem.timeline => Err(dev.reporter().validation(
                    "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-03262",
                    "the exporter's semaphore type does not match this semaphore's",
                )),
                Some(tag) => Ok(d3d12 || tag == TAG_D3D12),
                None => Ok(d3d12),
            }
        };
        // SAFETY: `name` is NULL or a NUL-terminated string per valid usage; the handle is borrowed.
        let (d3d12, fd) = unsafe { resolve_import::<SemaphoreKind, _>(dev, info.handle, info.name, kmt, tag) }?;
        // Checked once the handle is known to be good (D3D12_FENCE into a binary semaphore).
        if !offered_semaphore_types(dev, sem.timeline).contains(ty) {
            return Err(not_offered());
        }
        if !install::<SemaphoreKind>(dev, info.semaphore, &sem.win32, info.flags.as_raw(), fd)? {
            sem.d3d12.store(d3d12 && sem.timeline, Ordering::Relaxed);
            sem.last_signal.store(0, Ordering::Relaxed);
        }
        Ok(())
    };
    // SAFETY: valid handle and pointers per valid usage; the driver's own command gets the
    // application's arguments.
    unsafe {
        command::<SemaphoreKind, _>(
            device,
            info,
            |dev| native_import_semaphore(dev, info),
            |i| i.semaphore,
            SemaphoreKind::IMPORT.object_parameter,
            body,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// A Win32 command reached through `vkGetInstanceProcAddr` on a device where the layer does not
// provide the extension: the driver's own command when it has one.

fn not_enabled(dev: &DeviceData, extension: &str) -> vk::Result {
    dev.reporter().validation(
        "VUID-vkGetDeviceProcAddr-extension-not-enabled",
        &format!("{extension} is not enabled on this device"),
    )
}

macro_rules! native {
    ($fn_name:ident, $pfn:ty, $cmd:literal, ($($arg:ident: $ty:ty),*)) => {
        /// # Safety
        /// Per the command; `dev` is the device of the call.
        unsafe fn $fn_name(dev: &DeviceData, $($arg: $ty),*) -> vk::Result {
            // SAFETY: the command is looked up with its own type.
            let Some(f) = (unsafe { crate::dispatch::typed::<$pfn>(dev.next_proc($cmd)) }) else {
                return not_enabled(dev, $cmd.to_str().unwrap_or_default());
            };
            // SAFETY: the application's arguments, passed on.
            unsafe { f(dev.handle, $($arg),*) }
        }
    };
}

native!(native_get_fence, vk::PFN_vkGetFenceWin32HandleKHR, c"vkGetFenceWin32HandleKHR",
    (info: *const vk::FenceGetWin32HandleInfoKHR<'_>, out: *mut vk::HANDLE));
native!(native_import_fence, vk::PFN_vkImportFenceWin32HandleKHR, c"vkImportFenceWin32HandleKHR",
    (info: *const vk::ImportFenceWin32HandleInfoKHR<'_>));
native!(native_get_semaphore, vk::PFN_vkGetSemaphoreWin32HandleKHR, c"vkGetSemaphoreWin32HandleKHR",
    (info: *const vk::SemaphoreGetWin32HandleInfoKHR<'_>, out: *mut vk::HANDLE));
native!(native_import_semaphore, vk::PFN_vkImportSemaphoreWin32HandleKHR, c"vkImportSemaphoreWin32HandleKHR",
    (info: *const vk::ImportSemaphoreWin32HandleInfoKHR<'_>));

//! Fences and semaphores: create (export types rewritten to OPAQUE_FD), destroy, and the four
//! Win32 commands, each built on the driver's `vkGet*FdKHR` / `vkImport*FdKHR` with OPAQUE_FD.
//!
//! The handle model is DESIGN.md's contracts 2–4 (`tether_handles`): an NT handle
//! (OPAQUE_WIN32, D3D12_FENCE) *is* a driver OPAQUE_FD, a new one per export, that the caller
//! owns; a KMT value and a name are broker registrations of a driver fd (the broker holds its own
//! duplicate), made and dropped through the object's [`Win32Exports`], exactly as the ICD does.

use std::ffi::{c_ulong, c_void};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ash::vk;
use ash::vk::Handle;
use tether_handles::nt::{MIN_HANDLE_FD, duplicate_handle};
use tether_handles::{
    BorrowedHandle, Broker, ExportError, HandleError, KmtHandle, NtHandle, ObjectName, Win32ExportAttributes,
    Win32Exports,
};

use crate::caps::{FENCE_WIN32_TYPES, SEMAPHORE_WIN32_TYPES};
use crate::device::{DeviceData, Mode, device_of};
use crate::dispatch::{ChainCopy, ShardedMap, VkResult, find_in_chain, guard, result};
use crate::fd_kind::{self, FdKind, Object};

/// What the layer remembers of a fence.
pub struct FenceData {
    /// The Win32 types it was created exportable as.
    pub export_types: vk::ExternalFenceHandleTypeFlags,
    pub exports: Win32Exports,
    /// A payload was imported into it (so any Win32 type may be exported, as the driver's
    /// OPAQUE_FD `exportFromImportedHandleTypes` allows).
    pub imported: AtomicBool,
}

/// What the layer remembers of a semaphore.
pub struct SemaphoreData {
    /// The Win32 types it was created exportable as.
    pub export_types: vk::ExternalSemaphoreHandleTypeFlags,
    pub exports: Win32Exports,
    pub timeline: bool,
    /// Its payload is a D3D12 fence: created exportable as D3D12_FENCE, or a D3D12_FENCE payload
    /// imported permanently. `VkD3D12FenceSubmitInfoKHR` values apply only to these.
    pub d3d12: AtomicBool,
    /// The highest value the layer let a D3D12 signal submit (see `submit`).
    pub last_signal: AtomicU64,
    pub imported: AtomicBool,
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
// Create and destroy.

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
            let ci = unsafe { input(create_info) }?;
            // SAFETY: the chain is valid.
            let (export, win32_info) = unsafe {
                (
                    find_in_chain::<vk::ExportFenceCreateInfo<'_>>(ci.p_next),
                    find_in_chain::<vk::ExportFenceWin32HandleInfoKHR<'_>>(ci.p_next),
                )
            };
            let win32 = export.map_or(vk::ExternalFenceHandleTypeFlags::empty(), |e| {
                e.handle_types & FENCE_WIN32_TYPES
            });
            let attributes = match win32_info {
                // Ignored unless the export types hold OPAQUE_WIN32 (VUID-...-handleTypes-01447).
                Some(i) if win32.contains(vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32) => {
                    // SAFETY: the structure's pointers are valid per valid usage.
                    unsafe {
                        export_attributes(
                            &dev,
                            i.p_attributes,
                            i.dw_access,
                            i.name,
                            "VUID-VkExportFenceWin32HandleInfoKHR-name-parameter",
                        )
                    }?
                }
                _ => Win32ExportAttributes::default(),
            };
            let next = dev.fns.create_fence;
            let r = if win32.is_empty() && win32_info.is_none() {
                // SAFETY: the application's arguments, passed on.
                unsafe { next(device, create_info, allocator, fence) }
            } else {
                // SAFETY: the chain is valid.
                let mut chain = unsafe { ChainCopy::new(ci.p_next) };
                strip_win32_export(
                    &dev,
                    &mut chain,
                    vk::StructureType::EXPORT_FENCE_WIN32_HANDLE_INFO_KHR,
                    "VkFenceCreateInfo",
                );
                if !win32.is_empty() {
                    let Some(e) = chain.find_mut::<vk::ExportFenceCreateInfo<'_>>() else {
                        return Err(unknown_structure(&dev, "VkFenceCreateInfo"));
                    };
                    e.handle_types =
                        (e.handle_types & !FENCE_WIN32_TYPES) | vk::ExternalFenceHandleTypeFlags::OPAQUE_FD;
                }
                let modified = vk::FenceCreateInfo {
                    p_next: chain.link(),
                    ..*ci
                };
                // SAFETY: the application's create info with the rewritten chain.
                unsafe { next(device, &modified, allocator, fence) }
            };
            if r != vk::Result::SUCCESS {
                return Err(r);
            }
            let data = FenceData {
                export_types: win32,
                exports: Win32Exports::new(attributes),
                imported: AtomicBool::new(false),
            };
            // SAFETY: the fence was just written.
            FENCES.insert((dev.key, unsafe { *fence }.as_raw()), Arc::new(data));
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

/// # Safety
/// Per `vkDestroyFence`.
pub unsafe extern "system" fn destroy_fence(
    device: vk::Device,
    fence: vk::Fence,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard((), || {
        // SAFETY: a live device per valid usage.
        let Ok(dev) = (unsafe { self::device(device.as_raw()) }) else {
            return;
        };
        // Dropping the data unregisters its name and KMT value.
        drop(FENCES.remove(&(dev.key, fence.as_raw())));
        // SAFETY: the application's arguments, passed on.
        unsafe { (dev.fns.destroy_fence)(device, fence, allocator) };
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
            let ci = unsafe { input(create_info) }?;
            // SAFETY: the chain is valid.
            let (export, win32_info, type_info) = unsafe {
                (
                    find_in_chain::<vk::ExportSemaphoreCreateInfo<'_>>(ci.p_next),
                    find_in_chain::<vk::ExportSemaphoreWin32HandleInfoKHR<'_>>(ci.p_next),
                    find_in_chain::<vk::SemaphoreTypeCreateInfo<'_>>(ci.p_next),
                )
            };
            let timeline = type_info.is_some_and(|t| t.semaphore_type == vk::SemaphoreType::TIMELINE);
            let initial = type_info.filter(|_| timeline).map_or(0, |t| t.initial_value);
            let win32 = export.map_or(vk::ExternalSemaphoreHandleTypeFlags::empty(), |e| {
                e.handle_types & SEMAPHORE_WIN32_TYPES
            });
            let d3d12 = win32.contains(vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE);
            if d3d12 && !(timeline && dev.d3d12) {
                return Err(dev.reporter().validation(
                    "VUID-VkExportSemaphoreCreateInfo-handleTypes-01124",
                    if timeline {
                        "D3D12_FENCE is not offered: the driver has no exportable and importable timeline OPAQUE_FD"
                    } else {
                        "through this layer D3D12_FENCE is offered for timeline semaphores only"
                    },
                ));
            }
            let nt_types =
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32 | vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
            let attributes = match win32_info {
                // Ignored unless the export types hold an NT type (VUID-...-handleTypes-01125).
                Some(i) if win32.intersects(nt_types) => {
                    // SAFETY: the structure's pointers are valid per valid usage.
                    unsafe {
                        export_attributes(
                            &dev,
                            i.p_attributes,
                            i.dw_access,
                            i.name,
                            "VUID-VkExportSemaphoreWin32HandleInfoKHR-name-parameter",
                        )
                    }?
                }
                _ => Win32ExportAttributes::default(),
            };
            let next = dev.fns.create_semaphore;
            let r = if win32.is_empty() && win32_info.is_none() {
                // SAFETY: the application's arguments, passed on.
                unsafe { next(device, create_info, allocator, semaphore) }
            } else {
                // SAFETY: the chain is valid.
                let mut chain = unsafe { ChainCopy::new(ci.p_next) };
                strip_win32_export(
                    &dev,
                    &mut chain,
                    vk::StructureType::EXPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR,
                    "VkSemaphoreCreateInfo",
                );
                if !win32.is_empty() {
                    let Some(e) = chain.find_mut::<vk::ExportSemaphoreCreateInfo<'_>>() else {
                        return Err(unknown_structure(&dev, "VkSemaphoreCreateInfo"));
                    };
                    e.handle_types =
                        (e.handle_types & !SEMAPHORE_WIN32_TYPES) | vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
                }
                let modified = vk::SemaphoreCreateInfo {
                    p_next: chain.link(),
                    ..*ci
                };
                // SAFETY: the application's create info with the rewritten chain.
                unsafe { next(device, &modified, allocator, semaphore) }
            };
            if r != vk::Result::SUCCESS {
                return Err(r);
            }
            let data = SemaphoreData {
                export_types: win32,
                exports: Win32Exports::new(attributes),
                timeline,
                d3d12: AtomicBool::new(d3d12),
                last_signal: AtomicU64::new(initial),
                imported: AtomicBool::new(false),
            };
            // SAFETY: the semaphore was just written.
            SEMAPHORES.insert((dev.key, unsafe { *semaphore }.as_raw()), Arc::new(data));
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkDestroySemaphore`.
pub unsafe extern "system" fn destroy_semaphore(
    device: vk::Device,
    semaphore: vk::Semaphore,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard((), || {
        // SAFETY: a live device per valid usage.
        let Ok(dev) = (unsafe { self::device(device.as_raw()) }) else {
            return;
        };
        drop(SEMAPHORES.remove(&(dev.key, semaphore.as_raw())));
        // SAFETY: the application's arguments, passed on.
        unsafe { (dev.fns.destroy_semaphore)(device, semaphore, allocator) };
    })
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

/// # Safety
/// Per `vkGetFenceWin32HandleKHR`.
pub unsafe extern "system" fn get_fence_win32_handle(
    device: vk::Device,
    info: *const vk::FenceGetWin32HandleInfoKHR<'_>,
    out: *mut vk::HANDLE,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device.as_raw()) }?;
            match dev.fence {
                Mode::Emulated => {}
                // SAFETY: the application's arguments, passed to the driver's own command.
                Mode::Native => return Err(unsafe { native_get_fence(&dev, info, out) }),
                Mode::Off => return Err(not_enabled(&dev, "VK_KHR_external_fence_win32")),
            }
            // SAFETY: as above.
            let info = unsafe { input(info) }?;
            let Some(fence) = FENCES.get(&(dev.key, info.fence.as_raw())) else {
                return Err(dev.reporter().validation(
                    "VUID-VkFenceGetWin32HandleInfoKHR-fence-parameter",
                    "not a fence of this device",
                ));
            };
            let ty = info.handle_type;
            if ty != vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32
                && ty != vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT
            {
                return Err(dev.reporter().validation(
                    "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01452",
                    &format!("{ty:?} is not a Win32 handle type for fences"),
                ));
            }
            if !fence.imported.load(Ordering::Relaxed) && !fence.export_types.contains(ty) {
                return Err(dev.reporter().validation(
                    "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01448",
                    "the fence was not created exportable as this handle type",
                ));
            }
            let nt = ty == vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32;
            if nt && !fence.exports.attributes.allows_signal() {
                return Err(read_only_refused(&dev, fence.exports.attributes.access));
            }
            let fd = driver_fence_fd(&dev, info.fence)?;
            let handle = export(
                &dev,
                &fence.exports,
                ty.as_raw(),
                nt,
                fd,
                TAG_FENCE,
                "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01449",
            )?;
            // SAFETY: writable output per valid usage.
            unsafe { write_handle(out, handle, nt) }
        })())
    })
}

fn driver_fence_fd(dev: &DeviceData, fence: vk::Fence) -> VkResult<OwnedFd> {
    let get = dev.fns.get_fence_fd.ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
    let info = vk::FenceGetFdInfoKHR::default()
        .fence(fence)
        .handle_type(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD);
    let mut fd = -1;
    // SAFETY: valid input and output per the driver's command.
    let r = unsafe { get(dev.handle, &info, &mut fd) };
    if r != vk::Result::SUCCESS {
        return Err(r);
    }
    if fd < 0 {
        return Err(export_failed(dev, &HandleError::InvalidHandle));
    }
    // SAFETY: the driver returned a new fd the caller owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    dev.fd_kinds.learn(Object::Fence, fd.as_fd());
    Ok(fd)
}

fn driver_semaphore_fd(dev: &DeviceData, semaphore: vk::Semaphore) -> VkResult<OwnedFd> {
    let get = dev
        .fns
        .get_semaphore_fd
        .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
    let info = vk::SemaphoreGetFdInfoKHR::default()
        .semaphore(semaphore)
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
    let mut fd = -1;
    // SAFETY: valid input and output per the driver's command.
    let r = unsafe { get(dev.handle, &info, &mut fd) };
    if r != vk::Result::SUCCESS {
        return Err(r);
    }
    if fd < 0 {
        return Err(export_failed(dev, &HandleError::InvalidHandle));
    }
    // SAFETY: the driver returned a new fd the caller owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    dev.fd_kinds.learn(Object::Semaphore, fd.as_fd());
    Ok(fd)
}

/// # Safety
/// Per `vkGetSemaphoreWin32HandleKHR`.
pub unsafe extern "system" fn get_semaphore_win32_handle(
    device: vk::Device,
    info: *const vk::SemaphoreGetWin32HandleInfoKHR<'_>,
    out: *mut vk::HANDLE,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device.as_raw()) }?;
            match dev.semaphore {
                Mode::Emulated => {}
                // SAFETY: the application's arguments, passed to the driver's own command.
                Mode::Native => return Err(unsafe { native_get_semaphore(&dev, info, out) }),
                Mode::Off => return Err(not_enabled(&dev, "VK_KHR_external_semaphore_win32")),
            }
            // SAFETY: as above.
            let info = unsafe { input(info) }?;
            let Some(sem) = SEMAPHORES.get(&(dev.key, info.semaphore.as_raw())) else {
                return Err(dev.reporter().validation(
                    "VUID-VkSemaphoreGetWin32HandleInfoKHR-semaphore-parameter",
                    "not a semaphore of this device",
                ));
            };
            let ty = info.handle_type;
            let offered = offered_semaphore_types(&dev, sem.timeline);
            if ty.is_empty() || !offered.contains(ty) || ty.as_raw().count_ones() != 1 {
                return Err(dev.reporter().validation(
                    "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01131",
                    &format!(
                        "{ty:?} is not a Win32 handle type offered for a {} semaphore",
                        if sem.timeline { "timeline" } else { "binary" }
                    ),
                ));
            }
            if !sem.imported.load(Ordering::Relaxed) && !sem.export_types.contains(ty) {
                return Err(dev.reporter().validation(
                    "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01126",
                    "the semaphore was not created exportable as this handle type",
                ));
            }
            let d3d12 = ty == vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
            if d3d12 && !sem.d3d12.load(Ordering::Relaxed) {
                return Err(dev.reporter().validation(
                    "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01126",
                    "the semaphore's payload is not a D3D12 fence",
                ));
            }
            let nt = ty != vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
            if nt && !sem.exports.attributes.allows_signal() {
                return Err(read_only_refused(&dev, sem.exports.attributes.access));
            }
            let fd = driver_semaphore_fd(&dev, info.semaphore)?;
            let handle = export(
                &dev,
                &sem.exports,
                ty.as_raw(),
                nt,
                fd,
                semaphore_tag(&sem),
                "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01127",
            )?;
            // SAFETY: writable output per valid usage.
            unsafe { write_handle(out, handle, nt) }
        })())
    })
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
    handle_and_name: &'static str,
    name_with_kmt: &'static str,
}

const FENCE_IMPORT: ImportVuids = ImportVuids {
    handle_and_name: "VUID-VkImportFenceWin32HandleInfoKHR-handle-01462",
    name_with_kmt: "VUID-VkImportFenceWin32HandleInfoKHR-handleType-01459",
};

const SEMAPHORE_IMPORT: ImportVuids = ImportVuids {
    handle_and_name: "VUID-VkImportSemaphoreWin32HandleInfoKHR-handle-01469",
    name_with_kmt: "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-01466",
};

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

/// # Safety
/// Per `vkImportFenceWin32HandleKHR`.
pub unsafe extern "system" fn import_fence_win32_handle(
    device: vk::Device,
    info: *const vk::ImportFenceWin32HandleInfoKHR<'_>,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device.as_raw()) }?;
            match dev.fence {
                Mode::Emulated => {}
                // SAFETY: the application's arguments, passed to the driver's own command.
                Mode::Native => return Err(unsafe { native_import_fence(&dev, info) }),
                Mode::Off => return Err(not_enabled(&dev, "VK_KHR_external_fence_win32")),
            }
            // SAFETY: as above.
            let info = unsafe { input(info) }?;
            let Some(fence) = FENCES.get(&(dev.key, info.fence.as_raw())) else {
                return Err(dev.reporter().validation(
                    "VUID-VkImportFenceWin32HandleInfoKHR-fence-parameter",
                    "not a fence of this device",
                ));
            };
            let ty = info.handle_type;
            let kmt = ty == vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT;
            if ty != vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32 && !kmt {
                return Err(dev.reporter().validation(
                    "VUID-VkImportFenceWin32HandleInfoKHR-handleType-01457",
                    &format!("{ty:?} is not a Win32 handle type for fences"),
                ));
            }
            // SAFETY: `name` is NULL or a NUL-terminated string per valid usage; the handle is borrowed.
            let (tag, fd) = unsafe { resolve(&dev, info.handle, info.name, kmt, &FENCE_IMPORT) }?;
            if let Some(tag) = tag
                && tag & 0xffff_0000 == TAG_PREFIX
                && tag != TAG_FENCE
            {
                return Err(invalid_handle(&dev, "the handle names a semaphore, not a fence"));
            }
            check_kind(&dev, Object::Fence, fd.as_fd())?;
            let import = dev.fns.import_fence_fd.ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            let raw = fd.into_raw_fd();
            let fd_info = vk::ImportFenceFdInfoKHR::default()
                .fence(info.fence)
                .flags(info.flags)
                .handle_type(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD)
                .fd(raw);
            // SAFETY: a valid import of an fd the layer owns; on success the driver owns it.
            let r = unsafe { import(dev.handle, &fd_info) };
            if r != vk::Result::SUCCESS {
                // SAFETY: the driver did not take the fd; it is still ours to close.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
                return Err(driver_import_failed(&dev, Object::Fence, r));
            }
            if !info.flags.contains(vk::FenceImportFlags::TEMPORARY) {
                fence.exports.forget();
            }
            fence.imported.store(true, Ordering::Relaxed);
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkImportSemaphoreWin32HandleKHR`.
pub unsafe extern "system" fn import_semaphore_win32_handle(
    device: vk::Device,
    info: *const vk::ImportSemaphoreWin32HandleInfoKHR<'_>,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device.as_raw()) }?;
            match dev.semaphore {
                Mode::Emulated => {}
                // SAFETY: the application's arguments, passed to the driver's own command.
                Mode::Native => return Err(unsafe { native_import_semaphore(&dev, info) }),
                Mode::Off => return Err(not_enabled(&dev, "VK_KHR_external_semaphore_win32")),
            }
            // SAFETY: as above.
            let info = unsafe { input(info) }?;
            let Some(sem) = SEMAPHORES.get(&(dev.key, info.semaphore.as_raw())) else {
                return Err(dev.reporter().validation(
                    "VUID-VkImportSemaphoreWin32HandleInfoKHR-semaphore-parameter",
                    "not a semaphore of this device",
                ));
            };
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
            let temporary = info.flags.contains(vk::SemaphoreImportFlags::TEMPORARY);
            if temporary && sem.timeline {
                return Err(dev.reporter().validation(
                    "VUID-VkImportSemaphoreWin32HandleInfoKHR-flags-03322",
                    "a timeline semaphore payload cannot be imported temporarily",
                ));
            }
            let kmt = ty == vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
            // SAFETY: `name` is NULL or a NUL-terminated string per valid usage; the handle is borrowed.
            let (tag, fd) = unsafe { resolve(&dev, info.handle, info.name, kmt, &SEMAPHORE_IMPORT) }?;
            let mut d3d12 = ty == vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
            if let Some(tag) = tag
                && tag & 0xffff_0000 == TAG_PREFIX
            {
                if tag == TAG_FENCE {
                    return Err(invalid_handle(&dev, "the handle names a fence, not a semaphore"));
                }
                if (tag == TAG_BINARY) == sem.timeline {
                    return Err(dev.reporter().validation(
                        "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-03262",
                        "the exporter's semaphore type does not match this semaphore's",
                    ));
                }
                d3d12 |= tag == TAG_D3D12;
            }
            check_kind(&dev, Object::Semaphore, fd.as_fd())?;
            // Checked once the handle is known to be good (D3D12_FENCE into a binary semaphore).
            if !offered_semaphore_types(&dev, sem.timeline).contains(ty) {
                return Err(not_offered());
            }
            let import = dev
                .fns
                .import_semaphore_fd
                .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            let raw = fd.into_raw_fd();
            let fd_info = vk::ImportSemaphoreFdInfoKHR::default()
                .semaphore(info.semaphore)
                .flags(info.flags)
                .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD)
                .fd(raw);
            // SAFETY: a valid import of an fd the layer owns; on success the driver owns it.
            let r = unsafe { import(dev.handle, &fd_info) };
            if r != vk::Result::SUCCESS {
                // SAFETY: the driver did not take the fd; it is still ours to close.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
                return Err(driver_import_failed(&dev, Object::Semaphore, r));
            }
            if !temporary {
                sem.exports.forget();
                sem.d3d12.store(d3d12 && sem.timeline, Ordering::Relaxed);
                sem.last_signal.store(0, Ordering::Relaxed);
            }
            sem.imported.store(true, Ordering::Relaxed);
            Ok(())
        })())
    })
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

//! `VK_KHR_external_fence_fd` and `VK_KHR_external_semaphore_fd`: `vkGetFenceFdKHR`,
//! `vkImportFenceFdKHR`, `vkGetSemaphoreFdKHR`, `vkImportSemaphoreFdKHR`.
//!
//! OPAQUE_FD is the payload's memfd page (reference transference); SYNC_FD is a pollable fd
//! (copy transference, temporary only; `-1` means already signaled both ways). An fd import takes
//! ownership of the fd only when it succeeds.

use std::ffi::c_int;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};

use ash::vk;
use ash::vk::Handle;
use tether_payload::{Payload, PayloadKind};

use super::sync::lookup;
use super::{VkResult, device, guard, result, write_out};
use crate::handle_table::{FENCES, SEMAPHORES};
use crate::handle_types::{HandleType, HandleTypeInfo};
use crate::objects::device::Device;
use crate::objects::physical_device::IDENTITY;
use crate::sync::Permanence;
use crate::sync::semaphore::SemaphoreType;

/// Reports an import that names no usable payload.
pub fn invalid_handle(dev: &Device, text: &str) -> vk::Result {
    dev.debug.failure("tether-invalid-external-handle", text);
    vk::Result::ERROR_INVALID_EXTERNAL_HANDLE
}

/// Reports a broken valid-usage rule.
pub fn invalid_usage(dev: &Device, vuid: &str, text: &str) -> vk::Result {
    dev.debug.validation(vuid, text);
    vk::Result::ERROR_VALIDATION_FAILED_EXT
}

/// Borrows an fd the application passed in, if it is open.
///
/// # Safety
/// `fd` is only used for the duration of the call; the caller still owns it.
unsafe fn borrow_open_fd<'a>(fd: c_int) -> Option<BorrowedFd<'a>> {
    if fd < 0 {
        return None;
    }
    // SAFETY: a non-negative fd number the application handed us; `fcntl(F_GETFD)` on it is
    // harmless even if it is closed, and we only go on if it is open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed).ok().map(|_| borrowed)
}

/// Takes ownership of an fd after a successful import.
///
/// # Safety
/// `fd` must be an open fd the application transferred to us.
unsafe fn take_fd(fd: c_int) -> OwnedFd {
    // SAFETY: per the caller's contract, the import succeeded and the fd is now ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens the payload behind an application's fd as the given handle type. On success the fd
/// belongs to the driver (closed for OPAQUE_FD, kept inside the payload for SYNC_FD).
///
/// # Safety
/// `fd` is the application's; it is closed only when `Ok` is returned.
unsafe fn import_payload(dev: &Device, row: &HandleTypeInfo, fd: c_int, flag_kind: PayloadKind) -> VkResult<Payload> {
    match row.handle_type {
        HandleType::SyncFd => {
            if fd == -1 {
                return Ok(Payload::new_private(flag_kind, 1));
            }
            // SAFETY: the fd is only borrowed for the check.
            if unsafe { borrow_open_fd(fd) }.is_none() {
                return Err(invalid_handle(dev, &format!("SYNC_FD import: fd {fd} is not open")));
            }
            // SAFETY: the fd is open and the import succeeds from here on.
            Ok(Payload::from_sync_file(flag_kind, unsafe { take_fd(fd) }))
        }
        _ => {
            // SAFETY: the fd is only borrowed for the import.
            let Some(borrowed) = (unsafe { borrow_open_fd(fd) }) else {
                return Err(invalid_handle(dev, &format!("OPAQUE_FD import: fd {fd} is not open")));
            };
            let payload = Payload::import(borrowed, &IDENTITY)
                .map_err(|e| invalid_handle(dev, &format!("OPAQUE_FD import of fd {fd}: {e}")))?;
            Ok(payload)
        }
    }
}

/// The exported fd for a payload: a new close-on-exec fd, or `-1` for an already signaled
/// SYNC_FD.
fn export_payload(dev: &Device, row: &HandleTypeInfo, payload: &Payload) -> VkResult<c_int> {
    let exported = match row.handle_type {
        HandleType::SyncFd => payload.export_sync_file(),
        _ => match payload.share_fd() {
            Some(fd) => fd.try_clone_to_owned().map(Some),
            None => {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkFenceGetFdInfoKHR-handleType-01453",
                    "the current payload cannot be exported as OPAQUE_FD (it was not created exportable, or was imported from a SYNC_FD)",
                ));
            }
        },
    };
    match exported {
        Ok(Some(fd)) => Ok(fd.into_raw_fd()),
        Ok(None) => Ok(-1),
        Err(e) => {
            dev.debug
                .failure("tether-export-failed", &format!("export failed: {e}"));
            Err(if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) {
                vk::Result::ERROR_TOO_MANY_OBJECTS
            } else {
                vk::Result::ERROR_OUT_OF_HOST_MEMORY
            })
        }
    }
}

/// # Safety
/// Per `vkGetFenceFdKHR`.
pub unsafe extern "system" fn get_fence_fd(
    device: vk::Device,
    info: *const vk::FenceGetFdInfoKHR<'_>,
    out: *mut c_int,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkGetFenceFdKHR",
                    "pGetFdInfo",
                    "VkFenceGetFdInfoKHR",
                    Some(&[]),
                )
            }?;
            let fence = lookup(
                &FENCES,
                dev,
                info.fence.as_raw(),
                "VUID-VkFenceGetFdInfoKHR-fence-parameter",
            )?;
            let row = dev
                .handle_mode
                .fence_row(info.handle_type)
                .filter(|r| r.family == crate::handle_types::HandleFamily::Fd)
                .ok_or_else(|| {
                    invalid_usage(
                        dev,
                        "VUID-VkFenceGetFdInfoKHR-handleType-01456",
                        "not an fd handle type offered for fences",
                    )
                })?;
            if !fence.slot.active_is_imported() && !fence.export_types.contains(info.handle_type) {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkFenceGetFdInfoKHR-handleType-01453",
                    "the fence was not created exportable as this handle type",
                ));
            }
            if row.handle_type == HandleType::SyncFd
                && !fence.is_signaled()
                && !fence.pending.is_pending()
                && !fence.slot.active().is_shared()
            {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkFenceGetFdInfoKHR-handleType-01454",
                    "a SYNC_FD export needs the fence signaled or a signal pending",
                ));
            }
            let payload = fence.slot.take_active();
            let fd = export_payload(dev, row, &payload)?;
            // SAFETY: writable output per valid usage.
            unsafe { write_out(out, fd) }
        })())
    })
}

/// # Safety
/// Per `vkImportFenceFdKHR`.
pub unsafe extern "system" fn import_fence_fd(
    device: vk::Device,
    info: *const vk::ImportFenceFdInfoKHR<'_>,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkImportFenceFdKHR",
                    "pImportFenceFdInfo",
                    "VkImportFenceFdInfoKHR",
                    Some(&[]),
                )
            }?;
            let fence = lookup(
                &FENCES,
                dev,
                info.fence.as_raw(),
                "VUID-VkImportFenceFdInfoKHR-fence-parameter",
            )?;
            if fence.pending.is_pending() {
                return Err(invalid_usage(
                    dev,
                    "VUID-vkImportFenceFdKHR-fence-01463",
                    "the fence is tied to unfinished queue work",
                ));
            }
            let row = dev
                .handle_mode
                .fence_row(info.handle_type)
                .filter(|r| r.family == crate::handle_types::HandleFamily::Fd)
                .ok_or_else(|| {
                    invalid_usage(
                        dev,
                        "VUID-VkImportFenceFdInfoKHR-handleType-01464",
                        "not an fd handle type offered for fences",
                    )
                })?;
            let permanence = Permanence::from_temporary_flag(info.flags.contains(vk::FenceImportFlags::TEMPORARY));
            if permanence == Permanence::Permanent && !row.permanent_import_allowed() {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkImportFenceFdInfoKHR-handleType-07306",
                    "SYNC_FD imports must be temporary",
                ));
            }
            // SAFETY: the application's fd; closed only on success.
            let payload = unsafe { import_payload(dev, row, info.fd, PayloadKind::Fence) }?;
            if payload.kind() != PayloadKind::Fence {
                // The fd was not consumed: an OPAQUE_FD import only borrows it until here.
                return Err(invalid_handle(
                    dev,
                    &format!("fd {} holds a {:?} payload, not a fence", info.fd, payload.kind()),
                ));
            }
            if row.handle_type == HandleType::OpaqueFd {
                // SAFETY: the import succeeded, so the application's fd is ours to close.
                drop(unsafe { take_fd(info.fd) });
            }
            fence.slot.install(payload, permanence);
            Ok(())
        })())
    })
}

/// Whether a payload of `kind` can stand behind a semaphore of type `ty`.
pub fn payload_fits_semaphore(kind: PayloadKind, ty: SemaphoreType) -> bool {
    match ty {
        SemaphoreType::Binary => matches!(kind, PayloadKind::BinarySemaphore | PayloadKind::D3d12Fence),
        SemaphoreType::Timeline => matches!(kind, PayloadKind::Timeline | PayloadKind::D3d12Fence),
    }
}

/// # Safety
/// Per `vkGetSemaphoreFdKHR`.
pub unsafe extern "system" fn get_semaphore_fd(
    device: vk::Device,
    info: *const vk::SemaphoreGetFdInfoKHR<'_>,
    out: *mut c_int,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkGetSemaphoreFdKHR",
                    "pGetFdInfo",
                    "VkSemaphoreGetFdInfoKHR",
                    Some(&[]),
                )
            }?;
            let semaphore = lookup(
                &SEMAPHORES,
                dev,
                info.semaphore.as_raw(),
                "VUID-VkSemaphoreGetFdInfoKHR-semaphore-parameter",
            )?;
            let row = dev
                .handle_mode
                .semaphore_row(semaphore.semaphore_type.object_kind(), info.handle_type)
                .filter(|r| r.family == crate::handle_types::HandleFamily::Fd)
                .ok_or_else(|| {
                    invalid_usage(
                        dev,
                        "VUID-VkSemaphoreGetFdInfoKHR-handleType-01136",
                        "not an fd handle type offered for this semaphore type",
                    )
                })?;
            if !semaphore.slot.active_is_imported() && !semaphore.export_types.contains(info.handle_type) {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkSemaphoreGetFdInfoKHR-handleType-01132",
                    "the semaphore was not created exportable as this handle type",
                ));
            }
            let active = semaphore.slot.active();
            if row.handle_type == HandleType::SyncFd
                && !active.is_signaled()
                && !semaphore.pending.is_pending()
                && !active.is_shared()
            {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkSemaphoreGetFdInfoKHR-handleType-03254",
                    "a SYNC_FD export needs the semaphore signaled or a signal pending",
                ));
            }
            let payload = semaphore.slot.take_active();
            let fd = export_payload(dev, row, &payload)?;
            // SAFETY: writable output per valid usage.
            unsafe { write_out(out, fd) }
        })())
    })
}

/// # Safety
/// Per `vkImportSemaphoreFdKHR`.
pub unsafe extern "system" fn import_semaphore_fd(
    device: vk::Device,
    info: *const vk::ImportSemaphoreFdInfoKHR<'_>,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkImportSemaphoreFdKHR",
                    "pImportSemaphoreFdInfo",
                    "VkImportSemaphoreFdInfoKHR",
                    Some(&[]),
                )
            }?;
            let semaphore = lookup(
                &SEMAPHORES,
                dev,
                info.semaphore.as_raw(),
                "VUID-VkImportSemaphoreFdInfoKHR-semaphore-parameter",
            )?;
            if semaphore.pending.is_pending() {
                return Err(invalid_usage(
                    dev,
                    "VUID-vkImportSemaphoreFdKHR-semaphore-01142",
                    "the semaphore is tied to unfinished queue work",
                ));
            }
            let ty = semaphore.semaphore_type;
            let row = dev
                .handle_mode
                .semaphore_row(ty.object_kind(), info.handle_type)
                .filter(|r| r.family == crate::handle_types::HandleFamily::Fd);
            let Some(row) = row else {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkImportSemaphoreFdInfoKHR-handleType-01143",
                    &format!(
                        "{:?} is not an fd handle type offered for a {ty:?} semaphore",
                        info.handle_type
                    ),
                ));
            };
            let permanence = Permanence::from_temporary_flag(info.flags.contains(vk::SemaphoreImportFlags::TEMPORARY));
            if permanence == Permanence::Permanent && !row.permanent_import_allowed() {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkImportSemaphoreFdInfoKHR-handleType-07307",
                    "SYNC_FD imports must be temporary",
                ));
            }
            if permanence == Permanence::Temporary && ty == SemaphoreType::Timeline {
                return Err(invalid_usage(
                    dev,
                    "VUID-VkImportSemaphoreFdInfoKHR-flags-03323",
                    "a timeline semaphore payload cannot be imported temporarily",
                ));
            }
            // SAFETY: the application's fd; closed only on success.
            let payload = unsafe { import_payload(dev, row, info.fd, PayloadKind::BinarySemaphore) }?;
            if !payload_fits_semaphore(payload.kind(), ty) {
                return Err(invalid_handle(
                    dev,
                    &format!(
                        "fd {} holds a {:?} payload, which cannot back a {ty:?} semaphore",
                        info.fd,
                        payload.kind()
                    ),
                ));
            }
            if row.handle_type == HandleType::OpaqueFd {
                // SAFETY: the import succeeded, so the application's fd is ours to close.
                drop(unsafe { take_fd(info.fd) });
            }
            semaphore.slot.install(payload, permanence);
            Ok(())
        })())
    })
}

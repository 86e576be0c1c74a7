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
use tether_handles::Win32Exports;
use tether_payload::{Payload, PayloadKind};

use super::sync::lookup;
use super::{VkResult, guard, result, write_out};
use crate::handle_table::{DeviceChild, FENCES, HandleTable, ObjectRef, SEMAPHORES};
use crate::handle_types::{HandleFamily, HandleType, HandleTypeInfo};
use crate::objects::device::Device;
use crate::objects::physical_device::IDENTITY;
use crate::sync::fence::Fence;
use crate::sync::semaphore::{Semaphore, SemaphoreType};
use crate::sync::{PayloadSlot, PendingWork, Permanence};

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

/// One export or import command as its checks name it: the command, its input parameter and
/// structure, and the id of an unknown object.
pub struct Command {
    pub name: &'static str,
    pub param: &'static str,
    pub structure: &'static str,
    pub object_vuid: &'static str,
}

/// The object an export or import is about, with the handle-type bit it names.
#[derive(Clone, Copy)]
pub enum Target {
    Fence(vk::ExternalFenceHandleTypeFlags),
    Semaphore(SemaphoreType, vk::ExternalSemaphoreHandleTypeFlags),
}

/// What the export and import commands need of a fence or a semaphore.
pub trait External: DeviceChild {
    /// For messages: `fence`, `semaphore`.
    const NAME: &'static str;
    /// The payload a SYNC_FD import makes (of `-1`, or around the sync file).
    const SYNC_FD_PAYLOAD: PayloadKind;
    fn pending(&self) -> &PendingWork;
    fn slot(&self) -> &PayloadSlot;
    fn win32(&self) -> &Win32Exports;
    /// Why a payload of `kind` cannot stand behind it (the end of a message), if it cannot.
    fn refuses(&self, kind: PayloadKind) -> Option<String>;
    /// The target of a command that names the raw handle-type bit `bit`.
    fn target(&self, bit: u32) -> Target;
    /// Whether it was created exportable as the raw handle-type bit `bit`.
    fn created_exportable_as(&self, bit: u32) -> bool;
}

impl External for Fence {
    const NAME: &'static str = "fence";
    const SYNC_FD_PAYLOAD: PayloadKind = PayloadKind::Fence;

    fn pending(&self) -> &PendingWork {
        &self.pending
    }

    fn slot(&self) -> &PayloadSlot {
        &self.slot
    }

    fn win32(&self) -> &Win32Exports {
        &self.win32
    }

    fn refuses(&self, kind: PayloadKind) -> Option<String> {
        (kind != PayloadKind::Fence).then(|| "not a fence".to_owned())
    }

    fn target(&self, bit: u32) -> Target {
        Target::Fence(vk::ExternalFenceHandleTypeFlags::from_raw(bit))
    }

    fn created_exportable_as(&self, bit: u32) -> bool {
        self.export_types
            .contains(vk::ExternalFenceHandleTypeFlags::from_raw(bit))
    }
}

impl External for Semaphore {
    const NAME: &'static str = "semaphore";
    const SYNC_FD_PAYLOAD: PayloadKind = PayloadKind::BinarySemaphore;

    fn pending(&self) -> &PendingWork {
        &self.pending
    }

    fn slot(&self) -> &PayloadSlot {
        &self.slot
    }

    fn win32(&self) -> &Win32Exports {
        &self.win32
    }

    fn refuses(&self, kind: PayloadKind) -> Option<String> {
        let ty = self.semaphore_type;
        (!payload_fits_semaphore(kind, ty)).then(|| format!("which cannot back a {ty:?} semaphore"))
    }

    fn target(&self, bit: u32) -> Target {
        Target::Semaphore(self.semaphore_type, vk::ExternalSemaphoreHandleTypeFlags::from_raw(bit))
    }

    fn created_exportable_as(&self, bit: u32) -> bool {
        self.export_types
            .contains(vk::ExternalSemaphoreHandleTypeFlags::from_raw(bit))
    }
}

/// The input of an export command: the object it names and the raw handle-type bit.
pub trait ExportInfo: vk::TaggedStructure {
    fn object(&self) -> u64;
    fn handle_type(&self) -> u32;
}

/// The input of an import command: the object it names, the raw handle-type bit and whether
/// the import is temporary.
pub trait ImportInfo: ExportInfo {
    fn temporary(&self) -> bool;
}

macro_rules! command_info {
    ($($info:ident: $object:ident $(, vk::$flags:ident)?;)*) => {$(
        impl ExportInfo for vk::$info<'_> {
            fn object(&self) -> u64 {
                self.$object.as_raw()
            }

            fn handle_type(&self) -> u32 {
                self.handle_type.as_raw()
            }
        }
        $(impl ImportInfo for vk::$info<'_> {
            fn temporary(&self) -> bool {
                self.flags.contains(vk::$flags::TEMPORARY)
            }
        })?
    )*};
}

command_info! {
    FenceGetFdInfoKHR: fence;
    SemaphoreGetFdInfoKHR: semaphore;
    FenceGetWin32HandleInfoKHR: fence;
    SemaphoreGetWin32HandleInfoKHR: semaphore;
    ImportFenceFdInfoKHR: fence, vk::FenceImportFlags;
    ImportSemaphoreFdInfoKHR: semaphore, vk::SemaphoreImportFlags;
    ImportFenceWin32HandleInfoKHR: fence, vk::FenceImportFlags;
    ImportSemaphoreWin32HandleInfoKHR: semaphore, vk::SemaphoreImportFlags;
}

/// What an export or import command has checked when its own work starts.
pub struct Begun<'a, I, T: 'static> {
    pub dev: &'a Device,
    pub info: &'a I,
    pub object: ObjectRef<T>,
    /// The row of the handle type it names.
    pub row: &'static HandleTypeInfo,
    /// Imports: the permanence asked for.
    pub permanence: Permanence,
}

/// The ids an export command reports its prologue's broken rules under: all that the fd and
/// Win32 exports of fences and semaphores differ in there.
pub struct ExportVuids {
    pub command: Command,
    pub family: HandleFamily,
    /// The handle type is not one of the family's offered for the object.
    pub handle_type: &'static str,
    /// The object was not created exportable as the type (and holds no import).
    pub not_exportable: &'static str,
}

/// The ids (and the one text) an import command reports its prologue's broken rules under: all
/// that the fd and Win32 imports of fences and semaphores differ in there.
pub struct ImportVuids {
    pub command: Command,
    pub family: HandleFamily,
    /// The object is tied to unfinished queue work, and what to say.
    pub in_use: &'static str,
    pub in_use_text: &'static str,
    /// The handle type is not one of the family's offered for the object.
    pub handle_type: &'static str,
    /// A copy-transference type (SYNC_FD) imported permanently (`None`: the family has none).
    pub permanent_copy: Option<&'static str>,
    /// A temporary import into a timeline semaphore (`None`: a fence command).
    pub temporary_timeline: Option<&'static str>,
}

/// The start every export and import command shares: the device, the input structure (checked:
/// NULL, sType, pNext) and the live object it names.
///
/// # Safety
/// `device` is a device of this driver; `info` is NULL or valid for `'a`.
unsafe fn begin<'a, I: ExportInfo, T: DeviceChild>(
    device: vk::Device,
    info: *const I,
    command: &Command,
    table: &'static HandleTable<T>,
) -> VkResult<(&'a Device, &'a I, ObjectRef<T>)> {
    // SAFETY: per the caller's contract.
    let dev = unsafe { super::device(device) }?;
    // SAFETY: as above.
    let info = unsafe {
        super::input_struct(
            &dev.debug,
            info,
            command.name,
            command.param,
            command.structure,
            Some(&[]),
        )
    }?;
    let object = lookup(table, dev, info.object(), command.object_vuid)?;
    Ok((dev, info, object))
}

/// The row of the handle type a command names, if the device offers it for the object in
/// `family`; else the broken rule `vuid` (an import's message names the type).
fn offered_row(
    dev: &Device,
    target: Target,
    family: HandleFamily,
    vuid: &str,
    import: bool,
) -> VkResult<&'static HandleTypeInfo> {
    let row = match target {
        Target::Fence(bit) => dev.handle_mode.fence_row(bit),
        Target::Semaphore(ty, bit) => dev.handle_mode.semaphore_row(ty.object_kind(), bit),
    };
    row.filter(|r| r.family == family).ok_or_else(|| {
        let family = match family {
            HandleFamily::Fd => "an fd",
            HandleFamily::Win32 => "a Win32",
        };
        let text = match target {
            Target::Fence(_) => format!("not {family} handle type offered for fences"),
            Target::Semaphore(ty, bit) if import => {
                format!("{bit:?} is not {family} handle type offered for a {ty:?} semaphore")
            }
            Target::Semaphore(..) => format!("not {family} handle type offered for this semaphore type"),
        };
        invalid_usage(dev, vuid, &text)
    })
}

/// The start of an export command: `begin`, then the handle type must be one of the family's
/// offered for the object, and the object created exportable as it (or hold an import).
///
/// # Safety
/// `device` is a device of this driver; `info` is NULL or valid for `'a`.
pub unsafe fn begin_export<'a, I: ExportInfo, T: External>(
    device: vk::Device,
    info: *const I,
    vuids: &ExportVuids,
    table: &'static HandleTable<T>,
) -> VkResult<Begun<'a, I, T>> {
    // SAFETY: per the caller's contract.
    let (dev, info, object) = unsafe { begin(device, info, &vuids.command, table) }?;
    let bit = info.handle_type();
    let target = object.target(bit);
    let row = offered_row(dev, target, vuids.family, vuids.handle_type, false)?;
    if !object.slot().active_is_imported() && !object.created_exportable_as(bit) {
        return Err(invalid_usage(
            dev,
            vuids.not_exportable,
            &format!("the {} was not created exportable as this handle type", T::NAME),
        ));
    }
    Ok(Begun {
        dev,
        info,
        object,
        row,
        permanence: Permanence::Permanent,
    })
}

/// The start of an import command, everything it checks before it opens the handle: `begin`,
/// then the object must not be tied to unfinished queue work, the handle type must be one of
/// the family's offered for the object, and the permanence one the type and the object allow.
///
/// # Safety
/// `device` is a device of this driver; `info` is NULL or valid for `'a`.
pub unsafe fn begin_import<'a, I: ImportInfo, T: External>(
    device: vk::Device,
    info: *const I,
    vuids: &ImportVuids,
    table: &'static HandleTable<T>,
) -> VkResult<Begun<'a, I, T>> {
    // SAFETY: per the caller's contract.
    let (dev, info, object) = unsafe { begin(device, info, &vuids.command, table) }?;
    let (bit, temporary) = (info.handle_type(), info.temporary());
    if object.pending().is_pending() {
        return Err(invalid_usage(dev, vuids.in_use, vuids.in_use_text));
    }
    let target = object.target(bit);
    let row = offered_row(dev, target, vuids.family, vuids.handle_type, true)?;
    let permanence = Permanence::from_temporary_flag(temporary);
    if let Some(vuid) = vuids.permanent_copy
        && permanence == Permanence::Permanent
        && !row.permanent_import_allowed()
    {
        return Err(invalid_usage(dev, vuid, "SYNC_FD imports must be temporary"));
    }
    if let Some(vuid) = vuids.temporary_timeline
        && permanence == Permanence::Temporary
        && matches!(target, Target::Semaphore(SemaphoreType::Timeline, _))
    {
        return Err(invalid_usage(
            dev,
            vuid,
            "a timeline semaphore payload cannot be imported temporarily",
        ));
    }
    Ok(Begun {
        dev,
        info,
        object,
        row,
        permanence,
    })
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

/// Whether a payload of `kind` can stand behind a semaphore of type `ty`.
pub fn payload_fits_semaphore(kind: PayloadKind, ty: SemaphoreType) -> bool {
    match ty {
        SemaphoreType::Binary => matches!(kind, PayloadKind::BinarySemaphore | PayloadKind::D3d12Fence),
        SemaphoreType::Timeline => matches!(kind, PayloadKind::Timeline | PayloadKind::D3d12Fence),
    }
}

/// The ids an fd export command reports its broken rules under.
struct FdExportVuids {
    prologue: ExportVuids,
    /// A SYNC_FD export of an object neither signaled nor with a signal pending.
    sync_fd_unsignaled: &'static str,
}

/// `vkGet{Fence,Semaphore}FdKHR`.
///
/// # Safety
/// Per the command.
unsafe fn get_fd<I: ExportInfo, T: External>(
    device: vk::Device,
    info: *const I,
    out: *mut c_int,
    vuids: &FdExportVuids,
    table: &'static HandleTable<T>,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let Begun { dev, object, row, .. } = unsafe { begin_export(device, info, &vuids.prologue, table) }?;
            let active = object.slot().active();
            if row.handle_type == HandleType::SyncFd
                && !active.is_signaled()
                && !object.pending().is_pending()
                && !active.is_shared()
            {
                return Err(invalid_usage(
                    dev,
                    vuids.sync_fd_unsignaled,
                    &format!("a SYNC_FD export needs the {} signaled or a signal pending", T::NAME),
                ));
            }
            let payload = object.slot().take_active();
            let fd = export_payload(dev, row, &payload)?;
            // SAFETY: writable output per valid usage.
            unsafe { write_out(out, fd) }
        })())
    })
}

/// `vkImport{Fence,Semaphore}FdKHR`. `fd` reads the fd from the input.
///
/// # Safety
/// Per the command.
unsafe fn import_fd<I: ImportInfo, T: External>(
    device: vk::Device,
    info: *const I,
    vuids: &ImportVuids,
    table: &'static HandleTable<T>,
    fd: impl FnOnce(&I) -> c_int,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let Begun {
                dev,
                info,
                object,
                row,
                permanence,
            } = unsafe { begin_import(device, info, vuids, table) }?;
            let fd = fd(info);
            // SAFETY: the application's fd; closed only on success.
            let payload = unsafe { import_payload(dev, row, fd, T::SYNC_FD_PAYLOAD) }?;
            if let Some(refusal) = object.refuses(payload.kind()) {
                // The fd was not consumed: an OPAQUE_FD import only borrows it until here.
                return Err(invalid_handle(
                    dev,
                    &format!("fd {fd} holds a {:?} payload, {refusal}", payload.kind()),
                ));
            }
            if row.handle_type == HandleType::OpaqueFd {
                // SAFETY: the import succeeded, so the application's fd is ours to close.
                drop(unsafe { take_fd(fd) });
            }
            object.slot().install(payload, permanence);
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkGetFenceFdKHR`.
pub unsafe extern "system" fn get_fence_fd(
    device: vk::Device,
    info: *const vk::FenceGetFdInfoKHR<'_>,
    out: *mut c_int,
) -> vk::Result {
    let vuids = FdExportVuids {
        prologue: ExportVuids {
            command: Command {
                name: "vkGetFenceFdKHR",
                param: "pGetFdInfo",
                structure: "VkFenceGetFdInfoKHR",
                object_vuid: "VUID-VkFenceGetFdInfoKHR-fence-parameter",
            },
            family: HandleFamily::Fd,
            handle_type: "VUID-VkFenceGetFdInfoKHR-handleType-01456",
            not_exportable: "VUID-VkFenceGetFdInfoKHR-handleType-01453",
        },
        sync_fd_unsignaled: "VUID-VkFenceGetFdInfoKHR-handleType-01454",
    };
    // SAFETY: per the caller's contract.
    unsafe { get_fd(device, info, out, &vuids, &FENCES) }
}

/// # Safety
/// Per `vkImportFenceFdKHR`.
pub unsafe extern "system" fn import_fence_fd(
    device: vk::Device,
    info: *const vk::ImportFenceFdInfoKHR<'_>,
) -> vk::Result {
    let vuids = ImportVuids {
        command: Command {
            name: "vkImportFenceFdKHR",
            param: "pImportFenceFdInfo",
            structure: "VkImportFenceFdInfoKHR",
            object_vuid: "VUID-VkImportFenceFdInfoKHR-fence-parameter",
        },
        family: HandleFamily::Fd,
        in_use: "VUID-vkImportFenceFdKHR-fence-01463",
        in_use_text: "the fence is tied to unfinished queue work",
        handle_type: "VUID-VkImportFenceFdInfoKHR-handleType-01464",
        permanent_copy: Some("VUID-VkImportFenceFdInfoKHR-handleType-07306"),
        temporary_timeline: None,
    };
    // SAFETY: per the caller's contract.
    unsafe { import_fd(device, info, &vuids, &FENCES, |i| i.fd) }
}

/// # Safety
/// Per `vkGetSemaphoreFdKHR`.
pub unsafe extern "system" fn get_semaphore_fd(
    device: vk::Device,
    info: *const vk::SemaphoreGetFdInfoKHR<'_>,
    out: *mut c_int,
) -> vk::Result {
    let vuids = FdExportVuids {
        prologue: ExportVuids {
            command: Command {
                name: "vkGetSemaphoreFdKHR",
                param: "pGetFdInfo",
                structure: "VkSemaphoreGetFdInfoKHR",
                object_vuid: "VUID-VkSemaphoreGetFdInfoKHR-semaphore-parameter",
            },
            family: HandleFamily::Fd,
            handle_type: "VUID-VkSemaphoreGetFdInfoKHR-handleType-01136",
            not_exportable: "VUID-VkSemaphoreGetFdInfoKHR-handleType-01132",
        },
        sync_fd_unsignaled: "VUID-VkSemaphoreGetFdInfoKHR-handleType-03254",
    };
    // SAFETY: per the caller's contract.
    unsafe { get_fd(device, info, out, &vuids, &SEMAPHORES) }
}

/// # Safety
/// Per `vkImportSemaphoreFdKHR`.
pub unsafe extern "system" fn import_semaphore_fd(
    device: vk::Device,
    info: *const vk::ImportSemaphoreFdInfoKHR<'_>,
) -> vk::Result {
    let vuids = ImportVuids {
        command: Command {
            name: "vkImportSemaphoreFdKHR",
            param: "pImportSemaphoreFdInfo",
            structure: "VkImportSemaphoreFdInfoKHR",
            object_vuid: "VUID-VkImportSemaphoreFdInfoKHR-semaphore-parameter",
        },
        family: HandleFamily::Fd,
        in_use: "VUID-vkImportSemaphoreFdKHR-semaphore-01142",
        in_use_text: "the semaphore is tied to unfinished queue work",
        handle_type: "VUID-VkImportSemaphoreFdInfoKHR-handleType-01143",
        permanent_copy: Some("VUID-VkImportSemaphoreFdInfoKHR-handleType-07307"),
        temporary_timeline: Some("VUID-VkImportSemaphoreFdInfoKHR-flags-03323"),
    };
    // SAFETY: per the caller's contract.
    unsafe { import_fd(device, info, &vuids, &SEMAPHORES, |i| i.fd) }
}

//! `VK_KHR_external_fence_win32` and `VK_KHR_external_semaphore_win32`:
//! `vkGetFenceWin32HandleKHR`, `vkImportFenceWin32HandleKHR`, `vkGetSemaphoreWin32HandleKHR`,
//! `vkImportSemaphoreWin32HandleKHR`, and the create-time `VkExport*Win32HandleInfoKHR`.
//!
//! The handle model is DESIGN.md's contracts 2–4, implemented by `tether_handles`: an NT handle
//! (OPAQUE_WIN32, D3D12_FENCE) is a new fd the caller owns, a KMT handle (OPAQUE_WIN32_KMT) is a
//! global value the broker resolves, a name is resolved through the broker. An import never takes
//! ownership of the caller's handle: the payload keeps its own duplicate.

use std::ffi::c_void;

use ash::vk;
use tether_handles::{
    BorrowedHandle, Broker, ExportError, HandleError, KmtHandle, ObjectName, Win32ExportAttributes, Win32Exports,
};
use tether_payload::{Payload, PayloadKind};

use super::external_fd::{
    Begun, Command, ExportInfo, ExportVuids, External, ImportInfo, ImportVuids, begin_export, begin_import,
    invalid_handle, invalid_usage, payload_fits_semaphore,
};
use super::{VkResult, guard, result, write_out};
use crate::handle_table::{FENCES, HandleTable, SEMAPHORES};
use crate::handle_types::{HandleFamily, HandleType, HandleTypeInfo};
use crate::objects::device::Device;
use crate::objects::physical_device::IDENTITY;
use crate::sync::fence::Fence;
use crate::sync::semaphore::Semaphore;
use crate::sync::{PayloadSlot, Permanence};

/// The message id of an NT export whose name another object holds.
pub const NAME_IN_USE: &str = "tether-name-in-use";

/// Reads `VkExport{Fence,Semaphore}Win32HandleInfoKHR` fields into export attributes.
///
/// # Safety
/// `attributes` must be NULL or point to a `SECURITY_ATTRIBUTES`; `name` NULL or a
/// NUL-terminated UTF-16 string.
pub unsafe fn export_attributes(
    dev: &Device,
    structure: &str,
    attributes: *const c_void,
    access: std::ffi::c_ulong,
    name: *const u16,
) -> VkResult<Win32ExportAttributes> {
    // SAFETY: per the caller's contract.
    unsafe { Win32ExportAttributes::from_raw(attributes, access, name) }.map_err(|e| {
        invalid_usage(
            dev,
            &format!("VUID-{structure}-name-parameter"),
            &format!("bad export name in {structure}: {e}"),
        )
    })
}

/// The broker tag stored with a registration: which handle type exported it.
fn tag(row: &HandleTypeInfo) -> u32 {
    row.handle_type as u32
}

fn broker_error(dev: &Device, what: &str, e: HandleError) -> vk::Result {
    invalid_handle(dev, &format!("{what}: {e}"))
}

/// Exports the active payload of an object as a Win32 handle value.
fn export(
    dev: &Device,
    slot: &PayloadSlot,
    exports: &Win32Exports,
    row: &HandleTypeInfo,
    nt_vuid: &str,
) -> VkResult<isize> {
    let payload = slot.take_active();
    let Some(file) = payload.share_fd() else {
        return Err(invalid_usage(
            dev,
            nt_vuid,
            "the current payload cannot be exported as a Win32 handle (not created exportable, or imported from a SYNC_FD)",
        ));
    };
    match row.handle_type {
        HandleType::OpaqueWin32Kmt => match exports.kmt(file, tag(row)) {
            Ok(kmt) => Ok(kmt.as_raw_handle()),
            Err(ExportError::Broker(e)) => Err(export_failed(dev, &e)),
            Err(ExportError::AlreadyExported) => Err(vk::Result::ERROR_UNKNOWN),
        },
        _ => {
            let type_bit = row.semaphore_bit.as_raw() | row.fence_bit.as_raw();
            if let Err(e) = exports.begin_nt_export(type_bit, file, tag(row)) {
                return Err(match e {
                    ExportError::AlreadyExported => invalid_usage(
                        dev,
                        nt_vuid,
                        "an NT handle of this type was already exported from this object; duplicate that handle instead",
                    ),
                    // The spec allows only TOO_MANY_OBJECTS and OUT_OF_HOST_MEMORY here; a name
                    // taken by another object is the closest: no more objects of that name.
                    ExportError::Broker(HandleError::AlreadyExists) => {
                        dev.debug
                            .failure(NAME_IN_USE, "the export name is already in use by another object");
                        vk::Result::ERROR_TOO_MANY_OBJECTS
                    }
                    ExportError::Broker(e) => export_failed(dev, &e),
                });
            }
            let attrs = &exports.attributes;
            let handle = if attrs.allows_signal() {
                payload
                    .share_fd()
                    .map(|fd| tether_handles::nt::duplicate_handle(fd, attrs.inheritable))
            } else {
                payload.open_read_only_fd().ok().flatten().map(|fd| {
                    let nt = tether_handles::NtHandle::from(fd);
                    nt.set_inheritable(attrs.inheritable).map(|_| nt)
                })
            };
            match handle {
                Some(Ok(nt)) => Ok(nt.into_raw_handle()),
                _ => {
                    exports.abandon_nt_export(type_bit);
                    Err(export_failed(dev, &HandleError::Io(std::io::Error::last_os_error())))
                }
            }
        }
    }
}

fn export_failed(dev: &Device, e: &HandleError) -> vk::Result {
    dev.debug
        .failure("tether-export-failed", &format!("Win32 export failed: {e}"));
    match e {
        HandleError::Io(io) if io.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => {
            vk::Result::ERROR_TOO_MANY_OBJECTS
        }
        _ => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
    }
}

/// Opens the payload a Win32 import names (by handle, KMT value or name). Never takes
/// ownership of `handle`.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated UTF-16 string; `handle` is only borrowed.
unsafe fn open(
    dev: &Device,
    row: &HandleTypeInfo,
    handle: isize,
    name: *const u16,
    vuids: &Win32ImportVuids,
) -> VkResult<Payload> {
    let named = !name.is_null();
    if handle != 0 && named {
        return Err(invalid_usage(
            dev,
            vuids.handle_and_name,
            "handle and name must not both be set",
        ));
    }
    if named && row.handle_type == HandleType::OpaqueWin32Kmt {
        return Err(invalid_usage(
            dev,
            vuids.name_with_kmt,
            "a KMT handle cannot be imported by name",
        ));
    }
    let fd = if named {
        // SAFETY: per the caller's contract; the scan is bounded by the name length limit.
        let name =
            unsafe { ObjectName::from_lpcwstr(name) }.map_err(|e| invalid_handle(dev, &format!("bad name: {e}")))?;
        let (_, fd) = Broker::shared()
            .open_name(&name)
            .map_err(|e| broker_error(dev, &format!("name {:?}", name.key()), e))?;
        fd
    } else if row.handle_type == HandleType::OpaqueWin32Kmt {
        let kmt = KmtHandle::from_raw_handle(handle)
            .ok_or_else(|| invalid_handle(dev, &format!("{handle:#x} is not a KMT value")))?;
        let (_, fd) = Broker::shared()
            .open_kmt(kmt)
            .map_err(|e| broker_error(dev, &format!("KMT {kmt}"), e))?;
        fd
    } else {
        // SAFETY: the handle is only borrowed for this call; `borrow_raw` checks it is open.
        let borrowed = unsafe { BorrowedHandle::borrow_raw(handle) }
            .ok_or_else(|| invalid_handle(dev, &format!("NT handle {handle:#x} is not an open handle")))?;
        let fd = borrowed
            .as_fd()
            .map_err(|e| invalid_handle(dev, &format!("NT handle {handle:#x}: {e}")))?;
        return Payload::import(fd, &IDENTITY).map_err(|e| invalid_handle(dev, &format!("NT handle {handle:#x}: {e}")));
    };
    Payload::import(std::os::fd::AsFd::as_fd(&fd), &IDENTITY).map_err(|e| invalid_handle(dev, &format!("{e}")))
}

/// The valid-usage ids of one Win32 import command: its prologue's, and what naming the handle
/// breaks.
struct Win32ImportVuids {
    prologue: ImportVuids,
    handle_and_name: &'static str,
    name_with_kmt: &'static str,
}

/// Closes an exported NT handle nobody received.
fn close_exported(row: &HandleTypeInfo, handle: isize) {
    if row.handle_type != HandleType::OpaqueWin32Kmt {
        // SAFETY: the handle was just created by `export` and never handed out.
        unsafe { tether_handles::nt::close_handle(handle) };
    }
}

/// `vkGet{Fence,Semaphore}Win32HandleKHR`.
///
/// # Safety
/// Per the command.
unsafe fn get_win32_handle<I: ExportInfo, T: External>(
    device: vk::Device,
    info: *const I,
    out: *mut vk::HANDLE,
    vuids: &ExportVuids,
    already_exported: &str,
    table: &'static HandleTable<T>,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let Begun { dev, object, row, .. } = unsafe { begin_export(device, info, vuids, table) }?;
            if row.handle_type == HandleType::D3d12Fence && object.slot().active().kind() != PayloadKind::D3d12Fence {
                return Err(invalid_usage(
                    dev,
                    vuids.not_exportable,
                    &format!("the {}'s payload is not a D3D12 fence", T::NAME),
                ));
            }
            let handle = export(dev, object.slot(), object.win32(), row, already_exported)?;
            // SAFETY: writable output per valid usage.
            unsafe { write_out(out, handle) }.inspect_err(|_| close_exported(row, handle))
        })())
    })
}

/// `vkImport{Fence,Semaphore}Win32HandleKHR`. `named` reads the handle and the name from the
/// input; `payload` checks what the kind needs of the payload the handle names.
///
/// # Safety
/// Per the command.
unsafe fn import_win32_handle<I: ImportInfo, T: External>(
    device: vk::Device,
    info: *const I,
    vuids: &Win32ImportVuids,
    table: &'static HandleTable<T>,
    named: impl FnOnce(&I) -> (isize, *const u16),
    payload: fn(&Device, &T, &HandleTypeInfo, Permanence, PayloadKind) -> VkResult<()>,
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
            } = unsafe { begin_import(device, info, &vuids.prologue, table) }?;
            let (handle, name) = named(info);
            // SAFETY: `name` is NULL or a NUL-terminated string per valid usage; the handle is borrowed.
            let opened = unsafe { open(dev, row, handle, name, vuids) }?;
            payload(dev, &object, row, permanence, opened.kind())?;
            if permanence == Permanence::Permanent {
                object.win32().forget();
            }
            object.slot().install(opened, permanence);
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkGetFenceWin32HandleKHR`.
pub unsafe extern "system" fn get_fence_win32_handle(
    device: vk::Device,
    info: *const vk::FenceGetWin32HandleInfoKHR<'_>,
    out: *mut vk::HANDLE,
) -> vk::Result {
    let vuids = ExportVuids {
        command: Command {
            name: "vkGetFenceWin32HandleKHR",
            param: "pGetWin32HandleInfo",
            structure: "VkFenceGetWin32HandleInfoKHR",
            object_vuid: "VUID-VkFenceGetWin32HandleInfoKHR-fence-parameter",
        },
        family: HandleFamily::Win32,
        handle_type: "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01452",
        not_exportable: "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01448",
    };
    let already_exported = "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01449";
    // SAFETY: per the caller's contract.
    unsafe { get_win32_handle(device, info, out, &vuids, already_exported, &FENCES) }
}

/// # Safety
/// Per `vkImportFenceWin32HandleKHR`.
pub unsafe extern "system" fn import_fence_win32_handle(
    device: vk::Device,
    info: *const vk::ImportFenceWin32HandleInfoKHR<'_>,
) -> vk::Result {
    let vuids = Win32ImportVuids {
        prologue: ImportVuids {
            command: Command {
                name: "vkImportFenceWin32HandleKHR",
                param: "pImportFenceWin32HandleInfo",
                structure: "VkImportFenceWin32HandleInfoKHR",
                object_vuid: "VUID-VkImportFenceWin32HandleInfoKHR-fence-parameter",
            },
            family: HandleFamily::Win32,
            in_use: "VUID-vkImportFenceWin32HandleKHR-fence-04448",
            in_use_text: "the fence is tied to unfinished queue work",
            handle_type: "VUID-VkImportFenceWin32HandleInfoKHR-handleType-01457",
            permanent_copy: None,
            temporary_timeline: None,
        },
        handle_and_name: "VUID-VkImportFenceWin32HandleInfoKHR-handle-01462",
        name_with_kmt: "VUID-VkImportFenceWin32HandleInfoKHR-handleType-01459",
    };
    let payload = |dev: &Device, fence: &Fence, _: &HandleTypeInfo, _, kind| match fence.refuses(kind) {
        Some(refusal) => Err(invalid_handle(
            dev,
            &format!("the handle names a {kind:?} payload, {refusal}"),
        )),
        None => Ok(()),
    };
    // SAFETY: per the caller's contract.
    unsafe { import_win32_handle(device, info, &vuids, &FENCES, |i| (i.handle, i.name), payload) }
}

/// # Safety
/// Per `vkGetSemaphoreWin32HandleKHR`.
pub unsafe extern "system" fn get_semaphore_win32_handle(
    device: vk::Device,
    info: *const vk::SemaphoreGetWin32HandleInfoKHR<'_>,
    out: *mut vk::HANDLE,
) -> vk::Result {
    let vuids = ExportVuids {
        command: Command {
            name: "vkGetSemaphoreWin32HandleKHR",
            param: "pGetWin32HandleInfo",
            structure: "VkSemaphoreGetWin32HandleInfoKHR",
            object_vuid: "VUID-VkSemaphoreGetWin32HandleInfoKHR-semaphore-parameter",
        },
        family: HandleFamily::Win32,
        handle_type: "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01131",
        not_exportable: "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01126",
    };
    let already_exported = "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01127";
    // SAFETY: per the caller's contract.
    unsafe { get_win32_handle(device, info, out, &vuids, already_exported, &SEMAPHORES) }
}

/// What a semaphore needs of the payload a Win32 import names: a D3D12 fence for D3D12_FENCE, a
/// semaphore payload of its own type, and no timeline payload imported temporarily.
fn semaphore_payload(
    dev: &Device,
    semaphore: &Semaphore,
    row: &HandleTypeInfo,
    permanence: Permanence,
    kind: PayloadKind,
) -> VkResult<()> {
    let ty = semaphore.semaphore_type;
    if row.handle_type == HandleType::D3d12Fence && kind != PayloadKind::D3d12Fence {
        return Err(invalid_handle(
            dev,
            &format!("a D3D12_FENCE import needs a D3D12 fence payload, the handle names a {kind:?}"),
        ));
    }
    if kind == PayloadKind::Fence {
        return Err(invalid_handle(dev, "the handle names a fence payload, not a semaphore"));
    }
    if !payload_fits_semaphore(kind, ty) {
        return Err(invalid_usage(
            dev,
            "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-03262",
            &format!("the exporter's semaphore type ({kind:?}) does not match this {ty:?} semaphore"),
        ));
    }
    if permanence == Permanence::Temporary && kind == PayloadKind::Timeline {
        return Err(invalid_usage(
            dev,
            "VUID-VkImportSemaphoreWin32HandleInfoKHR-flags-03322",
            "a timeline payload cannot be imported temporarily",
        ));
    }
    Ok(())
}

/// # Safety
/// Per `vkImportSemaphoreWin32HandleKHR`.
pub unsafe extern "system" fn import_semaphore_win32_handle(
    device: vk::Device,
    info: *const vk::ImportSemaphoreWin32HandleInfoKHR<'_>,
) -> vk::Result {
    let vuids = Win32ImportVuids {
        prologue: ImportVuids {
            command: Command {
                name: "vkImportSemaphoreWin32HandleKHR",
                param: "pImportSemaphoreWin32HandleInfo",
                structure: "VkImportSemaphoreWin32HandleInfoKHR",
                object_vuid: "VUID-VkImportSemaphoreWin32HandleInfoKHR-semaphore-parameter",
            },
            family: HandleFamily::Win32,
            in_use: "VUID-vkImportSemaphoreWin32HandleKHR-semaphore-in-use",
            in_use_text: "the semaphore is tied to unfinished queue work (Khronos issue 3507)",
            handle_type: "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-01140",
            permanent_copy: None,
            temporary_timeline: Some("VUID-VkImportSemaphoreWin32HandleInfoKHR-flags-03322"),
        },
        handle_and_name: "VUID-VkImportSemaphoreWin32HandleInfoKHR-handle-01469",
        name_with_kmt: "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-01466",
    };
    // SAFETY: per the caller's contract.
    unsafe {
        import_win32_handle(
            device,
            info,
            &vuids,
            &SEMAPHORES,
            |i| (i.handle, i.name),
            semaphore_payload,
        )
    }
}

//! External fences and semaphores: [`ExternalFence`], [`ExternalSemaphore`], and what both can
//! do with handles ([`Shareable`]).
//!
//! Every check the Vulkan specification asks of the application for these commands and that can
//! be made on this side is made before the driver is called (a driver does not have to check
//! valid usage). What cannot be checked here — whether queue work using the object is still
//! pending — is the precondition of [`Device::submit`], the one way this crate submits work, and
//! of using [`ExternalFence::handle`] / [`ExternalSemaphore::handle`] with raw ash.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use ash::prelude::VkResult;
use ash::vk;
use tether_handles::{BorrowedHandle, KmtHandle, NtHandle, ObjectName};

use crate::caps::{HandleType, HandleTypes, ObjectKind};
use crate::device::{Device, TimelineCommands};
use crate::error::{Error, FdImportError, Result};
use crate::export::ExportOptions;

/// How an import replaces the object's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Import {
    /// For good, as if the object had been created with the imported payload.
    Permanent,
    /// Until a fence is reset, or until a binary semaphore's next wait: then the object's own
    /// payload is back. Not for timeline semaphores; the only way for SYNC_FD.
    Temporary,
}

/// Where the object's current payload came from: decides which types it may export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Its own payload, exportable as the types it was created with.
    Created,
    /// A permanent import of this type.
    Imported(HandleType),
}

/// The state both kinds of objects keep (public only to the sealed [`Shareable`] trait).
pub struct Core {
    device: Device,
    kind: ObjectKind,
    /// What the object was created exportable as.
    export_types: HandleTypes,
    /// The permanent payload's origin.
    permanent: Origin,
    /// A temporary import that may still be in place (a fence drops it at a reset; a semaphore
    /// at a wait this crate cannot see, so it is kept until the next permanent import).
    temporary: Option<HandleType>,
    /// NT handle types already exported: each at most once per object.
    nt_exported: Mutex<HandleTypes>,
}

impl Core {
    fn new(device: &Device, kind: ObjectKind, options: &ExportOptions) -> Result<Core> {
        options.check(device, kind)?;
        Ok(Core {
            device: device.clone(),
            kind,
            export_types: options.handle_types(),
            permanent: Origin::Created,
            temporary: None,
            nt_exported: Mutex::new(HandleTypes::empty()),
        })
    }

    /// The types a payload of this origin may be exported as.
    fn exportable_from(&self, origin: Origin) -> HandleTypes {
        match origin {
            Origin::Created => self.export_types,
            Origin::Imported(t) => self
                .device
                .capabilities()
                .get(self.kind, t)
                .map_or(HandleTypes::empty(), |r| r.export_from_imported),
        }
    }

    fn check_export(&self, t: HandleType) -> Result<()> {
        self.device.check_handle_type(self.kind, t, true)?;
        let mut allowed = self.exportable_from(self.permanent);
        if let Some(temporary) = self.temporary {
            let from_temporary = self.exportable_from(Origin::Imported(temporary));
            allowed = allowed.iter().filter(|t| from_temporary.contains(*t)).collect();
        }
        if !allowed.contains(t) {
            return Err(Error::InvalidUsage(format!(
                "this {} cannot export {t}: its payload is exportable as {allowed} \
                 (the types it was created exportable as, or after an import the \
                 exportFromImportedHandleTypes of the imported type)",
                self.kind
            )));
        }
        Ok(())
    }

    /// Claims the one export an NT handle type allows per object.
    fn claim_nt_export(&self, t: HandleType) -> Result<()> {
        let mut exported = self.nt_exported.lock().unwrap_or_else(|p| p.into_inner());
        if exported.contains(t) {
            return Err(Error::InvalidUsage(format!(
                "this {} was already exported as an {t} NT handle: an object exports each NT handle \
                 type at most once (duplicate the first handle instead)",
                self.kind
            )));
        }
        exported.insert(t);
        Ok(())
    }

    fn unclaim_nt_export(&self, t: HandleType) {
        let mut exported = self.nt_exported.lock().unwrap_or_else(|p| p.into_inner());
        *exported = exported.iter().filter(|x| *x != t).collect();
    }

    fn check_import(&self, t: HandleType, import: Import) -> Result<()> {
        self.device.check_handle_type(self.kind, t, false)?;
        if import == Import::Temporary && self.kind == ObjectKind::TimelineSemaphore {
            return Err(Error::InvalidUsage(
                "a timeline semaphore cannot import temporarily".into(),
            ));
        }
        if import == Import::Permanent && t.is_copy() {
            return Err(Error::InvalidUsage(format!(
                "{t} payloads can only be imported temporarily"
            )));
        }
        Ok(())
    }

    fn imported(&mut self, t: HandleType, import: Import) {
        match import {
            Import::Permanent => {
                self.permanent = Origin::Imported(t);
                self.temporary = None;
            }
            Import::Temporary => self.temporary = Some(t),
        }
    }
}

/// What the kinds of objects do differently: their Vulkan commands.
mod raw {
    use super::*;

    pub trait RawSync {
        fn core(&self) -> &Core;
        fn core_mut(&mut self) -> &mut Core;
        /// `vkGet*FdKHR`.
        ///
        /// # Safety
        ///
        /// The export's valid usage holds (checked by the caller, or stated by it).
        unsafe fn raw_export_fd(&self, t: HandleType) -> VkResult<i32>;
        /// `vkGet*Win32HandleKHR`.
        ///
        /// # Safety
        ///
        /// As above.
        unsafe fn raw_export_win32(&self, t: HandleType) -> VkResult<vk::HANDLE>;
        /// `vkImport*FdKHR`.
        ///
        /// # Safety
        ///
        /// The import's valid usage holds; `fd` is owned by the caller and passes to the driver
        /// on success.
        unsafe fn raw_import_fd(&self, t: HandleType, fd: i32, import: Import) -> VkResult<()>;
        /// `vkImport*Win32HandleKHR`.
        ///
        /// # Safety
        ///
        /// The import's valid usage holds; `name` is NULL or NUL-terminated UTF-16 that outlives
        /// the call; `handle` is borrowed for the call.
        unsafe fn raw_import_win32(
            &self,
            t: HandleType,
            handle: vk::HANDLE,
            name: *const u16,
            import: Import,
        ) -> VkResult<()>;
    }
}

use raw::RawSync;

/// Exporting and importing payloads: what fences and semaphores have in common.
///
/// Exports return what the caller then owns: an [`OwnedFd`], an [`NtHandle`] (an fd on Unix,
/// closed on drop), or a [`KmtHandle`] (a value nobody closes). Win32 imports borrow the handle
/// (the driver keeps its own reference); fd imports take the fd, and give it back in
/// [`FdImportError`] when they fail.
pub trait Shareable: RawSync {
    /// The object's kind.
    fn kind(&self) -> ObjectKind {
        self.core().kind
    }

    /// The device it was made on.
    fn device(&self) -> &Device {
        &self.core().device
    }

    /// The handle types it was created exportable as.
    fn export_types(&self) -> HandleTypes {
        self.core().export_types
    }

    /// Exports an OPAQUE_FD: an fd referring to the payload.
    fn export_fd(&self) -> Result<OwnedFd> {
        self.core().check_export(HandleType::OpaqueFd)?;
        // SAFETY: checked just above.
        let fd = unsafe { self.raw_export_fd(HandleType::OpaqueFd) }
            .map_err(|e| Error::vulkan(export_fd_command(self.kind()), e, "OPAQUE_FD"))?;
        owned_fd(fd, export_fd_command(self.kind()))
    }

    /// Exports a SYNC_FD: a sync file that signals when the payload does; `None` when the
    /// driver answers -1 (already signaled). As copy transference does, it acts on the source
    /// like a reset of a fence or a wait on a binary semaphore, and ends a temporary import.
    ///
    /// # Safety
    ///
    /// The object is signaled, or a signal of it is pending (submitted, in this or another
    /// process); a semaphore is binary (checked) and has no wait pending on it.
    unsafe fn export_sync_fd(&mut self) -> Result<Option<OwnedFd>> {
        self.core().check_export(HandleType::SyncFd)?;
        if self.kind() == ObjectKind::TimelineSemaphore {
            return Err(Error::InvalidUsage("a timeline semaphore cannot export SYNC_FD".into()));
        }
        // SAFETY: checked above, and the caller's guarantee.
        let fd = unsafe { self.raw_export_fd(HandleType::SyncFd) }
            .map_err(|e| Error::vulkan(export_fd_command(self.kind()), e, "SYNC_FD"))?;
        self.core_mut().temporary = None;
        if fd == -1 {
            return Ok(None);
        }
        owned_fd(fd, export_fd_command(self.kind())).map(Some)
    }

    /// Exports an NT handle (OPAQUE_WIN32, or D3D12_FENCE for semaphores). Each NT handle type
    /// can be exported once per object; duplicate the handle ([`NtHandle::duplicate`]) for more.
    /// With [`ExportOptions::name`], the first export registers the name.
    fn export_nt_handle(&self, t: HandleType) -> Result<NtHandle> {
        if !t.is_nt() {
            return Err(Error::InvalidUsage(format!(
                "{t} is not an NT handle type (use export_fd or export_kmt)"
            )));
        }
        let core = self.core();
        core.check_export(t)?;
        core.claim_nt_export(t)?;
        // SAFETY: checked and claimed just above.
        let handle = match unsafe { self.raw_export_win32(t) } {
            Ok(h) => h,
            Err(e) => {
                core.unclaim_nt_export(t);
                return Err(Error::vulkan(export_win32_command(self.kind()), e, t.name()));
            }
        };
        let fd = i32::try_from(handle).map_err(|_| {
            Error::vulkan(
                export_win32_command(self.kind()),
                vk::Result::ERROR_UNKNOWN,
                format!("returned {handle:#x}, which is not a handle this process can own"),
            )
        })?;
        owned_fd(fd, export_win32_command(self.kind())).map(NtHandle::from)
    }

    /// Exports the OPAQUE_WIN32_KMT value: the same value every time, valid while the object
    /// lives.
    fn export_kmt(&self) -> Result<KmtHandle> {
        self.core().check_export(HandleType::OpaqueWin32Kmt)?;
        // SAFETY: checked just above.
        let handle = unsafe { self.raw_export_win32(HandleType::OpaqueWin32Kmt) }
            .map_err(|e| Error::vulkan(export_win32_command(self.kind()), e, "OPAQUE_WIN32_KMT"))?;
        KmtHandle::from_raw_handle(handle).ok_or_else(|| {
            Error::vulkan(
                export_win32_command(self.kind()),
                vk::Result::ERROR_UNKNOWN,
                format!("returned {handle:#x}, not a KMT value"),
            )
        })
    }

    /// Imports an fd (OPAQUE_FD permanently or temporarily, SYNC_FD temporarily). The driver
    /// owns `fd` when this succeeds; when it fails, the fd comes back in the error.
    fn import_fd(&mut self, t: HandleType, fd: OwnedFd, import: Import) -> Result<(), FdImportError> {
        if !t.is_fd() {
            let error = Error::InvalidUsage(format!("{t} is not an fd handle type (use import_nt_handle)"));
            return Err(FdImportError { error, fd });
        }
        if let Err(error) = self.core().check_import(t, import) {
            return Err(FdImportError { error, fd });
        }
        let raw = fd.into_raw_fd();
        // SAFETY: checked above; `raw` is ours and passes to the driver only on success.
        match unsafe { self.raw_import_fd(t, raw, import) } {
            Ok(()) => {
                self.core_mut().imported(t, import);
                Ok(())
            }
            Err(e) => Err(FdImportError {
                error: Error::vulkan(import_fd_command(self.kind()), e, t.name()),
                // SAFETY: a failed import leaves the fd with the caller: it is still ours.
                fd: unsafe { OwnedFd::from_raw_fd(raw) },
            }),
        }
    }

    /// Imports an NT handle (OPAQUE_WIN32, D3D12_FENCE). The handle stays the caller's: the
    /// driver keeps its own reference, so it may be closed right after.
    fn import_nt_handle(&mut self, t: HandleType, handle: BorrowedHandle<'_>, import: Import) -> Result<()> {
        if !t.is_nt() {
            return Err(Error::InvalidUsage(format!(
                "{t} is not an NT handle type (use import_fd or import_kmt)"
            )));
        }
        self.core().check_import(t, import)?;
        // SAFETY: checked above; the handle is borrowed for the call, no name.
        unsafe { self.raw_import_win32(t, handle.as_raw_handle(), std::ptr::null(), import) }
            .map_err(|e| Error::vulkan(import_win32_command(self.kind()), e, format!("{t} handle")))?;
        self.core_mut().imported(t, import);
        Ok(())
    }

    /// Imports the payload another object registered under `name` (see
    /// [`ExportOptions::name`]), as an NT handle type (OPAQUE_WIN32, D3D12_FENCE).
    fn import_name(&mut self, t: HandleType, name: &ObjectName, import: Import) -> Result<()> {
        if !t.is_nt() {
            return Err(Error::InvalidUsage(format!("only NT handle types are named, not {t}")));
        }
        self.core().check_import(t, import)?;
        let wide: Vec<u16> = name.as_utf16().iter().copied().chain([0]).collect();
        // SAFETY: checked above; `wide` is NUL-terminated and outlives the call.
        unsafe { self.raw_import_win32(t, 0, wide.as_ptr(), import) }
            .map_err(|e| Error::vulkan(import_win32_command(self.kind()), e, format!("{t} named {name}")))?;
        self.core_mut().imported(t, import);
        Ok(())
    }

    /// Imports the payload a KMT value names (OPAQUE_WIN32_KMT).
    fn import_kmt(&mut self, kmt: KmtHandle, import: Import) -> Result<()> {
        let t = HandleType::OpaqueWin32Kmt;
        self.core().check_import(t, import)?;
        // SAFETY: checked above; a KMT value is not owned by anyone.
        unsafe { self.raw_import_win32(t, kmt.as_raw_handle(), std::ptr::null(), import) }
            .map_err(|e| Error::vulkan(import_win32_command(self.kind()), e, format!("KMT {kmt}")))?;
        self.core_mut().imported(t, import);
        Ok(())
    }
}

fn owned_fd(fd: i32, command: &'static str) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(Error::vulkan(
            command,
            vk::Result::ERROR_UNKNOWN,
            format!("returned {fd}, not an fd"),
        ));
    }
    // SAFETY: the export returned a new fd and hands its ownership to the caller.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn export_fd_command(kind: ObjectKind) -> &'static str {
    if kind == ObjectKind::Fence {
        "vkGetFenceFdKHR"
    } else {
        "vkGetSemaphoreFdKHR"
    }
}

fn export_win32_command(kind: ObjectKind) -> &'static str {
    if kind == ObjectKind::Fence {
        "vkGetFenceWin32HandleKHR"
    } else {
        "vkGetSemaphoreWin32HandleKHR"
    }
}

fn import_fd_command(kind: ObjectKind) -> &'static str {
    if kind == ObjectKind::Fence {
        "vkImportFenceFdKHR"
    } else {
        "vkImportSemaphoreFdKHR"
    }
}

fn import_win32_command(kind: ObjectKind) -> &'static str {
    if kind == ObjectKind::Fence {
        "vkImportFenceWin32HandleKHR"
    } else {
        "vkImportSemaphoreWin32HandleKHR"
    }
}

/// What a raw call returns when the extension's commands were not loaded (the checks before
/// every call make that unreachable).
const NOT_LOADED: vk::Result = vk::Result::ERROR_EXTENSION_NOT_PRESENT;

/// `VkTimeout` in ns from a duration (saturating: `u64::MAX` waits forever).
fn timeout_ns(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Fences.

/// A fence that can be exported and imported as external handles. Destroyed on drop.
pub struct ExternalFence {
    core: Core,
    fence: vk::Fence,
}

impl ExternalFence {
    /// An unsignaled fence, exportable as `options` says (checked against the device's
    /// capabilities). `ExportOptions::default()` makes one that only imports.
    pub fn new(device: &Device, options: &ExportOptions) -> Result<ExternalFence> {
        let core = Core::new(device, ObjectKind::Fence, options)?;
        let mut export = vk::ExportFenceCreateInfo::default().handle_types(options.handle_types().fence_flags());
        let win32 = options.win32_info();
        let mut win32_export = win32.as_ref().map(|w| vk::ExportFenceWin32HandleInfoKHR {
            p_attributes: w.attributes_ptr().cast(),
            dw_access: w.access.into(),
            name: w.name_ptr(),
            ..Default::default()
        });
        let mut info = vk::FenceCreateInfo::default();
        if !options.handle_types().is_empty() {
            info = info.push_next(&mut export);
        }
        if let Some(w) = win32_export.as_mut() {
            info = info.push_next(w);
        }
        // SAFETY: a valid create info (checked options) on a live device; the Win32 data
        // outlives the call.
        let fence = unsafe { device.ash().create_fence(&info, None) }
            .map_err(|e| Error::vulkan("vkCreateFence", e, format!("exportable as {}", options.handle_types())))?;
        Ok(ExternalFence { core, fence })
    }

    /// The Vulkan handle, for submissions made with ash. While a submission using it is
    /// pending, the fence must not be imported into, reset or dropped.
    pub fn handle(&self) -> vk::Fence {
        self.fence
    }

    /// Gives up the fence without destroying it: the caller destroys it (with
    /// `vkDestroyFence` on [`Device::ash`]) once nothing uses it.
    pub fn into_raw(self) -> vk::Fence {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so its core is moved out exactly once.
        drop(unsafe { std::ptr::read(&this.core) });
        this.fence
    }

    /// `vkGetFenceStatus`.
    pub fn is_signaled(&self) -> Result<bool> {
        // SAFETY: a live fence of this device.
        unsafe { self.core.device.ash().get_fence_status(self.fence) }
            .map_err(|e| Error::vulkan("vkGetFenceStatus", e, ""))
    }

    /// `vkWaitForFences`: `Ok(true)` once signaled, `Ok(false)` at the timeout.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        // SAFETY: a live fence of this device.
        match unsafe {
            self.core
                .device
                .ash()
                .wait_for_fences(&[self.fence], true, timeout_ns(timeout))
        } {
            Ok(()) => Ok(true),
            Err(vk::Result::TIMEOUT) => Ok(false),
            Err(e) => Err(Error::vulkan("vkWaitForFences", e, "")),
        }
    }

    /// `vkResetFences`: unsignals it and ends a temporary import.
    pub fn reset(&mut self) -> Result<()> {
        // SAFETY: a live fence, exclusively borrowed; no submission is pending on it (the
        // precondition of `Device::submit` and of `handle`).
        unsafe { self.core.device.ash().reset_fences(&[self.fence]) }
            .map_err(|e| Error::vulkan("vkResetFences", e, ""))?;
        self.core.temporary = None;
        Ok(())
    }
}

impl RawSync for ExternalFence {
    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    unsafe fn raw_export_fd(&self, t: HandleType) -> VkResult<i32> {
        let ext = self.core.device.inner.external.fence_fd.as_ref().ok_or(NOT_LOADED)?;
        let info = vk::FenceGetFdInfoKHR::default()
            .fence(self.fence)
            .handle_type(t.fence_flag().unwrap_or_default());
        // SAFETY: the caller's guarantee.
        unsafe { ext.get_fence_fd(&info) }
    }

    unsafe fn raw_export_win32(&self, t: HandleType) -> VkResult<vk::HANDLE> {
        let ext = self.core.device.inner.external.fence_win32.as_ref().ok_or(NOT_LOADED)?;
        let info = vk::FenceGetWin32HandleInfoKHR::default()
            .fence(self.fence)
            .handle_type(t.fence_flag().unwrap_or_default());
        // SAFETY: the caller's guarantee.
        unsafe { ext.get_fence_win32_handle(&info) }
    }

    unsafe fn raw_import_fd(&self, t: HandleType, fd: i32, import: Import) -> VkResult<()> {
        let ext = self.core.device.inner.external.fence_fd.as_ref().ok_or(NOT_LOADED)?;
        let info = vk::ImportFenceFdInfoKHR::default()
            .fence(self.fence)
            .handle_type(t.fence_flag().unwrap_or_default())
            .flags(fence_import_flags(import))
            .fd(fd);
        // SAFETY: the caller's guarantee.
        unsafe { ext.import_fence_fd(&info) }
    }

    unsafe fn raw_import_win32(
        &self,
        t: HandleType,
        handle: vk::HANDLE,
        name: *const u16,
        import: Import,
    ) -> VkResult<()> {
        let ext = self.core.device.inner.external.fence_win32.as_ref().ok_or(NOT_LOADED)?;
        let mut info = vk::ImportFenceWin32HandleInfoKHR::default()
            .fence(self.fence)
            .handle_type(t.fence_flag().unwrap_or_default())
            .flags(fence_import_flags(import))
            .handle(handle);
        info.name = name;
        // SAFETY: the caller's guarantee.
        unsafe { ext.import_fence_win32_handle(&info) }
    }
}

impl Shareable for ExternalFence {}

fn fence_import_flags(import: Import) -> vk::FenceImportFlags {
    match import {
        Import::Permanent => vk::FenceImportFlags::empty(),
        Import::Temporary => vk::FenceImportFlags::TEMPORARY,
    }
}

impl Drop for ExternalFence {
    fn drop(&mut self) {
        // SAFETY: destroyed once; no submission is pending on it (the precondition of
        // `Device::submit` and of `handle`).
        unsafe { self.core.device.ash().destroy_fence(self.fence, None) };
    }
}

impl std::fmt::Debug for ExternalFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalFence")
            .field("handle", &self.fence)
            .field("export_types", &self.core.export_types)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Semaphores.

/// A binary or timeline semaphore that can be exported and imported as external handles.
/// Destroyed on drop.
pub struct ExternalSemaphore {
    core: Core,
    semaphore: vk::Semaphore,
}

impl ExternalSemaphore {
    /// An unsignaled binary semaphore, exportable as `options` says.
    pub fn binary(device: &Device, options: &ExportOptions) -> Result<ExternalSemaphore> {
        ExternalSemaphore::new(device, ObjectKind::BinarySemaphore, 0, options)
    }

    /// A timeline semaphore at `initial_value`, exportable as `options` says.
    pub fn timeline(device: &Device, initial_value: u64, options: &ExportOptions) -> Result<ExternalSemaphore> {
        if !device.has_timeline_semaphores() {
            return Err(Error::Unsupported(format!(
                "{} has no timeline semaphores enabled",
                device.capabilities().name
            )));
        }
        ExternalSemaphore::new(device, ObjectKind::TimelineSemaphore, initial_value, options)
    }

    fn new(
        device: &Device,
        kind: ObjectKind,
        initial_value: u64,
        options: &ExportOptions,
    ) -> Result<ExternalSemaphore> {
        let core = Core::new(device, kind, options)?;
        let timeline = kind == ObjectKind::TimelineSemaphore;
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(initial_value);
        let mut export =
            vk::ExportSemaphoreCreateInfo::default().handle_types(options.handle_types().semaphore_flags());
        let win32 = options.win32_info();
        let mut win32_export = win32.as_ref().map(|w| vk::ExportSemaphoreWin32HandleInfoKHR {
            p_attributes: w.attributes_ptr().cast(),
            dw_access: w.access.into(),
            name: w.name_ptr(),
            ..Default::default()
        });
        let mut info = vk::SemaphoreCreateInfo::default();
        if timeline {
            info = info.push_next(&mut ty);
        }
        if !options.handle_types().is_empty() {
            info = info.push_next(&mut export);
        }
        if let Some(w) = win32_export.as_mut() {
            info = info.push_next(w);
        }
        // SAFETY: a valid create info (checked options; timelines only with the feature) on a
        // live device; the Win32 data outlives the call.
        let semaphore = unsafe { device.ash().create_semaphore(&info, None) }.map_err(|e| {
            Error::vulkan(
                "vkCreateSemaphore",
                e,
                format!("{kind}, exportable as {}", options.handle_types()),
            )
        })?;
        Ok(ExternalSemaphore { core, semaphore })
    }

    /// The Vulkan handle, for submissions made with ash. While a submission using it is
    /// pending, the semaphore must not be imported into or dropped.
    pub fn handle(&self) -> vk::Semaphore {
        self.semaphore
    }

    /// Gives up the semaphore without destroying it: the caller destroys it (with
    /// `vkDestroySemaphore` on [`Device::ash`]) once nothing uses it.
    pub fn into_raw(self) -> vk::Semaphore {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so its core is moved out exactly once.
        drop(unsafe { std::ptr::read(&this.core) });
        this.semaphore
    }

    fn timeline_commands(&self) -> Result<&TimelineCommands> {
        if self.core.kind != ObjectKind::TimelineSemaphore {
            return Err(Error::InvalidUsage(
                "a binary semaphore has no counter (host signal, wait and value are for timelines)".into(),
            ));
        }
        self.core
            .device
            .inner
            .timeline
            .as_ref()
            .ok_or_else(|| Error::Unsupported("timeline semaphores are not enabled".into()))
    }

    /// `vkGetSemaphoreCounterValue` of a timeline.
    pub fn value(&self) -> Result<u64> {
        let commands = self.timeline_commands()?;
        let device = self.core.device.ash();
        // SAFETY: a live timeline semaphore of this device.
        unsafe {
            match commands {
                TimelineCommands::Core => device.get_semaphore_counter_value(self.semaphore),
                TimelineCommands::Khr(khr) => khr.get_semaphore_counter_value(self.semaphore),
            }
        }
        .map_err(|e| Error::vulkan("vkGetSemaphoreCounterValue", e, ""))
    }

    /// `vkSignalSemaphore`: sets a timeline's counter to `value` from the host.
    ///
    /// Checked: `value` is greater than the current value and within
    /// `maxTimelineSemaphoreValueDifference` of it. Host signals made through this crate in
    /// this process are serialized, so two of them (on this object or on another sharing its
    /// payload) cannot pass the check together and land out of order. `value` must also stay
    /// below any signal still pending on the payload: submissions are `unsafe` and state it
    /// ([`Device::submit`]); another process signaling the same payload is outside what Rust can
    /// guarantee, as another process writing shared memory is.
    pub fn signal(&self, value: u64) -> Result<()> {
        static HOST_SIGNALS: Mutex<()> = Mutex::new(());
        let _serial = HOST_SIGNALS.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.value()?;
        if value <= current {
            return Err(Error::InvalidUsage(format!(
                "a timeline signal must increase the value: {value} after {current}"
            )));
        }
        let max = self.core.device.capabilities().max_timeline_value_difference;
        if let Some(max) = max.filter(|max| value - current > *max) {
            return Err(Error::InvalidUsage(format!(
                "{value} is more than maxTimelineSemaphoreValueDifference ({max}) above the value {current}"
            )));
        }
        let commands = self.timeline_commands()?;
        let info = vk::SemaphoreSignalInfo::default()
            .semaphore(self.semaphore)
            .value(value);
        let device = self.core.device.ash();
        // SAFETY: a live timeline semaphore; the value increases (checked above).
        unsafe {
            match commands {
                TimelineCommands::Core => device.signal_semaphore(&info),
                TimelineCommands::Khr(khr) => khr.signal_semaphore(&info),
            }
        }
        .map_err(|e| Error::vulkan("vkSignalSemaphore", e, format!("to {value}")))
    }

    /// `vkWaitSemaphores` for a timeline value: `Ok(true)` once the counter reaches `value`,
    /// `Ok(false)` at the timeout.
    pub fn wait(&self, value: u64, timeout: Duration) -> Result<bool> {
        let commands = self.timeline_commands()?;
        let semaphores = [self.semaphore];
        let values = [value];
        let info = vk::SemaphoreWaitInfo::default().semaphores(&semaphores).values(&values);
        let device = self.core.device.ash();
        // SAFETY: a live timeline semaphore of this device.
        let result = unsafe {
            match commands {
                TimelineCommands::Core => device.wait_semaphores(&info, timeout_ns(timeout)),
                TimelineCommands::Khr(khr) => khr.wait_semaphores(&info, timeout_ns(timeout)),
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(vk::Result::TIMEOUT) => Ok(false),
            Err(e) => Err(Error::vulkan("vkWaitSemaphores", e, format!("for {value}"))),
        }
    }
}

impl RawSync for ExternalSemaphore {
    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    unsafe fn raw_export_fd(&self, t: HandleType) -> VkResult<i32> {
        let ext = self
            .core
            .device
            .inner
            .external
            .semaphore_fd
            .as_ref()
            .ok_or(NOT_LOADED)?;
        let info = vk::SemaphoreGetFdInfoKHR::default()
            .semaphore(self.semaphore)
            .handle_type(t.semaphore_flag());
        // SAFETY: the caller's guarantee.
        unsafe { ext.get_semaphore_fd(&info) }
    }

    unsafe fn raw_export_win32(&self, t: HandleType) -> VkResult<vk::HANDLE> {
        let ext = self
            .core
            .device
            .inner
            .external
            .semaphore_win32
            .as_ref()
            .ok_or(NOT_LOADED)?;
        let info = vk::SemaphoreGetWin32HandleInfoKHR::default()
            .semaphore(self.semaphore)
            .handle_type(t.semaphore_flag());
        // SAFETY: the caller's guarantee.
        unsafe { ext.get_semaphore_win32_handle(&info) }
    }

    unsafe fn raw_import_fd(&self, t: HandleType, fd: i32, import: Import) -> VkResult<()> {
        let ext = self
            .core
            .device
            .inner
            .external
            .semaphore_fd
            .as_ref()
            .ok_or(NOT_LOADED)?;
        let info = vk::ImportSemaphoreFdInfoKHR::default()
            .semaphore(self.semaphore)
            .handle_type(t.semaphore_flag())
            .flags(semaphore_import_flags(import))
            .fd(fd);
        // SAFETY: the caller's guarantee.
        unsafe { ext.import_semaphore_fd(&info) }
    }

    unsafe fn raw_import_win32(
        &self,
        t: HandleType,
        handle: vk::HANDLE,
        name: *const u16,
        import: Import,
    ) -> VkResult<()> {
        let ext = self
            .core
            .device
            .inner
            .external
            .semaphore_win32
            .as_ref()
            .ok_or(NOT_LOADED)?;
        let mut info = vk::ImportSemaphoreWin32HandleInfoKHR::default()
            .semaphore(self.semaphore)
            .handle_type(t.semaphore_flag())
            .flags(semaphore_import_flags(import))
            .handle(handle);
        info.name = name;
        // SAFETY: the caller's guarantee.
        unsafe { ext.import_semaphore_win32_handle(&info) }
    }
}

impl Shareable for ExternalSemaphore {}

fn semaphore_import_flags(import: Import) -> vk::SemaphoreImportFlags {
    match import {
        Import::Permanent => vk::SemaphoreImportFlags::empty(),
        Import::Temporary => vk::SemaphoreImportFlags::TEMPORARY,
    }
}

impl Drop for ExternalSemaphore {
    fn drop(&mut self) {
        // SAFETY: destroyed once; no submission is pending on it (the precondition of
        // `Device::submit` and of `handle`).
        unsafe { self.core.device.ash().destroy_semaphore(self.semaphore, None) };
    }
}

impl std::fmt::Debug for ExternalSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSemaphore")
            .field("kind", &self.core.kind)
            .field("handle", &self.semaphore)
            .field("export_types", &self.core.export_types)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Submissions.

/// One batch for [`Device::submit`]: semaphore waits and signals (values apply to timelines;
/// give 0 for binary semaphores) and an optional fence, no command buffers.
#[derive(Default)]
pub struct Submission<'a> {
    pub waits: &'a [(&'a ExternalSemaphore, u64)],
    pub signals: &'a [(&'a ExternalSemaphore, u64)],
    pub fence: Option<&'a ExternalFence>,
}

impl Device {
    /// `vkQueueSubmit` of one batch on queue `queue` (see [`Device::queue_count`]).
    ///
    /// Checked: the queue exists, every object belongs to this device.
    ///
    /// # Safety
    ///
    /// * every binary semaphore waited on has a signal submitted before (in this or another
    ///   process sharing its payload), and none is waited on twice;
    /// * every binary semaphore signaled is unsignaled with no signal pending; timeline signal
    ///   values are greater than the semaphore's value and than its other pending signals, within
    ///   `maxTimelineSemaphoreValueDifference` of them, and no host signal
    ///   ([`ExternalSemaphore::signal`]) reaches a value pending here before it executes;
    /// * the fence is unsignaled and not part of another pending submission;
    /// * until the batch has executed (its fence or a signaled semaphore says so), none of its
    ///   objects is imported into, reset, exported as SYNC_FD or dropped.
    pub unsafe fn submit(&self, queue: u32, submission: &Submission<'_>) -> Result<()> {
        let all = submission
            .waits
            .iter()
            .chain(submission.signals)
            .map(|(s, _)| s.core.device.handle())
            .chain(submission.fence.map(|f| f.core.device.handle()));
        if let Some(other) = all.into_iter().find(|d| *d != self.handle()) {
            return Err(Error::InvalidUsage(format!(
                "an object of the submission belongs to another device ({other:?})"
            )));
        }
        let wait_semaphores: Vec<_> = submission.waits.iter().map(|(s, _)| s.semaphore).collect();
        let wait_values: Vec<_> = submission.waits.iter().map(|(_, v)| *v).collect();
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; submission.waits.len()];
        let signal_semaphores: Vec<_> = submission.signals.iter().map(|(s, _)| s.semaphore).collect();
        let signal_values: Vec<_> = submission.signals.iter().map(|(_, v)| *v).collect();
        let mut values = vk::TimelineSemaphoreSubmitInfo::default()
            .wait_semaphore_values(&wait_values)
            .signal_semaphore_values(&signal_values);
        let mut info = vk::SubmitInfo::default()
            .wait_semaphores(&wait_semaphores)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(&signal_semaphores);
        if self.has_timeline_semaphores() {
            info = info.push_next(&mut values);
        }
        let fence = submission.fence.map_or(vk::Fence::null(), |f| f.fence);
        let queue = self.lock_queue(queue)?;
        // SAFETY: objects of this device (checked), the queue locked, and the caller's
        // guarantees for the rest.
        unsafe { self.ash().queue_submit(*queue, &[info], fence) }.map_err(|e| Error::vulkan("vkQueueSubmit", e, ""))
    }
}

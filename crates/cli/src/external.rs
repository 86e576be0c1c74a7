//! External fences and semaphores on the tether device: creating them exportable, and exporting
//! and importing them as fds (`VK_KHR_external_{fence,semaphore}_fd`) and Win32 handles
//! (`VK_KHR_external_{fence,semaphore}_win32`: NT handles, KMT values, names).
//!
//! An NT handle is an fd its holder owns (DESIGN.md contract 2), so an exported one comes back as
//! an [`NtHandle`]; a KMT value is a number nobody closes; a name is a NUL-terminated UTF-16
//! string. A Win32 import never takes ownership of the handle; an fd import does on success.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use ash::vk;
use tether::{ExportOptions, ExternalFence, ExternalSemaphore, NtHandle};

use crate::vulkan::TetherDevice;

/// Binary or timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemaphoreKind {
    Binary,
    Timeline,
}

/// What a device lacks, as a message.
fn not_enabled(name: &std::ffi::CStr) -> String {
    format!("the device does not offer {}", name.to_string_lossy())
}

impl TetherDevice {
    fn semaphore_fd(&self) -> Result<&ash::khr::external_semaphore_fd::Device, String> {
        let commands = self.shared.external_commands().semaphore_fd.as_ref();
        commands.ok_or_else(|| not_enabled(ash::khr::external_semaphore_fd::NAME))
    }

    fn fence_fd(&self) -> Result<&ash::khr::external_fence_fd::Device, String> {
        let commands = self.shared.external_commands().fence_fd.as_ref();
        commands.ok_or_else(|| not_enabled(ash::khr::external_fence_fd::NAME))
    }

    fn semaphore_win32(&self) -> Result<&ash::khr::external_semaphore_win32::Device, String> {
        let commands = self.shared.external_commands().semaphore_win32.as_ref();
        commands.ok_or_else(|| not_enabled(ash::khr::external_semaphore_win32::NAME))
    }

    fn fence_win32(&self) -> Result<&ash::khr::external_fence_win32::Device, String> {
        let commands = self.shared.external_commands().fence_win32.as_ref();
        commands.ok_or_else(|| not_enabled(ash::khr::external_fence_win32::NAME))
    }
}

/// Takes ownership of an exported NT handle value (an fd the caller owns, contract 2).
fn owned_nt_handle(handle: vk::HANDLE, what: &str) -> Result<NtHandle, String> {
    if handle < 0 || handle > i32::MAX as isize {
        return Err(format!("{what} returned {handle:#x}, not an fd"));
    }
    // SAFETY: the export just returned this fd and hands its ownership to the caller.
    Ok(unsafe { NtHandle::from_raw_handle(handle) })
}

impl TetherDevice {
    /// A semaphore exportable as `options` says (checked by the `tether` crate), handed over
    /// raw: the caller destroys it ([`TetherDevice::destroy_semaphore`]).
    pub fn create_exportable_semaphore(
        &self,
        kind: SemaphoreKind,
        options: &ExportOptions,
    ) -> Result<vk::Semaphore, String> {
        let semaphore = match kind {
            SemaphoreKind::Binary => ExternalSemaphore::binary(&self.shared, options),
            SemaphoreKind::Timeline => ExternalSemaphore::timeline(&self.shared, 0, options),
        };
        semaphore.map(ExternalSemaphore::into_raw).map_err(|e| e.to_string())
    }

    /// A fence exportable as `options` says, handed over raw: the caller destroys it.
    pub fn create_exportable_fence(&self, options: &ExportOptions) -> Result<vk::Fence, String> {
        ExternalFence::new(&self.shared, options)
            .map(ExternalFence::into_raw)
            .map_err(|e| e.to_string())
    }

    /// A semaphore of `kind` that imports are made into (not exportable itself).
    pub fn create_import_target(&self, kind: SemaphoreKind) -> Result<vk::Semaphore, String> {
        self.create_exportable_semaphore(kind, &ExportOptions::default())
    }

    /// `vkGetSemaphoreFdKHR`: a new fd the caller owns.
    pub fn export_semaphore_fd(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
    ) -> Result<OwnedFd, String> {
        let info = vk::SemaphoreGetFdInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type);
        // SAFETY: a live semaphore of this device, created exportable as `handle_type`.
        let fd =
            unsafe { self.semaphore_fd()?.get_semaphore_fd(&info) }.map_err(|e| format!("vkGetSemaphoreFdKHR: {e}"))?;
        // SAFETY: the export returned a new fd and hands its ownership to the caller.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `vkGetFenceFdKHR`: a new fd the caller owns.
    pub fn export_fence_fd(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
    ) -> Result<OwnedFd, String> {
        let info = vk::FenceGetFdInfoKHR::default().fence(fence).handle_type(handle_type);
        // SAFETY: a live fence of this device, created exportable as `handle_type`.
        let fd = unsafe { self.fence_fd()?.get_fence_fd(&info) }.map_err(|e| format!("vkGetFenceFdKHR: {e}"))?;
        // SAFETY: the export returned a new fd and hands its ownership to the caller.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `vkImportSemaphoreFdKHR` (permanent). The driver owns `fd` on success; on failure it is
    /// closed here.
    pub fn import_semaphore_fd(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
        fd: OwnedFd,
    ) -> Result<(), String> {
        let raw = fd.into_raw_fd();
        let info = vk::ImportSemaphoreFdInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type)
            .fd(raw);
        // SAFETY: a live semaphore of this device with no pending work; `raw` is an fd we own,
        // passed to the driver, which owns it if the import succeeds.
        let result = unsafe { self.semaphore_fd()?.import_semaphore_fd(&info) };
        result.map_err(|e| {
            // SAFETY: a failed import leaves the fd with the caller (us).
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
            format!("vkImportSemaphoreFdKHR: {e}")
        })
    }

    /// `vkGetSemaphoreWin32HandleKHR` for an NT handle type: a new handle the caller owns.
    pub fn export_semaphore_nt(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
    ) -> Result<NtHandle, String> {
        let handle = self.export_semaphore_win32(semaphore, handle_type)?;
        owned_nt_handle(handle, "vkGetSemaphoreWin32HandleKHR")
    }

    /// `vkGetSemaphoreWin32HandleKHR`: the raw handle value (an fd for NT types, a global value
    /// for KMT).
    pub fn export_semaphore_win32(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
    ) -> Result<vk::HANDLE, String> {
        let info = vk::SemaphoreGetWin32HandleInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type);
        // SAFETY: a live semaphore of this device, created exportable as `handle_type`.
        unsafe { self.semaphore_win32()?.get_semaphore_win32_handle(&info) }
            .map_err(|e| format!("vkGetSemaphoreWin32HandleKHR ({handle_type:?}): {e}"))
    }

    /// `vkGetFenceWin32HandleKHR` for an NT handle type: a new handle the caller owns.
    pub fn export_fence_nt(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
    ) -> Result<NtHandle, String> {
        let handle = self.export_fence_win32(fence, handle_type)?;
        owned_nt_handle(handle, "vkGetFenceWin32HandleKHR")
    }

    /// `vkGetFenceWin32HandleKHR`: the raw handle value.
    pub fn export_fence_win32(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
    ) -> Result<vk::HANDLE, String> {
        let info = vk::FenceGetWin32HandleInfoKHR::default()
            .fence(fence)
            .handle_type(handle_type);
        // SAFETY: a live fence of this device, created exportable as `handle_type`.
        unsafe { self.fence_win32()?.get_fence_win32_handle(&info) }
            .map_err(|e| format!("vkGetFenceWin32HandleKHR ({handle_type:?}): {e}"))
    }

    /// `vkImportSemaphoreWin32HandleKHR` (permanent) by handle value (`name` None) or by name
    /// (`handle` 0). The handle stays the caller's.
    pub fn import_semaphore_win32(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
        handle: vk::HANDLE,
        name: Option<&[u16]>,
    ) -> Result<(), String> {
        let mut info = vk::ImportSemaphoreWin32HandleInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type)
            .handle(handle);
        info.name = name.map_or(std::ptr::null(), <[u16]>::as_ptr);
        // SAFETY: a live semaphore of this device with no pending work; the name, if any, is
        // NUL-terminated and outlives the call; the handle is only borrowed.
        unsafe { self.semaphore_win32()?.import_semaphore_win32_handle(&info) }
            .map_err(|e| format!("vkImportSemaphoreWin32HandleKHR ({handle_type:?}): {e}"))
    }

    /// `vkImportFenceWin32HandleKHR` (permanent) by handle value or by name.
    pub fn import_fence_win32(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
        handle: vk::HANDLE,
        name: Option<&[u16]>,
    ) -> Result<(), String> {
        let mut info = vk::ImportFenceWin32HandleInfoKHR::default()
            .fence(fence)
            .handle_type(handle_type)
            .handle(handle);
        info.name = name.map_or(std::ptr::null(), <[u16]>::as_ptr);
        // SAFETY: a live fence of this device with no pending work; the name, if any, is
        // NUL-terminated and outlives the call; the handle is only borrowed.
        unsafe { self.fence_win32()?.import_fence_win32_handle(&info) }
            .map_err(|e| format!("vkImportFenceWin32HandleKHR ({handle_type:?}): {e}"))
    }

    pub fn destroy_semaphore(&self, semaphore: vk::Semaphore) {
        // SAFETY: the caller's semaphore, with no pending work, destroyed once.
        unsafe { self.device.destroy_semaphore(semaphore, None) };
    }

    pub fn destroy_fence(&self, fence: vk::Fence) {
        // SAFETY: the caller's fence, with no pending work, destroyed once.
        unsafe { self.device.destroy_fence(fence, None) };
    }
}

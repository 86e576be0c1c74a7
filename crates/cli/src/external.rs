//! External fences and semaphores on the tether device: creating them exportable, and exporting
//! and importing them as fds (`VK_KHR_external_{fence,semaphore}_fd`) and Win32 handles
//! (`VK_KHR_external_{fence,semaphore}_win32`: NT handles, KMT values, names).
//!
//! An NT handle is an fd its holder owns (DESIGN.md contract 2), so an exported one comes back as
//! an [`NtHandle`]; a KMT value is a number nobody closes; a name is a NUL-terminated UTF-16
//! string. A Win32 import never takes ownership of the handle; an fd import does on success.

use std::ffi::c_void;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use ash::vk;
use tether_handles::NtHandle;

use crate::vulkan::TetherDevice;

/// `SECURITY_ATTRIBUTES` as C lays it out (LP64): what `pAttributes` of
/// `VkExport{Fence,Semaphore}Win32HandleInfoKHR` points to.
#[repr(C)]
pub struct SecurityAttributes {
    length: u32,
    security_descriptor: *mut c_void,
    inherit_handle: i32,
}

impl SecurityAttributes {
    /// `bInheritHandle = TRUE`: exported NT handles survive `exec` (no close-on-exec).
    pub fn inheritable() -> SecurityAttributes {
        SecurityAttributes {
            length: std::mem::size_of::<SecurityAttributes>() as u32,
            security_descriptor: std::ptr::null_mut(),
            inherit_handle: 1,
        }
    }
}

/// A NUL-terminated UTF-16 string (`LPCWSTR`).
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// What `VkExport*Win32HandleInfoKHR` says at creation.
#[derive(Clone, Copy, Default)]
pub struct Win32Export<'a> {
    pub attributes: Option<&'a SecurityAttributes>,
    /// NUL-terminated UTF-16 (see [`wide`]).
    pub name: Option<&'a [u16]>,
}

impl Win32Export<'_> {
    fn attributes_ptr(&self) -> *const c_void {
        self.attributes
            .map_or(std::ptr::null(), |a| std::ptr::from_ref(a).cast())
    }

    fn name_ptr(&self) -> *const u16 {
        self.name.map_or(std::ptr::null(), <[u16]>::as_ptr)
    }
}

/// Binary or timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemaphoreKind {
    Binary,
    Timeline,
}

/// The external-handle commands of the device's enabled extensions.
pub struct External {
    semaphore_fd: Option<ash::khr::external_semaphore_fd::Device>,
    fence_fd: Option<ash::khr::external_fence_fd::Device>,
    semaphore_win32: Option<ash::khr::external_semaphore_win32::Device>,
    fence_win32: Option<ash::khr::external_fence_win32::Device>,
}

/// The device extensions [`External`] uses, enabled when the device offers them.
pub const EXTENSIONS: [&std::ffi::CStr; 4] = [
    ash::khr::external_semaphore_fd::NAME,
    ash::khr::external_fence_fd::NAME,
    ash::khr::external_semaphore_win32::NAME,
    ash::khr::external_fence_win32::NAME,
];

impl External {
    /// The commands of the extensions among [`EXTENSIONS`] that `enabled` lists.
    pub fn load(instance: &ash::Instance, device: &ash::Device, enabled: &[&std::ffi::CStr]) -> External {
        let has = |name: &std::ffi::CStr| enabled.contains(&name);
        External {
            semaphore_fd: has(ash::khr::external_semaphore_fd::NAME)
                .then(|| ash::khr::external_semaphore_fd::Device::new(instance, device)),
            fence_fd: has(ash::khr::external_fence_fd::NAME)
                .then(|| ash::khr::external_fence_fd::Device::new(instance, device)),
            semaphore_win32: has(ash::khr::external_semaphore_win32::NAME)
                .then(|| ash::khr::external_semaphore_win32::Device::new(instance, device)),
            fence_win32: has(ash::khr::external_fence_win32::NAME)
                .then(|| ash::khr::external_fence_win32::Device::new(instance, device)),
        }
    }

    /// Whether both fd extensions are enabled.
    pub fn has_fd(&self) -> bool {
        self.semaphore_fd.is_some() && self.fence_fd.is_some()
    }

    /// Whether both Win32 extensions are enabled.
    pub fn has_win32(&self) -> bool {
        self.semaphore_win32.is_some() && self.fence_win32.is_some()
    }

    fn semaphore_fd(&self) -> Result<&ash::khr::external_semaphore_fd::Device, String> {
        self.semaphore_fd
            .as_ref()
            .ok_or_else(|| "the device does not offer VK_KHR_external_semaphore_fd".to_string())
    }

    fn fence_fd(&self) -> Result<&ash::khr::external_fence_fd::Device, String> {
        self.fence_fd
            .as_ref()
            .ok_or_else(|| "the device does not offer VK_KHR_external_fence_fd".to_string())
    }

    fn semaphore_win32(&self) -> Result<&ash::khr::external_semaphore_win32::Device, String> {
        self.semaphore_win32
            .as_ref()
            .ok_or_else(|| "the device does not offer VK_KHR_external_semaphore_win32".to_string())
    }

    fn fence_win32(&self) -> Result<&ash::khr::external_fence_win32::Device, String> {
        self.fence_win32
            .as_ref()
            .ok_or_else(|| "the device does not offer VK_KHR_external_fence_win32".to_string())
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
    /// A semaphore exportable as `types`; `win32` fills `VkExportSemaphoreWin32HandleInfoKHR`.
    pub fn create_exportable_semaphore(
        &self,
        kind: SemaphoreKind,
        types: vk::ExternalSemaphoreHandleTypeFlags,
        win32: Option<Win32Export<'_>>,
    ) -> Result<vk::Semaphore, String> {
        let mut ty = vk::SemaphoreTypeCreateInfo::default().semaphore_type(match kind {
            SemaphoreKind::Binary => vk::SemaphoreType::BINARY,
            SemaphoreKind::Timeline => vk::SemaphoreType::TIMELINE,
        });
        let mut export = vk::ExportSemaphoreCreateInfo::default().handle_types(types);
        let mut win32_info = win32.map(|w| vk::ExportSemaphoreWin32HandleInfoKHR {
            p_attributes: w.attributes_ptr(),
            name: w.name_ptr(),
            ..Default::default()
        });
        let mut info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
        if !types.is_empty() {
            info = info.push_next(&mut export);
        }
        if let Some(w) = win32_info.as_mut() {
            info = info.push_next(w);
        }
        // SAFETY: a valid create info on a live device; the attributes and name outlive the call.
        unsafe { self.device.create_semaphore(&info, None) }
            .map_err(|e| format!("vkCreateSemaphore ({kind:?}, exportable as {types:?}): {e}"))
    }

    /// A fence exportable as `types`; `win32` fills `VkExportFenceWin32HandleInfoKHR`.
    pub fn create_exportable_fence(
        &self,
        types: vk::ExternalFenceHandleTypeFlags,
        win32: Option<Win32Export<'_>>,
    ) -> Result<vk::Fence, String> {
        let mut export = vk::ExportFenceCreateInfo::default().handle_types(types);
        let mut win32_info = win32.map(|w| vk::ExportFenceWin32HandleInfoKHR {
            p_attributes: w.attributes_ptr(),
            name: w.name_ptr(),
            ..Default::default()
        });
        let mut info = vk::FenceCreateInfo::default();
        if !types.is_empty() {
            info = info.push_next(&mut export);
        }
        if let Some(w) = win32_info.as_mut() {
            info = info.push_next(w);
        }
        // SAFETY: a valid create info on a live device; the attributes and name outlive the call.
        unsafe { self.device.create_fence(&info, None) }
            .map_err(|e| format!("vkCreateFence (exportable as {types:?}): {e}"))
    }

    /// A semaphore of `kind` that imports are made into (not exportable itself).
    pub fn create_import_target(&self, kind: SemaphoreKind) -> Result<vk::Semaphore, String> {
        self.create_exportable_semaphore(kind, vk::ExternalSemaphoreHandleTypeFlags::empty(), None)
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
        let fd = unsafe { self.ext.semaphore_fd()?.get_semaphore_fd(&info) }
            .map_err(|e| format!("vkGetSemaphoreFdKHR: {e}"))?;
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
        let fd = unsafe { self.ext.fence_fd()?.get_fence_fd(&info) }.map_err(|e| format!("vkGetFenceFdKHR: {e}"))?;
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
        let result = unsafe { self.ext.semaphore_fd()?.import_semaphore_fd(&info) };
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
        unsafe { self.ext.semaphore_win32()?.get_semaphore_win32_handle(&info) }
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
        unsafe { self.ext.fence_win32()?.get_fence_win32_handle(&info) }
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
        unsafe { self.ext.semaphore_win32()?.import_semaphore_win32_handle(&info) }
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
        unsafe { self.ext.fence_win32()?.import_fence_win32_handle(&info) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_attributes_layout() {
        // nLength, 4 bytes of padding, lpSecurityDescriptor, bInheritHandle (+ padding).
        assert_eq!(std::mem::size_of::<SecurityAttributes>(), 24);
        assert_eq!(std::mem::offset_of!(SecurityAttributes, inherit_handle), 16);
        assert_eq!(SecurityAttributes::inheritable().length, 24);
    }

    #[test]
    fn wide_is_nul_terminated() {
        assert_eq!(wide("A\\b"), vec![0x41, 0x5c, 0x62, 0]);
    }
}

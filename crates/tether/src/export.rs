//! What an object is made exportable as: [`ExportOptions`], and the Win32 attributes it turns
//! into (`VkExport{Fence,Semaphore}Win32HandleInfoKHR`).

use std::ffi::c_void;

use tether_handles::ObjectName;

use crate::caps::{HandleType, HandleTypes, ObjectKind};
use crate::device::Device;
use crate::error::{Error, Result};

/// `GENERIC_ALL`: the access NT handles get when [`ExportOptions::access`] is not set.
pub const GENERIC_ALL: u32 = 0x1000_0000;
/// `SYNCHRONIZE`: wait on the object.
pub const SYNCHRONIZE: u32 = 0x0010_0000;
/// `DXGI_SHARED_RESOURCE_READ`: read (wait) access to a shared D3D object.
pub const DXGI_SHARED_RESOURCE_READ: u32 = 0x8000_0000;
/// `DXGI_SHARED_RESOURCE_WRITE`: write (signal) access to a shared D3D object.
pub const DXGI_SHARED_RESOURCE_WRITE: u32 = 0x0000_0001;

/// The handle types an object is created exportable as, and, for NT handles, the attributes
/// they are exported with.
///
/// ```
/// use tether::{ExportOptions, HandleType};
///
/// let options = ExportOptions::new(HandleType::OpaqueWin32 | HandleType::OpaqueFd)
///     .inheritable(true)
///     .name("Local\\my-renderer-frame".parse().unwrap());
/// assert!(options.handle_types().contains(HandleType::OpaqueFd));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    handle_types: HandleTypes,
    inheritable: bool,
    access: Option<u32>,
    name: Option<ObjectName>,
}

impl ExportOptions {
    /// Exportable as `handle_types` (a [`HandleType`], an array of them, or a set).
    pub fn new(handle_types: impl Into<HandleTypes>) -> ExportOptions {
        ExportOptions {
            handle_types: handle_types.into(),
            ..ExportOptions::default()
        }
    }

    /// Whether exported NT handles are inherited by child processes (`bInheritHandle`: no
    /// close-on-exec). Off by default.
    pub fn inheritable(mut self, inheritable: bool) -> ExportOptions {
        self.inheritable = inheritable;
        self
    }

    /// `dwAccess` of exported NT handles; [`GENERIC_ALL`] when not set.
    pub fn access(mut self, access: u32) -> ExportOptions {
        self.access = Some(access);
        self
    }

    /// The name the payload is registered under at its first NT-handle export, so other
    /// processes can import it by name.
    pub fn name(mut self, name: ObjectName) -> ExportOptions {
        self.name = Some(name);
        self
    }

    pub fn handle_types(&self) -> HandleTypes {
        self.handle_types
    }

    /// Whether `VkExport*Win32HandleInfoKHR` is needed (some attribute was set).
    fn has_win32_attributes(&self) -> bool {
        self.inheritable || self.access.is_some() || self.name.is_some()
    }

    /// Checks the options for an object of `kind` on `device`: every type exportable and
    /// compatible with the others; Win32 attributes only with an NT handle type.
    pub(crate) fn check(&self, device: &Device, kind: ObjectKind) -> Result<()> {
        if self.handle_types.unknown_bits() != 0 {
            return Err(Error::InvalidUsage(format!(
                "unknown handle-type bits {:#x}",
                self.handle_types.unknown_bits()
            )));
        }
        for t in self.handle_types.iter() {
            device.check_handle_type(kind, t, true)?;
        }
        let caps = device.capabilities();
        if !caps.exportable_together(kind, self.handle_types) {
            return Err(Error::Unsupported(format!(
                "{} cannot make a {kind} exportable as {} at once (not compatible)",
                caps.name, self.handle_types
            )));
        }
        if self.has_win32_attributes() && !self.handle_types.iter().any(HandleType::is_nt) {
            return Err(Error::InvalidUsage(
                "NT-handle attributes (inheritable, access, name) need an NT handle type \
                 (OPAQUE_WIN32 or D3D12_FENCE)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The pieces of `VkExport*Win32HandleInfoKHR`, if any attribute was set; they must outlive
    /// the create call.
    pub(crate) fn win32_info(&self) -> Option<Win32Info> {
        if !self.has_win32_attributes() {
            return None;
        }
        Some(Win32Info {
            attributes: SecurityAttributes {
                length: std::mem::size_of::<SecurityAttributes>() as u32,
                security_descriptor: std::ptr::null_mut(),
                inherit_handle: i32::from(self.inheritable),
            },
            access: self.access.unwrap_or(GENERIC_ALL),
            name: self
                .name
                .as_ref()
                .map(|n| n.as_utf16().iter().copied().chain([0]).collect()),
        })
    }
}

/// `SECURITY_ATTRIBUTES` as C lays it out (LP64).
#[repr(C)]
pub(crate) struct SecurityAttributes {
    length: u32,
    security_descriptor: *mut c_void,
    inherit_handle: i32,
}

/// The data `VkExport*Win32HandleInfoKHR` points to.
pub(crate) struct Win32Info {
    pub attributes: SecurityAttributes,
    pub access: u32,
    /// NUL-terminated UTF-16.
    pub name: Option<Vec<u16>>,
}

impl Win32Info {
    pub fn attributes_ptr(&self) -> *const c_void {
        std::ptr::from_ref(&self.attributes).cast()
    }

    pub fn name_ptr(&self) -> *const u16 {
        self.name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr())
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
    }

    #[test]
    fn win32_info_only_with_attributes() {
        assert!(ExportOptions::new(HandleType::OpaqueWin32).win32_info().is_none());
        let info = ExportOptions::new(HandleType::OpaqueWin32)
            .name("Local\\x".parse().unwrap())
            .win32_info()
            .unwrap();
        assert_eq!(info.access, GENERIC_ALL);
        assert_eq!(info.name.as_deref().unwrap().last(), Some(&0));
        assert_eq!(info.attributes.inherit_handle, 0);
    }
}

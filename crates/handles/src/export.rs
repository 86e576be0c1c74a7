//! What an exportable object remembers about its Win32 exports: the attributes it was created
//! with (`VkExport*Win32HandleInfoKHR`), which NT handle types it has exported, and its broker
//! registrations (a name, a KMT value), which live exactly as long as the object (or until a
//! permanent import replaces its payload). The ICD and the layer both keep one per fence and
//! semaphore; the exported file is whatever the caller passes (a payload page, a driver's fd).

use std::os::fd::BorrowedFd;
use std::sync::Mutex;

use crate::{Broker, HandleError, KmtHandle, ObjectName, Registration};

/// `dwAccess` rights that let a handle signal (write or modify): `GENERIC_ALL`, `GENERIC_WRITE`,
/// `DXGI_SHARED_RESOURCE_WRITE` and the `*_MODIFY_STATE` bit of events and semaphores. Any
/// other non-zero mask gives a read-only handle: it can be waited on, never signaled. 0 means the
/// default (full access).
pub const SIGNAL_RIGHTS: u32 = 0x1000_0000 | 0x4000_0000 | 0x0000_0001 | 0x0000_0002;

/// The attributes of `VkExport*Win32HandleInfoKHR`.
#[derive(Clone, Debug, Default)]
pub struct Win32ExportAttributes {
    /// `SECURITY_ATTRIBUTES::bInheritHandle`: exported NT handles survive `exec`.
    pub inheritable: bool,
    /// `dwAccess` (0 = default, full access).
    pub access: u32,
    /// The name given to the object's NT exports.
    pub name: Option<ObjectName>,
}

/// `SECURITY_ATTRIBUTES` as C lays it out on LP64 Linux.
#[repr(C)]
struct SecurityAttributes {
    length: u32,
    security_descriptor: *mut std::ffi::c_void,
    inherit_handle: i32,
}

impl Win32ExportAttributes {
    /// Reads the fields of a `VkExport{Fence,Semaphore}Win32HandleInfoKHR` (`pAttributes`,
    /// `dwAccess`, `name`). DWORD is 32 bits on Windows; bindings that declare it `c_ulong` pass
    /// it widened, so only the low half is the field.
    ///
    /// # Safety
    /// `attributes` must be NULL or point to a `SECURITY_ATTRIBUTES`; `name` NULL or a
    /// NUL-terminated UTF-16 string.
    pub unsafe fn from_raw(
        attributes: *const std::ffi::c_void,
        access: std::ffi::c_ulong,
        name: *const u16,
    ) -> Result<Win32ExportAttributes, crate::NameError> {
        // SAFETY: per the caller's contract.
        let inheritable =
            unsafe { attributes.cast::<SecurityAttributes>().as_ref() }.is_some_and(|a| a.inherit_handle != 0);
        let name = if name.is_null() {
            None
        } else {
            // SAFETY: per the caller's contract; the scan is bounded by the name length limit.
            Some(unsafe { ObjectName::from_lpcwstr(name) }?)
        };
        Ok(Win32ExportAttributes {
            inheritable,
            access: access as u32,
            name,
        })
    }

    pub fn allows_signal(&self) -> bool {
        self.access == 0 || self.access & SIGNAL_RIGHTS != 0
    }
}

#[derive(Default)]
struct Registrations {
    /// Handle-type bits already exported as NT handles.
    nt_exported: u32,
    name: Option<Registration>,
    kmt: Option<(KmtHandle, Registration)>,
}

/// Per-object Win32 export state.
#[derive(Default)]
pub struct Win32Exports {
    pub attributes: Win32ExportAttributes,
    state: Mutex<Registrations>,
}

/// Why an export failed.
#[derive(Debug)]
pub enum ExportError {
    /// An NT handle of this type was already exported from this object
    /// (VUID-Vk*GetWin32HandleInfoKHR-handleType-01449/-01127).
    AlreadyExported,
    /// The broker refused or could not be reached.
    Broker(HandleError),
}

impl Win32Exports {
    pub fn new(attributes: Win32ExportAttributes) -> Win32Exports {
        Win32Exports {
            attributes,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registrations> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the first NT export of `type_bit`, registering the object's name for `file` with
    /// the broker if it has one. Nothing is recorded when this fails.
    pub fn begin_nt_export(&self, type_bit: u32, file: BorrowedFd<'_>, tag: u32) -> Result<(), ExportError> {
        let mut st = self.lock();
        if st.nt_exported & type_bit != 0 {
            return Err(ExportError::AlreadyExported);
        }
        if let (Some(name), None) = (&self.attributes.name, &st.name) {
            let registration = Broker::shared()
                .register_name(name, tag, file)
                .map_err(ExportError::Broker)?;
            st.name = Some(registration);
        }
        st.nt_exported |= type_bit;
        Ok(())
    }

    /// Undoes the record of [`Win32Exports::begin_nt_export`] when the handle itself could not be
    /// made (the export failed, so a later one must be allowed). A name registered on the way stays:
    /// it names the object, which lives on.
    pub fn abandon_nt_export(&self, type_bit: u32) {
        self.lock().nt_exported &= !type_bit;
    }

    /// The object's KMT value for `file`, registered on first use (KMT handles are global: every
    /// export gives the same value). A value lost with a broker restart is registered anew.
    pub fn kmt(&self, file: BorrowedFd<'_>, tag: u32) -> Result<KmtHandle, ExportError> {
        let mut st = self.lock();
        if let Some((value, registration)) = &st.kmt
            && Broker::shared().is_live(registration)
        {
            return Ok(*value);
        }
        let (value, registration) = Broker::shared().register_kmt(tag, file).map_err(ExportError::Broker)?;
        if let Some((_, old)) = st.kmt.replace((value, registration)) {
            let _ = Broker::shared().unregister(old);
        }
        Ok(value)
    }

    /// Forgets every export (the object's payload was replaced, or the object is destroyed).
    pub fn forget(&self) {
        let old = std::mem::take(&mut *self.lock());
        let broker = Broker::shared();
        if let Some(r) = old.name {
            let _ = broker.unregister(r);
        }
        if let Some((_, r)) = old.kmt {
            let _ = broker.unregister(r);
        }
    }

    /// Whether anything was registered with the broker (so dropping must talk to it).
    fn has_registrations(&self) -> bool {
        let st = self.lock();
        st.name.is_some() || st.kmt.is_some()
    }
}

impl Drop for Win32Exports {
    fn drop(&mut self) {
        if self.has_registrations() {
            self.forget();
        }
    }
}

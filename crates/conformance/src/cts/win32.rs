//! The Win32 family (`opaque_win32`, `opaque_win32_kmt`) of the CTS ports ([`Win32`]), and its
//! own cases: the CTS's Win32 export chain (`create_win32`) and many imports with the fds and
//! mappings they leave behind counted (`import_multiple_times`).
//!
//! NT handles follow DESIGN.md contract 2 (the handle is an fd the test owns; the CTS's
//! `DuplicateHandle` copy is `F_DUPFD_CLOEXEC`, its `CloseHandle` is `close`) and KMT values
//! contract 3 (copied as is, never closed). As in the CTS, a handle is closed after the objects
//! that imported it are destroyed ([`KeepingDevice`]). Deliberate differences from the CTS, on
//! top of those in [`super`]:
//!
//! * `create_win32_*` runs here (the CTS runs it on Windows builds only): the export chain is
//!   the CTS's `VkExport*Win32HandleInfoKHR{NULL, DXGI_SHARED_RESOURCE_READ | WRITE, NULL}`,
//!   also for KMT as the CTS does.
//! * `import_multiple_times_*` also checks that the 4096 imports leave no fd and no mapping
//!   behind (counting only the fds on the payload's own file, so other trials running at the
//!   same time cannot disturb the count).
//! * The device has no validation layer on the loader route (see
//!   [`Win32Device::with_options`]).

use std::cell::RefCell;
use std::ops::Deref;
use std::os::fd::AsFd;

use super::cases::{self, params};
use super::{Case, Family, case};
use crate::context::{Options, TestDevice};
use crate::external::{Transference, mappings_of};
use crate::harness::{self, Route};
use crate::kind::SyncKind;
use crate::win32::{self, ExportAttributes, NativeHandle, Permanence, Win32Device, Win32HandleType, fds_on_file};

/// `Win32HandleType as u8`, for the const-generic cases.
pub const NT: u8 = Win32HandleType::OpaqueWin32 as u8;
pub const KMT: u8 = Win32HandleType::OpaqueWin32Kmt as u8;

/// `VK_KHR_external_{fence,semaphore}_win32`: NT handles and KMT values, never taken by an
/// import.
pub enum Win32 {}

/// A CTS case's [`Win32Device`] that keeps the handles imported into its objects and closes
/// them after the device is destroyed, as the CTS does.
pub struct KeepingDevice {
    pub dev: Win32Device,
    /// Declared last: dropped after the device.
    kept: RefCell<Vec<NativeHandle>>,
}

impl Deref for KeepingDevice {
    type Target = TestDevice;
    fn deref(&self) -> &TestDevice {
        &self.dev
    }
}

impl Family for Win32 {
    type Device = KeepingDevice;
    type HandleType = Win32HandleType;
    type Handle = NativeHandle;

    fn handle_type(value: u8) -> Win32HandleType {
        Win32HandleType::from_u8(value)
    }

    fn name(handle_type: Win32HandleType) -> &'static str {
        handle_type.name()
    }

    fn transference(handle_type: Win32HandleType) -> Transference {
        handle_type.transference()
    }

    fn permanences(_: Win32HandleType) -> &'static [Permanence] {
        &[Permanence::Temporary, Permanence::Permanent]
    }

    fn cases<K: SyncKind, const H: u8, const P: u8>() -> Vec<Case> {
        use cases::*;
        vec![
            case!(create_win32::<K, H, P>),
            case!(import_twice::<Win32, K, H, P>),
            case!(reimport::<Win32, K, H, P>),
            case!(import_multiple_times::<K, H, P>),
            case!(signal_export_import_wait::<Win32, K, H, P>),
            case!(signal_import::<Win32, K, H, P>),
            case!(transference::<Win32, K, H, P>),
            // REFERENCE-only cases (every Win32 type is by reference).
            case!(signal_wait_import::<Win32, K, H, P>),
            case!(export_signal_import_wait::<Win32, K, H, P>),
            case!(export_import_signal_wait::<Win32, K, H, P>),
        ]
    }

    fn device(route: Route) -> KeepingDevice {
        KeepingDevice {
            dev: device(route),
            kept: RefCell::new(Vec::new()),
        }
    }

    fn exportable<K: SyncKind>(d: &KeepingDevice, handle_type: Win32HandleType) -> K::Object {
        d.dev.exportable::<K>(handle_type, None)
    }

    fn export<K: SyncKind>(d: &KeepingDevice, object: K::Object, handle_type: Win32HandleType) -> NativeHandle {
        d.dev.export::<K>(object, handle_type)
    }

    fn signal_and_export_while_pending<K: SyncKind>(
        d: &KeepingDevice,
        object: K::Object,
        handle_type: Win32HandleType,
    ) -> NativeHandle {
        d.dev.signal_and_export_while_pending::<K>(object, handle_type)
    }

    fn copy(handle: &NativeHandle) -> NativeHandle {
        handle.copy()
    }

    fn import<K: SyncKind>(
        d: &KeepingDevice,
        object: K::Object,
        handle_type: Win32HandleType,
        permanence: Permanence,
        handle: NativeHandle,
    ) {
        d.dev.import::<K>(object, handle_type, permanence, &handle);
        d.kept.borrow_mut().push(handle);
    }
}

/// A Win32 device with one queue of family 0, for the cases that need the handles themselves.
pub fn device(route: Route) -> Win32Device {
    Win32Device::with_options(route, Options::default().queues(1))
}

/// `create_win32`: the CTS's Win32 export chain (also for KMT), export, import into A, signal
/// the original, wait on A.
fn create_win32<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<Win32, H, P>();
    let d = device(route);
    let object = d.exportable::<K>(h, Some(&ExportAttributes::cts()));
    let handle = d.export::<K>(object, h);
    if let Some(fd) = handle.fd() {
        // READ | WRITE: a full handle (it can signal), close-on-exec (no inheritance asked).
        assert!(
            !win32::is_read_only(fd),
            "DXGI_SHARED_RESOURCE_READ|WRITE gave a read-only handle"
        );
        assert!(
            win32::is_cloexec(fd),
            "an NT handle exported without bInheritHandle is inheritable"
        );
    }
    let object_a = d.create_and_import::<K>(h, p, &handle);
    K::signal(&d, object);
    K::wait(&d, object_a);
    d.idle();
    drop(d);
    handle.close();
}

/// 4096 copy/create/import/destroy/close cycles leave no fd and no mapping behind; then the
/// exporter still works. Where the payload's file is not the payload's alone (a driver's device
/// node: see [`win32::payload_file_is_private`]) the counts say nothing: the cycles run, and the
/// case is reported as not supported with the counts seen.
fn import_multiple_times<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    const IMPORT_COUNT: usize = 4096;
    let (h, p) = params::<Win32, H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h, None);
    let handle_a = d.export::<K>(object_a, h);
    let probe = handle_a.open_payload_fd();
    let countable = win32::payload_file_is_private(probe.as_fd());
    let (fds_before, maps_before) = (fds_on_file(probe.as_fd()), mappings_of(probe.as_fd()));
    for _ in 0..IMPORT_COUNT {
        let copy = handle_a.copy();
        let object_b = d.create_and_import::<K>(h, p, &copy);
        K::destroy(&d, object_b);
        copy.close();
    }
    let (fds_after, maps_after) = (fds_on_file(probe.as_fd()), mappings_of(probe.as_fd()));
    if countable {
        assert_eq!(
            fds_after, fds_before,
            "{IMPORT_COUNT} imports left fds on the payload open"
        );
        assert_eq!(
            maps_after, maps_before,
            "{IMPORT_COUNT} imports left mappings of the payload"
        );
    }
    K::signal(&d, object_a);
    K::wait(&d, object_a);
    d.idle();
    drop(d);
    handle_a.close();
    if !countable {
        harness::not_supported(format!(
            "counting the payload's fds and mappings: its file ({}) is a device node the driver uses for \
             everything else, so its fds and mappings come and go with other work ({IMPORT_COUNT} imports \
             ran; fds on it {fds_before} -> {fds_after}, mappings {maps_before} -> {maps_after})",
            win32::describe_fd(probe.as_fd())
        ));
    }
}

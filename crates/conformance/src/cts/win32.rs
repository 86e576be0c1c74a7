//! The shared cases of `dEQP-VK.api.external.{fence,semaphore}.{opaque_win32,opaque_win32_kmt}.*`
//! (`fence_win32`, `semaphore_win32`, and both again through the layer in `layer_win32`), each
//! following `/work/shared/reference/cts-cases.md` §1.2 (fences) and §2.2 (semaphores) step by
//! step, with the kind's meaning of "signal" and "wait" (see [`crate::kind`]), with NT handles
//! per DESIGN.md contract 2 (the handle is an fd the test owns; the CTS's `DuplicateHandle`
//! copy is `F_DUPFD_CLOEXEC`, its `CloseHandle` is `close`) and KMT values per contract 3
//! (copied as is, never closed). Deliberate differences from the CTS:
//!
//! * `create_win32_*` runs here (the CTS runs it on Windows builds only): the export chain is
//!   the CTS's `VkExport*Win32HandleInfoKHR{NULL, DXGI_SHARED_RESOURCE_READ | WRITE, NULL}`,
//!   also for KMT as the CTS does.
//! * Where the CTS keeps an object pending with its timed compute job, the signal here waits on
//!   a private timeline semaphore that the host signals only after the export.
//! * Every wait is bounded (10 s) and `vkQueueWaitIdle` is preceded by a bounded fence wait, so
//!   a sharing bug fails the case instead of hanging it.
//! * `import_multiple_times_*` also checks that the 4096 imports leave no fd and no mapping
//!   behind (counting only the fds on the payload's own file, so other trials running at the
//!   same time cannot disturb the count).
//! * The device has no validation layer on the loader route (see
//!   [`Win32Device::with_options`]).
//!
//! As in the CTS, an NT handle is closed after the objects that imported it are destroyed.

use std::os::fd::AsFd;

use super::{OwnCases, assemble, case};
use crate::context::Options;
use crate::external::mappings_of;
use crate::harness::{self, Route, Test};
use crate::kind::SyncKind;
use crate::win32::{self, ExportAttributes, Permanence, Win32Device, Win32HandleType, fds_on_file};

const TEMPORARY: u8 = Permanence::Temporary as u8;
const PERMANENT: u8 = Permanence::Permanent as u8;

/// The group of kind `K` and handle type `H`: `fence.opaque_win32`.
pub fn prefix<K: SyncKind>(handle_type: Win32HandleType) -> String {
    format!("{}.{}", K::NAME, handle_type.name())
}

/// Every case of kind `K` and handle type `H` (`Win32HandleType as u8`), the kind's own
/// included, in the CTS's registration order.
pub fn cases<K: SyncKind, const H: u8>(own: &OwnCases) -> Vec<(String, Test)> {
    let permanences = [Permanence::Temporary, Permanence::Permanent];
    assemble(
        &prefix::<K>(Win32HandleType::from_u8(H)),
        own,
        &permanences,
        |p| match p {
            Permanence::Temporary => permanence_cases::<K, H, TEMPORARY>(),
            Permanence::Permanent => permanence_cases::<K, H, PERMANENT>(),
        },
    )
}

fn permanence_cases<K: SyncKind, const H: u8, const P: u8>() -> Vec<(&'static str, fn(Route))> {
    vec![
        case!(K, H, P, create_win32),
        case!(K, H, P, import_twice),
        case!(K, H, P, reimport),
        case!(K, H, P, import_multiple_times),
        case!(K, H, P, signal_export_import_wait),
        case!(K, H, P, signal_import),
        case!(K, H, P, transference),
        // REFERENCE-only cases (every Win32 type is by reference).
        case!(K, H, P, signal_wait_import),
        case!(K, H, P, export_signal_import_wait),
        case!(K, H, P, export_import_signal_wait),
    ]
}

/// The handle type and permanence of a case.
pub fn params<const H: u8, const P: u8>() -> (Win32HandleType, Permanence) {
    (Win32HandleType::from_u8(H), Permanence::from_u8(P))
}

/// A CTS case's device: one queue of family 0, the Win32 extensions.
pub fn device(route: Route) -> Win32Device {
    Win32Device::with_options(route, Options::default().queues(1))
}

/// `create_win32`: the CTS's Win32 export chain (also for KMT), export, import into A, signal
/// the original, wait on A.
fn create_win32<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
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

/// Two imports of copies of one handle share the payload: signal A, B sees it.
fn import_twice<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object = d.exportable::<K>(h, None);
    let handle_a = d.export::<K>(object, h);
    let handle_b = handle_a.copy();
    let object_a = d.create_and_import::<K>(h, p, &handle_a);
    let object_b = d.create_and_import::<K>(h, p, &handle_b);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
    drop(d);
    handle_b.close();
    handle_a.close();
}

/// An import over an already imported payload.
fn reimport<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h, None);
    let handle_a = d.export::<K>(object_a, h);
    let handle_b = handle_a.copy();
    let object_b = d.create_and_import::<K>(h, p, &handle_a);
    d.import::<K>(object_b, h, p, &handle_b);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
    drop(d);
    handle_b.close();
    handle_a.close();
}

/// 4096 copy/create/import/destroy/close cycles leave no fd and no mapping behind; then the
/// exporter still works. Where the payload's file is not the payload's alone (a driver's device
/// node: see [`win32::payload_file_is_private`]) the counts say nothing: the cycles run, and the
/// case is reported as not supported with the counts seen.
fn import_multiple_times<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    const IMPORT_COUNT: usize = 4096;
    let (h, p) = params::<H, P>();
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

/// Export while the signal is pending; after idle, an importer sees it signaled.
fn signal_export_import_wait<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h, None);
    let handle = d.signal_and_export_while_pending::<K>(object_a, h);
    let object_b = d.create_and_import::<K>(h, p, &handle);
    K::wait(&d, object_b);
    d.idle();
    drop(d);
    handle.close();
}

/// Import into an object that is signaled (a semaphore: never waited on).
fn signal_import<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h, None);
    let object_b = K::create(&d);
    K::signal(&d, object_b);
    d.idle();
    let handle = d.export::<K>(object_a, h);
    d.import::<K>(object_b, h, p, &handle);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
    drop(d);
    handle.close();
}

/// Signals and waits through either object reach the other exactly as the permanence says; a
/// temporary import is gone after the fence's reset or the semaphore's wait.
fn transference<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let a = d.exportable::<K>(h, None);
    let handle = d.signal_and_export_while_pending::<K>(a, h);
    let b = d.create_and_import::<K>(h, p, &handle);
    K::wait(&d, b);
    d.idle();
    match p {
        Permanence::Permanent => {
            K::rearm(&d, b);
            K::signal(&d, a);
            K::wait(&d, b);
            K::rearm(&d, a);
            K::signal(&d, b);
            K::wait(&d, a);
        }
        Permanence::Temporary => {
            // B is back on its own payload: two signals, two waits, no double consumption.
            K::rearm(&d, a);
            K::rearm(&d, b);
            K::signal(&d, a);
            K::signal(&d, b);
            K::wait(&d, b);
            K::wait(&d, a);
        }
    }
    d.idle();
    drop(d);
    handle.close();
}

/// Import into an object that was signaled, waited and idled; then signal A, B sees it.
fn signal_wait_import<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h, None);
    let object_b = K::create(&d);
    let handle = d.export::<K>(object_a, h);
    K::signal(&d, object_b);
    K::wait(&d, object_b);
    d.idle();
    d.import::<K>(object_b, h, p, &handle);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
    drop(d);
    handle.close();
}

/// A handle taken before the signal sees the later signal.
fn export_signal_import_wait<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h, None);
    let handle = d.export::<K>(object_a, h);
    K::signal(&d, object_a);
    let object_b = d.create_and_import::<K>(h, p, &handle);
    K::wait(&d, object_b);
    d.idle();
    drop(d);
    handle.close();
}

/// Export, import, then signal the exporter: the importer signals.
fn export_import_signal_wait<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h, None);
    let handle = d.export::<K>(object_a, h);
    let object_b = d.create_and_import::<K>(h, p, &handle);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
    drop(d);
    handle.close();
}

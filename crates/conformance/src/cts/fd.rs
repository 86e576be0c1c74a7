//! The shared cases of `dEQP-VK.api.external.{fence,semaphore}.{opaque_fd,sync_fd}.*`
//! (`fence_fd`, `semaphore_fd`), each following `/work/shared/reference/cts-cases.md` §1.2 (fences)
//! and §2.2 (semaphores) step by step, with the kind's meaning of "signal" and "wait" (see
//! [`crate::kind`]), on the loader route (validation layer on when installed) and the in-process
//! route. Two deliberate differences from the CTS:
//!
//! * Where the CTS keeps an object pending with its timed compute job, the signal here waits on a
//!   private timeline semaphore that the host signals only after the export
//!   ([`FdDevice::signal_and_export_while_pending`]). The object is pending for certain, so a
//!   COPY export must give a real fd and the CTS's early pass on `-1` never applies.
//! * Every wait is bounded (10 s) and `vkQueueWaitIdle` is preceded by a bounded fence wait, so
//!   a sharing bug fails the case instead of hanging it.

use std::os::fd::AsFd;

use super::{OwnCases, assemble, case};
use crate::context::Options;
use crate::external::{
    ExportedFd, FdDevice, FdHandleType, Permanence, Transference, copy_handle, recv_fds, send_fds, socket_pair,
};
use crate::harness::{Route, Test};
use crate::kind::SyncKind;

const TEMPORARY: u8 = Permanence::Temporary as u8;
const PERMANENT: u8 = Permanence::Permanent as u8;

/// The group of kind `K` and handle type `H`: `fence.opaque_fd`.
pub fn prefix<K: SyncKind>(handle_type: FdHandleType) -> String {
    format!("{}.{}", K::NAME, handle_type.name())
}

/// Every case of kind `K` and handle type `H` (`FdHandleType as u8`), the kind's own included,
/// in the CTS's registration order.
pub fn cases<K: SyncKind, const H: u8>(own: &OwnCases) -> Vec<(String, Test)> {
    let handle_type = FdHandleType::from_u8(H);
    assemble(&prefix::<K>(handle_type), own, handle_type.permanences(), |p| match p {
        Permanence::Temporary => permanence_cases::<K, H, TEMPORARY>(),
        Permanence::Permanent => permanence_cases::<K, H, PERMANENT>(),
    })
}

fn permanence_cases<K: SyncKind, const H: u8, const P: u8>() -> Vec<(&'static str, fn(Route))> {
    let handle_type = FdHandleType::from_u8(H);
    let mut all = vec![
        case!(K, H, P, import_twice),
        case!(K, H, P, reimport),
        case!(K, H, P, import_multiple_times),
        case!(K, H, P, signal_export_import_wait),
        case!(K, H, P, signal_import),
        case!(K, H, P, transference),
    ];
    if handle_type == FdHandleType::SyncFd {
        all.push(case!(K, H, P, import_signaled));
    }
    all.extend([
        case!(K, H, P, export_multiple_times),
        case!(K, H, P, dup),
        case!(K, H, P, dup2),
        case!(K, H, P, dup3),
        case!(K, H, P, send_over_socket),
    ]);
    if handle_type.transference() == Transference::Reference {
        all.extend([
            case!(K, H, P, signal_wait_import),
            case!(K, H, P, export_signal_import_wait),
            case!(K, H, P, export_import_signal_wait),
        ]);
    }
    all
}

/// The handle type and permanence of a case.
pub fn params<const H: u8, const P: u8>() -> (FdHandleType, Permanence) {
    (FdHandleType::from_u8(H), Permanence::from_u8(P))
}

/// A CTS case's device: one queue of family 0, the fd extensions.
pub fn device(route: Route) -> FdDevice {
    FdDevice::with_options(route, Options::default().queues(1))
}

/// The handle of an exportable object as most cases take it: COPY types export while a signal
/// is pending (the CTS's compute job), REFERENCE types export the unsignaled object.
pub fn export_for_case<K: SyncKind>(d: &FdDevice, object: K::Object, handle_type: FdHandleType) -> ExportedFd {
    match handle_type.transference() {
        Transference::Copy => d.signal_and_export_while_pending::<K>(object, handle_type),
        Transference::Reference => d.export::<K>(object, handle_type),
    }
}

/// How most cases end: a COPY import holds the signal its export took, so `importer` is
/// signaled; a REFERENCE import shares `exporter`'s payload, so a signal of `exporter` reaches it.
pub fn signal_reaches<K: SyncKind>(d: &FdDevice, handle_type: FdHandleType, exporter: K::Object, importer: K::Object) {
    if handle_type.transference() == Transference::Reference {
        K::signal(d, exporter);
    }
    K::wait(d, importer);
}

/// Two imports of copies of one handle: REF shares the payload (signal one, the other signals).
fn import_twice<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object = d.exportable::<K>(h);
    let handle_a = export_for_case::<K>(&d, object, h);
    let handle_b = copy_handle(&handle_a);
    let object_a = d.create_and_import::<K>(h, p, handle_a);
    let object_b = d.create_and_import::<K>(h, p, handle_b);
    match h.transference() {
        Transference::Copy => K::wait(&d, object_a),
        Transference::Reference => {
            K::signal(&d, object_a);
            K::wait(&d, object_b);
        }
    }
    d.idle();
}

/// An import over an already imported payload.
fn reimport<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let handle_a = export_for_case::<K>(&d, object_a, h);
    let handle_b = copy_handle(&handle_a);
    let object_b = d.create_and_import::<K>(h, p, handle_a);
    d.import::<K>(object_b, h, p, handle_b);
    signal_reaches::<K>(&d, h, object_a, object_b);
    d.idle();
}

/// 4096 copy/create/import/destroy cycles, then the exporter still works.
fn import_multiple_times<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    const IMPORT_COUNT: usize = 4096;
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let handle_a = export_for_case::<K>(&d, object_a, h);
    for _ in 0..IMPORT_COUNT {
        let object_b = d.create_and_import::<K>(h, p, copy_handle(&handle_a));
        K::destroy(&d, object_b);
    }
    match h.transference() {
        Transference::Copy => d.import::<K>(object_a, h, p, handle_a),
        Transference::Reference => {
            drop(handle_a);
            K::signal(&d, object_a);
        }
    }
    K::wait(&d, object_a);
    d.idle();
}

/// Export while the signal is pending; after idle, an importer sees it signaled.
fn signal_export_import_wait<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let handle = d.signal_and_export_while_pending::<K>(object_a, h);
    let object_b = d.create_and_import::<K>(h, p, handle);
    K::wait(&d, object_b);
    d.idle();
}

/// Import into an object that is signaled (a semaphore: never waited on).
fn signal_import<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let object_b = K::create(&d);
    K::signal(&d, object_b);
    d.idle();
    let handle = export_for_case::<K>(&d, object_a, h);
    d.import::<K>(object_b, h, p, handle);
    signal_reaches::<K>(&d, h, object_a, object_b);
    d.idle();
}

/// Signals and waits through either object reach the other exactly as the transference and
/// permanence say; a temporary import is gone after the fence's reset or the semaphore's wait.
fn transference<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let a = d.exportable::<K>(h);
    let handle = d.signal_and_export_while_pending::<K>(a, h);
    let b = d.create_and_import::<K>(h, p, handle);
    match (h.transference(), p) {
        (Transference::Copy, _) => {
            // The export took A's signal: A is unsignaled and can be signaled again.
            K::signal(&d, a);
            K::wait(&d, b);
            d.idle();
            K::rearm(&d, b);
            K::signal(&d, b);
            K::wait(&d, a);
            K::wait(&d, b);
        }
        (Transference::Reference, Permanence::Permanent) => {
            K::wait(&d, b);
            d.idle();
            K::rearm(&d, b);
            K::signal(&d, a);
            K::wait(&d, b);
            K::rearm(&d, a);
            K::signal(&d, b);
            K::wait(&d, a);
        }
        (Transference::Reference, Permanence::Temporary) => {
            K::wait(&d, b);
            d.idle();
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
}

/// SYNC_FD `-1` means already signaled. The CTS passes either way; tether must treat it as
/// signaled.
fn import_signaled<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object = d.create_and_import::<K>(h, p, None);
    K::expect_signaled(&d, object);
}

/// 1024 exports from one object (COPY: each while a signal is pending), then it still works.
fn export_multiple_times<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    const EXPORT_COUNT: usize = 1024;
    let (h, _) = params::<H, P>();
    let d = device(route);
    let object = d.exportable::<K>(h);
    for _ in 0..EXPORT_COUNT {
        let handle = export_for_case::<K>(&d, object, h);
        drop(handle);
    }
    K::signal(&d, object);
    K::wait(&d, object);
    d.idle();
}

/// An import of a `dup` of the exported fd.
fn dup<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let fd = export_for_case::<K>(&d, object_a, h).expect("an exported fd");
    let new_fd = rustix::io::dup(&fd).expect("dup");
    let object_b = d.create_and_import::<K>(h, p, Some(new_fd));
    signal_reaches::<K>(&d, h, object_a, object_b);
    d.idle();
}

/// Which call replaces the second fd by the first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Duplicate {
    Dup2,
    Dup3,
}

/// `dup2`/`dup3(fdA, fdB)`: fdB now refers to A's payload, and importing it behaves as A's.
fn dup_over<K: SyncKind, const H: u8, const P: u8>(route: Route, how: Duplicate) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let object_b = d.exportable::<K>(h);
    let fd = export_for_case::<K>(&d, object_a, h).expect("an exported fd");
    let mut second_fd = export_for_case::<K>(&d, object_b, h).expect("an exported fd");
    match how {
        Duplicate::Dup2 => rustix::io::dup2(&fd, &mut second_fd).expect("dup2"),
        Duplicate::Dup3 => rustix::io::dup3(&fd, &mut second_fd, rustix::io::DupFlags::empty()).expect("dup3"),
    }
    let object_c = d.create_and_import::<K>(h, p, Some(second_fd));
    signal_reaches::<K>(&d, h, object_a, object_c);
    d.idle();
}

fn dup2<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    dup_over::<K, H, P>(route, Duplicate::Dup2);
}

fn dup3<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    dup_over::<K, H, P>(route, Duplicate::Dup3);
}

/// The fd travels over a socketpair with SCM_RIGHTS (payload "deqp") before the import.
fn send_over_socket<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object = d.exportable::<K>(h);
    let fd = export_for_case::<K>(&d, object, h).expect("an exported fd");
    let (sender, receiver) = socket_pair();
    send_fds(sender.as_fd(), &[fd.as_fd()], b"deqp").expect("sendmsg with SCM_RIGHTS");
    drop(fd);
    let (mut fds, payload) = recv_fds(receiver.as_fd(), 1, 16).expect("recvmsg with SCM_RIGHTS");
    assert_eq!(payload, b"deqp");
    assert_eq!(fds.len(), 1, "one fd received");
    let new_object = d.create_and_import::<K>(h, p, fds.pop());
    signal_reaches::<K>(&d, h, new_object, new_object);
    d.idle();
}

/// Import into an object that was signaled, waited and idled; then the shared payload rules.
fn signal_wait_import<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let object_b = K::create(&d);
    let handle = d.export::<K>(object_a, h);
    K::signal(&d, object_b);
    K::wait(&d, object_b);
    d.idle();
    d.import::<K>(object_b, h, p, handle);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
}

/// A handle taken before the signal sees the later signal.
fn export_signal_import_wait<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let handle = d.export::<K>(object_a, h);
    K::signal(&d, object_a);
    let object_b = d.create_and_import::<K>(h, p, handle);
    K::wait(&d, object_b);
    d.idle();
}

/// Export, import, then signal the exporter: the importer signals.
fn export_import_signal_wait<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let object_a = d.exportable::<K>(h);
    let handle = d.export::<K>(object_a, h);
    let object_b = d.create_and_import::<K>(h, p, handle);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
}

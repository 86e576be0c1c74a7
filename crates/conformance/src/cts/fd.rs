//! The fd family (`opaque_fd`, `sync_fd`) of the CTS ports ([`Fd`]), and its own cases: the
//! fd's life (`dup`, `dup2`, `dup3`, `send_over_socket`), SYNC_FD's `-1` (`import_signaled`),
//! many exports (`export_multiple_times`) and many imports (`import_multiple_times`).

use std::os::fd::AsFd;

use super::cases::{self, export_for_case, params, signal_reaches};
use super::{Case, Family, case};
use crate::context::Options;
use crate::external::{
    ExportedFd, FdDevice, FdHandleType, Permanence, Transference, copy_handle, recv_fds, send_fds, socket_pair,
};
use crate::harness::Route;
use crate::kind::SyncKind;

/// `FdHandleType as u8`, for the const-generic cases.
pub const OPAQUE_FD: u8 = FdHandleType::OpaqueFd as u8;
pub const SYNC_FD: u8 = FdHandleType::SyncFd as u8;

/// `VK_KHR_external_{fence,semaphore}_fd`: an fd the test owns until an import takes it.
pub enum Fd {}

impl Family for Fd {
    type Device = FdDevice;
    type HandleType = FdHandleType;
    type Handle = ExportedFd;

    fn handle_type(value: u8) -> FdHandleType {
        FdHandleType::from_u8(value)
    }

    fn name(handle_type: FdHandleType) -> &'static str {
        handle_type.name()
    }

    fn transference(handle_type: FdHandleType) -> Transference {
        handle_type.transference()
    }

    fn permanences(handle_type: FdHandleType) -> &'static [Permanence] {
        handle_type.permanences()
    }

    fn cases<K: SyncKind, const H: u8, const P: u8>() -> Vec<Case> {
        use cases::*;
        let handle_type = FdHandleType::from_u8(H);
        let mut all = vec![
            case!(import_twice::<Fd, K, H, P>),
            case!(reimport::<Fd, K, H, P>),
            case!(import_multiple_times::<K, H, P>),
            case!(signal_export_import_wait::<Fd, K, H, P>),
            case!(signal_import::<Fd, K, H, P>),
            case!(transference::<Fd, K, H, P>),
        ];
        if handle_type == FdHandleType::SyncFd {
            all.push(case!(import_signaled::<K, H, P>));
        }
        all.extend([
            case!(export_multiple_times::<K, H, P>),
            case!(dup::<K, H, P>),
            case!(dup2::<K, H, P>),
            case!(dup3::<K, H, P>),
            case!(send_over_socket::<K, H, P>),
        ]);
        if handle_type.transference() == Transference::Reference {
            all.extend([
                case!(signal_wait_import::<Fd, K, H, P>),
                case!(export_signal_import_wait::<Fd, K, H, P>),
                case!(export_import_signal_wait::<Fd, K, H, P>),
            ]);
        }
        all
    }

    fn device(route: Route) -> FdDevice {
        FdDevice::with_options(route, Options::default().queues(1))
    }

    fn exportable<K: SyncKind>(d: &FdDevice, handle_type: FdHandleType) -> K::Object {
        d.exportable::<K>(handle_type)
    }

    fn export<K: SyncKind>(d: &FdDevice, object: K::Object, handle_type: FdHandleType) -> ExportedFd {
        d.export::<K>(object, handle_type)
    }

    fn signal_and_export_while_pending<K: SyncKind>(
        d: &FdDevice,
        object: K::Object,
        handle_type: FdHandleType,
    ) -> ExportedFd {
        d.signal_and_export_while_pending::<K>(object, handle_type)
    }

    fn copy(handle: &ExportedFd) -> ExportedFd {
        copy_handle(handle)
    }

    fn import<K: SyncKind>(
        d: &FdDevice,
        object: K::Object,
        handle_type: FdHandleType,
        permanence: Permanence,
        handle: ExportedFd,
    ) {
        d.import::<K>(object, handle_type, permanence, handle);
    }
}

/// 4096 copy/create/import/destroy cycles, then the exporter still works.
fn import_multiple_times<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    const IMPORT_COUNT: usize = 4096;
    let (h, p) = params::<Fd, H, P>();
    let d = Fd::device(route);
    let object_a = d.exportable::<K>(h);
    let handle_a = export_for_case::<Fd, K>(&d, object_a, h);
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

/// SYNC_FD `-1` means already signaled. The CTS passes either way; tether must treat it as
/// signaled.
fn import_signaled<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<Fd, H, P>();
    let d = Fd::device(route);
    let object = d.create_and_import::<K>(h, p, None);
    K::expect_signaled(&d, object);
}

/// 1024 exports from one object (COPY: each while a signal is pending), then it still works.
fn export_multiple_times<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    const EXPORT_COUNT: usize = 1024;
    let (h, _) = params::<Fd, H, P>();
    let d = Fd::device(route);
    let object = d.exportable::<K>(h);
    for _ in 0..EXPORT_COUNT {
        let handle = export_for_case::<Fd, K>(&d, object, h);
        drop(handle);
    }
    K::signal(&d, object);
    K::wait(&d, object);
    d.idle();
}

/// An import of a `dup` of the exported fd.
fn dup<K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<Fd, H, P>();
    let d = Fd::device(route);
    let object_a = d.exportable::<K>(h);
    let fd = export_for_case::<Fd, K>(&d, object_a, h).expect("an exported fd");
    let new_fd = rustix::io::dup(&fd).expect("dup");
    let object_b = d.create_and_import::<K>(h, p, Some(new_fd));
    signal_reaches::<Fd, K>(&d, h, object_a, object_b);
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
    let (h, p) = params::<Fd, H, P>();
    let d = Fd::device(route);
    let object_a = d.exportable::<K>(h);
    let object_b = d.exportable::<K>(h);
    let fd = export_for_case::<Fd, K>(&d, object_a, h).expect("an exported fd");
    let mut second_fd = export_for_case::<Fd, K>(&d, object_b, h).expect("an exported fd");
    match how {
        Duplicate::Dup2 => rustix::io::dup2(&fd, &mut second_fd).expect("dup2"),
        Duplicate::Dup3 => rustix::io::dup3(&fd, &mut second_fd, rustix::io::DupFlags::empty()).expect("dup3"),
    }
    let object_c = d.create_and_import::<K>(h, p, Some(second_fd));
    signal_reaches::<Fd, K>(&d, h, object_a, object_c);
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
    let (h, p) = params::<Fd, H, P>();
    let d = Fd::device(route);
    let object = d.exportable::<K>(h);
    let fd = export_for_case::<Fd, K>(&d, object, h).expect("an exported fd");
    let (sender, receiver) = socket_pair();
    send_fds(sender.as_fd(), &[fd.as_fd()], b"deqp").expect("sendmsg with SCM_RIGHTS");
    drop(fd);
    let (mut fds, payload) = recv_fds(receiver.as_fd(), 1, 16).expect("recvmsg with SCM_RIGHTS");
    assert_eq!(payload, b"deqp");
    assert_eq!(fds.len(), 1, "one fd received");
    let new_object = d.create_and_import::<K>(h, p, fds.pop());
    signal_reaches::<Fd, K>(&d, h, new_object, new_object);
    d.idle();
}

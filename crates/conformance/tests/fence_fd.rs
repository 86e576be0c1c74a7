//! Ports of `dEQP-VK.api.external.fence.{opaque_fd,sync_fd}.*` (31 + 14 cases), one trial
//! each, named as in the CTS (`fence.opaque_fd.import_twice_temporary`), on the loader route
//! (validation layer on when installed) and the in-process route.
//!
//! Each case follows `/work/shared/reference/cts-cases.md` §1.2 step by step, with two
//! deliberate differences:
//!
//! * Where the CTS keeps a fence pending with its timed compute job, the signal here waits on a
//!   private timeline semaphore that the host signals only after the export
//!   ([`FdDevice::signal_fence_and_export_while_pending`]). The fence is pending for certain, so
//!   a COPY export must give a real fd and the CTS's early pass on `-1` never applies.
//! * Every wait is bounded (10 s) and `vkQueueWaitIdle` is preceded by a bounded fence wait, so
//!   a sharing bug fails the case instead of hanging it.

use std::os::fd::AsFd;
use std::process::ExitCode;

use ash::vk;
use tether_conformance::external::{
    ExportedFd, FdDevice, FdHandleType, Permanence, Transference, copy_handle, cts_case, fence_properties, recv_fds,
    send_fds, socket_pair,
};
use tether_conformance::harness::{self, LOADER_AND_IN_PROCESS, Route, Test};
use tether_conformance::{TestInstance, context::Options};

const OPAQUE_FD: u8 = FdHandleType::OpaqueFd as u8;
const SYNC_FD: u8 = FdHandleType::SyncFd as u8;
const TEMPORARY: u8 = Permanence::Temporary as u8;
const PERMANENT: u8 = Permanence::Permanent as u8;

fn main() -> ExitCode {
    harness::main(&[], || {
        let mut all = cases_for::<OPAQUE_FD>();
        all.extend(cases_for::<SYNC_FD>());
        all
    })
}

/// One CTS case instantiated for a handle type and a permanence.
macro_rules! case {
    ($prefix:expr, $h:expr, $p:expr, $case:ident) => {
        cts_case(
            &$prefix,
            stringify!($case),
            Some(Permanence::from_u8($p)),
            LOADER_AND_IN_PROCESS,
            $case::<{ $h }, { $p }>,
        )
    };
}

/// The cases of one handle type, in the CTS's registration order.
fn cases_for<const H: u8>() -> Vec<(String, Test)> {
    let handle_type = FdHandleType::from_u8(H);
    let prefix = format!("fence.{}", handle_type.name());
    let mut all = vec![cts_case(&prefix, "info", None, LOADER_AND_IN_PROCESS, info::<H>)];
    all.extend(permanence_cases::<H, TEMPORARY>(&prefix));
    if handle_type.permanences().contains(&Permanence::Permanent) {
        all.extend(permanence_cases::<H, PERMANENT>(&prefix));
    }
    all
}

fn permanence_cases<const H: u8, const P: u8>(prefix: &str) -> Vec<(String, Test)> {
    let handle_type = FdHandleType::from_u8(H);
    let mut all = vec![
        case!(prefix, H, P, import_twice),
        case!(prefix, H, P, reimport),
        case!(prefix, H, P, import_multiple_times),
        case!(prefix, H, P, signal_export_import_wait),
        case!(prefix, H, P, signal_import),
        case!(prefix, H, P, reset),
        case!(prefix, H, P, transference),
    ];
    if handle_type == FdHandleType::SyncFd {
        all.push(case!(prefix, H, P, import_signaled));
    }
    all.extend([
        case!(prefix, H, P, export_multiple_times),
        case!(prefix, H, P, dup),
        case!(prefix, H, P, dup2),
        case!(prefix, H, P, dup3),
        case!(prefix, H, P, send_over_socket),
    ]);
    if handle_type.transference() == Transference::Reference {
        all.extend([
            case!(prefix, H, P, signal_wait_import),
            case!(prefix, H, P, export_signal_import_wait),
            case!(prefix, H, P, export_import_signal_wait),
        ]);
    }
    all
}

fn params<const H: u8, const P: u8>() -> (FdHandleType, Permanence) {
    (FdHandleType::from_u8(H), Permanence::from_u8(P))
}

/// A CTS case's device: one queue of family 0, the fd extensions.
fn device(route: Route) -> FdDevice {
    FdDevice::with_options(route, Options::default().queues(1))
}

/// The handle of an exportable fence as most cases take it: COPY types export while a signal
/// is pending (the CTS's compute job), REFERENCE types export the unsignaled fence.
fn export_for_case(d: &FdDevice, fence: vk::Fence, handle_type: FdHandleType) -> ExportedFd {
    match handle_type.transference() {
        Transference::Copy => d.signal_fence_and_export_while_pending(fence, handle_type),
        Transference::Reference => d.export_fence(fence, handle_type),
    }
}

/// `info`: the query keeps `sType`/`pNext` (the CTS's only assertions), plus the rules tether
/// promises: both features for the fd types, the queried type among the compatible ones when
/// exportable, nothing at all for a type the device does not offer.
fn info<const H: u8>(route: Route) {
    let handle_type = FdHandleType::from_u8(H);
    let inst = TestInstance::with_options(route, Options::default());
    let props = fence_properties(&inst, handle_type.fence_bit());
    assert_eq!(props.s_type, vk::StructureType::EXTERNAL_FENCE_PROPERTIES);
    assert!(props.p_next.is_null());
    let both = vk::ExternalFenceFeatureFlags::EXPORTABLE | vk::ExternalFenceFeatureFlags::IMPORTABLE;
    assert_eq!(props.external_fence_features, both, "{props:?}");
    assert!(
        props.compatible_handle_types.contains(handle_type.fence_bit()),
        "{props:?}"
    );
    assert!(
        props
            .export_from_imported_handle_types
            .contains(handle_type.fence_bit()),
        "{props:?}"
    );
    if handle_type.transference() == Transference::Copy {
        // A copy can only be re-exported as what it is.
        assert_eq!(
            props.export_from_imported_handle_types,
            handle_type.fence_bit(),
            "{props:?}"
        );
    }
    // Every fence type: features iff the device offers the family's extension, and exportable
    // implies compatible with itself.
    let extensions = inst.device_extension_names();
    let offers = |name: &str| extensions.iter().any(|e| e == name);
    for (bit, extension) in [
        (vk::ExternalFenceHandleTypeFlags::OPAQUE_FD, "VK_KHR_external_fence_fd"),
        (vk::ExternalFenceHandleTypeFlags::SYNC_FD, "VK_KHR_external_fence_fd"),
        (
            vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32,
            "VK_KHR_external_fence_win32",
        ),
        (
            vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT,
            "VK_KHR_external_fence_win32",
        ),
    ] {
        let props = fence_properties(&inst, bit);
        if offers(extension) {
            assert!(
                props
                    .external_fence_features
                    .contains(vk::ExternalFenceFeatureFlags::EXPORTABLE),
                "{bit:?}: {props:?}"
            );
            assert!(props.compatible_handle_types.contains(bit), "{bit:?}: {props:?}");
        } else {
            assert_eq!(
                props.external_fence_features,
                vk::ExternalFenceFeatureFlags::empty(),
                "{bit:?}"
            );
            assert_eq!(
                props.compatible_handle_types,
                vk::ExternalFenceHandleTypeFlags::empty(),
                "{bit:?}"
            );
            assert_eq!(
                props.export_from_imported_handle_types,
                vk::ExternalFenceHandleTypeFlags::empty(),
                "{bit:?}"
            );
        }
    }
}

/// Two imports of copies of one handle: REF shares the payload (signal one, the other signals).
fn import_twice<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence = d.exportable_fence(h.fence_bit());
    let handle_a = export_for_case(&d, fence, h);
    let handle_b = copy_handle(&handle_a);
    let fence_a = d.create_and_import_fence(h, p, handle_a);
    let fence_b = d.create_and_import_fence(h, p, handle_b);
    match h.transference() {
        Transference::Copy => d.wait_fence(fence_a),
        Transference::Reference => {
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_b);
        }
    }
    d.idle();
}

/// An import over an already imported payload.
fn reimport<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let handle_a = export_for_case(&d, fence_a, h);
    let handle_b = copy_handle(&handle_a);
    let fence_b = d.create_and_import_fence(h, p, handle_a);
    d.import_fence(fence_b, h, p, handle_b);
    match h.transference() {
        Transference::Copy => d.wait_fence(fence_b),
        Transference::Reference => {
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_b);
        }
    }
    d.idle();
}

/// 4096 copy/create/import/destroy cycles, then the exporter still works.
fn import_multiple_times<const H: u8, const P: u8>(route: Route) {
    const IMPORT_COUNT: usize = 4096;
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let handle_a = export_for_case(&d, fence_a, h);
    for _ in 0..IMPORT_COUNT {
        let fence_b = d.create_and_import_fence(h, p, copy_handle(&handle_a));
        d.destroy_fence(fence_b);
    }
    match h.transference() {
        Transference::Copy => {
            d.import_fence(fence_a, h, p, handle_a);
            d.wait_fence(fence_a);
        }
        Transference::Reference => {
            drop(handle_a);
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_a);
        }
    }
    d.idle();
}

/// Export while the signal is pending; after idle, an importer sees it signaled.
fn signal_export_import_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let handle = d.signal_fence_and_export_while_pending(fence_a, h);
    let fence_b = d.create_and_import_fence(h, p, handle);
    d.wait_fence(fence_b);
    d.idle();
}

/// Import into an already signaled fence.
fn signal_import<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let fence_b = d.fence(false);
    d.submit_signal_fence(fence_b);
    d.idle();
    let handle = export_for_case(&d, fence_a, h);
    d.import_fence(fence_b, h, p, handle);
    match h.transference() {
        Transference::Copy => d.wait_fence(fence_b),
        Transference::Reference => {
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_b);
        }
    }
    d.idle();
}

/// `vkResetFences` drops a temporary import first and resets the fence's own payload; a
/// permanent REF import resets the shared payload for every member.
fn reset<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let fence_b = d.fence(false);
    let fence_c = d.fence(false);
    d.submit_signal_fence(fence_b);
    d.idle();
    let handle = d.signal_fence_and_export_while_pending(fence_a, h);
    d.import_fence(fence_b, h, p, copy_handle(&handle));
    d.import_fence(fence_c, h, p, handle);
    d.idle();
    d.reset_fences(&[fence_b]);
    if p == Permanence::Temporary || h.transference() == Transference::Copy {
        // B's own payload was reset, not the shared or copied one C holds.
        d.wait_fence(fence_c);
        d.submit_signal_fence(fence_b);
        d.wait_fence(fence_b);
    } else {
        // A, B and C share one payload, which the reset of B unsignaled.
        d.submit_signal_fence(fence_c);
        d.wait_fence(fence_a);
        d.wait_fence(fence_b);
        d.wait_fence(fence_c);
    }
    d.idle();
}

/// Signals and resets through either fence reach the other exactly as the transference and
/// permanence say.
fn transference<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let handle = d.signal_fence_and_export_while_pending(fence_a, h);
    let fence_b = d.create_and_import_fence(h, p, handle);
    match (h.transference(), p) {
        (Transference::Copy, _) => {
            // The export took A's signal: A is unsignaled and can be signaled again.
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_b);
            d.idle();
            d.reset_fences(&[fence_b]);
            d.submit_signal_fence(fence_b);
            d.wait_fence(fence_a);
            d.wait_fence(fence_b);
        }
        (Transference::Reference, Permanence::Permanent) => {
            d.wait_fence(fence_b);
            d.idle();
            d.reset_fences(&[fence_b]);
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_b);
            d.reset_fences(&[fence_a]);
            d.submit_signal_fence(fence_b);
            d.wait_fence(fence_a);
        }
        (Transference::Reference, Permanence::Temporary) => {
            d.wait_fence(fence_b);
            d.idle();
            d.reset_fences(&[fence_a]);
            d.reset_fences(&[fence_b]);
            d.submit_signal_fence(fence_a);
            d.submit_signal_fence(fence_b);
            d.wait_fence(fence_b);
            d.wait_fence(fence_a);
        }
    }
    d.idle();
}

/// SYNC_FD `-1` means already signaled. The CTS passes either way; tether must report it
/// signaled.
fn import_signaled<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence = d.create_and_import_fence(h, p, None);
    assert_eq!(
        d.wait_fences(&[fence], true, 0),
        vk::Result::SUCCESS,
        "Imported -1 sync fd isn't signaled"
    );
}

/// 1024 exports from one fence (COPY: each while a signal is pending), then it still works.
fn export_multiple_times<const H: u8, const P: u8>(route: Route) {
    const EXPORT_COUNT: usize = 1024;
    let (h, _) = params::<H, P>();
    let d = device(route);
    let fence = d.exportable_fence(h.fence_bit());
    for _ in 0..EXPORT_COUNT {
        let handle = export_for_case(&d, fence, h);
        drop(handle);
    }
    d.submit_signal_fence(fence);
    d.wait_fence(fence);
    d.idle();
}

/// An import of a `dup` of the exported fd.
fn dup<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let fd = export_for_case(&d, fence_a, h).expect("an exported fd");
    let new_fd = rustix::io::dup(&fd).expect("dup");
    let fence_b = d.create_and_import_fence(h, p, Some(new_fd));
    match h.transference() {
        Transference::Copy => d.wait_fence(fence_b),
        Transference::Reference => {
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_b);
        }
    }
    d.idle();
}

/// Which call replaces the second fd by the first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Duplicate {
    Dup2,
    Dup3,
}

/// `dup2`/`dup3(fdA, fdB)`: fdB now refers to A's payload, and importing it behaves as A's.
fn dup_over<const H: u8, const P: u8>(route: Route, how: Duplicate) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let fence_b = d.exportable_fence(h.fence_bit());
    let fd = export_for_case(&d, fence_a, h).expect("an exported fd");
    let mut second_fd = export_for_case(&d, fence_b, h).expect("an exported fd");
    match how {
        Duplicate::Dup2 => rustix::io::dup2(&fd, &mut second_fd).expect("dup2"),
        Duplicate::Dup3 => rustix::io::dup3(&fd, &mut second_fd, rustix::io::DupFlags::empty()).expect("dup3"),
    }
    let fence_c = d.create_and_import_fence(h, p, Some(second_fd));
    match h.transference() {
        Transference::Copy => d.wait_fence(fence_c),
        Transference::Reference => {
            d.submit_signal_fence(fence_a);
            d.wait_fence(fence_c);
        }
    }
    d.idle();
}

fn dup2<const H: u8, const P: u8>(route: Route) {
    dup_over::<H, P>(route, Duplicate::Dup2);
}

fn dup3<const H: u8, const P: u8>(route: Route) {
    dup_over::<H, P>(route, Duplicate::Dup3);
}

/// The fd travels over a socketpair with SCM_RIGHTS (payload "deqp") before the import.
fn send_over_socket<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence = d.exportable_fence(h.fence_bit());
    let fd = export_for_case(&d, fence, h).expect("an exported fd");
    let (sender, receiver) = socket_pair();
    send_fds(sender.as_fd(), &[fd.as_fd()], b"deqp").expect("sendmsg with SCM_RIGHTS");
    drop(fd);
    let (mut fds, payload) = recv_fds(receiver.as_fd(), 1, 16).expect("recvmsg with SCM_RIGHTS");
    assert_eq!(payload, b"deqp");
    assert_eq!(fds.len(), 1, "one fd received");
    let received = fds.pop();
    let new_fence = d.create_and_import_fence(h, p, received);
    match h.transference() {
        Transference::Copy => d.wait_fence(new_fence),
        Transference::Reference => {
            d.submit_signal_fence(new_fence);
            d.wait_fence(new_fence);
        }
    }
    d.idle();
}

/// Import into a fence that was signaled, waited and idled; then the shared payload rules.
fn signal_wait_import<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let fence_b = d.fence(false);
    let handle = d.export_fence(fence_a, h);
    d.submit_signal_fence(fence_b);
    d.wait_fence(fence_b);
    d.idle();
    d.import_fence(fence_b, h, p, handle);
    d.submit_signal_fence(fence_a);
    d.wait_fence(fence_b);
    d.idle();
}

/// A handle taken before the signal sees the later signal.
fn export_signal_import_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let handle = d.export_fence(fence_a, h);
    d.submit_signal_fence(fence_a);
    let fence_b = d.create_and_import_fence(h, p, handle);
    d.wait_fence(fence_b);
    d.idle();
}

/// Export, import, then signal the exporter: the importer signals.
fn export_import_signal_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let handle = d.export_fence(fence_a, h);
    let fence_b = d.create_and_import_fence(h, p, handle);
    d.submit_signal_fence(fence_a);
    d.wait_fence(fence_b);
    d.idle();
}

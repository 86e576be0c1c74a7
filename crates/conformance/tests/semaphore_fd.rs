//! Ports of `dEQP-VK.api.external.semaphore.{opaque_fd,sync_fd}.*` (30 + 14 cases), one trial
//! each, named as in the CTS (`semaphore.opaque_fd.transference_temporary`), on the loader
//! route (validation layer on when installed) and the in-process route.
//!
//! Each case follows `/work/shared/reference/cts-cases.md` §2.2 step by step ("signal X" is an
//! empty submit signaling binary semaphore X, "wait X" an empty submit waiting on it at
//! ALL_COMMANDS), with two deliberate differences:
//!
//! * Where the CTS keeps a semaphore pending with its timed compute job, the signal here waits
//!   on a private timeline semaphore that the host signals only after the export
//!   ([`FdDevice::signal_semaphore_and_export_while_pending`]). The semaphore is pending for
//!   certain, so a COPY export must give a real fd and the CTS's early pass on `-1` never
//!   applies.
//! * `vkQueueWaitIdle` is preceded by a bounded fence wait, so a wait that can never be
//!   satisfied fails the case instead of hanging it.

use std::os::fd::AsFd;
use std::process::ExitCode;

use ash::vk;
use tether_conformance::external::{
    ExportedFd, FdDevice, FdHandleType, Permanence, Transference, copy_handle, cts_case, recv_fds,
    semaphore_properties, send_fds, socket_pair,
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
    let prefix = format!("semaphore.{}", handle_type.name());
    let mut all = vec![
        cts_case(&prefix, "info_binary", None, LOADER_AND_IN_PROCESS, info_binary::<H>),
        cts_case(
            &prefix,
            "info_timeline",
            None,
            LOADER_AND_IN_PROCESS,
            info_timeline::<H>,
        ),
    ];
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

/// The handle of an exportable semaphore as most cases take it: COPY types export while a
/// signal is pending (the CTS's compute job), REFERENCE types export the unsignaled semaphore.
fn export_for_case(d: &FdDevice, semaphore: vk::Semaphore, handle_type: FdHandleType) -> ExportedFd {
    match handle_type.transference() {
        Transference::Copy => d.signal_semaphore_and_export_while_pending(semaphore, handle_type),
        Transference::Reference => d.export_semaphore(semaphore, handle_type),
    }
}

/// The query with `VkSemaphoreTypeCreateInfo` chained keeps `sType`/`pNext` (the CTS's
/// assertions; for timelines also no SYNC_FD anywhere), plus the rules tether promises: both
/// features where the type is offered, the queried type among the compatible ones whenever it
/// is exportable, nothing at all for a type that is not offered (SYNC_FD never for a timeline).
fn check_semaphore_queries(route: Route, handle_type: FdHandleType, semaphore_type: vk::SemaphoreType) {
    let inst = TestInstance::with_options(route, Options::default());
    let props = semaphore_properties(&inst, handle_type.semaphore_bit(), semaphore_type);
    assert_eq!(props.s_type, vk::StructureType::EXTERNAL_SEMAPHORE_PROPERTIES);
    assert!(props.p_next.is_null());
    let timeline = semaphore_type == vk::SemaphoreType::TIMELINE;
    let both = vk::ExternalSemaphoreFeatureFlags::EXPORTABLE | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE;
    if timeline && handle_type == FdHandleType::SyncFd {
        assert_eq!(
            props.external_semaphore_features,
            vk::ExternalSemaphoreFeatureFlags::empty(),
            "{props:?}"
        );
    } else {
        assert_eq!(props.external_semaphore_features, both, "{props:?}");
        assert!(
            props.compatible_handle_types.contains(handle_type.semaphore_bit()),
            "{props:?}"
        );
        assert!(
            props
                .export_from_imported_handle_types
                .contains(handle_type.semaphore_bit()),
            "{props:?}"
        );
    }
    let extensions = inst.device_extension_names();
    let offers = |name: &str| extensions.iter().any(|e| e == name);
    let sync_fd = vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD;
    for (bit, extension) in [
        (
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD,
            Some("VK_KHR_external_semaphore_fd"),
        ),
        (sync_fd, Some("VK_KHR_external_semaphore_fd")),
        (
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
            Some("VK_KHR_external_semaphore_win32"),
        ),
        (
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT,
            Some("VK_KHR_external_semaphore_win32"),
        ),
        (
            vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE,
            Some("VK_KHR_external_semaphore_win32"),
        ),
        (vk::ExternalSemaphoreHandleTypeFlags::ZIRCON_EVENT_FUCHSIA, None),
    ] {
        let props = semaphore_properties(&inst, bit, semaphore_type);
        if timeline {
            // The CTS's info_timeline rule, for every queried type.
            assert!(
                !props.compatible_handle_types.contains(sync_fd),
                "Timeline semaphores are not compatible with SYNC_FD ({bit:?})"
            );
            assert!(
                !props.export_from_imported_handle_types.contains(sync_fd),
                "Timeline semaphores imported from SYNC_FD ({bit:?})"
            );
        }
        let never = extension.is_none_or(|e| !offers(e)) || (timeline && bit == sync_fd);
        if never {
            assert_eq!(
                props.external_semaphore_features,
                vk::ExternalSemaphoreFeatureFlags::empty(),
                "{bit:?}"
            );
            assert_eq!(
                props.compatible_handle_types,
                vk::ExternalSemaphoreHandleTypeFlags::empty(),
                "{bit:?}"
            );
            assert_eq!(
                props.export_from_imported_handle_types,
                vk::ExternalSemaphoreHandleTypeFlags::empty(),
                "{bit:?}"
            );
        } else if props
            .external_semaphore_features
            .contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE)
        {
            assert!(props.compatible_handle_types.contains(bit), "{bit:?}: {props:?}");
        }
    }
}

fn info_binary<const H: u8>(route: Route) {
    check_semaphore_queries(route, FdHandleType::from_u8(H), vk::SemaphoreType::BINARY);
}

fn info_timeline<const H: u8>(route: Route) {
    check_semaphore_queries(route, FdHandleType::from_u8(H), vk::SemaphoreType::TIMELINE);
}

/// Two imports of copies of one handle: REF shares the payload (signal one, wait the other).
fn import_twice<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore = d.exportable_semaphore(h.semaphore_bit());
    let handle_a = export_for_case(&d, semaphore, h);
    let handle_b = copy_handle(&handle_a);
    let semaphore_a = d.create_and_import_semaphore(h, p, handle_a);
    let semaphore_b = d.create_and_import_semaphore(h, p, handle_b);
    match h.transference() {
        Transference::Copy => d.submit_wait_semaphore(semaphore_a),
        Transference::Reference => {
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
        }
    }
    d.idle();
}

/// An import over an already imported payload.
fn reimport<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle_a = export_for_case(&d, semaphore_a, h);
    let handle_b = copy_handle(&handle_a);
    let semaphore_b = d.create_and_import_semaphore(h, p, handle_a);
    d.import_semaphore(semaphore_b, h, p, handle_b);
    match h.transference() {
        Transference::Copy => d.submit_wait_semaphore(semaphore_b),
        Transference::Reference => {
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
        }
    }
    d.idle();
}

/// 4096 copy/create/import/destroy cycles, then the exporter still works.
fn import_multiple_times<const H: u8, const P: u8>(route: Route) {
    const IMPORT_COUNT: usize = 4096;
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle_a = export_for_case(&d, semaphore_a, h);
    for _ in 0..IMPORT_COUNT {
        let semaphore_b = d.create_and_import_semaphore(h, p, copy_handle(&handle_a));
        d.destroy_semaphore(semaphore_b);
    }
    match h.transference() {
        Transference::Copy => {
            d.import_semaphore(semaphore_a, h, p, handle_a);
            d.submit_wait_semaphore(semaphore_a);
        }
        Transference::Reference => {
            drop(handle_a);
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_a);
        }
    }
    d.idle();
}

/// Export while the signal is pending; after idle, an importer's wait completes.
fn signal_export_import_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.signal_semaphore_and_export_while_pending(semaphore_a, h);
    let semaphore_b = d.create_and_import_semaphore(h, p, handle);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
}

/// Import into a semaphore that is signaled (and never waited).
fn signal_import<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let semaphore_b = d.binary_semaphore();
    d.submit_signal_semaphore(semaphore_b);
    d.idle();
    let handle = export_for_case(&d, semaphore_a, h);
    d.import_semaphore(semaphore_b, h, p, handle);
    match h.transference() {
        Transference::Copy => d.submit_wait_semaphore(semaphore_b),
        Transference::Reference => {
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
        }
    }
    d.idle();
}

/// Signals and waits through either semaphore reach the other exactly as the transference and
/// permanence say; a temporary import is gone after the first wait.
fn transference<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.signal_semaphore_and_export_while_pending(semaphore_a, h);
    let semaphore_b = d.create_and_import_semaphore(h, p, handle);
    match (h.transference(), p) {
        (Transference::Copy, _) => {
            // The export took A's signal: A is unsignaled and can be signaled again.
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
            d.idle();
            d.submit_signal_semaphore(semaphore_b);
            d.submit_wait_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
        }
        (Transference::Reference, Permanence::Permanent) => {
            d.submit_wait_semaphore(semaphore_b);
            d.idle();
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
            d.submit_signal_semaphore(semaphore_b);
            d.submit_wait_semaphore(semaphore_a);
        }
        (Transference::Reference, Permanence::Temporary) => {
            d.submit_wait_semaphore(semaphore_b);
            d.idle();
            // B is back on its own payload: two signals, two waits, no double consumption.
            d.submit_signal_semaphore(semaphore_a);
            d.submit_signal_semaphore(semaphore_b);
            d.submit_wait_semaphore(semaphore_b);
            d.submit_wait_semaphore(semaphore_a);
        }
    }
    d.idle();
}

/// SYNC_FD `-1` means already signaled: a wait on it must complete.
fn import_signaled<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore = d.create_and_import_semaphore(h, p, None);
    d.submit_wait_semaphore(semaphore);
    d.idle();
}

/// 1024 exports from one semaphore (COPY: each while a signal is pending), then it still works.
fn export_multiple_times<const H: u8, const P: u8>(route: Route) {
    const EXPORT_COUNT: usize = 1024;
    let (h, _) = params::<H, P>();
    let d = device(route);
    let semaphore = d.exportable_semaphore(h.semaphore_bit());
    for _ in 0..EXPORT_COUNT {
        let handle = export_for_case(&d, semaphore, h);
        drop(handle);
    }
    d.submit_signal_semaphore(semaphore);
    d.submit_wait_semaphore(semaphore);
    d.idle();
}

/// An import of a `dup` of the exported fd.
fn dup<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let fd = export_for_case(&d, semaphore_a, h).expect("an exported fd");
    let new_fd = rustix::io::dup(&fd).expect("dup");
    let semaphore_b = d.create_and_import_semaphore(h, p, Some(new_fd));
    match h.transference() {
        Transference::Copy => d.submit_wait_semaphore(semaphore_b),
        Transference::Reference => {
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
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
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let semaphore_b = d.exportable_semaphore(h.semaphore_bit());
    let fd = export_for_case(&d, semaphore_a, h).expect("an exported fd");
    let mut second_fd = export_for_case(&d, semaphore_b, h).expect("an exported fd");
    match how {
        Duplicate::Dup2 => rustix::io::dup2(&fd, &mut second_fd).expect("dup2"),
        Duplicate::Dup3 => rustix::io::dup3(&fd, &mut second_fd, rustix::io::DupFlags::empty()).expect("dup3"),
    }
    let semaphore_c = d.create_and_import_semaphore(h, p, Some(second_fd));
    match h.transference() {
        Transference::Copy => d.submit_wait_semaphore(semaphore_c),
        Transference::Reference => {
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_c);
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
    let semaphore = d.exportable_semaphore(h.semaphore_bit());
    let fd = export_for_case(&d, semaphore, h).expect("an exported fd");
    let (sender, receiver) = socket_pair();
    send_fds(sender.as_fd(), &[fd.as_fd()], b"deqp").expect("sendmsg with SCM_RIGHTS");
    drop(fd);
    let (mut fds, payload) = recv_fds(receiver.as_fd(), 1, 16).expect("recvmsg with SCM_RIGHTS");
    assert_eq!(payload, b"deqp");
    assert_eq!(fds.len(), 1, "one fd received");
    let new_semaphore = d.create_and_import_semaphore(h, p, fds.pop());
    match h.transference() {
        Transference::Copy => d.submit_wait_semaphore(new_semaphore),
        Transference::Reference => {
            d.submit_signal_semaphore(new_semaphore);
            d.submit_wait_semaphore(new_semaphore);
        }
    }
    d.idle();
}

/// Import into a semaphore that was signaled, waited and idled.
fn signal_wait_import<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let semaphore_b = d.binary_semaphore();
    let handle = d.export_semaphore(semaphore_a, h);
    d.submit_signal_semaphore(semaphore_b);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    d.import_semaphore(semaphore_b, h, p, handle);
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
}

/// A handle taken before the signal sees the later signal.
fn export_signal_import_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.export_semaphore(semaphore_a, h);
    d.submit_signal_semaphore(semaphore_a);
    let semaphore_b = d.create_and_import_semaphore(h, p, handle);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
}

/// Export, import, then signal the exporter: a wait on the importer completes.
fn export_import_signal_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.export_semaphore(semaphore_a, h);
    let semaphore_b = d.create_and_import_semaphore(h, p, handle);
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
}

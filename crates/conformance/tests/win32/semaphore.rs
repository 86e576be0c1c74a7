//! Ports of `dEQP-VK.api.external.semaphore.{opaque_win32,opaque_win32_kmt}.*` (22 + 22 cases),
//! one trial each, named as in the CTS (`semaphore.opaque_win32.import_twice_temporary`), on the
//! loader route and the in-process route.
//!
//! A module of two test binaries: `semaphore_win32` (the tether ICD) and `layer_win32` (through
//! `VK_LAYER_TETHER_win32_sync`, loader route only); what a target does not support is reported
//! as ignored with its reason (`tether_conformance::limits`).
//!
//! Each case follows `/work/shared/reference/cts-cases.md` §2.2 step by step, with NT handles per
//! DESIGN.md contract 2 (the handle is an fd the test owns; the CTS's `DuplicateHandle` copy is
//! `F_DUPFD_CLOEXEC`, its `CloseHandle` is `close`) and KMT values per contract 3 (copied as is,
//! never closed). Deliberate differences from the CTS:
//!
//! * `create_win32_*` runs here (the CTS runs it on Windows builds only), with the CTS's chain
//!   `VkExportSemaphoreWin32HandleInfoKHR{NULL, DXGI_SHARED_RESOURCE_READ | WRITE, NULL}`, also
//!   for KMT.
//! * Where the CTS keeps a semaphore pending with its timed compute job, the signal here waits on
//!   a private timeline semaphore that the host signals only after the export.
//! * Every wait is bounded (10 s), so a sharing bug fails the case instead of hanging it.
//! * `import_multiple_times_*` also checks that the 4096 imports leave no fd and no mapping
//!   behind (counting only the fds on the payload's own file).
//! * The device has no validation layer on the loader route (see
//!   [`Win32Device::with_options`]).
//!
//! As in the CTS, an NT handle is closed after the objects that imported it are destroyed.

use std::os::fd::AsFd;

use ash::vk;
use tether_conformance::external::{cts_case, mappings_of, semaphore_properties};
use tether_conformance::harness::{self, LOADER_AND_IN_PROCESS, Route, Test};
use tether_conformance::win32::{self, ExportAttributes, Permanence, Win32Device, Win32HandleType, fds_on_file};
use tether_conformance::{TestInstance, context::Options};

const NT: u8 = Win32HandleType::OpaqueWin32 as u8;
const KMT: u8 = Win32HandleType::OpaqueWin32Kmt as u8;
const TEMPORARY: u8 = Permanence::Temporary as u8;
const PERMANENT: u8 = Permanence::Permanent as u8;

/// Every case of both handle types, in the CTS's order.
pub fn tests() -> Vec<(String, Test)> {
    let mut all = cases_for::<NT>();
    all.extend(cases_for::<KMT>());
    all
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
    let prefix = format!("semaphore.{}", Win32HandleType::from_u8(H).name());
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
    all.extend(permanence_cases::<H, PERMANENT>(&prefix));
    all
}

fn permanence_cases<const H: u8, const P: u8>(prefix: &str) -> Vec<(String, Test)> {
    vec![
        case!(prefix, H, P, create_win32),
        case!(prefix, H, P, import_twice),
        case!(prefix, H, P, reimport),
        case!(prefix, H, P, import_multiple_times),
        case!(prefix, H, P, signal_export_import_wait),
        case!(prefix, H, P, signal_import),
        case!(prefix, H, P, transference),
        // REFERENCE-only cases (every Win32 type is by reference).
        case!(prefix, H, P, signal_wait_import),
        case!(prefix, H, P, export_signal_import_wait),
        case!(prefix, H, P, export_import_signal_wait),
    ]
}

fn params<const H: u8, const P: u8>() -> (Win32HandleType, Permanence) {
    (Win32HandleType::from_u8(H), Permanence::from_u8(P))
}

/// A CTS case's device: one queue of family 0, the Win32 extensions.
fn device(route: Route) -> Win32Device {
    Win32Device::with_options(route, Options::default().queues(1))
}

/// The query with `VkSemaphoreTypeCreateInfo` chained keeps `sType`/`pNext` (the CTS's
/// assertions; for timelines also no SYNC_FD in either mask), plus what tether promises for the
/// Win32 types: both features for either semaphore type, the queried type among the compatible
/// ones and among those exportable from an import.
fn check_semaphore_queries(route: Route, h: Win32HandleType, semaphore_type: vk::SemaphoreType) {
    let inst = TestInstance::with_options(route, Options::default());
    let props = semaphore_properties(&inst, h.semaphore_bit(), semaphore_type);
    assert_eq!(props.s_type, vk::StructureType::EXTERNAL_SEMAPHORE_PROPERTIES);
    assert!(props.p_next.is_null());
    if semaphore_type == vk::SemaphoreType::TIMELINE {
        let sync_fd = vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD;
        assert!(
            !props.compatible_handle_types.contains(sync_fd),
            "Timeline semaphores are not compatible with SYNC_FD: {props:?}"
        );
        assert!(
            !props.export_from_imported_handle_types.contains(sync_fd),
            "Timeline semaphores imported from SYNC_FD: {props:?}"
        );
    }
    let both = vk::ExternalSemaphoreFeatureFlags::EXPORTABLE | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE;
    assert_eq!(props.external_semaphore_features, both, "{props:?}");
    assert!(props.compatible_handle_types.contains(h.semaphore_bit()), "{props:?}");
    assert!(
        props.export_from_imported_handle_types.contains(h.semaphore_bit()),
        "{props:?}"
    );
    let extensions = inst.device_extension_names();
    assert!(
        extensions.iter().any(|e| e == "VK_KHR_external_semaphore_win32"),
        "the device does not offer VK_KHR_external_semaphore_win32: {extensions:?}"
    );
}

fn info_binary<const H: u8>(route: Route) {
    check_semaphore_queries(route, Win32HandleType::from_u8(H), vk::SemaphoreType::BINARY);
}

fn info_timeline<const H: u8>(route: Route) {
    check_semaphore_queries(route, Win32HandleType::from_u8(H), vk::SemaphoreType::TIMELINE);
}

/// `create_win32`: the CTS's Win32 export chain (also for KMT), export, import into A, signal
/// the original, wait on A.
fn create_win32<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore = d.exportable_semaphore_with(h.semaphore_bit(), &ExportAttributes::cts());
    let handle = d.export_semaphore(semaphore, h);
    if let Some(fd) = handle.fd() {
        assert!(
            !win32::is_read_only(fd),
            "DXGI_SHARED_RESOURCE_READ|WRITE gave a read-only handle"
        );
        assert!(
            win32::is_cloexec(fd),
            "an NT handle exported without bInheritHandle is inheritable"
        );
    }
    let semaphore_a = d.create_and_import_semaphore(h, p, &handle);
    d.submit_signal_semaphore(semaphore);
    d.submit_wait_semaphore(semaphore_a);
    d.idle();
    drop(d);
    handle.close();
}

/// Two imports of copies of one handle share the payload: signal A, wait B.
fn import_twice<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore = d.exportable_semaphore(h.semaphore_bit());
    let handle_a = d.export_semaphore(semaphore, h);
    let handle_b = handle_a.copy();
    let semaphore_a = d.create_and_import_semaphore(h, p, &handle_a);
    let semaphore_b = d.create_and_import_semaphore(h, p, &handle_b);
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    drop(d);
    handle_b.close();
    handle_a.close();
}

/// An import over an already imported payload.
fn reimport<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle_a = d.export_semaphore(semaphore_a, h);
    let handle_b = handle_a.copy();
    let semaphore_b = d.create_and_import_semaphore(h, p, &handle_a);
    d.import_semaphore(semaphore_b, h, p, &handle_b);
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    drop(d);
    handle_b.close();
    handle_a.close();
}

/// 4096 copy/create/import/destroy/close cycles leave no fd and no mapping behind; then the
/// exporter still works. Where the payload's file is not the payload's alone (a driver's device
/// node: see [`win32::payload_file_is_private`]) the counts say nothing: the cycles run, and the
/// case is reported as not supported with the counts seen.
fn import_multiple_times<const H: u8, const P: u8>(route: Route) {
    const IMPORT_COUNT: usize = 4096;
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle_a = d.export_semaphore(semaphore_a, h);
    let probe = handle_a.open_payload_fd();
    let countable = win32::payload_file_is_private(probe.as_fd());
    let (fds_before, maps_before) = (fds_on_file(probe.as_fd()), mappings_of(probe.as_fd()));
    for _ in 0..IMPORT_COUNT {
        let copy = handle_a.copy();
        let semaphore_b = d.create_and_import_semaphore(h, p, &copy);
        d.destroy_semaphore(semaphore_b);
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
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_a);
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

/// Export while the signal is pending; after idle, an importer's wait completes.
fn signal_export_import_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.signal_semaphore_and_export_while_pending(semaphore_a, h);
    let semaphore_b = d.create_and_import_semaphore(h, p, &handle);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    drop(d);
    handle.close();
}

/// Import into a semaphore that was signaled and never waited on.
fn signal_import<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let semaphore_b = d.binary_semaphore();
    d.submit_signal_semaphore(semaphore_b);
    d.idle();
    let handle = d.export_semaphore(semaphore_a, h);
    d.import_semaphore(semaphore_b, h, p, &handle);
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    drop(d);
    handle.close();
}

/// Signals and waits through either semaphore reach the other exactly as the permanence says;
/// a temporary import is dropped after the first wait.
fn transference<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.signal_semaphore_and_export_while_pending(semaphore_a, h);
    let semaphore_b = d.create_and_import_semaphore(h, p, &handle);
    match p {
        Permanence::Permanent => {
            d.submit_wait_semaphore(semaphore_b);
            d.idle();
            d.submit_signal_semaphore(semaphore_a);
            d.submit_wait_semaphore(semaphore_b);
            d.submit_signal_semaphore(semaphore_b);
            d.submit_wait_semaphore(semaphore_a);
        }
        Permanence::Temporary => {
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
    drop(d);
    handle.close();
}

/// Import into a semaphore that was signaled, waited and idled; then signal A, wait B.
fn signal_wait_import<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let semaphore_b = d.binary_semaphore();
    let handle = d.export_semaphore(semaphore_a, h);
    d.submit_signal_semaphore(semaphore_b);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    d.import_semaphore(semaphore_b, h, p, &handle);
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    drop(d);
    handle.close();
}

/// A handle taken before the signal sees the later signal.
fn export_signal_import_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.export_semaphore(semaphore_a, h);
    d.submit_signal_semaphore(semaphore_a);
    let semaphore_b = d.create_and_import_semaphore(h, p, &handle);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    drop(d);
    handle.close();
}

/// Export, import, then signal the exporter: a wait on the importer completes.
fn export_import_signal_wait<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<H, P>();
    let d = device(route);
    let semaphore_a = d.exportable_semaphore(h.semaphore_bit());
    let handle = d.export_semaphore(semaphore_a, h);
    let semaphore_b = d.create_and_import_semaphore(h, p, &handle);
    d.submit_signal_semaphore(semaphore_a);
    d.submit_wait_semaphore(semaphore_b);
    d.idle();
    drop(d);
    handle.close();
}

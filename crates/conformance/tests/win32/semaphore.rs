//! Ports of `dEQP-VK.api.external.semaphore.{opaque_win32,opaque_win32_kmt}.*` (22 + 22 cases),
//! one trial each, named as in the CTS (`semaphore.opaque_win32.import_twice_temporary`), on the
//! loader route and the in-process route.
//!
//! A module of two test binaries: `semaphore_win32` (the tether ICD) and `layer_win32` (through
//! `VK_LAYER_TETHER_win32_sync`, loader route only); what a target does not support is reported
//! as ignored with its reason (`tether_conformance::limits`).
//!
//! The cases are written once, for both kinds and both handle families, in
//! `tether_conformance::cts` (its documentation and `cts::win32`'s say how they differ from the
//! CTS); here are the semaphore's own: `info_binary` and `info_timeline`.

use ash::vk;
use tether_conformance::cts::win32::{KMT, NT, Win32};
use tether_conformance::cts::{self, OwnCases};
use tether_conformance::external::semaphore_properties;
use tether_conformance::harness::{Route, Test};
use tether_conformance::kind::BinarySemaphore;
use tether_conformance::win32::Win32HandleType;
use tether_conformance::{TestInstance, context::Options};

/// Every case of both handle types, in the CTS's order.
pub fn tests() -> Vec<(String, Test)> {
    cts::tests::<Win32, BinarySemaphore>([own::<NT>(), own::<KMT>()])
}

/// The semaphore's own cases of one handle type.
fn own<const H: u8>() -> OwnCases {
    OwnCases {
        info: vec![("info_binary", info_binary::<H>), ("info_timeline", info_timeline::<H>)],
        after_signal_import: Vec::new(),
    }
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

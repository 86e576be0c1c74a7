//! Ports of `dEQP-VK.api.external.semaphore.{opaque_fd,sync_fd}.*` (30 + 14 cases), one trial
//! each, named as in the CTS (`semaphore.opaque_fd.transference_temporary`), on the loader
//! route (validation layer on when installed) and the in-process route.
//!
//! The cases are written once, for both kinds and both handle families, in
//! `tether_conformance::cts` (its documentation says how they differ from the CTS; "signal X" is
//! an empty submit signaling binary semaphore X, "wait X" an empty submit waiting on it at
//! ALL_COMMANDS); here are the semaphore's own: `info_binary` and `info_timeline`.

use std::process::ExitCode;

use ash::vk;
use tether_conformance::cts::fd::{Fd, OPAQUE_FD, SYNC_FD};
use tether_conformance::cts::{self, OwnCases};
use tether_conformance::external::{FdHandleType, semaphore_properties};
use tether_conformance::harness::{self, Route};
use tether_conformance::kind::BinarySemaphore;
use tether_conformance::{TestInstance, context::Options};

fn main() -> ExitCode {
    harness::main(&[], || {
        cts::tests::<Fd, BinarySemaphore>([own::<OPAQUE_FD>(), own::<SYNC_FD>()])
    })
}

/// The semaphore's own cases of one handle type.
fn own<const H: u8>() -> OwnCases {
    OwnCases {
        info: vec![("info_binary", info_binary::<H>), ("info_timeline", info_timeline::<H>)],
        after_signal_import: Vec::new(),
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

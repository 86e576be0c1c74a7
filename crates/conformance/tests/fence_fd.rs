//! Ports of `dEQP-VK.api.external.fence.{opaque_fd,sync_fd}.*` (31 + 14 cases), one trial
//! each, named as in the CTS (`fence.opaque_fd.import_twice_temporary`), on the loader route
//! (validation layer on when installed) and the in-process route.
//!
//! The cases are written once, for both kinds and both handle families, in
//! `tether_conformance::cts` (its documentation says how they differ from the CTS); here are the
//! fence's own: `info` and `reset`.

use std::process::ExitCode;

use ash::vk;
use tether_conformance::cts::fd::{Fd, OPAQUE_FD, SYNC_FD};
use tether_conformance::cts::{self, Family, OwnCases, PERMANENT, TEMPORARY, cases::params};
use tether_conformance::external::{
    FdHandleType, Permanence, Transference, copy_handle, fence_properties, offered_fence_properties,
};
use tether_conformance::harness::{self, Route};
use tether_conformance::kind::Fence;

fn main() -> ExitCode {
    harness::main(&[], || cts::tests::<Fd, Fence>([own::<OPAQUE_FD>(), own::<SYNC_FD>()]))
}

/// The fence's own cases of one handle type.
fn own<const H: u8>() -> OwnCases {
    OwnCases {
        info: vec![("info", info::<H>)],
        after_signal_import: vec![("reset", [reset::<H, TEMPORARY>, reset::<H, PERMANENT>])],
    }
}

/// `info`: the query keeps `sType`/`pNext` (the CTS's only assertions), plus the rules tether
/// promises: both features for the fd types, the queried type among the compatible ones when
/// exportable, nothing at all for a type the device does not offer.
fn info<const H: u8>(route: Route) {
    let handle_type = FdHandleType::from_u8(H);
    let (inst, props) = offered_fence_properties(route, handle_type.fence_bit());
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

/// `vkResetFences` drops a temporary import first and resets the fence's own payload; a
/// permanent REF import resets the shared payload for every member.
fn reset<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<Fd, H, P>();
    let d = Fd::device(route);
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

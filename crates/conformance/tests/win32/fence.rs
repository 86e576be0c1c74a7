//! Ports of `dEQP-VK.api.external.fence.{opaque_win32,opaque_win32_kmt}.*` (23 + 23 cases), one
//! trial each, named as in the CTS (`fence.opaque_win32.import_twice_temporary`), on the loader
//! route (validation layer on when installed) and the in-process route.
//!
//! A module of two test binaries: `fence_win32` (the tether ICD) and `layer_win32` (through
//! `VK_LAYER_TETHER_win32_sync`, loader route only); what a target does not support is reported
//! as ignored with its reason (`tether_conformance::limits`).
//!
//! The cases are written once, for both kinds and both handle families, in
//! `tether_conformance::cts` (its documentation and `cts::win32`'s say how they differ from the
//! CTS); here are the fence's own: `info` and `reset`. As in the CTS, `reset_*` closes the NT handle while
//! the fences that imported it still hold the payload.

use ash::vk;
use tether_conformance::cts::win32::{self, KMT, NT, Win32};
use tether_conformance::cts::{self, OwnCases, PERMANENT, TEMPORARY, cases::params};
use tether_conformance::external::offered_fence_properties;
use tether_conformance::harness::{Route, Test};
use tether_conformance::kind::Fence;
use tether_conformance::win32::{Permanence, Win32HandleType};

/// Every case of both handle types, in the CTS's order.
pub fn tests() -> Vec<(String, Test)> {
    cts::tests::<Win32, Fence>([own::<NT>(), own::<KMT>()])
}

/// The fence's own cases of one handle type.
fn own<const H: u8>() -> OwnCases {
    OwnCases {
        info: vec![("info", info::<H>)],
        after_signal_import: vec![("reset", [reset::<H, TEMPORARY>, reset::<H, PERMANENT>])],
    }
}

/// `info`: the query keeps `sType`/`pNext` (the CTS's only assertions), plus what tether promises
/// for the Win32 types: both features, the queried type among the compatible ones and among the
/// types exportable from an import.
fn info<const H: u8>(route: Route) {
    let (inst, _) = offered_fence_properties(route, Win32HandleType::from_u8(H).fence_bit());
    let extensions = inst.device_extension_names();
    assert!(
        extensions.iter().any(|e| e == "VK_KHR_external_fence_win32"),
        "the device does not offer VK_KHR_external_fence_win32: {extensions:?}"
    );
}

/// `vkResetFences` drops a temporary import first and resets the fence's own payload; a
/// permanent import resets the shared payload for every member. The handles are closed before
/// B and C are destroyed, as in the CTS.
fn reset<const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<Win32, H, P>();
    let d = win32::device(route);
    let fence_a = d.exportable_fence(h.fence_bit());
    let fence_b = d.fence(false);
    let fence_c = d.fence(false);
    d.submit_signal_fence(fence_b);
    d.idle();
    let handle = d.signal_fence_and_export_while_pending(fence_a, h);
    let handle_b = handle.copy();
    d.import_fence(fence_b, h, p, &handle_b);
    d.import_fence(fence_c, h, p, &handle);
    d.idle();
    d.reset_fences(&[fence_b]);
    if p == Permanence::Temporary {
        // B's own payload was reset, not the shared one C holds.
        d.wait_fence(fence_c);
        d.submit_signal_fence(fence_b);
        d.wait_fence(fence_b);
    } else {
        // A, B and C share one payload, which the reset of B unsignaled.
        assert_eq!(
            d.fence_status(fence_c),
            vk::Result::NOT_READY,
            "resetting B did not reset C"
        );
        d.submit_signal_fence(fence_c);
        d.wait_fence(fence_a);
        d.wait_fence(fence_b);
        d.wait_fence(fence_c);
    }
    d.idle();
    handle_b.close();
    handle.close();
    drop(d);
}

//! What a [`Target`] does differently from the tether ICD, in one place, each with the reason
//! written down (the layer's README says the same under "Decisions" and "Limits").
//!
//! A test that meets one of these checks what the target documents instead, where it documents
//! something observable, and then ends as ignored with the reason ([`harness::not_supported`]):
//! the run's counts show it, and it is never a silent pass. What a capability query can say
//! (D3D12_FENCE on binary semaphores) is asked of the driver instead of listed here.
//!
//! | limit | icd | layer-over-fd-icd | layer-over-system |
//! |---|---|---|---|
//! | [`Limit::D3d12Rewind`] | - | yes | yes |
//! | [`Limit::NtHandlePayload`] | - | yes | yes |
//! | [`Limit::ReadOnlyNtHandle`] | - | yes | yes |
//! | [`Limit::DriverValidation`] | - | yes (the ICD checks) | yes (when the driver does not) |
//! | [`Limit::CProgramDevice`] | - | - | yes |

use crate::harness::{self, Target, target};

/// Something a target does not do as the tether ICD does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A D3D12 fence signaled with a value below its current one goes back to that value.
    D3d12Rewind,
    /// What an NT handle (OPAQUE_WIN32, D3D12_FENCE) carries: a fence or a semaphore, a binary
    /// or a timeline payload, a D3D12 fence or a plain timeline.
    NtHandlePayload,
    /// A wait-only NT handle (`dwAccess` without a signal right).
    ReadOnlyNtHandle,
    /// A broken valid-usage rule that only the driver can see: an import into a fence or a
    /// semaphore tied to unfinished queue work.
    DriverValidation,
    /// `tests/c/win32_import_export.c` looks for the "tether CPU" device.
    CProgramDevice,
}

impl Limit {
    /// Why `target` does not support this, or `None` when it does.
    pub fn reason(self, target: Target) -> Option<&'static str> {
        let layer = target.through_layer();
        match self {
            Limit::D3d12Rewind if layer => Some(
                "D3D12 fence rewinds: a Vulkan timeline must only increase, so the layer drops a D3D12 signal \
                 that is not above the value, keeps the higher value and warns (tether-layer-d3d12-rewind) \
                 (layer README, \"D3D12 values that do not increase\")",
            ),
            Limit::NtHandlePayload if layer => Some(
                "the payload behind an NT handle: a layer sees only the driver's OPAQUE_FD, not whether it holds \
                 a fence or a semaphore, a binary or a timeline payload, a D3D12 fence or a plain timeline; the \
                 driver decides, and a refusal is VK_ERROR_INVALID_EXTERNAL_HANDLE (layer README, \"Limits\")",
            ),
            Limit::ReadOnlyNtHandle if layer => Some(
                "wait-only NT handles: a driver's OPAQUE_FD cannot be restricted, so the layer refuses an NT export \
                 whose dwAccess has no signal right (VK_ERROR_TOO_MANY_OBJECTS, tether-layer-read-only-access) \
                 rather than hand out more rights than asked for (layer README, \"dwAccess\")",
            ),
            Limit::DriverValidation if layer => Some(
                "valid usage only the driver can check (an import into a fence or semaphore tied to unfinished \
                 queue work): the layer does not track submissions and passes the driver's answer on, and this \
                 driver accepted the import",
            ),
            Limit::CProgramDevice if target == Target::LayerOverSystem => {
                Some("tests/c/win32_import_export.c uses the \"tether CPU\" device, which this target does not load")
            }
            _ => None,
        }
    }
}

/// Why this process's target does not support `limit`, or `None`.
pub fn limit(limit: Limit) -> Option<&'static str> {
    limit.reason(target())
}

/// Ends the running test as not supported when the target has `limit`.
pub fn require(limit: Limit) {
    if let Some(reason) = self::limit(limit) {
        harness::not_supported(reason);
    }
}

//! Sharing through Win32 handles beyond what the CTS covers (names, KMT values, D3D12_FENCE,
//! inheritance, `dwAccess`, errors, the broker, a C program), on the tether ICD. The tests live
//! in `win32/sharing.rs`, shared with `layer_win32`, which runs them through
//! `VK_LAYER_TETHER_win32_sync`. `TETHER_TEST_TARGET` runs them on another target (see
//! `tether_conformance::harness::Target`).

use std::process::ExitCode;

#[path = "win32/sharing.rs"]
mod sharing;

fn main() -> ExitCode {
    tether_conformance::win32::main(sharing::ROLES, sharing::tests)
}

//! Ports of `dEQP-VK.api.external.fence.{opaque_win32,opaque_win32_kmt}.*` on the tether ICD
//! (loader and in-process routes). The cases live in `win32/fence.rs`, shared with
//! `layer_win32`, which runs them through `VK_LAYER_TETHER_win32_sync`.
//! `TETHER_TEST_TARGET` runs them on another target (see `tether_conformance::harness::Target`).

use std::process::ExitCode;

#[path = "win32/fence.rs"]
mod fence;

fn main() -> ExitCode {
    tether_conformance::win32::main(&[], fence::tests)
}

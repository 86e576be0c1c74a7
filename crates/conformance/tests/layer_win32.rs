//! The three Win32 suites (`fence_win32`, `semaphore_win32`, `win32_sharing`: the same tests,
//! from `win32/`) through the Khronos loader with `VK_LAYER_TETHER_win32_sync` over the tether
//! ICD in fd-only mode (`TETHER_ICD_HANDLES=fd`): the layer provides both Win32 extensions, as
//! it does on NVIDIA or Mesa. Loader route only.
//!
//! `TETHER_TEST_TARGET=layer-over-system` runs them through the layer over the system's driver
//! instead (the first non-tether device, or the first whose name contains `TETHER_TEST_DEVICE`).
//! What a layer cannot do is reported as ignored with the reason (`tether_conformance::limits`).

use std::process::ExitCode;

use tether_conformance::harness::Target;

#[path = "win32/fence.rs"]
mod fence;
#[path = "win32/semaphore.rs"]
mod semaphore;
#[path = "win32/sharing.rs"]
mod sharing;

fn main() -> ExitCode {
    tether_conformance::win32::main_on(Target::LayerOverFdIcd, sharing::ROLES, || {
        let mut all = fence::tests();
        all.extend(semaphore::tests());
        all.extend(sharing::tests());
        all
    })
}

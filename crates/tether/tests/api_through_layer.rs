//! The `tether` crate's API through `VK_LAYER_TETHER_win32_sync` over the tether ICD in fd-only
//! mode (`TETHER_ICD_HANDLES=fd`): the Win32 handle types come from the layer, as on a real
//! driver. Loader route only.

mod cases;

fn main() -> std::process::ExitCode {
    use tether_conformance::harness::{Route, Target};
    tether_conformance::win32::main_on(Target::LayerOverFdIcd, &[], || cases::tests(&[Route::Loader]))
}

//! The `tether` crate's API on the tether ICD, every handle type its own: through the Khronos
//! loader and in process (`tether_conformance`'s harness: routes, private broker, CI rules).

mod cases;

fn main() -> std::process::ExitCode {
    tether_conformance::win32::main_on(tether_conformance::harness::Target::Icd, &[], || {
        cases::tests(tether_conformance::harness::LOADER_AND_IN_PROCESS)
    })
}

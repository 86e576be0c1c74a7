//! The CTS cases that fences and binary semaphores share
//! (`dEQP-VK.api.external.{fence,semaphore}.<handle type>.<case>[_<permanence>]`), written once,
//! generic over the object kind ([`SyncKind`](crate::kind::SyncKind)), for the test binaries
//! to instantiate: [`fd`] for `fence_fd` and `semaphore_fd`, [`win32`] for `fence_win32`,
//! `semaphore_win32` and `layer_win32`.
//!
//! The cases only one kind has (the queries `info`, `info_binary` and `info_timeline`, the
//! fence's `reset`) stay in those binaries and join the list through [`OwnCases`], at the place
//! the CTS registers them.

use crate::external::{Permanence, cts_case};
use crate::harness::{LOADER_AND_IN_PROCESS, Route, Test};

pub mod fd;
pub mod win32;

/// A case's body for each permanence: `[temporary, permanent]`.
pub type ByPermanence = [fn(Route); 2];

/// The cases a test binary adds to the shared ones of a handle type.
#[derive(Default)]
pub struct OwnCases {
    /// Cases without a permanence, registered first (`info`, `info_binary`, `info_timeline`).
    pub info: Vec<(&'static str, fn(Route))>,
    /// Cases of each permanence, registered right after `signal_import` (the fence's `reset`).
    pub after_signal_import: Vec<(&'static str, ByPermanence)>,
}

/// A shared case instantiated for a kind, a handle type and a permanence.
macro_rules! case {
    ($kind:ty, $h:expr, $p:expr, $case:ident) => {
        (
            stringify!($case),
            $case::<$kind, { $h }, { $p }> as fn(crate::harness::Route),
        )
    };
}
use case;

/// The trials of one kind and handle type in the CTS's order: `own.info`, then for each
/// permanence the shared cases (`shared(permanence)`) with `own.after_signal_import` in place.
fn assemble(
    prefix: &str,
    own: &OwnCases,
    permanences: &[Permanence],
    shared: impl Fn(Permanence) -> Vec<(&'static str, fn(Route))>,
) -> Vec<(String, Test)> {
    let trial = |name, permanence, run| cts_case(prefix, name, permanence, LOADER_AND_IN_PROCESS, run);
    let mut all: Vec<_> = own.info.iter().map(|&(name, run)| trial(name, None, run)).collect();
    for &p in permanences {
        for (name, run) in shared(p) {
            all.push(trial(name, Some(p), run));
            if name == "signal_import" {
                all.extend(
                    own.after_signal_import
                        .iter()
                        .map(|&(name, runs)| trial(name, Some(p), runs[p as usize])),
                );
            }
        }
    }
    all
}

//! The CTS ports of `dEQP-VK.api.external.{fence,semaphore}.<handle type>.<case>[_<permanence>]`
//! as one set of scripts, generic over the handle family ([`Family`]: [`fd::Fd`],
//! [`win32::Win32`]) and the object kind ([`SyncKind`]), for the test binaries to instantiate:
//! `fence_fd`, `semaphore_fd`, `fence_win32`, `semaphore_win32` and `layer_win32` (as the CTS
//! itself runs one script for every handle type).
//!
//! Each case follows `/work/shared/reference/cts-cases.md` §1.2 (fences) and §2.2 (semaphores)
//! step by step, with the kind's meaning of "signal" and "wait" (see [`crate::kind`]). The cases
//! every family has are in [`cases`]; those of one family (fd: `dup`, `send_over_socket`, ...;
//! Win32: `create_win32`, ...) in its module; those of one kind (the queries `info`,
//! `info_binary` and `info_timeline`, the fence's `reset`) stay in the test binaries and join the
//! list through [`OwnCases`], at the place the CTS registers them. Deliberate differences from
//! the CTS:
//!
//! * Where the CTS keeps an object pending with its timed compute job, the signal here waits on
//!   a private timeline semaphore that the host signals only after the export
//!   ([`TestDevice::while_signal_pending`]). The object is pending for certain, so a COPY export
//!   must give a real fd and the CTS's early pass on `-1` never applies.
//! * Every wait is bounded (10 s) and `vkQueueWaitIdle` is preceded by a bounded fence wait, so
//!   a sharing bug fails the case instead of hanging it.
//!
//! The family modules list what else differs for theirs.

use std::fmt::Debug;
use std::ops::Deref;

use crate::context::TestDevice;
use crate::external::{Permanence, Transference, cts_case};
use crate::harness::{LOADER_AND_IN_PROCESS, Route, Test};
use crate::kind::SyncKind;

pub mod cases;
pub mod fd;
pub mod win32;

/// `Permanence as u8`, for the const-generic cases.
pub const TEMPORARY: u8 = Permanence::Temporary as u8;
pub const PERMANENT: u8 = Permanence::Permanent as u8;

/// A case: its name and its body.
pub type Case = (&'static str, fn(Route));

/// A case of each permanence: its name and its bodies, `[temporary, permanent]`.
pub type CaseByPermanence = (&'static str, [fn(Route); 2]);

/// A handle family as the cases use it: its device, its handle types and its handles.
pub trait Family: Sized + 'static {
    /// A CTS case's device: one queue of family 0, the family's extensions.
    type Device: Deref<Target = TestDevice>;
    type HandleType: Copy + PartialEq + Debug;
    /// A handle the test holds, as the CTS's `NativeHandle`.
    type Handle;

    /// The inverse of `HandleType as u8` (for the const-generic cases).
    fn handle_type(value: u8) -> Self::HandleType;
    /// The CTS group name of a handle type.
    fn name(handle_type: Self::HandleType) -> &'static str;
    fn transference(handle_type: Self::HandleType) -> Transference;
    /// The permanences the CTS registers cases for.
    fn permanences(handle_type: Self::HandleType) -> &'static [Permanence];
    /// The family's cases of one kind, handle type and permanence, in the CTS's order.
    fn cases<K: SyncKind, const H: u8, const P: u8>() -> Vec<Case>;

    fn device(route: Route) -> Self::Device;
    /// An unsignaled object exportable as `handle_type`.
    fn exportable<K: SyncKind>(d: &Self::Device, handle_type: Self::HandleType) -> K::Object;
    fn export<K: SyncKind>(d: &Self::Device, object: K::Object, handle_type: Self::HandleType) -> Self::Handle;
    /// Exports `object` while a signal of it is pending.
    fn signal_and_export_while_pending<K: SyncKind>(
        d: &Self::Device,
        object: K::Object,
        handle_type: Self::HandleType,
    ) -> Self::Handle;
    /// The copy constructor of the CTS's `NativeHandle`.
    fn copy(handle: &Self::Handle) -> Self::Handle;
    /// Imports `handle` into `object`: an fd import takes the fd; a Win32 import only borrows the
    /// handle, which the device keeps and closes after it is destroyed, as the CTS does.
    fn import<K: SyncKind>(
        d: &Self::Device,
        object: K::Object,
        handle_type: Self::HandleType,
        permanence: Permanence,
        handle: Self::Handle,
    );

    /// A plain object with `handle` imported into it.
    fn create_and_import<K: SyncKind>(
        d: &Self::Device,
        handle_type: Self::HandleType,
        permanence: Permanence,
        handle: Self::Handle,
    ) -> K::Object {
        let object = K::create(d);
        Self::import::<K>(d, object, handle_type, permanence, handle);
        object
    }
}

/// The cases a test binary adds to the shared ones of a handle type.
#[derive(Default)]
pub struct OwnCases {
    /// Cases without a permanence, registered first (`info`, `info_binary`, `info_timeline`).
    pub info: Vec<Case>,
    /// Cases of each permanence, registered right after `signal_import` (the fence's `reset`).
    pub after_signal_import: Vec<CaseByPermanence>,
}

/// A case instantiated: its name and its body.
macro_rules! case {
    ($case:ident::<$($arg:tt),*>) => {
        (stringify!($case), $case::<$($arg),*> as fn(crate::harness::Route))
    };
}
use case;

/// Every case of family `F` and kind `K` in the CTS's order, for the family's two handle types
/// (`HandleType as u8` 0 and 1), each with the binary's own cases (`own[handle type]`).
pub fn tests<F: Family, K: SyncKind>(own: [OwnCases; 2]) -> Vec<(String, Test)> {
    let [first, second] = own;
    let mut all = handle_type_cases::<F, K, 0>(&first);
    all.extend(handle_type_cases::<F, K, 1>(&second));
    all
}

/// The trials of one handle type: `own.info`, then for each permanence the family's cases with
/// `own.after_signal_import` in place.
fn handle_type_cases<F: Family, K: SyncKind, const H: u8>(own: &OwnCases) -> Vec<(String, Test)> {
    let handle_type = F::handle_type(H);
    let prefix = format!("{}.{}", K::NAME, F::name(handle_type));
    let trial = |name, permanence, run| cts_case(&prefix, name, permanence, LOADER_AND_IN_PROCESS, run);
    let mut all: Vec<_> = own.info.iter().map(|&(name, run)| trial(name, None, run)).collect();
    for &p in F::permanences(handle_type) {
        let shared = match p {
            Permanence::Temporary => F::cases::<K, H, TEMPORARY>(),
            Permanence::Permanent => F::cases::<K, H, PERMANENT>(),
        };
        for (name, run) in shared {
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

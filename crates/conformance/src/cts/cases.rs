//! The cases every handle family has, written once (see [`super`]).

use super::Family;
use crate::external::{Permanence, Transference};
use crate::harness::Route;
use crate::kind::SyncKind;

/// The handle type and permanence of a case.
pub fn params<F: Family, const H: u8, const P: u8>() -> (F::HandleType, Permanence) {
    (F::handle_type(H), Permanence::from_u8(P))
}

/// The handle of an exportable object as most cases take it: COPY types export while a signal
/// is pending (the CTS's compute job), REFERENCE types export the unsignaled object.
pub fn export_for_case<F: Family, K: SyncKind>(
    d: &F::Device,
    object: K::Object,
    handle_type: F::HandleType,
) -> F::Handle {
    match F::transference(handle_type) {
        Transference::Copy => F::signal_and_export_while_pending::<K>(d, object, handle_type),
        Transference::Reference => F::export::<K>(d, object, handle_type),
    }
}

/// How most cases end: a COPY import holds the signal its export took, so `importer` is
/// signaled; a REFERENCE import shares `exporter`'s payload, so a signal of `exporter` reaches it.
pub fn signal_reaches<F: Family, K: SyncKind>(
    d: &F::Device,
    handle_type: F::HandleType,
    exporter: K::Object,
    importer: K::Object,
) {
    if F::transference(handle_type) == Transference::Reference {
        K::signal(d, exporter);
    }
    K::wait(d, importer);
}

/// Two imports of copies of one handle: REF shares the payload (signal one, the other signals).
pub fn import_twice<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let object = F::exportable::<K>(&d, h);
    let handle_a = export_for_case::<F, K>(&d, object, h);
    let handle_b = F::copy(&handle_a);
    let object_a = F::create_and_import::<K>(&d, h, p, handle_a);
    let object_b = F::create_and_import::<K>(&d, h, p, handle_b);
    match F::transference(h) {
        Transference::Copy => K::wait(&d, object_a),
        Transference::Reference => {
            K::signal(&d, object_a);
            K::wait(&d, object_b);
        }
    }
    d.idle();
}

/// An import over an already imported payload.
pub fn reimport<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let object_a = F::exportable::<K>(&d, h);
    let handle_a = export_for_case::<F, K>(&d, object_a, h);
    let handle_b = F::copy(&handle_a);
    let object_b = F::create_and_import::<K>(&d, h, p, handle_a);
    F::import::<K>(&d, object_b, h, p, handle_b);
    signal_reaches::<F, K>(&d, h, object_a, object_b);
    d.idle();
}

/// Export while the signal is pending; after idle, an importer sees it signaled.
pub fn signal_export_import_wait<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let object_a = F::exportable::<K>(&d, h);
    let handle = F::signal_and_export_while_pending::<K>(&d, object_a, h);
    let object_b = F::create_and_import::<K>(&d, h, p, handle);
    K::wait(&d, object_b);
    d.idle();
}

/// Import into an object that is signaled (a semaphore: never waited on).
pub fn signal_import<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let object_a = F::exportable::<K>(&d, h);
    let object_b = K::create(&d);
    K::signal(&d, object_b);
    d.idle();
    let handle = export_for_case::<F, K>(&d, object_a, h);
    F::import::<K>(&d, object_b, h, p, handle);
    signal_reaches::<F, K>(&d, h, object_a, object_b);
    d.idle();
}

/// Signals and waits through either object reach the other exactly as the transference and
/// permanence say; a temporary import is gone after the fence's reset or the semaphore's wait.
pub fn transference<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let a = F::exportable::<K>(&d, h);
    let handle = F::signal_and_export_while_pending::<K>(&d, a, h);
    let b = F::create_and_import::<K>(&d, h, p, handle);
    match (F::transference(h), p) {
        (Transference::Copy, _) => {
            // The export took A's signal: A is unsignaled and can be signaled again.
            K::signal(&d, a);
            K::wait(&d, b);
            d.idle();
            K::rearm(&d, b);
            K::signal(&d, b);
            K::wait(&d, a);
            K::wait(&d, b);
        }
        (Transference::Reference, Permanence::Permanent) => {
            K::wait(&d, b);
            d.idle();
            K::rearm(&d, b);
            K::signal(&d, a);
            K::wait(&d, b);
            K::rearm(&d, a);
            K::signal(&d, b);
            K::wait(&d, a);
        }
        (Transference::Reference, Permanence::Temporary) => {
            K::wait(&d, b);
            d.idle();
            // B is back on its own payload: two signals, two waits, no double consumption.
            K::rearm(&d, a);
            K::rearm(&d, b);
            K::signal(&d, a);
            K::signal(&d, b);
            K::wait(&d, b);
            K::wait(&d, a);
        }
    }
    d.idle();
}

/// Import into an object that was signaled, waited and idled; then the shared payload rules.
pub fn signal_wait_import<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let object_a = F::exportable::<K>(&d, h);
    let object_b = K::create(&d);
    let handle = F::export::<K>(&d, object_a, h);
    K::signal(&d, object_b);
    K::wait(&d, object_b);
    d.idle();
    F::import::<K>(&d, object_b, h, p, handle);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
}

/// A handle taken before the signal sees the later signal.
pub fn export_signal_import_wait<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let object_a = F::exportable::<K>(&d, h);
    let handle = F::export::<K>(&d, object_a, h);
    K::signal(&d, object_a);
    let object_b = F::create_and_import::<K>(&d, h, p, handle);
    K::wait(&d, object_b);
    d.idle();
}

/// Export, import, then signal the exporter: the importer signals.
pub fn export_import_signal_wait<F: Family, K: SyncKind, const H: u8, const P: u8>(route: Route) {
    let (h, p) = params::<F, H, P>();
    let d = F::device(route);
    let object_a = F::exportable::<K>(&d, h);
    let handle = F::export::<K>(&d, object_a, h);
    let object_b = F::create_and_import::<K>(&d, h, p, handle);
    K::signal(&d, object_a);
    K::wait(&d, object_b);
    d.idle();
}

//! Model checking of `PayloadSlot` (a fence's or semaphore's permanent payload and optional
//! temporary one) with loom:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p tether-icd --test loom --release
//! ```
//!
//! Under `cfg(loom)` the slot's lock is loom's and the payloads' atomics and futex are loom's
//! (tether-payload's `sync_prims`), so swaps of the temporary and permanent payloads are checked
//! against waits, exports and resets in every interleaving. Each model prints how many
//! executions it explored.
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use tether_icd::sync::{PayloadSlot, Permanence};
use tether_payload::{Deadline, Payload, PayloadKind, WaitFor, WaitOutcome};

/// Runs a model exhaustively (or with `LOOM_MAX_PREEMPTIONS`) and reports the executions.
fn check(name: &str, model: impl Fn() + Sync + Send + 'static) {
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    loom::model::Builder::new().check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    });
    eprintln!("loom model {name}: {} executions", executions.load(Ordering::Relaxed));
}

fn binary(signaled: bool) -> Payload {
    Payload::new_private(PayloadKind::BinarySemaphore, u64::from(signaled))
}

/// A semaphore's temporary payload serves exactly one wait (or export): two racing takers get
/// it once between them, the other the permanent one, and the permanent one is back after.
#[test]
fn temporary_is_taken_once() {
    check("temporary_is_taken_once", || {
        let permanent = binary(false);
        let temporary = binary(true);
        let slot = Arc::new(PayloadSlot::new(permanent.clone()));
        slot.install(temporary.clone(), Permanence::Temporary);
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let slot = Arc::clone(&slot);
                thread::spawn(move || slot.take_active())
            })
            .collect();
        let taken: Vec<Payload> = takers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(taken.iter().filter(|p| p.same_as(&temporary)).count(), 1);
        assert_eq!(taken.iter().filter(|p| p.same_as(&permanent)).count(), 1);
        assert!(!slot.has_temporary());
        assert!(slot.active().same_as(&permanent));
    });
}

/// A host wait on a fence's temporary payload, racing `vkResetFences` (which drops the
/// temporary and resets the permanent one): whichever payload the waiter picked, the signal
/// that follows the reset wakes it.
#[test]
fn wait_survives_a_reset_that_drops_the_temporary() {
    check("wait_survives_a_reset_that_drops_the_temporary", || {
        let permanent = Payload::new_private(PayloadKind::Fence, 1);
        let temporary = Payload::new_private(PayloadKind::Fence, 0);
        let slot = Arc::new(PayloadSlot::new(permanent.clone()));
        slot.install(temporary.clone(), Permanence::Temporary);
        let waiter = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.active().wait(WaitFor::Signaled, Deadline::NEVER))
        };
        let resetter = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.restore_permanent().reset())
        };
        resetter.join().unwrap();
        assert!(!slot.has_temporary());
        assert!(!permanent.is_signaled(), "the reset reached the permanent payload");
        temporary.signal();
        permanent.signal();
        assert_eq!(waiter.join().unwrap(), WaitOutcome::Ready);
    });
}

/// A semaphore wait (which takes the active payload and blocks to consume its signal) racing a
/// permanent import: later waits see the imported payload; the blocked wait is woken by the
/// signal of the payload it took and takes that one only, whichever it was.
#[test]
fn consume_against_permanent_import() {
    check("consume_against_permanent_import", || {
        let old = binary(false);
        let imported = binary(false);
        let slot = Arc::new(PayloadSlot::new(old.clone()));
        let waiter = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                let p = slot.take_active();
                assert_eq!(p.wait(WaitFor::Consume, Deadline::NEVER), WaitOutcome::Ready);
                p
            })
        };
        slot.install(imported.clone(), Permanence::Permanent);
        assert!(slot.active().same_as(&imported));
        old.signal();
        imported.signal();
        let consumed = waiter.join().unwrap();
        let (taken, other) = if consumed.same_as(&old) {
            (&old, &imported)
        } else {
            (&imported, &old)
        };
        assert!(consumed.same_as(taken));
        assert!(!taken.is_signaled() && other.is_signaled());
    });
}

/// An export (which takes the active payload and drops a temporary one) racing a new temporary
/// import: the export gets the temporary that was active when it ran, and a temporary is left
/// exactly when the import came second.
#[test]
fn export_against_temporary_import() {
    check("export_against_temporary_import", || {
        let permanent = binary(false);
        let first = binary(false);
        let second = binary(false);
        let slot = Arc::new(PayloadSlot::new(permanent.clone()));
        slot.install(first.clone(), Permanence::Temporary);
        let importer = {
            let (slot, second) = (Arc::clone(&slot), second.clone());
            thread::spawn(move || slot.install(second, Permanence::Temporary))
        };
        let exported = slot.take_active();
        importer.join().unwrap();
        if exported.same_as(&first) {
            // Export first: the import's temporary is active now.
            assert!(slot.has_temporary() && slot.active().same_as(&second));
        } else {
            // Import first: the export took the new temporary and dropped it.
            assert!(exported.same_as(&second));
            assert!(!slot.has_temporary() && slot.active().same_as(&permanent));
        }
    });
}

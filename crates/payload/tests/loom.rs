//! Model checking of the payload protocol with loom, through the public API:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p tether-payload --test loom --release
//! ```
//!
//! Under `cfg(loom)` the crate's atomics are loom's and its futex is a model (see
//! `src/sync_prims.rs`): a wait with no deadline blocks until a wake of its word, so a lost
//! wake-up is a deadlock loom reports, and every interleaving (and every value a relaxed or
//! acquire load may return) is explored up to the preemption bound. Each model prints how many
//! executions it explored.
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use tether_payload::{Deadline, Payload, PayloadKind, WaitFor, WaitOutcome, wait_many};

/// Runs a model, exhaustively (`None`) or with a preemption bound (`LOOM_MAX_PREEMPTIONS`
/// overrides it), and reports the executions explored.
fn check(name: &str, preemptions: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
    let executions = Arc::new(AtomicUsize::new(0));
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }
    let bound = builder.preemption_bound;
    let counter = Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    });
    eprintln!(
        "loom model {name}: {} executions (preemption bound {bound:?})",
        executions.load(Ordering::Relaxed)
    );
}

fn binary() -> Payload {
    Payload::new_private(PayloadKind::BinarySemaphore, 0)
}

/// One signal, two threads trying to take it: exactly one signal exists afterwards, taken by at
/// most one of them (the consume compare-and-swap never gives it twice, never loses it).
#[test]
fn binary_signal_is_consumed_at_most_once() {
    check("binary_signal_is_consumed_at_most_once", None, || {
        let p = binary();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                thread::spawn(move || p.try_consume())
            })
            .collect();
        p.signal();
        let taken = takers
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum::<usize>();
        assert_eq!(
            taken + usize::from(p.is_signaled()),
            1,
            "one signal, taken {taken} times"
        );
    });
}

/// A blocked consuming wait is woken by a signal from another thread and takes it: no lost
/// wake-up between the waiter's register/re-check and the signaler's increment/wake.
#[test]
fn consuming_wait_is_woken() {
    check("consuming_wait_is_woken", None, || {
        let p = binary();
        let waiter = {
            let p = p.clone();
            thread::spawn(move || p.wait(WaitFor::Consume, Deadline::NEVER))
        };
        p.signal();
        assert_eq!(waiter.join().unwrap(), WaitOutcome::Ready);
        assert!(!p.is_signaled(), "the wait took the signal");
    });
}

/// Two blocked consumers, two signals (the second only once the first was taken, as valid usage
/// of a binary semaphore requires): both wake, each with its own signal.
#[test]
fn two_consumers_two_signals() {
    check("two_consumers_two_signals", Some(2), || {
        let p = binary();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                thread::spawn(move || p.wait(WaitFor::Consume, Deadline::NEVER))
            })
            .collect();
        p.signal();
        while p.is_signaled() {
            thread::yield_now();
        }
        p.signal();
        for w in waiters {
            assert_eq!(w.join().unwrap(), WaitOutcome::Ready);
        }
        assert!(!p.is_signaled(), "both signals were taken");
    });
}

/// A timeline only moves up (`fetch_max`): two signals out of order and an observer that reads
/// twice; a waiter for the larger value wakes.
#[test]
fn timeline_is_monotonic_and_wakes() {
    check("timeline_is_monotonic_and_wakes", Some(2), || {
        let p = Payload::new_private(PayloadKind::Timeline, 0);
        let signalers: Vec<_> = [2u64, 1]
            .into_iter()
            .map(|v| {
                let p = p.clone();
                thread::spawn(move || p.signal_value(v))
            })
            .collect();
        let observer = {
            let p = p.clone();
            thread::spawn(move || {
                let a = p.value();
                let b = p.value();
                assert!(a <= b, "the timeline went back from {a} to {b}");
            })
        };
        assert_eq!(p.wait(WaitFor::AtLeast(2), Deadline::NEVER), WaitOutcome::Ready);
        for s in signalers {
            s.join().unwrap();
        }
        observer.join().unwrap();
        assert_eq!(p.value(), 2);
    });
}

/// Wait-any over private payloads blocks on the process-wide local epoch: a signal of any of
/// them wakes it, and it reports the one that holds.
#[test]
fn wait_any_is_woken_by_either() {
    check("wait_any_is_woken_by_either", None, || {
        let a = Payload::new_private(PayloadKind::Timeline, 0);
        let b = Payload::new_private(PayloadKind::Timeline, 0);
        let signaler = {
            let b = b.clone();
            thread::spawn(move || b.signal_value(1))
        };
        let got = wait_many(
            &[(&a, WaitFor::AtLeast(1)), (&b, WaitFor::AtLeast(1))],
            true,
            Deadline::NEVER,
        );
        assert_eq!(got, Ok(Some(1)));
        signaler.join().unwrap();
    });
}

/// Wait-any with consumes: the entry reported is the one whose signal the wait took, and no
/// other signal is taken.
#[test]
fn wait_any_consumes_exactly_one() {
    check("wait_any_consumes_exactly_one", None, || {
        let a = binary();
        let b = binary();
        let signaler = {
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                b.signal();
                a.signal();
            })
        };
        let got = wait_many(&[(&a, WaitFor::Consume), (&b, WaitFor::Consume)], true, Deadline::NEVER)
            .expect("a signal comes");
        signaler.join().unwrap();
        match got {
            Some(0) => assert!(!a.is_signaled() && b.is_signaled()),
            Some(1) => assert!(a.is_signaled() && !b.is_signaled()),
            other => panic!("wait-any reported {other:?}"),
        }
    });
}

/// A fence reset then signaled again (`vkResetFences`, then a submit's signal) while a host
/// thread waits: the waiter never misses the signal that lands after the reset.
#[test]
fn fence_reset_against_signal() {
    check("fence_reset_against_signal", None, || {
        let f = Payload::new_private(PayloadKind::Fence, 1);
        let waiter = {
            let f = f.clone();
            thread::spawn(move || f.wait(WaitFor::Signaled, Deadline::NEVER))
        };
        f.reset();
        f.signal();
        assert_eq!(waiter.join().unwrap(), WaitOutcome::Ready);
        assert!(f.is_signaled());
    });
}

/// A reset racing a signal leaves the fence in the state of whichever came last, and a poll
/// never sees a value the two could not produce.
#[test]
fn fence_reset_races_signal() {
    check("fence_reset_races_signal", None, || {
        let f = Payload::new_private(PayloadKind::Fence, 0);
        let resetter = {
            let f = f.clone();
            thread::spawn(move || f.reset())
        };
        f.signal();
        let seen = f.value();
        resetter.join().unwrap();
        assert!(seen <= 1);
        // Both orders are allowed; a wait that polls agrees with the final state.
        let signaled = f.is_signaled();
        let polled = f.wait(WaitFor::Signaled, Deadline::from_timeout_ns(0)) == WaitOutcome::Ready;
        assert_eq!(signaled, polled);
    });
}

// ---------------------------------------------------------------------------------------------
// Doorbells (`tether_payload::doorbell::model`): the wait-any protocol over shared pages, with
// the page's sequence word, waiter word and interest counters and the doorbell slots in plain
// memory.

use tether_payload::doorbell::model::{self, Doorbells, Page};

/// A process's first doorbell wait on a page (registering its interest) races the page's
/// signal: the signal either is seen by the wait's check or rings the doorbell it sleeps on.
#[test]
fn doorbell_first_wait_is_woken() {
    check("doorbell_first_wait_is_woken", None, || {
        let doorbells = Arc::new(Doorbells::default());
        let page = Arc::new(Page::new(1));
        let signaler = {
            let (doorbells, page) = (doorbells.clone(), page.clone());
            thread::spawn(move || page.signal(&doorbells))
        };
        assert_eq!(model::wait_any(&[&page], &doorbells, 0, false), 0);
        assert!(model::doorbell_bit(&page));
        signaler.join().unwrap();
    });
}

/// A ring for a page outside the wait's set (same slot: another page of the process, or a
/// process whose pid collides) lands next to the signal of the page the wait wants: after a
/// single ring the wait only checks the rung page, and still never misses the other signal.
#[test]
fn doorbell_ring_of_another_page_loses_nothing() {
    check("doorbell_ring_of_another_page_loses_nothing", Some(3), || {
        let doorbells = Arc::new(Doorbells::default());
        let wanted = Arc::new(Page::new(1));
        let other = Arc::new(Page::new(2));
        model::register(&wanted, 0);
        model::register(&other, 0);
        let signalers: Vec<_> = [wanted.clone(), other.clone()]
            .into_iter()
            .map(|page| {
                let doorbells = doorbells.clone();
                thread::spawn(move || page.signal(&doorbells))
            })
            .collect();
        assert_eq!(model::wait_any(&[&wanted], &doorbells, 0, true), 0);
        for s in signalers {
            s.join().unwrap();
        }
    });
}

/// Two processes on different slots wait on the same page (interest registered by each): one
/// signal rings both doorbells and wakes both.
#[test]
fn doorbell_rings_every_interested_slot() {
    check("doorbell_rings_every_interested_slot", Some(3), || {
        let doorbells = Arc::new(Doorbells::default());
        let page = Arc::new(Page::new(1));
        let waiters: Vec<_> = (0..2)
            .map(|slot| {
                let (doorbells, page) = (doorbells.clone(), page.clone());
                thread::spawn(move || model::wait_any(&[&page], &doorbells, slot, false))
            })
            .collect();
        page.signal(&doorbells);
        for w in waiters {
            assert_eq!(w.join().unwrap(), 0);
        }
    });
}

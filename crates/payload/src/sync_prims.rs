//! The primitives the payload protocol is written with: std's atomics and the kernel's futex
//! normally, [loom]'s atomics and a modelled futex under `cfg(loom)`, so that
//! `tests/loom.rs` can check the protocol (register / re-check / wake, the consume
//! compare-and-swap, the timeline `fetch_max`, the local epoch of wait-any) in every
//! interleaving and memory order loom explores.
//!
//! The modelled futex: `futex_wait(word, observed)` returns at once unless `word` still holds
//! `observed`, checked under the model's lock, and otherwise blocks until a `futex_wake` of the
//! same word (wakes of other words do not end it, and there are no spurious returns, so a lost
//! wake-up shows as a deadlock that loom reports). A wait with a timeout returns after a
//! `yield_now`, as a timed-out wait would. Shared (memfd) pages cannot exist under loom, so
//! `futex_waitv` is never reached there.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
use std::time::Duration;

#[cfg(not(loom))]
use rustix::thread::futex;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};

/// Between a `SeqCst` read-modify-write of one word and a `SeqCst` load of another (the
/// register / re-check and increment / waiter-check pairs of the futex protocol): nothing in
/// normal builds, where `SeqCst` accesses already order the two (the C++ model's single total
/// order of `SeqCst` operations forbids both sides reading the old value). Loom models `SeqCst`
/// accesses only as `AcqRel`, which allows that outcome and reports a lost wake-up that cannot
/// happen; a `SeqCst` fence, which loom does model, gives it the same guarantee. So the models
/// check the protocol as the language defines it; they do not check that the accesses are
/// `SeqCst` rather than weaker (the code and its comments in `state` say why they must be).
#[inline(always)]
pub(crate) fn store_load_barrier() {
    #[cfg(loom)]
    fence(std::sync::atomic::Ordering::SeqCst);
}

/// `FUTEX_WAIT` with a relative timeout; every error (EAGAIN, EINTR, ETIMEDOUT) is a normal
/// return and the caller re-checks.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, flags: futex::Flags, observed: u32, timeout: Option<Duration>) {
    let ts = timeout.map(crate::state::duration_to_timespec);
    let _ = futex::wait(word, flags, observed, ts.as_ref());
}

/// `FUTEX_WAKE` of up to `count` waiters.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32, flags: futex::Flags, count: u32) {
    let _ = futex::wake(word, flags, count);
}

/// One `futex_waitv` entry.
#[cfg(not(loom))]
pub(crate) fn waitv_entry(word: &AtomicU32, observed: u32, flags: futex::WaitFlags) -> futex::Wait {
    let mut w = futex::Wait::new();
    w.val = u64::from(observed);
    w.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
    w.flags = flags;
    w
}

/// `futex_waitv` with an absolute CLOCK_MONOTONIC timeout.
#[cfg(not(loom))]
pub(crate) fn futex_waitv(
    entries: &[futex::Wait],
    timeout: Option<&rustix::time::Timespec>,
) -> rustix::io::Result<usize> {
    futex::waitv(entries, futex::WaitvFlags::empty(), timeout, futex::ClockId::Monotonic)
}

#[cfg(loom)]
pub(crate) use model::{futex_wait, futex_waitv, futex_wake, waitv_entry};

#[cfg(loom)]
mod model {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use loom::sync::{Condvar, Mutex};
    use rustix::thread::futex;

    use super::AtomicU32;

    /// Wake counts by word address, and where waiters sleep.
    struct Futex {
        wakes: Mutex<Vec<(usize, u64)>>,
        wake: Condvar,
    }

    loom::lazy_static! {
        static ref FUTEX: Futex = Futex {
            wakes: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        };
    }

    fn address(word: &AtomicU32) -> usize {
        std::ptr::from_ref(word).addr()
    }

    fn wakes_of(wakes: &[(usize, u64)], addr: usize) -> u64 {
        wakes.iter().find(|(a, _)| *a == addr).map_or(0, |(_, n)| *n)
    }

    pub(crate) fn futex_wait(word: &AtomicU32, _flags: futex::Flags, observed: u32, timeout: Option<Duration>) {
        if timeout.is_some() {
            // A bounded wait: model it as timing out.
            loom::thread::yield_now();
            return;
        }
        let addr = address(word);
        let mut wakes = FUTEX.wakes.lock().unwrap_or_else(|e| e.into_inner());
        if word.load(Ordering::SeqCst) != observed {
            return;
        }
        let seen = wakes_of(&wakes, addr);
        while wakes_of(&wakes, addr) == seen {
            wakes = FUTEX.wake.wait(wakes).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(crate) fn futex_wake(word: &AtomicU32, _flags: futex::Flags, _count: u32) {
        let addr = address(word);
        let mut wakes = FUTEX.wakes.lock().unwrap_or_else(|e| e.into_inner());
        match wakes.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, n)) => *n += 1,
            None => wakes.push((addr, 1)),
        }
        drop(wakes);
        FUTEX.wake.notify_all();
    }

    pub(crate) fn waitv_entry(_word: &AtomicU32, observed: u32, flags: futex::WaitFlags) -> futex::Wait {
        let mut w = futex::Wait::new();
        w.val = u64::from(observed);
        w.flags = flags;
        w
    }

    pub(crate) fn futex_waitv(
        _entries: &[futex::Wait],
        _timeout: Option<&rustix::time::Timespec>,
    ) -> rustix::io::Result<usize> {
        // Only shared pages are waited on with futex_waitv, and they do not exist under loom.
        loom::thread::yield_now();
        Ok(0)
    }
}

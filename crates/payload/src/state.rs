//! The synchronisation state shared by every payload flavour and the futex protocol on it.
//!
//! Signal: store the value, increment the 32-bit sequence word, wake the sequence word only if
//! the waiter word counts waiters (or says "always wake"), ring the doorbells of processes with
//! interest in a shared page (see [`crate::doorbell`]), then bump the process-global *local
//! epoch* (see [`LocalEpoch`]). Wait: read the sequence word, check the condition, register in the waiter
//! word, re-read the sequence word, `FUTEX_WAIT` on it with the remaining timeout, unregister,
//! loop. The sequence word is only a wake-up channel: whatever is written to it (also garbage
//! from a hostile peer) can only cause a spurious wake-up or a missed one, and every kernel wait
//! is bounded by the caller's deadline.
//!
//! The atomics and the futex calls come from [`crate::sync_prims`], so that `tests/loom.rs` can
//! model-check this protocol under `cfg(loom)`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::thread::futex;

use crate::doorbell::Bells;
use crate::sync_prims::{AtomicU32, AtomicU64, fence, futex_wake, store_load_barrier};
use crate::{Deadline, WaitOutcome};

/// Bit of the waiter word that says "waiters that cannot register may exist (read-only
/// mappings): always wake". Set by [`crate::Payload::open_read_only_fd`] on the exporter's page.
pub(crate) const WAKE_ALWAYS: u32 = 1 << 31;

/// Bit of the waiter word that says "some process registered doorbell interest in this page"
/// (see [`crate::doorbell`]): signalers then look at the page's interest counters. Never
/// cleared; the count of registered waiters is the word without this bit and [`WAKE_ALWAYS`].
pub(crate) const DOORBELL: u32 = 1 << 30;

/// How long a waiter that cannot rely on being woken (a read-only mapping of a page without
/// [`WAKE_ALWAYS`], a sync file in a wait-any, more futexes than one `futex_waitv` takes) sleeps
/// before it looks again.
pub(crate) const SLICE: Duration = Duration::from_millis(1);

/// `FUTEX_WAKE` takes an `int` count.
pub(crate) const WAKE_ALL: u32 = i32::MAX as u32;

/// The value, the futex sequence word and the waiter count. `#[repr(C)]` because it is part of
/// the shared page layout (value at +0, sequence at +8, waiters at +12; 16 bytes, align 8).
#[repr(C, align(8))]
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    pub(crate) value: AtomicU64,
    pub(crate) seq: AtomicU32,
    pub(crate) waiters: AtomicU32,
}

/// Loads that are valid on read-only memory too: Rust only promises that small *relaxed*
/// atomic loads work on read-only mappings, so every load goes through these.
#[inline]
pub(crate) fn load32(a: &AtomicU32) -> u32 {
    let v = a.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    v
}

#[inline]
pub(crate) fn load64(a: &AtomicU64) -> u64 {
    let v = a.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    v
}

/// How a state is reached: futex flags and whether this process may write it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Access {
    /// Shared (cross-process) futex rather than `FUTEX_PRIVATE_FLAG`.
    pub(crate) shared: bool,
    /// Writable mapping (private states always are).
    pub(crate) writable: bool,
}

impl Access {
    pub(crate) fn futex_flags(self) -> futex::Flags {
        if self.shared {
            futex::Flags::empty()
        } else {
            futex::Flags::PRIVATE
        }
    }

    pub(crate) fn waitv_flags(self) -> futex::WaitFlags {
        if self.shared {
            futex::WaitFlags::SIZE_U32
        } else {
            futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE
        }
    }
}

impl SyncState {
    pub(crate) fn new(initial: u64) -> SyncState {
        SyncState {
            value: AtomicU64::new(initial),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// After a state change: bump the sequence word, wake it if anyone waits on it, ring the
    /// doorbells of the processes with interest in the page (`bells`: a shared page in this
    /// process's doorbell domain), bump the local epoch. Only called on writable states.
    pub(crate) fn publish(&self, access: Access, bells: Option<Bells<'_>>) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        store_load_barrier();
        let waiters = self.waiters.load(Ordering::SeqCst);
        if waiters & !DOORBELL != 0 {
            futex_wake(&self.seq, access.futex_flags(), WAKE_ALL);
        }
        if waiters & DOORBELL != 0
            && let Some(bells) = bells
        {
            bells.ring();
        }
        crate::many::note_signaled(self);
        LOCAL_EPOCH.bump();
    }

    /// Registers this thread as a waiter (writable states only).
    pub(crate) fn register(&self) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        store_load_barrier();
    }

    pub(crate) fn unregister(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// The sequence word again, after registering (a `SeqCst` load pairs with the signaler's
    /// `SeqCst` increment and waiter load; read-only mappings only allow relaxed loads, and
    /// there is nothing to pair with since such a waiter does not register).
    pub(crate) fn recheck_seq(&self, access: Access) -> u32 {
        if access.writable {
            self.seq.load(Ordering::SeqCst)
        } else {
            load32(&self.seq)
        }
    }

    /// Whether a waiter that cannot register will still be woken.
    pub(crate) fn wakes_always(&self) -> bool {
        load32(&self.waiters) & WAKE_ALWAYS != 0
    }

    /// The wait protocol. `ready` evaluates (and, for consumes, performs) the condition.
    pub(crate) fn wait(&self, access: Access, deadline: Deadline, mut ready: impl FnMut() -> bool) -> WaitOutcome {
        loop {
            let observed = load32(&self.seq);
            if ready() {
                return WaitOutcome::Ready;
            }
            let remaining = deadline.remaining();
            if remaining == Some(Duration::ZERO) {
                return WaitOutcome::TimedOut;
            }
            if access.writable {
                self.register();
                if self.seq.load(Ordering::SeqCst) == observed {
                    futex_wait(&self.seq, access.futex_flags(), observed, remaining);
                }
                self.unregister();
            } else {
                // Nobody knows we wait: rely on the WAKE_ALWAYS bit, else look again regularly.
                let timeout = if self.wakes_always() {
                    remaining
                } else {
                    min_timeout(remaining, SLICE)
                };
                futex_wait(&self.seq, access.futex_flags(), observed, timeout);
            }
        }
    }
}

/// `min(remaining, slice)` where `None` is forever.
pub(crate) fn min_timeout(remaining: Option<Duration>, slice: Duration) -> Option<Duration> {
    Some(remaining.map_or(slice, |r| r.min(slice)))
}

/// `FUTEX_WAIT` with a relative timeout; every error (EAGAIN, EINTR, ETIMEDOUT) is a normal
/// return and the caller re-checks.
pub(crate) fn futex_wait(word: &AtomicU32, flags: futex::Flags, observed: u32, timeout: Option<Duration>) {
    crate::sync_prims::futex_wait(word, flags, observed, timeout);
}

pub(crate) fn duration_to_timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// An absolute CLOCK_MONOTONIC time `d` from now (for `futex_waitv`).
pub(crate) fn monotonic_after(d: Duration) -> rustix::time::Timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let add = duration_to_timespec(d);
    let mut sec = now.tv_sec.saturating_add(add.tv_sec);
    let mut nsec = now.tv_nsec + add.tv_nsec;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    rustix::time::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// A process-global futex word that every signal done in this process bumps. A wait-any over
/// many payloads waits on it plus the sequence words of the *shared* payloads only: private
/// payloads can only be signaled by this process, so a bump of the epoch covers all of them.
pub(crate) struct LocalEpoch {
    pub(crate) word: AtomicU32,
    waiters: AtomicU32,
}

#[cfg(not(loom))]
pub(crate) static LOCAL_EPOCH: LocalEpoch = LocalEpoch {
    word: AtomicU32::new(0),
    waiters: AtomicU32::new(0),
};

// Loom's atomics are not `const`; each model execution gets a fresh epoch.
#[cfg(loom)]
loom::lazy_static! {
    pub(crate) static ref LOCAL_EPOCH: LocalEpoch = LocalEpoch {
        word: AtomicU32::new(0),
        waiters: AtomicU32::new(0),
    };
}

impl LocalEpoch {
    #[inline]
    fn bump(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        store_load_barrier();
        if self.waiters.load(Ordering::SeqCst) != 0 {
            futex_wake(&self.word, futex::Flags::PRIVATE, WAKE_ALL);
        }
    }

    pub(crate) fn register(&self) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        store_load_barrier();
    }

    pub(crate) fn unregister(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

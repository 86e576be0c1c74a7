//! Waiting on several payloads at once.
//!
//! **All**: each entry is waited for in turn with the same deadline; entries that do not consume
//! go first and `Consume` entries are taken last, in order, so a signal is only taken once
//! everything else is ready (a consume can still be taken and the wait time out on a later
//! consume entry; queue workers only wait on semaphores whose signal is pending).
//!
//! **Any**: one loop over every condition, then one kernel wait on
//! * the process-global *local epoch* word, which every signal done in this process bumps
//!   (that covers all private payloads, which nobody else can signal), plus
//! * the sequence words of the distinct *shared* payloads of the set (peers in other processes
//!   bump those),
//!
//! through `futex_waitv` (absolute CLOCK_MONOTONIC timeout). With no shared payload it is a plain
//! `FUTEX_WAIT` on the epoch. Fallbacks, each waking at least every millisecond to re-check all
//! conditions:
//! * more than 127 distinct shared payloads (`futex_waitv` takes at most 128 words): the shared
//!   words are cycled through in chunks of 127 (plus the epoch), one chunk per 1 ms slice;
//! * no `futex_waitv` (ENOSYS) or another unexpected error: `FUTEX_WAIT` on the epoch alone in
//!   1 ms slices;
//! * sync files in the set: 1 ms slices, the sync files being polled (zero timeout) at each
//!   re-check; a set of only sync files is one `poll` with the remaining timeout;
//! * a read-only mapping whose page does not say "always wake": 1 ms slices.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

use crate::state::{Access, LOCAL_EPOCH, SLICE, SyncState, futex_wait, load32, min_timeout, monotonic_after};
use crate::{Body, Deadline, Payload, WaitFor, WaitOutcome, sync_file};

/// Futex words per `futex_waitv` call, the epoch included.
const WAITV_MAX: usize = 128;
/// Shared words per call.
const SHARED_PER_CALL: usize = WAITV_MAX - 1;

static NO_WAITV: AtomicBool = AtomicBool::new(false);

pub(crate) fn wait_many(
    waits: &[(&Payload, WaitFor)],
    any: bool,
    deadline: Deadline,
) -> Result<Option<usize>, WaitOutcome> {
    if any {
        return wait_any(waits, deadline).map(Some);
    }
    for consumes in [false, true] {
        for (payload, what) in waits {
            if (*what == WaitFor::Consume) == consumes && payload.wait(*what, deadline) == WaitOutcome::TimedOut {
                return Err(WaitOutcome::TimedOut);
            }
        }
    }
    Ok(None)
}

fn wait_entry(word: &AtomicU32, observed: u32, flags: futex::WaitFlags) -> futex::Wait {
    let mut w = futex::Wait::new();
    w.val = u64::from(observed);
    w.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
    w.flags = flags;
    w
}

fn wait_any(waits: &[(&Payload, WaitFor)], deadline: Deadline) -> Result<usize, WaitOutcome> {
    if waits.is_empty() {
        // Nothing can ever become ready.
        return Err(WaitOutcome::TimedOut);
    }
    let mut shared: Vec<(&SyncState, Access)> = Vec::new();
    let mut sync_fds: Vec<BorrowedFd<'_>> = Vec::new();
    for (payload, _) in waits {
        match &payload.inner.body {
            Body::Private(_) => {}
            Body::Shared { page, .. } => {
                shared.push((
                    page.sync(),
                    Access {
                        shared: true,
                        writable: page.writable(),
                    },
                ));
            }
            Body::SyncFile(fd) => sync_fds.push(fd.as_fd()),
        }
    }
    shared.sort_by_key(|(st, _)| std::ptr::from_ref(*st).addr());
    shared.dedup_by_key(|(st, _)| std::ptr::from_ref(*st).addr());
    let only_sync_files = sync_fds.len() == waits.len();
    let mut observed = vec![0u32; shared.len()];
    let mut entries: Vec<futex::Wait> = Vec::with_capacity(WAITV_MAX.min(shared.len() + 1));
    let chunks = shared.len().div_ceil(SHARED_PER_CALL).max(1);
    let mut next_chunk = 0usize;

    loop {
        let epoch = load32(&LOCAL_EPOCH.word);
        for (o, (st, _)) in observed.iter_mut().zip(&shared) {
            *o = load32(&st.seq);
        }
        for (i, (payload, what)) in waits.iter().enumerate() {
            if payload.inner.ready(*what) {
                return Ok(i);
            }
        }
        let remaining = deadline.remaining();
        if remaining == Some(Duration::ZERO) {
            return Err(WaitOutcome::TimedOut);
        }
        if only_sync_files {
            let _ = sync_file::poll_any(&sync_fds, remaining);
            continue;
        }

        LOCAL_EPOCH.register();
        for (st, access) in &shared {
            if access.writable {
                st.register();
            }
        }
        let changed = LOCAL_EPOCH.word.load(Ordering::SeqCst) != epoch
            || shared
                .iter()
                .zip(&observed)
                .any(|((st, access), o)| st.recheck_seq(*access) != *o);
        if !changed {
            let sliced = !sync_fds.is_empty()
                || chunks > 1
                || shared.iter().any(|(st, access)| !access.writable && !st.wakes_always());
            let timeout = if sliced {
                min_timeout(remaining, SLICE)
            } else {
                remaining
            };
            if shared.is_empty() {
                futex_wait(&LOCAL_EPOCH.word, futex::Flags::PRIVATE, epoch, timeout);
            } else if NO_WAITV.load(Ordering::Relaxed) {
                futex_wait(
                    &LOCAL_EPOCH.word,
                    futex::Flags::PRIVATE,
                    epoch,
                    min_timeout(remaining, SLICE),
                );
            } else {
                let chunk = next_chunk % chunks;
                next_chunk = next_chunk.wrapping_add(1);
                let start = chunk * SHARED_PER_CALL;
                let end = (start + SHARED_PER_CALL).min(shared.len());
                entries.clear();
                entries.push(wait_entry(
                    &LOCAL_EPOCH.word,
                    epoch,
                    futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE,
                ));
                for ((st, access), o) in shared.iter().zip(&observed).take(end).skip(start) {
                    entries.push(wait_entry(&st.seq, *o, access.waitv_flags()));
                }
                let abs = timeout.map(monotonic_after);
                match futex::waitv(
                    &entries,
                    futex::WaitvFlags::empty(),
                    abs.as_ref(),
                    futex::ClockId::Monotonic,
                ) {
                    Ok(_) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => {}
                    Err(e) => {
                        if e == Errno::NOSYS {
                            NO_WAITV.store(true, Ordering::Relaxed);
                        }
                        futex_wait(
                            &LOCAL_EPOCH.word,
                            futex::Flags::PRIVATE,
                            epoch,
                            min_timeout(remaining, SLICE),
                        );
                    }
                }
            }
        }
        for (st, access) in &shared {
            if access.writable {
                st.unregister();
            }
        }
        LOCAL_EPOCH.unregister();
    }
}

//! Waiting on several payloads at once.
//!
//! **All**: each entry is waited for in turn with the same deadline; entries that do not consume
//! go first and `Consume` entries are taken last, in order, so a signal is only taken once
//! everything else is ready (a consume can still be taken and the wait time out on a later
//! consume entry; queue workers only wait on semaphores whose signal is pending).
//!
//! **Any**: one loop over every condition, then one kernel wait (`futex_waitv`, absolute
//! CLOCK_MONOTONIC timeout) on
//! * the process-global *local epoch* word, which every signal done in this process bumps
//!   (that covers all private payloads, which nobody else can signal), plus
//! * this process's *doorbell* (see [`crate::doorbell`]) for the shared pages it can wait on
//!   that way (writable mappings in its doorbell domain, not marked foreign; when there are at
//!   least four of them): a signal of any
//!   of them, in any process, rings it. One word however many pages: nothing per page is
//!   queued in the kernel, and the interest that makes signalers ring stays registered in the
//!   page between calls, so a repeated wait-any costs one pass over its pages per check; plus
//! * the sequence words of the other distinct shared pages (foreign ones, read-only mappings,
//!   every page when the process has no doorbell), as before doorbells.
//!
//! With no shared payload it is a plain `FUTEX_WAIT` on the epoch. The waiter registers once
//! (epoch, doorbell, pages' words) for the whole call. Woken by exactly one ring since its last
//! full check, it only checks the entries whose page has the rung tag; otherwise it checks
//! everything. A doorbell wait also looks at its pages every [`crate::doorbell::safety_net`]
//! interval (10 ms, more for large sets: about 0.05% of the wall time) for a page that turned
//! foreign or changed without a ring; a page that turned foreign makes the call wait on that
//! page's own word from then on.
//!
//! **More than 127 words in all** (`futex_waitv` takes at most 128): the calling thread waits on
//! the epoch, the doorbell, a "fired" word and the first pages' words, and hands the rest, 127
//! words each, to *helper threads* (a per-process pool, `tether-wait`, started on first need and
//! kept blocked while idle), each blocked in its own `futex_waitv` on its words plus the call's
//! "round" word. Each round the caller snapshots every sequence word, checks every condition,
//! publishes the snapshot and bumps the round; a helper waits with that snapshot (so a change
//! after the check makes its `futex_waitv` return at once), and when one of its words changes it
//! bumps "fired" and wakes the caller, which checks again. The call ends by setting the round
//! word to "done" and waking the helpers, which unregister from their pages and go back to the
//! pool; they hold their own references to those payloads, so the caller does not wait for them.
//! Nothing polls: every thread blocks in the kernel until something changes.
//!
//! Fallbacks, each waking at least every millisecond to re-check all conditions:
//! * no helper thread can start: the shared words are cycled through in chunks of 127 (plus the
//!   epoch), one chunk per 1 ms slice;
//! * no `futex_waitv` (ENOSYS) or another unexpected error: `FUTEX_WAIT` on the epoch alone in
//!   1 ms slices;
//! * sync files in the set: 1 ms slices, the sync files being polled (zero timeout) at each
//!   re-check; a set of only sync files is one `poll` with the remaining timeout;
//! * a read-only mapping whose page does not say "always wake": 1 ms slices (a helper holding
//!   one fires every slice).

use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;

use crate::doorbell::{self, Doorbell, Slot};
use crate::page::{self, SharedPage};
use crate::state::{Access, LOCAL_EPOCH, SLICE, SyncState, WAKE_ALL, futex_wait, load32, min_timeout, monotonic_after};
use crate::sync_prims::{AtomicU32, futex_waitv, futex_wake, waitv_entry as wait_entry};
use crate::{Body, Deadline, Payload, WaitFor, WaitOutcome, sync_file};

/// Futex words per `futex_waitv` call, the epoch included.
const WAITV_MAX: usize = 128;

static NO_WAITV: AtomicBool = AtomicBool::new(false);

/// Doorbell pages a wait-any needs before it waits through the doorbell: a few pages' own words
/// cost the kernel no more than the doorbell does, and single-object waits stay as they were.
const DOORBELL_MIN: usize = 4;

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

/// The address of the state the latest signal in this process changed: a hint for wait-any
/// callers woken by the local epoch, who check the entries on that state first (a stale or
/// overwritten hint only costs the full check).
static LAST_SIGNALED: AtomicUsize = AtomicUsize::new(0);

/// Called by every signal (before it bumps the local epoch).
pub(crate) fn note_signaled(state: &SyncState) {
    LAST_SIGNALED.store(address(state), Ordering::Relaxed);
}

fn last_signaled() -> Option<usize> {
    // Under loom the hint would make executions depend on state the model does not track (loom
    // replays must be deterministic); it is only an optimisation, so the models run without it.
    if cfg!(loom) {
        return None;
    }
    Some(LAST_SIGNALED.load(Ordering::Relaxed)).filter(|&a| a != 0)
}

fn address(state: &SyncState) -> usize {
    std::ptr::from_ref(state).addr()
}

/// A distinct shared page of a wait-any set.
#[derive(Clone, Copy)]
struct Word<'a> {
    state: &'a SyncState,
    access: Access,
    payload: &'a Payload,
    page: &'a SharedPage,
}

impl Word<'_> {
    /// Needs a sliced wait: a read-only mapping nobody promises to wake.
    fn sliced(&self) -> bool {
        !self.access.writable && !self.state.wakes_always()
    }
}

fn shared_word(payload: &Payload) -> Option<Word<'_>> {
    match &payload.inner.body {
        Body::Shared { page, .. } => Some(Word {
            state: page.sync(),
            access: Access {
                shared: true,
                writable: page.writable(),
            },
            payload,
            page,
        }),
        _ => None,
    }
}

fn register(words: &[Word<'_>]) {
    words
        .iter()
        .filter(|w| w.access.writable)
        .for_each(|w| w.state.register());
}

fn unregister(words: &[Word<'_>]) {
    words
        .iter()
        .filter(|w| w.access.writable)
        .for_each(|w| w.state.unregister());
}

/// This process's doorbell slot, for a wait-any call with doorbell pages.
#[derive(Clone, Copy)]
struct Bell {
    slot: &'static Slot,
    index: usize,
    pid: u32,
}

/// What a wait-any call knows about its entries.
struct Set<'a, 'w> {
    waits: &'w [(&'a Payload, WaitFor)],
    /// Per entry, the address of its state (0 for sync files): a woken caller finds the entry a
    /// hint names without touching every payload.
    states: Vec<usize>,
    /// Per entry, the doorbell tag of its page (0 for other payloads).
    tags: Vec<u16>,
    /// The distinct shared pages.
    shared: Vec<Word<'a>>,
    sync_fds: Vec<BorrowedFd<'a>>,
}

impl Set<'_, '_> {
    fn ready(&self, i: usize) -> bool {
        self.waits
            .get(i)
            .is_some_and(|(payload, what)| payload.inner.ready(*what))
    }

    /// The first entry that holds, checking all.
    fn first_ready(&self) -> Option<usize> {
        self.waits.iter().position(|(payload, what)| payload.inner.ready(*what))
    }

    /// The first entry on the state at `address` that holds.
    fn ready_at(&self, address: usize) -> Option<usize> {
        find_eq(&self.states, address, |i| self.ready(i))
    }

    /// The first entry on a page tagged `tag` that holds.
    fn ready_tagged(&self, tag: u16) -> Option<usize> {
        find_eq(&self.tags, tag, |i| self.ready(i))
    }
}

/// The first index `i` with `keys[i] == key` and `accept(i)`. Compares a chunk at a time
/// without early exits (the compiler vectorises that), as it runs on a wake-up's path.
fn find_eq<T: Copy + PartialEq>(keys: &[T], key: T, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
    const CHUNK: usize = 32;
    for (c, chunk) in keys.chunks(CHUNK).enumerate() {
        if !chunk.iter().fold(false, |any, &k| any | (k == key)) {
            continue;
        }
        for (j, &k) in chunk.iter().enumerate() {
            let i = c * CHUNK + j;
            if k == key && accept(i) {
                return Some(i);
            }
        }
    }
    None
}

fn wait_any(waits: &[(&Payload, WaitFor)], deadline: Deadline) -> Result<usize, WaitOutcome> {
    if waits.is_empty() {
        // Nothing can ever become ready.
        return Err(WaitOutcome::TimedOut);
    }
    let mut set = Set {
        waits,
        states: Vec::with_capacity(waits.len()),
        tags: Vec::with_capacity(waits.len()),
        shared: Vec::new(),
        sync_fds: Vec::new(),
    };
    for (payload, _) in waits {
        set.states.push(payload.inner.state().map_or(0, |(st, _)| address(st)));
        match &payload.inner.body {
            Body::Shared { page, .. } => {
                set.tags.push(page.tag());
                set.shared.extend(shared_word(payload));
            }
            Body::SyncFile(fd) => {
                set.tags.push(0);
                set.sync_fds.push(fd.as_fd());
            }
            Body::Private(_) => set.tags.push(0),
        }
    }
    set.shared.sort_by_key(|w| address(w.state));
    set.shared.dedup_by_key(|w| address(w.state));
    // (A poll never sleeps: no doorbell to arm.)
    let doorbell = if deadline.remaining() != Some(Duration::ZERO)
        && set.shared.iter().filter(|w| w.page.doorbell_capable()).count() >= DOORBELL_MIN
    {
        doorbell::local()
    } else {
        None
    };
    let bell = doorbell.map(|d| {
        let pid = page::current_pid();
        let index = Doorbell::slot_of(pid);
        Bell {
            slot: &d.slots()[index],
            index,
            pid,
        }
    });
    let mut may_reclassify = true;
    loop {
        // Pages this process can wait on through its doorbell, and the others.
        let (belled, direct): (Vec<Word<'_>>, Vec<Word<'_>>) = set
            .shared
            .iter()
            .partition(|w| bell.is_some() && w.page.doorbell_capable() && !w.page.is_foreign());
        let bell = bell.filter(|_| !belled.is_empty());
        match wait_any_pass(&set, &belled, &direct, bell, may_reclassify, deadline) {
            Some(result) => return result,
            // A doorbell page turned foreign: once per call, wait on its own word from now on.
            None => may_reclassify = false,
        }
    }
}

/// One wait-any over `belled` pages (through the doorbell `bell`) and `direct` pages (their
/// own futex words). `None`: a doorbell page turned foreign (only if `may_reclassify`).
fn wait_any_pass(
    set: &Set<'_, '_>,
    belled: &[Word<'_>],
    shared: &[Word<'_>],
    bell: Option<Bell>,
    may_reclassify: bool,
    deadline: Deadline,
) -> Option<Result<usize, WaitOutcome>> {
    let only_sync_files = set.sync_fds.len() == set.waits.len();
    let mut observed = vec![0u32; shared.len()];
    // Futex words of the caller's own `futex_waitv` besides the pages': the epoch and the bell.
    let fixed = 1 + usize::from(bell.is_some());
    let per_call = WAITV_MAX - fixed;
    // Words this thread registers on and waits for itself; helpers take the rest.
    let mut own = shared.len();
    let mut helpers: Option<Helped> = None;
    let mut registered = false;
    let mut entries: Vec<futex::Wait> = Vec::with_capacity(WAITV_MAX.min(shared.len() + fixed + 1));
    let mut next_chunk = 0usize;

    // The state (address) whose change woke us, if known: checked first, before touching every
    // payload.
    let mut hint: Option<usize> = None;
    // After exactly one ring of the doorbell since the last full check: the rung page's tag.
    let mut quick: Option<u16> = None;
    // What the last full check saw: the bell, the epoch, the helpers' "fired" word.
    let mut bell_seen = 0u32;
    let mut epoch = 0u32;
    let mut fired: Option<u32> = None;
    // When a doorbell wait looks at its pages again although nothing rang (see `doorbell`), and
    // the sequence words its last full check saw.
    let mut net_due: Option<Instant> = None;
    let net = doorbell::safety_net(belled.len());
    let mut belled_seqs = vec![0u32; belled.len()];
    if let Some(b) = bell {
        b.slot.arm();
    }

    let result = loop {
        let full = quick.is_none();
        if let Some(tag) = quick.take() {
            // Exactly one ring since the last full check, for the pages tagged `tag`: every
            // later signal of a doorbell page rings again, so only those need a look.
            if let Some(i) = set.ready_tagged(tag) {
                break Some(Ok(i));
            }
        } else {
            if let Some(state) = hint.take()
                && let Some(i) = set.ready_at(state)
            {
                // A condition that holds needs no snapshot: nothing is lost by returning.
                break Some(Ok(i));
            }
            if let Some(b) = bell {
                bell_seen = b.slot.observe();
            }
            epoch = load32(&LOCAL_EPOCH.word);
            fired = helpers.as_ref().map(|h| h.call.fired.load(Ordering::Acquire));
            let mut turned_foreign = false;
            if let Some(b) = bell {
                for (w, s) in belled.iter().zip(&mut belled_seqs) {
                    turned_foreign |= w.page.is_foreign();
                    *s = w.page.prepare_bell(b.index, b.pid);
                }
                net_due = Some(Instant::now() + net);
            }
            for (o, w) in observed.iter_mut().zip(shared) {
                *o = load32(&w.state.seq);
            }
            if let Some(h) = &helpers {
                h.publish(&observed[own..]);
            }
            if let Some(i) = set.first_ready() {
                break Some(Ok(i));
            }
            if turned_foreign && may_reclassify {
                break None;
            }
        }
        let remaining = deadline.remaining();
        if remaining == Some(Duration::ZERO) {
            break Some(Err(WaitOutcome::TimedOut));
        }
        if only_sync_files {
            let _ = sync_file::poll_any(&set.sync_fds, remaining);
            continue;
        }
        let waitv = (!shared.is_empty() || bell.is_some()) && !NO_WAITV.load(Ordering::Relaxed);
        if !registered {
            if waitv && shared.len() > per_call {
                // The caller's own words: "fired" takes one more of the 128.
                own = per_call - 1;
                helpers = Helped::start(&shared[own..], &observed[own..]);
                if helpers.is_none() {
                    own = shared.len();
                }
            }
            LOCAL_EPOCH.register();
            register(&shared[..own]);
            registered = true;
        }
        let changed = LOCAL_EPOCH.word.load(Ordering::SeqCst) != epoch
            || shared[..own]
                .iter()
                .zip(&observed)
                .any(|(w, o)| w.state.recheck_seq(w.access) != *o);
        if changed {
            continue;
        }
        let chunks = own.div_ceil(per_call).max(1);
        let sliced = !set.sync_fds.is_empty() || chunks > 1 || shared[..own].iter().any(Word::sliced);
        let mut timeout = if sliced {
            min_timeout(remaining, SLICE)
        } else {
            remaining
        };
        if let Some(due) = net_due {
            let mut left = due.saturating_duration_since(Instant::now());
            if left == Duration::ZERO {
                // The safety net: a page that turned foreign, or changed without a ring (a
                // hostile peer), needs a full check; otherwise wait on.
                let moved = belled
                    .iter()
                    .zip(&belled_seqs)
                    .any(|(w, s)| w.page.is_foreign() || load32(&w.state.seq) != *s);
                if moved {
                    quick = None;
                    continue;
                }
                left = net;
                net_due = Some(Instant::now() + net);
            }
            timeout = min_timeout(timeout, left);
        }
        if !waitv {
            let timeout = if shared.is_empty() && bell.is_none() {
                timeout
            } else {
                min_timeout(remaining, SLICE)
            };
            futex_wait(&LOCAL_EPOCH.word, futex::Flags::PRIVATE, epoch, timeout);
            hint = last_signaled();
            continue;
        }
        entries.clear();
        entries.push(wait_entry(
            &LOCAL_EPOCH.word,
            epoch,
            futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE,
        ));
        let bell_entry = bell.map(|b| {
            entries.push(wait_entry(&b.slot.bell, bell_seen, futex::WaitFlags::SIZE_U32));
            entries.len() - 1
        });
        let fired_entry = helpers.as_mut().map(|h| {
            // Read before the last full check; helpers started just now have not fired (nor
            // run). A new round only after a full check (its snapshot is what they wait with).
            let fired = fired.unwrap_or_else(|| h.call.fired.load(Ordering::Acquire));
            if full {
                h.next_round();
            }
            entries.push(wait_entry(
                &h.call.fired,
                fired,
                futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE,
            ));
            entries.len() - 1
        });
        let chunk = next_chunk % chunks;
        next_chunk = next_chunk.wrapping_add(1);
        let start = chunk * per_call;
        let end = (start + per_call).min(own);
        let first_word = entries.len();
        for (w, o) in shared.iter().zip(&observed).take(end).skip(start) {
            entries.push(wait_entry(&w.state.seq, *o, w.access.waitv_flags()));
        }
        let abs = timeout.map(monotonic_after);
        match futex_waitv(&entries, abs.as_ref()) {
            Ok(i) if Some(i) == bell_entry => {
                if let Some(b) = bell {
                    let now = b.slot.observe();
                    if doorbell::rings_between(bell_seen, now) == 1 {
                        bell_seen = now;
                        quick = Some(doorbell::tag_in(now));
                    }
                }
            }
            Ok(i) => {
                hint = match (i.checked_sub(first_word), &helpers) {
                    (Some(k), _) => shared.get(start + k).map(|w| address(w.state)),
                    (None, Some(h)) if Some(i) == fired_entry => {
                        h.hint().and_then(|k| shared.get(own + k)).map(|w| address(w.state))
                    }
                    // The local epoch: a signal in this process.
                    _ => last_signaled(),
                };
            }
            Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => {}
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
    };
    if let Some(h) = helpers {
        h.finish();
    }
    if registered {
        unregister(&shared[..own]);
        LOCAL_EPOCH.unregister();
    }
    if let Some(b) = bell {
        b.slot.disarm();
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Helper threads for wait-any sets of more than 127 shared payloads.

/// Shared words per helper (128 minus the call's round word).
const HELPER_SHARED: usize = WAITV_MAX - 1;
/// The round value that ends a call.
const DONE: u32 = u32::MAX;

/// What a wait-any call with helpers shares with them.
struct Call {
    /// The caller stores the next round (after publishing `observed`); [`DONE`] ends the call.
    /// Helpers wait on it too.
    round: AtomicU32,
    /// A helper bumps it, and wakes the caller, when one of its words changed.
    fired: AtomicU32,
    /// The page (index in `pages`, plus 1) whose word woke the helper that fired last; 0 when
    /// unknown.
    hint: AtomicU32,
    /// The helpers' pages, kept alive for them: a helper may still be blocked on them when the
    /// caller has returned.
    pages: Vec<Payload>,
    /// Per page: the sequence value the caller saw before its last check of the conditions.
    observed: Vec<AtomicU32>,
}

/// The helpers of one call.
struct Helped {
    call: Arc<Call>,
    helpers: Vec<Arc<Helper>>,
    /// Whether the helpers have their jobs (else they are still the caller's, idle).
    handed: bool,
}

impl Helped {
    /// Takes (or starts) enough helpers for `words`; `None` if a thread cannot start.
    fn start(words: &[Word<'_>], observed: &[u32]) -> Option<Helped> {
        let helpers = take_helpers(words.len().div_ceil(HELPER_SHARED))?;
        let call = Arc::new(Call {
            round: AtomicU32::new(0),
            fired: AtomicU32::new(0),
            hint: AtomicU32::new(0),
            pages: words.iter().map(|w| w.payload.clone()).collect(),
            observed: observed.iter().map(|&o| AtomicU32::new(o)).collect(),
        });
        Some(Helped {
            call,
            helpers,
            handed: false,
        })
    }

    /// Publishes the caller's snapshot of the helpers' words (before it checks the conditions).
    fn publish(&self, observed: &[u32]) {
        for (a, &o) in self.call.observed.iter().zip(observed) {
            a.store(o, Ordering::Relaxed);
        }
    }

    /// The page (index among the helpers' pages) the last firing helper was woken by, if it
    /// knows; taken.
    fn hint(&self) -> Option<usize> {
        (self.call.hint.swap(0, Ordering::Relaxed) as usize).checked_sub(1)
    }

    /// Starts a round: the helpers wait with the snapshot just published.
    fn next_round(&mut self) {
        let mut round = self.call.round.load(Ordering::Relaxed).wrapping_add(1);
        if round == DONE || round == 0 {
            round = 1;
        }
        // Release: a helper that sees the round sees the snapshot.
        self.call.round.store(round, Ordering::Release);
        if self.handed {
            futex_wake(&self.call.round, futex::Flags::PRIVATE, WAKE_ALL);
            return;
        }
        let n = self.call.pages.len();
        for (k, helper) in self.helpers.iter().enumerate() {
            let start = k * HELPER_SHARED;
            helper.give(Job {
                call: Arc::clone(&self.call),
                range: start..(start + HELPER_SHARED).min(n),
            });
        }
        self.handed = true;
    }

    /// Ends the call: the helpers unregister and go back to the pool on their own. Only one is
    /// woken here (the first to see the end wakes the others), so the caller returns sooner.
    fn finish(self) {
        if self.handed {
            self.call.round.store(DONE, Ordering::Release);
            futex_wake(&self.call.round, futex::Flags::PRIVATE, 1);
        } else {
            give_back(self.helpers);
        }
    }
}

/// A helper's part of a call: `call.pages[range]`.
struct Job {
    call: Arc<Call>,
    range: Range<usize>,
}

/// One pooled helper thread.
struct Helper {
    /// Bumped when a job is handed over; the idle thread waits on it.
    handoff: AtomicU32,
    job: Mutex<Option<Job>>,
}

impl Helper {
    fn give(&self, job: Job) {
        *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        self.handoff.fetch_add(1, Ordering::Release);
        futex_wake(&self.handoff, futex::Flags::PRIVATE, 1);
    }

    fn take_job(&self) -> Option<Job> {
        self.job.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Idle helpers, and the process they belong to (after `fork` the child has none of the
/// threads: the list is dropped).
static POOL: Mutex<(u32, Vec<Arc<Helper>>)> = Mutex::new((0, Vec::new()));

fn pool() -> std::sync::MutexGuard<'static, (u32, Vec<Arc<Helper>>)> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pid = rustix::process::getpid().as_raw_nonzero().get().unsigned_abs();
    if pool.0 != pid {
        // Another process's list (we were forked): those threads do not exist here.
        std::mem::forget(std::mem::take(&mut pool.1));
        pool.0 = pid;
    }
    pool
}

fn give_back(helpers: Vec<Arc<Helper>>) {
    pool().1.extend(helpers);
}

/// `n` idle helpers, new threads started as needed; `None` (and nothing taken) if one cannot
/// start.
fn take_helpers(n: usize) -> Option<Vec<Arc<Helper>>> {
    let mut got = {
        let mut pool = pool();
        let keep = pool.1.len().saturating_sub(n);
        pool.1.split_off(keep)
    };
    while got.len() < n {
        let helper = Arc::new(Helper {
            handoff: AtomicU32::new(0),
            job: Mutex::new(None),
        });
        let theirs = Arc::clone(&helper);
        match std::thread::Builder::new()
            .name("tether-wait".into())
            .stack_size(64 * 1024)
            .spawn(move || run_helper(&theirs))
        {
            Ok(_) => got.push(helper),
            Err(_) => {
                give_back(got);
                return None;
            }
        }
    }
    Some(got)
}

fn run_helper(helper: &Arc<Helper>) {
    loop {
        let seen = helper.handoff.load(Ordering::Acquire);
        match helper.take_job() {
            Some(job) => {
                run_job(&job.call, job.range.clone());
                // Its payload references go before it is available again.
                drop(job);
                pool().1.push(Arc::clone(helper));
            }
            None => futex_wait(&helper.handoff, futex::Flags::PRIVATE, seen, None),
        }
    }
}

/// Waits on `call.pages[range]` round after round until the call is done.
fn run_job(call: &Call, range: Range<usize>) {
    let (Some(pages), Some(observed)) = (call.pages.get(range.clone()), call.observed.get(range.clone())) else {
        return;
    };
    let words: Vec<Word<'_>> = pages.iter().filter_map(shared_word).collect();
    register(&words);
    let sliced = words.iter().any(Word::sliced);
    let mut entries: Vec<futex::Wait> = Vec::with_capacity(words.len() + 1);
    let mut armed = 0u32;
    let mut fired = false;
    loop {
        let round = call.round.load(Ordering::Acquire);
        if round == DONE {
            // The caller woke one helper; each passes it on.
            futex_wake(&call.round, futex::Flags::PRIVATE, WAKE_ALL);
            break;
        }
        if round != armed {
            armed = round;
            fired = false;
            entries.clear();
            entries.push(wait_entry(
                &call.round,
                round,
                futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE,
            ));
            for (w, o) in words.iter().zip(observed) {
                entries.push(wait_entry(
                    &w.state.seq,
                    o.load(Ordering::Relaxed),
                    w.access.waitv_flags(),
                ));
            }
        }
        if fired {
            // Told the caller; wait for its next round (or the end).
            futex_wait(&call.round, futex::Flags::PRIVATE, round, None);
            continue;
        }
        let abs = sliced.then(|| monotonic_after(SLICE));
        let woke = futex_waitv(&entries, abs.as_ref());
        if call.round.load(Ordering::Acquire) != round {
            continue;
        }
        match woke {
            // The round word without a new round, or a signal: wait again.
            Ok(0) | Err(Errno::INTR) => continue,
            // A word changed.
            Ok(i) => {
                let page = range.start + i - 1;
                call.hint.store(u32::try_from(page + 1).unwrap_or(0), Ordering::Relaxed);
            }
            // A word differed already, or a sliced wait's slice is over.
            Err(Errno::AGAIN | Errno::TIMEDOUT) => {}
            // Unexpected: let the caller check once a slice, rather than spin.
            Err(_) => futex_wait(&call.round, futex::Flags::PRIVATE, round, Some(SLICE)),
        }
        fired = true;
        call.fired.fetch_add(1, Ordering::Release);
        futex_wake(&call.fired, futex::Flags::PRIVATE, 1);
    }
    unregister(&words);
}

/// Idle helper threads in this process (for tests).
#[cfg(test)]
pub(crate) fn idle_helpers() -> usize {
    pool().1.len()
}

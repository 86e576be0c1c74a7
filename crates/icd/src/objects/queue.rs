//! `VkQueue`: batches run in submission order on the queue's own worker thread, so a submit
//! never blocks and wait-before-signal works.
//!
//! # Inline execution
//!
//! A submit to an idle queue (nothing queued, the worker not running a batch, no other submit
//! running batches itself) whose first batch's waits hold already runs its batches on the
//! submitting thread, in order, instead of handing them to the worker: that saves a thread
//! hand-off (a futex wake and a context switch) per submit. It never blocks: each wait is polled
//! once (a binary semaphore's signal is taken by that poll, as by a completed wait), and at the
//! first wait that does not hold, or a batch whose commands could block (`vkCmdWaitEvents`) or
//! move more than [`INLINE_TRANSFER_LIMIT`] bytes, the rest goes to the worker exactly as a
//! normal submit would have queued it (waits already taken are not taken again).
//!
//! Why this is the same as the worker running them:
//! * **Order.** Inline execution only starts when the queue is idle (`completed == submitted`,
//!   nothing queued) and marks the queue busy (`inline`) while it runs: the worker does not start
//!   a batch meanwhile, and a concurrent submit (only possible with the queue not externally
//!   synchronized) queues behind. What is left goes to the front of the worker's queue, ahead of
//!   anything queued meanwhile. So batches still run one at a time in submission order.
//! * **Waits.** The worker would have popped the batch at once and found the same waits
//!   satisfied; polling one wait is exactly the worker's wait with nothing to block on. Waits run
//!   in order and each is taken once: a wait is removed from the batch when it completes, so the
//!   worker resumes at the first one left. A binary semaphore's consume is one compare-and-swap:
//!   whoever wins it has the signal, a loser leaves the wait to the worker (which blocks for the
//!   next signal), as two waiters racing would in the worker.
//! * **Pending counters.** Every object is marked pending at submit (as before) and each count is
//!   ended exactly where the worker ends it: a wait's after it completed, a signal's and the
//!   fence's just before they land. `submitted` counts every batch at submit, `completed` counts
//!   the inline ones when the submit finishes, so `vkQueueWaitIdle` (which waits for `completed`
//!   to reach `submitted`) sees an inline submit as in flight until it is done.
//! * **Temporary payloads** are resolved (and a semaphore's temporary one taken) when the batch is
//!   built, before it reaches the queue, whichever thread runs it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tether_payload::{Deadline, Payload, WaitFor, WaitOutcome};

use crate::objects::command::{Command, ExecutionContext};
use crate::sync::PendingWork;

/// How long a worker blocks before it checks whether its device is being destroyed.
const SHUTDOWN_CHECK_NS: u64 = 200_000_000;

/// Bytes of transfer commands (copies, fills, updates) a batch may carry and still run on the
/// submitting thread: a submit should not take the time of a large copy.
pub const INLINE_TRANSFER_LIMIT: u64 = 64 * 1024;

/// A semaphore wait resolved at submit time (a temporary payload is consumed by it). Batches
/// hold the semaphore's pending-work counter, not the semaphore: it may be destroyed (its storage
/// freed by `vkDestroySemaphore`) once the batch's signals are seen.
pub struct BatchWait {
    pub pending: Arc<PendingWork>,
    pub payload: Payload,
    pub what: WaitFor,
}

/// A semaphore signal resolved at submit time: `value` for counters.
pub struct BatchSignal {
    pub pending: Arc<PendingWork>,
    pub payload: Payload,
    pub value: Option<u64>,
}

/// One `VkSubmitInfo` (or `VkSubmitInfo2`), plus the submit's fence on the last one.
#[derive(Default)]
pub struct Batch {
    pub waits: Vec<BatchWait>,
    pub work: Vec<Arc<[Command]>>,
    pub signals: Vec<BatchSignal>,
    /// The fence's pending-work counter and payload.
    pub fence: Option<(Arc<PendingWork>, Payload)>,
}

impl Batch {
    /// Marks every object this batch touches as having pending queue work.
    fn begin_pending(&self) {
        self.waits.iter().for_each(|w| w.pending.begin());
        self.signals.iter().for_each(|s| s.pending.begin());
        if let Some((pending, _)) = &self.fence {
            pending.begin();
        }
    }

    /// Whether every wait holds now (nothing is taken: a binary semaphore only has to be
    /// signaled).
    fn waits_hold(&self) -> bool {
        self.waits.iter().all(|w| w.payload.holds(w.what))
    }

    /// Whether the commands may run on a submitting thread: none of them blocks, and the
    /// transfers are small.
    fn commands_run_inline(&self) -> bool {
        let mut bytes = 0u64;
        for command in self.work.iter().flat_map(|c| c.iter()) {
            let moved = match command {
                Command::WaitEvents(_) => return false,
                Command::CopyBuffer { regions, .. } => regions.iter().fold(0u64, |b, r| b.saturating_add(r.size)),
                Command::FillBuffer { size, .. } => *size,
                Command::UpdateBuffer { bytes, .. } => bytes.len() as u64,
                Command::SetEvent(_) | Command::ResetEvent(_) => 0,
            };
            bytes = bytes.saturating_add(moved);
            if bytes > INLINE_TRANSFER_LIMIT {
                return false;
            }
        }
        true
    }

    /// Completes the waits that hold now, in order, up to the first that does not (a binary
    /// semaphore's signal is taken by its check); they are removed from the batch. True when no
    /// wait is left.
    fn take_ready_waits(&mut self) -> bool {
        let ready = self.waits.iter().take_while(|w| w.payload.poll(w.what)).count();
        for w in self.waits.drain(..ready) {
            w.pending.end();
        }
        self.waits.is_empty()
    }

    /// Blocks on the waits left, in order (the worker). False if the queue shut down meanwhile.
    fn wait(&mut self, ctx: &dyn ExecutionContext) -> bool {
        for (done, w) in self.waits.iter().enumerate() {
            if !ctx.wait(&|deadline| w.payload.wait(w.what, deadline)) {
                // Keep the count exact for the waits that did complete.
                self.waits.drain(..done).for_each(|w| w.pending.end());
                return false;
            }
        }
        self.waits.drain(..).for_each(|w| w.pending.end());
        true
    }

    /// Runs the commands, then the signals and the fence (the waits are done).
    fn finish(&self, ctx: &dyn ExecutionContext) {
        for commands in &self.work {
            for command in commands.iter() {
                command.execute(ctx);
            }
        }
        // Each object stops being pending before its signal lands: a host thread woken by the
        // signal may reset or resubmit it at once, and must not find it still pending.
        for s in &self.signals {
            s.pending.end();
            match s.value {
                Some(v) => s.payload.signal_value(v),
                None => s.payload.signal(),
            }
        }
        if let Some((pending, payload)) = &self.fence {
            pending.end();
            payload.signal();
        }
    }
}

struct QueueState {
    /// Batches for the worker, in submission order.
    batches: VecDeque<Batch>,
    /// Batches submitted, and completed, since the queue was created.
    submitted: u64,
    completed: u64,
    /// A submitting thread is running batches itself: the worker starts none meanwhile.
    inline: bool,
    /// The worker is blocked on `work_ready` (a submit only wakes it then).
    worker_waiting: bool,
    /// Threads blocked on `became_idle`.
    idle_waiters: u32,
    shutdown: bool,
}

impl QueueState {
    /// Nothing queued, nothing running.
    fn idle(&self) -> bool {
        !self.shutdown && !self.inline && self.batches.is_empty() && self.completed == self.submitted
    }
}

struct QueueShared {
    state: Mutex<QueueState>,
    work_ready: Condvar,
    became_idle: Condvar,
}

impl QueueShared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_shutting_down(&self) -> bool {
        self.lock().shutdown
    }

    /// Releases the lock, then wakes the worker if it has work and waits for it, and the
    /// threads in `vkQueueWaitIdle` if batches `completed`.
    fn release(&self, state: MutexGuard<'_, QueueState>, completed: bool) {
        let wake_worker = state.worker_waiting && !state.inline && !state.batches.is_empty();
        let wake_idle = completed && state.idle_waiters > 0;
        drop(state);
        if wake_worker {
            self.work_ready.notify_one();
        }
        if wake_idle {
            self.became_idle.notify_all();
        }
    }
}

pub struct Queue {
    pub device_id: u64,
    pub family_index: u32,
    pub queue_index: u32,
    pub flags: ash::vk::DeviceQueueCreateFlags,
    /// The device's messengers (a queue reports submit-time validation errors).
    pub debug: Arc<crate::debug::DebugReporter>,
    shared: Arc<QueueShared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Queue {
    pub fn new(
        device_id: u64,
        family_index: u32,
        queue_index: u32,
        flags: ash::vk::DeviceQueueCreateFlags,
        debug: Arc<crate::debug::DebugReporter>,
    ) -> std::io::Result<Queue> {
        let shared = Arc::new(QueueShared {
            state: Mutex::new(QueueState {
                batches: VecDeque::new(),
                submitted: 0,
                completed: 0,
                inline: false,
                worker_waiting: false,
                idle_waiters: 0,
                shutdown: false,
            }),
            work_ready: Condvar::new(),
            became_idle: Condvar::new(),
        });
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name(format!("tether-queue-{queue_index}"))
            .spawn(move || run_worker(&worker_shared))?;
        Ok(Queue {
            device_id,
            family_index,
            queue_index,
            flags,
            debug,
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Runs the batches on this thread when the queue is idle and they can start now (see the
    /// module docs), else queues them for the worker; never blocks on their waits.
    pub fn submit(&self, batches: Vec<Batch>) {
        let Some(first) = batches.first() else {
            return;
        };
        batches.iter().for_each(Batch::begin_pending);
        // Checked before taking the lock; nothing is taken yet.
        let may_run_here = first.waits_hold() && first.commands_run_inline();
        let mut state = self.shared.lock();
        let run_here = may_run_here && state.idle();
        state.submitted += batches.len() as u64;
        if !run_here {
            state.batches.extend(batches);
            self.shared.release(state, false);
            return;
        }
        state.inline = true;
        drop(state);

        let mut run = InlineRun {
            shared: &self.shared,
            left: VecDeque::from(batches),
            taken: 0,
        };
        while let Some(mut batch) = run.left.pop_front() {
            if !batch.commands_run_inline() || !batch.take_ready_waits() {
                run.left.push_front(batch);
                break;
            }
            run.taken += 1;
            batch.finish(&InlineContext);
            // Dropped before it counts as completed: once the queue is idle it holds nothing.
            drop(batch);
        }
        // `run` hands the rest to the worker.
    }

    /// Blocks until everything submitted so far has completed.
    pub fn wait_idle(&self) {
        let mut state = self.shared.lock();
        let target = state.submitted;
        while state.completed < target && !state.shutdown {
            state.idle_waiters += 1;
            state = self.shared.became_idle.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle_waiters -= 1;
        }
    }

    /// Stops the worker (device destruction). Batches still blocked on waits are dropped.
    pub fn shut_down(&self) {
        self.shared.lock().shutdown = true;
        self.shared.work_ready.notify_all();
        self.shared.became_idle.notify_all();
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            let _ = worker.join();
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shut_down();
    }
}

struct WorkerContext<'a> {
    shared: &'a QueueShared,
}

impl ExecutionContext for WorkerContext<'_> {
    fn wait(&self, wait: &dyn Fn(Deadline) -> WaitOutcome) -> bool {
        loop {
            if wait(Deadline::from_timeout_ns(SHUTDOWN_CHECK_NS)) == WaitOutcome::Ready {
                return true;
            }
            if self.shared.is_shutting_down() {
                return false;
            }
        }
    }
}

/// Batches a submitting thread runs itself. Dropped when it is done, or when a batch panicked
/// (the panicking one then counts as completed, so the queue can still become idle): ends the
/// inline run and hands what is left to the worker, ahead of anything queued meanwhile.
struct InlineRun<'a> {
    shared: &'a QueueShared,
    left: VecDeque<Batch>,
    /// Batches taken out of `left` to run here.
    taken: u64,
}

impl Drop for InlineRun<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.inline = false;
        state.completed += self.taken;
        while let Some(batch) = self.left.pop_back() {
            state.batches.push_front(batch);
        }
        self.shared.release(state, self.taken > 0);
    }
}

/// Commands run on a submitting thread never wait (batches with `vkCmdWaitEvents` stay with the
/// worker); should one, it only polls.
struct InlineContext;

impl ExecutionContext for InlineContext {
    fn wait(&self, wait: &dyn Fn(Deadline) -> WaitOutcome) -> bool {
        wait(Deadline::from_timeout_ns(0)) == WaitOutcome::Ready
    }
}

fn run_worker(shared: &QueueShared) {
    let ctx = WorkerContext { shared };
    let mut finished = false;
    loop {
        let mut batch = {
            let mut state = shared.lock();
            if std::mem::take(&mut finished) {
                state.completed += 1;
                if state.idle_waiters > 0 {
                    shared.became_idle.notify_all();
                }
            }
            loop {
                if state.shutdown {
                    return;
                }
                if !state.inline
                    && let Some(b) = state.batches.pop_front()
                {
                    break b;
                }
                state.worker_waiting = true;
                state = shared.work_ready.wait(state).unwrap_or_else(|e| e.into_inner());
                state.worker_waiting = false;
            }
        };
        if !batch.wait(&ctx) {
            return;
        }
        batch.finish(&ctx);
        // Dropped before it counts as completed: once the queue is idle it holds nothing.
        drop(batch);
        finished = true;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tether_payload::PayloadKind;

    use super::*;

    fn queue() -> Queue {
        Queue::new(
            1,
            0,
            0,
            ash::vk::DeviceQueueCreateFlags::empty(),
            Arc::new(crate::debug::DebugReporter::default()),
        )
        .expect("a queue worker")
    }

    /// A semaphore as a batch sees it: its pending counter and payload.
    struct Sem {
        pending: Arc<PendingWork>,
        payload: Payload,
    }

    impl Sem {
        fn new(kind: PayloadKind) -> Sem {
            Sem {
                pending: Arc::default(),
                payload: Payload::new_private(kind, 0),
            }
        }

        fn wait(&self, what: WaitFor) -> BatchWait {
            BatchWait {
                pending: Arc::clone(&self.pending),
                payload: self.payload.clone(),
                what,
            }
        }

        fn signal(&self, value: Option<u64>) -> BatchSignal {
            BatchSignal {
                pending: Arc::clone(&self.pending),
                payload: self.payload.clone(),
                value,
            }
        }

        fn fence(&self) -> Option<(Arc<PendingWork>, Payload)> {
            Some((Arc::clone(&self.pending), self.payload.clone()))
        }
    }

    /// A batch whose waits hold, on an idle queue, is done when the submit returns.
    #[test]
    fn ready_batches_run_on_the_submitting_thread() {
        let q = queue();
        let (binary, timeline, fence) = (
            Sem::new(PayloadKind::BinarySemaphore),
            Sem::new(PayloadKind::Timeline),
            Sem::new(PayloadKind::Fence),
        );
        timeline.payload.signal_value(5);
        binary.payload.signal();
        q.submit(vec![Batch {
            waits: vec![binary.wait(WaitFor::Consume), timeline.wait(WaitFor::AtLeast(5))],
            signals: vec![timeline.signal(Some(6))],
            fence: fence.fence(),
            ..Batch::default()
        }]);
        assert!(fence.payload.is_signaled());
        assert!(!binary.payload.is_signaled(), "the wait took the binary signal");
        assert_eq!(timeline.payload.value(), 6);
        for s in [&binary, &timeline, &fence] {
            assert!(!s.pending.is_pending());
        }
    }

    /// A batch behind one in flight waits its turn, even with nothing to wait for itself.
    #[test]
    fn no_inline_while_a_batch_is_in_flight() {
        let q = queue();
        let (gate, first, second) = (
            Sem::new(PayloadKind::Timeline),
            Sem::new(PayloadKind::Fence),
            Sem::new(PayloadKind::Fence),
        );
        q.submit(vec![Batch {
            waits: vec![gate.wait(WaitFor::AtLeast(1))],
            fence: first.fence(),
            ..Batch::default()
        }]);
        q.submit(vec![Batch {
            fence: second.fence(),
            ..Batch::default()
        }]);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!first.payload.is_signaled() && !second.payload.is_signaled());
        assert!(gate.pending.is_pending() && first.pending.is_pending() && second.pending.is_pending());
        gate.payload.signal_value(1);
        q.wait_idle();
        assert!(first.payload.is_signaled() && second.payload.is_signaled());
        for s in [&gate, &first, &second] {
            assert!(!s.pending.is_pending());
        }
        // Idle again: the next ready batch runs inline.
        let third = Sem::new(PayloadKind::Fence);
        q.submit(vec![Batch {
            fence: third.fence(),
            ..Batch::default()
        }]);
        assert!(third.payload.is_signaled());
    }

    /// One submit: the batches that can run do, in order; the first that cannot goes to the
    /// worker with what follows, its completed waits not taken again.
    #[test]
    fn the_rest_goes_to_the_worker() {
        let q = queue();
        let (a, b, blocker, c, done) = (
            Sem::new(PayloadKind::BinarySemaphore),
            Sem::new(PayloadKind::BinarySemaphore),
            Sem::new(PayloadKind::BinarySemaphore),
            Sem::new(PayloadKind::Timeline),
            Sem::new(PayloadKind::Fence),
        );
        a.payload.signal();
        q.submit(vec![
            Batch {
                waits: vec![a.wait(WaitFor::Consume)],
                signals: vec![b.signal(None)],
                ..Batch::default()
            },
            Batch {
                // `b` was signaled by the batch before; `blocker` is not signaled yet.
                waits: vec![b.wait(WaitFor::Consume), blocker.wait(WaitFor::Consume)],
                signals: vec![c.signal(Some(1))],
                ..Batch::default()
            },
            Batch {
                fence: done.fence(),
                ..Batch::default()
            },
        ]);
        assert!(!a.payload.is_signaled(), "the first batch ran");
        assert!(!b.payload.is_signaled(), "the second batch took b's signal");
        assert!(
            !b.pending.is_pending(),
            "b's wait completed: only its signal was pending"
        );
        assert!(blocker.pending.is_pending() && c.pending.is_pending() && done.pending.is_pending());
        assert_eq!(c.payload.value(), 0);
        assert!(!done.payload.is_signaled());
        blocker.payload.signal();
        q.wait_idle();
        assert_eq!(c.payload.value(), 1);
        assert!(done.payload.is_signaled());
        assert!(!blocker.payload.is_signaled());
        for s in [&a, &b, &blocker, &c, &done] {
            assert!(!s.pending.is_pending());
        }
    }

    /// Commands that can block stay with the worker.
    #[test]
    fn event_waits_stay_with_the_worker() {
        let q = queue();
        let event = Payload::new_private(PayloadKind::Fence, 0);
        let done = Sem::new(PayloadKind::Fence);
        let commands: Arc<[Command]> = Arc::from(vec![Command::WaitEvents(vec![event.clone()])]);
        q.submit(vec![Batch {
            work: vec![commands],
            fence: done.fence(),
            ..Batch::default()
        }]);
        assert!(!done.payload.is_signaled());
        event.signal();
        q.wait_idle();
        assert!(done.payload.is_signaled());
    }
}

//! `VkQueue`: batches run in submission order on the queue's own worker thread, so a submit
//! never blocks and wait-before-signal works.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tether_payload::{Deadline, Payload, WaitFor, WaitOutcome};

use crate::objects::command::{Command, ExecutionContext};
use crate::sync::fence::Fence;
use crate::sync::semaphore::Semaphore;

/// How long a worker blocks before it checks whether its device is being destroyed.
const SHUTDOWN_CHECK_NS: u64 = 200_000_000;

/// A semaphore wait resolved at submit time (a temporary payload is consumed by it).
pub struct BatchWait {
    pub semaphore: Arc<Semaphore>,
    pub payload: Payload,
    pub what: WaitFor,
}

/// A semaphore signal resolved at submit time: `value` for counters.
pub struct BatchSignal {
    pub semaphore: Arc<Semaphore>,
    pub payload: Payload,
    pub value: Option<u64>,
}

/// One `VkSubmitInfo` (or `VkSubmitInfo2`), plus the submit's fence on the last one.
#[derive(Default)]
pub struct Batch {
    pub waits: Vec<BatchWait>,
    pub work: Vec<Arc<[Command]>>,
    pub signals: Vec<BatchSignal>,
    pub fence: Option<(Arc<Fence>, Payload)>,
}

impl Batch {
    /// Marks every object this batch touches as having pending queue work.
    fn begin_pending(&self) {
        self.waits.iter().for_each(|w| w.semaphore.pending.begin());
        self.signals.iter().for_each(|s| s.semaphore.pending.begin());
        if let Some((fence, _)) = &self.fence {
            fence.pending.begin();
        }
    }
}

struct QueueState {
    batches: VecDeque<Batch>,
    submitted: u64,
    completed: u64,
    shutdown: bool,
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

    /// Queues batches for the worker; never blocks on their waits.
    pub fn submit(&self, batches: Vec<Batch>) {
        if batches.is_empty() {
            return;
        }
        batches.iter().for_each(Batch::begin_pending);
        let mut state = self.shared.lock();
        state.submitted += batches.len() as u64;
        state.batches.extend(batches);
        drop(state);
        self.shared.work_ready.notify_one();
    }

    /// Blocks until everything submitted so far has completed.
    pub fn wait_idle(&self) {
        let mut state = self.shared.lock();
        let target = state.submitted;
        while state.completed < target && !state.shutdown {
            state = self.shared.became_idle.wait(state).unwrap_or_else(|e| e.into_inner());
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

fn run_worker(shared: &QueueShared) {
    let ctx = WorkerContext { shared };
    loop {
        let batch = {
            let mut state = shared.lock();
            loop {
                if state.shutdown {
                    return;
                }
                if let Some(b) = state.batches.pop_front() {
                    break b;
                }
                state = shared.work_ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        if !execute(&batch, &ctx) {
            return;
        }
        let mut state = shared.lock();
        state.completed += 1;
        drop(state);
        shared.became_idle.notify_all();
    }
}

/// Runs one batch: waits, commands, signals, fence. False if the queue shut down meanwhile.
fn execute(batch: &Batch, ctx: &WorkerContext<'_>) -> bool {
    for w in &batch.waits {
        if !ctx.wait(&|deadline| w.payload.wait(w.what, deadline)) {
            return false;
        }
        w.semaphore.pending.end();
    }
    for commands in &batch.work {
        for command in commands.iter() {
            command.execute(ctx);
        }
    }
    // Each object stops being pending before its signal lands: a host thread woken by the
    // signal may reset or resubmit it at once, and must not find it still pending.
    for s in &batch.signals {
        s.semaphore.pending.end();
        match s.value {
            Some(v) => s.payload.signal_value(v),
            None => s.payload.signal(),
        }
    }
    if let Some((fence, payload)) = &batch.fence {
        fence.pending.end();
        payload.signal();
    }
    true
}

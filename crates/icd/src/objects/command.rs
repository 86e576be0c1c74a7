//! Command pools and command buffers: a recorded list of transfer and event commands that a
//! queue worker executes in order.
//!
//! A recorded command keeps what it acts on (a buffer's bound memory range, an event's payload),
//! not the objects themselves: their storage belongs to their handles and is freed when they are
//! destroyed (see `host_memory`), which may happen while a command buffer still holds the command.

use std::sync::{Arc, Mutex};

use ash::vk;

use crate::host_memory::HostAllocator;
use crate::objects::memory::{BoundBuffer, Mapping};
use tether_payload::{Deadline, Payload, WaitFor, WaitOutcome};

pub enum Command {
    CopyBuffer {
        src: BoundBuffer,
        dst: BoundBuffer,
        regions: Vec<vk::BufferCopy>,
    },
    FillBuffer {
        dst: BoundBuffer,
        offset: u64,
        size: u64,
        data: u32,
    },
    UpdateBuffer {
        dst: BoundBuffer,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// An event's payload.
    SetEvent(Payload),
    ResetEvent(Payload),
    WaitEvents(Vec<Payload>),
}

/// What a command needs from the queue that runs it.
pub trait ExecutionContext {
    /// Blocks until the wait is satisfied or the queue is shutting down (false then).
    fn wait(&self, wait: &dyn Fn(Deadline) -> WaitOutcome) -> bool;
}

impl Command {
    /// Runs the command. Bounds were checked at record time and are checked again.
    pub fn execute(&self, ctx: &dyn ExecutionContext) {
        match self {
            Command::CopyBuffer { src, dst, regions } => {
                for r in regions {
                    if let (Some((sm, so)), Some((dm, doff))) =
                        (src.resolve(r.src_offset, r.size), dst.resolve(r.dst_offset, r.size))
                    {
                        Mapping::copy(sm, so, dm, doff, r.size);
                    }
                }
            }
            Command::FillBuffer {
                dst,
                offset,
                size,
                data,
            } => {
                if let Some((m, o)) = dst.resolve(*offset, *size) {
                    m.fill(o, *size, *data);
                }
            }
            Command::UpdateBuffer { dst, offset, bytes } => {
                if let Some((m, o)) = dst.resolve(*offset, bytes.len() as u64) {
                    m.write(o, bytes);
                }
            }
            Command::SetEvent(e) => e.signal(),
            Command::ResetEvent(e) => e.reset(),
            Command::WaitEvents(events) => {
                for e in events {
                    if !ctx.wait(&|deadline| e.wait(WaitFor::Signaled, deadline)) {
                        return;
                    }
                }
            }
        }
    }
}

pub struct CommandPool {
    pub device_id: u64,
    pub flags: vk::CommandPoolCreateFlags,
    /// Where the pool's command buffers' storage comes from (the pool's allocator).
    pub allocator: HostAllocator,
    /// The command buffers allocated from this pool, by address (`HostBox::into_raw`), so
    /// destroying the pool frees them.
    pub buffers: Mutex<Vec<usize>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingState {
    Initial,
    Recording,
    Executable,
    Invalid,
}

pub struct CommandBuffer {
    pub device_id: u64,
    pub pool: u64,
    /// The device's messengers, for record-time validation messages.
    pub debug: Arc<crate::debug::DebugReporter>,
    pub recording: Mutex<Recording>,
}

pub struct Recording {
    pub state: RecordingState,
    pub one_time_submit: bool,
    pub commands: Vec<Command>,
    /// What `vkEndCommandBuffer` froze; submits share it.
    pub recorded: Arc<[Command]>,
    /// Why recording failed (reported by `vkEndCommandBuffer`).
    pub error: Option<vk::Result>,
}

impl CommandBuffer {
    pub fn new(device_id: u64, pool: u64, debug: Arc<crate::debug::DebugReporter>) -> CommandBuffer {
        CommandBuffer {
            device_id,
            pool,
            debug,
            recording: Mutex::new(Recording {
                state: RecordingState::Initial,
                one_time_submit: false,
                commands: Vec::new(),
                recorded: Arc::from(Vec::new()),
                error: None,
            }),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.recording.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a command, or the reason it could not be recorded (reported by
    /// `vkEndCommandBuffer`).
    pub fn record(&self, command: Result<Command, vk::Result>) {
        let mut r = self.lock();
        if r.state != RecordingState::Recording {
            self.debug.validation(
                "VUID-vkCmdCopyBuffer-commandBuffer-recording",
                "the command buffer is not recording",
            );
            return;
        }
        match command {
            Ok(c) => r.commands.push(c),
            Err(e) => r.error = r.error.or(Some(e)),
        }
    }

    pub fn reset(&self) {
        let mut r = self.lock();
        r.state = RecordingState::Initial;
        r.commands.clear();
        r.recorded = Arc::from(Vec::new());
        r.error = None;
    }
}

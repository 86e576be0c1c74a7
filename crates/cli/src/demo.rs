//! `tether demo`: a producer and a consumer on two queues of the tether device.
//!
//! * Timeline hand-off: each round the consumer's submit goes in first and waits for timeline
//!   value N (wait-before-signal); the producer's submit fills a buffer and signals N; the
//!   consumer copies the buffer into a second one and signals a fence. The host checks the fence,
//!   the timeline value and every word of the copy. A host thread meanwhile waits for each value
//!   with `vkWaitSemaphores`.
//! * Binary hand-off: producer queue → binary semaphore → consumer queue → binary semaphore →
//!   producer queue → fence, checked the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ash::vk;
use clap::Args;

use crate::stats::{Summary, human, nanos};
use crate::vulkan::{Choice, TetherDevice};

#[derive(Args)]
pub struct DemoArgs {
    /// Timeline rounds (the binary hand-off runs a third as many).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Bytes per buffer (a multiple of 4, at least 16).
    #[arg(long, default_value_t = 64 * 1024)]
    bytes: u64,
}

/// How long any single wait may take before the demo calls it a failure.
const WAIT_LIMIT: Duration = Duration::from_secs(5);
/// What the host writes into the consumer's buffer before each round.
const POISON: u32 = 0xDEAD_BEEF;
/// The first 16 bytes of the producer's buffer: the round and its complement.
const HEADER_BYTES: u64 = 16;

fn pattern(round: u64) -> u32 {
    (round as u32).wrapping_mul(0x9E37_79B9) ^ 0x5EED_0000
}

fn vk_err(what: &'static str) -> impl Fn(vk::Result) -> String {
    move |e| format!("{what}: {e}")
}

/// Everything the demo creates on the device; destroyed on drop.
struct Resources<'a> {
    td: &'a TetherDevice,
    bytes: u64,
    buffers: Vec<vk::Buffer>,
    memories: Vec<vk::DeviceMemory>,
    src: vk::Buffer,
    dst: vk::Buffer,
    /// The consumer's buffer, mapped.
    dst_map: *mut u32,
    pool: vk::CommandPool,
    producer: vk::CommandBuffer,
    consumer: vk::CommandBuffer,
    fence: vk::Fence,
    timeline: vk::Semaphore,
    to_consumer: vk::Semaphore,
    to_producer: vk::Semaphore,
}

impl<'a> Resources<'a> {
    fn new(td: &'a TetherDevice, bytes: u64) -> Result<Resources<'a>, String> {
        let mut r = Resources {
            td,
            bytes,
            buffers: Vec::new(),
            memories: Vec::new(),
            src: vk::Buffer::null(),
            dst: vk::Buffer::null(),
            dst_map: std::ptr::null_mut(),
            pool: vk::CommandPool::null(),
            producer: vk::CommandBuffer::null(),
            consumer: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            timeline: vk::Semaphore::null(),
            to_consumer: vk::Semaphore::null(),
            to_producer: vk::Semaphore::null(),
        };
        let dev = &td.device;
        let (src, _) = r.buffer()?;
        let (dst, dst_memory) = r.buffer()?;
        r.src = src;
        r.dst = dst;
        // SAFETY: the memory is host visible, unmapped, and `bytes` long.
        r.dst_map = unsafe { dev.map_memory(dst_memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty()) }
            .map_err(vk_err("vkMapMemory"))?
            .cast();
        let pool_info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(td.queue_family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: a valid create info on a live device.
        r.pool = unsafe { dev.create_command_pool(&pool_info, None) }.map_err(vk_err("vkCreateCommandPool"))?;
        let alloc = vk::CommandBufferAllocateInfo::default()
            .command_pool(r.pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(2);
        // SAFETY: a valid allocate info for a live pool.
        let cbs = unsafe { dev.allocate_command_buffers(&alloc) }.map_err(vk_err("vkAllocateCommandBuffers"))?;
        (r.producer, r.consumer) = (cbs[0], cbs[1]);
        r.fence = td.create_fence()?;
        r.timeline = td.create_timeline(0)?;
        r.to_consumer = td.create_binary()?;
        r.to_producer = td.create_binary()?;
        r.record_consumer()?;
        Ok(r)
    }

    /// A transfer buffer of `bytes` bound to its own host-visible memory.
    fn buffer(&mut self) -> Result<(vk::Buffer, vk::DeviceMemory), String> {
        let dev = &self.td.device;
        let info = vk::BufferCreateInfo::default()
            .size(self.bytes)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: a valid create info on a live device.
        let buffer = unsafe { dev.create_buffer(&info, None) }.map_err(vk_err("vkCreateBuffer"))?;
        self.buffers.push(buffer);
        // SAFETY: a live buffer of this device.
        let req = unsafe { dev.get_buffer_memory_requirements(buffer) };
        let memory_type = self
            .td
            .host_memory_type(req.memory_type_bits)
            .ok_or("no host-visible, coherent memory type for a buffer")?;
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(memory_type);
        // SAFETY: a valid allocate info on a live device.
        let memory = unsafe { dev.allocate_memory(&alloc, None) }.map_err(vk_err("vkAllocateMemory"))?;
        self.memories.push(memory);
        // SAFETY: the memory is fresh, of a type the buffer accepts, and large enough.
        unsafe { dev.bind_buffer_memory(buffer, memory, 0) }.map_err(vk_err("vkBindBufferMemory"))?;
        Ok((buffer, memory))
    }

    /// The consumer: copy the producer's buffer into the host's, then make it visible to the host.
    fn record_consumer(&self) -> Result<(), String> {
        let dev = &self.td.device;
        let cb = self.consumer;
        let region = [vk::BufferCopy::default().size(self.bytes)];
        let to_host = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ)];
        // SAFETY: a freshly allocated command buffer, recorded once with valid commands on live
        // buffers.
        unsafe {
            dev.begin_command_buffer(cb, &vk::CommandBufferBeginInfo::default())
                .map_err(vk_err("vkBeginCommandBuffer"))?;
            dev.cmd_copy_buffer(cb, self.src, self.dst, &region);
            dev.cmd_pipeline_barrier(
                cb,
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &to_host,
                &[],
                &[],
            );
            dev.end_command_buffer(cb).map_err(vk_err("vkEndCommandBuffer"))
        }
    }

    /// The producer for one round: fill the buffer with the round's pattern after a header that
    /// names the round. Called only while the previous recording is no longer pending.
    fn record_producer(&self, round: u64) -> Result<(), String> {
        let dev = &self.td.device;
        let cb = self.producer;
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(&round.to_ne_bytes());
        header[8..].copy_from_slice(&(!round).to_ne_bytes());
        // SAFETY: the command buffer is not pending (the host waited for the round that used it),
        // and every command is valid on live buffers.
        unsafe {
            dev.reset_command_buffer(cb, vk::CommandBufferResetFlags::empty())
                .map_err(vk_err("vkResetCommandBuffer"))?;
            let begin = vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
            dev.begin_command_buffer(cb, &begin)
                .map_err(vk_err("vkBeginCommandBuffer"))?;
            dev.cmd_fill_buffer(cb, self.src, HEADER_BYTES, self.bytes - HEADER_BYTES, pattern(round));
            dev.cmd_update_buffer(cb, self.src, 0, &header);
            dev.end_command_buffer(cb).map_err(vk_err("vkEndCommandBuffer"))
        }
    }

    fn words(&self) -> usize {
        (self.bytes / 4) as usize
    }

    /// Fills the consumer's buffer with [`POISON`], so a copy that did not happen shows.
    fn poison(&self) {
        // SAFETY: the mapping is `bytes` long and no device work touches it between rounds.
        unsafe { std::slice::from_raw_parts_mut(self.dst_map, self.words()) }.fill(POISON);
    }

    /// Checks the consumer's buffer after round `round`: the header and every word after it.
    fn check_copy(&self, round: u64, report: &mut Report) {
        // SAFETY: the mapping is `bytes` long; the fence wait made the device's writes visible.
        let words = unsafe { std::slice::from_raw_parts(self.dst_map, self.words()) };
        let header = |i: usize| u64::from(words[2 * i]) | (u64::from(words[2 * i + 1]) << 32);
        let (got_round, got_not) = if cfg!(target_endian = "little") {
            (header(0), header(1))
        } else {
            (header(0).rotate_left(32), header(1).rotate_left(32))
        };
        report.check(got_round == round && got_not == !round, || {
            format!("round {round}: header says round {got_round} (complement {got_not:#x})")
        });
        let want = pattern(round);
        let body = &words[(HEADER_BYTES / 4) as usize..];
        let bad = body.iter().filter(|&&w| w != want).count();
        report.checked += body.len() as u64 - 1;
        report.check(bad == 0, || {
            let first = body.iter().position(|&w| w != want).unwrap_or(0);
            format!(
                "round {round}: {bad} of {} words wrong, first at word {}: {:#010x}, expected {want:#010x}",
                body.len(),
                first + (HEADER_BYTES / 4) as usize,
                body[first]
            )
        });
    }

    fn fence_status(&self) -> Result<bool, String> {
        // SAFETY: a live fence of this device.
        unsafe { self.td.device.get_fence_status(self.fence) }.map_err(vk_err("vkGetFenceStatus"))
    }

    fn counter(&self) -> Result<u64, String> {
        // SAFETY: a live timeline semaphore of this device.
        unsafe { self.td.device.get_semaphore_counter_value(self.timeline) }
            .map_err(vk_err("vkGetSemaphoreCounterValue"))
    }

    /// Waits for the round's fence (a timeout is an error), checks and resets it.
    fn finish_round(&self, round: u64, report: &mut Report) -> Result<(), String> {
        let dev = &self.td.device;
        // SAFETY: a live fence of this device.
        match unsafe { dev.wait_for_fences(&[self.fence], true, nanos(WAIT_LIMIT)) } {
            Ok(()) => {}
            Err(vk::Result::TIMEOUT) => {
                return Err(format!(
                    "round {round}: the fence was not signaled within {WAIT_LIMIT:?}"
                ));
            }
            Err(e) => return Err(format!("round {round}: vkWaitForFences: {e}")),
        }
        let signaled = self.fence_status()?;
        report.check(signaled, || {
            format!("round {round}: vkGetFenceStatus says unsignaled after the wait")
        });
        // SAFETY: the fence is signaled and not pending.
        unsafe { dev.reset_fences(&[self.fence]) }.map_err(vk_err("vkResetFences"))?;
        let signaled = self.fence_status()?;
        report.check(!signaled, || {
            format!("round {round}: vkGetFenceStatus says signaled after vkResetFences")
        });
        Ok(())
    }
}

impl Drop for Resources<'_> {
    fn drop(&mut self) {
        let dev = &self.td.device;
        // SAFETY: the device is idle after the wait; each object is destroyed once and was
        // created from this device (null handles are ignored).
        unsafe {
            let _ = dev.device_wait_idle();
            dev.destroy_command_pool(self.pool, None);
            for s in [self.timeline, self.to_consumer, self.to_producer] {
                dev.destroy_semaphore(s, None);
            }
            dev.destroy_fence(self.fence, None);
            for &b in &self.buffers {
                dev.destroy_buffer(b, None);
            }
            for &m in &self.memories {
                dev.free_memory(m, None);
            }
        }
    }
}

/// One `vkQueueSubmit` of one batch; values apply to timeline semaphores only.
fn submit(
    td: &TetherDevice,
    queue: vk::Queue,
    waits: &[(vk::Semaphore, u64)],
    command_buffers: &[vk::CommandBuffer],
    signals: &[(vk::Semaphore, u64)],
    fence: vk::Fence,
) -> Result<(), String> {
    let wait_semaphores: Vec<_> = waits.iter().map(|w| w.0).collect();
    let wait_values: Vec<_> = waits.iter().map(|w| w.1).collect();
    let stages = vec![vk::PipelineStageFlags::TRANSFER; waits.len()];
    let signal_semaphores: Vec<_> = signals.iter().map(|s| s.0).collect();
    let signal_values: Vec<_> = signals.iter().map(|s| s.1).collect();
    let mut values = vk::TimelineSemaphoreSubmitInfo::default()
        .wait_semaphore_values(&wait_values)
        .signal_semaphore_values(&signal_values);
    let info = vk::SubmitInfo::default()
        .wait_semaphores(&wait_semaphores)
        .wait_dst_stage_mask(&stages)
        .command_buffers(command_buffers)
        .signal_semaphores(&signal_semaphores)
        .push_next(&mut values);
    // SAFETY: every handle is a live object of this device; command buffers are executable and
    // not pending; binary waits have their signal submitted earlier.
    unsafe { td.device.queue_submit(queue, &[info], fence) }.map_err(vk_err("vkQueueSubmit"))
}

#[derive(Default)]
struct Report {
    checked: u64,
    mismatches: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            let what = what();
            if self.mismatches.len() < 10 {
                eprintln!("MISMATCH: {what}");
            }
            self.mismatches.push(what);
        }
    }
}

/// What the host watcher thread saw.
struct Watch {
    wakes: u64,
    last: u64,
}

/// Waits for every value `1..=rounds` of the timeline in turn, checking what each wake reports.
fn watch(dev: &ash::Device, timeline: vk::Semaphore, rounds: u64, stop: &AtomicBool) -> Result<Watch, String> {
    let mut next = 1;
    let mut wakes = 0;
    let mut waited = Duration::ZERO;
    while next <= rounds {
        let semaphores = [timeline];
        let values = [next];
        let info = vk::SemaphoreWaitInfo::default().semaphores(&semaphores).values(&values);
        let slice = Duration::from_millis(100);
        // SAFETY: a live timeline semaphore of this device.
        match unsafe { dev.wait_semaphores(&info, nanos(slice)) } {
            Ok(()) => {
                wakes += 1;
                waited = Duration::ZERO;
                // SAFETY: a live timeline semaphore of this device.
                let value = unsafe { dev.get_semaphore_counter_value(timeline) }
                    .map_err(vk_err("watcher: vkGetSemaphoreCounterValue"))?;
                if value < next || value > rounds {
                    return Err(format!("watcher: woke for value {next} but the counter is {value}"));
                }
                next = value + 1;
            }
            Err(vk::Result::TIMEOUT) => {
                waited += slice;
                if stop.load(Ordering::Relaxed) {
                    return Ok(Watch { wakes, last: next - 1 });
                }
                if waited >= WAIT_LIMIT {
                    return Err(format!("watcher: value {next} not reached within {WAIT_LIMIT:?}"));
                }
            }
            Err(e) => return Err(format!("watcher: vkWaitSemaphores: {e}")),
        }
    }
    Ok(Watch { wakes, last: rounds })
}

/// The timeline rounds; returns the round-trip latencies.
fn timeline_rounds(r: &Resources<'_>, rounds: u64, report: &mut Report) -> Result<(Vec<u64>, Watch), String> {
    let [producer_q, consumer_q] = r.td.queues;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (device, timeline, stop) = (&r.td.device, r.timeline, &stop);
        let watcher = scope.spawn(move || watch(device, timeline, rounds, stop));
        let main = (|| {
            let mut latencies = Vec::with_capacity(rounds as usize);
            for round in 1..=rounds {
                r.poison();
                r.record_producer(round)?;
                let start = Instant::now();
                let consume = || submit(r.td, consumer_q, &[(r.timeline, round)], &[r.consumer], &[], r.fence);
                let produce = || {
                    submit(
                        r.td,
                        producer_q,
                        &[],
                        &[r.producer],
                        &[(r.timeline, round)],
                        vk::Fence::null(),
                    )
                };
                if r.td.distinct_queues {
                    // The consumer goes first: its wait is submitted before the signal exists.
                    consume()?;
                    produce()?;
                } else {
                    // One queue runs its batches in order: the signal has to be ahead of the wait.
                    produce()?;
                    consume()?;
                }
                let finished = r.finish_round(round, report);
                latencies.push(nanos(start.elapsed()));
                finished?;
                let value = r.counter()?;
                report.check(value == round, || {
                    format!("round {round}: the timeline's counter is {value}")
                });
                r.check_copy(round, report);
            }
            Ok::<_, String>(latencies)
        })();
        stop.store(true, Ordering::Relaxed);
        let watched = watcher.join().map_err(|_| "the watcher thread panicked".to_string())?;
        let latencies = main?;
        let watched = watched?;
        report.check(watched.last == rounds, || {
            format!("watcher: stopped at value {} of {rounds}", watched.last)
        });
        Ok((latencies, watched))
    })
}

/// The binary rounds: producer queue → consumer queue → producer queue → fence.
fn binary_rounds(r: &Resources<'_>, rounds: u64, report: &mut Report) -> Result<Vec<u64>, String> {
    let [producer_q, consumer_q] = r.td.queues;
    let mut latencies = Vec::with_capacity(rounds as usize);
    for i in 1..=rounds {
        let round = 1_000_000 + i;
        r.poison();
        r.record_producer(round)?;
        let start = Instant::now();
        submit(
            r.td,
            producer_q,
            &[],
            &[r.producer],
            &[(r.to_consumer, 0)],
            vk::Fence::null(),
        )?;
        submit(
            r.td,
            consumer_q,
            &[(r.to_consumer, 0)],
            &[r.consumer],
            &[(r.to_producer, 0)],
            vk::Fence::null(),
        )?;
        submit(r.td, producer_q, &[(r.to_producer, 0)], &[], &[], r.fence)?;
        let finished = r.finish_round(round, report);
        latencies.push(nanos(start.elapsed()));
        finished?;
        r.check_copy(round, report);
    }
    Ok(latencies)
}

fn latency_line(latencies: &mut [u64]) -> String {
    match Summary::of(latencies) {
        Some(s) => format!(
            "p50 {}, p90 {}, p99 {}, max {}",
            human(s.p50),
            human(s.p90),
            human(s.p99),
            human(s.max)
        ),
        None => "no samples".to_string(),
    }
}

pub fn run(choice: Choice, args: &DemoArgs) -> Result<(), String> {
    if args.bytes < 2 * HEADER_BYTES || args.bytes % 4 != 0 {
        return Err(format!(
            "--bytes must be a multiple of 4, at least {}",
            2 * HEADER_BYTES
        ));
    }
    let td = TetherDevice::open(choice)?;
    say!("tether demo: Vulkan from {}", td.vulkan.describe());
    say!(
        "device: {}, queue family {}, {}",
        tether_icd::objects::physical_device::DEVICE_NAME,
        td.queue_family,
        if td.distinct_queues {
            "producer on queue 0, consumer on queue 1"
        } else {
            "one queue only: producer and consumer share it"
        }
    );
    let r = Resources::new(&td, args.bytes)?;
    let mut report = Report::default();
    match exchange(&r, u64::from(args.rounds), &mut report) {
        Ok(()) => {}
        Err(e) => {
            // Work may still be pending on a value that will never come: tearing the device down
            // could wait forever, so leave without it.
            eprintln!("tether: {e}");
            std::process::exit(1);
        }
    }
    drop(r);

    say!();
    if report.mismatches.is_empty() {
        say!("OK: {} values checked, no mismatch", report.checked);
        Ok(())
    } else {
        Err(format!(
            "{} of {} checks failed (first: {})",
            report.mismatches.len(),
            report.checked,
            report.mismatches[0]
        ))
    }
}

/// Both hand-offs, printing as they finish.
fn exchange(r: &Resources<'_>, rounds: u64, report: &mut Report) -> Result<(), String> {
    let bytes = r.bytes;

    say!(
        "\ntimeline hand-off: {rounds} rounds of {} KiB; each round the consumer's submit (wait value N, copy, \
         signal fence) goes in before the producer's (fill, signal value N)",
        bytes / 1024
    );
    let (mut latencies, watched) = timeline_rounds(r, rounds, report)?;
    say!("  values 1..={rounds} reached; every copy, counter value and fence checked");
    say!(
        "  host watcher thread (vkWaitSemaphores on each value in turn): reached {}, {} wakes",
        watched.last,
        watched.wakes
    );
    say!(
        "  round trip, first submit → fence wait returns: {}",
        latency_line(&mut latencies)
    );

    let binary = rounds.div_ceil(3);
    say!(
        "\nbinary hand-off: {binary} rounds of producer queue → binary semaphore → consumer queue → binary \
         semaphore → producer queue → fence"
    );
    let mut latencies = binary_rounds(r, binary, report)?;
    say!("  every copy and fence checked");
    say!(
        "  round trip, first submit → fence wait returns: {}",
        latency_line(&mut latencies)
    );
    Ok(())
}

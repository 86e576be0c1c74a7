//! `tether bench`: wake-up latencies of the tether device next to a raw futex ping-pong, measured
//! in the same run.
//!
//! Each measurement is one entry of [`MEASUREMENTS`]: a function that runs `plan.total()`
//! iterations and returns one sample (ns) per iteration; the first `plan.warmup` are dropped.
//! New measurements (export/import latency, cross-process wake) are new entries.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ash::vk;
use clap::Args;
use rustix::thread::futex;

use crate::stats::{Summary, nanos};
use crate::vulkan::{self, Choice, TetherDevice};

#[derive(Args)]
pub struct BenchArgs {
    /// Measured iterations per measurement.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    iters: u32,
    /// Iterations run first and not counted.
    #[arg(long, default_value_t = 2_000)]
    warmup: u32,
    /// One JSON object per line and measurement: {"name","p50_ns","p99_ns","baseline","ratio"}.
    #[arg(long)]
    json: bool,
    /// Run only the measurements whose name contains this (the baseline always runs).
    #[arg(long)]
    only: Option<String>,
    /// Run every thread, the driver's queue workers included, on this one CPU: steadier numbers
    /// on a busy or virtual machine, where a wake-up across CPUs costs what the scheduler decides.
    #[arg(long, value_name = "CPU")]
    pin: Option<usize>,
}

/// Pins the calling thread, and so every thread it creates later, to one CPU.
fn pin_to(cpu: usize) -> Result<(), String> {
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return Err(format!("--pin {cpu}: no such CPU"));
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("--pin {cpu}: {e}"))
}

/// How many iterations to run.
pub struct Plan {
    pub iters: usize,
    pub warmup: usize,
}

impl Plan {
    pub fn total(&self) -> usize {
        self.iters + self.warmup
    }
}

/// What a measurement runs on.
pub struct Context<'a> {
    /// The tether device, for measurements with `needs_device`.
    pub device: Option<&'a TetherDevice>,
    pub plan: &'a Plan,
}

impl Context<'_> {
    fn device(&self) -> Result<&TetherDevice, String> {
        self.device.ok_or_else(|| "no device opened".to_string())
    }
}

/// One measurement.
pub struct Measurement {
    /// Stable name, used in `--json` output and by `--only`.
    pub name: &'static str,
    /// One line for people.
    pub what: &'static str,
    pub needs_device: bool,
    /// Runs `plan.total()` iterations and returns one sample (ns) each.
    pub run: fn(&Context<'_>) -> Result<Vec<u64>, String>,
}

/// The measurement every other is compared with.
pub const BASELINE: &str = "futex_pingpong";

pub const MEASUREMENTS: &[Measurement] = &[
    Measurement {
        name: BASELINE,
        what: "baseline: raw futex ping-pong between two threads (round trip)",
        needs_device: false,
        run: futex_pingpong,
    },
    Measurement {
        name: "fence_submit_wait",
        what: "empty vkQueueSubmit signaling a fence -> vkWaitForFences returns",
        needs_device: true,
        run: fence_submit_wait,
    },
    Measurement {
        name: "timeline_host_pingpong",
        what: "vkSignalSemaphore -> vkWaitSemaphores in another thread, and back (round trip)",
        needs_device: true,
        run: timeline_host_pingpong,
    },
];

/// How long a single wait may take before a measurement fails.
const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// A futex word on its own cache line.
#[repr(align(64))]
struct Word(AtomicU32);

impl Word {
    fn set(&self, value: u32) {
        self.0.store(value, Ordering::Release);
        let _ = futex::wake(&self.0, futex::Flags::PRIVATE, 1);
    }

    fn wait_for(&self, value: u32) {
        loop {
            let current = self.0.load(Ordering::Acquire);
            if current == value {
                return;
            }
            // EAGAIN (the word changed) and EINTR just loop.
            let _ = futex::wait(&self.0, futex::Flags::PRIVATE, current, None);
        }
    }
}

/// Two threads, two futex words: the main thread sets `ping` and waits for `pong`, the other
/// waits for `ping` and sets `pong`. Blocks in the kernel every time (no spinning).
fn futex_pingpong(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let total = u32::try_from(cx.plan.total()).map_err(|_| "too many iterations")?;
    let (ping, pong) = (Word(AtomicU32::new(0)), Word(AtomicU32::new(0)));
    let mut samples = Vec::with_capacity(total as usize);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 1..=total {
                ping.wait_for(i);
                pong.set(i);
            }
        });
        for i in 1..=total {
            let start = Instant::now();
            ping.set(i);
            pong.wait_for(i);
            samples.push(nanos(start.elapsed()));
        }
    });
    Ok(samples)
}

/// Submit nothing but a fence, wait for it on the host, reset it (not timed).
fn fence_submit_wait(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let dev = &td.device;
    let fence = td.create_fence()?;
    let mut samples = Vec::with_capacity(cx.plan.total());
    let result = (|| {
        for _ in 0..cx.plan.total() {
            let start = Instant::now();
            // SAFETY: a live queue and an unsignaled, unpending fence of this device.
            unsafe { dev.queue_submit(td.queues[0], &[], fence) }.map_err(|e| format!("vkQueueSubmit: {e}"))?;
            // SAFETY: a live fence of this device.
            unsafe { dev.wait_for_fences(&[fence], true, nanos(WAIT_LIMIT)) }
                .map_err(|e| format!("vkWaitForFences: {e}"))?;
            samples.push(nanos(start.elapsed()));
            // SAFETY: the fence is signaled and no longer pending.
            unsafe { dev.reset_fences(&[fence]) }.map_err(|e| format!("vkResetFences: {e}"))?;
        }
        Ok(())
    })();
    // SAFETY: no work is pending on the fence (every submit's fence was waited for), or the
    // device is idle after a failure.
    unsafe {
        let _ = dev.device_wait_idle();
        dev.destroy_fence(fence, None);
    }
    result.map(|()| samples)
}

fn host_signal(dev: &ash::Device, semaphore: vk::Semaphore, value: u64) -> Result<(), String> {
    let info = vk::SemaphoreSignalInfo::default().semaphore(semaphore).value(value);
    // SAFETY: a live timeline semaphore of this device, signaled with a larger value.
    unsafe { dev.signal_semaphore(&info) }.map_err(|e| format!("vkSignalSemaphore: {e}"))
}

fn host_wait(dev: &ash::Device, semaphore: vk::Semaphore, value: u64) -> Result<(), String> {
    let semaphores = [semaphore];
    let values = [value];
    let info = vk::SemaphoreWaitInfo::default().semaphores(&semaphores).values(&values);
    // SAFETY: a live timeline semaphore of this device.
    unsafe { dev.wait_semaphores(&info, nanos(WAIT_LIMIT)) }.map_err(|e| format!("vkWaitSemaphores({value}): {e}"))
}

/// Two timeline semaphores, two threads: the main thread signals `ping` = i and waits for
/// `pong` >= i; the other waits for `ping` >= i and signals `pong` = i.
fn timeline_host_pingpong(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let dev = &td.device;
    let ping = td.create_timeline(0)?;
    let pong = match td.create_timeline(0) {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: unused, just created.
            unsafe { dev.destroy_semaphore(ping, None) };
            return Err(e);
        }
    };
    let total = cx.plan.total() as u64;
    let result = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            for i in 1..=total {
                host_wait(dev, ping, i)?;
                host_signal(dev, pong, i)?;
            }
            Ok::<(), String>(())
        });
        let mut samples = Vec::with_capacity(total as usize);
        let main = (|| {
            for i in 1..=total {
                let start = Instant::now();
                host_signal(dev, ping, i)?;
                host_wait(dev, pong, i)?;
                samples.push(nanos(start.elapsed()));
            }
            Ok::<(), String>(())
        })();
        let other = other.join().map_err(|_| "the ping-pong thread panicked".to_string())?;
        main.and(other).map(|()| samples)
    });
    // SAFETY: both threads are done with the semaphores; no queue work uses them.
    unsafe {
        dev.destroy_semaphore(ping, None);
        dev.destroy_semaphore(pong, None);
    }
    result
}

/// One measurement's result.
pub struct Outcome {
    pub name: &'static str,
    pub what: &'static str,
    pub summary: Summary,
}

/// Escapes a string for JSON.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `p50 / baseline p50`.
fn ratio(outcome: &Outcome, baseline: &Outcome) -> f64 {
    outcome.summary.p50 as f64 / baseline.summary.p50.max(1) as f64
}

pub fn json_line(outcome: &Outcome, baseline: &Outcome) -> String {
    format!(
        "{{\"name\":{},\"p50_ns\":{},\"p99_ns\":{},\"baseline\":{},\"ratio\":{:.3}}}",
        json_string(outcome.name),
        outcome.summary.p50,
        outcome.summary.p99,
        json_string(baseline.name),
        ratio(outcome, baseline)
    )
}

pub fn run(choice: Choice, args: &BenchArgs) -> Result<(), String> {
    if args.json {
        vulkan::set_notices_to_stderr();
    }
    if let Some(cpu) = args.pin {
        // Before the device exists, so its queue worker threads inherit the affinity.
        pin_to(cpu)?;
    }
    let plan = Plan {
        iters: args.iters as usize,
        warmup: args.warmup as usize,
    };
    let selected: Vec<&Measurement> = MEASUREMENTS
        .iter()
        .filter(|m| m.name == BASELINE || args.only.as_deref().is_none_or(|o| m.name.contains(o)))
        .collect();
    let device = if selected.iter().any(|m| m.needs_device) {
        Some(TetherDevice::open(choice)?)
    } else {
        None
    };
    if !args.json {
        say!(
            "tether bench: {} iterations after {} warm-up each; {}; Vulkan from {}",
            plan.iters,
            plan.warmup,
            args.pin
                .map_or("threads unpinned".to_string(), |c| format!("every thread on CPU {c}")),
            device
                .as_ref()
                .map_or("(not used)".to_string(), |d| d.vulkan.describe())
        );
    }
    let cx = Context {
        device: device.as_ref(),
        plan: &plan,
    };
    let mut outcomes = Vec::new();
    for m in selected {
        let mut samples = (m.run)(&cx).map_err(|e| format!("{}: {e}", m.name))?;
        let mut measured = samples.split_off(plan.warmup.min(samples.len()));
        let summary = Summary::of(&mut measured).ok_or_else(|| format!("{}: no samples", m.name))?;
        outcomes.push(Outcome {
            name: m.name,
            what: m.what,
            summary,
        });
    }
    let baseline = outcomes
        .iter()
        .find(|o| o.name == BASELINE)
        .ok_or("the baseline did not run")?;
    if args.json {
        for o in &outcomes {
            say!("{}", json_line(o, baseline));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.name.to_string(),
                o.summary.p50.to_string(),
                o.summary.p99.to_string(),
                format!("{:.2}", ratio(o, baseline)),
                o.what.to_string(),
            ]
        })
        .collect();
    say!();
    say!(
        "{}",
        crate::table::format(&["measurement", "p50 ns", "p99 ns", "p50 / baseline", "what"], &rows).trim_end()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let o = |name, p50, p99| Outcome {
            name,
            what: "",
            summary: Summary {
                count: 1,
                p50,
                p90: p99,
                p99,
                max: p99,
            },
        };
        let base = o(BASELINE, 4000, 9000);
        assert_eq!(
            json_line(&o("x\"y", 5000, 12000), &base),
            r#"{"name":"x\"y","p50_ns":5000,"p99_ns":12000,"baseline":"futex_pingpong","ratio":1.250}"#
        );
    }

    #[test]
    fn futex_baseline_runs() {
        let plan = Plan { iters: 200, warmup: 10 };
        let samples = futex_pingpong(&Context {
            device: None,
            plan: &plan,
        })
        .unwrap();
        assert_eq!(samples.len(), 210);
    }
}

//! `tether bench`: wake-up, wait-any, export and import latencies and memory of the tether
//! device, each next to a baseline measured in the same run.
//!
//! Each measurement is one entry of [`MEASUREMENTS`]: a [`Run::Latency`] function runs
//! `plan.total()` iterations and returns one sample (ns) per iteration, the first `plan.warmup`
//! being dropped; a [`Run::Report`] function (the scale measurements, in `bench_scale.rs`) does its
//! own warm-up and returns its samples plus named values (memory, CPU time, counts). Every entry
//! names its baseline, itself an entry (a baseline names itself):
//!
//! * `futex_pingpong`: two threads, two futex words: for wake-ups within a process;
//! * `futex_pingpong_xproc`: the same between two processes over a shared memfd page: for
//!   wake-ups across processes;
//! * `fence_wait_one`, `fence_wait_one_private`: a blocked `vkWaitForFences` on one fence until
//!   another process (thread) signals it: for wait-any over many fences;
//! * `wake_1_waiter`: one thread of another process woken from `vkWaitSemaphores`: for many
//!   waiters on one payload;
//! * `dup_close`: `fcntl(F_DUPFD_CLOEXEC)` + `close`: for fd exports and repeated imports (which
//!   reuse the mapping);
//! * `mmap_munmap_memfd`: mapping a 4 KiB memfd page, reading it, unmapping it: for first
//!   imports (a new mapping);
//! * `broker_ping`: a request/reply with `tether-broker`: for KMT and name exports.
//!
//! The cross-process measurements run their other side in a child process, a re-exec of this
//! binary (`tether bench-child`), which gets its fds by inheritance (or over a Unix socket).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ash::vk;
use clap::{Args, ValueEnum};
use rustix::thread::futex;

#[path = "bench_scale.rs"]
mod scale;

use crate::external::SemaphoreKind;
use crate::peer::{ParentLink, Peer, inheritable, parse_list, pin_to};
use crate::stats::{Summary, nanos};
use crate::vulkan::{self, Choice, TetherDevice};
use tether::{ExportOptions, HandleType, HandleTypes};

#[derive(Args)]
pub struct BenchArgs {
    /// Measured iterations of every measurement (default: each measurement's own count, in the
    /// table's "n" column).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    iters: Option<u32>,
    /// Iterations run first and not counted (default: a tenth of the measured ones).
    #[arg(long)]
    warmup: Option<u32>,
    /// One JSON object per line and measurement: {"name","p50_ns","p99_ns","baseline","ratio"}.
    #[arg(long)]
    json: bool,
    /// Run only the measurements whose name contains this (and their baselines).
    #[arg(long)]
    only: Option<String>,
    /// Run every thread and process, the driver's queue workers and the child processes
    /// included, on this one CPU: steadier numbers on a busy or virtual machine, where a wake-up
    /// across CPUs costs what the scheduler decides.
    #[arg(long, value_name = "CPU")]
    pin: Option<usize>,
    /// A smoke test (CI): a tenth of every count, and smaller scales (1,000 semaphores instead
    /// of 10,000, two waiter processes instead of eight, 50 ms blocked waits instead of 200 ms).
    #[arg(long)]
    quick: bool,
}

/// Which side of a cross-process measurement a child plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PeerKind {
    /// Futex ping-pong on an inherited memfd page.
    Futex,
    /// Timeline ping-pong on two imported timeline semaphores.
    Timeline,
    /// Binary semaphore hand-off through queue submits.
    Binary,
    /// Signals an imported fence through a submit whenever a futex word says so.
    Fence,
    /// Imports many timeline semaphores sent over a socket; round trips; reports memory.
    Semaphores,
    /// Threads waiting on one imported timeline semaphore, round after round.
    Waiters,
}

/// How the child imports its semaphores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportAs {
    /// `vkImportSemaphoreWin32HandleKHR`, OPAQUE_WIN32 (an inherited NT handle).
    Nt,
    /// `vkImportSemaphoreFdKHR`, OPAQUE_FD (an inherited fd).
    Fd,
}

/// A benchmark's child process (`tether bench-child`).
#[derive(Args)]
pub struct ChildArgs {
    #[arg(value_enum)]
    kind: PeerKind,
    /// Iterations to play.
    #[arg(long)]
    count: u64,
    /// Inherited fds or NT handles: A,B.
    #[arg(long)]
    handles: String,
    #[arg(long, value_enum, default_value = "nt")]
    import: ImportAs,
    /// Waiter threads (`waiters`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// How many iterations to run.
#[derive(Clone, Copy)]
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
    /// The tether device, for measurements that need it.
    pub device: Option<&'a TetherDevice>,
    pub plan: Plan,
    /// `--quick`: smaller scales (fewer semaphores, processes, shorter blocked waits).
    pub quick: bool,
}

impl Context<'_> {
    fn device(&self) -> Result<&TetherDevice, String> {
        self.device.ok_or_else(|| "no device opened".to_string())
    }
}

/// What a measurement needs besides the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    Device,
    /// The device and a running `tether-broker`.
    Broker,
}

/// One measurement.
pub struct Measurement {
    /// Stable name, used in `--json` output and by `--only`.
    pub name: &'static str,
    /// One line for people.
    pub what: &'static str,
    /// The measurement it is compared with (itself for a baseline).
    pub baseline: &'static str,
    pub needs: Needs,
    /// Default measured iterations (`--iters` overrides).
    pub iters: usize,
    pub run: Run,
}

/// How a measurement runs and what it gives.
#[derive(Clone, Copy)]
pub enum Run {
    /// Runs `plan.total()` iterations and returns one sample (ns) each; the first `plan.warmup`
    /// are dropped.
    Latency(fn(&Context<'_>) -> Result<Vec<u64>, String>),
    /// Does its own warm-up and returns only measured samples (ns), plus named values (memory,
    /// CPU time, counts) that the table and the JSON line show.
    Report(fn(&Context<'_>) -> Result<Report, String>),
}

/// What a [`Run::Report`] measurement gives.
pub struct Report {
    /// Measured samples in ns (no warm-up).
    pub samples: Vec<u64>,
    pub values: Vec<Value>,
}

/// A named number a measurement reports besides its latency percentiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Value {
    /// Stable name, the key in the JSON line's `values` object.
    pub name: &'static str,
    pub value: f64,
    /// For people: `B`, `%`, `ms`, or empty for a count.
    pub unit: &'static str,
}

impl Value {
    pub fn new(name: &'static str, value: f64, unit: &'static str) -> Value {
        Value { name, value, unit }
    }

    /// `name=value unit` for the table.
    fn show(&self) -> String {
        let number = if self.value.fract() == 0.0 && self.value.abs() < 1e15 {
            format!("{}", self.value as i64)
        } else if self.value.abs() >= 100.0 {
            format!("{:.0}", self.value)
        } else {
            format!("{:.3}", self.value)
        };
        match self.unit {
            "" => format!("{}={number}", self.name),
            unit => format!("{}={number} {unit}", self.name),
        }
    }
}

const FUTEX: &str = "futex_pingpong";
const FUTEX_XPROC: &str = "futex_pingpong_xproc";
const DUP: &str = "dup_close";
const MMAP: &str = "mmap_munmap_memfd";
const BROKER: &str = "broker_ping";
const FENCE_ONE: &str = "fence_wait_one";
const FENCE_ONE_PRIVATE: &str = "fence_wait_one_private";
const WAKE_ONE: &str = "wake_1_waiter";

pub const MEASUREMENTS: &[Measurement] = &[
    Measurement {
        name: FUTEX,
        what: "baseline: raw futex ping-pong between two threads (round trip)",
        baseline: FUTEX,
        needs: Needs::Nothing,
        iters: 20_000,
        run: Run::Latency(futex_pingpong),
    },
    Measurement {
        name: "fence_submit_wait",
        what: "empty vkQueueSubmit signaling a fence -> vkWaitForFences returns",
        baseline: FUTEX,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(fence_submit_wait),
    },
    Measurement {
        name: "fence_submit_wait_worker",
        what: "vkQueueSubmit of a batch waiting a timeline, signaling a fence; vkSignalSemaphore frees it on the queue's \
               worker -> vkWaitForFences returns",
        baseline: FUTEX,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(fence_submit_wait_worker),
    },
    Measurement {
        name: "timeline_host_pingpong",
        what: "vkSignalSemaphore -> vkWaitSemaphores in another thread, and back (round trip)",
        baseline: FUTEX,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(timeline_host_pingpong),
    },
    Measurement {
        name: FUTEX_XPROC,
        what: "baseline: raw futex ping-pong between two processes on a shared memfd page (round trip)",
        baseline: FUTEX_XPROC,
        needs: Needs::Nothing,
        iters: 20_000,
        run: Run::Latency(futex_pingpong_xproc),
    },
    Measurement {
        name: "timeline_xproc_nt",
        what: "vkSignalSemaphore -> vkWaitSemaphores in another process, and back; timelines imported there by NT handle",
        baseline: FUTEX_XPROC,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(timeline_xproc_nt),
    },
    Measurement {
        name: "timeline_xproc_fd",
        what: "the same, timelines imported there by OPAQUE_FD",
        baseline: FUTEX_XPROC,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(timeline_xproc_fd),
    },
    Measurement {
        name: "binary_xproc_submit",
        what: "vkQueueSubmit signaling binary B1 (no waits: runs inline) -> the other process's queue waits B1, \
               signals B2 -> our other queue waits B2, signals a fence -> vkWaitForFences returns (round trip)",
        baseline: FUTEX_XPROC,
        needs: Needs::Device,
        iters: 10_000,
        run: Run::Latency(binary_xproc_submit),
    },
    Measurement {
        name: FENCE_ONE,
        what: "baseline: another process's vkQueueSubmit signals an exportable fence -> vkWaitForFences on it, \
               blocked there, returns (CLOCK_MONOTONIC across processes)",
        baseline: FENCE_ONE,
        needs: Needs::Device,
        iters: 2_000,
        run: Run::Report(scale::fence_wait_one),
    },
    Measurement {
        name: "fence_wait_any_1024",
        what: "the same, vkWaitForFences wait-any over 1,024 exportable fences, the last one signaled",
        baseline: FENCE_ONE,
        needs: Needs::Device,
        iters: 1_000,
        run: Run::Report(scale::fence_wait_any_1024),
    },
    Measurement {
        name: FENCE_ONE_PRIVATE,
        what: "baseline: another thread's vkQueueSubmit signals a private fence -> vkWaitForFences on it, blocked \
               there, returns",
        baseline: FENCE_ONE_PRIVATE,
        needs: Needs::Device,
        iters: 2_000,
        run: Run::Report(scale::fence_wait_one_private),
    },
    Measurement {
        name: "fence_wait_any_1024_private",
        what: "the same, vkWaitForFences wait-any over 1,024 private fences, the last one signaled",
        baseline: FENCE_ONE_PRIVATE,
        needs: Needs::Device,
        iters: 1_000,
        run: Run::Report(scale::fence_wait_any_1024_private),
    },
    Measurement {
        name: "fence_wait_any_1024_blocked",
        what: "the same wait-any, blocked 200 ms before the signal: CPU time of this whole process during the wait \
               (samples: CPU ns per wait)",
        baseline: "fence_wait_any_1024_blocked",
        needs: Needs::Device,
        iters: 5,
        run: Run::Report(scale::fence_wait_any_1024_blocked),
    },
    Measurement {
        name: "timeline_10000_xproc",
        what: "10,000 exportable timeline semaphores, NT handles sent to another process and imported there: \
               vkSignalSemaphore here -> vkWaitSemaphores there -> signal back -> wait here, each semaphore once; \
               memory per semaphore in both processes",
        baseline: FUTEX_XPROC,
        needs: Needs::Device,
        iters: 10_000,
        run: Run::Report(scale::timeline_10000_xproc),
    },
    Measurement {
        name: WAKE_ONE,
        what: "baseline: one thread of another process blocked in vkWaitSemaphores on an imported timeline; \
               vkSignalSemaphore here -> its wait returns (CLOCK_MONOTONIC across processes)",
        baseline: WAKE_ONE,
        needs: Needs::Device,
        iters: 200,
        run: Run::Report(scale::wake_1_waiter),
    },
    Measurement {
        name: "futex_wake_256_waiters",
        what: "for comparison: the same 256 threads blocked in FUTEX_WAIT on a raw shared futex word, one FUTEX_WAKE",
        baseline: WAKE_ONE,
        needs: Needs::Device,
        iters: 20,
        run: Run::Report(scale::futex_wake_256_waiters),
    },
    Measurement {
        name: "wake_256_waiters",
        what: "the same with 32 threads in each of 8 processes on one payload, one signal: every waiter's wake-up",
        baseline: WAKE_ONE,
        needs: Needs::Device,
        iters: 20,
        run: Run::Report(scale::wake_256_waiters),
    },
    Measurement {
        name: DUP,
        what: "baseline: fcntl(F_DUPFD_CLOEXEC) + close of one fd",
        baseline: DUP,
        needs: Needs::Nothing,
        iters: 20_000,
        run: Run::Latency(dup_close),
    },
    Measurement {
        name: "export_semaphore_opaque_fd",
        what: "vkGetSemaphoreFdKHR (OPAQUE_FD) + close",
        baseline: DUP,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(export_semaphore_opaque_fd),
    },
    Measurement {
        name: "export_fence_opaque_fd",
        what: "vkGetFenceFdKHR (OPAQUE_FD) + close",
        baseline: DUP,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(export_fence_opaque_fd),
    },
    Measurement {
        name: "export_semaphore_win32_nt",
        what: "vkGetSemaphoreWin32HandleKHR (OPAQUE_WIN32, an NT handle) + CloseHandle; a new semaphore each time",
        baseline: DUP,
        needs: Needs::Device,
        iters: 10_000,
        run: Run::Latency(export_semaphore_win32_nt),
    },
    Measurement {
        name: "import_opaque_fd_repeat",
        what: "vkImportSemaphoreFdKHR (OPAQUE_FD) of a payload already mapped here (mapping reused)",
        baseline: DUP,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(import_opaque_fd_repeat),
    },
    Measurement {
        name: "import_win32_nt_repeat",
        what: "vkImportSemaphoreWin32HandleKHR (OPAQUE_WIN32) of a payload already mapped here (mapping reused)",
        baseline: DUP,
        needs: Needs::Device,
        iters: 20_000,
        run: Run::Latency(import_win32_nt_repeat),
    },
    Measurement {
        name: MMAP,
        what: "baseline: mmap of a 4 KiB memfd page, read one word, munmap",
        baseline: MMAP,
        needs: Needs::Nothing,
        iters: 20_000,
        run: Run::Latency(mmap_munmap_memfd),
    },
    Measurement {
        name: "import_opaque_fd_first",
        what: "vkImportSemaphoreFdKHR (OPAQUE_FD) of a payload not mapped here (new mapping, header checked) + \
               vkDestroySemaphore (unmaps it)",
        baseline: MMAP,
        needs: Needs::Device,
        iters: 10_000,
        run: Run::Latency(import_opaque_fd_first),
    },
    Measurement {
        name: "import_win32_nt_first",
        what: "vkImportSemaphoreWin32HandleKHR (OPAQUE_WIN32) of a payload not mapped here + vkDestroySemaphore",
        baseline: MMAP,
        needs: Needs::Device,
        iters: 10_000,
        run: Run::Latency(import_win32_nt_first),
    },
    Measurement {
        name: BROKER,
        what: "baseline: one request/reply with tether-broker (ping)",
        baseline: BROKER,
        needs: Needs::Broker,
        iters: 5_000,
        run: Run::Latency(broker_ping),
    },
    Measurement {
        name: "export_semaphore_win32_kmt",
        what: "first vkGetSemaphoreWin32HandleKHR (OPAQUE_WIN32_KMT) of a new semaphore: registers a KMT value",
        baseline: BROKER,
        needs: Needs::Broker,
        iters: 5_000,
        run: Run::Latency(export_semaphore_win32_kmt),
    },
    Measurement {
        name: "export_semaphore_win32_name",
        what: "first vkGetSemaphoreWin32HandleKHR (OPAQUE_WIN32) of a new named semaphore: registers the name + \
               CloseHandle",
        baseline: BROKER,
        needs: Needs::Broker,
        iters: 5_000,
        run: Run::Latency(export_semaphore_win32_name),
    },
];

/// How long a single wait may take before a measurement fails.
const WAIT_LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Futex baselines.

/// A futex word: process-private (threads) or shared (processes mapping the same page).
#[derive(Clone, Copy)]
struct Futex<'a> {
    word: &'a AtomicU32,
    flags: futex::Flags,
}

impl Futex<'_> {
    fn set(&self, value: u32) {
        self.word.store(value, Ordering::Release);
        let _ = futex::wake(self.word, self.flags, 1);
    }

    /// Wakes every waiter.
    fn wake_all(&self) {
        let _ = futex::wake(self.word, self.flags, i32::MAX as u32);
    }

    /// Blocks in the kernel while the word is `seen`, at most `timeout`.
    fn wait_until_changed(&self, seen: u32, timeout: Duration) {
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // EAGAIN (the word changed), EINTR and ETIMEDOUT all just return.
        let _ = futex::wait(self.word, self.flags, seen, Some(&ts));
    }

    /// Blocks in the kernel until the word is `value` (no spinning); `false` after `limit`.
    fn wait_for(&self, value: u32, limit: Option<Duration>) -> bool {
        let deadline = limit.map(|l| Instant::now() + l);
        loop {
            let current = self.word.load(Ordering::Acquire);
            if current == value {
                return true;
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    Some(rustix::time::Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()),
                    })
                }
                None => None,
            };
            // EAGAIN (the word changed), EINTR and ETIMEDOUT just loop.
            let _ = futex::wait(self.word, self.flags, current, timeout.as_ref());
        }
    }
}

/// A futex word on its own cache line.
#[repr(align(64))]
struct Word(AtomicU32);

/// Two threads, two futex words: the main thread sets `ping` and waits for `pong`, the other
/// waits for `ping` and sets `pong`. Blocks in the kernel every time (no spinning).
fn futex_pingpong(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let total = u32::try_from(cx.plan.total()).map_err(|_| "too many iterations")?;
    let words = (Word(AtomicU32::new(0)), Word(AtomicU32::new(0)));
    let ping = Futex {
        word: &words.0.0,
        flags: futex::Flags::PRIVATE,
    };
    let pong = Futex {
        word: &words.1.0,
        flags: futex::Flags::PRIVATE,
    };
    let mut samples = Vec::with_capacity(total as usize);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 1..=total {
                ping.wait_for(i, None);
                pong.set(i);
            }
        });
        for i in 1..=total {
            let start = Instant::now();
            ping.set(i);
            pong.wait_for(i, None);
            samples.push(nanos(start.elapsed()));
        }
    });
    Ok(samples)
}

/// A 4 KiB memfd page mapped shared; unmapped on drop.
struct SharedPage {
    ptr: NonNull<AtomicU32>,
}

const PAGE: usize = 4096;
/// Words per cache line: ping and pong live on different lines.
const LINE_WORDS: usize = 16;

impl SharedPage {
    fn memfd() -> Result<OwnedFd, String> {
        let fd = rustix::fs::memfd_create("tether-bench", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| format!("memfd_create: {e}"))?;
        rustix::fs::ftruncate(&fd, PAGE as u64).map_err(|e| format!("ftruncate: {e}"))?;
        Ok(fd)
    }

    fn map(fd: impl AsFd) -> Result<SharedPage, String> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a new shared mapping at an address the kernel picks (aliasing no Rust object)
        // of a file at least PAGE bytes long, which nobody shrinks while it is mapped.
        let raw = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                PAGE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        let ptr = NonNull::new(raw.cast::<AtomicU32>()).ok_or("mmap returned NULL")?;
        Ok(SharedPage { ptr })
    }

    /// The 32-bit word at byte `offset` (4-aligned, inside the page).
    fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= PAGE);
        // SAFETY: inside the live, page-aligned mapping (checked above), aligned for a u32, which
        // lasts as long as `self`; every bit pattern is a valid `AtomicU32`, and every process
        // touches the page only through atomics.
        unsafe { self.ptr.add(offset / 4).as_ref() }
    }

    /// The 64-bit word at cache line `line`.
    fn word64(&self, line: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(line * LINE_WORDS * 4 + 8 <= PAGE);
        // SAFETY: inside the live, page-aligned mapping (checked above), 8-aligned (a cache line
        // start), lasting as long as `self`; every bit pattern is a valid `AtomicU64`, and every
        // process touches the page only through atomics.
        unsafe {
            self.ptr
                .add(line * LINE_WORDS)
                .cast::<std::sync::atomic::AtomicU64>()
                .as_ref()
        }
    }

    /// The futex word at cache line `line`, shared between processes.
    fn futex(&self, line: usize) -> Futex<'_> {
        assert!(line * LINE_WORDS * 4 < PAGE);
        // SAFETY: inside the live, page-aligned mapping (checked above), which lasts as long as
        // `self`; every bit pattern is a valid `AtomicU32`, and other processes touch the page
        // only through atomics too.
        let word = unsafe { self.ptr.add(line * LINE_WORDS).as_ref() };
        Futex {
            word,
            flags: futex::Flags::empty(),
        }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), PAGE) };
    }
}

/// The cross-process futex ping-pong: this process sets `ping` and waits for `pong` on a memfd
/// page the child maps too.
fn futex_pingpong_xproc(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let total = u32::try_from(cx.plan.total()).map_err(|_| "too many iterations")?;
    let fd = SharedPage::memfd()?;
    let page = SharedPage::map(&fd)?;
    inheritable(&fd)?;
    let mut peer = spawn_child(
        PeerKind::Futex,
        None,
        u64::from(total),
        &[fd.as_raw_fd() as i64],
        vulkan::Source::Embedded,
    )?;
    drop(fd);
    peer.expect_line("ready")?;
    let (ping, pong) = (page.futex(0), page.futex(1));
    let mut samples = Vec::with_capacity(total as usize);
    for i in 1..=total {
        let start = Instant::now();
        ping.set(i);
        if !pong.wait_for(i, Some(WAIT_LIMIT)) {
            return Err(format!("iteration {i}: no answer from the child within {WAIT_LIMIT:?}"));
        }
        samples.push(nanos(start.elapsed()));
    }
    peer.finish()?;
    Ok(samples)
}

// ---------------------------------------------------------------------------------------------
// Wake-ups within one process.

/// Submit nothing but a fence, wait for it on the host, reset it (not timed).
fn fence_submit_wait(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let fence = td.create_fence()?;
    let mut samples = Vec::with_capacity(cx.plan.total());
    let result = (|| {
        for _ in 0..cx.plan.total() {
            let start = Instant::now();
            td.submit(td.queues[0], &[], &[], fence)?;
            if !td.wait_fence(fence, WAIT_LIMIT)? {
                return Err("the fence was not signaled in time".to_string());
            }
            samples.push(nanos(start.elapsed()));
            td.reset_fence(fence)?;
        }
        Ok(())
    })();
    // SAFETY: no work is pending on the fence (every submit's fence was waited for), or the
    // device is idle after a failure.
    unsafe {
        let _ = td.device.device_wait_idle();
        td.device.destroy_fence(fence, None);
    }
    result.map(|()| samples)
}

/// Submit a batch that waits a timeline value and signals a fence (it goes to the queue's
/// worker, the wait not being satisfied), signal the value on the host, wait for the fence: the
/// worker's wake-up and the fence's.
fn fence_submit_wait_worker(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let fence = td.create_fence()?;
    let gate = match td.create_timeline(0) {
        Ok(s) => s,
        Err(e) => {
            td.destroy_fence(fence);
            return Err(e);
        }
    };
    let mut samples = Vec::with_capacity(cx.plan.total());
    let result = (|| {
        for i in 1..=cx.plan.total() as u64 {
            let start = Instant::now();
            td.submit(td.queues[0], &[(gate, i)], &[], fence)?;
            td.signal(gate, i)?;
            if !td.wait_fence(fence, WAIT_LIMIT)? {
                return Err("the fence was not signaled in time".to_string());
            }
            samples.push(nanos(start.elapsed()));
            td.reset_fence(fence)?;
        }
        Ok(())
    })();
    // SAFETY: the device is idle afterwards, so no work uses the fence or the timeline.
    unsafe {
        let _ = td.device.device_wait_idle();
    }
    td.destroy_fence(fence);
    td.destroy_semaphore(gate);
    result.map(|()| samples)
}

fn wait_or_fail(td: &TetherDevice, semaphore: vk::Semaphore, value: u64) -> Result<(), String> {
    if td.wait_value(semaphore, value, WAIT_LIMIT)? {
        Ok(())
    } else {
        Err(format!("timeline value {value} not reached within {WAIT_LIMIT:?}"))
    }
}

/// Two timeline semaphores, two threads: the main thread signals `ping` = i and waits for
/// `pong` >= i; the other waits for `ping` >= i and signals `pong` = i.
fn timeline_host_pingpong(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let ping = td.create_timeline(0)?;
    let pong = match td.create_timeline(0) {
        Ok(s) => s,
        Err(e) => {
            td.destroy_semaphore(ping);
            return Err(e);
        }
    };
    let total = cx.plan.total() as u64;
    let result = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            for i in 1..=total {
                wait_or_fail(td, ping, i)?;
                td.signal(pong, i)?;
            }
            Ok::<(), String>(())
        });
        let mut samples = Vec::with_capacity(total as usize);
        let main = (|| {
            for i in 1..=total {
                let start = Instant::now();
                td.signal(ping, i)?;
                wait_or_fail(td, pong, i)?;
                samples.push(nanos(start.elapsed()));
            }
            Ok::<(), String>(())
        })();
        let other = other.join().map_err(|_| "the ping-pong thread panicked".to_string())?;
        main.and(other).map(|()| samples)
    });
    // Both threads are done with the semaphores; no queue work uses them.
    td.destroy_semaphore(ping);
    td.destroy_semaphore(pong);
    result
}

// ---------------------------------------------------------------------------------------------
// Wake-ups across processes.

/// Starts `tether bench-child`.
fn spawn_child(
    kind: PeerKind,
    import: Option<ImportAs>,
    count: u64,
    handles: &[i64],
    source: vulkan::Source,
) -> Result<Peer, String> {
    spawn_child_with(kind, import, count, handles, source, &[])
}

/// Starts `tether bench-child` with more arguments.
fn spawn_child_with(
    kind: PeerKind,
    import: Option<ImportAs>,
    count: u64,
    handles: &[i64],
    source: vulkan::Source,
    extra: &[OsString],
) -> Result<Peer, String> {
    let list: Vec<String> = handles.iter().map(i64::to_string).collect();
    let mut args: Vec<OsString> = vec![
        "bench-child".into(),
        kind.to_possible_value()
            .map_or("?".to_string(), |v| v.get_name().to_string())
            .into(),
        "--count".into(),
        count.to_string().into(),
        "--handles".into(),
        list.join(",").into(),
    ];
    if let Some(i) = import {
        args.push("--import".into());
        args.push(
            i.to_possible_value()
                .map_or("?".to_string(), |v| v.get_name().to_string())
                .into(),
        );
    }
    args.extend_from_slice(extra);
    Peer::spawn(source, &args)
}

/// Semaphores destroyed when this is dropped (by then no queue work may use them).
struct Semaphores<'a> {
    td: &'a TetherDevice,
    list: Vec<vk::Semaphore>,
}

impl<'a> Semaphores<'a> {
    fn new(td: &'a TetherDevice) -> Semaphores<'a> {
        Semaphores { td, list: Vec::new() }
    }

    /// Keeps a newly created semaphore.
    fn add(&mut self, created: Result<vk::Semaphore, String>) -> Result<vk::Semaphore, String> {
        let s = created?;
        self.list.push(s);
        Ok(s)
    }
}

impl Drop for Semaphores<'_> {
    fn drop(&mut self) {
        for &s in &self.list {
            self.td.destroy_semaphore(s);
        }
    }
}

/// Exports `semaphores` for a child process (inheritable fds or NT handles) and starts it.
fn share_with_child(
    td: &TetherDevice,
    semaphores: &[vk::Semaphore],
    import: ImportAs,
    kind: PeerKind,
    count: u64,
) -> Result<Peer, String> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    for &s in semaphores {
        let fd = match import {
            ImportAs::Nt => td
                .export_semaphore_nt(s, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32)?
                .into_owned_fd(),
            ImportAs::Fd => {
                let fd = td.export_semaphore_fd(s, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD)?;
                inheritable(&fd)?;
                fd
            }
        };
        fds.push(fd);
    }
    let numbers: Vec<i64> = fds.iter().map(|f| i64::from(f.as_raw_fd())).collect();
    let mut peer = spawn_child(kind, Some(import), count, &numbers, td.vulkan.source)?;
    drop(fds);
    peer.expect_line("ready")?;
    Ok(peer)
}

/// Semaphores exportable the way `import` needs (NT handles: inheritable).
fn exportable_for(td: &TetherDevice, kind: SemaphoreKind, import: ImportAs) -> Result<vk::Semaphore, String> {
    let options = match import {
        ImportAs::Nt => ExportOptions::new(HandleType::OpaqueWin32).inheritable(true),
        ImportAs::Fd => ExportOptions::new(HandleType::OpaqueFd),
    };
    td.create_exportable_semaphore(kind, &options)
}

/// Fails with the child's status when it has exited, else with `what`.
fn child_failure(peer: &mut Peer, what: String) -> String {
    match peer.exited() {
        Some(status) => format!("{what} (the child process exited: {status})"),
        None => what,
    }
}

fn timeline_xproc(cx: &Context<'_>, import: ImportAs) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let mut owned = Semaphores::new(td);
    let ping = owned.add(exportable_for(td, SemaphoreKind::Timeline, import))?;
    let pong = owned.add(exportable_for(td, SemaphoreKind::Timeline, import))?;
    let total = cx.plan.total() as u64;
    let mut peer = share_with_child(td, &[ping, pong], import, PeerKind::Timeline, total)?;
    let mut samples = Vec::with_capacity(total as usize);
    for i in 1..=total {
        let start = Instant::now();
        td.signal(ping, i)?;
        if !td.wait_value(pong, i, WAIT_LIMIT)? {
            return Err(child_failure(
                &mut peer,
                format!("iteration {i}: no answer from the child within {WAIT_LIMIT:?}"),
            ));
        }
        samples.push(nanos(start.elapsed()));
    }
    peer.finish()?;
    Ok(samples)
}

fn timeline_xproc_nt(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    timeline_xproc(cx, ImportAs::Nt)
}

fn timeline_xproc_fd(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    timeline_xproc(cx, ImportAs::Fd)
}

/// Binary semaphores through queue submits in both processes. Per iteration, untimed: the child
/// submits {wait B1, signal B2} (its queue blocks on B1) and answers; this process submits
/// {wait B2, signal fence} on its second queue (which blocks on B2). Timed: a submit of
/// {signal B1} on this process's idle first queue (no waits: it runs on the submitting thread)
/// until `vkWaitForFences` returns: B1 wakes the child's queue, whose B2 signal wakes our second
/// queue, which signals the fence (three wake-ups, two of them across processes).
fn binary_xproc_submit(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let [signaling, waiting] = td.queues;
    if signaling == waiting {
        return Err("the tether device needs two queues for this measurement".into());
    }
    let mut owned = Semaphores::new(td);
    let b1 = owned.add(exportable_for(td, SemaphoreKind::Binary, ImportAs::Nt))?;
    let b2 = owned.add(exportable_for(td, SemaphoreKind::Binary, ImportAs::Nt))?;
    let fence = td.create_fence()?;
    let total = cx.plan.total() as u64;
    // An error leaves queue work waiting on values that never come: the caller exits without
    // tearing anything down.
    let mut peer = share_with_child(td, &[b1, b2], ImportAs::Nt, PeerKind::Binary, total)?;
    let mut samples = Vec::with_capacity(total as usize);
    for i in 1..=total {
        peer.send(1)?;
        peer.recv()?;
        td.submit(waiting, &[(b2, 0)], &[], fence)?;
        let start = Instant::now();
        td.submit(signaling, &[], &[(b1, 0)], vk::Fence::null())?;
        if !td.wait_fence(fence, WAIT_LIMIT)? {
            return Err(child_failure(
                &mut peer,
                format!("iteration {i}: the fence was not signaled within {WAIT_LIMIT:?}"),
            ));
        }
        samples.push(nanos(start.elapsed()));
        td.reset_fence(fence)?;
    }
    peer.finish()?;
    td.destroy_fence(fence);
    Ok(samples)
}

/// `tether bench-child`: the other side of a cross-process measurement. Writes `ready` when set
/// up, then plays `count` iterations.
pub fn run_child(choice: Choice, args: &ChildArgs) -> Result<(), String> {
    vulkan::set_notices_to_stderr();
    let mut link = ParentLink::new();
    let handles = parse_list(&args.handles)?;
    let wanted = match args.kind {
        PeerKind::Futex | PeerKind::Semaphores => 1..=1,
        // A control page, and the semaphore unless the threads wait on a raw futex word.
        PeerKind::Waiters => 1..=2,
        _ => 2..=2,
    };
    if !wanted.contains(&handles.len()) {
        return Err(format!("--handles: {wanted:?} expected, got {}", handles.len()));
    }
    match args.kind {
        PeerKind::Fence | PeerKind::Semaphores | PeerKind::Waiters => {
            scale::run_child(choice, &mut link, args, &handles)
        }
        PeerKind::Futex => {
            let raw = i32::try_from(handles[0]).map_err(|_| "bad fd")?;
            // SAFETY: the parent made this fd inheritable for this process to own.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            let page = SharedPage::map(&fd)?;
            drop(fd);
            let (ping, pong) = (page.futex(0), page.futex(1));
            let count = u32::try_from(args.count).map_err(|_| "--count too large")?;
            link.line("ready")?;
            for i in 1..=count {
                if !ping.wait_for(i, Some(WAIT_LIMIT)) {
                    return Err(format!("iteration {i}: no ping within {WAIT_LIMIT:?}"));
                }
                pong.set(i);
            }
            Ok(())
        }
        PeerKind::Timeline | PeerKind::Binary => {
            let td = TetherDevice::open(choice)?;
            let kind = if args.kind == PeerKind::Timeline {
                SemaphoreKind::Timeline
            } else {
                SemaphoreKind::Binary
            };
            let mut semaphores = Vec::new();
            for h in handles {
                let s = td.create_import_target(kind)?;
                semaphores.push(s);
                let raw = i32::try_from(h).map_err(|_| "bad handle")?;
                // SAFETY: the parent made this fd inheritable for this process to own.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                match args.import {
                    ImportAs::Nt => {
                        td.import_semaphore_win32(
                            s,
                            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
                            raw as isize,
                            None,
                        )?;
                        drop(fd); // CloseHandle: the import keeps its own duplicate.
                    }
                    ImportAs::Fd => td.import_semaphore_fd(s, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD, fd)?,
                }
            }
            let (a, b) = (semaphores[0], semaphores[1]);
            link.line("ready")?;
            if args.kind == PeerKind::Timeline {
                for i in 1..=args.count {
                    wait_or_fail(&td, a, i)?;
                    td.signal(b, i)?;
                }
            } else {
                let queue = td.queues[1];
                let mut played = 0;
                while link.recv()?.is_some() {
                    td.submit(queue, &[(a, 0)], &[(b, 0)], vk::Fence::null())?;
                    link.send(1)?;
                    played += 1;
                }
                if played != args.count {
                    // The parent went away early: the last submit may wait forever, so do not
                    // wait for the queue.
                    eprintln!(
                        "tether bench-child: the parent stopped after {played} of {} iterations",
                        args.count
                    );
                    std::process::exit(1);
                }
            }
            // SAFETY: no work is pending on the semaphores once the queue is idle.
            unsafe {
                let _ = td.device.device_wait_idle();
            }
            for s in semaphores {
                td.destroy_semaphore(s);
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Exports.

/// Times `f` per iteration, with `setup` (untimed) before and `teardown` (untimed) after.
fn timed<S>(
    total: usize,
    mut setup: impl FnMut(usize) -> Result<S, String>,
    mut f: impl FnMut(&mut S) -> Result<(), String>,
    mut teardown: impl FnMut(S),
) -> Result<Vec<u64>, String> {
    let mut samples = Vec::with_capacity(total);
    for i in 0..total {
        let mut state = setup(i)?;
        let start = Instant::now();
        let r = f(&mut state);
        let elapsed = nanos(start.elapsed());
        teardown(state);
        r?;
        samples.push(elapsed);
    }
    Ok(samples)
}

fn dup_close(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let fd = SharedPage::memfd()?;
    timed(
        cx.plan.total(),
        |_| Ok(()),
        |()| {
            let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 0).map_err(|e| format!("F_DUPFD_CLOEXEC: {e}"))?;
            drop(dup);
            Ok(())
        },
        |()| {},
    )
}

fn export_semaphore_opaque_fd(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let ty = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
    let s = td.create_exportable_semaphore(SemaphoreKind::Binary, &ExportOptions::new(HandleType::OpaqueFd))?;
    let r = timed(
        cx.plan.total(),
        |_| Ok(()),
        |()| td.export_semaphore_fd(s, ty).map(drop),
        |()| {},
    );
    td.destroy_semaphore(s);
    r
}

fn export_fence_opaque_fd(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let ty = vk::ExternalFenceHandleTypeFlags::OPAQUE_FD;
    let f = td.create_exportable_fence(&ExportOptions::new(HandleType::OpaqueFd))?;
    let r = timed(
        cx.plan.total(),
        |_| Ok(()),
        |()| td.export_fence_fd(f, ty).map(drop),
        |()| {},
    );
    td.destroy_fence(f);
    r
}

/// Exports once from a new semaphore per iteration (the ICD refuses a second NT export of one
/// object and handle type, and a KMT value or name is registered by the first export only).
fn export_first(cx: &Context<'_>, ty: vk::ExternalSemaphoreHandleTypeFlags, named: bool) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let pid = std::process::id();
    timed(
        cx.plan.total(),
        |i| {
            let mut options = ExportOptions::new(HandleTypes::from_semaphore_flags(ty));
            if named {
                let name = format!("Local\\tether-bench-{pid}-{i}")
                    .parse()
                    .map_err(|e| format!("{e}"))?;
                options = options.name(name);
            }
            td.create_exportable_semaphore(SemaphoreKind::Binary, &options)
        },
        |&mut s| {
            let handle = td.export_semaphore_win32(s, ty)?;
            if ty != vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT {
                // SAFETY: a new NT handle the export gave us; closed once, here.
                drop(unsafe { tether_handles::NtHandle::from_raw_handle(handle) });
            }
            Ok(())
        },
        |s| td.destroy_semaphore(s),
    )
}

fn export_semaphore_win32_nt(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    export_first(cx, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32, false)
}

fn export_semaphore_win32_kmt(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    export_first(cx, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT, false)
}

fn export_semaphore_win32_name(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    export_first(cx, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32, true)
}

fn broker_ping(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let exe = std::env::current_exe().ok();
    let mut broker = tether_handles::Broker::connect_with(exe.as_deref()).map_err(|e| e.to_string())?;
    timed(
        cx.plan.total(),
        |_| Ok(()),
        |()| broker.ping().map(drop).map_err(|e| e.to_string()),
        |()| {},
    )
}

// ---------------------------------------------------------------------------------------------
// Imports.

fn mmap_munmap_memfd(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let fd = SharedPage::memfd()?;
    timed(
        cx.plan.total(),
        |_| Ok(()),
        |()| {
            let page = SharedPage::map(&fd)?;
            std::hint::black_box(page.futex(0).word.load(Ordering::Relaxed));
            drop(page);
            Ok(())
        },
        |()| {},
    )
}

/// A payload handle of a semaphore that no longer exists in this process, so its page is not
/// mapped here (the next import maps it anew), and a second fd that keeps the page's file alive,
/// as the exporting process would (so releasing the import does not free the file).
fn unmapped_payload(td: &TetherDevice, import: ImportAs) -> Result<(OwnedFd, OwnedFd), String> {
    let s = exportable_for(td, SemaphoreKind::Binary, import)?;
    let fd = match import {
        ImportAs::Fd => td.export_semaphore_fd(s, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD),
        ImportAs::Nt => td
            .export_semaphore_nt(s, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32)
            .map(tether_handles::NtHandle::into_owned_fd),
    };
    td.destroy_semaphore(s);
    let fd = fd?;
    let keep = rustix::io::fcntl_dupfd_cloexec(&fd, 0).map_err(|e| format!("F_DUPFD_CLOEXEC: {e}"))?;
    Ok((fd, keep))
}

/// Imports `fd` into `target` the way `import` says (an fd import consumes it).
fn import_into(td: &TetherDevice, target: vk::Semaphore, import: ImportAs, fd: OwnedFd) -> Result<(), String> {
    match import {
        ImportAs::Fd => td.import_semaphore_fd(target, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD, fd),
        ImportAs::Nt => td.import_semaphore_win32(
            target,
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
            fd.as_raw_fd() as isize,
            None,
        ),
    }
}

/// Times a first import (a new mapping) together with the destruction of the importing
/// semaphore (which unmaps it), as the baseline maps and unmaps a page.
fn import_first(cx: &Context<'_>, import: ImportAs) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    timed(
        cx.plan.total(),
        |_| {
            let (fd, keep) = unmapped_payload(td, import)?;
            let target = td.create_import_target(SemaphoreKind::Binary)?;
            Ok((Some(target), Some(fd), keep))
        },
        |(target, fd, _)| {
            let t = target.take().ok_or("no target")?;
            let imported = import_into(td, t, import, fd.take().ok_or("no fd")?);
            td.destroy_semaphore(t);
            imported
        },
        |(target, fd, keep)| {
            drop((fd, keep));
            if let Some(t) = target {
                td.destroy_semaphore(t);
            }
        },
    )
}

fn import_opaque_fd_first(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    import_first(cx, ImportAs::Fd)
}

fn import_win32_nt_first(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    import_first(cx, ImportAs::Nt)
}

fn import_opaque_fd_repeat(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let ty = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
    let mut owned = Semaphores::new(td);
    let source = owned.add(td.create_exportable_semaphore(
        SemaphoreKind::Binary,
        &ExportOptions::new(HandleTypes::from_semaphore_flags(ty)),
    ))?;
    let target = owned.add(td.create_import_target(SemaphoreKind::Binary))?;
    let fd = td.export_semaphore_fd(source, ty)?;
    timed(
        cx.plan.total(),
        |_| {
            rustix::io::fcntl_dupfd_cloexec(&fd, 0)
                .map(Some)
                .map_err(|e| format!("F_DUPFD_CLOEXEC: {e}"))
        },
        |dup| td.import_semaphore_fd(target, ty, dup.take().ok_or("no fd")?),
        drop,
    )
}

fn import_win32_nt_repeat(cx: &Context<'_>) -> Result<Vec<u64>, String> {
    let td = cx.device()?;
    let ty = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32;
    let mut owned = Semaphores::new(td);
    let source = owned.add(td.create_exportable_semaphore(
        SemaphoreKind::Binary,
        &ExportOptions::new(HandleTypes::from_semaphore_flags(ty)),
    ))?;
    let target = owned.add(td.create_import_target(SemaphoreKind::Binary))?;
    let handle = td.export_semaphore_nt(source, ty)?;
    timed(
        cx.plan.total(),
        |_| Ok(()),
        |()| td.import_semaphore_win32(target, ty, handle.as_raw_handle(), None),
        |()| {},
    )
}

// ---------------------------------------------------------------------------------------------
// The run.

/// One measurement's result.
pub struct Outcome {
    pub name: &'static str,
    pub what: &'static str,
    pub baseline: &'static str,
    pub summary: Summary,
    /// What a [`Run::Report`] measurement reported besides its samples.
    pub values: Vec<Value>,
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

/// A JSON number (finite; JSON has no NaN or infinity).
fn json_number(v: f64) -> String {
    if !v.is_finite() {
        "null".to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// One measurement as a JSON object on one line: `name`, `p50_ns`, `p99_ns`, `baseline`, `ratio`,
/// and, for measurements that report them, `values` (an object of numbers).
pub fn json_line(outcome: &Outcome, baseline: &Outcome) -> String {
    let mut line = format!(
        "{{\"name\":{},\"p50_ns\":{},\"p99_ns\":{},\"baseline\":{},\"ratio\":{:.3}",
        json_string(outcome.name),
        outcome.summary.p50,
        outcome.summary.p99,
        json_string(baseline.name),
        ratio(outcome, baseline)
    );
    if !outcome.values.is_empty() {
        let values: Vec<String> = outcome
            .values
            .iter()
            .map(|v| format!("{}:{}", json_string(v.name), json_number(v.value)))
            .collect();
        line.push_str(&format!(",\"values\":{{{}}}", values.join(",")));
    }
    line.push('}');
    line
}

/// The measurements `--only` selects, with the baselines they need, in table order.
fn select(only: Option<&str>) -> Vec<&'static Measurement> {
    let chosen = |m: &Measurement| only.is_none_or(|o| m.name.contains(o));
    MEASUREMENTS
        .iter()
        .filter(|m| chosen(m) || MEASUREMENTS.iter().any(|o| chosen(o) && o.baseline == m.name))
        .collect()
}

pub fn run(choice: Choice, args: &BenchArgs) -> Result<(), String> {
    if args.json {
        vulkan::set_notices_to_stderr();
    }
    if let Some(cpu) = args.pin {
        // Before the device and the children exist, so queue workers and children inherit it.
        pin_to(cpu)?;
    }
    let selected = select(args.only.as_deref());
    if selected.is_empty() {
        return Err(format!(
            "--only {:?} matches no measurement",
            args.only.as_deref().unwrap_or("")
        ));
    }
    let device = if selected.iter().any(|m| m.needs != Needs::Nothing) {
        Some(TetherDevice::open(choice)?)
    } else {
        None
    };
    let broker = if selected.iter().any(|m| m.needs == Needs::Broker) {
        Some(tether::broker::ensure().map_err(|e| e.to_string()))
    } else {
        None
    };
    let note = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            say!("{line}");
        }
    };
    if !args.json {
        say!(
            "tether bench: {}; {}; Vulkan from {}",
            match (args.iters, args.warmup) {
                (Some(i), Some(w)) => format!("{i} iterations after {w} warm-up each"),
                (Some(i), None) => format!("{i} iterations after {} warm-up each", i / 10),
                (None, _) => "each measurement's own iteration count (n) after a tenth as many warm-up".to_string(),
            },
            args.pin
                .map_or("threads unpinned".to_string(), |c| format!("every thread on CPU {c}")),
            device
                .as_ref()
                .map_or("(not used)".to_string(), |d| d.vulkan.describe())
        );
    }
    match &broker {
        Some(Ok(b)) => note(format!("broker: tether-broker pid {}, {}", b.pid, b.how)),
        Some(Err(why)) => note(format!(
            "SKIPPING the broker measurements (broker_ping, KMT and name exports): {why}"
        )),
        None => {}
    }
    if let Some(td) = &device
        && td.shared.enabled_extensions() != tether::caps::Extensions::from_names(tether::caps::Extensions::NAMES)
    {
        return Err("the tether device does not offer the fd and Win32 extensions (TETHER_ICD_HANDLES=fd?)".into());
    }

    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut skipped = Vec::new();
    for m in selected {
        if m.needs == Needs::Broker && !matches!(broker, Some(Ok(_))) {
            skipped.push(m.name);
            continue;
        }
        let default_iters = if args.quick { (m.iters / 10).max(1) } else { m.iters };
        let iters = args.iters.map_or(default_iters, |i| i as usize);
        let plan = Plan {
            iters,
            warmup: args.warmup.map_or(iters / 10, |w| w as usize),
        };
        let cx = Context {
            device: device.as_ref(),
            plan,
            quick: args.quick,
        };
        let ran = match m.run {
            Run::Latency(f) => f(&cx).map(|mut samples| Report {
                samples: samples.split_off(plan.warmup.min(samples.len())),
                values: Vec::new(),
            }),
            Run::Report(f) => f(&cx),
        };
        let mut report = match ran {
            Ok(r) => r,
            Err(e) => {
                // Queue work may wait on values that never come (and a child may be stuck):
                // leave without tearing the device down.
                eprintln!("tether: {}: {e}", m.name);
                std::process::exit(1);
            }
        };
        let summary = Summary::of(&mut report.samples).ok_or_else(|| format!("{}: no samples", m.name))?;
        outcomes.push(Outcome {
            name: m.name,
            what: m.what,
            baseline: m.baseline,
            summary,
            values: report.values,
        });
    }
    let baseline_of = |o: &Outcome| {
        outcomes
            .iter()
            .find(|b| b.name == o.baseline)
            .ok_or_else(|| format!("{}: its baseline {} did not run", o.name, o.baseline))
    };
    if args.json {
        for o in &outcomes {
            say!("{}", json_line(o, baseline_of(o)?));
        }
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for o in &outcomes {
        let b = baseline_of(o)?;
        rows.push(vec![
            o.name.to_string(),
            o.summary.count.to_string(),
            o.summary.p50.to_string(),
            o.summary.p99.to_string(),
            if b.name == o.name {
                "(baseline)".to_string()
            } else {
                b.name.to_string()
            },
            format!("{:.2}", ratio(o, b)),
            o.values.iter().map(Value::show).collect::<Vec<_>>().join(", "),
            o.what.to_string(),
        ]);
    }
    say!();
    say!(
        "{}",
        tether::table::format(
            &[
                "measurement",
                "n",
                "p50 ns",
                "p99 ns",
                "baseline",
                "p50 / baseline",
                "values",
                "what"
            ],
            &rows
        )
        .trim_end()
    );
    if !skipped.is_empty() {
        say!("\nskipped (no broker): {}", skipped.join(", "));
    }
    say!(
        "\n{} measurements in {:.1} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &'static str, p50: u64, p99: u64) -> Outcome {
        Outcome {
            name,
            what: "",
            baseline: FUTEX,
            summary: Summary {
                count: 1,
                p50,
                p90: p99,
                p99,
                max: p99,
            },
            values: Vec::new(),
        }
    }

    #[test]
    fn json_shape() {
        let base = outcome(FUTEX, 4000, 9000);
        assert_eq!(
            json_line(&outcome("x\"y", 5000, 12000), &base),
            r#"{"name":"x\"y","p50_ns":5000,"p99_ns":12000,"baseline":"futex_pingpong","ratio":1.250}"#
        );
    }

    #[test]
    fn json_values() {
        let base = outcome(FUTEX, 4000, 9000);
        let mut o = outcome("m", 2000, 3000);
        o.values = vec![
            Value::new("shared_b", 4096.0, "B"),
            Value::new("cpu_percent", 0.0123, "%"),
        ];
        assert_eq!(
            json_line(&o, &base),
            r#"{"name":"m","p50_ns":2000,"p99_ns":3000,"baseline":"futex_pingpong","ratio":0.500,"values":{"shared_b":4096,"cpu_percent":0.012}}"#
        );
        assert_eq!(o.values[0].show(), "shared_b=4096 B");
        assert_eq!(Value::new("woken", 256.0, "").show(), "woken=256");
    }

    #[test]
    fn futex_baseline_runs() {
        let samples = futex_pingpong(&Context {
            device: None,
            plan: Plan { iters: 200, warmup: 10 },
            quick: false,
        })
        .unwrap();
        assert_eq!(samples.len(), 210);
    }

    #[test]
    fn every_baseline_is_a_baseline() {
        for m in MEASUREMENTS {
            let b = MEASUREMENTS
                .iter()
                .find(|b| b.name == m.baseline)
                .unwrap_or_else(|| panic!("{}: no measurement {}", m.name, m.baseline));
            assert_eq!(
                b.baseline, b.name,
                "{} is a baseline of {} but has its own",
                b.name, m.name
            );
            assert!(
                MEASUREMENTS.iter().position(|x| x.name == b.name)
                    <= MEASUREMENTS.iter().position(|x| x.name == m.name),
                "{} runs before its baseline",
                m.name
            );
        }
    }

    #[test]
    fn only_brings_its_baselines() {
        let names: Vec<_> = select(Some("import_opaque_fd_first")).iter().map(|m| m.name).collect();
        assert_eq!(names, [MMAP, "import_opaque_fd_first"]);
        assert_eq!(select(None).len(), MEASUREMENTS.len());
    }

    #[test]
    fn memfd_page_baselines_run() {
        let cx = Context {
            device: None,
            plan: Plan { iters: 20, warmup: 2 },
            quick: false,
        };
        assert_eq!(dup_close(&cx).unwrap().len(), 22);
        assert_eq!(mmap_munmap_memfd(&cx).unwrap().len(), 22);
    }
}

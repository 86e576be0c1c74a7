//! The measurements at scale (a submodule of `bench`):
//!
//! * `fence_wait_one` / `fence_wait_any_1024`: this process blocks in `vkWaitForFences` on one
//!   exportable fence, or on it and 1,023 others (wait-any); a child process, once the waiter is
//!   registered on the fence's page, signals it through `vkQueueSubmit`; the samples are the
//!   return time minus the signal time (`CLOCK_MONOTONIC`, one clock for every process);
//!   `fence_wait_one_private` / `fence_wait_any_1024_private`: the same with private fences
//!   signaled by another thread;
//! * `fence_wait_any_1024_blocked`: the exportable wait-any, blocked for 200 ms before the
//!   signal, with the CPU time this whole process spends meanwhile;
//! * `timeline_10000_xproc`: 10,000 exportable timeline semaphores shared with a child process by
//!   NT handle; each is signaled in one process and observed in the other, both ways; with the
//!   memory (RSS, PSS, shared, private, heap) each semaphore costs in either process;
//! * `wake_1_waiter` / `wake_256_waiters`: one timeline payload that 1 thread, or 32 threads in
//!   each of 8 processes, wait on; one host signal; every waiter's wake-up time minus the
//!   signal's; `futex_wake_256_waiters`: the same herd on a raw futex word, for comparison.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ash::vk;

use super::{
    ChildArgs, Context, ImportAs, PeerKind, Report, SharedPage, Value, WAIT_LIMIT, child_failure, spawn_child,
    spawn_child_with, wait_or_fail,
};
use crate::external::SemaphoreKind;
use crate::peer::{ParentLink, Peer, inheritable};
use crate::stats::{Summary, nanos};
use crate::vulkan::{Choice, TetherDevice};
use tether::{ExportOptions, HandleType};

/// Fences in the wait-any measurements.
const ANY_FENCES: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `CLOCK_MONOTONIC` in ns: the same clock in every process of the machine.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// CPU time this process (all its threads) has used, in ns.
fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// Raises the soft open-file limit to the hard one (the 10,000-semaphore measurement holds an
/// fd per payload in each process).
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
}

/// `vkWaitForFences`: `Ok(false)` on timeout.
fn wait_fences(td: &TetherDevice, fences: &[vk::Fence], all: bool, timeout: Duration) -> Result<bool, String> {
    // SAFETY: live fences of this device.
    match unsafe { td.device.wait_for_fences(fences, all, nanos(timeout)) } {
        Ok(()) => Ok(true),
        Err(vk::Result::TIMEOUT) => Ok(false),
        Err(e) => Err(format!("vkWaitForFences ({} fences): {e}", fences.len())),
    }
}

/// Fences destroyed (after the device is idle) when this is dropped.
struct Fences<'a> {
    td: &'a TetherDevice,
    list: Vec<vk::Fence>,
}

impl Drop for Fences<'_> {
    fn drop(&mut self) {
        // SAFETY: a live device; waiting for idle makes sure no queue work uses the fences.
        let _ = unsafe { self.td.device.device_wait_idle() };
        for &f in &self.list {
            self.td.destroy_fence(f);
        }
    }
}

/// `n` fences exportable as inheritable NT handles.
fn exportable_fences(td: &TetherDevice, n: usize) -> Result<Fences<'_>, String> {
    let options = ExportOptions::new(HandleType::OpaqueWin32).inheritable(true);
    let mut fences = Fences {
        td,
        list: Vec::with_capacity(n),
    };
    for _ in 0..n {
        fences.list.push(td.create_exportable_fence(&options)?);
    }
    Ok(fences)
}

/// Memory of this process from `/proc/self/smaps_rollup`, in bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    rss: u64,
    pss: u64,
    shared: u64,
    private: u64,
}

impl Memory {
    fn now() -> Result<Memory, String> {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup")
            .map_err(|e| format!("reading /proc/self/smaps_rollup: {e}"))?;
        let mut m = Memory::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(key), Some(kb)) = (words.next(), words.next().and_then(|w| w.parse::<u64>().ok())) else {
                continue;
            };
            let bytes = kb * 1024;
            match key {
                "Rss:" => m.rss = bytes,
                "Pss:" => m.pss = bytes,
                "Shared_Clean:" | "Shared_Dirty:" => m.shared += bytes,
                "Private_Clean:" | "Private_Dirty:" => m.private += bytes,
                _ => {}
            }
        }
        Ok(m)
    }

    /// Growth from `before` to `self`, per one of `n` objects (bytes; may be negative).
    fn per_object(&self, before: &Memory, n: usize) -> [f64; 4] {
        let d = |a: u64, b: u64| (a as f64 - b as f64) / n.max(1) as f64;
        [
            d(self.rss, before.rss),
            d(self.pss, before.pss),
            d(self.shared, before.shared),
            d(self.private, before.private),
        ]
    }
}

/// Heap bytes in use (glibc's `mallinfo2`: `uordblks + hblkhd`), the precise private cost of
/// what was allocated; `None` where it is not available.
fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[repr(C)]
        struct Mallinfo2 {
            arena: usize,
            ordblks: usize,
            smblks: usize,
            hblks: usize,
            hblkhd: usize,
            usmblks: usize,
            fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            keepcost: usize,
        }
        unsafe extern "C" {
            fn mallinfo2() -> Mallinfo2;
        }
        // SAFETY: glibc's mallinfo2 (glibc >= 2.33) takes nothing and returns a plain struct by
        // value; it only reads the allocator's statistics under its own locks.
        let m = unsafe { mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// A child's memory report line: `memory <rss> <pss> <shared> <private> <heap>` (bytes per
/// object, heap -1 when unknown).
fn memory_line(after: &Memory, before: &Memory, heap: Option<f64>, n: usize) -> String {
    let [rss, pss, shared, private] = after.per_object(before, n);
    format!("memory {rss} {pss} {shared} {private} {}", heap.unwrap_or(-1.0))
}

fn parse_memory_line(line: &str) -> Result<[f64; 5], String> {
    let rest = line
        .strip_prefix("memory ")
        .ok_or_else(|| format!("the child said {line:?}, expected its memory"))?;
    let numbers: Vec<f64> = rest
        .split_whitespace()
        .map(|w| w.parse::<f64>().map_err(|e| format!("{w:?}: {e}")))
        .collect::<Result<_, _>>()?;
    <[f64; 5]>::try_from(numbers).map_err(|_| format!("bad memory line {line:?}"))
}

// ---------------------------------------------------------------------------------------------
// Wait-any over many fences.

/// Lines of the fence measurements' go page.
const LINE_GO: usize = 0;
/// When the child signaled (`CLOCK_MONOTONIC` ns, 64-bit).
const LINE_SIGNALED_AT: usize = 2;

/// How long the fence child waits, once the waiter is registered on the fence's page, before it
/// signals: time for every waiting thread to block in the kernel.
const SETTLE: Duration = Duration::from_micros(200);

/// Starts the child that signals `fence` (through a submit) each time the go word on a new
/// shared page reaches the next iteration number, once a waiter is blocked on the fence.
fn fence_signaler(td: &TetherDevice, fence: vk::Fence, count: u64) -> Result<(Peer, SharedPage), String> {
    let go = SharedPage::memfd()?;
    let page = SharedPage::map(&go)?;
    inheritable(&go)?;
    let handle = td.export_fence_nt(fence, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32)?;
    let mut peer = spawn_child(
        PeerKind::Fence,
        Some(ImportAs::Nt),
        count,
        &[i64::from(go.as_raw_fd()), handle.as_raw_handle() as i64],
        td.vulkan.source,
    )?;
    drop((go, handle));
    peer.expect_line("ready")?;
    Ok((peer, page))
}

/// Per iteration: set the go word and block in `vkWaitForFences` (wait-any) over `n` fences; the
/// child, once this thread is registered on the last fence's page and a moment has passed, takes
/// `CLOCK_MONOTONIC` and submits a signal of that fence. Samples: the return time minus the
/// signal's. Value: the p50 of a call that finds the last fence signaled at once (the per-call
/// cost of `n` fences).
fn fence_wait(cx: &Context<'_>, n: usize) -> Result<Report, String> {
    let td = cx.device()?;
    let fences = exportable_fences(td, n)?;
    let last = *fences.list.last().ok_or("no fences")?;
    let total = cx.plan.total();
    let (mut peer, page) = fence_signaler(td, last, total as u64 + 1)?;
    let go = page.futex(LINE_GO);
    let signaled_at = page.word64(LINE_SIGNALED_AT);
    let mut samples = Vec::with_capacity(total);
    for i in 1..=u32::try_from(total + 1).map_err(|_| "too many iterations")? {
        go.set(i);
        if !wait_fences(td, &fences.list, false, WAIT_LIMIT)? {
            return Err(child_failure(
                &mut peer,
                format!("iteration {i}: no fence signaled within {WAIT_LIMIT:?}"),
            ));
        }
        let returned = monotonic_ns();
        if i as usize > total {
            break; // the last signal stays, for the calls below
        }
        samples.push(returned.saturating_sub(signaled_at.load(Ordering::Acquire)));
        td.reset_fence(last)?;
    }
    let mut calls = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = Instant::now();
        if !wait_fences(td, &fences.list, false, Duration::ZERO)? {
            return Err("the signaled fence reads unsignaled".into());
        }
        calls.push(nanos(start.elapsed()));
    }
    peer.finish()?;
    let call = Summary::of(&mut calls).map_or(0, |s| s.p50);
    Ok(Report {
        samples: samples.split_off(cx.plan.warmup.min(samples.len())),
        values: vec![
            Value::new("fences", n as f64, ""),
            Value::new("call_us", call as f64 / 1e3, "µs"),
        ],
    })
}

pub fn fence_wait_one(cx: &Context<'_>) -> Result<Report, String> {
    fence_wait(cx, 1)
}

pub fn fence_wait_any_1024(cx: &Context<'_>) -> Result<Report, String> {
    fence_wait(cx, ANY_FENCES)
}

/// The same with `n` private (not exportable) fences, the last signaled by a submit from
/// another thread of this process (private payloads: the wait blocks on one futex word).
fn fence_wait_private(cx: &Context<'_>, n: usize) -> Result<Report, String> {
    let td = cx.device()?;
    let mut fences = Fences {
        td,
        list: Vec::with_capacity(n),
    };
    for _ in 0..n {
        fences.list.push(td.create_fence()?);
    }
    let last = *fences.list.last().ok_or("no fences")?;
    let total = cx.plan.total();
    let words = (
        super::Word(std::sync::atomic::AtomicU32::new(0)),
        std::sync::atomic::AtomicU64::new(0),
    );
    let go = super::Futex {
        word: &words.0.0,
        flags: rustix::thread::futex::Flags::PRIVATE,
    };
    let signaled_at = &words.1;
    let mut samples = Vec::with_capacity(total);
    let rounds = u32::try_from(total).map_err(|_| "too many iterations")?;
    std::thread::scope(|scope| {
        let signaler = scope.spawn(move || {
            for i in 1..=rounds {
                if !go.wait_for(i, Some(WAIT_LIMIT)) {
                    return Err(format!("iteration {i}: no go within {WAIT_LIMIT:?}"));
                }
                std::thread::sleep(SETTLE);
                signaled_at.store(monotonic_ns(), Ordering::Release);
                td.submit(td.queues[0], &[], &[], last)?;
            }
            Ok(())
        });
        let waited = (|| {
            for i in 1..=rounds {
                go.set(i);
                if !wait_fences(td, &fences.list, false, WAIT_LIMIT)? {
                    return Err(format!("iteration {i}: no fence signaled within {WAIT_LIMIT:?}"));
                }
                let returned = monotonic_ns();
                samples.push(returned.saturating_sub(signaled_at.load(Ordering::Acquire)));
                td.reset_fence(last)?;
            }
            Ok(())
        })();
        if waited.is_err() {
            // Let the signaler finish its rounds (it times out) rather than hang the scope.
            go.set(u32::MAX);
        }
        let signaled = signaler
            .join()
            .map_err(|_| "the signaling thread panicked".to_string())?;
        waited.and(signaled)
    })?;
    Ok(Report {
        samples: samples.split_off(cx.plan.warmup.min(samples.len())),
        values: vec![Value::new("fences", n as f64, "")],
    })
}

pub fn fence_wait_one_private(cx: &Context<'_>) -> Result<Report, String> {
    fence_wait_private(cx, 1)
}

pub fn fence_wait_any_1024_private(cx: &Context<'_>) -> Result<Report, String> {
    fence_wait_private(cx, ANY_FENCES)
}

/// Per round: this thread blocks in `vkWaitForFences` (wait-any) over 1,024 exportable fences;
/// another thread sets the go word after `blocked` (200 ms) and the child signals the last fence.
/// Samples: the CPU time the whole process (every thread: caller, wait helpers, queue workers)
/// used during the call. Values: the largest share of the wall time used while blocked (from
/// 20 ms into the wait until the go), and over the whole call (setting up and tearing down the
/// wait on 1,024 shared futex words included).
pub fn fence_wait_any_1024_blocked(cx: &Context<'_>) -> Result<Report, String> {
    let td = cx.device()?;
    let blocked = Duration::from_millis(if cx.quick { 50 } else { 200 });
    let settled = Duration::from_millis(20);
    let fences = exportable_fences(td, ANY_FENCES)?;
    let last = *fences.list.last().ok_or("no fences")?;
    let rounds = cx.plan.iters;
    let (mut peer, page) = fence_signaler(td, last, rounds as u64)?;
    let go = page.futex(LINE_GO);
    let mut samples = Vec::with_capacity(rounds);
    let (mut worst_blocked, mut worst_call, mut wall_total) = (0.0f64, 0.0f64, Duration::ZERO);
    for i in 1..=u32::try_from(rounds).map_err(|_| "too many iterations")? {
        let (cpu, wall, steady, signaled) = std::thread::scope(|scope| {
            let sleeper = scope.spawn(|| {
                std::thread::sleep(settled);
                let (c0, t0) = (process_cpu_ns(), Instant::now());
                std::thread::sleep(blocked - settled);
                let steady = (process_cpu_ns().saturating_sub(c0), t0.elapsed());
                go.set(i);
                steady
            });
            let cpu0 = process_cpu_ns();
            let start = Instant::now();
            let signaled = wait_fences(td, &fences.list, false, WAIT_LIMIT + blocked);
            let (cpu, wall) = (process_cpu_ns().saturating_sub(cpu0), start.elapsed());
            (cpu, wall, sleeper.join(), signaled)
        });
        let (steady_cpu, steady_wall) = steady.map_err(|_| "the sleeping thread panicked".to_string())?;
        if !signaled? {
            return Err(child_failure(
                &mut peer,
                format!("round {i}: no fence signaled within {:?}", WAIT_LIMIT + blocked),
            ));
        }
        if wall < blocked / 2 {
            return Err(format!(
                "round {i}: the wait returned after {wall:?}, before the signal"
            ));
        }
        worst_blocked = worst_blocked.max(steady_cpu as f64 / steady_wall.as_nanos().max(1) as f64);
        worst_call = worst_call.max(cpu as f64 / wall.as_nanos().max(1) as f64);
        wall_total += wall;
        samples.push(cpu);
        td.reset_fence(last)?;
    }
    peer.finish()?;
    Ok(Report {
        samples,
        values: vec![
            Value::new("cpu_percent_blocked", worst_blocked * 100.0, "%"),
            Value::new("cpu_percent_call", worst_call * 100.0, "%"),
            Value::new("wall_ms", wall_total.as_secs_f64() * 1e3 / rounds.max(1) as f64, "ms"),
            Value::new("fences", ANY_FENCES as f64, ""),
        ],
    })
}

/// The child of the fence measurements: imports the fence, then per iteration waits for the go
/// word and submits an empty batch that signals the fence.
fn child_fence(td: &TetherDevice, link: &mut ParentLink, handles: &[i64], count: u64) -> Result<(), String> {
    let (go_raw, fence_raw) = (
        i32::try_from(handles[0]).map_err(|_| "bad fd")?,
        i32::try_from(handles[1]).map_err(|_| "bad handle")?,
    );
    // SAFETY: the parent made these fds inheritable for this process to own.
    let (go_fd, fence_fd) = unsafe { (OwnedFd::from_raw_fd(go_raw), OwnedFd::from_raw_fd(fence_raw)) };
    let page = SharedPage::map(&go_fd)?;
    drop(go_fd);
    // The fence's page, to see the waiter register (offset 76: the waiter count).
    let fence_page = SharedPage::map(&fence_fd)?;
    let registered = fence_page.word(76);
    let fence = td.create_fence()?;
    td.import_fence_win32(
        fence,
        vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32,
        fence_fd.as_raw_fd() as isize,
        None,
    )?;
    drop(fence_fd); // CloseHandle: the import keeps its own duplicate.
    let (go, signaled_at) = (page.futex(LINE_GO), page.word64(LINE_SIGNALED_AT));
    link.line("ready")?;
    let count = u32::try_from(count).map_err(|_| "--count too large")?;
    for i in 1..=count {
        // The blocked measurement signals after 200 ms.
        if !go.wait_for(i, Some(WAIT_LIMIT + Duration::from_secs(1))) {
            return Err(format!("iteration {i}: no go within {WAIT_LIMIT:?}"));
        }
        let deadline = Instant::now() + WAIT_LIMIT;
        while registered.load(Ordering::Acquire) & !(1 << 31) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        std::thread::sleep(SETTLE);
        signaled_at.store(monotonic_ns(), Ordering::Release);
        td.submit(td.queues[0], &[], &[], fence)?;
    }
    // SAFETY: a live device; afterwards no queue work uses the fence.
    let _ = unsafe { td.device.device_wait_idle() };
    td.destroy_fence(fence);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 10,000 shared timeline semaphores.

/// Semaphores per SCM_RIGHTS message.
const HANDLES_PER_MESSAGE: usize = 200;

/// `n` (10,000) exportable timeline semaphores, their NT handles sent to a child over a Unix
/// socket (SCM_RIGHTS) and imported there (`vkImportSemaphoreWin32HandleKHR`). Samples: per
/// semaphore, `vkSignalSemaphore(1)` here until `vkWaitSemaphores(2)` returns here, the child
/// having waited for 1 and signaled 2. Values: per semaphore, the growth of RSS, PSS, shared and
/// private memory (`/proc/self/smaps_rollup`) in each process, from before the first semaphore
/// existed to after the last round trip, and the heap bytes allocated (`mallinfo2`).
pub fn timeline_10000_xproc(cx: &Context<'_>) -> Result<Report, String> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let td = cx.device()?;
    let n = if cx.quick {
        cx.plan.iters.min(1_000)
    } else {
        cx.plan.iters
    };
    raise_fd_limit();
    let (ours, theirs) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .map_err(|e| format!("socketpair: {e}"))?;
    inheritable(&theirs)?;
    let mut peer = spawn_child(
        PeerKind::Semaphores,
        Some(ImportAs::Nt),
        n as u64,
        &[i64::from(theirs.as_raw_fd())],
        td.vulkan.source,
    )?;
    drop(theirs);
    peer.expect_line("ready")?;

    let mut semaphores: Vec<vk::Semaphore> = Vec::with_capacity(n);
    let mut samples: Vec<u64> = Vec::with_capacity(n);
    let (before, heap_before) = (Memory::now()?, heap_in_use());
    let result = (|| {
        let ty = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32;
        let options = ExportOptions::new(HandleType::OpaqueWin32);
        for _ in 0..n {
            semaphores.push(td.create_exportable_semaphore(SemaphoreKind::Timeline, &options)?);
        }
        for chunk in semaphores.chunks(HANDLES_PER_MESSAGE) {
            let handles = chunk
                .iter()
                .map(|&s| td.export_semaphore_nt(s, ty))
                .collect::<Result<Vec<_>, _>>()?;
            let fds: Vec<BorrowedFd<'_>> = handles.iter().map(|h| h.as_fd()).collect();
            tether_handles::nt::send_handles(ours.as_fd(), &fds, b"s").map_err(|e| format!("sending handles: {e}"))?;
        }
        peer.expect_line("imported")?;
        for (k, &s) in semaphores.iter().enumerate() {
            let start = Instant::now();
            td.signal(s, 1)?;
            if !td.wait_value(s, 2, WAIT_LIMIT)? {
                return Err(child_failure(
                    &mut peer,
                    format!("semaphore {k}: no answer from the child within {WAIT_LIMIT:?}"),
                ));
            }
            samples.push(nanos(start.elapsed()));
        }
        let (after, heap_after) = (Memory::now()?, heap_in_use());
        let child = parse_memory_line(&peer.read_line()?)?;
        for &s in &semaphores {
            if td.counter(s)? != 2 {
                return Err("a semaphore's counter is not 2 after the round trip".into());
            }
        }
        Ok((after, heap_after, child))
    })();
    for s in semaphores.drain(..) {
        td.destroy_semaphore(s);
    }
    let (after, heap_after, child) = result?;
    peer.finish()?;
    let [rss, pss, shared, private] = after.per_object(&before, n);
    let heap = match (heap_before, heap_after) {
        (Some(b), Some(a)) => (a as f64 - b as f64) / n.max(1) as f64,
        _ => -1.0,
    };
    Ok(Report {
        samples,
        values: vec![
            Value::new("semaphores", n as f64, ""),
            Value::new("shared_b", shared, "B"),
            Value::new("private_b", private, "B"),
            Value::new("heap_b", heap, "B"),
            Value::new("rss_b", rss, "B"),
            Value::new("pss_b", pss, "B"),
            Value::new("child_shared_b", child[2], "B"),
            Value::new("child_private_b", child[3], "B"),
            Value::new("child_heap_b", child[4], "B"),
            Value::new("child_rss_b", child[0], "B"),
            Value::new("child_pss_b", child[1], "B"),
        ],
    })
}

/// The child of `timeline_10000_xproc`: receives and imports `count` NT handles, plays the
/// round trips, reports its memory growth per semaphore.
fn child_semaphores(td: &TetherDevice, link: &mut ParentLink, handles: &[i64], count: u64) -> Result<(), String> {
    let raw = i32::try_from(handles[0]).map_err(|_| "bad fd")?;
    // SAFETY: the parent made this socket inheritable for this process to own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let n = usize::try_from(count).map_err(|_| "--count too large")?;
    raise_fd_limit();
    let mut semaphores: Vec<vk::Semaphore> = Vec::with_capacity(n);
    let mut buf = [0u8; 16];
    let (before, heap_before) = (Memory::now()?, heap_in_use());
    link.line("ready")?;
    let result = (|| {
        while semaphores.len() < n {
            let (fds, _) = tether_handles::nt::recv_handles(sock.as_fd(), HANDLES_PER_MESSAGE, &mut buf)
                .map_err(|e| format!("receiving handles: {e}"))?;
            if fds.is_empty() {
                return Err(format!("the parent sent {} of {n} handles", semaphores.len()));
            }
            for fd in fds {
                let s = td.create_import_target(SemaphoreKind::Timeline)?;
                semaphores.push(s);
                td.import_semaphore_win32(
                    s,
                    vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
                    fd.as_raw_fd() as isize,
                    None,
                )?;
                drop(fd); // CloseHandle: the import keeps its own duplicate.
            }
        }
        link.line("imported")?;
        for &s in &semaphores {
            wait_or_fail(td, s, 1)?;
            td.signal(s, 2)?;
        }
        let (after, heap_after) = (Memory::now()?, heap_in_use());
        let heap = heap_before
            .zip(heap_after)
            .map(|(b, a)| (a as f64 - b as f64) / n.max(1) as f64);
        link.line(&memory_line(&after, &before, heap, n))
    })();
    for s in semaphores {
        td.destroy_semaphore(s);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Many waiters on one payload.

/// Processes and threads of `wake_256_waiters` (`--quick`: 2 processes).
const WAITER_PROCESSES: usize = 8;
const WAITER_THREADS: usize = 32;

/// Control page lines of the waiter measurements (futex words; see [`wake_waiters`]).
const LINE_COUNTED: usize = 0;
const LINE_WOKEN: usize = 1;
const LINE_RELEASE: usize = 2;
const LINE_TOTAL: usize = 3;
/// The word the raw futex baseline waits on.
const LINE_RAW: usize = 4;

/// Blocks until a counter word reaches `target`; `Err` after [`WAIT_LIMIT`].
fn wait_count(word: super::Futex<'_>, target: u32, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let now = word.word.load(Ordering::Acquire);
        if now >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("only {now} of {target} {what} within {WAIT_LIMIT:?}"));
        }
        word.wait_until_changed(now, Duration::from_millis(10));
    }
}

/// `processes` children with `threads` threads each wait on one exportable timeline semaphore
/// (imported by inherited NT handle). Round r: this process opens the round (a futex word);
/// every thread counts itself and calls `vkWaitSemaphores(>= r)`; once all have counted and are
/// registered on the payload (its page's waiter count, read here) and a millisecond has passed
/// for the last one to block, this process takes `CLOCK_MONOTONIC` and calls
/// `vkSignalSemaphore(r)`. Each thread takes `CLOCK_MONOTONIC` when its wait returns, counts
/// itself as woken and waits for the next round, so a woken thread's next wait does not delay
/// the others' wake-ups. Samples: wake-up times minus the signal's (rounds after the warm-up).
fn wake_waiters(cx: &Context<'_>, processes: usize, threads: usize, raw: bool) -> Result<Report, String> {
    let td = cx.device()?;
    let (rounds, warmup) = (cx.plan.iters, cx.plan.warmup);
    let total_rounds = rounds + warmup;
    let waiters = processes * threads;
    let all = u32::try_from(waiters).map_err(|_| "too many waiters")?;
    let ty = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32;
    let options = ExportOptions::new(HandleType::OpaqueWin32).inheritable(true);
    let semaphore = td.create_exportable_semaphore(SemaphoreKind::Timeline, &options)?;
    let result = (|| {
        let handle = td.export_semaphore_nt(semaphore, ty)?;
        // The payload's own page, mapped here to read its waiter count (offset 76, see
        // tether_payload's page layout): how we know every waiter is about to block.
        let payload = SharedPage::map(handle.as_fd())?;
        let control = SharedPage::memfd()?;
        let page = SharedPage::map(&control)?;
        inheritable(&control)?;
        page.futex(LINE_TOTAL).set(all);
        let mut handles = vec![i64::from(control.as_raw_fd())];
        if !raw {
            handles.push(handle.as_raw_handle() as i64);
        }
        let mut peers = Vec::with_capacity(processes);
        for _ in 0..processes {
            peers.push(spawn_child_with(
                PeerKind::Waiters,
                Some(ImportAs::Nt),
                total_rounds as u64,
                &handles,
                td.vulkan.source,
                &["--threads".into(), threads.to_string().into()],
            )?);
        }
        drop((control, handle));
        for p in &mut peers {
            p.expect_line("ready")?;
        }
        let (counted, woken, release) = (
            page.futex(LINE_COUNTED),
            page.futex(LINE_WOKEN),
            page.futex(LINE_RELEASE),
        );
        let registered = payload.word(76);
        let mut signaled_at = Vec::with_capacity(total_rounds);
        for r in 1..=total_rounds {
            let target = all * r as u32;
            release.set(r as u32);
            release.wake_all();
            wait_count(counted, target, &format!("waits started in round {r}"))?;
            let deadline = Instant::now() + WAIT_LIMIT;
            while !raw && (registered.load(Ordering::Acquire) & !(1 << 31)) < all {
                if Instant::now() >= deadline {
                    return Err(format!("round {r}: the waiters did not block"));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(Duration::from_millis(1));
            signaled_at.push(monotonic_ns());
            if raw {
                let word = page.futex(LINE_RAW);
                word.word.store(r as u32, Ordering::Release);
                word.wake_all();
            } else {
                td.signal(semaphore, r as u64)?;
            }
            wait_count(woken, target, &format!("waiters woken in round {r}"))?;
        }
        let mut samples = Vec::with_capacity(rounds * waiters);
        let mut woke = 0usize;
        for p in peers {
            let out = p.finish()?;
            for line in out.lines() {
                let Some(rest) = line.strip_prefix("woke ") else {
                    continue;
                };
                let (r, t) = rest.split_once(' ').ok_or_else(|| format!("bad line {line:?}"))?;
                let r: usize = r.parse().map_err(|e| format!("{line:?}: {e}"))?;
                let t: u64 = t.parse().map_err(|e| format!("{line:?}: {e}"))?;
                let at = *signaled_at
                    .get(r.wrapping_sub(1))
                    .ok_or_else(|| format!("{line:?}: no such round"))?;
                if t < at {
                    return Err(format!("a waiter of round {r} returned before the signal"));
                }
                woke += 1;
                if r > warmup {
                    samples.push(t - at);
                }
            }
        }
        if woke != waiters * total_rounds {
            return Err(format!(
                "{woke} wake-ups reported, expected {} ({waiters} waiters x {total_rounds} rounds)",
                waiters * total_rounds
            ));
        }
        let mut sorted = samples.clone();
        let p99 = Summary::of(&mut sorted).map_or(0, |s| s.p99);
        Ok(Report {
            samples,
            values: vec![
                Value::new("processes", processes as f64, ""),
                Value::new("woken", (woke / total_rounds.max(1)) as f64, ""),
                Value::new("of", waiters as f64, ""),
                Value::new("rounds", rounds as f64, ""),
                Value::new("p99_ms", p99 as f64 / 1e6, "ms"),
            ],
        })
    })();
    // SAFETY: a live device; afterwards no queue work uses the semaphore.
    let _ = unsafe { td.device.device_wait_idle() };
    td.destroy_semaphore(semaphore);
    result
}

pub fn wake_1_waiter(cx: &Context<'_>) -> Result<Report, String> {
    wake_waiters(cx, 1, 1, false)
}

fn waiter_processes(cx: &Context<'_>) -> usize {
    if cx.quick { 2 } else { WAITER_PROCESSES }
}

pub fn wake_256_waiters(cx: &Context<'_>) -> Result<Report, String> {
    wake_waiters(cx, waiter_processes(cx), WAITER_THREADS, false)
}

pub fn futex_wake_256_waiters(cx: &Context<'_>) -> Result<Report, String> {
    wake_waiters(cx, waiter_processes(cx), WAITER_THREADS, true)
}

/// The child of the waiter measurements: `threads` threads, each waiting for every round, on the
/// imported timeline semaphore (`td` given) or on the control page's raw futex word.
fn child_waiters(
    td: Option<&TetherDevice>,
    link: &mut ParentLink,
    handles: &[i64],
    rounds: u64,
    threads: usize,
) -> Result<(), String> {
    let control_raw = i32::try_from(handles[0]).map_err(|_| "bad fd")?;
    // SAFETY: the parent made this fd inheritable for this process to own.
    let control = unsafe { OwnedFd::from_raw_fd(control_raw) };
    let page = SharedPage::map(&control)?;
    drop(control);
    let semaphore = match (td, handles.get(1)) {
        (Some(td), Some(&h)) => {
            let raw = i32::try_from(h).map_err(|_| "bad handle")?;
            // SAFETY: the parent made this fd inheritable for this process to own.
            let handle = unsafe { OwnedFd::from_raw_fd(raw) };
            let s = td.create_import_target(SemaphoreKind::Timeline)?;
            let imported = td.import_semaphore_win32(
                s,
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
                handle.as_raw_fd() as isize,
                None,
            );
            drop(handle); // CloseHandle: the import keeps its own duplicate.
            if let Err(e) = imported {
                td.destroy_semaphore(s);
                return Err(e);
            }
            Some((td, s))
        }
        (None, None) => None,
        _ => return Err("a semaphore handle needs a device".into()),
    };
    let (counted, woken, release) = (
        page.futex(LINE_COUNTED),
        page.futex(LINE_WOKEN),
        page.futex(LINE_RELEASE),
    );
    let raw_word = page.futex(LINE_RAW);
    let all = page.futex(LINE_TOTAL).word.load(Ordering::Acquire);
    let woke = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut woke = Vec::with_capacity(rounds as usize);
                    for r in 1..=rounds {
                        let round = u32::try_from(r).map_err(|_| "too many rounds")?;
                        if !release.wait_for(round, Some(WAIT_LIMIT)) {
                            return Err(format!("round {r} was not opened within {WAIT_LIMIT:?}"));
                        }
                        if counted.word.fetch_add(1, Ordering::AcqRel) + 1 == all * round {
                            counted.wake_all();
                        }
                        match semaphore {
                            Some((td, s)) => wait_or_fail(td, s, r)?,
                            None => {
                                if !raw_word.wait_for(round, Some(WAIT_LIMIT)) {
                                    return Err(format!("round {r}: no wake-up within {WAIT_LIMIT:?}"));
                                }
                            }
                        }
                        woke.push((r, monotonic_ns()));
                        if woken.word.fetch_add(1, Ordering::AcqRel) + 1 == all * round {
                            woken.wake_all();
                        }
                    }
                    Ok::<_, String>(woke)
                })
            })
            .collect();
        link.line("ready")?;
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "a waiter thread panicked".to_string())?)
            .collect::<Result<Vec<_>, String>>()
    });
    if let Some((td, s)) = semaphore {
        td.destroy_semaphore(s);
    }
    for (r, t) in woke?.iter().flatten() {
        link.line(&format!("woke {r} {t}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The children.

/// Runs the child side of the measurements in this module.
pub fn run_child(choice: Choice, link: &mut ParentLink, args: &ChildArgs, handles: &[i64]) -> Result<(), String> {
    if args.kind == PeerKind::Waiters && handles.len() == 1 {
        // The raw futex baseline: no device.
        return child_waiters(None, link, handles, args.count, args.threads);
    }
    let td = TetherDevice::open(choice)?;
    match args.kind {
        PeerKind::Fence => child_fence(&td, link, handles, args.count),
        PeerKind::Semaphores => child_semaphores(&td, link, handles, args.count),
        PeerKind::Waiters => child_waiters(Some(&td), link, handles, args.count, args.threads),
        other => Err(format!("{other:?} is not a scale measurement's child")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_lines_round_trip() {
        let before = Memory {
            rss: 1000,
            pss: 500,
            shared: 100,
            private: 900,
        };
        let after = Memory {
            rss: 41_000,
            pss: 20_500,
            shared: 40_100,
            private: 900 + 5_000,
        };
        let line = memory_line(&after, &before, Some(512.0), 10);
        assert_eq!(
            parse_memory_line(&line).unwrap(),
            [4000.0, 2000.0, 4000.0, 500.0, 512.0]
        );
        assert!(parse_memory_line("ready").is_err());
    }

    #[test]
    fn own_memory_reads() {
        let m = Memory::now().unwrap();
        assert!(m.rss > 0 && m.rss >= m.private);
    }
}

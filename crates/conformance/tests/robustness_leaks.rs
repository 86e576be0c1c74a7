//! No leaks (issue 6): create / export / import / close / destroy cycles of every handle type
//! leave the process's fds, mappings and resident memory where they were, and the broker's fds
//! and memory too.
//!
//! One cycle makes, for each of these, an exportable object, exports it, imports the handle into
//! a new object (and waits where the type needs a signal), closes the handle and destroys both:
//!
//! | handle type | objects |
//! |---|---|
//! | `OPAQUE_FD` | fence, binary semaphore, timeline semaphore |
//! | `SYNC_FD` | fence, binary semaphore (signaled by a submit, exported, imported temporarily, waited) |
//! | `OPAQUE_WIN32` (NT handle, `CloseHandle`) | fence, binary semaphore, timeline semaphore, and a named timeline imported by name |
//! | `OPAQUE_WIN32_KMT` (through the broker) | fence, binary semaphore, timeline semaphore |
//! | `D3D12_FENCE` | timeline semaphore |
//!
//! The cycles run in a child process (so nothing else of the test binary moves its numbers):
//! a warm-up of a tenth of them (at least 200: allocator pools, slab pages, the broker
//! connection and the queue threads reach their steady state), the measurement, the cycles, the
//! measurement again. Allowed afterwards:
//!
//! * open fds (`/proc/self/fd`): exactly as many as before;
//! * mappings (`/proc/self/maps` lines): at most [`MAPPING_SLACK`] more (the allocator may map a
//!   new arena or split one; a leaked payload page would be one mapping per cycle);
//! * `VmRSS`: at most [`RSS_SLACK_KIB`] more (allocator noise: freed memory kept in its pools);
//! * the broker (`/proc/<pid>/fd` and `VmRSS`): exactly as many fds, at most
//!   [`BROKER_RSS_SLACK_KIB`] more memory.
//!
//! `TETHER_LEAK_CYCLES` sets the number of cycles of `leaks::icd` (in process; default 10,000,
//! 100,000 for the full run); `leaks::layer` (the Win32 types through
//! `VK_LAYER_TETHER_win32_sync` over the fd-only ICD; there the fd types are the driver's own)
//! runs a fifth as many, at least 1,000. Each runs against a broker of its own.

#[path = "robustness/common.rs"]
mod common;

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ash::vk;
use common::{SyncDevice, env_count, vm_rss_kib};
use tether_conformance::external::{child_main, mapping_count, open_fd_count};
use tether_conformance::harness::{self, NO_ROUTE, Role, Route, Target};
use tether_conformance::win32::{
    ExportAttributes, NativeHandle, Win32HandleType, broker_pid, private_runtime_dir, route_from_name, run_child,
    socket_dir, unique_name,
};
use tether_conformance::{Batch, tests};

/// More mappings allowed after the cycles than before.
const MAPPING_SLACK: usize = 8;
/// More resident memory allowed after the cycles than before (KiB).
const RSS_SLACK_KIB: u64 = 4096;
/// More resident memory allowed for the broker (KiB).
const BROKER_RSS_SLACK_KIB: u64 = 2048;

const ROLES: &[Role] = &[Role {
    name: "cycles",
    setup_environment: true,
    run: role_cycles,
}];

fn main() -> ExitCode {
    let cycles = env_count("TETHER_LEAK_CYCLES", 10_000);
    // SAFETY: nothing has started a thread yet.
    unsafe { common::raise_watchdog(120 + cycles / 50) };
    tether_conformance::win32::main(ROLES, || harness::group("leaks", tests!(NO_ROUTE => [icd, layer])))
}

fn icd(_route: Route) {
    run(Route::InProcess, None);
}

fn layer(_route: Route) {
    harness::require_loader();
    run(Route::Loader, Some(Target::LayerOverFdIcd));
}

fn run(route: Route, target: Option<Target>) {
    let cycles = env_count("TETHER_LEAK_CYCLES", 10_000);
    // Through the layer a fifth as many (at least 1,000): the same code below it, and CI time.
    let cycles = if target.is_some() {
        (cycles / 5).max(1000.min(cycles))
    } else {
        cycles
    };
    // A broker of its own: the other trial's connections must not move its numbers.
    let runtime = tether_conformance::win32::RuntimeDir::new("tether-leaks");
    let mut cmd = harness::child_command("cycles");
    cmd.arg(route.name())
        .arg(cycles.to_string())
        .env("XDG_RUNTIME_DIR", &runtime.path);
    if let Some(t) = target {
        cmd.env(harness::TARGET_ENV, t.name());
    }
    let limit = Duration::from_secs(120 + cycles / 20);
    let output = run_child(&mut cmd, limit);
    output.assert_success(&format!("{cycles} leak cycles on {route}"));
    eprintln!("{}", output.stdout.trim_end());
}

/// What is measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    fds: usize,
    mappings: usize,
    rss_kib: u64,
    broker_fds: usize,
    broker_rss_kib: u64,
}

/// The broker's pid, found once before the measurements (finding it takes a connection of its
/// own, which the broker must have closed before its fds are counted).
static BROKER_PID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

fn broker_stats() -> (usize, u64) {
    let Some(pid) = *BROKER_PID.get_or_init(|| private_runtime_dir().and_then(|d| broker_pid(&socket_dir(&d)))) else {
        return (0, 0);
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

fn sample() -> Sample {
    let (broker_fds, broker_rss_kib) = broker_stats();
    Sample {
        fds: open_fd_count(),
        mappings: mapping_count(),
        rss_kib: vm_rss_kib(),
        broker_fds,
        broker_rss_kib,
    }
}

/// One cycle of every handle type (see the module docs).
struct Cycle<'a> {
    d: &'a SyncDevice,
    /// Whether the D3D12 type is offered (through the layer it needs the driver's timelines).
    d3d12: bool,
}

const FD_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_FD;
const SYNC_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::SYNC_FD;
const FD_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
const SYNC_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD;
const PERMANENT_F: vk::FenceImportFlags = vk::FenceImportFlags::empty();
const PERMANENT_S: vk::SemaphoreImportFlags = vk::SemaphoreImportFlags::empty();

impl Cycle<'_> {
    fn owned(&self, raw: Result<i32, vk::Result>, what: &str) -> Option<OwnedFd> {
        let raw = raw.unwrap_or_else(|e| panic!("{what}: {e}; {}", self.d.messages()));
        // SAFETY: a successful export returns a new fd the caller owns (or -1 for SYNC_FD).
        (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
    }

    fn opaque_fd(&self) {
        let d = self.d;
        let f = d.exportable_fence(FD_FENCE);
        let fd = self
            .owned(d.fd.get_fence_fd(f, FD_FENCE), "OPAQUE_FD fence export")
            .expect("an fd");
        let g = d.fence(false);
        assert_eq!(
            d.fd.import_fence_raw(g, FD_FENCE, PERMANENT_F, fd.into_raw_fd()),
            vk::Result::SUCCESS
        );
        d.destroy_fence(g);
        d.destroy_exportable_fence(f);
        for timeline in [false, true] {
            let s = if timeline {
                d.exportable_timeline(FD_SEMAPHORE, 3, None)
            } else {
                d.exportable_semaphore(FD_SEMAPHORE)
            };
            let fd = self
                .owned(d.fd.get_semaphore_fd(s, FD_SEMAPHORE), "OPAQUE_FD semaphore export")
                .expect("an fd");
            let t = if timeline {
                d.timeline_semaphore(0)
            } else {
                d.binary_semaphore()
            };
            assert_eq!(
                d.fd.import_semaphore_raw(t, FD_SEMAPHORE, PERMANENT_S, fd.into_raw_fd()),
                vk::Result::SUCCESS
            );
            if timeline {
                assert_eq!(d.counter(t), 3);
            }
            d.destroy_semaphore(t);
            d.destroy_exportable_semaphore(s);
        }
    }

    fn sync_fd(&self) {
        let d = self.d;
        let f = d.exportable_fence(SYNC_FENCE);
        d.submit_signal_fence(f);
        let fd = self.owned(d.fd.get_fence_fd(f, SYNC_FENCE), "SYNC_FD fence export");
        let g = d.fence(false);
        let raw = fd.map_or(-1, IntoRawFd::into_raw_fd);
        assert_eq!(
            d.fd.import_fence_raw(g, SYNC_FENCE, vk::FenceImportFlags::TEMPORARY, raw),
            vk::Result::SUCCESS
        );
        d.wait_fence(g);
        d.destroy_fence(g);
        // (The SYNC_FD export took the signal from `f`, as a reset would: its signal operation is
        // complete once `g` signaled.)
        d.destroy_exportable_fence(f);

        let s = d.exportable_semaphore(SYNC_SEMAPHORE);
        d.submit_signal_semaphore(s);
        let fd = self.owned(d.fd.get_semaphore_fd(s, SYNC_SEMAPHORE), "SYNC_FD semaphore export");
        let t = d.binary_semaphore();
        let raw = fd.map_or(-1, IntoRawFd::into_raw_fd);
        assert_eq!(
            d.fd.import_semaphore_raw(t, SYNC_SEMAPHORE, vk::SemaphoreImportFlags::TEMPORARY, raw),
            vk::Result::SUCCESS
        );
        let done = d.fence(false);
        assert_eq!(d.submit(0, &[Batch::new().wait(t, 0)], done), vk::Result::SUCCESS);
        d.wait_fence(done);
        d.destroy_fence(done);
        d.destroy_semaphore(t);
        d.destroy_exportable_semaphore(s);
    }

    fn win32(&self, ty: Win32HandleType) {
        let d = self.d;
        if ty != Win32HandleType::D3d12Fence {
            let f = d.exportable_fence(ty.fence_bit());
            let h = d.export_fence(f, ty);
            let g = d.fence(false);
            d.import_fence(g, ty, tether_conformance::win32::Permanence::Permanent, &h);
            h.close();
            d.destroy_fence(g);
            d.destroy_exportable_fence(f);
            let s = d.exportable_semaphore(ty.semaphore_bit());
            let h = d.export_semaphore(s, ty);
            let t = d.binary_semaphore();
            d.import_semaphore(t, ty, tether_conformance::win32::Permanence::Permanent, &h);
            h.close();
            d.destroy_semaphore(t);
            d.destroy_exportable_semaphore(s);
        }
        if ty == Win32HandleType::D3d12Fence && !self.d3d12 {
            return;
        }
        let s = d.exportable_timeline(ty.semaphore_bit(), 5, None);
        let h = d.export_semaphore(s, ty);
        let t = d.timeline_semaphore(0);
        d.import_semaphore(t, ty, tether_conformance::win32::Permanence::Permanent, &h);
        assert_eq!(d.counter(t), 5);
        h.close();
        d.destroy_semaphore(t);
        d.destroy_exportable_semaphore(s);
    }

    fn named(&self) {
        let d = self.d;
        let name = unique_name("leak");
        let bit = Win32HandleType::OpaqueWin32.semaphore_bit();
        let s = d.exportable_timeline(bit, 9, Some(&ExportAttributes::named(&name)));
        let h: NativeHandle = d.export_semaphore(s, Win32HandleType::OpaqueWin32);
        let t = d.timeline_semaphore(0);
        let units: Vec<u16> = name.encode_utf16().collect();
        assert_eq!(
            d.import_semaphore_by_name(t, bit, PERMANENT_S, &units),
            vk::Result::SUCCESS,
            "{}",
            d.messages()
        );
        assert_eq!(d.counter(t), 9);
        h.close();
        d.destroy_semaphore(t);
        d.destroy_exportable_semaphore(s);
    }

    fn run(&self) {
        self.opaque_fd();
        self.sync_fd();
        self.win32(Win32HandleType::OpaqueWin32);
        self.win32(Win32HandleType::OpaqueWin32Kmt);
        self.win32(Win32HandleType::D3d12Fence);
        self.named();
    }
}

/// `cycles <route> <n>`.
fn role_cycles(args: &[String]) -> i32 {
    child_main(|| {
        let [route, n] = args else {
            panic!("cycles <route> <n>, got {args:?}")
        };
        let n: u64 = n.parse().expect("a cycle count");
        let d = SyncDevice::new(route_from_name(route));
        let d3d12 = d
            .try_exportable_semaphore(
                Win32HandleType::D3d12Fence.semaphore_bit(),
                vk::SemaphoreType::TIMELINE,
                0,
                None,
            )
            .map(|s| d.destroy_exportable_semaphore(s))
            .is_ok();
        d.log().take();
        let cycle = Cycle { d: &d, d3d12 };
        cycle.run();
        let _ = broker_stats();
        for _ in 0..(n / 10).max(200) {
            cycle.run();
        }
        let before = sample();
        let start = Instant::now();
        for _ in 0..n {
            cycle.run();
        }
        let took = start.elapsed();
        d.log().take();
        let after = sample();
        let report = format!(
            "{n} cycles on {route}{} in {took:.1?} ({:.0} µs/cycle): fds {} -> {}, mappings {} -> {}, VmRSS {} -> {} KiB; broker fds {} -> {}, broker VmRSS {} -> {} KiB",
            if harness::target().through_layer() {
                " (through the layer)"
            } else {
                ""
            },
            took.as_secs_f64() * 1e6 / n.max(1) as f64,
            before.fds,
            after.fds,
            before.mappings,
            after.mappings,
            before.rss_kib,
            after.rss_kib,
            before.broker_fds,
            after.broker_fds,
            before.broker_rss_kib,
            after.broker_rss_kib,
        );
        println!("{report}");
        assert_eq!(
            after.fds,
            before.fds,
            "open fds changed: {report}\n{:?}",
            common::fd_listing()
        );
        assert!(
            after.mappings <= before.mappings + MAPPING_SLACK,
            "mappings grew: {report}"
        );
        assert!(
            after.rss_kib <= before.rss_kib + RSS_SLACK_KIB,
            "resident memory grew: {report}"
        );
        assert_eq!(
            after.broker_fds, before.broker_fds,
            "the broker's fds changed: {report}"
        );
        assert!(
            after.broker_rss_kib <= before.broker_rss_kib + BROKER_RSS_SLACK_KIB,
            "the broker's resident memory grew: {report}"
        );
    })
}

//! Peers that misbehave (issue 6): a hostile process that scribbles over shared payload pages,
//! and peers that die — the exporter, an importer in the middle of a wait, the broker.
//!
//! * `hostile::scribbler`: a child process gets OPAQUE_FD / D3D12 NT fds of a fence, a binary
//!   semaphore, a timeline and a D3D12 fence by inheritance, maps the pages writable itself
//!   (`mmap` of the fd with rustix, outside Vulkan) and writes random bytes over them in a loop —
//!   mostly into the value / futex word / waiter count, sometimes anywhere in the page —, wakes
//!   their futexes at random, now and then punches the page out of the file (`fallocate`) and
//!   tries to freeze it with `F_SEAL_WRITE` / `F_SEAL_FUTURE_WRITE` (refused: the creator sealed
//!   the seals), and meanwhile imports the timeline through Vulkan and waits on it itself. The parent signals and waits through Vulkan on every one of them from several
//!   threads (host waits with timeouts of 0 to 50 ms, wait-any over two pages, queue submits
//!   that signal and wait the binary semaphore and the fence), and on a private timeline that no
//!   peer can reach. Checked: no crash anywhere (both processes exit cleanly), every wait returns
//!   within its timeout plus [`common::SLACK`] with SUCCESS or TIMEOUT (no timing claim beyond
//!   "it returned"), no call gives `VK_ERROR_UNKNOWN`, and the private timeline is undisturbed.
//!   Afterwards the parent repairs the binary page (a queue wait may be blocked forever on a
//!   signal the scribbler erased: the application's problem, not a hang of the driver) and tears
//!   down normally. `TETHER_HOSTILE_SECONDS` (default 2) sets how long it scribbles.
//! * `dying::exporter_killed_while_importers_wait`: an exporter process registers a named fence,
//!   a named timeline and their KMT values with a broker of its own (a private runtime
//!   directory); two importer processes import them by name and by KMT value and start waits;
//!   the exporter is SIGKILLed. The importers' waits end by timeout; their imported payloads keep
//!   working; the broker drops the names and KMT values (new lookups fail with
//!   `VK_ERROR_INVALID_EXTERNAL_HANDLE`); and the runtime directory holds nothing but the broker's
//!   own socket, lock and `kmt.next`.
//! * `dying::importer_killed_mid_wait`: an importer blocked in `vkWaitSemaphores` with an
//!   infinite timeout (registered in the page's waiter count) is SIGKILLed; the exporter and a
//!   second importer go on signaling and waiting through the same page, and waits still end.
//! * `dying::broker_killed_and_restarted`: extends the Win32 suite's `broker::killed_while_shared`
//!   (one process) across processes: an importer process waits on a payload it imported by name
//!   while the broker is killed; the exporter's signal still wakes it; the exporter's new KMT
//!   export registers with the restarted broker and the importer opens it; the old name is gone;
//!   and the broker is killed three more times while the exporter's threads export named objects
//!   in a loop — each export succeeds or fails with an error, none hangs.
//!
//! `TETHER_TEST_TARGET=layer-over-fd-icd` runs the same trials through the layer.

#[path = "robustness/common.rs"]
mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ash::vk;
use common::{Peer, SLACK, SyncDevice, XorShift, env_seconds, read_command, reply, returns_within};
use tether_conformance::external::child_main;
use tether_conformance::harness::{self, NO_ROUTE, Role, Route};
use tether_conformance::win32::{
    ExportAttributes, NativeHandle, RuntimeDir, Win32HandleType, kill_broker, route_from_name, unique_name,
};
use tether_conformance::{Batch, LONG_NS, Options, tests};

const NT_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32;
const KMT_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
const FD_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
const D3D12_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
const NT_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32;
const KMT_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT;
const FD_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_FD;

/// How long a parent waits for a child's reply (only a hang takes this long).
const REPLY: Duration = Duration::from_secs(60);

const ROLES: &[Role] = &[
    Role {
        name: "scribbler",
        setup_environment: true,
        run: hostile::role_scribbler,
    },
    Role {
        name: "exporter",
        setup_environment: true,
        run: dying::role_exporter,
    },
    Role {
        name: "importer",
        setup_environment: true,
        run: dying::role_importer,
    },
    Role {
        name: "waiter",
        setup_environment: true,
        run: dying::role_waiter,
    },
    Role {
        name: "broker-exporter",
        setup_environment: true,
        run: dying::role_broker_exporter,
    },
    Role {
        name: "broker-importer",
        setup_environment: true,
        run: dying::role_broker_importer,
    },
];

fn main() -> ExitCode {
    use dying::{broker_killed_and_restarted, exporter_killed_while_importers_wait, importer_killed_mid_wait};
    use hostile::scribbler;
    tether_conformance::win32::main(ROLES, || {
        let mut all = harness::group("hostile", tests!(NO_ROUTE => [scribbler]));
        all.extend(harness::group(
            "dying",
            tests!(NO_ROUTE => [
                exporter_killed_while_importers_wait,
                importer_killed_mid_wait,
                broker_killed_and_restarted,
            ]),
        ));
        all
    })
}

/// A device whose errors are expected (hostile input makes the driver complain).
fn device(route: Route) -> SyncDevice {
    SyncDevice::with_options(route, Options::expecting_errors())
}

/// A result a call may give when a peer scribbles: anything but a panic caught at the boundary.
#[track_caller]
fn no_panic(what: &str, r: vk::Result) {
    assert_ne!(
        r,
        vk::Result::ERROR_UNKNOWN,
        "{what}: VK_ERROR_UNKNOWN (a panic in the driver)"
    );
}

/// A wait's result: SUCCESS or TIMEOUT (or an error the driver chose, never a panic).
#[track_caller]
fn waited(what: &str, r: vk::Result) {
    no_panic(what, r);
    assert!(
        r == vk::Result::SUCCESS || r == vk::Result::TIMEOUT || r.as_raw() < 0,
        "{what}: {r:?}"
    );
}

/// `vkWaitSemaphores` with raw arguments.
fn wait_values(d: &SyncDevice, waits: &[(vk::Semaphore, u64)], any: bool, timeout: u64) -> vk::Result {
    d.wait_semaphores(waits, any, timeout)
}

fn semaphore_counter(d: &SyncDevice, s: vk::Semaphore) -> Result<u64, vk::Result> {
    // SAFETY: a timeline semaphore of this device.
    unsafe { d.device.get_semaphore_counter_value(s) }
}

// --- the hostile peer -------------------------------------------------------------------------

mod hostile {
    use super::*;

    /// A writable shared mapping of a payload page, made outside Vulkan.
    pub struct Page {
        ptr: *mut u8,
    }

    // SAFETY: the mapping lives as long as the value; every access is a volatile or atomic
    // access of plain integers.
    unsafe impl Send for Page {}
    // SAFETY: as above.
    unsafe impl Sync for Page {}

    impl Page {
        pub fn map(fd: BorrowedFd<'_>) -> Page {
            // SAFETY: a new shared mapping of the page's 4 KiB at an address the kernel picks.
            let ptr = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    4096,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                    fd,
                    0,
                )
            }
            .expect("mmap of a payload page, writable");
            Page { ptr: ptr.cast() }
        }

        /// Stores `v` at byte `offset` (8-aligned).
        pub fn store64(&self, offset: usize, v: u64) {
            let at = offset & !7 & 4095;
            // SAFETY: in the mapping, aligned; an atomic store (other processes race with it).
            unsafe { (*self.ptr.add(at).cast::<AtomicU64>()).store(v, Ordering::SeqCst) };
        }

        pub fn store32(&self, offset: usize, v: u32) {
            let at = offset & !3 & 4095;
            // SAFETY: as above.
            unsafe { (*self.ptr.add(at).cast::<std::sync::atomic::AtomicU32>()).store(v, Ordering::SeqCst) };
        }

        /// Wakes every waiter on the page's futex word (offset 72).
        pub fn wake(&self) {
            // SAFETY: the futex word lies in the mapping.
            let word = unsafe { &*self.ptr.add(72).cast::<std::sync::atomic::AtomicU32>() };
            let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
        }
    }

    impl Drop for Page {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `map`, not used after this.
            let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), 4096) };
        }
    }

    pub fn scribbler(route: Route) {
        let seconds = env_seconds("TETHER_HOSTILE_SECONDS", 2.0);
        let d = device(route);
        let timeline = d.exportable_timeline(FD_SEMAPHORE | NT_SEMAPHORE, 0, None);
        let binary = d.exportable_semaphore(FD_SEMAPHORE);
        let fence = d.exportable_fence(FD_FENCE);
        let d3d12 = d
            .try_exportable_semaphore(D3D12_SEMAPHORE, vk::SemaphoreType::TIMELINE, 0, None)
            .ok();
        let own = |raw: Result<i32, vk::Result>, what: &str| {
            let raw = raw.unwrap_or_else(|e| panic!("exporting {what}: {e}; {}", d.messages()));
            // SAFETY: a successful export returns a new fd the caller owns.
            unsafe { OwnedFd::from_raw_fd(raw) }
        };
        let timeline_fd = own(d.fd.get_semaphore_fd(timeline, FD_SEMAPHORE), "the timeline");
        let binary_fd = own(d.fd.get_semaphore_fd(binary, FD_SEMAPHORE), "the binary semaphore");
        let fence_fd = own(d.fd.get_fence_fd(fence, FD_FENCE), "the fence");
        let d3d12_handle = d3d12.map(|s| d.export_semaphore(s, Win32HandleType::D3d12Fence));
        let mut fds: Vec<RawFd> = vec![timeline_fd.as_raw_fd(), binary_fd.as_raw_fd(), fence_fd.as_raw_fd()];
        if let Some(NativeHandle::Nt(fd)) = &d3d12_handle {
            fds.push(fd.as_raw_fd());
        }
        let mut cmd = harness::child_command("scribbler");
        cmd.arg(route.name()).arg(format!("{}", seconds.as_secs_f64()));
        for fd in &fds {
            cmd.arg(fd.to_string());
        }
        common::inherit_fds(&mut cmd, &fds);
        // The parent's own writable mapping of the binary page, for the repair at the end.
        let page = Page::map(binary_fd.as_fd());
        let mut scribbler = Peer::spawn("the scribbler", &mut cmd);
        scribbler.expect("SCRIBBLING", REPLY);

        let private = d.timeline_semaphore(0);
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Vec<AtomicU64> = (0..6).map(|_| AtomicU64::new(0)).collect();
        let dd = &d;
        std::thread::scope(|s| {
            // Timeline waits: SUCCESS or TIMEOUT, within their timeouts.
            s.spawn(|| {
                let mut rng = XorShift::seeded();
                while !stop.load(Ordering::Relaxed) {
                    let base = semaphore_counter(dd, timeline).unwrap_or(0);
                    let timeout = [0, 1_000_000, 10_000_000, 50_000_000][rng.below(4) as usize];
                    let r = returns_within(
                        "vkWaitSemaphores (scribbled timeline)",
                        Duration::from_nanos(timeout),
                        || wait_values(dd, &[(timeline, base.saturating_add(1 + rng.below(3)))], false, timeout),
                    );
                    waited("vkWaitSemaphores (scribbled timeline)", r);
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
            });
            // Timeline signals (a scribbled value may make them invalid: an error, never a panic).
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let next = semaphore_counter(dd, timeline).unwrap_or(0).saturating_add(1);
                    no_panic("vkSignalSemaphore (scribbled timeline)", dd.signal(timeline, next));
                    counts[1].fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            // Wait-any over two scribbled pages (futex_waitv), and the D3D12 fence.
            s.spawn(|| {
                let mut rng = XorShift::seeded();
                while !stop.load(Ordering::Relaxed) {
                    let timeout = [0, 1_000_000, 20_000_000][rng.below(3) as usize];
                    let mut waits = vec![(timeline, u64::MAX - 1)];
                    if let Some(s) = d3d12 {
                        let v = semaphore_counter(dd, s).unwrap_or(0);
                        no_panic(
                            "vkSignalSemaphore (scribbled D3D12 fence)",
                            dd.signal(s, v.wrapping_add(1)),
                        );
                        waits.push((s, u64::MAX - 1));
                    }
                    let r = returns_within(
                        "vkWaitSemaphores (any, scribbled)",
                        Duration::from_nanos(timeout),
                        || wait_values(dd, &waits, true, timeout),
                    );
                    waited("vkWaitSemaphores (any, scribbled)", r);
                    counts[2].fetch_add(1, Ordering::Relaxed);
                }
            });
            // The fence: signal through queue 0, wait, reset.
            s.spawn(|| {
                let mut rng = XorShift::seeded();
                while !stop.load(Ordering::Relaxed) {
                    no_panic("vkQueueSubmit (scribbled fence)", dd.submit(0, &[], fence));
                    let timeout = [0, 1_000_000, 20_000_000][rng.below(3) as usize];
                    let r = returns_within("vkWaitForFences (scribbled)", Duration::from_nanos(timeout), || {
                        dd.wait_fences(&[fence], true, timeout)
                    });
                    waited("vkWaitForFences (scribbled)", r);
                    no_panic("vkGetFenceStatus (scribbled)", dd.fence_status(fence));
                    // SAFETY: a fence of this device (pending work on it is reported, not UB here).
                    let r = unsafe { (dd.device.fp_v1_0().reset_fences)(dd.device.handle(), 1, &fence) };
                    no_panic("vkResetFences (scribbled)", r);
                    counts[3].fetch_add(1, Ordering::Relaxed);
                }
            });
            // The binary semaphore: signal and wait through queue 1, observed with a private fence.
            s.spawn(|| {
                let observer = dd.fence(false);
                while !stop.load(Ordering::Relaxed) {
                    no_panic(
                        "vkQueueSubmit (signal scribbled binary)",
                        dd.submit(1, &[Batch::new().signal(binary, 0)], vk::Fence::null()),
                    );
                    no_panic(
                        "vkQueueSubmit (wait scribbled binary)",
                        dd.submit(1, &[Batch::new().wait(binary, 0)], observer),
                    );
                    let r = returns_within(
                        "vkWaitForFences (after a scribbled binary wait)",
                        Duration::from_millis(10),
                        || dd.wait_fences(&[observer], true, 10_000_000),
                    );
                    waited("vkWaitForFences (after a scribbled binary wait)", r);
                    if r != vk::Result::SUCCESS {
                        // The queue is blocked on a signal the scribbler erased (or will be
                        // until it repairs itself): nothing more to submit there.
                        break;
                    }
                    dd.reset_fences(&[observer]);
                    counts[4].fetch_add(1, Ordering::Relaxed);
                }
            });
            // A private timeline no peer can reach stays exact.
            s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    assert_eq!(dd.signal(private, n), vk::Result::SUCCESS);
                    assert_eq!(dd.counter(private), n, "a private timeline changed under a scribbler");
                    counts[5].fetch_add(1, Ordering::Relaxed);
                }
            });
            std::thread::sleep(seconds);
            stop.store(true, Ordering::Relaxed);
        });
        let done = scribbler.expect("SCRIBBLED", REPLY + seconds);
        scribbler.finish(REPLY);

        // Repair the binary page until queue 1 is idle again, then tear down normally.
        assert!(
            done.ends_with(" 0 seals added"),
            "a peer froze a payload page with more seals: {done}"
        );
        let idle = d.fence(false);
        assert_eq!(d.submit(1, &[], idle), vk::Result::SUCCESS);
        let mut repaired = false;
        for _ in 0..200 {
            page.store64(64, 1);
            page.store32(72, 0);
            page.wake();
            if d.wait_fences(&[idle], true, 50_000_000) == vk::Result::SUCCESS {
                repaired = true;
                break;
            }
        }
        assert!(repaired, "queue 1 stayed blocked after the binary page was repaired");
        let counts: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        eprintln!(
            "hostile peer: {done}; parent rounds: timeline waits {}, timeline signals {}, wait-any {}, fence {}, binary {}, private {}",
            counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]
        );
        d.log().take();
    }

    /// `scribbler <route> <seconds> <fd>...`: maps every fd writable and scribbles until the time
    /// is up, while waiting on the first (a timeline) through Vulkan.
    pub fn role_scribbler(args: &[String]) -> i32 {
        child_main(|| {
            let [route, seconds, fds @ ..] = args else {
                panic!("scribbler <route> <seconds> <fd>..., got {args:?}")
            };
            let seconds = Duration::from_secs_f64(seconds.parse().expect("seconds"));
            let fds: Vec<OwnedFd> = fds
                .iter()
                .map(|f| {
                    let raw: RawFd = f.parse().expect("an fd number");
                    // SAFETY: inherited from the parent for this process to own.
                    unsafe { OwnedFd::from_raw_fd(raw) }
                })
                .collect();
            let pages: Vec<Page> = fds.iter().map(|fd| Page::map(fd.as_fd())).collect();
            // The scribbler is an importer too: its own Vulkan waits on the page it scribbles.
            let d = device(route_from_name(route));
            let imported = d.timeline_semaphore(0);
            let dup = rustix::io::fcntl_dupfd_cloexec(&fds[0], 3).expect("dup");
            let r = d.fd.import_semaphore_raw(
                imported,
                FD_SEMAPHORE,
                vk::SemaphoreImportFlags::empty(),
                dup.as_raw_fd(),
            );
            if r == vk::Result::SUCCESS {
                std::mem::forget(dup);
            }
            reply("SCRIBBLING");
            let stop = AtomicBool::new(false);
            let writes = AtomicU64::new(0);
            let punched = AtomicU64::new(0);
            let sealed = AtomicU64::new(0);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut rng = XorShift::seeded();
                    while !stop.load(Ordering::Relaxed) {
                        let page = &pages[rng.below(pages.len() as u64) as usize];
                        match rng.below(10) {
                            0 if rng.below(64) == 0 => {
                                // Rarer tricks: punch the page out of the file (it reads back as
                                // zeros, the size stays), and try to freeze it with more seals.
                                let fd = &fds[rng.below(fds.len() as u64) as usize];
                                let flags =
                                    rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
                                if rustix::fs::fallocate(fd, flags, 0, 4096).is_ok() {
                                    punched.fetch_add(1, Ordering::Relaxed);
                                }
                                let more = rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::FUTURE_WRITE;
                                if rustix::fs::fcntl_add_seals(fd, more).is_ok() {
                                    sealed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            0 => page.store64(rng.below(4096) as usize, rng.next()),
                            1 => page.wake(),
                            2 => page.store32(76, rng.next() as u32),
                            3 => page.store32(72, rng.next() as u32),
                            4 => page.store64(64, [0, 1, u64::MAX, rng.next()][rng.below(4) as usize]),
                            _ => page.store64(64 + 8 * rng.below(2) as usize, rng.next()),
                        }
                        writes.fetch_add(1, Ordering::Relaxed);
                        if rng.below(64) == 0 {
                            std::thread::yield_now();
                        }
                    }
                });
                s.spawn(|| {
                    let mut rng = XorShift::seeded();
                    while !stop.load(Ordering::Relaxed) {
                        let timeout = [0, 1_000_000, 10_000_000][rng.below(3) as usize];
                        let base = semaphore_counter(&d, imported).unwrap_or(0);
                        let r = returns_within("the scribbler's own wait", Duration::from_nanos(timeout), || {
                            wait_values(&d, &[(imported, base.saturating_add(1))], false, timeout)
                        });
                        waited("the scribbler's own wait", r);
                    }
                });
                std::thread::sleep(seconds);
                stop.store(true, Ordering::Relaxed);
            });
            reply(&format!(
                "SCRIBBLED {} writes, {} holes punched, {} seals added",
                writes.load(Ordering::Relaxed),
                punched.load(Ordering::Relaxed),
                sealed.load(Ordering::Relaxed)
            ));
            d.log().take();
        })
    }
}

// --- peers that die ---------------------------------------------------------------------------

mod dying {
    use super::*;

    fn units(name: &str) -> Vec<u16> {
        name.encode_utf16().collect()
    }

    /// `exporter <route>`: a named exportable fence and timeline and their KMT values; prints
    /// `READY <fence name> <timeline name> <fence KMT> <timeline KMT>` and then waits to be killed.
    pub fn role_exporter(args: &[String]) -> i32 {
        child_main(|| {
            let [route] = args else {
                panic!("exporter <route>, got {args:?}")
            };
            let d = device(route_from_name(route));
            let fence_name = unique_name("dying-fence");
            let timeline_name = unique_name("dying-timeline");
            let fence = d.exportable_fence_with(NT_FENCE | KMT_FENCE, &ExportAttributes::named(&fence_name));
            let timeline = d.exportable_timeline(
                NT_SEMAPHORE | KMT_SEMAPHORE,
                0,
                Some(&ExportAttributes::named(&timeline_name)),
            );
            // The first NT export registers the names.
            let _nt_fence = d.export_fence(fence, Win32HandleType::OpaqueWin32);
            let _nt_timeline = d.export_semaphore(timeline, Win32HandleType::OpaqueWin32);
            let fence_kmt = d.export_fence(fence, Win32HandleType::OpaqueWin32Kmt);
            let timeline_kmt = d.export_semaphore(timeline, Win32HandleType::OpaqueWin32Kmt);
            reply(&format!(
                "READY {fence_name} {timeline_name} {:#x} {:#x}",
                fence_kmt.raw(),
                timeline_kmt.raw()
            ));
            while read_command().is_some() {}
        })
    }

    fn parse_kmt(s: &str) -> vk::HANDLE {
        vk::HANDLE::from_str_radix(s.trim_start_matches("0x"), 16).expect("a KMT value")
    }

    /// `importer <route> <fence name> <timeline name> <fence KMT> <timeline KMT>`: imports all
    /// four, then obeys `WAIT <ms>` (waits on both, prints the results) and `CHECK` (the names
    /// and values are gone, the payloads still work).
    pub fn role_importer(args: &[String]) -> i32 {
        child_main(|| {
            let [route, fence_name, timeline_name, fence_kmt, timeline_kmt] = args else {
                panic!("importer <route> <names> <KMTs>, got {args:?}")
            };
            let d = device(route_from_name(route));
            let by_name_fence = d.fence(false);
            let r = d.import_fence_by_name(by_name_fence, vk::FenceImportFlags::empty(), &units(fence_name));
            assert_eq!(r, vk::Result::SUCCESS, "importing the fence by name: {}", d.messages());
            let by_name = d.timeline_semaphore(0);
            let r = d.import_semaphore_by_name(
                by_name,
                NT_SEMAPHORE,
                vk::SemaphoreImportFlags::empty(),
                &units(timeline_name),
            );
            assert_eq!(
                r,
                vk::Result::SUCCESS,
                "importing the timeline by name: {}",
                d.messages()
            );
            let by_kmt_fence = d.fence(false);
            let r = d.import_fence_raw(
                by_kmt_fence,
                KMT_FENCE,
                vk::FenceImportFlags::empty(),
                parse_kmt(fence_kmt),
                std::ptr::null(),
            );
            assert_eq!(
                r,
                vk::Result::SUCCESS,
                "importing the fence's KMT value: {}",
                d.messages()
            );
            let by_kmt = d.timeline_semaphore(0);
            let r = d.import_semaphore_raw(
                by_kmt,
                KMT_SEMAPHORE,
                vk::SemaphoreImportFlags::empty(),
                parse_kmt(timeline_kmt),
                std::ptr::null(),
            );
            assert_eq!(
                r,
                vk::Result::SUCCESS,
                "importing the timeline's KMT value: {}",
                d.messages()
            );
            reply("IMPORTED");
            while let Some(command) = read_command() {
                let words: Vec<&str> = command.split_whitespace().collect();
                match words.as_slice() {
                    ["WAIT", ms] => {
                        let timeout = Duration::from_millis(ms.parse().expect("ms"));
                        let ns = timeout.as_nanos() as u64;
                        reply("WAITING");
                        let (f, t) = returns_within("an importer's waits while its exporter dies", timeout * 2, || {
                            (
                                d.wait_fences(&[by_name_fence, by_kmt_fence], false, ns),
                                wait_values(&d, &[(by_name, 1), (by_kmt, 1)], true, ns),
                            )
                        });
                        reply(&format!("WAITED {f:?} {t:?}"));
                    }
                    ["CHECK", check_fence] => {
                        // The broker forgets the dead exporter's names and values (it notices the
                        // closed connection; give it the time a hang would take).
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let probe = d.timeline_semaphore(0);
                        let gone = |d: &SyncDevice| {
                            let name = d.import_semaphore_by_name(
                                probe,
                                NT_SEMAPHORE,
                                vk::SemaphoreImportFlags::empty(),
                                &units(timeline_name),
                            );
                            let kmt = d.import_semaphore_raw(
                                probe,
                                KMT_SEMAPHORE,
                                vk::SemaphoreImportFlags::empty(),
                                parse_kmt(timeline_kmt),
                                std::ptr::null(),
                            );
                            let fence = d.import_fence_by_name(
                                d.fence(false),
                                vk::FenceImportFlags::empty(),
                                &units(fence_name),
                            );
                            [name, kmt, fence]
                        };
                        let mut results = gone(&d);
                        while results.contains(&vk::Result::SUCCESS) && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(20));
                            results = gone(&d);
                        }
                        assert_eq!(
                            results,
                            [vk::Result::ERROR_INVALID_EXTERNAL_HANDLE; 3],
                            "lookups of a dead exporter's names and KMT value; {}",
                            d.messages()
                        );
                        // The imported payloads still work, across both imports.
                        // (Both importers share the page: each signals one above what it reads.)
                        let next = d.counter(by_name) + 1;
                        assert_eq!(d.signal(by_name, next), vk::Result::SUCCESS);
                        assert!(d.counter(by_kmt) >= next);
                        if *check_fence == "fence" {
                            d.submit_signal_fence(by_name_fence);
                            d.wait_fence(by_kmt_fence);
                        }
                        d.log().take();
                        reply("CHECKED");
                    }
                    other => panic!("importer: unknown command {other:?}"),
                }
            }
        })
    }

    pub fn exporter_killed_while_importers_wait(route: Route) {
        let runtime = RuntimeDir::new("tether-dying-exporter");
        let env = |cmd: &mut std::process::Command| {
            cmd.arg(route.name()).env("XDG_RUNTIME_DIR", &runtime.path);
        };
        let mut cmd = harness::child_command("exporter");
        env(&mut cmd);
        let mut exporter = Peer::spawn("the exporter", &mut cmd);
        let ready = exporter.expect("READY", REPLY);
        let names: Vec<String> = ready.split_whitespace().skip(1).map(str::to_owned).collect();
        let mut importers: Vec<Peer> = (0..2)
            .map(|i| {
                let mut cmd = harness::child_command("importer");
                env(&mut cmd);
                cmd.args(&names);
                Peer::spawn(&format!("importer {i}"), &mut cmd)
            })
            .collect();
        for p in &mut importers {
            p.expect("IMPORTED", REPLY);
        }
        for p in &mut importers {
            p.send("WAIT 1500");
        }
        for p in &mut importers {
            p.expect("WAITING", REPLY);
        }
        // Killed while the importers wait on its objects.
        exporter.kill();
        for p in &mut importers {
            let waited = p.expect("WAITED", REPLY);
            assert_eq!(
                waited, "WAITED TIMEOUT TIMEOUT",
                "{}: nothing signals a dead exporter's objects",
                p.name
            );
        }
        // (Only one importer signals the shared fence: a second signal of a signaled fence would
        // be invalid usage.)
        for (i, p) in importers.iter_mut().enumerate() {
            p.send(if i == 0 { "CHECK fence" } else { "CHECK -" });
            p.expect("CHECKED", REPLY);
        }
        for p in importers {
            p.finish(REPLY);
        }
        // Only the broker's own files are left.
        let files = common::runtime_files(&runtime.path);
        assert!(
            common::broker_files_only(&files),
            "the runtime directory holds more than the broker's files: {files:?}"
        );
        eprintln!("after the exporter's death the runtime directory holds {files:?}");
    }

    /// `waiter <route> <fd>`: imports the timeline page `fd` and waits forever on a value nobody
    /// signals (until it is killed).
    pub fn role_waiter(args: &[String]) -> i32 {
        child_main(|| {
            let [route, fd] = args else {
                panic!("waiter <route> <fd>, got {args:?}")
            };
            let fd: RawFd = fd.parse().expect("an fd");
            let d = device(route_from_name(route));
            let s = d.timeline_semaphore(0);
            assert_eq!(
                d.fd.import_semaphore_raw(s, FD_SEMAPHORE, vk::SemaphoreImportFlags::empty(), fd),
                vk::Result::SUCCESS
            );
            reply("WAITING");
            let r = wait_values(&d, &[(s, u64::MAX - 1)], false, u64::MAX);
            reply(&format!("WOKE {r:?}"));
        })
    }

    pub fn importer_killed_mid_wait(route: Route) {
        let d = device(route);
        let timeline = d.exportable_timeline(FD_SEMAPHORE, 0, None);
        let export = |d: &SyncDevice| {
            let raw =
                d.fd.get_semaphore_fd(timeline, FD_SEMAPHORE)
                    .expect("vkGetSemaphoreFdKHR");
            // SAFETY: a successful export returns a new fd the caller owns.
            unsafe { OwnedFd::from_raw_fd(raw) }
        };
        let fd = export(&d);
        let mut cmd = harness::child_command("waiter");
        cmd.arg(route.name()).arg(fd.as_raw_fd().to_string());
        common::inherit_fds(&mut cmd, &[fd.as_raw_fd()]);
        let mut waiter = Peer::spawn("the waiter", &mut cmd);
        drop(fd);
        waiter.expect("WAITING", REPLY);
        // A second importer, in this process on another device, keeps using the page.
        let d2 = device(route);
        let other = d2.timeline_semaphore(0);
        assert_eq!(
            d2.fd.import_semaphore_raw(
                other,
                FD_SEMAPHORE,
                vk::SemaphoreImportFlags::empty(),
                export(&d).into_raw_fd_checked()
            ),
            vk::Result::SUCCESS
        );
        // Let the waiter block in the kernel, then kill it mid-wait.
        std::thread::sleep(Duration::from_millis(100));
        waiter.kill();
        // Signals and waits on the page go on, both ways, and waits still end.
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                for v in 1..=200u64 {
                    let r = returns_within("a wait after an importer died", Duration::from_nanos(LONG_NS), || {
                        wait_values(&d2, &[(other, v)], false, LONG_NS)
                    });
                    assert_eq!(
                        r,
                        vk::Result::SUCCESS,
                        "waiting for {v} after an importer died mid-wait"
                    );
                }
            });
            barrier.wait();
            for v in 1..=200u64 {
                assert_eq!(d.signal(timeline, v), vk::Result::SUCCESS);
            }
        });
        let r = returns_within("a wait that times out", Duration::from_millis(20), || {
            wait_values(&d2, &[(other, 1000)], false, 20_000_000)
        });
        assert_eq!(r, vk::Result::TIMEOUT);
        assert_eq!(d.counter(timeline), 200);
    }

    trait IntoRawChecked {
        fn into_raw_fd_checked(self) -> RawFd;
    }

    impl IntoRawChecked for OwnedFd {
        /// The fd, handed over to an import that succeeds (the tests assert it does).
        fn into_raw_fd_checked(self) -> RawFd {
            std::os::fd::IntoRawFd::into_raw_fd(self)
        }
    }

    /// `broker-exporter <route>`: a named timeline with a KMT value; `READY <name> <KMT>`. Then
    /// `SIGNAL <v>`, `REEXPORT` (a new KMT export: `KMT <value>`), `STORM <ms>` (threads export
    /// named objects until told the time is up: `STORMED <ok> <failed>`).
    pub fn role_broker_exporter(args: &[String]) -> i32 {
        child_main(|| {
            let [route] = args else {
                panic!("broker-exporter <route>, got {args:?}")
            };
            let d = device(route_from_name(route));
            let name = unique_name("restart");
            let timeline =
                d.exportable_timeline(NT_SEMAPHORE | KMT_SEMAPHORE, 0, Some(&ExportAttributes::named(&name)));
            let _nt = d.export_semaphore(timeline, Win32HandleType::OpaqueWin32);
            let kmt = d.export_semaphore(timeline, Win32HandleType::OpaqueWin32Kmt);
            reply(&format!("READY {name} {:#x}", kmt.raw()));
            while let Some(command) = read_command() {
                let words: Vec<&str> = command.split_whitespace().collect();
                match words.as_slice() {
                    ["SIGNAL", v] => {
                        assert_eq!(d.signal(timeline, v.parse().expect("a value")), vk::Result::SUCCESS);
                        reply("SIGNALED");
                    }
                    ["REEXPORT"] => {
                        let again = d.export_semaphore(timeline, Win32HandleType::OpaqueWin32Kmt);
                        reply(&format!("KMT {:#x}", again.raw()));
                    }
                    ["STORM", ms] => {
                        let until = Instant::now() + Duration::from_millis(ms.parse().expect("ms"));
                        let ok = AtomicU64::new(0);
                        let failed = AtomicU64::new(0);
                        std::thread::scope(|s| {
                            for t in 0..3 {
                                let (d, ok, failed) = (&d, &ok, &failed);
                                s.spawn(move || {
                                    let mut i = 0;
                                    while Instant::now() < until {
                                        i += 1;
                                        let name = format!("{}-storm-{t}-{i}", unique_name("s"));
                                        let attrs = ExportAttributes::named(&name);
                                        let r = returns_within(
                                            "a named export while the broker dies",
                                            Duration::from_secs(10),
                                            || {
                                                d.try_exportable_semaphore(
                                                    NT_SEMAPHORE | KMT_SEMAPHORE,
                                                    vk::SemaphoreType::BINARY,
                                                    0,
                                                    Some(&attrs),
                                                )
                                                .map(|s| {
                                                    let nt = d.get_semaphore_win32(s, NT_SEMAPHORE);
                                                    let kmt = d.get_semaphore_win32(s, KMT_SEMAPHORE);
                                                    d.destroy_exportable_semaphore(s);
                                                    (nt, kmt)
                                                })
                                            },
                                        );
                                        match r {
                                            Ok((Ok(nt), Ok(_))) => {
                                                // SAFETY: a successful NT export returns an fd we own.
                                                drop(unsafe { OwnedFd::from_raw_fd(nt as RawFd) });
                                                ok.fetch_add(1, Ordering::Relaxed);
                                            }
                                            Ok((nt, kmt)) => {
                                                if let Ok(nt) = nt {
                                                    // SAFETY: as above.
                                                    drop(unsafe { OwnedFd::from_raw_fd(nt as RawFd) });
                                                }
                                                for e in [nt.err(), kmt.err()].into_iter().flatten() {
                                                    no_panic("a named export while the broker dies", e);
                                                }
                                                failed.fetch_add(1, Ordering::Relaxed);
                                            }
                                            Err(e) => {
                                                no_panic("vkCreateSemaphore (named) while the broker dies", e);
                                                failed.fetch_add(1, Ordering::Relaxed);
                                            }
                                        }
                                    }
                                });
                            }
                        });
                        d.log().take();
                        reply(&format!(
                            "STORMED {} {}",
                            ok.load(Ordering::Relaxed),
                            failed.load(Ordering::Relaxed)
                        ));
                    }
                    other => panic!("broker-exporter: unknown command {other:?}"),
                }
            }
            d.log().take();
        })
    }

    /// `broker-importer <route> <name> <KMT>`: imports both; `WAIT <v>` (waits up to 10 s,
    /// `WAITED <result> <counter>`), `KMT <value>` (imports it: `COUNTER <v>`), `NAME` (looks the
    /// old name up again: `NAME <result>`).
    pub fn role_broker_importer(args: &[String]) -> i32 {
        child_main(|| {
            let [route, name, kmt] = args else {
                panic!("broker-importer <route> <name> <KMT>, got {args:?}")
            };
            let d = device(route_from_name(route));
            let by_name = d.timeline_semaphore(0);
            let r = d.import_semaphore_by_name(by_name, NT_SEMAPHORE, vk::SemaphoreImportFlags::empty(), &units(name));
            assert_eq!(r, vk::Result::SUCCESS, "{}", d.messages());
            let by_kmt = d.timeline_semaphore(0);
            let r = d.import_semaphore_raw(
                by_kmt,
                KMT_SEMAPHORE,
                vk::SemaphoreImportFlags::empty(),
                parse_kmt(kmt),
                std::ptr::null(),
            );
            assert_eq!(r, vk::Result::SUCCESS, "{}", d.messages());
            reply("IMPORTED");
            while let Some(command) = read_command() {
                let words: Vec<&str> = command.split_whitespace().collect();
                match words.as_slice() {
                    ["WAIT", v] => {
                        let v: u64 = v.parse().expect("a value");
                        reply("WAITING");
                        let r = returns_within("a wait across a broker restart", Duration::from_nanos(LONG_NS), || {
                            wait_values(&d, &[(by_name, v)], false, LONG_NS)
                        });
                        reply(&format!("WAITED {r:?} {}", d.counter(by_kmt)));
                    }
                    ["KMT", value] => {
                        let s = d.timeline_semaphore(0);
                        let r = d.import_semaphore_raw(
                            s,
                            KMT_SEMAPHORE,
                            vk::SemaphoreImportFlags::empty(),
                            parse_kmt(value),
                            std::ptr::null(),
                        );
                        assert_eq!(r, vk::Result::SUCCESS, "importing the new KMT value: {}", d.messages());
                        reply(&format!("COUNTER {}", d.counter(s)));
                    }
                    ["NAME"] => {
                        let s = d.timeline_semaphore(0);
                        let r = d.import_semaphore_by_name(
                            s,
                            NT_SEMAPHORE,
                            vk::SemaphoreImportFlags::empty(),
                            &units(name),
                        );
                        no_panic("a lookup of a name the old broker held", r);
                        reply(&format!("NAME {r:?}"));
                    }
                    other => panic!("broker-importer: unknown command {other:?}"),
                }
            }
            d.log().take();
        })
    }

    pub fn broker_killed_and_restarted(route: Route) {
        let runtime = RuntimeDir::new("tether-broker-restart");
        let env = |cmd: &mut std::process::Command| {
            cmd.arg(route.name()).env("XDG_RUNTIME_DIR", &runtime.path);
        };
        let mut cmd = harness::child_command("broker-exporter");
        env(&mut cmd);
        let mut exporter = Peer::spawn("the exporter", &mut cmd);
        let ready = exporter.expect("READY", REPLY);
        let words: Vec<String> = ready.split_whitespace().skip(1).map(str::to_owned).collect();
        let mut cmd = harness::child_command("broker-importer");
        env(&mut cmd);
        cmd.args(&words);
        let mut importer = Peer::spawn("the importer", &mut cmd);
        importer.expect("IMPORTED", REPLY);
        // The importer waits; the broker dies; the exporter's signal still wakes the importer
        // (payloads never go through the broker).
        importer.send("WAIT 1");
        importer.expect("WAITING", REPLY);
        let killed = kill_broker(&runtime.socket_dir()).expect("a broker serves the private directory");
        exporter.send("SIGNAL 1");
        exporter.expect("SIGNALED", REPLY);
        let woke = importer.expect("WAITED", REPLY);
        assert_eq!(
            woke, "WAITED SUCCESS 1",
            "the importer's wait across the broker's death"
        );
        // A new KMT export registers with a new broker; the importer opens it.
        exporter.send("REEXPORT");
        let kmt = exporter.expect("KMT", REPLY);
        assert_ne!(
            kmt.split_whitespace().nth(1),
            words.get(1).map(String::as_str),
            "a restarted broker reused a KMT value"
        );
        importer.send(&kmt);
        assert_eq!(importer.expect("COUNTER", REPLY), "COUNTER 1");
        // The old name died with the old broker: a clean error.
        importer.send("NAME");
        let name = importer.expect("NAME", REPLY);
        assert_eq!(
            name, "NAME ERROR_INVALID_EXTERNAL_HANDLE",
            "looking up a name the killed broker held"
        );
        // The broker killed again and again while the exporter registers names in a loop.
        exporter.send("STORM 1500");
        let mut kills = vec![killed];
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(300));
            if let Some(pid) = kill_broker(&runtime.socket_dir()) {
                kills.push(pid);
            }
        }
        let stormed = exporter.expect("STORMED", REPLY + Duration::from_secs(30));
        importer.finish(REPLY);
        exporter.finish(REPLY);
        let files = common::runtime_files(&runtime.path);
        assert!(
            common::broker_files_only(&files),
            "the runtime directory holds more than the broker's files: {files:?}"
        );
        eprintln!(
            "brokers killed: {kills:?}; named exports during the kills (ok, failed): {stormed}; runtime directory: {files:?}; slack {SLACK:?}"
        );
    }
}

//! A fixed-time stress test (issue 6): threads of three processes signal, wait, reset, export and
//! import the same payloads at once, and every value they observe is checked.
//!
//! The parent shares a timeline semaphore, a binary semaphore and a fence (OPAQUE_FD pages) and a
//! "board" (a memfd of counters, mapped by everyone) with two child processes, by inheritance.
//! In every process:
//!
//! * **signalers** take tickets `v` from the board, wait (host wait, or a queue wait-before-signal)
//!   for `v - 1`, publish `v` on the board (`fetch_max`) and signal `v` — by `vkSignalSemaphore`
//!   or by a `vkQueueSubmit` that waits `v - 1` and signals `v`: the timeline moves strictly up,
//!   each value by a thread of any process;
//! * **observers** read the counter and wait for values just above it with short timeouts:
//!   every value seen is at least the one seen before it (monotonic) and at most the highest value
//!   published by then (never above what was signaled); a wait that succeeds for `t` is followed
//!   by a counter of at least `t`;
//! * **binary consumers** claim the binary semaphore's signals on the board (one claim per
//!   signal, as valid usage requires) and wait for them in a queue submit with a fence of their
//!   own: every claimed signal is consumed exactly once (its fence signals), and the number
//!   consumed never exceeds the number signaled (the parent's **producer** signals again only
//!   once the previous signal was consumed);
//! * **fence observers** read the fence while the parent's **toggler** signals it through a queue,
//!   waits, resets it and says so on the board: a fence that reads signaled while the board says
//!   "reset, no signal submitted" (before and after the read) is an inconsistency;
//! * **churners** export the timeline's OPAQUE_FD and import it into new semaphores (the parent
//!   also through an NT handle, after a permanent import into a new exportable semaphore), and
//!   check the imported counter against the same bounds.
//!
//! At the end every ticket was signaled (the counter equals the last ticket) and every binary
//! signal was consumed. `TETHER_STRESS_SECONDS` sets the running time (default 3 s). Nothing is
//! timed: every wait is bounded only so that a hang fails instead of stalling.

#[path = "robustness/common.rs"]
mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ash::vk;
use common::{Peer, SyncDevice, XorShift, env_seconds};
use tether_conformance::external::child_main;
use tether_conformance::harness::{self, NO_ROUTE, Role, Route};
use tether_conformance::win32::{Permanence, Win32HandleType, route_from_name};
use tether_conformance::{Batch, LONG_NS, tests};

const FD_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
const NT_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32;
const FD_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_FD;

/// How many of a queue signaler's signals may wait in its queue at once.
const QUEUED_TICKETS: u64 = 8;

const ROLES: &[Role] = &[Role {
    name: "stresser",
    setup_environment: true,
    run: role_stresser,
}];

fn main() -> ExitCode {
    tether_conformance::win32::main(ROLES, || {
        harness::group("stress", tests!(NO_ROUTE => [shared_payloads]))
    })
}

/// The board: counters in a shared memfd page.
struct Board {
    ptr: *mut AtomicU64,
}

// SAFETY: the mapping lives as long as the value; only atomics are accessed.
unsafe impl Send for Board {}
// SAFETY: as above.
unsafe impl Sync for Board {}

/// Slots of the board.
#[derive(Clone, Copy)]
#[repr(usize)]
enum Slot {
    /// The last timeline ticket handed out.
    Ticket,
    /// The highest timeline value about to be signaled.
    Published,
    Stop,
    /// Binary signals submitted, claimed by a consumer, consumed (its wait completed).
    BinarySubmitted,
    BinaryClaimed,
    BinaryConsumed,
    /// The fence's state: even = reset with no signal submitted, odd = a signal may come.
    FenceGeneration,
}

impl Board {
    fn map(fd: BorrowedFd<'_>) -> Board {
        // SAFETY: a new shared mapping of the board's page at an address the kernel picks.
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
        .expect("mapping the board");
        Board { ptr: ptr.cast() }
    }

    fn at(&self, slot: Slot) -> &AtomicU64 {
        // SAFETY: slots lie within the 4 KiB mapping, 8-aligned; the board outlives the borrow.
        unsafe { &*self.ptr.add(slot as usize) }
    }

    fn get(&self, slot: Slot) -> u64 {
        self.at(slot).load(Ordering::SeqCst)
    }

    fn stopping(&self) -> bool {
        self.get(Slot::Stop) != 0
    }

    /// Where ticket records start (after the slots), and how many are kept.
    const RECORDS: usize = 64;
    const RECORD_COUNT: u64 = 400;

    fn record_slot(&self, v: u64) -> &AtomicU64 {
        // SAFETY: records lie within the 4 KiB mapping (64 + 400 slots of 8 bytes), 8-aligned.
        unsafe { &*self.ptr.add(Self::RECORDS + (v % Self::RECORD_COUNT) as usize) }
    }

    /// Records who took ticket `v` (for a failure's message).
    fn record(&self, v: u64, by_queue: bool) {
        let who = (v << 24) | (u64::from(std::process::id()) & 0xf_ffff) << 4 | u64::from(by_queue);
        self.record_slot(v).store(who, Ordering::SeqCst);
    }

    fn holder(&self, v: u64) -> String {
        let who = self.record_slot(v).load(Ordering::SeqCst);
        if who >> 24 != v & 0xff_ffff_ffff {
            return format!("{v}: unknown");
        }
        let how = if who & 1 == 1 { "queue" } else { "host" };
        format!("{v}: pid {} by {how}", (who >> 4) & 0xf_ffff)
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), 4096) };
    }
}

/// Counts of what one process did.
#[derive(Default)]
struct Counts {
    signals: AtomicU64,
    observations: AtomicU64,
    consumed: AtomicU64,
    fence_reads: AtomicU64,
    churns: AtomicU64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} timeline signals, {} observations, {} binary signals consumed, {} fence reads, {} export/imports",
            self.signals.load(Ordering::Relaxed),
            self.observations.load(Ordering::Relaxed),
            self.consumed.load(Ordering::Relaxed),
            self.fence_reads.load(Ordering::Relaxed),
            self.churns.load(Ordering::Relaxed),
        )
    }
}

/// What every process runs against its own device and its imports of the three payloads.
struct Process<'a> {
    d: &'a SyncDevice,
    board: &'a Board,
    timeline: vk::Semaphore,
    binary: vk::Semaphore,
    fence: vk::Fence,
    counts: Counts,
    /// The highest ticket this process took: its queue signals must land before it exits (a
    /// destroyed device drops the batches still waiting, and the tickets after theirs would
    /// wait forever).
    last_ticket: AtomicU64,
}

impl Process<'_> {
    fn counter(&self) -> u64 {
        self.d.counter(self.timeline)
    }

    /// Waits (bounded) until the timeline reaches `v`.
    fn wait_for(&self, v: u64) {
        let r = self.d.wait_semaphores(&[(self.timeline, v)], false, LONG_NS);
        if r != vk::Result::SUCCESS {
            let holders: Vec<String> = (v.saturating_sub(2)..=v + 1).map(|t| self.board.holder(t)).collect();
            panic!(
                "waiting for timeline value {v}: {r:?} (only a hang takes that long); the counter reads {}, tickets up to {}, published {}, stop {}; who took them: {holders:?}",
                self.counter(),
                self.board.get(Slot::Ticket),
                self.board.get(Slot::Published),
                self.board.get(Slot::Stop),
            );
        }
    }

    /// Takes tickets and signals them, by host or by queue (`queue`), until the board says stop.
    fn signaler(&self, queue: usize, by_queue: bool) {
        while !self.board.stopping() {
            let v = self.board.at(Slot::Ticket).fetch_add(1, Ordering::SeqCst) + 1;
            self.last_ticket.fetch_max(v, Ordering::SeqCst);
            self.board.record(v, by_queue);
            if by_queue {
                self.board.at(Slot::Published).fetch_max(v, Ordering::SeqCst);
                let batch = Batch::new().wait(self.timeline, v - 1).signal(self.timeline, v);
                assert_eq!(self.d.submit(queue, &[batch], vk::Fence::null()), vk::Result::SUCCESS);
                // At most QUEUED_TICKETS of its signals wait in the queue at once: without a bound
                // the tickets race ahead of the counter and a host signaler's wait for its turn
                // grows past any limit.
                self.wait_for(v.saturating_sub(QUEUED_TICKETS));
            } else {
                self.wait_for(v - 1);
                self.board.at(Slot::Published).fetch_max(v, Ordering::SeqCst);
                assert_eq!(
                    self.d.signal(self.timeline, v),
                    vk::Result::SUCCESS,
                    "signaling ticket {v}"
                );
            }
            self.counts.signals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks a counter value `c` read after `floor` was seen: monotonic, never above what was
    /// published (read after it).
    fn check_value(&self, what: &str, floor: u64, c: u64) {
        let published = self.board.get(Slot::Published);
        assert!(c >= floor, "{what}: the timeline went back from {floor} to {c}");
        assert!(
            c <= published,
            "{what}: the timeline reads {c}, above anything signaled ({published})"
        );
    }

    fn observer(&self) {
        let mut rng = XorShift::seeded();
        let mut last = 0;
        while !self.board.stopping() {
            let c = self.counter();
            self.check_value("an observer's read", last, c);
            last = c;
            let target = c + 1 + rng.below(3);
            let timeout = [0, 1_000_000, 5_000_000][rng.below(3) as usize];
            let r = self.d.wait_semaphores(&[(self.timeline, target)], false, timeout);
            match r {
                vk::Result::SUCCESS => {
                    let after = self.counter();
                    assert!(
                        after >= target,
                        "a wait for {target} succeeded, yet the counter reads {after}"
                    );
                    self.check_value("after a wait", last, after);
                    last = after;
                }
                vk::Result::TIMEOUT => {}
                other => panic!("vkWaitSemaphores: {other:?}"),
            }
            self.counts.observations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Claims binary signals on the board and consumes each in a queue wait.
    fn consumer(&self, queue: usize) {
        let done = self.d.fence(false);
        loop {
            let submitted = self.board.get(Slot::BinarySubmitted);
            let claimed = self.board.get(Slot::BinaryClaimed);
            if claimed >= submitted {
                if self.board.stopping() {
                    break;
                }
                std::thread::yield_now();
                continue;
            }
            if self
                .board
                .at(Slot::BinaryClaimed)
                .compare_exchange(claimed, claimed + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            assert_eq!(
                self.d.submit(queue, &[Batch::new().wait(self.binary, 0)], done),
                vk::Result::SUCCESS
            );
            assert_eq!(
                self.d.wait_fences(&[done], true, LONG_NS),
                vk::Result::SUCCESS,
                "a claimed binary signal was never consumed"
            );
            self.d.reset_fences(&[done]);
            let consumed = self.board.at(Slot::BinaryConsumed).fetch_add(1, Ordering::SeqCst) + 1;
            let submitted = self.board.get(Slot::BinarySubmitted);
            assert!(
                consumed <= submitted,
                "{consumed} binary waits completed for {submitted} signals"
            );
            self.counts.consumed.fetch_add(1, Ordering::Relaxed);
        }
        self.d.destroy_fence(done);
    }

    /// The parent's producer: one binary signal at a time, each once the previous was consumed.
    fn producer(&self) {
        while !self.board.stopping() {
            let submitted = self.board.get(Slot::BinarySubmitted);
            if self.board.get(Slot::BinaryConsumed) < submitted {
                std::thread::yield_now();
                continue;
            }
            assert_eq!(
                self.d
                    .submit(0, &[Batch::new().signal(self.binary, 0)], vk::Fence::null()),
                vk::Result::SUCCESS
            );
            self.board.at(Slot::BinarySubmitted).fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The parent's toggler: signal (queue), wait, reset, with the generation on the board.
    fn toggler(&self) {
        while !self.board.stopping() {
            self.board.at(Slot::FenceGeneration).fetch_add(1, Ordering::SeqCst);
            assert_eq!(self.d.submit(3, &[], self.fence), vk::Result::SUCCESS);
            assert_eq!(self.d.wait_fences(&[self.fence], true, LONG_NS), vk::Result::SUCCESS);
            self.d.reset_fences(&[self.fence]);
            self.board.at(Slot::FenceGeneration).fetch_add(1, Ordering::SeqCst);
        }
    }

    fn fence_observer(&self) {
        let mut rng = XorShift::seeded();
        while !self.board.stopping() {
            let g1 = self.board.get(Slot::FenceGeneration);
            let status = if rng.below(2) == 0 {
                self.d.fence_status(self.fence)
            } else {
                self.d.wait_fences(&[self.fence], true, 1_000_000)
            };
            let g2 = self.board.get(Slot::FenceGeneration);
            assert!(
                matches!(
                    status,
                    vk::Result::SUCCESS | vk::Result::NOT_READY | vk::Result::TIMEOUT
                ),
                "reading the fence: {status:?}"
            );
            assert!(
                !(status == vk::Result::SUCCESS && g1 == g2 && g1 % 2 == 0),
                "the fence reads signaled while it was reset with no signal submitted (generation {g1})"
            );
            self.counts.fence_reads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Exports the timeline and imports it into new semaphores; `nt`: also through an NT handle.
    fn churner(&self, nt: bool) {
        let mut i = 0u64;
        while !self.board.stopping() {
            i += 1;
            let floor = self.counter();
            let raw = self
                .d
                .fd
                .get_semaphore_fd(self.timeline, FD_SEMAPHORE)
                .expect("exporting the timeline");
            let s = if nt && i % 4 == 0 {
                // A permanent import into a new exportable semaphore, then its NT export.
                let x = self.d.exportable_timeline(FD_SEMAPHORE | NT_SEMAPHORE, 0, None);
                assert_eq!(
                    self.d
                        .fd
                        .import_semaphore_raw(x, FD_SEMAPHORE, vk::SemaphoreImportFlags::empty(), raw),
                    vk::Result::SUCCESS
                );
                let handle = self.d.export_semaphore(x, Win32HandleType::OpaqueWin32);
                let y = self.d.timeline_semaphore(0);
                self.d
                    .import_semaphore(y, Win32HandleType::OpaqueWin32, Permanence::Permanent, &handle);
                handle.close();
                self.d.destroy_exportable_semaphore(x);
                y
            } else {
                let y = self.d.timeline_semaphore(0);
                assert_eq!(
                    self.d
                        .fd
                        .import_semaphore_raw(y, FD_SEMAPHORE, vk::SemaphoreImportFlags::empty(), raw),
                    vk::Result::SUCCESS
                );
                y
            };
            let c = self.d.counter(s);
            self.check_value("a fresh import", floor, c);
            self.d.destroy_semaphore(s);
            self.counts.churns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Everything but the parent's producer and toggler, until the board says stop.
    fn run_shared(&self, parent: bool) {
        std::thread::scope(|s| {
            s.spawn(|| self.signaler(1, false));
            s.spawn(|| self.signaler(1, true));
            s.spawn(|| self.observer());
            s.spawn(|| self.consumer(2));
            s.spawn(|| self.fence_observer());
            s.spawn(|| self.churner(parent));
            if parent {
                s.spawn(|| self.producer());
                s.spawn(|| self.toggler());
            }
        });
        self.wait_for(self.last_ticket.load(Ordering::SeqCst));
    }
}

fn owned(raw: Result<i32, vk::Result>) -> OwnedFd {
    let raw = raw.expect("an OPAQUE_FD export");
    // SAFETY: a successful export returns a new fd the caller owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

fn shared_payloads(route: Route) {
    let seconds = env_seconds("TETHER_STRESS_SECONDS", 3.0);
    let d = SyncDevice::new(route);
    let timeline = d.exportable_timeline(FD_SEMAPHORE | NT_SEMAPHORE, 0, None);
    let binary = d.exportable_semaphore(FD_SEMAPHORE);
    let fence = d.exportable_fence(FD_FENCE);
    let board_fd = rustix::fs::memfd_create("tether-stress-board", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&board_fd, 4096).expect("ftruncate");
    let board = Board::map(board_fd.as_fd());
    let fds = [
        board_fd.as_raw_fd(),
        owned(d.fd.get_semaphore_fd(timeline, FD_SEMAPHORE)).into_raw_fd(),
        owned(d.fd.get_semaphore_fd(binary, FD_SEMAPHORE)).into_raw_fd(),
        owned(d.fd.get_fence_fd(fence, FD_FENCE)).into_raw_fd(),
    ];
    let mut children: Vec<Peer> = (0..2)
        .map(|i| {
            let mut cmd = harness::child_command("stresser");
            cmd.arg(route.name());
            for fd in &fds {
                cmd.arg(fd.to_string());
            }
            common::inherit_fds(&mut cmd, &fds);
            Peer::spawn(&format!("stress process {i}"), &mut cmd)
        })
        .collect();
    for fd in &fds[1..] {
        // SAFETY: the exports above, handed to the children (who have their own copies now).
        drop(unsafe { OwnedFd::from_raw_fd(*fd) });
    }
    for c in &mut children {
        c.expect("RUNNING", Duration::from_secs(60));
    }
    let p = Process {
        d: &d,
        board: &board,
        timeline,
        binary,
        fence,
        counts: Counts::default(),
        last_ticket: AtomicU64::new(0),
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| p.run_shared(true));
        std::thread::sleep(seconds);
        board.at(Slot::Stop).store(1, Ordering::SeqCst);
    });
    let mut reports = Vec::new();
    for mut c in children {
        reports.push(c.expect("DONE", Duration::from_secs(60)));
        c.finish(Duration::from_secs(60));
    }
    // Every ticket was signaled; every binary signal was consumed exactly once.
    let tickets = board.get(Slot::Ticket);
    p.wait_for(tickets);
    assert_eq!(d.counter(timeline), tickets, "the timeline ends above its last ticket");
    assert_eq!(board.get(Slot::BinaryClaimed), board.get(Slot::BinarySubmitted));
    assert_eq!(board.get(Slot::BinaryConsumed), board.get(Slot::BinarySubmitted));
    d.idle();
    eprintln!(
        "stress for {:.1?}: timeline at {tickets}, {} binary signals; parent: {}; {}",
        start.elapsed(),
        board.get(Slot::BinarySubmitted),
        p.counts,
        reports.join("; ")
    );
    drop(board_fd);
}

/// `stresser <route> <board fd> <timeline fd> <binary fd> <fence fd>` (inherited).
fn role_stresser(args: &[String]) -> i32 {
    child_main(|| {
        let [route, board_fd, timeline_fd, binary_fd, fence_fd] = args else {
            panic!("stresser <route> <fds>, got {args:?}")
        };
        let take = |s: &String| -> RawFd { s.parse().expect("an fd") };
        // SAFETY: inherited from the parent for this process to own.
        let board_fd = unsafe { OwnedFd::from_raw_fd(take(board_fd)) };
        let board = Board::map(board_fd.as_fd());
        let d = SyncDevice::new(route_from_name(route));
        let timeline = d.timeline_semaphore(0);
        assert_eq!(
            d.fd.import_semaphore_raw(
                timeline,
                FD_SEMAPHORE,
                vk::SemaphoreImportFlags::empty(),
                take(timeline_fd)
            ),
            vk::Result::SUCCESS
        );
        let binary = d.binary_semaphore();
        assert_eq!(
            d.fd.import_semaphore_raw(binary, FD_SEMAPHORE, vk::SemaphoreImportFlags::empty(), take(binary_fd)),
            vk::Result::SUCCESS
        );
        let fence = d.fence(false);
        assert_eq!(
            d.fd.import_fence_raw(fence, FD_FENCE, vk::FenceImportFlags::empty(), take(fence_fd)),
            vk::Result::SUCCESS
        );
        common::reply("RUNNING");
        let p = Process {
            d: &d,
            board: &board,
            timeline,
            binary,
            fence,
            counts: Counts::default(),
            last_ticket: AtomicU64::new(0),
        };
        p.run_shared(false);
        d.idle();
        common::reply(&format!("DONE pid {}: {}", std::process::id(), p.counts));
    })
}

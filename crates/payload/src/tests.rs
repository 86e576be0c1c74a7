//! Unit tests. Cross-process cases re-run this test binary with `TETHER_PAYLOAD_CHILD` set to a
//! role (see `child_role`), passing fds by inheritance.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::*;

const ID: DeviceIdentity = DeviceIdentity {
    driver_uuid: [1; 16],
    device_uuid: [2; 16],
};
const OTHER: DeviceIdentity = DeviceIdentity {
    driver_uuid: [1; 16],
    device_uuid: [3; 16],
};
const CHILD_ENV: &str = "TETHER_PAYLOAD_CHILD";

fn ms(n: u64) -> Deadline {
    Deadline::from_timeout_ns(n * 1_000_000)
}

fn long() -> Deadline {
    ms(5_000)
}

fn flavours(kind: PayloadKind, initial: u64) -> Vec<Payload> {
    vec![
        Payload::new_private(kind, initial),
        Payload::new_shared(kind, initial, &ID).expect("new_shared"),
    ]
}

/// A second, raw writable mapping of a page, as a peer process would have.
struct RawMap {
    ptr: *mut std::ffi::c_void,
    /// The page's doorbell tag.
    tag: u16,
}

// SAFETY: the mapping is owned by RawMap and only accessed through atomics.
unsafe impl Send for RawMap {}
// SAFETY: as above.
unsafe impl Sync for RawMap {}

impl RawMap {
    fn new(fd: BorrowedFd<'_>) -> RawMap {
        // SAFETY: a new mapping at a kernel-chosen address; the file is a sealed 4096-byte page.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                4096,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .expect("mmap");
        let tag = doorbell::tag_of(rustix::fs::fstat(fd).expect("fstat").st_ino);
        RawMap { ptr, tag }
    }

    /// A mapping as a process that cannot ring the page's doorbells makes it: it marks the page
    /// foreign (as its import would).
    fn foreign(fd: BorrowedFd<'_>) -> RawMap {
        let map = RawMap::new(fd);
        map.u32_at(88).fetch_or(page::FOREIGN, Ordering::SeqCst);
        map
    }

    fn layout(&self) -> &page::PageLayout {
        // SAFETY: 4096 mapped, page-aligned bytes that live as long as self; `PageLayout` is
        // atomics only, which allows other mappings and threads to access them concurrently.
        unsafe { &*self.ptr.cast::<page::PageLayout>() }
    }

    /// Signals the way another process of this doorbell domain would: value, sequence, the
    /// page's futex word if it counts waiters, the doorbells of the processes with interest.
    /// This does not bump this process's local epoch.
    fn peer_signal(&self, value: u64) {
        self.words()[8].store(value, Ordering::SeqCst);
        let seq = self.u32_at(72);
        seq.fetch_add(1, Ordering::SeqCst);
        let waiters = self.u32_at(76).load(Ordering::SeqCst);
        if waiters & !state::DOORBELL != 0 {
            let _ = rustix::thread::futex::wake(seq, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
        }
        if waiters & state::DOORBELL != 0 {
            let slots = doorbell::local().expect("a doorbell").slots();
            self.layout().interest().ring(slots, self.tag);
        }
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: 4096 mapped, page-aligned bytes that live as long as self; atomics allow
        // concurrent access from other mappings and threads.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU64>(), 512) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset < 4096);
        // SAFETY: in bounds and aligned (checked above), mapped for the life of self.
        unsafe { &*self.ptr.cast::<u8>().add(offset).cast::<AtomicU32>() }
    }

    /// Signals the way a process that cannot ring doorbells would: value, sequence, shared
    /// futex wake. This does not bump this process's local epoch.
    fn foreign_signal(&self, value: u64) {
        self.words()[8].store(value, Ordering::SeqCst);
        let seq = self.u32_at(72);
        seq.fetch_add(1, Ordering::SeqCst);
        let _ = rustix::thread::futex::wake(seq, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
    }
}

impl Drop for RawMap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`; no reference into it outlives self.
        let _ = unsafe { rustix::mm::munmap(self.ptr, 4096) };
    }
}

fn sealed_memfd(size: u64, seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    }
    fd
}

fn reopen(fd: BorrowedFd<'_>, flags: OFlags) -> OwnedFd {
    rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Single payloads

#[test]
fn fence_signal_wait_reset() {
    for p in flavours(PayloadKind::Fence, 0) {
        assert!(!p.is_signaled());
        assert_eq!(p.value(), 0);
        assert_eq!(
            p.wait(WaitFor::Signaled, Deadline::from_timeout_ns(0)),
            WaitOutcome::TimedOut
        );
        assert_eq!(p.wait(WaitFor::Signaled, ms(10)), WaitOutcome::TimedOut);
        p.signal();
        assert!(p.is_signaled());
        assert_eq!(p.value(), 1);
        assert_eq!(
            p.wait(WaitFor::Signaled, Deadline::from_timeout_ns(0)),
            WaitOutcome::Ready
        );
        assert_eq!(p.wait(WaitFor::Signaled, Deadline::NEVER), WaitOutcome::Ready);
        p.reset();
        assert!(!p.is_signaled());
        p.signal_value(7);
        assert_eq!(p.value(), 1);
        p.signal_value(0);
        assert_eq!(p.value(), 0);
        assert!(p.can_signal());
    }
    let p = Payload::new_private(PayloadKind::Fence, 1);
    assert!(p.is_signaled());
    assert!(!p.is_shared());
    assert!(p.share_fd().is_none());
    assert!(p.open_read_only_fd().unwrap().is_none());
}

#[test]
fn binary_semaphore_consume() {
    for p in flavours(PayloadKind::BinarySemaphore, 1) {
        assert!(p.try_consume());
        assert!(!p.try_consume());
        assert_eq!(p.wait(WaitFor::Consume, ms(5)), WaitOutcome::TimedOut);
        p.signal();
        assert_eq!(p.wait(WaitFor::Signaled, ms(5)), WaitOutcome::Ready);
        assert!(p.is_signaled(), "Signaled does not consume");
        assert_eq!(p.wait(WaitFor::Consume, ms(5)), WaitOutcome::Ready);
        assert!(!p.is_signaled());
    }
}

#[test]
fn counters() {
    for p in flavours(PayloadKind::Timeline, 3) {
        assert_eq!(p.value(), 3);
        p.signal_value(10);
        p.signal_value(5);
        assert_eq!(p.value(), 10, "timeline only goes up");
        assert_eq!(
            p.wait(WaitFor::AtLeast(10), Deadline::from_timeout_ns(0)),
            WaitOutcome::Ready
        );
        assert_eq!(p.wait(WaitFor::AtLeast(11), ms(5)), WaitOutcome::TimedOut);
        p.signal();
        assert_eq!(p.value(), 11);
        p.reset();
        assert_eq!(p.value(), 11);
        assert!(p.is_signaled());
        assert!(p.try_consume());
        assert_eq!(p.value(), 11, "counters are not consumed");
    }
    for p in flavours(PayloadKind::D3d12Fence, 0) {
        assert!(!p.is_signaled());
        assert_eq!(p.wait(WaitFor::Signaled, ms(1)), WaitOutcome::TimedOut);
        p.signal_value(10);
        p.signal_value(4);
        assert_eq!(p.value(), 4, "a D3D12 fence takes any value");
        assert_eq!(p.wait(WaitFor::AtLeast(10), ms(1)), WaitOutcome::TimedOut);
        assert_eq!(p.wait(WaitFor::AtLeast(4), ms(1)), WaitOutcome::Ready);
        p.signal_value(u64::MAX);
        p.signal();
        assert_eq!(p.value(), u64::MAX, "signal saturates");
    }
}

#[test]
fn huge_and_zero_timeouts() {
    let d = Deadline::from_timeout_ns(u64::MAX);
    assert_eq!(d, Deadline::NEVER);
    assert_eq!(d.remaining(), None);
    let d = Deadline::from_timeout_ns(u64::MAX - 1);
    let p = Payload::new_private(PayloadKind::Fence, 1);
    assert_eq!(p.wait(WaitFor::Signaled, d), WaitOutcome::Ready);
}

#[test]
fn cross_thread_wake() {
    for kind in [
        PayloadKind::Fence,
        PayloadKind::BinarySemaphore,
        PayloadKind::Timeline,
        PayloadKind::D3d12Fence,
    ] {
        for p in flavours(kind, 0) {
            let what = match kind {
                PayloadKind::Fence => WaitFor::Signaled,
                PayloadKind::BinarySemaphore => WaitFor::Consume,
                _ => WaitFor::AtLeast(42),
            };
            let q = p.clone();
            let t = thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                if q.kind().is_counter() {
                    q.signal_value(42)
                } else {
                    q.signal()
                }
            });
            let start = Instant::now();
            assert_eq!(
                p.wait(what, long()),
                WaitOutcome::Ready,
                "{kind:?} shared={}",
                p.is_shared()
            );
            assert!(start.elapsed() < Duration::from_secs(4));
            t.join().unwrap();
            if kind == PayloadKind::BinarySemaphore {
                assert!(!p.is_signaled());
            }
        }
    }
}

#[test]
fn consumers_race_for_one_signal() {
    for p in flavours(PayloadKind::BinarySemaphore, 0) {
        let won = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (p, won) = (p.clone(), won.clone());
                thread::spawn(move || {
                    if p.wait(WaitFor::Consume, ms(600)) == WaitOutcome::Ready {
                        won.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(20));
        p.signal();
        thread::sleep(Duration::from_millis(20));
        p.signal();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(won.load(Ordering::SeqCst), 2, "each signal is taken exactly once");
    }
}

// ---------------------------------------------------------------------------------------------
// Import

#[test]
fn import_sees_same_state_and_reuses_mapping() {
    let p = Payload::new_shared(PayloadKind::Timeline, 5, &ID).unwrap();
    assert!(p.is_shared());
    assert_eq!(p.identity(), Some(ID));
    let q = Payload::import(p.share_fd().unwrap(), &ID).unwrap();
    assert!(q.same_as(&p), "an import in the creating process reuses its mapping");
    assert_eq!(q.kind(), PayloadKind::Timeline);

    // An exported copy of the fd, imported and closed at once: the payload keeps its own fd.
    let exported = rustix::io::fcntl_dupfd_cloexec(p.share_fd().unwrap(), 0).unwrap();
    let r = Payload::import(exported.as_fd(), &ID).unwrap();
    assert!(r.same_as(&p));
    assert!(
        rustix::fs::fstat(&exported).is_ok(),
        "import does not consume the caller's fd"
    );
    drop(exported);

    // A read-only handle: another mapping, same memory.
    let ro_fd = p.open_read_only_fd().unwrap().unwrap();
    let ro = Payload::import(ro_fd.as_fd(), &ID).unwrap();
    drop(ro_fd);
    assert!(!ro.same_as(&p));
    assert!(!ro.can_signal());
    assert_eq!(ro.value(), 5);
    let ro2 = Payload::import(ro.share_fd().unwrap(), &ID).unwrap();
    assert!(ro2.same_as(&ro), "read-only imports share the read-only mapping");
    ro.signal_value(100);
    ro.signal();
    assert_eq!(p.value(), 5, "a read-only payload never writes");
    p.signal_value(6);
    assert_eq!(ro.value(), 6);
    assert_eq!(ro.wait(WaitFor::AtLeast(7), ms(5)), WaitOutcome::TimedOut);
    let p2 = p.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        p2.signal_value(7);
    });
    assert_eq!(ro.wait(WaitFor::AtLeast(7), long()), WaitOutcome::Ready);
    t.join().unwrap();

    // Once every holder of the first mapping is gone, a new import maps it afresh.
    let fd = ro
        .share_fd()
        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).unwrap())
        .unwrap();
    drop((p, q, r));
    let w = Payload::import(reopen(fd.as_fd(), OFlags::RDWR).as_fd(), &ID).unwrap();
    assert!(w.can_signal());
    assert_eq!(w.value(), 7);
    w.signal_value(8);
    assert_eq!(ro.value(), 8);
}

#[test]
fn read_only_binary_semaphore() {
    let p = Payload::new_shared(PayloadKind::BinarySemaphore, 1, &ID).unwrap();
    let ro = Payload::import(p.open_read_only_fd().unwrap().unwrap().as_fd(), &ID).unwrap();
    assert!(!ro.try_consume(), "a read-only payload takes nothing");
    assert_eq!(ro.wait(WaitFor::Consume, ms(5)), WaitOutcome::Ready);
    assert!(p.is_signaled(), "the read-only wait did not take the signal");
    ro.reset();
    assert!(p.is_signaled());
}

#[test]
fn read_only_waiter_without_wake_always_bit() {
    // A read-only fd made without open_read_only_fd: waiters fall back to 1 ms re-checks.
    let p = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    let ro = Payload::import(reopen(p.share_fd().unwrap(), OFlags::RDONLY).as_fd(), &ID).unwrap();
    let q = p.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        q.signal();
    });
    assert_eq!(ro.wait(WaitFor::Signaled, long()), WaitOutcome::Ready);
    t.join().unwrap();
}

fn assert_not_a_payload(r: Result<Payload, ImportError>, what: &str) {
    match r {
        Err(ImportError::NotAPayload(why)) => eprintln!("{what}: {why}"),
        Err(e) => panic!("{what}: unexpected error {e}"),
        Ok(_) => panic!("{what}: imported"),
    }
}

#[test]
fn import_rejects_foreign_fds() {
    let null = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).unwrap();
    assert_not_a_payload(Payload::import(null.as_fd(), &ID), "/dev/null");
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    assert_not_a_payload(Payload::import(rd.as_fd(), &ID), "pipe read end");
    assert_not_a_payload(Payload::import(wr.as_fd(), &ID), "pipe write end");
    let plain = sealed_memfd(4096, SealFlags::empty());
    assert_not_a_payload(Payload::import(plain.as_fd(), &ID), "unsealed memfd");
    let partly = sealed_memfd(4096, SealFlags::SHRINK | SealFlags::GROW);
    assert_not_a_payload(Payload::import(partly.as_fd(), &ID), "memfd without F_SEAL_SEAL");
    let big = sealed_memfd(8192, page::REQUIRED_SEALS);
    assert_not_a_payload(Payload::import(big.as_fd(), &ID), "8 KiB memfd");
    let empty = sealed_memfd(0, page::REQUIRED_SEALS);
    assert_not_a_payload(Payload::import(empty.as_fd(), &ID), "empty memfd");
    let dir = rustix::fs::open("/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    assert_not_a_payload(Payload::import(dir.as_fd(), &ID), "directory");
    let exe = rustix::fs::open("/proc/self/exe", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    assert_not_a_payload(Payload::import(exe.as_fd(), &ID), "regular file");

    let p = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    let wronly = reopen(p.share_fd().unwrap(), OFlags::WRONLY);
    assert_not_a_payload(Payload::import(wronly.as_fd(), &ID), "write-only fd");
}

#[test]
fn import_rejects_bad_headers_and_identities() {
    let zero = sealed_memfd(4096, page::REQUIRED_SEALS);
    assert!(matches!(
        Payload::import(zero.as_fd(), &ID),
        Err(ImportError::BadHeader(_))
    ));

    // A real page, then each header field broken in turn (through a raw mapping, while no
    // import of the page is alive in this process).
    let p = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    let fd = rustix::io::fcntl_dupfd_cloexec(p.share_fd().unwrap(), 0).unwrap();
    drop(p);
    let map = RawMap::new(fd.as_fd());
    assert!(Payload::import(fd.as_fd(), &ID).is_ok());
    let cases: [(usize, u32, &str); 6] = [
        (0, 0x4141_4141, "magic"),
        (8, 1, "version 1 (no doorbell fields)"),
        (8, 3, "version"),
        (12, 9, "kind"),
        (16, 80, "layout of version 1"),
        (16, 4096, "layout"),
    ];
    for (offset, bad, what) in cases {
        let word = map.u32_at(offset);
        let good = word.swap(bad, Ordering::SeqCst);
        match Payload::import(fd.as_fd(), &ID) {
            Err(ImportError::BadHeader(why)) => eprintln!("{what}: {why}"),
            Err(e) => panic!("{what}: unexpected {e}"),
            Ok(_) => panic!("{what}: accepted"),
        }
        word.store(good, Ordering::SeqCst);
    }
    assert!(matches!(
        Payload::import(fd.as_fd(), &OTHER),
        Err(ImportError::OtherDevice)
    ));

    // Another identity, also when the page is already mapped (cache hit).
    let p = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    assert!(matches!(
        Payload::import(p.share_fd().unwrap(), &OTHER),
        Err(ImportError::OtherDevice)
    ));
    let ro = p.open_read_only_fd().unwrap().unwrap();
    assert!(matches!(
        Payload::import(ro.as_fd(), &OTHER),
        Err(ImportError::OtherDevice)
    ));
    assert!(Payload::import(ro.as_fd(), &ID).is_ok());
}

#[test]
fn sync_file_payload() {
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    let s = Payload::from_sync_file(PayloadKind::BinarySemaphore, rd);
    assert!(!s.is_shared());
    assert!(s.share_fd().is_none());
    assert!(s.sync_file_fd().is_some());
    assert!(!s.is_signaled());
    assert!(!s.try_consume());
    s.signal();
    s.reset();
    assert!(!s.is_signaled());
    assert_eq!(
        s.wait(WaitFor::Consume, Deadline::from_timeout_ns(0)),
        WaitOutcome::TimedOut
    );
    assert_eq!(s.wait(WaitFor::Signaled, ms(10)), WaitOutcome::TimedOut);
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        rustix::io::write(&wr, b"x").unwrap();
        wr
    });
    assert_eq!(s.wait(WaitFor::Consume, long()), WaitOutcome::Ready);
    let _wr = t.join().unwrap();
    assert!(s.is_signaled());
    assert!(s.try_consume());
    assert!(s.is_signaled(), "a sync file stays signaled");
    assert_eq!(s.value(), 1);
    assert_eq!(s.wait(WaitFor::AtLeast(2), ms(5)), WaitOutcome::TimedOut);

    // A sync file whose other end is gone counts as signaled (it never changes again).
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    drop(wr);
    let s = Payload::from_sync_file(PayloadKind::Fence, rd);
    assert_eq!(s.wait(WaitFor::Signaled, ms(5)), WaitOutcome::Ready);
}

// ---------------------------------------------------------------------------------------------
// Hostile peers

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn hostile_writer_cannot_crash_or_hang_waiters() {
    let fence = Payload::new_shared(PayloadKind::BinarySemaphore, 0, &ID).unwrap();
    let timeline = Payload::new_shared(PayloadKind::Timeline, 0, &ID).unwrap();
    let ro = Payload::import(fence.open_read_only_fd().unwrap().unwrap().as_fd(), &ID).unwrap();
    let maps = [
        RawMap::new(fence.share_fd().unwrap()),
        RawMap::new(timeline.share_fd().unwrap()),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut rng = 0x1234_5678_9abc_def1u64;
            while !stop.load(Ordering::Relaxed) {
                for map in &maps {
                    for w in map.words() {
                        w.store(xorshift(&mut rng), Ordering::Relaxed);
                    }
                    // Also poke the futex words as a peer might.
                    let _ = rustix::thread::futex::wake(map.u32_at(72), rustix::thread::futex::Flags::empty(), 1);
                }
            }
            maps
        })
    };
    let bound = Duration::from_secs(2);
    for i in 0..10 {
        let cases: [(&Payload, WaitFor); 5] = [
            (&fence, WaitFor::Consume),
            (&fence, WaitFor::AtLeast(2)),
            (&ro, WaitFor::Signaled),
            (&timeline, WaitFor::AtLeast(u64::MAX)),
            (&timeline, WaitFor::Signaled),
        ];
        for (p, what) in cases {
            let start = Instant::now();
            let outcome = p.wait(what, ms(50));
            assert!(start.elapsed() < bound, "{what:?} took {:?}", start.elapsed());
            if what == WaitFor::AtLeast(2) {
                assert_eq!(outcome, WaitOutcome::TimedOut, "a flag never reaches 2");
            }
        }
        let start = Instant::now();
        let _ = wait_many(
            &[
                (&fence, WaitFor::AtLeast(2)),
                (&timeline, WaitFor::AtLeast(u64::MAX)),
                (&ro, WaitFor::AtLeast(3)),
            ],
            i % 2 == 0,
            ms(50),
        );
        assert!(start.elapsed() < bound);
        // Signals and values on a trashed page do not crash either.
        fence.signal();
        let _ = fence.try_consume();
        timeline.signal_value(i);
        let _ = (fence.value(), ro.is_signaled(), timeline.value());
    }
    stop.store(true, Ordering::Relaxed);
    let maps = writer.join().unwrap();
    // The cached header still rules this process's view of the page...
    assert_eq!(fence.kind(), PayloadKind::BinarySemaphore);
    assert!(Payload::import(fence.share_fd().unwrap(), &ID).unwrap().same_as(&fence));
    // ...but a fresh mapping reads the trashed header and refuses it.
    let fd = rustix::io::fcntl_dupfd_cloexec(ro.share_fd().unwrap(), 0).unwrap();
    drop(ro);
    assert!(Payload::import(fd.as_fd(), &ID).is_err());
    drop(maps);
}

// ---------------------------------------------------------------------------------------------
// wait_many

#[test]
fn wait_many_mixed() {
    let pf = Payload::new_private(PayloadKind::Fence, 0);
    let sf = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    let st = Payload::new_shared(PayloadKind::Timeline, 0, &ID).unwrap();
    let ps = Payload::new_private(PayloadKind::BinarySemaphore, 0);
    let ss = Payload::new_shared(PayloadKind::BinarySemaphore, 0, &ID).unwrap();
    // The timeline goes last: it stays at 3 once signaled.
    let set = [
        (&pf, WaitFor::Signaled),
        (&sf, WaitFor::Signaled),
        (&ps, WaitFor::Consume),
        (&ss, WaitFor::Consume),
        (&st, WaitFor::AtLeast(3)),
    ];
    assert_eq!(
        wait_many(&set, true, Deadline::from_timeout_ns(0)),
        Err(WaitOutcome::TimedOut)
    );
    assert_eq!(wait_many(&set, true, ms(10)), Err(WaitOutcome::TimedOut));
    assert_eq!(wait_many(&set, false, ms(10)), Err(WaitOutcome::TimedOut));
    assert_eq!(wait_many(&[], true, ms(1)), Err(WaitOutcome::TimedOut));
    assert_eq!(wait_many(&[], false, ms(1)), Ok(None));

    // Any: each entry in turn, signaled from another thread.
    for (i, (p, _)) in set.iter().enumerate() {
        let q = (*p).clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            if q.kind().is_counter() {
                q.signal_value(3)
            } else {
                q.signal()
            }
        });
        assert_eq!(wait_many(&set, true, long()), Ok(Some(i)));
        t.join().unwrap();
        if p.kind() == PayloadKind::BinarySemaphore {
            assert!(!p.is_signaled(), "the any-wait consumed entry {i}");
        } else {
            p.reset();
        }
    }

    // All: everything signaled from another thread.
    let set = [
        (&pf, WaitFor::Signaled),
        (&sf, WaitFor::Signaled),
        (&st, WaitFor::AtLeast(4)),
        (&ps, WaitFor::Consume),
        (&ss, WaitFor::Consume),
    ];
    let all: Vec<Payload> = set.iter().map(|(p, _)| (*p).clone()).collect();
    let t = thread::spawn(move || {
        for p in all {
            thread::sleep(Duration::from_millis(5));
            if p.kind().is_counter() {
                p.signal_value(4)
            } else {
                p.signal()
            }
        }
    });
    assert_eq!(wait_many(&set, false, long()), Ok(None));
    t.join().unwrap();
    assert!(
        !ps.is_signaled() && !ss.is_signaled(),
        "all-wait consumed the semaphores"
    );
    assert!(pf.is_signaled() && sf.is_signaled());
}

#[test]
fn wait_many_with_sync_files() {
    let pf = Payload::new_private(PayloadKind::Fence, 0);
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    let s = Payload::from_sync_file(PayloadKind::Fence, rd);
    assert_eq!(
        wait_many(&[(&pf, WaitFor::Signaled), (&s, WaitFor::Signaled)], true, ms(10)),
        Err(WaitOutcome::TimedOut)
    );
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        rustix::io::write(&wr, b"x").unwrap();
        wr
    });
    assert_eq!(
        wait_many(&[(&pf, WaitFor::Signaled), (&s, WaitFor::Signaled)], true, long()),
        Ok(Some(1))
    );
    let _wr = t.join().unwrap();

    // Only sync files: a plain poll.
    let (rd2, wr2) = rustix::pipe::pipe().unwrap();
    let s2 = Payload::from_sync_file(PayloadKind::Fence, rd2);
    assert_eq!(
        wait_many(&[(&s2, WaitFor::Signaled)], true, ms(10)),
        Err(WaitOutcome::TimedOut)
    );
    assert_eq!(
        wait_many(&[(&s2, WaitFor::Signaled), (&s, WaitFor::Signaled)], true, ms(10)),
        Ok(Some(1))
    );
    drop(wr2);
    assert_eq!(wait_many(&[(&s2, WaitFor::Signaled)], false, long()), Ok(None));
}

#[test]
fn wait_many_1024_private() {
    let fences: Vec<Payload> = (0..1024).map(|_| Payload::new_private(PayloadKind::Fence, 0)).collect();
    let set: Vec<(&Payload, WaitFor)> = fences.iter().map(|p| (p, WaitFor::Signaled)).collect();
    assert_eq!(wait_many(&set, true, ms(10)), Err(WaitOutcome::TimedOut));
    let q = fences[777].clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        q.signal();
    });
    assert_eq!(wait_many(&set, true, long()), Ok(Some(777)));
    t.join().unwrap();
    assert_eq!(wait_many(&set, false, ms(10)), Err(WaitOutcome::TimedOut));
    let all = fences.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        for p in all.iter().rev() {
            p.signal();
        }
    });
    assert_eq!(wait_many(&set, false, long()), Ok(None));
    t.join().unwrap();
}

/// A shared page signaled behind this process's back by a process that cannot ring doorbells
/// (it marked the page foreign): the any-wait must be woken through the page's own futex word,
/// both through one `futex_waitv` (few shared payloads) and with helper threads (more than
/// 127).
#[test]
fn wait_many_foreign_signals() {
    for (count, target) in [(3usize, 1usize), (10, 9), (200, 150)] {
        let mut payloads: Vec<Payload> = (0..4).map(|_| Payload::new_private(PayloadKind::Fence, 0)).collect();
        payloads.extend((0..count).map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap()));
        let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
        let map = RawMap::foreign(payloads[4 + target].share_fd().unwrap());
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            map.foreign_signal(1);
            map
        });
        assert_eq!(wait_many(&set, true, long()), Ok(Some(4 + target)), "{count} shared");
        drop(t.join().unwrap());
    }
    // And a single wait.
    let p = Payload::new_shared(PayloadKind::Timeline, 0, &ID).unwrap();
    let map = RawMap::new(p.share_fd().unwrap());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        map.foreign_signal(9);
        map
    });
    assert_eq!(p.wait(WaitFor::AtLeast(9), long()), WaitOutcome::Ready);
    drop(t.join().unwrap());
}

/// More than 127 shared payloads that cannot use the doorbell (foreign pages): the words past
/// the caller's own go to helper threads. A foreign signal of any page wakes the wait at once
/// (no 1 ms cycling), in the caller's chunk or in a helper's, also when it lands while the
/// helpers are being set up; the helpers go back to the pool afterwards; a timeout still times
/// out.
#[test]
fn wait_many_1024_shared_helpers() {
    let payloads: Vec<Payload> = (0..1024)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    for p in &payloads {
        page_of(p).mark_foreign();
    }
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    assert_eq!(wait_many(&set, true, ms(20)), Err(WaitOutcome::TimedOut));
    for (target, delay_ms) in [
        (0usize, 30u64),
        (125, 30),
        (126, 30),
        (700, 30),
        (1023, 30),
        (1023, 0),
        (500, 1),
    ] {
        let map = RawMap::new(payloads[target].share_fd().unwrap());
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(delay_ms));
            map.foreign_signal(1);
            (map, Instant::now())
        });
        assert_eq!(wait_many(&set, true, long()), Ok(Some(target)), "page {target}");
        let returned = Instant::now();
        let (map, signaled) = t.join().unwrap();
        assert!(
            returned.duration_since(signaled) < Duration::from_millis(500),
            "page {target}: woken {:?} after the signal",
            returned.duration_since(signaled)
        );
        map.foreign_signal(0);
        assert!(!payloads[target].is_signaled());
    }
    // The helpers unregister and go back to the pool on their own.
    let deadline = Instant::now() + Duration::from_secs(5);
    while many::idle_helpers() < 7 || payloads.iter().any(|p| waiters_of(p) != 0) {
        assert!(Instant::now() < deadline, "helpers did not finish");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The registered waiter count of a shared page.
fn waiters_of(p: &Payload) -> u32 {
    match &p.inner.body {
        Body::Shared { page, .. } => {
            page.sync().waiters.load(Ordering::SeqCst) & !(state::WAKE_ALWAYS | state::DOORBELL)
        }
        _ => 0,
    }
}

fn page_of(p: &Payload) -> &page::SharedPage {
    match &p.inner.body {
        Body::Shared { page, .. } => page,
        _ => panic!("not a shared payload"),
    }
}

/// This process's doorbell slot index.
fn my_slot() -> usize {
    doorbell::Doorbell::slot_of(page::current_pid())
}

/// A wait-any over 1024 shared payloads blocks without burning CPU: the CPU time of the
/// waiting thread over 300 ms blocked stays under 1% of it (caller, and helpers when there are,
/// all blocked in the kernel; the doorbell wait's safety-net looks included), through the
/// doorbell and through the pages' own words (foreign pages: helper threads). In a child
/// process, where no other test's signals wake the wait.
#[test]
fn wait_many_1024_shared_blocks_quietly() {
    check_child(child("quiet", &[]).output().unwrap());
}

fn child_quiet() {
    let payloads: Vec<Payload> = (0..1024)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    let process_cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    for foreign in [false, true] {
        if foreign {
            payloads.iter().for_each(|p| page_of(p).mark_foreign());
        }
        // Warm up (the pool, the interest), then measure a blocked wait that times out.
        assert_eq!(wait_many(&set, true, ms(10)), Err(WaitOutcome::TimedOut));
        let (t0, p0, start) = (cpu(), process_cpu(), Instant::now());
        assert_eq!(wait_many(&set, true, ms(300)), Err(WaitOutcome::TimedOut));
        let (used, wall) = (cpu() - t0, start.elapsed());
        let process = process_cpu() - p0;
        eprintln!("foreign: {foreign}: the waiting thread used {used:?}, the process {process:?} of {wall:?}");
        assert!(
            used < wall / 100,
            "the waiting thread used {used:?} of {wall:?} (foreign: {foreign})"
        );
        assert!(
            process < wall / 50,
            "the process used {process:?} of {wall:?} (foreign: {foreign})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Doorbells

/// The bell word of this process's doorbell slot.
fn my_bell() -> u32 {
    doorbell::local().expect("a doorbell").slots()[my_slot()]
        .bell
        .load(Ordering::SeqCst)
}

/// A wait-any over 1024 shared pages blocks on this process's doorbell: a peer's signal (one
/// that rings, and leaves this process's local epoch alone) rings it and ends the wait with the
/// right entry; the pages carry this process's interest (and say so in their waiter word), not a
/// registered waiter each; no helper thread is involved.
#[test]
fn doorbell_wait_any_woken_by_a_peer() {
    assert!(doorbell::domain().is_some(), "no doorbell file in /dev/shm");
    let payloads: Vec<Payload> = (0..1024)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    assert_eq!(wait_many(&set, true, ms(5)), Err(WaitOutcome::TimedOut));
    for p in &payloads {
        let page = page_of(p);
        assert!(page.doorbell_capable() && !page.is_foreign());
        assert!(page.interest_of(my_slot()) >= 1, "interest registered");
        assert_ne!(page.sync().waiters.load(Ordering::SeqCst) & state::DOORBELL, 0);
        assert_eq!(waiters_of(p), 0, "no per-page waiter registration");
    }
    for target in [0usize, 511, 1023] {
        let map = RawMap::new(payloads[target].share_fd().unwrap());
        let before = my_bell();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            map.peer_signal(1);
            map
        });
        assert_eq!(wait_many(&set, true, long()), Ok(Some(target)), "page {target}");
        let map = t.join().unwrap();
        assert_ne!(my_bell(), before, "the signal rang this process's doorbell");
        map.peer_signal(0);
        assert!(!payloads[target].is_signaled());
    }
    // Two pages and a private payload: the right one each time, also for a counter.
    let tl = Payload::new_shared(PayloadKind::Timeline, 0, &ID).unwrap();
    let private = Payload::new_private(PayloadKind::Fence, 0);
    let set = [
        (&private, WaitFor::Signaled),
        (&payloads[3], WaitFor::Signaled),
        (&tl, WaitFor::AtLeast(7)),
    ];
    let map = RawMap::new(tl.share_fd().unwrap());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        map.peer_signal(6);
        thread::sleep(Duration::from_millis(10));
        map.peer_signal(7);
        map
    });
    assert_eq!(wait_many(&set, true, long()), Ok(Some(2)));
    drop(t.join().unwrap());
}

/// Interest lasts while the page is mapped and goes when the last payload of it in this process
/// drops; doorbell waits leave no sleeper behind.
#[test]
fn doorbell_interest_follows_the_mapping() {
    let p = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    let map = RawMap::new(p.share_fd().unwrap());
    let counter = || {
        let slot = my_slot();
        (map.words()[128 + slot / 8].load(Ordering::SeqCst) >> ((slot % 8) * 8)) & 0xff
    };
    assert_eq!(counter(), 0);
    let others: Vec<Payload> = (0..3)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let q = Payload::new_private(PayloadKind::Fence, 0);
    let mut set = vec![(&p, WaitFor::Signaled), (&q, WaitFor::Signaled)];
    set.extend(others.iter().map(|o| (o, WaitFor::Signaled)));
    for _ in 0..3 {
        assert_eq!(wait_many(&set, true, ms(1)), Err(WaitOutcome::TimedOut));
        assert_eq!(counter(), 1, "registered once, kept");
    }
    let again = Payload::import(p.share_fd().unwrap(), &ID).unwrap();
    assert!(again.same_as(&p));
    drop(set);
    drop((p, again));
    assert_eq!(counter(), 0, "taken back when unmapped");
    // Fewer than four shared pages wait on their own words: no interest registered.
    let few: Vec<Payload> = (0..3)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = few.iter().map(|p| (p, WaitFor::Signaled)).collect();
    assert_eq!(wait_many(&set, true, ms(1)), Err(WaitOutcome::TimedOut));
    assert!(few.iter().all(|p| page_of(p).interest_of(my_slot()) == 0));
}

/// A page that a process without doorbells mapped writable (here: marked so by hand) is waited
/// on through its own word, and such a process's signal (no ring) wakes the wait.
#[test]
fn doorbell_foreign_pages_use_their_own_word() {
    let payloads: Vec<Payload> = (0..300)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    // 299 doorbell pages and one foreign page.
    let map = RawMap::foreign(payloads[150].share_fd().unwrap());
    assert!(page_of(&payloads[150]).is_foreign());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        map.foreign_signal(1);
        map
    });
    assert_eq!(wait_many(&set, true, long()), Ok(Some(150)));
    drop(t.join().unwrap());
}

/// A page that turns foreign while a doorbell wait is blocked on it, and is then signaled
/// without a ring (the rare race of a process without doorbells importing it just then): the
/// safety net's look finds it (within [`doorbell::SAFETY_NET_MAX`]; not timed here).
#[test]
fn doorbell_page_turning_foreign_mid_wait() {
    let payloads: Vec<Payload> = (0..64)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    let map = RawMap::new(payloads[40].share_fd().unwrap());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        map.u32_at(88).fetch_or(page::FOREIGN, Ordering::SeqCst);
        map.foreign_signal(1);
        map
    });
    assert_eq!(wait_many(&set, true, long()), Ok(Some(40)));
    drop(t.join().unwrap());
    // The next wait sees the flag and waits on the page's own word.
    map_signal_reset(&payloads[40]);
    let map = RawMap::new(payloads[40].share_fd().unwrap());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        map.foreign_signal(1);
        map
    });
    assert_eq!(wait_many(&set, true, long()), Ok(Some(40)));
    drop(t.join().unwrap());
}

fn map_signal_reset(p: &Payload) {
    p.reset();
    assert!(!p.is_signaled());
}

// ---------------------------------------------------------------------------------------------
// Child processes

fn inheritable(fd: BorrowedFd<'_>) -> OwnedFd {
    let dup = rustix::io::dup(fd).unwrap();
    rustix::io::fcntl_setfd(&dup, rustix::io::FdFlags::empty()).unwrap();
    dup
}

fn child(role: &str, fds: &[(&str, RawFd)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "tests::child_role", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, fd) in fds {
        cmd.env(name, fd.to_string());
    }
    cmd
}

fn check_child(out: std::process::Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed ({}): {text}", out.status);
    assert!(text.contains("CHILD-OK"), "child did not run its role: {text}");
}

fn env_fd(name: &str) -> BorrowedFd<'static> {
    let raw: RawFd = std::env::var(name).unwrap().parse().unwrap();
    // SAFETY: the parent passed this fd by inheritance; it stays open for the whole child
    // process, which never closes it.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// Runs the role named by `TETHER_PAYLOAD_CHILD`; a no-op in a normal test run.
#[test]
fn child_role() {
    match std::env::var(CHILD_ENV).as_deref() {
        Ok("signal") => child_signal(),
        Ok("leak") => child_leak(),
        Ok("bell") => child_bell(),
        Ok("foreign") => child_foreign(),
        Ok("doorbell-dir") => child_doorbell_dir(),
        Ok("scribble") => child_scribble(),
        Ok("quiet") => child_quiet(),
        _ => return,
    }
    println!("CHILD-OK");
}

fn child_signal() {
    let timeline = Payload::import(env_fd("TL_FD"), &ID).unwrap();
    let fence = Payload::import(env_fd("FENCE_FD"), &ID).unwrap();
    let sem = Payload::import(env_fd("SEM_FD"), &ID).unwrap();
    assert!(!timeline.can_signal());
    assert!(fence.can_signal());
    assert_eq!(timeline.wait(WaitFor::AtLeast(5), long()), WaitOutcome::Ready);
    timeline.signal_value(100);
    fence.signal();
    assert_eq!(sem.wait(WaitFor::Consume, long()), WaitOutcome::Ready);
}

#[test]
fn cross_process_signal_and_wait() {
    let timeline = Payload::new_shared(PayloadKind::Timeline, 0, &ID).unwrap();
    let fence = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    let sem = Payload::new_shared(PayloadKind::BinarySemaphore, 0, &ID).unwrap();
    let tl_ro = timeline.open_read_only_fd().unwrap().unwrap();
    let fds = [
        inheritable(tl_ro.as_fd()),
        inheritable(fence.share_fd().unwrap()),
        inheritable(sem.share_fd().unwrap()),
    ];
    let proc = child(
        "signal",
        &[
            ("TL_FD", fds[0].as_raw_fd()),
            ("FENCE_FD", fds[1].as_raw_fd()),
            ("SEM_FD", fds[2].as_raw_fd()),
        ],
    )
    .spawn()
    .unwrap();
    drop(fds);
    thread::sleep(Duration::from_millis(30));
    timeline.signal_value(5);
    // The fence comes from the other process: only its page's futex word can wake us.
    let privates: Vec<Payload> = (0..3).map(|_| Payload::new_private(PayloadKind::Fence, 0)).collect();
    let mut set: Vec<(&Payload, WaitFor)> = privates.iter().map(|p| (p, WaitFor::Signaled)).collect();
    set.push((&fence, WaitFor::Signaled));
    assert_eq!(wait_many(&set, true, long()), Ok(Some(3)));
    sem.signal();
    check_child(proc.wait_with_output().unwrap());
    assert!(!sem.is_signaled(), "the child consumed the semaphore");
    assert_eq!(timeline.value(), 5, "the read-only child could not signal");
}

/// A scratch directory (mode 0700), removed on drop.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(what: &str) -> ScratchDir {
        use std::os::unix::fs::DirBuilderExt;
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tether-payload-test-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path).unwrap();
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bell`: imports the page `FENCE_FD`, waits until the doorbell slot `SLOT` has a sleeper,
/// then signals the page (which rings that doorbell).
fn child_bell() {
    let fence = Payload::import(env_fd("FENCE_FD"), &ID).unwrap();
    let slot: usize = std::env::var("SLOT").unwrap().parse().unwrap();
    assert!(
        page_of(&fence).doorbell_capable(),
        "the child shares the parent's doorbell file"
    );
    let sleepers = &doorbell::local().unwrap().slots()[slot].sleepers;
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleepers.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(5));
    fence.signal();
}

/// Another process signals one of 1024 shared pages a wait-any waits on: the signal rings this
/// process's doorbell and the wait returns that page.
#[test]
fn doorbell_cross_process_signal() {
    let payloads: Vec<Payload> = (0..1024)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    for target in [1000usize, 7] {
        let fd = inheritable(payloads[target].share_fd().unwrap());
        let proc = child("bell", &[("FENCE_FD", fd.as_raw_fd())])
            .env("SLOT", my_slot().to_string())
            .spawn()
            .unwrap();
        drop(fd);
        let before = my_bell();
        assert_eq!(wait_many(&set, true, long()), Ok(Some(target)));
        assert_ne!(my_bell(), before, "the other process rang this process's doorbell");
        check_child(proc.wait_with_output().unwrap());
        payloads[target].reset();
    }
}

/// `foreign`: a process without doorbells imports the page `FENCE_FD` (which marks it foreign)
/// and, with `SIGNAL_AFTER_MS` set, signals it that long after.
fn child_foreign() {
    assert!(doorbell::configure(None));
    assert_eq!(doorbell::domain(), None);
    let fence = Payload::import(env_fd("FENCE_FD"), &ID).unwrap();
    assert!(page_of(&fence).is_foreign());
    assert!(!page_of(&fence).doorbell_capable());
    if let Ok(ms) = std::env::var("SIGNAL_AFTER_MS") {
        thread::sleep(Duration::from_millis(ms.parse().unwrap()));
        fence.signal();
    }
}

/// A process without doorbells marks the pages it imports foreign; a wait-any then waits on the
/// page's own word, and that process's signal (which rings nothing) wakes it. When the import
/// lands while a doorbell wait is already blocked, the wait's safety net finds the signal.
#[test]
fn doorbell_foreign_process() {
    let payloads: Vec<Payload> = (0..64)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    // The race: blocked on the doorbell when the foreign process imports and signals.
    assert_eq!(wait_many(&set, true, ms(1)), Err(WaitOutcome::TimedOut));
    assert!(!page_of(&payloads[20]).is_foreign());
    let fd = inheritable(payloads[20].share_fd().unwrap());
    let proc = child("foreign", &[("FENCE_FD", fd.as_raw_fd())])
        .env("SIGNAL_AFTER_MS", "30")
        .spawn()
        .unwrap();
    drop(fd);
    assert_eq!(wait_many(&set, true, long()), Ok(Some(20)));
    check_child(proc.wait_with_output().unwrap());
    assert!(page_of(&payloads[20]).is_foreign());
    payloads[20].reset();
    // The flag is known before the wait: the page's own word wakes it.
    let fd = inheritable(payloads[21].share_fd().unwrap());
    let proc = child("foreign", &[("FENCE_FD", fd.as_raw_fd())])
        .env("SIGNAL_AFTER_MS", "30")
        .spawn()
        .unwrap();
    drop(fd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !page_of(&payloads[21]).is_foreign() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(wait_many(&set, true, long()), Ok(Some(21)));
    check_child(proc.wait_with_output().unwrap());
}

/// `doorbell-dir`: doorbells in `DIR` (a file there, private to the user, or refused when
/// `EXPECT` is `none`); imports the page `FENCE_FD` of a process in another domain.
fn child_doorbell_dir() {
    let dir = std::path::PathBuf::from(std::env::var("DIR").unwrap());
    assert!(doorbell::configure(Some(&dir)));
    let parent: u64 = std::env::var("PARENT_DOMAIN").unwrap().parse().unwrap();
    let own = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    if std::env::var("EXPECT").as_deref() == Ok("none") {
        assert_eq!(doorbell::domain(), None, "a doorbell file others may access is refused");
        assert!(page_of(&own).is_foreign(), "a page made without doorbells is foreign");
    } else {
        let domain = doorbell::domain().expect("a doorbell file in DIR");
        assert_ne!(domain, parent);
        assert!(!page_of(&own).is_foreign());
        let file = dir.join(format!("tether-doorbells-v1-{}", rustix::process::geteuid().as_raw()));
        let meta = std::fs::symlink_metadata(&file).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The page of a process with another doorbell file: foreign for both.
        let theirs = Payload::import(env_fd("FENCE_FD"), &ID).unwrap();
        assert!(page_of(&theirs).is_foreign() && !page_of(&theirs).doorbell_capable());
        // A wait-any over its own pages works through its own doorbell.
        let others: Vec<Payload> = (0..4)
            .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
            .collect();
        let mut set = vec![(&own, WaitFor::Signaled)];
        set.extend(others.iter().map(|o| (o, WaitFor::Signaled)));
        let map = RawMap::new(others[3].share_fd().unwrap());
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            map.peer_signal(1);
            map
        });
        assert_eq!(wait_many(&set, true, long()), Ok(Some(4)));
        assert!(page_of(&own).interest_of(my_slot()) >= 1, "waited through the doorbell");
        drop(t.join().unwrap());
    }
}

/// [`doorbell::configure`] puts the doorbell file elsewhere (another domain: pages shared with
/// this process are foreign), and a file that others could access is refused.
#[test]
fn doorbell_file_elsewhere() {
    let parent = doorbell::domain().expect("a doorbell");
    let page = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    let dir = ScratchDir::new("doorbells");
    let fd = inheritable(page.share_fd().unwrap());
    let out = child("doorbell-dir", &[("FENCE_FD", fd.as_raw_fd())])
        .env("DIR", &dir.0)
        .env("PARENT_DOMAIN", parent.to_string())
        .output()
        .unwrap();
    check_child(out);
    assert!(page_of(&page).is_foreign(), "the other domain's import marked it");
    // A doorbell file with group/other access is refused.
    let bad = ScratchDir::new("bad-doorbells");
    let file = bad
        .0
        .join(format!("tether-doorbells-v1-{}", rustix::process::geteuid().as_raw()));
    std::fs::write(&file, []).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = child("doorbell-dir", &[("FENCE_FD", fd.as_raw_fd())])
        .env("DIR", &bad.0)
        .env("PARENT_DOMAIN", parent.to_string())
        .env("EXPECT", "none")
        .output()
        .unwrap();
    check_child(out);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        0,
        "the refused file is left alone"
    );
}

/// `scribble`: with a doorbell file of its own (in `DIR`), a thread writes garbage over the
/// file's slots, the pages' doorbell fields and waiter bits and wakes the bells, while wait-anys
/// with timeouts run; they time out (nothing signals), and after the scribbling a real signal
/// still ends a wait.
fn child_scribble() {
    let dir = std::path::PathBuf::from(std::env::var("DIR").unwrap());
    assert!(doorbell::configure(Some(&dir)));
    assert!(doorbell::domain().is_some());
    let payloads: Vec<Payload> = (0..200)
        .map(|_| Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap())
        .collect();
    let set: Vec<(&Payload, WaitFor)> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
    assert_eq!(wait_many(&set, true, ms(1)), Err(WaitOutcome::TimedOut));
    let maps: Vec<RawMap> = payloads.iter().map(|p| RawMap::new(p.share_fd().unwrap())).collect();
    let file = dir.join(format!("tether-doorbells-v1-{}", rustix::process::geteuid().as_raw()));
    let file = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    let bells = RawFileMap::new(file.as_fd(), 4096 + 1024 * 64);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(Ordering::Relaxed) {
                for word in bells.words32().iter().skip(1024) {
                    word.store(xorshift(&mut rng) as u32, Ordering::Relaxed);
                }
                for slot in 0..1024 {
                    let _ = rustix::thread::futex::wake(
                        bells.u32_at(4096 + slot * 64),
                        rustix::thread::futex::Flags::empty(),
                        1,
                    );
                }
                for map in &maps {
                    // Domain, flags, interest counters, the doorbell and always-wake bits.
                    for w in map.words().iter().skip(10).take(2) {
                        w.store(xorshift(&mut rng), Ordering::Relaxed);
                    }
                    for w in map.words().iter().skip(128).take(128) {
                        w.store(xorshift(&mut rng), Ordering::Relaxed);
                    }
                    let bits = (xorshift(&mut rng) as u32) & (state::DOORBELL | state::WAKE_ALWAYS);
                    map.u32_at(76).store(bits, Ordering::Relaxed);
                }
            }
            (bells, maps)
        })
    };
    for _ in 0..20 {
        assert_eq!(wait_many(&set, true, ms(20)), Err(WaitOutcome::TimedOut));
    }
    stop.store(true, Ordering::Relaxed);
    let (bells, maps) = writer.join().unwrap();
    drop(bells);
    let mut maps = maps.into_iter();
    let map = maps.nth(150).unwrap();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        map.peer_signal(1);
        map
    });
    assert_eq!(wait_many(&set, true, long()), Ok(Some(150)));
    drop(t.join().unwrap());
}

/// A hostile process of the same user scribbles over the doorbell file and the pages' doorbell
/// fields: waits still end at their deadline, and a signal afterwards still ends a wait.
#[test]
fn doorbell_hostile_scribbling() {
    let dir = ScratchDir::new("scribble");
    let out = child("scribble", &[]).env("DIR", &dir.0).output().unwrap();
    check_child(out);
}

/// A raw shared mapping of the first `len` bytes of a file.
struct RawFileMap {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is owned by RawFileMap and only accessed through atomics.
unsafe impl Send for RawFileMap {}

impl RawFileMap {
    fn new(fd: BorrowedFd<'_>, len: usize) -> RawFileMap {
        // SAFETY: a new mapping at a kernel-chosen address of `len` bytes of a file that long.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .expect("mmap");
        RawFileMap { ptr, len }
    }

    fn words32(&self) -> &[AtomicU32] {
        // SAFETY: `len` mapped, page-aligned bytes that live as long as self; atomics allow
        // concurrent access from other mappings and threads.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<AtomicU32>(), self.len / 4) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        &self.words32()[offset / 4]
    }
}

impl Drop for RawFileMap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`; no reference into it outlives self.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().count()
}

fn leak_cycle() {
    let p = Payload::new_shared(PayloadKind::Fence, 0, &ID).unwrap();
    assert_eq!(mapping_count(), 1);
    let q = Payload::import(p.share_fd().unwrap(), &ID).unwrap();
    assert!(q.same_as(&p));
    assert_eq!(mapping_count(), 1);
    let ro_fd = p.open_read_only_fd().unwrap().unwrap();
    let r = Payload::import(ro_fd.as_fd(), &ID).unwrap();
    drop(ro_fd);
    assert_eq!(mapping_count(), 2);
    assert_eq!(
        r.wait(WaitFor::Signaled, Deadline::from_timeout_ns(0)),
        WaitOutcome::TimedOut
    );
    q.signal();
    assert_eq!(
        r.wait(WaitFor::Signaled, Deadline::from_timeout_ns(0)),
        WaitOutcome::Ready
    );
    assert!(Payload::import(p.share_fd().unwrap(), &OTHER).is_err());
    let bad = sealed_memfd(4096, page::REQUIRED_SEALS);
    assert!(Payload::import(bad.as_fd(), &ID).is_err());
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    let s = Payload::from_sync_file(PayloadKind::Fence, rd);
    drop(wr);
    let private = Payload::new_private(PayloadKind::Timeline, 0);
    let set = [
        (&private, WaitFor::AtLeast(1)),
        (&r, WaitFor::Signaled),
        (&s, WaitFor::Signaled),
    ];
    assert_eq!(wait_many(&set, true, Deadline::from_timeout_ns(0)), Ok(Some(1)));
    // A doorbell wait-any (interest registered in the pages, taken back at the unmapping; a
    // poll never arms the doorbell, so this one waits a little).
    let t: Vec<Payload> = (0..4)
        .map(|_| Payload::new_shared(PayloadKind::Timeline, 0, &ID).unwrap())
        .collect();
    let mut set: Vec<(&Payload, WaitFor)> = t.iter().map(|t| (t, WaitFor::AtLeast(1))).collect();
    set.push((&p, WaitFor::AtLeast(2)));
    assert_eq!(
        wait_many(&set, true, Deadline::from_timeout_ns(20_000)),
        Err(WaitOutcome::TimedOut)
    );
    drop(set);
    drop((p, q, r, s, private, t));
    assert_eq!(mapping_count(), 0);
}

fn child_leak() {
    leak_cycle();
    let (fds, maps) = (fd_count(), map_count());
    for _ in 0..4096 {
        leak_cycle();
    }
    assert_eq!(mapping_count(), 0);
    assert_eq!(fd_count(), fds, "fd leak");
    assert_eq!(map_count(), maps, "mapping leak");
    assert_eq!(page::cache_len(), 0, "stale cache entries");
}

#[test]
fn no_fd_or_mapping_leak() {
    check_child(child("leak", &[]).output().unwrap());
}

#[test]
fn payload_is_send_and_sync() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Payload>();
    let p = Payload::new_shared(PayloadKind::Fence, 1, &ID).unwrap();
    assert!(format!("{p:?}").contains("Fence"));
}

//! The state behind a fence or a semaphore, and nothing of Vulkan.
//!
//! A [`Payload`] is a fence flag, a binary-semaphore flag or a 64-bit timeline counter. It lives
//! either in plain process memory (private objects) or in one sealed 4 KiB memfd page that other
//! processes and instances map too (exportable objects). Cloning a `Payload` shares it: that is
//! reference transference. Waiting blocks in the kernel on a futex in the payload's memory.
//!
//! A shared page can be written by any process that maps it, so nothing here trusts its bytes:
//! the header is checked once on import and cached, and a waiter that sees garbage keeps waiting
//! until its deadline, never longer.
//!
//! # Conventions
//!
//! * **Flags** (fence, binary semaphore): the stored value is 0 (unsignaled) or non-zero
//!   (signaled); any non-zero value a peer writes counts as signaled. [`Payload::value`] reports
//!   0 or 1. Consuming swaps the observed non-zero value for 0 (compare-and-swap).
//! * **Counters**: a timeline moves with `fetch_max`, a D3D12 fence takes any value.
//!   [`Payload::signal`] on a counter adds 1 (saturating); [`Payload::reset`] does nothing;
//!   [`Payload::try_consume`] and [`WaitFor::Consume`] take nothing and mean "non-zero".
//! * **Read-only pages** (imported through an fd opened `O_RDONLY`, e.g. from
//!   [`Payload::open_read_only_fd`]): mapped `PROT_READ`, [`Payload::can_signal`] is false, and
//!   nothing ever writes through them: `signal`, `signal_value` and `reset` do nothing,
//!   `try_consume` returns false, and a [`WaitFor::Consume`] wait completes when the payload is
//!   signaled without taking the signal.
//! * **Sync files**: signaled once the fd polls readable (or reports an error/hang-up); a
//!   sync file stays signaled, so `try_consume` returns whether it is signaled; `signal`,
//!   `signal_value` and `reset` do nothing.
//!
//! See [`wait_many`] for waits on several payloads, and [`doorbell`] for how a wait-any over
//! many shared pages blocks on one futex word.
//!
//! # Page layout
//!
//! One memfd of exactly 4096 bytes named `tether-payload`, sealed with `F_SEAL_SHRINK |
//! F_SEAL_GROW | F_SEAL_SEAL` (never `F_SEAL_WRITE`), mapped `MAP_SHARED`. Native byte order.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 8  | magic `b"TETHERPL"` |
//! | 8  | 4  | version (`2`) |
//! | 12 | 4  | kind ([`PayloadKind`] as `u32`) |
//! | 16 | 4  | layout size (`2048`: header, sync state, doorbell fields) |
//! | 20 | 16 | driver UUID |
//! | 36 | 16 | device UUID |
//! | 52 | 12 | reserved (0) |
//! | 64 | 8  | value (`u64`) |
//! | 72 | 4  | futex sequence word (`u32`, incremented after every change) |
//! | 76 | 4  | waiter count (`u32`; bit 31 = always wake, read-only waiters may exist; bit 30 = doorbell interest registered) |
//! | 80 | 8  | doorbell domain (`u64`) |
//! | 88 | 4  | flags (`u32`; bit 0 = foreign) |
//! | 1024 | 1024 | doorbell interest counters (one `u8` per doorbell slot) |
//!
//! The header is checked once on import (magic, version, kind, layout size, identity) and
//! cached; the sync state is only accessed through atomics.

pub mod doorbell;
mod many;
mod page;
mod state;
mod sync_file;
mod sync_file_export;
mod sync_prims;

#[cfg(test)]
mod tests;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use page::SharedPage;
use state::{Access, SyncState, load64};

/// What a payload is. Stored in a shared page's header as a `u32`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// A fence: signaled or not; reset by the host.
    Fence = 1,
    /// A binary semaphore: signaled or not; a wait consumes the signal.
    BinarySemaphore = 2,
    /// A Vulkan timeline semaphore: a 64-bit counter that only goes up.
    Timeline = 3,
    /// A D3D12 fence: a 64-bit counter that a signal sets (also lower or equal).
    D3d12Fence = 4,
}

impl PayloadKind {
    /// Whether the payload is a counter (timeline or D3D12 fence) rather than a flag.
    pub fn is_counter(self) -> bool {
        matches!(self, PayloadKind::Timeline | PayloadKind::D3d12Fence)
    }
}

/// The device a shareable payload belongs to; an importer checks it (opaque handle types are
/// only compatible between matching driver and device UUIDs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub driver_uuid: [u8; 16],
    pub device_uuid: [u8; 16],
}

/// When a wait gives up. `Deadline::NEVER` waits forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub const NEVER: Deadline = Deadline(None);

    /// A Vulkan timeout in nanoseconds from now; `u64::MAX` (or anything that overflows) waits
    /// forever, 0 only polls.
    pub fn from_timeout_ns(timeout_ns: u64) -> Deadline {
        if timeout_ns == u64::MAX {
            return Deadline::NEVER;
        }
        Deadline(Instant::now().checked_add(Duration::from_nanos(timeout_ns)))
    }

    /// Time left, `None` for never; zero once passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// What a wait is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// A fence or binary semaphore is signaled (nothing consumed).
    Signaled,
    /// A binary semaphore is signaled; the wait takes the signal (at most one waiter does).
    Consume,
    /// A counter is at least this value.
    AtLeast(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    Ready,
    TimedOut,
}

/// Why an fd is not a payload this process can use. The ICD reports every case as
/// `VK_ERROR_INVALID_EXTERNAL_HANDLE`; the message says which.
#[derive(Debug)]
pub enum ImportError {
    /// Not a memfd page of ours (wrong file type, size, missing seals, closed fd, ...).
    NotAPayload(String),
    /// A page whose header does not parse (magic, version, kind or layout).
    BadHeader(String),
    /// A payload of another driver or device.
    OtherDevice,
    /// The kernel refused (mmap, fstat, ...).
    Io(std::io::Error),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::NotAPayload(why) => write!(f, "not a tether payload: {why}"),
            ImportError::BadHeader(why) => write!(f, "corrupt payload header: {why}"),
            ImportError::OtherDevice => write!(f, "payload belongs to another driver or device"),
            ImportError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// A fence or semaphore payload. `Clone` shares it (reference transference).
#[derive(Clone)]
pub struct Payload {
    inner: Arc<Inner>,
}

/// The shared state behind every clone of a [`Payload`].
pub(crate) struct Inner {
    kind: PayloadKind,
    body: Body,
}

pub(crate) enum Body {
    /// Plain process memory; private futexes.
    Private(SyncState),
    /// A mapped memfd page; shared futexes. `identity` is the header's, read once.
    Shared { page: SharedPage, identity: DeviceIdentity },
    /// A sync file (SYNC_FD import).
    SyncFile(OwnedFd),
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Body::Shared { page, .. } = &self.body {
            page::forget(page.key, self);
        }
    }
}

const PRIVATE_ACCESS: Access = Access {
    shared: false,
    writable: true,
};

impl Inner {
    /// The futex state and how to reach it; `None` for sync files.
    fn state(&self) -> Option<(&SyncState, Access)> {
        match &self.body {
            Body::Private(st) => Some((st, PRIVATE_ACCESS)),
            Body::Shared { page, .. } => Some((
                page.sync(),
                Access {
                    shared: true,
                    writable: page.writable(),
                },
            )),
            Body::SyncFile(_) => None,
        }
    }

    /// The doorbells a signal rings (a shared page in this process's doorbell domain).
    fn bells(&self) -> Option<doorbell::Bells<'_>> {
        match &self.body {
            Body::Shared { page, .. } => page.bells(),
            _ => None,
        }
    }

    /// The state a writer may change; `None` for read-only pages and sync files.
    fn writable_state(&self) -> Option<(&SyncState, Access)> {
        self.state().filter(|(_, access)| access.writable)
    }

    /// The value as stored (counters) or 0/1 (flags, sync files).
    fn value(&self) -> u64 {
        match self.state() {
            Some((st, _)) => {
                let v = load64(&st.value);
                if self.kind.is_counter() { v } else { u64::from(v != 0) }
            }
            None => u64::from(self.is_signaled()),
        }
    }

    fn is_signaled(&self) -> bool {
        match &self.body {
            Body::SyncFile(fd) => sync_file::is_ready(fd.as_fd()),
            _ => self.state().is_some_and(|(st, _)| load64(&st.value) != 0),
        }
    }

    /// Takes the signal of a writable flag; see the crate docs for the other cases.
    fn try_consume(&self) -> bool {
        if self.kind.is_counter() {
            return self.is_signaled();
        }
        match &self.body {
            Body::SyncFile(fd) => sync_file::is_ready(fd.as_fd()),
            _ => match self.writable_state() {
                None => false,
                Some((st, _)) => {
                    let mut current = load64(&st.value);
                    while current != 0 {
                        match st
                            .value
                            .compare_exchange_weak(current, 0, Ordering::AcqRel, Ordering::Acquire)
                        {
                            Ok(_) => return true,
                            Err(seen) => current = seen,
                        }
                    }
                    false
                }
            },
        }
    }

    /// Whether `what` holds now; performs the consume of a [`WaitFor::Consume`] where possible.
    fn ready(&self, what: WaitFor) -> bool {
        match what {
            WaitFor::Signaled => self.is_signaled(),
            WaitFor::AtLeast(target) => self.value() >= target,
            WaitFor::Consume => {
                if !self.kind.is_counter() && self.writable_state().is_some() {
                    self.try_consume()
                } else {
                    self.is_signaled()
                }
            }
        }
    }

    fn signal_value(&self, value: u64) {
        let Some((st, access)) = self.writable_state() else {
            return;
        };
        match self.kind {
            PayloadKind::Fence | PayloadKind::BinarySemaphore => {
                // A signal that an outstanding SYNC_FD export was waiting for goes to that
                // export only (copy transference: the export already reset the source).
                if value != 0 && sync_file_export::redirect_signal(self) {
                    return;
                }
                st.value.store(u64::from(value != 0), Ordering::Release);
                if value == 0 {
                    return;
                }
            }
            PayloadKind::Timeline => {
                st.value.fetch_max(value, Ordering::AcqRel);
            }
            PayloadKind::D3d12Fence => st.value.store(value, Ordering::Release),
        }
        st.publish(access, self.bells());
        if !self.kind.is_counter() {
            // An export registered while this signal landed: complete it now, not later on
            // the notifier thread, so the signaling operation is seen complete only after.
            sync_file_export::settle_signaled();
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flavour = match &self.inner.body {
            Body::Private(_) => "private",
            Body::Shared { page, .. } if page.writable() => "shared",
            Body::Shared { .. } => "shared (read-only)",
            Body::SyncFile(_) => "sync file",
        };
        f.debug_struct("Payload")
            .field("kind", &self.inner.kind)
            .field("flavour", &flavour)
            .field("value", &self.inner.value())
            .finish()
    }
}

impl Payload {
    /// A payload in plain memory, for objects that are never exported. `initial` is 0/1 for
    /// flags (1 = signaled) and the counter value for counters.
    pub fn new_private(kind: PayloadKind, initial: u64) -> Payload {
        let initial = if kind.is_counter() {
            initial
        } else {
            u64::from(initial != 0)
        };
        Payload {
            inner: Arc::new(Inner {
                kind,
                body: Body::Private(SyncState::new(initial)),
            }),
        }
    }

    /// A payload in a new sealed 4 KiB memfd page that can be exported.
    pub fn new_shared(kind: PayloadKind, initial: u64, owner: &DeviceIdentity) -> std::io::Result<Payload> {
        let initial = if kind.is_counter() {
            initial
        } else {
            u64::from(initial != 0)
        };
        Ok(Payload {
            inner: page::create(kind, initial, owner)?,
        })
    }

    /// Opens the payload behind `fd` (a page exported by [`Payload::share_fd`], possibly from
    /// another process). Checks seals, size, header and identity; the fd is not consumed. Repeated
    /// imports of one page share one mapping.
    ///
    /// An fd opened read-only gives a read-only payload ([`Payload::can_signal`] is false); the
    /// payload keeps its own duplicate of `fd`, so the caller may close `fd` right away.
    pub fn import(fd: BorrowedFd<'_>, identity: &DeviceIdentity) -> Result<Payload, ImportError> {
        Ok(Payload {
            inner: page::import(fd, identity)?,
        })
    }

    /// A copy payload (SYNC_FD import) that is signaled once `fd` polls readable. `kind` is
    /// `Fence` or `BinarySemaphore`. Owns `fd`.
    pub fn from_sync_file(kind: PayloadKind, fd: OwnedFd) -> Payload {
        Payload {
            inner: Arc::new(Inner {
                kind,
                body: Body::SyncFile(fd),
            }),
        }
    }

    pub fn kind(&self) -> PayloadKind {
        self.inner.kind
    }

    /// Whether this is a shared page (exportable by reference).
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.body, Body::Shared { .. })
    }

    /// Whether two values are the same payload (same memory).
    pub fn same_as(&self, other: &Payload) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The memfd of a shared page, for the exporter to duplicate. `None` for private payloads
    /// and sync files.
    pub fn share_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner.body {
            Body::Shared { page, .. } => Some(page.fd()),
            _ => None,
        }
    }

    /// The fd of a sync-file payload (from [`Payload::from_sync_file`]); `None` otherwise.
    pub fn sync_file_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner.body {
            Body::SyncFile(fd) => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// The driver and device a shared page belongs to; `None` for private payloads and sync
    /// files.
    pub fn identity(&self) -> Option<DeviceIdentity> {
        match &self.inner.body {
            Body::Shared { identity, .. } => Some(*identity),
            _ => None,
        }
    }

    /// A new read-only fd for a shared page (its memfd reopened through `/proc/self/fd/N` with
    /// `O_RDONLY | O_CLOEXEC`): a handle that can wait but not signal. `Ok(None)` for private
    /// payloads and sync files. Also does [`Payload::allow_read_only_waiters`].
    pub fn open_read_only_fd(&self) -> std::io::Result<Option<OwnedFd>> {
        match &self.inner.body {
            Body::Shared { page, .. } => page.reopen_read_only().map(Some),
            _ => Ok(None),
        }
    }

    /// Marks a shared page so that every signal wakes its futex even when no waiter has
    /// registered: needed for waiters that map it read-only (they cannot register). Called by
    /// [`Payload::open_read_only_fd`]; call it when making a read-only handle by other means.
    /// Without it a read-only waiter re-checks every millisecond. No effect on other payloads
    /// or through a read-only mapping.
    pub fn allow_read_only_waiters(&self) {
        if let Body::Shared { page, .. } = &self.inner.body {
            page.allow_read_only_waiters();
        }
    }

    /// Whether this process may signal, reset or consume through this payload (false for a
    /// page mapped read-only).
    pub fn can_signal(&self) -> bool {
        match &self.inner.body {
            Body::Private(_) | Body::SyncFile(_) => true,
            Body::Shared { page, .. } => page.writable(),
        }
    }

    /// Flags: whether signaled. Counters: whether non-zero.
    pub fn is_signaled(&self) -> bool {
        self.inner.is_signaled()
    }

    /// Flags: sets the signal and wakes waiters. Counters: see [`Payload::signal_value`].
    ///
    /// On a counter this adds 1 (saturating). No effect on read-only pages and sync files.
    pub fn signal(&self) {
        if self.inner.kind.is_counter() {
            if let Some((st, access)) = self.inner.writable_state() {
                let _ = st
                    .value
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_add(1)));
                st.publish(access, self.inner.bells());
            }
        } else {
            self.inner.signal_value(1);
        }
    }

    /// Flags: clears the signal.
    ///
    /// No effect on counters, read-only pages and sync files.
    pub fn reset(&self) {
        if !self.inner.kind.is_counter() {
            self.inner.signal_value(0);
        }
    }

    /// SYNC_FD export of a flag payload: `None` when it is signaled now (the signal is taken,
    /// and `-1` stands for "already signaled"), otherwise a new close-on-exec fd that polls
    /// readable once the payload is signaled, at which point the signal is taken from the
    /// payload (a fence reset, a semaphore wait). A sync-file payload re-exports a duplicate of
    /// its own fd.
    pub fn export_sync_file(&self) -> std::io::Result<Option<OwnedFd>> {
        sync_file_export::export(self)
    }

    /// Binary semaphore: takes the signal if there is one.
    ///
    /// Also for fences. A read-only page: false (nothing can be taken). Counters and sync
    /// files: whether signaled (nothing is taken).
    pub fn try_consume(&self) -> bool {
        self.inner.try_consume()
    }

    /// Counters: the current value (0 for flags... 1 if signaled).
    pub fn value(&self) -> u64 {
        self.inner.value()
    }

    /// Counters: a Timeline moves to `max(current, value)`; a D3D12 fence takes `value` as is.
    /// Wakes waiters.
    ///
    /// Flags: non-zero signals, zero resets. No effect on read-only pages and sync files.
    pub fn signal_value(&self, value: u64) {
        self.inner.signal_value(value);
    }

    /// Whether `what` holds now, without blocking and without taking anything (a
    /// [`WaitFor::Consume`] only needs the payload signaled).
    pub fn holds(&self, what: WaitFor) -> bool {
        match what {
            WaitFor::Signaled | WaitFor::Consume => self.inner.is_signaled(),
            WaitFor::AtLeast(target) => self.inner.value() >= target,
        }
    }

    /// A wait that does not block: whether `what` holds now; a [`WaitFor::Consume`] that holds
    /// has taken the signal, as a completed [`Payload::wait`] would have.
    pub fn poll(&self, what: WaitFor) -> bool {
        self.inner.ready(what)
    }

    /// Blocks (in the kernel) until `what` holds or the deadline passes.
    pub fn wait(&self, what: WaitFor, deadline: Deadline) -> WaitOutcome {
        let inner = &*self.inner;
        match inner.state() {
            Some((st, access)) => st.wait(access, deadline, || inner.ready(what)),
            None => match &inner.body {
                Body::SyncFile(fd) => {
                    if inner.ready(what) {
                        WaitOutcome::Ready
                    } else if matches!(what, WaitFor::AtLeast(t) if t > 1) {
                        // A sync file's value never exceeds 1.
                        deadline_sleep(deadline);
                        WaitOutcome::TimedOut
                    } else {
                        sync_file::wait(fd.as_fd(), deadline)
                    }
                }
                _ => WaitOutcome::TimedOut,
            },
        }
    }
}

/// Sleeps until the deadline (for waits that can never complete).
fn deadline_sleep(deadline: Deadline) {
    loop {
        match deadline.remaining() {
            Some(Duration::ZERO) => return,
            Some(r) => std::thread::sleep(r),
            None => std::thread::sleep(Duration::from_secs(3600)),
        }
    }
}

/// SYNC_FD exports whose payload has not been signaled yet. For tests and diagnostics.
pub fn pending_sync_file_exports() -> usize {
    sync_file_export::pending_exports()
}

/// Number of shared pages mapped in this process right now (each import of a page that is
/// already mapped with the same access reuses its mapping). For tests and diagnostics.
pub fn mapping_count() -> usize {
    page::mapping_count()
}

/// Waits for all or any of several conditions at once (`futex_waitv` where the kernel has it).
/// For `any`, returns the index of a satisfied entry.
///
/// `Ok(None)`: all entries satisfied (`any == false`). `Ok(Some(i))`: entry `i` is satisfied
/// (`any == true`; a `Consume` entry has been taken). `Err(WaitOutcome::TimedOut)`: the deadline
/// passed (at once for an empty wait-any). See the `many` module docs for how it blocks.
pub fn wait_many(waits: &[(&Payload, WaitFor)], any: bool, deadline: Deadline) -> Result<Option<usize>, WaitOutcome> {
    many::wait_many(waits, any, deadline)
}

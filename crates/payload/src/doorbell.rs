//! Doorbells: one futex word per process that signalers of any shared page ring, so that a
//! wait-any over many shared pages blocks on one word instead of one per page.
//!
//! # Why
//!
//! `futex_waitv` over 1024 shared words pins every word's page and queues 1024 futex entries,
//! and unqueues them all on the way out: tens of microseconds per call, on the wake-up's
//! critical path. With doorbells a wait-any blocks on the process-local epoch plus one shared
//! word, whatever the number of pages.
//!
//! # The doorbell file
//!
//! One file per user, `/dev/shm/tether-doorbells-v1-<euid>` (another directory with
//! [`configure`]), created mode 0600 and refused unless it is a regular file owned by the
//! effective uid that nobody else may access (a file someone else made under that name is
//! refused too: no doorbells then, only slower waits). It is not in the broker's runtime
//! directory (`$XDG_RUNTIME_DIR/tether/`), which holds only the broker's files; and this crate
//! needs no path of the handle model. Layout (native byte order):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"TETHERDB"` |
//! | 8 | 4 | version (`1`, also in the file name) |
//! | 12 | 4 | slot count ([`SLOTS`]) |
//! | 16 | 8 | domain: a non-zero value drawn by the creator (names this file in payload pages) |
//! | 4096 + 64·i | 64 | slot `i`: `bell` (`u32` futex word: ring count in the high 16 bits, tag of the last page rung in the low 16), `sleepers` (`u32`) |
//!
//! It is opened and mapped (and the fd closed) when this process first creates or imports a
//! shared page, and stays mapped for the life of the process. A process uses slot
//! `hash(pid) % SLOTS`; processes whose pids collide share a slot, which only costs them
//! spurious wake-ups (waiters always re-check their conditions). A process whose file cannot be
//! opened, or one of another user or another `/dev/shm`, is in another *domain*: see "Foreign
//! mappers" below.
//!
//! # Pages (layout version 2, see `page`)
//!
//! Each shared page holds the domain of the doorbell file its creator used, a sticky *foreign*
//! flag, and 1024 *interest counters* (one byte per slot, eight per `u64`): the number of
//! processes on that slot that may wait on the page through their doorbell. A process registers
//! its interest once, at its first wait-any on the page, and keeps it while it maps the page
//! (the unmapping takes it back), so repeated waits pay nothing. Bit 30 of the page's waiter
//! word (`DOORBELL` in `state`) says "interest has been registered": signalers look at the
//! counters only then.
//!
//! # Protocol
//!
//! * **Signal** (after the state change and the page's sequence increment, `SeqCst`): if the
//!   waiter word has the doorbell bit and this process is in the page's domain, for every
//!   non-zero interest counter whose slot has `sleepers > 0`: compare-and-swap `bell` to
//!   (count + 1, tag of the page) and `FUTEX_WAKE` it.
//! * **Wait-any**: arm the slot (`sleepers += 1`) once per call; each round read `bell`, then
//!   for every page make sure this process's interest is registered, read its sequence word
//!   (`SeqCst`) and check the conditions; then `futex_waitv` on the local epoch, `bell` and the
//!   words of the pages that cannot use the doorbell.
//!
//! No lost wake-up: if the waiter's sequence read of a page comes before the signaler's
//! increment (in the single order of `SeqCst` operations), the waiter's interest and sleeper
//! registration come before it too, so the signaler sees both and rings after the waiter read
//! `bell`, whose futex wait then fails or is woken; otherwise the waiter's check sees the new
//! state. `tests/loom.rs` checks this (and the one-ring shortcut below) with `model`, which exists
//! under `cfg(loom)` only.
//!
//! A waiter woken by exactly one ring since its last full check only checks the entries whose
//! page has the rung tag (16 bits of the page's inode number): every later ring still changes
//! `bell`, so nothing is lost by not looking at the others. Two or more rings, or any other
//! wake-up, make it check everything.
//!
//! # Foreign mappers
//!
//! A process that maps a page writable but cannot ring the page's doorbells (no doorbell file,
//! another file: another user, another `/dev/shm`) sets the page's foreign flag at import;
//! waiters then wait on that page's own sequence word, as without doorbells, and signalers
//! keep waking that word when its waiter count says so.
//!
//! A foreign process that imports a page while a doorbell waiter is already blocked on it can
//! signal it without ringing. Doorbell waits therefore look at their pages again (foreign flag
//! and sequence word: one cache line each) every [`safety_net`] interval even when nothing
//! rang: 10 ms for up to 40 pages, 250 µs per page above that (256 ms for 1,024 pages), at most
//! [`SAFETY_NET_MAX`]; a look costs about 0.1 µs per page, so a blocked wait spends about 0.05%
//! of its time on it whatever its size. That interval bounds the extra latency of this rare
//! case (the first wait after such an import; later waits see the flag), and of lost rings a
//! hostile peer causes.
//!
//! # Hostile peers
//!
//! Anything written to the interest counters, the foreign flag, the domain, bit 30 of the
//! waiter word or the doorbell file can cause spurious wake-ups, rings nobody needs, doorbell
//! waits that only notice a signal at the safety net's next look, or waits on a page's own
//! word; never a wait past its deadline, a crash or undefined behaviour (every field is read
//! and written through atomics, and the slot index comes from this process). The file is only
//! open to the same user, who can do worse; it is mapped once and never unmapped (a same-user
//! process that truncates it can make this process fault, as it could by other means, e.g.
//! `ptrace`).

use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;

use crate::state::{DOORBELL, SyncState, WAKE_ALL};
use crate::sync_prims::{AtomicU32, AtomicU64, futex_wake, store_load_barrier};

/// Slots in a doorbell file (and interest counters in a page).
pub const SLOTS: usize = 1024;
/// Interest counters per `u64` word of a page.
const LANES: usize = 8;
/// Interest words in a page.
pub(crate) const INTEREST_WORDS: usize = SLOTS / LANES;
/// How often a doorbell wait over a few pages looks at them again although nothing rang (see
/// the module docs); larger sets look less often ([`safety_net`]).
pub const SAFETY_NET: Duration = Duration::from_millis(10);
/// The longest safety-net interval.
pub const SAFETY_NET_MAX: Duration = Duration::from_secs(1);
/// Safety-net interval per doorbell page of a wait. A look costs about 0.1 µs per page (one
/// cache line each, cold after the sleep: measured 115 µs for 1,024 pages on a 2-vCPU VM), so
/// a blocked wait spends about 0.05% of its time on it whatever its size.
const SAFETY_NET_PER_PAGE: Duration = Duration::from_micros(250);

/// The safety-net interval of a wait on `pages` doorbell pages.
pub fn safety_net(pages: usize) -> Duration {
    SAFETY_NET_PER_PAGE
        .saturating_mul(u32::try_from(pages).unwrap_or(u32::MAX))
        .clamp(SAFETY_NET, SAFETY_NET_MAX)
}

const MAGIC: [u8; 8] = *b"TETHERDB";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 4096;
const SLOT_BYTES: usize = 64;
const FILE_BYTES: usize = HEADER_BYTES + SLOTS * SLOT_BYTES;
const DEFAULT_DIR: &str = "/dev/shm";

/// One process's doorbell (a cache line of the file).
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// Futex word: ring count (high 16 bits), tag of the last page rung (low 16 bits).
    pub(crate) bell: AtomicU32,
    /// Threads armed on this slot: in a wait-any that may sleep on `bell`.
    pub(crate) sleepers: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);

impl Slot {
    #[cfg(loom)]
    pub(crate) fn new() -> Slot {
        Slot {
            bell: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// A waiter that may sleep on `bell` announces itself (once per wait-any call).
    pub(crate) fn arm(&self) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        store_load_barrier();
    }

    pub(crate) fn disarm(&self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// The bell word, read before the checks a sleep on it relies on.
    pub(crate) fn observe(&self) -> u32 {
        self.bell.load(Ordering::SeqCst)
    }

    /// Rings for the page tagged `tag`, if anyone sleeps here.
    pub(crate) fn ring(&self, tag: u16) {
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut current = self.bell.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            let next = rung(current, tag);
            match self
                .bell
                .compare_exchange_weak(current, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    futex_wake(&self.bell, futex::Flags::empty(), WAKE_ALL);
                    return;
                }
                Err(seen) => current = seen,
            }
        }
        // Only a peer that keeps writing the word gets here: the sleepers' safety net covers it.
    }
}

/// Compare-and-swap attempts on a shared word before giving up (only a peer that keeps
/// writing the word makes them fail that often).
const CAS_TRIES: usize = 64;

/// The bell word after one more ring for `tag`.
fn rung(bell: u32, tag: u16) -> u32 {
    ((bell >> 16).wrapping_add(1) << 16) | u32::from(tag)
}

/// Rings between two readings of a bell word (modulo 2^16).
pub(crate) fn rings_between(before: u32, after: u32) -> u16 {
    ((after >> 16) as u16).wrapping_sub((before >> 16) as u16)
}

/// The tag of the page rung last, as a bell word says.
pub(crate) fn tag_in(bell: u32) -> u16 {
    bell as u16
}

/// The tag of a page: 16 bits of its inode number, the same in every process that maps it.
pub(crate) fn tag_of(ino: u64) -> u16 {
    (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as u16
}

/// A page's interest counters (one byte per slot, eight per word; 255 sticks).
#[derive(Clone, Copy)]
pub(crate) struct Interest<'a>(pub(crate) &'a [AtomicU64]);

impl Interest<'_> {
    fn lane(slot: usize) -> (usize, u32) {
        (slot / LANES, (slot % LANES) as u32 * 8)
    }

    /// One more process on `slot` may wait on the page through its doorbell.
    pub(crate) fn register(&self, slot: usize) {
        let (word, shift) = Self::lane(slot);
        let Some(w) = self.0.get(word) else { return };
        let mut current = w.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            if (current >> shift) & 0xff == 0xff {
                // Saturated: it stays (at worst, rings nobody needs).
                break;
            }
            match w.compare_exchange_weak(current, current + (1 << shift), Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        // (After CAS_TRIES failures, only possible while a peer keeps writing the word, the
        // interest is not registered: the waits' safety net covers it.)
        store_load_barrier();
    }

    /// Takes back one [`Interest::register`] (a saturated or zero counter stays as it is).
    pub(crate) fn unregister(&self, slot: usize) {
        let (word, shift) = Self::lane(slot);
        let Some(w) = self.0.get(word) else { return };
        let mut current = w.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            let lane = (current >> shift) & 0xff;
            if lane == 0 || lane == 0xff {
                return;
            }
            match w.compare_exchange_weak(current, current - (1 << shift), Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Rings the doorbell of every slot with interest in the page (those with sleepers).
    pub(crate) fn ring(&self, slots: &[Slot], tag: u16) {
        for (i, w) in self.0.iter().enumerate() {
            let v = w.load(Ordering::SeqCst);
            if v == 0 {
                continue;
            }
            for lane in 0..LANES {
                if (v >> (lane * 8)) & 0xff != 0
                    && let Some(slot) = slots.get(i * LANES + lane)
                {
                    slot.ring(tag);
                }
            }
        }
    }
}

/// What a signaler of a page needs to ring its doorbells.
#[derive(Clone, Copy)]
pub(crate) struct Bells<'a> {
    pub(crate) interest: Interest<'a>,
    pub(crate) slots: &'a [Slot],
    pub(crate) tag: u16,
}

impl Bells<'_> {
    pub(crate) fn ring(&self) {
        self.interest.ring(self.slots, self.tag);
    }
}

/// Before a doorbell wait-any checks a page's conditions: registers this process's interest
/// if `register` (it has not yet), makes sure the page's waiter word says that interest exists,
/// and reads the page's sequence word, in the order the protocol needs (see the module docs).
/// Returns the sequence word.
pub(crate) fn prepare_page(state: &SyncState, interest: Interest<'_>, slot: usize, register: bool) -> u32 {
    if register {
        interest.register(slot);
    }
    if state.waiters.load(Ordering::SeqCst) & DOORBELL == 0 {
        state.waiters.fetch_or(DOORBELL, Ordering::SeqCst);
    }
    store_load_barrier();
    state.seq.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// This process's doorbell file.

/// The mapped doorbell file of this process.
pub(crate) struct Doorbell {
    slots: &'static [Slot],
    /// The file's domain value (non-zero).
    pub(crate) domain: u64,
}

impl Doorbell {
    pub(crate) fn slots(&self) -> &'static [Slot] {
        self.slots
    }

    /// This process's slot index.
    pub(crate) fn slot_of(pid: u32) -> usize {
        let h = u64::from(pid).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize % SLOTS
    }
}

struct Config {
    /// `None`: no doorbells in this process.
    dir: Option<PathBuf>,
}

static CONFIG: Mutex<Config> = Mutex::new(Config { dir: None });
/// Whether [`local`] still has to try opening the file.
static PENDING: AtomicBool = AtomicBool::new(true);
static CONFIGURED: AtomicBool = AtomicBool::new(false);
static LOCAL: OnceLock<Doorbell> = OnceLock::new();

/// Where this process's doorbell file lives (`dir/tether-doorbells-v1-<euid>`), or `None` for no
/// doorbells (every wait-any then waits on each page's own futex word, and pages this process
/// maps writable are marked foreign). The default is `/dev/shm`. Takes effect only before the
/// first shared page is created or imported in this process: returns whether it did.
pub fn configure(dir: Option<&Path>) -> bool {
    let mut config = CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    if LOCAL.get().is_some() || !PENDING.load(Ordering::Acquire) {
        return false;
    }
    config.dir = dir.map(Path::to_path_buf);
    CONFIGURED.store(true, Ordering::Release);
    true
}

/// The domain value of this process's doorbell file, if it has one (opened on first need).
/// For tests and diagnostics.
pub fn domain() -> Option<u64> {
    local().map(|d| d.domain)
}

/// This process's doorbell, opened on first need; `None` if it has none.
pub(crate) fn local() -> Option<&'static Doorbell> {
    if let Some(d) = LOCAL.get() {
        return Some(d);
    }
    if cfg!(loom) || !PENDING.load(Ordering::Acquire) {
        return None;
    }
    let config = CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    if !PENDING.load(Ordering::Acquire) {
        return LOCAL.get();
    }
    let dir = if CONFIGURED.load(Ordering::Acquire) {
        config.dir.clone()
    } else {
        Some(PathBuf::from(DEFAULT_DIR))
    };
    if let Some(dir) = dir
        && let Ok(d) = open(&dir)
    {
        let _ = LOCAL.set(d);
    }
    PENDING.store(false, Ordering::Release);
    drop(config);
    LOCAL.get()
}

fn file_name() -> String {
    format!("tether-doorbells-v{VERSION}-{}", rustix::process::geteuid().as_raw())
}

/// The header at the start of the file. Only atomics.
#[repr(C)]
struct FileHeader {
    magic: [AtomicU32; 2],
    version: AtomicU32,
    slots: AtomicU32,
    domain: AtomicU64,
}

/// A domain value for a new file: different for every file made (time, pid, inode).
fn new_domain(st: &rustix::fs::Stat) -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let pid = rustix::process::getpid().as_raw_nonzero().get().unsigned_abs();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for v in [
        now.tv_sec as u64,
        now.tv_nsec as u64,
        u64::from(pid),
        st.st_ino,
        st.st_dev,
    ] {
        h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h | 1
}

/// Opens (creating it if needed) and maps the doorbell file in `dir`.
fn open(dir: &Path) -> io::Result<Doorbell> {
    let path = dir.join(file_name());
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY,
        Mode::from_raw_mode(0o600),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::other("doorbell file is not a regular file"));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() || st.st_mode & 0o077 != 0 {
        return Err(io::Error::other("doorbell file is not private to this user"));
    }
    // One process sets a new file up; the others wait for it here.
    rustix::fs::flock(&fd, FlockOperation::LockExclusive)?;
    let st = rustix::fs::fstat(&fd)?;
    let fresh = st.st_size == 0;
    if fresh {
        rustix::fs::ftruncate(&fd, FILE_BYTES as u64)?;
    } else if st.st_size != FILE_BYTES as i64 {
        return Err(io::Error::other("doorbell file has the wrong size"));
    }
    // SAFETY: a new shared mapping at an address the kernel picks (it aliases no Rust object)
    // of FILE_BYTES of a file that is that long. It is never unmapped, so the `'static`
    // references below stay valid; all access goes through atomics (other processes write the
    // same memory).
    let raw = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            FILE_BYTES,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            &fd,
            0,
        )?
    };
    let base = NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
    // SAFETY: the mapping is page-aligned, FILE_BYTES >= size_of::<FileHeader>(), initialised
    // (file pages read as zero or as written), every bit pattern is a valid atomic, and it lives
    // for the rest of the process (see above).
    let header: &'static FileHeader = unsafe { base.cast::<FileHeader>().as_ref() };
    // SAFETY: as above: SLOTS slots of 64 bytes (repr(C), align 64, atomics only) start at
    // HEADER_BYTES (page-aligned) and end at FILE_BYTES, inside the mapping.
    let slots: &'static [Slot] =
        unsafe { std::slice::from_raw_parts(base.as_ptr().add(HEADER_BYTES).cast::<Slot>(), SLOTS) };
    let magic = [
        u32::from_ne_bytes([MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3]]),
        u32::from_ne_bytes([MAGIC[4], MAGIC[5], MAGIC[6], MAGIC[7]]),
    ];
    if fresh {
        header.version.store(VERSION, Ordering::Relaxed);
        header.slots.store(SLOTS as u32, Ordering::Relaxed);
        header.domain.store(new_domain(&st), Ordering::Relaxed);
        header.magic[1].store(magic[1], Ordering::Relaxed);
        header.magic[0].store(magic[0], Ordering::Release);
    }
    let domain = header.domain.load(Ordering::Acquire);
    let valid = header.magic[0].load(Ordering::Acquire) == magic[0]
        && header.magic[1].load(Ordering::Relaxed) == magic[1]
        && header.version.load(Ordering::Relaxed) == VERSION
        && header.slots.load(Ordering::Relaxed) == SLOTS as u32
        && domain != 0;
    let _ = rustix::fs::flock(&fd, FlockOperation::Unlock);
    if !valid {
        // Left mapped (it is small, and `slots` must never dangle); not used.
        return Err(io::Error::other("doorbell file has a bad header"));
    }
    Ok(Doorbell { slots, domain })
}

// ---------------------------------------------------------------------------------------------
// The loom model's view (see `tests/loom.rs`).

/// The doorbell protocol on plain memory, for the loom model in `tests/loom.rs`: a page's
/// sequence word, waiter word and interest counters, and two doorbell slots, driven through the
/// same functions the real wait-any and signal paths use.
#[cfg(loom)]
pub mod model {
    use std::sync::atomic::Ordering;

    use super::{Bells, Interest, Slot, rings_between, tag_in};
    use crate::state::{Access, DOORBELL, SyncState};
    use crate::sync_prims::{AtomicU64, futex_wait};

    /// A page in a process's doorbell domain.
    pub struct Page {
        state: SyncState,
        interest: Vec<AtomicU64>,
        tag: u16,
    }

    /// A doorbell file of two slots.
    pub struct Doorbells {
        slots: Vec<Slot>,
    }

    impl Default for Doorbells {
        fn default() -> Self {
            Doorbells {
                slots: (0..2).map(|_| Slot::new()).collect(),
            }
        }
    }

    const ACCESS: Access = Access {
        shared: true,
        writable: true,
    };

    impl Page {
        pub fn new(tag: u16) -> Page {
            Page {
                state: SyncState::new(0),
                interest: vec![AtomicU64::new(0)],
                tag,
            }
        }

        /// A signal as `Payload::signal_value` does it on a fence page.
        pub fn signal(&self, doorbells: &Doorbells) {
            self.state.value.store(1, Ordering::Release);
            let bells = Bells {
                interest: Interest(&self.interest),
                slots: &doorbells.slots,
                tag: self.tag,
            };
            self.state.publish(ACCESS, Some(bells));
        }

        fn signaled(&self) -> bool {
            crate::state::load64(&self.state.value) != 0
        }
    }

    /// A wait-any of the process on `slot` over `pages` through its doorbell only (no
    /// deadline): the steps of `many::wait_any` for doorbell pages (a full check, or after
    /// exactly one ring only the pages with the rung tag). Returns the index of a signaled page.
    pub fn wait_any(pages: &[&Page], doorbells: &Doorbells, slot: usize, registered: bool) -> usize {
        let bell = &doorbells.slots[slot];
        bell.arm();
        let mut quick: Option<u16> = None;
        let mut seen = 0;
        let found = loop {
            match quick.take() {
                Some(tag) => {
                    if let Some(i) = pages.iter().position(|p| p.tag == tag && p.signaled()) {
                        break i;
                    }
                }
                None => {
                    seen = bell.observe();
                    for p in pages {
                        let _ = super::prepare_page(&p.state, Interest(&p.interest), slot, !registered);
                    }
                    if let Some(i) = pages.iter().position(|p| p.signaled()) {
                        break i;
                    }
                }
            }
            futex_wait(&bell.bell, rustix::thread::futex::Flags::empty(), seen, None);
            let now = bell.observe();
            if rings_between(seen, now) == 1 {
                quick = Some(tag_in(now));
                seen = now;
            }
        };
        bell.disarm();
        found
    }

    /// Registers the interest of the process on `slot` in `page` ahead of its waits (as an
    /// earlier wait-any of that process would have).
    pub fn register(page: &Page, slot: usize) {
        Interest(&page.interest).register(slot);
        page.state.waiters.fetch_or(DOORBELL, Ordering::SeqCst);
    }

    /// Whether the waiter word says "interest registered".
    pub fn doorbell_bit(page: &Page) -> bool {
        page.state.waiters.load(Ordering::SeqCst) & DOORBELL != 0
    }
}

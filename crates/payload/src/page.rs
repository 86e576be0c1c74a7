//! Shared payload pages: layout, creation, import and the per-process mapping cache.
//!
//! # Page layout
//!
//! One memfd of exactly 4096 bytes named `tether-payload`, sealed with `F_SEAL_SHRINK |
//! F_SEAL_GROW | F_SEAL_SEAL` (never `F_SEAL_WRITE`), mapped `MAP_SHARED`. All fields are in the
//! machine's native byte order (pages are only shared between processes of one machine).
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0  | 8  | magic | `b"TETHERPL"` |
//! | 8  | 4  | version | `2` |
//! | 12 | 4  | kind | [`PayloadKind`] as `u32` (1 fence, 2 binary semaphore, 3 timeline, 4 D3D12 fence) |
//! | 16 | 4  | layout size | `2048`: bytes of header, sync state and doorbell fields |
//! | 20 | 16 | driver UUID | [`DeviceIdentity::driver_uuid`] |
//! | 36 | 16 | device UUID | [`DeviceIdentity::device_uuid`] |
//! | 52 | 12 | reserved | zero |
//! | 64 | 8  | value | `u64`: flag (0 = unsignaled, non-zero = signaled) or counter |
//! | 72 | 4  | sequence | `u32` futex word, incremented after every state change |
//! | 76 | 4  | waiters | `u32`: number of registered waiters; bit 31 = "always wake" (read-only waiters may exist); bit 30 = doorbell interest registered |
//! | 80 | 8  | doorbell domain | `u64`: the domain of the creator's doorbell file (0: it had none) |
//! | 88 | 4  | flags | `u32`: bit 0 = foreign (a process that cannot ring this domain's doorbells maps the page writable) |
//! | 92 | 932 | unused | zero |
//! | 1024 | 1024 | interest | 1024 `u8` counters (eight per `u64`): processes per doorbell slot that may wait on the page through their doorbell |
//! | 2048 | .. | unused | zero |
//!
//! The header is written once by the creator, read once by each importer and cached in the
//! process; nothing after import depends on the page's header bytes, and the sync state is only
//! ever accessed through atomics, so a peer that scribbles over the page can disturb the values
//! and the wake-ups but not this process's memory safety. The doorbell fields (domain, flags,
//! interest, bit 30 of the waiter word) are explained in [`crate::doorbell`]; version 1 pages
//! (without them) and version 2 pages are refused by each other's importers, so processes that
//! use doorbells never share a page with ones that do not know them.

use std::collections::HashMap;
use std::io;
#[cfg_attr(loom, allow(unused_imports))] // only the layout checks use them
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use rustix::fs::{FileType, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::doorbell::{self, Bells, INTEREST_WORDS, Interest};
use crate::state::{SyncState, WAKE_ALWAYS, load32, load64};
use crate::sync_prims::{AtomicU32, AtomicU64};
use crate::{Body, DeviceIdentity, ImportError, Inner, PayloadKind};

pub(crate) const PAGE_SIZE: usize = 4096;
pub(crate) const MAGIC: [u8; 8] = *b"TETHERPL";
pub(crate) const VERSION: u32 = 2;
pub(crate) const MEMFD_NAME: &str = "tether-payload";
/// Seals an importer requires.
pub(crate) const REQUIRED_SEALS: SealFlags = SealFlags::SHRINK.union(SealFlags::GROW).union(SealFlags::SEAL);

/// The start of a shared page (see the module docs for the table). Only atomics, so a
/// reference to it may alias the same memory mapped by other processes (or twice in this one).
#[repr(C)]
pub(crate) struct PageLayout {
    magic: [AtomicU32; 2],
    version: AtomicU32,
    kind: AtomicU32,
    layout_size: AtomicU32,
    driver_uuid: [AtomicU32; 4],
    device_uuid: [AtomicU32; 4],
    reserved: [AtomicU32; 3],
    pub(crate) sync: SyncState,
    /// The creator's doorbell domain (0: none).
    domain: AtomicU64,
    /// [`FOREIGN`].
    flags: AtomicU32,
    unused: [AtomicU32; 233],
    /// Doorbell interest counters, eight per word.
    interest: [AtomicU64; INTEREST_WORDS],
}

pub(crate) const LAYOUT_SIZE: u32 = 2048;
/// Flag: a process that cannot ring this page's doorbell domain maps it writable.
pub(crate) const FOREIGN: u32 = 1;

// Under loom the atomics are loom's (bigger, and never mapped: pages cannot be made there).
#[cfg(not(loom))]
const _: () = {
    assert!(offset_of!(PageLayout, version) == 8);
    assert!(offset_of!(PageLayout, kind) == 12);
    assert!(offset_of!(PageLayout, layout_size) == 16);
    assert!(offset_of!(PageLayout, driver_uuid) == 20);
    assert!(offset_of!(PageLayout, device_uuid) == 36);
    assert!(offset_of!(PageLayout, sync) == 64);
    assert!(offset_of!(PageLayout, domain) == 80);
    assert!(offset_of!(PageLayout, flags) == 88);
    assert!(offset_of!(PageLayout, interest) == 1024);
    assert!(size_of::<PageLayout>() == LAYOUT_SIZE as usize);
    assert!(size_of::<PageLayout>() <= PAGE_SIZE);
};

/// A header as read (once) from a page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u32,
    pub(crate) kind: u32,
    pub(crate) layout_size: u32,
    pub(crate) identity: DeviceIdentity,
}

fn pack<const W: usize, const B: usize>(bytes: &[u8; B]) -> [u32; W] {
    std::array::from_fn(|i| {
        let mut w = [0u8; 4];
        for (j, b) in w.iter_mut().enumerate() {
            *b = bytes.get(i * 4 + j).copied().unwrap_or(0);
        }
        u32::from_ne_bytes(w)
    })
}

fn unpack<const W: usize, const B: usize>(words: &[AtomicU32; W]) -> [u8; B] {
    let mut out = [0u8; B];
    for (chunk, w) in out.chunks_mut(4).zip(words) {
        let bytes = load32(w).to_ne_bytes();
        chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or(&[]));
    }
    out
}

impl PageLayout {
    /// Writes header and initial state into a fresh (not yet shared) writable page.
    fn init(&self, kind: PayloadKind, initial: u64, owner: &DeviceIdentity, domain: Option<u64>) {
        let store = |dst: &[AtomicU32], src: &[u32]| {
            for (d, s) in dst.iter().zip(src) {
                d.store(*s, Ordering::Relaxed);
            }
        };
        store(&self.magic, &pack::<2, 8>(&MAGIC));
        self.version.store(VERSION, Ordering::Relaxed);
        self.kind.store(kind as u32, Ordering::Relaxed);
        self.layout_size.store(LAYOUT_SIZE, Ordering::Relaxed);
        store(&self.driver_uuid, &pack::<4, 16>(&owner.driver_uuid));
        store(&self.device_uuid, &pack::<4, 16>(&owner.device_uuid));
        store(&self.reserved, &[0; 3]);
        self.sync.value.store(initial, Ordering::Relaxed);
        self.sync.seq.store(0, Ordering::Relaxed);
        self.domain.store(domain.unwrap_or(0), Ordering::Relaxed);
        self.flags
            .store(if domain.is_some() { 0 } else { FOREIGN }, Ordering::Relaxed);
        self.sync.waiters.store(0, Ordering::SeqCst);
    }

    /// The interest counters (see [`crate::doorbell`]).
    pub(crate) fn interest(&self) -> Interest<'_> {
        Interest(&self.interest)
    }

    fn read_header(&self) -> Header {
        Header {
            magic: unpack::<2, 8>(&self.magic),
            version: load32(&self.version),
            kind: load32(&self.kind),
            layout_size: load32(&self.layout_size),
            identity: DeviceIdentity {
                driver_uuid: unpack::<4, 16>(&self.driver_uuid),
                device_uuid: unpack::<4, 16>(&self.device_uuid),
            },
        }
    }
}

pub(crate) fn kind_from_u32(v: u32) -> Option<PayloadKind> {
    Some(match v {
        1 => PayloadKind::Fence,
        2 => PayloadKind::BinarySemaphore,
        3 => PayloadKind::Timeline,
        4 => PayloadKind::D3d12Fence,
        _ => return None,
    })
}

/// Which mapping a page import can reuse: the same inode with the same writability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    dev: u64,
    ino: u64,
    writable: bool,
}

static CACHE: LazyLock<Mutex<HashMap<CacheKey, Weak<Inner>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

static MAPPINGS: AtomicUsize = AtomicUsize::new(0);

fn cache() -> MutexGuard<'static, HashMap<CacheKey, Weak<Inner>>> {
    CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Number of shared pages this process has mapped right now.
pub(crate) fn mapping_count() -> usize {
    MAPPINGS.load(Ordering::Relaxed)
}

#[cfg(test)]
pub(crate) fn cache_len() -> usize {
    cache().len()
}

/// Called when an `Inner` holding a page dies: forget its cache entry, unless a newer import of
/// the same page already replaced it.
pub(crate) fn forget(key: CacheKey, dying: *const Inner) {
    let mut cache = cache();
    if cache.get(&key).is_some_and(|entry| std::ptr::eq(entry.as_ptr(), dying)) {
        cache.remove(&key);
    }
}

/// One mapping of a shared page plus this process's own fd for it. Unmaps and closes on drop.
pub(crate) struct SharedPage {
    ptr: NonNull<PageLayout>,
    fd: OwnedFd,
    writable: bool,
    pub(crate) key: CacheKey,
    /// The page's doorbell tag (from its inode number).
    tag: u16,
    /// Whether the page's domain is this process's doorbell domain.
    in_domain: bool,
    /// This process's doorbell interest in the page: `pid << 32 | slot + 1`, 0 for none.
    registered: std::sync::atomic::AtomicU64,
}

// SAFETY: the mapping is owned by this value and unmapped only in `Drop`; all access to the
// mapped memory goes through atomics (`PageLayout` consists of atomics only), so it may be used
// from any thread.
unsafe impl Send for SharedPage {}
// SAFETY: see `Send`: shared references only give out `&PageLayout`, whose fields are atomics.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Maps the first 4096 bytes of `fd` (whose size the caller has checked and sealed).
    fn map(fd: OwnedFd, writable: bool, key: CacheKey) -> io::Result<SharedPage> {
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a new mapping at an address the kernel picks, so it aliases no Rust object; the
        // file is at least PAGE_SIZE bytes long and sealed against shrinking (checked by the
        // caller, or created so), so touching the mapping cannot fault.
        let raw = unsafe { rustix::mm::mmap(std::ptr::null_mut(), PAGE_SIZE, prot, MapFlags::SHARED, &fd, 0)? };
        let ptr = NonNull::new(raw.cast::<PageLayout>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        MAPPINGS.fetch_add(1, Ordering::Relaxed);
        Ok(SharedPage {
            ptr,
            fd,
            writable,
            key,
            tag: doorbell::tag_of(key.ino),
            in_domain: false,
            registered: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub(crate) fn layout(&self) -> &PageLayout {
        // SAFETY: `ptr` is a live, page-aligned mapping of PAGE_SIZE >= size_of::<PageLayout>()
        // bytes for as long as `self` lives; the memory is initialised (file pages read as zero
        // or hold what a peer wrote, and every bit pattern is a valid atomic integer); and it is
        // only accessed through atomics, which allows concurrent writers. On a read-only mapping
        // the rest of the crate only ever performs relaxed loads (see `state::load32`).
        unsafe { self.ptr.as_ref() }
    }

    pub(crate) fn sync(&self) -> &SyncState {
        &self.layout().sync
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// A new read-only fd for the same memfd (`/proc/self/fd/N` reopened `O_RDONLY`). Marks the
    /// page so that signalers always wake, since read-only waiters cannot register.
    pub(crate) fn reopen_read_only(&self) -> io::Result<OwnedFd> {
        let path = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        self.allow_read_only_waiters();
        Ok(fd)
    }

    /// The doorbell tag of the page.
    pub(crate) fn tag(&self) -> u16 {
        self.tag
    }

    /// Whether this process can wait on the page through its doorbell: a writable mapping in
    /// this process's doorbell domain (the foreign flag aside, see [`SharedPage::is_foreign`]).
    pub(crate) fn doorbell_capable(&self) -> bool {
        self.writable && self.in_domain
    }

    /// The page's foreign flag.
    pub(crate) fn is_foreign(&self) -> bool {
        load32(&self.layout().flags) & FOREIGN != 0
    }

    /// What a signal through this mapping rings: `None` unless the page is in this process's
    /// doorbell domain.
    pub(crate) fn bells(&self) -> Option<Bells<'_>> {
        if !self.doorbell_capable() {
            return None;
        }
        let slots = doorbell::local()?.slots();
        Some(Bells {
            interest: self.layout().interest(),
            slots,
            tag: self.tag,
        })
    }

    /// Before a doorbell wait-any of this process (on `slot`, pid `pid`) checks the page: the
    /// steps of [`doorbell::prepare_page`], registering the interest the first time. Returns the
    /// sequence word.
    pub(crate) fn prepare_bell(&self, slot: usize, pid: u32) -> u32 {
        let want = (u64::from(pid) << 32) | (slot as u64 + 1);
        let interest = self.layout().interest();
        let have = self.registered.load(Ordering::Acquire);
        if have == want {
            return doorbell::prepare_page(self.sync(), interest, slot, false);
        }
        let seq = doorbell::prepare_page(self.sync(), interest, slot, true);
        if self
            .registered
            .compare_exchange(have, want, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread recorded a registration meanwhile (it stands): take ours back.
            interest.unregister(slot);
        }
        seq
    }

    /// Sets the foreign flag, as an importer that cannot ring this domain's doorbells does.
    #[cfg(test)]
    pub(crate) fn mark_foreign(&self) {
        self.layout().flags.fetch_or(FOREIGN, Ordering::SeqCst);
    }

    /// This process's interest counter for doorbell slot `slot`.
    #[cfg(test)]
    pub(crate) fn interest_of(&self, slot: usize) -> u64 {
        let w = &self.layout().interest[slot / 8];
        (w.load(Ordering::SeqCst) >> ((slot % 8) * 8)) & 0xff
    }

    pub(crate) fn allow_read_only_waiters(&self) {
        if self.writable {
            self.sync().waiters.fetch_or(WAKE_ALWAYS, Ordering::SeqCst);
        }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        let registered = *self.registered.get_mut();
        if registered != 0 && (registered >> 32) as u32 == current_pid() {
            let slot = (registered & 0xffff_ffff) as usize - 1;
            self.layout().interest().unregister(slot);
        }
        // SAFETY: `ptr`/PAGE_SIZE is exactly the mapping made in `map`; no reference into it
        // outlives `self` (they all borrow `self`), so nothing uses it after this.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), PAGE_SIZE) };
        MAPPINGS.fetch_sub(1, Ordering::Relaxed);
        // `fd` is closed when the field drops.
    }
}

/// This process's id.
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get().unsigned_abs()
}

fn key_of(st: &rustix::fs::Stat, writable: bool) -> CacheKey {
    CacheKey {
        dev: st.st_dev,
        ino: st.st_ino,
        writable,
    }
}

/// A new sealed page holding a payload.
pub(crate) fn create(kind: PayloadKind, initial: u64, owner: &DeviceIdentity) -> io::Result<Arc<Inner>> {
    if cfg!(loom) {
        return Err(io::Error::other("shared pages are not modelled under loom"));
    }
    let fd = rustix::fs::memfd_create(MEMFD_NAME, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, PAGE_SIZE as u64)?;
    let st = rustix::fs::fstat(&fd)?;
    let key = key_of(&st, true);
    let mut page = SharedPage::map(fd, true, key)?;
    let domain = doorbell::local().map(|d| d.domain);
    page.layout().init(kind, initial, owner, domain);
    page.in_domain = domain.is_some();
    rustix::fs::fcntl_add_seals(page.fd(), REQUIRED_SEALS)?;
    let inner = Arc::new(Inner {
        kind,
        body: Body::Shared { page, identity: *owner },
    });
    cache().insert(key, Arc::downgrade(&inner));
    Ok(inner)
}

/// Checks and maps (or finds the existing mapping of) the page behind `fd`.
pub(crate) fn import(fd: BorrowedFd<'_>, identity: &DeviceIdentity) -> Result<Arc<Inner>, ImportError> {
    if cfg!(loom) {
        return Err(ImportError::NotAPayload(
            "shared pages are not modelled under loom".into(),
        ));
    }
    // Seals first: once SHRINK|GROW|SEAL are in place the size checked below cannot change.
    let seals = rustix::fs::fcntl_get_seals(fd)
        .map_err(|e| ImportError::NotAPayload(format!("cannot read seals ({e}); not a sealed memfd")))?;
    if !seals.contains(REQUIRED_SEALS) {
        return Err(ImportError::NotAPayload(format!(
            "memfd lacks the required seals (has {seals:?})"
        )));
    }
    let st = rustix::fs::fstat(fd).map_err(|e| ImportError::NotAPayload(format!("fstat failed: {e}")))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(ImportError::NotAPayload("not a regular file".into()));
    }
    if st.st_size != PAGE_SIZE as i64 {
        return Err(ImportError::NotAPayload(format!(
            "size {} instead of {PAGE_SIZE}",
            st.st_size
        )));
    }
    let flags =
        rustix::fs::fcntl_getfl(fd).map_err(|e| ImportError::NotAPayload(format!("fcntl(F_GETFL) failed: {e}")))?;
    let access = flags & OFlags::RWMODE;
    let writable = if access == OFlags::RDWR {
        true
    } else if access == OFlags::RDONLY {
        false
    } else {
        return Err(ImportError::NotAPayload("fd is opened write-only".into()));
    };
    let key = key_of(&st, writable);
    // (Opens the doorbell file on first need: before the cache lock.)
    let local_domain = doorbell::local().map(|d| d.domain);

    let mut cache = cache();
    if let Some(existing) = cache.get(&key).and_then(Weak::upgrade) {
        drop(cache);
        return match &existing.body {
            Body::Shared { identity: cached, .. } if cached == identity => Ok(existing),
            Body::Shared { .. } => Err(ImportError::OtherDevice),
            _ => Err(ImportError::NotAPayload("internal: cache entry is not a page".into())),
        };
    }
    let own = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| ImportError::Io(e.into()))?;
    let mut page = SharedPage::map(own, writable, key).map_err(ImportError::Io)?;
    let header = page.layout().read_header();
    if header.magic != MAGIC {
        return Err(ImportError::BadHeader(format!("bad magic {:02x?}", header.magic)));
    }
    if header.version != VERSION {
        return Err(ImportError::BadHeader(format!(
            "unsupported version {}",
            header.version
        )));
    }
    let Some(kind) = kind_from_u32(header.kind) else {
        return Err(ImportError::BadHeader(format!("unknown kind {}", header.kind)));
    };
    if header.layout_size != LAYOUT_SIZE {
        return Err(ImportError::BadHeader(format!(
            "layout size {} instead of {LAYOUT_SIZE}",
            header.layout_size
        )));
    }
    if header.identity != *identity {
        return Err(ImportError::OtherDevice);
    }
    let domain = load64(&page.layout().domain);
    page.in_domain = domain != 0 && local_domain == Some(domain);
    if writable && !page.in_domain {
        // This process cannot ring the doorbells of the page's waiters: they must wait on the
        // page's own word (see `doorbell`).
        page.layout().flags.fetch_or(FOREIGN, Ordering::SeqCst);
    }
    let inner = Arc::new(Inner {
        kind,
        body: Body::Shared {
            page,
            identity: header.identity,
        },
    });
    cache.insert(key, Arc::downgrade(&inner));
    drop(cache);
    Ok(inner)
}

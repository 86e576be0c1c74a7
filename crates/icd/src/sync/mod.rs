//! Fences, semaphores and events: a permanent payload plus an optional temporary one
//! (`active = temporary or permanent`), with the spec's rules for when the permanent one comes
//! back. Safe Rust only; payload mechanics live in `tether_payload`.

pub mod event;
pub mod fence;
pub mod release;
pub mod semaphore;

use std::sync::atomic::{AtomicU32, Ordering};

use tether_payload::Payload;

// The lock of `PayloadSlot`, loom's under `cfg(loom)` so that `tests/loom.rs` can check swaps of
// temporary and permanent payloads against waits and exports in every interleaving.
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

/// The permanent/temporary pair shared by fences and semaphores.
pub struct PayloadSlot {
    inner: Mutex<Slots>,
}

struct Slots {
    permanent: Payload,
    temporary: Option<Payload>,
    /// The permanent payload came from an import (export then follows
    /// `exportFromImportedHandleTypes`, not the create-time export types).
    permanent_imported: bool,
}

/// How an import installs its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permanence {
    Temporary,
    Permanent,
}

impl Permanence {
    /// From an import's `VK_*_IMPORT_TEMPORARY_BIT`.
    pub fn from_temporary_flag(temporary: bool) -> Permanence {
        if temporary {
            Permanence::Temporary
        } else {
            Permanence::Permanent
        }
    }
}

/// Queue operations submitted on an object that have not executed yet (imports into an object
/// with pending work are invalid).
#[derive(Default)]
pub struct PendingWork(AtomicU32);

impl PendingWork {
    pub fn is_pending(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }

    pub fn begin(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    pub fn end(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PayloadSlot {
    pub fn new(permanent: Payload) -> PayloadSlot {
        PayloadSlot {
            inner: Mutex::new(Slots {
                permanent,
                temporary: None,
                permanent_imported: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The payload operations act on now.
    pub fn active(&self) -> Payload {
        let s = self.lock();
        s.temporary.as_ref().unwrap_or(&s.permanent).clone()
    }

    /// The permanent payload.
    pub fn permanent(&self) -> Payload {
        self.lock().permanent.clone()
    }

    pub fn has_temporary(&self) -> bool {
        self.lock().temporary.is_some()
    }

    /// Whether the active payload was imported (temporarily or permanently).
    pub fn active_is_imported(&self) -> bool {
        let s = self.lock();
        s.temporary.is_some() || s.permanent_imported
    }

    /// The active payload, restoring the permanent one afterwards (a semaphore's next wait; any
    /// export; a fence reset).
    pub fn take_active(&self) -> Payload {
        let mut s = self.lock();
        match s.temporary.take() {
            Some(t) => t,
            None => s.permanent.clone(),
        }
    }

    /// Drops a temporary payload, if any.
    pub fn restore_permanent(&self) -> Payload {
        let (dropped, permanent) = {
            let mut s = self.lock();
            (s.temporary.take(), s.permanent.clone())
        };
        if dropped.is_some() {
            // The clones of returned waits go first: a payload goes when its objects let go.
            release::settle();
        }
        permanent
    }

    /// Installs an imported payload. A permanent import replaces the payload as if the object
    /// were re-created (dropping any temporary one too).
    pub fn install(&self, payload: Payload, permanence: Permanence) {
        let replaced = {
            let mut s = self.lock();
            match permanence {
                Permanence::Temporary => (s.temporary.replace(payload), None),
                Permanence::Permanent => {
                    s.permanent_imported = true;
                    (s.temporary.take(), Some(std::mem::replace(&mut s.permanent, payload)))
                }
            }
        };
        // The clones of returned waits go first: a payload goes when its objects let go.
        release::settle();
        drop(replaced);
    }
}

impl Drop for PayloadSlot {
    fn drop(&mut self) {
        // Before the payloads go (see `release`).
        release::settle();
    }
}

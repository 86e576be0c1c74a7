//! Payload references that a host wait over many objects took, released after the wait has
//! returned instead of on its way out.
//!
//! `vkWaitForFences` and `vkWaitSemaphores` clone each object's active payload (an atomic
//! increment each) so that nothing holds a handle-table borrow across the blocking wait. Dropping
//! 1,024 clones is 1,024 serialised atomic decrements, several microseconds between the wake-up
//! and the return. So a wait over [`DEFER_MIN`] or more objects hands its clones to
//! [`release_later`], and they are dropped by the next [`settle`]: at the start of the next such
//! wait (before it blocks), and whenever a fence or semaphore lets go of a payload (destroyed,
//! a permanent import replacing its payload, a temporary payload dropped), before it does. So a
//! payload is still released exactly when its last object lets go of it (and the clones of waits
//! that have returned never keep a destroyed object's page mapped or its fd open).
//!
//! Under `cfg(loom)` the clones are dropped at once (loom's objects may not outlive a model).

use tether_payload::Payload;

/// Waits over fewer objects drop their clones at once (it is cheap).
pub const DEFER_MIN: usize = 32;

#[cfg(not(loom))]
mod imp {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tether_payload::Payload;

    /// Batches waiting to be dropped; at most about one per thread that waits on many objects.
    static BATCHES: Mutex<Vec<Vec<Payload>>> = Mutex::new(Vec::new());
    /// Whether `BATCHES` may be non-empty (so that `settle` costs one load when it is not).
    static PENDING: AtomicBool = AtomicBool::new(false);

    fn batches() -> std::sync::MutexGuard<'static, Vec<Vec<Payload>>> {
        BATCHES.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn release_later(payloads: Vec<Payload>) {
        let mut batches = batches();
        batches.push(payloads);
        PENDING.store(true, Ordering::Release);
    }

    pub fn settle() {
        if !PENDING.load(Ordering::Acquire) {
            return;
        }
        let taken = {
            let mut batches = batches();
            PENDING.store(false, Ordering::Release);
            std::mem::take(&mut *batches)
        };
        // Dropped outside the lock (the last reference of a page unmaps it).
        drop(taken);
    }

    /// How many clones of `p` wait to be dropped.
    #[cfg(test)]
    pub fn kept(p: &Payload) -> usize {
        batches().iter().flatten().filter(|q| q.same_as(p)).count()
    }
}

#[cfg(loom)]
mod imp {
    use tether_payload::Payload;

    pub fn release_later(payloads: Vec<Payload>) {
        drop(payloads);
    }

    pub fn settle() {}
}

/// Drops `payloads` now if there are few, else at the next [`settle`].
pub fn release_later(payloads: Vec<Payload>) {
    if payloads.len() < DEFER_MIN {
        drop(payloads);
    } else {
        imp::release_later(payloads);
    }
}

/// Drops every batch [`release_later`] kept.
pub fn settle() {
    imp::settle();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use tether_payload::{Payload, PayloadKind};

    use super::*;

    #[test]
    fn batches_are_dropped_at_the_next_settle() {
        let p = Payload::new_private(PayloadKind::Fence, 0);
        release_later(vec![p.clone(); 3]);
        assert_eq!(imp::kept(&p), 0, "a small batch is dropped at once");
        release_later(vec![p.clone(); DEFER_MIN]);
        assert_eq!(imp::kept(&p), DEFER_MIN);
        settle();
        assert_eq!(imp::kept(&p), 0);
    }

    #[test]
    fn a_slot_settles_before_it_lets_go() {
        let p = Payload::new_private(PayloadKind::Fence, 0);
        let slot = crate::sync::PayloadSlot::new(p.clone());
        release_later(vec![p.clone(); DEFER_MIN]);
        slot.install(
            Payload::new_private(PayloadKind::Fence, 0),
            crate::sync::Permanence::Temporary,
        );
        assert_eq!(imp::kept(&p), 0, "an import settles");
        release_later(vec![p.clone(); DEFER_MIN]);
        drop(slot);
        assert_eq!(imp::kept(&p), 0, "a destroyed object settles");
    }
}

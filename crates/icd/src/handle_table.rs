//! Non-dispatchable handles (`VkFence`, `VkSemaphore`, ...) are keys into lock-free slabs, not
//! pointers: a destroyed or made-up handle is found missing instead of being dereferenced.
//!
//! A slot owns the object's storage (a [`HostBox`], from the application's allocator when it gave
//! one). A lookup borrows the object for as long as its [`ObjectRef`] lives; removing an object
//! waits for the borrows of other threads to end, so the storage is always freed by the command
//! that destroys it (see `host_memory`). Nothing may hold an `ObjectRef` across a blocking wait.
//!
//! Removal marks the slot (`Slab::remove`) and waits for the slab to let go of it, rather than
//! `Slab::take`: sharded-slab 0.1.7's `take` leaves the freed slot looking present, with no value,
//! at the next generation, and a made-up handle of that generation then panics inside
//! `Slab::get` (`Option::unwrap` on `None`); a marked slot is simply missing.

use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use sharded_slab::Slab;

use crate::host_memory::HostBox;

/// What a slot holds: the object's storage, which the slab never frees. When the slab drops this
/// (at removal, or when the last borrow of a removed slot ends) it only says so; the remover
/// then owns the storage.
pub struct Stored<T> {
    object: NonNull<T>,
    /// A remover has claimed the object (only one may).
    claimed: AtomicBool,
    /// Set when the slab has dropped this value: no borrow is left.
    released: Arc<AtomicBool>,
}

// SAFETY: `Stored<T>` stands for a `HostBox<T>` (which is `Send` for `T: Send`); it only hands
// out `&T`.
unsafe impl<T: Send> Send for Stored<T> {}
// SAFETY: as above; shared access only gives `&T`.
unsafe impl<T: Sync> Sync for Stored<T> {}

impl<T> Deref for Stored<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the storage lives until its remover frees it, which waits for this value to
        // be dropped, so while `self` is borrowed it is live.
        unsafe { self.object.as_ref() }
    }
}

impl<T> Drop for Stored<T> {
    fn drop(&mut self) {
        self.released.store(true, Ordering::Release);
    }
}

/// A table of live objects of one kind. Handle values are slab keys plus one (0 is
/// `VK_NULL_HANDLE`); the slab's generation bits make a destroyed handle's value stale.
pub struct HandleTable<T> {
    slab: LazyLock<Slab<Stored<T>>>,
}

/// A live object, borrowed from its table (derefs to the object).
pub type ObjectRef<T> = sharded_slab::Entry<'static, Stored<T>>;

impl<T: Send + Sync> HandleTable<T> {
    pub const fn new() -> Self {
        HandleTable {
            slab: LazyLock::new(Slab::new),
        }
    }

    /// Registers an object; `None` when the table is full (the object is dropped).
    pub fn insert(&'static self, object: HostBox<T>) -> Option<u64> {
        let raw = HostBox::into_raw(object);
        let stored = Stored {
            // SAFETY: `into_raw` never gives NULL.
            object: unsafe { NonNull::new_unchecked(raw) },
            claimed: AtomicBool::new(false),
            released: Arc::new(AtomicBool::new(false)),
        };
        match self.slab.insert(stored) {
            Some(key) => Some(key as u64 + 1),
            None => {
                // SAFETY: the slab dropped `stored` without touching the storage; it is ours.
                drop(unsafe { HostBox::from_raw(raw) });
                None
            }
        }
    }

    /// The live object behind a handle value, if any.
    pub fn get(&'static self, handle: u64) -> Option<ObjectRef<T>> {
        let key = usize::try_from(handle.checked_sub(1)?).ok()?;
        self.slab.get(key)
    }

    /// Unregisters an object and hands its storage back, once no other thread borrows it
    /// (`None` when the handle is not live, or another thread is removing it). The calling
    /// thread must not hold an [`ObjectRef`] to it.
    pub fn remove(&'static self, handle: u64) -> Option<HostBox<T>> {
        let key = usize::try_from(handle.checked_sub(1)?).ok()?;
        let entry = self.slab.get(key)?;
        if entry.claimed.swap(true, Ordering::AcqRel) {
            return None;
        }
        let object = entry.object;
        let released = Arc::clone(&entry.released);
        drop(entry);
        // Marks the slot (lookups miss it from now on) and drops the value now, or when the
        // last borrow of another thread ends.
        self.slab.remove(key);
        let mut spins = 0u32;
        while !released.load(Ordering::Acquire) {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: the slab has dropped the value and no borrow is left; this remover claimed
        // the storage, which came from `HostBox::into_raw` in `insert`.
        Some(unsafe { HostBox::from_raw(object.as_ptr()) })
    }
}

impl<T: Send + Sync> Default for HandleTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

use crate::objects::command::CommandPool;
use crate::objects::memory::{Buffer, Memory};
use crate::sync::event::Event;
use crate::sync::fence::Fence;
use crate::sync::semaphore::Semaphore;

pub static FENCES: HandleTable<Fence> = HandleTable::new();
pub static SEMAPHORES: HandleTable<Semaphore> = HandleTable::new();
pub static EVENTS: HandleTable<Event> = HandleTable::new();
pub static MEMORIES: HandleTable<Memory> = HandleTable::new();
pub static BUFFERS: HandleTable<Buffer> = HandleTable::new();
pub static COMMAND_POOLS: HandleTable<CommandPool> = HandleTable::new();

/// An object made on one device; using it with another is a validation error.
pub trait DeviceChild: Send + Sync {
    /// The object's name in messages ("VkFence", ...).
    const KIND: &'static str;
    fn device_id(&self) -> u64;
}

macro_rules! device_child {
    ($($t:ty => $name:literal),* $(,)?) => {
        $(impl DeviceChild for $t {
            const KIND: &'static str = $name;
            fn device_id(&self) -> u64 { self.device_id }
        })*
    };
}

device_child!(
    Fence => "VkFence",
    Semaphore => "VkSemaphore",
    Event => "VkEvent",
    Memory => "VkDeviceMemory",
    Buffer => "VkBuffer",
    CommandPool => "VkCommandPool",
);

/// Who is asking for an object: a device or one of its queues.
pub trait Owner {
    fn owner_id(&self) -> u64;
    fn reporter(&self) -> &crate::debug::DebugReporter;
}

impl Owner for crate::objects::device::Device {
    fn owner_id(&self) -> u64 {
        self.id
    }
    fn reporter(&self) -> &crate::debug::DebugReporter {
        &self.debug
    }
}

impl Owner for crate::objects::queue::Queue {
    fn owner_id(&self) -> u64 {
        self.device_id
    }
    fn reporter(&self) -> &crate::debug::DebugReporter {
        &self.debug
    }
}

impl Owner for crate::objects::command::CommandBuffer {
    fn owner_id(&self) -> u64 {
        self.device_id
    }
    fn reporter(&self) -> &crate::debug::DebugReporter {
        &self.debug
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_memory::HostAllocator;
    use ash::vk::SystemAllocationScope;

    fn boxed(v: u32) -> HostBox<u32> {
        HostBox::new_in(v, HostAllocator::SYSTEM, SystemAllocationScope::OBJECT).unwrap()
    }

    /// Every value near a destroyed handle (other generations, other slots) is missing, never a
    /// panic: `Slab::take` would leave the next generation of the slot looking present.
    #[test]
    fn made_up_handles_near_a_destroyed_one_are_missing() {
        static TABLE: HandleTable<u32> = HandleTable::new();
        let handle = TABLE.insert(boxed(5)).unwrap();
        let kept = TABLE.insert(boxed(6)).unwrap();
        assert_eq!(*TABLE.get(handle).unwrap().deref().deref(), 5);
        assert_eq!(TABLE.remove(handle).map(|b| *b), Some(5));
        assert!(TABLE.get(handle).is_none());
        assert!(TABLE.remove(handle).is_none());
        for shift in 0..64 {
            for step in 1..4u64 {
                let guess = handle.wrapping_add(step.wrapping_shl(shift));
                let found = TABLE.get(guess).map(|e| **e);
                assert!(
                    found.is_none() || guess == kept,
                    "{guess:#x} was found after {handle:#x} was destroyed"
                );
            }
        }
        // The slot is reused with a new generation; the old handle stays dead.
        let again = TABLE.insert(boxed(7)).unwrap();
        assert_ne!(again, handle);
        assert!(TABLE.get(handle).is_none());
        assert_eq!(TABLE.remove(again).map(|b| *b), Some(7));
        assert_eq!(TABLE.remove(kept).map(|b| *b), Some(6));
    }

    /// Two racing removals: one gets the object. A removal waits for another thread's borrow.
    #[test]
    fn removal_is_claimed_once_and_waits_for_borrows() {
        static TABLE: HandleTable<u32> = HandleTable::new();
        for _ in 0..100 {
            let handle = TABLE.insert(boxed(1)).unwrap();
            let borrow = TABLE.get(handle).unwrap();
            let removers: Vec<_> = (0..2)
                .map(|_| std::thread::spawn(move || TABLE.remove(handle).map(|b| *b)))
                .collect();
            std::thread::sleep(std::time::Duration::from_micros(50));
            assert_eq!(**borrow, 1, "the object outlives removals while borrowed");
            drop(borrow);
            let got: Vec<_> = removers.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(got.iter().flatten().count(), 1, "{got:?}");
        }
    }
}

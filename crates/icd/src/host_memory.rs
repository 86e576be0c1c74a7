//! Host memory for the driver's objects, and `VkAllocationCallbacks`.
//!
//! # What goes through the application's callbacks
//!
//! Every object the application creates or allocates has one block of *object storage*: the
//! structure behind its handle (`VkInstance` with its physical device, `VkDevice`, each
//! `VkQueue`, `VkFence`, `VkSemaphore`, `VkEvent`, `VkDeviceMemory`'s bookkeeping, `VkBuffer`,
//! `VkCommandPool`, each `VkCommandBuffer`, `VkDebugUtilsMessengerEXT`). That block is a
//! [`HostBox`]: allocated through the most specific allocator the spec names (the command's
//! `pAllocator`, else the parent device's, else the instance's, else the system allocator; command
//! buffers use their pool's) with the object's `VkSystemAllocationScope` (`INSTANCE`, `DEVICE` for
//! the device and its queues, `OBJECT` for the rest), and freed when the object is destroyed.
//!
//! The spec lets an implementation call the application's allocator only during a command, on the
//! thread that called it. So object storage is owned by exactly one place (a handle table slot,
//! a device's queue list, a pool's command-buffer list) and is only ever dropped by the command
//! that destroys it; whatever must outlive that command is *not* in it. Queued batches and
//! recorded commands hold shared, reference-counted parts on the system heap instead: payloads
//! (shared with imports, other objects and other processes), a fence's or semaphore's
//! pending-work counter, a buffer's bound range of a memory mapping. A destroy command that races
//! with a lookup on another thread (invalid usage, but not a crash) waits for that lookup to end,
//! then frees the storage itself.
//!
//! A destroy command's `pAllocator` must be compatible with the one the object was created with;
//! the storage goes back through it when both are the application's (the spec allows another
//! `pUserData`). When the two disagree (one NULL, the other not: invalid usage) the storage goes
//! back through the allocator it came from, so the application's `pfnFree` is never handed a
//! pointer its `pfnAllocation` did not return, and the destroy reports the mismatch.
//!
//! # Failure
//!
//! Create commands reserve the object's storage first, before anything with side effects (a
//! memfd page, a mapping, a worker thread, a slab entry), so an allocator that returns NULL makes
//! the command return `VK_ERROR_OUT_OF_HOST_MEMORY` having made nothing; anything made after the
//! reservation is dropped again if a later step fails. `vkAllocateCommandBuffers` frees the
//! command buffers it already made and writes NULL to every output handle, as the spec asks.
//!
//! # What does not
//!
//! The rest of the driver's memory is internal and comes from the system allocator: payloads,
//! queue worker threads and their queues of batches, recorded command lists, the handle tables'
//! slabs, debug messenger lists, broker connections. Those allocations are either shared beyond
//! one object's lifetime or made on other threads, where calling the application is not allowed.
//! Where a command keeps memory whose size the application chooses (command buffers of one
//! `vkAllocateCommandBuffers`, a device's queues, a recorded command's regions, update data or
//! event list) it is reserved fallibly (`try_reserve`, [`try_vec`]) and a failure is
//! `VK_ERROR_OUT_OF_HOST_MEMORY` (reported at `vkEndCommandBuffer` for recorded commands). The
//! driver makes no `pfnInternalAllocation` notifications and never calls `pfnReallocation`.

use std::alloc::Layout;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use ash::vk;

/// `VK_ERROR_OUT_OF_HOST_MEMORY`, the result of every allocation failure.
pub const OUT_OF_HOST_MEMORY: vk::Result = vk::Result::ERROR_OUT_OF_HOST_MEMORY;

type AllocationFn = unsafe extern "system" fn(*mut c_void, usize, usize, vk::SystemAllocationScope) -> *mut c_void;
type FreeFn = unsafe extern "system" fn(*mut c_void, *mut c_void);

/// The two callbacks the driver uses, copied out of the application's `VkAllocationCallbacks`.
#[derive(Clone, Copy)]
struct Callbacks {
    user_data: *mut c_void,
    allocation: AllocationFn,
    free: FreeFn,
}

/// Where object storage comes from: the application's callbacks or the system allocator.
#[derive(Clone, Copy, Default)]
pub struct HostAllocator {
    callbacks: Option<Callbacks>,
    /// The callbacks were passed to the command that created the object (not inherited from its
    /// device or instance): a destroy command must then pass compatible ones.
    explicit: bool,
}

// SAFETY: the callbacks are plain function pointers and an opaque `pUserData` the driver never
// dereferences; it only passes them back to the application, during commands, on the calling
// thread (see the module docs). Thread-safety of the application's allocator is the
// application's to provide, as the spec says.
unsafe impl Send for HostAllocator {}
// SAFETY: as for `Send`; `HostAllocator` is immutable.
unsafe impl Sync for HostAllocator {}

impl std::fmt::Debug for HostAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostAllocator")
            .field("application", &self.callbacks.is_some())
            .field("explicit", &self.explicit)
            .finish()
    }
}

impl HostAllocator {
    /// The system allocator.
    pub const SYSTEM: HostAllocator = HostAllocator {
        callbacks: None,
        explicit: false,
    };

    /// The allocator a command's `pAllocator` names: the system allocator for NULL (and for
    /// callbacks without `pfnAllocation` or `pfnFree`, which valid usage rules out).
    ///
    /// # Safety
    /// `callbacks` must be NULL or point to a valid `VkAllocationCallbacks`.
    pub unsafe fn from_ptr(callbacks: *const vk::AllocationCallbacks<'_>) -> HostAllocator {
        // SAFETY: per the caller's contract.
        let Some(cb) = (unsafe { callbacks.as_ref() }) else {
            return HostAllocator::SYSTEM;
        };
        match (cb.pfn_allocation, cb.pfn_free) {
            (Some(allocation), Some(free)) => HostAllocator {
                callbacks: Some(Callbacks {
                    user_data: cb.p_user_data,
                    allocation,
                    free,
                }),
                explicit: true,
            },
            _ => HostAllocator::SYSTEM,
        }
    }

    /// This allocator when it is the application's, else `parent`'s (the spec's "most specific
    /// allocator": object, then device, then instance).
    pub fn or(self, parent: HostAllocator) -> HostAllocator {
        if self.callbacks.is_some() {
            self
        } else {
            parent.inherited()
        }
    }

    /// The same callbacks as a parent's allocator that children fall back to.
    pub fn inherited(self) -> HostAllocator {
        HostAllocator {
            explicit: false,
            ..self
        }
    }

    /// Whether these are the application's callbacks.
    pub fn is_application(&self) -> bool {
        self.callbacks.is_some()
    }

    fn allocate(&self, layout: Layout, scope: vk::SystemAllocationScope) -> Option<NonNull<u8>> {
        match self.callbacks {
            None => {
                // SAFETY: `layout` has a non-zero size (every block holds a `HostAllocator`).
                NonNull::new(unsafe { std::alloc::alloc(layout) })
            }
            Some(cb) => {
                // SAFETY: the application's allocation callback, called as the spec describes,
                // during a command on its thread.
                let raw = unsafe { (cb.allocation)(cb.user_data, layout.size(), layout.align(), scope) };
                let ptr = NonNull::new(raw.cast::<u8>())?;
                if ptr.as_ptr().addr() % layout.align() != 0 {
                    // A misaligned block cannot hold the object: give it back and fail.
                    // SAFETY: `raw` came from this allocator's `pfnAllocation`.
                    unsafe { (cb.free)(cb.user_data, raw) };
                    return None;
                }
                Some(ptr)
            }
        }
    }

    /// # Safety
    /// `ptr` must come from `self.allocate(layout, _)` and not have been freed.
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        match self.callbacks {
            // SAFETY: per the caller's contract.
            None => unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) },
            // SAFETY: per the caller's contract, a block of the application's `pfnAllocation`.
            Some(cb) => unsafe { (cb.free)(cb.user_data, ptr.as_ptr().cast()) },
        }
    }

    /// Storage for one `T`, not yet written: the failure point of a create command, taken before
    /// anything with side effects is made.
    pub fn reserve<T>(self, scope: vk::SystemAllocationScope) -> Result<Reservation<T>, vk::Result> {
        let layout = Layout::new::<Block<T>>();
        let ptr = self.allocate(layout, scope).ok_or(OUT_OF_HOST_MEMORY)?;
        Ok(Reservation {
            block: ptr.cast(),
            allocator: self,
            _owns: PhantomData,
        })
    }
}

/// Object storage: the object first (so a pointer to the block is a pointer to the object, as a
/// dispatchable handle needs), then the allocator it came from.
#[repr(C)]
struct Block<T> {
    value: T,
    allocator: HostAllocator,
}

/// Reserved storage for a `T` (see [`HostAllocator::reserve`]); freed unused when dropped.
pub struct Reservation<T> {
    block: NonNull<Block<T>>,
    allocator: HostAllocator,
    _owns: PhantomData<T>,
}

impl<T> Reservation<T> {
    /// Moves the object into its storage.
    pub fn write(self, value: T) -> HostBox<T> {
        let block = self.block;
        // SAFETY: `block` is a live, aligned allocation of `Block<T>`'s layout, not yet written.
        unsafe {
            block.write(Block {
                value,
                allocator: self.allocator,
            })
        };
        std::mem::forget(self);
        HostBox {
            block,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        // SAFETY: the block came from `self.allocator` with this layout and holds no value.
        unsafe { self.allocator.free(self.block.cast(), Layout::new::<Block<T>>()) };
    }
}

/// An object in storage from a [`HostAllocator`]: a `Box` that frees through the allocator it
/// came from. It must only be dropped by a command (see the module docs).
pub struct HostBox<T> {
    block: NonNull<Block<T>>,
    _owns: PhantomData<Block<T>>,
}

// SAFETY: `HostBox<T>` owns its `T` as a `Box<T>` does; the allocator it holds is `Send`.
unsafe impl<T: Send> Send for HostBox<T> {}
// SAFETY: as for `Send`: shared access only hands out `&T`.
unsafe impl<T: Sync> Sync for HostBox<T> {}

impl<T> HostBox<T> {
    /// Allocates storage and moves `value` into it; on failure `value` is dropped.
    pub fn new_in(
        value: T,
        allocator: HostAllocator,
        scope: vk::SystemAllocationScope,
    ) -> Result<HostBox<T>, vk::Result> {
        Ok(allocator.reserve(scope)?.write(value))
    }

    /// The allocator the storage came from.
    pub fn allocator(this: &HostBox<T>) -> HostAllocator {
        // SAFETY: `block` is live and initialised while `this` exists.
        unsafe { this.block.as_ref() }.allocator
    }

    /// Gives up ownership: the pointer is the object (and a dispatchable handle's value).
    pub fn into_raw(this: HostBox<T>) -> *mut T {
        let ptr = this.block.as_ptr().cast::<T>();
        std::mem::forget(this);
        ptr
    }

    /// Takes back ownership of what [`HostBox::into_raw`] gave up.
    ///
    /// # Safety
    /// `ptr` must come from `HostBox::<T>::into_raw` and be taken back once.
    pub unsafe fn from_raw(ptr: *mut T) -> HostBox<T> {
        HostBox {
            // SAFETY: per the caller's contract, a non-null block pointer.
            block: unsafe { NonNull::new_unchecked(ptr.cast::<Block<T>>()) },
            _owns: PhantomData,
        }
    }

    /// Destroys the object in a destroy command whose `pAllocator` is `given`. The storage goes
    /// back through `given` when both it and the allocator of creation are the application's,
    /// else through the allocator of creation. Returns false when `given` does not match how the
    /// object was created (one NULL, the other not), which is invalid usage.
    pub fn destroy(this: HostBox<T>, given: HostAllocator) -> bool {
        let created = HostBox::allocator(&this);
        let matches = created.explicit == given.is_application();
        if created.explicit && given.is_application() {
            // SAFETY: `block` is live; only its allocator record changes (compatible callbacks).
            unsafe { (*this.block.as_ptr()).allocator = given };
        }
        drop(this);
        matches
    }
}

impl<T> Deref for HostBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `block` is live and initialised while `self` exists.
        &unsafe { self.block.as_ref() }.value
    }
}

impl<T> DerefMut for HostBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` is exclusive.
        &mut unsafe { self.block.as_mut() }.value
    }
}

impl<T> Drop for HostBox<T> {
    fn drop(&mut self) {
        let block = self.block.as_ptr();
        // SAFETY: `block` is live and initialised; the value is dropped once, then the storage
        // goes back to the allocator it came from (read before the value is gone).
        unsafe {
            let allocator = (*block).allocator;
            std::ptr::drop_in_place(&raw mut (*block).value);
            allocator.free(self.block.cast(), Layout::new::<Block<T>>());
        }
    }
}

/// A fallible `Vec::with_capacity`: the application's counts must not abort the process.
pub fn try_vec<T>(capacity: usize) -> Result<Vec<T>, vk::Result> {
    let mut v = Vec::new();
    v.try_reserve_exact(capacity).map_err(|_| OUT_OF_HOST_MEMORY)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter {
        live: AtomicUsize,
        fail: bool,
    }

    unsafe extern "system" fn allocation(
        user: *mut c_void,
        size: usize,
        align: usize,
        _scope: vk::SystemAllocationScope,
    ) -> *mut c_void {
        // SAFETY: `user` is the test's `Counter`.
        let counter = unsafe { &*user.cast::<Counter>() };
        if counter.fail {
            return std::ptr::null_mut();
        }
        counter.live.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a valid layout (power-of-two alignment, small size); freed in `free` with the
        // same layout, recorded in front of the block.
        unsafe { std::alloc::alloc(Layout::from_size_align(size, align.max(16)).unwrap()) }.cast()
    }

    unsafe extern "system" fn free(user: *mut c_void, ptr: *mut c_void) {
        // SAFETY: `user` is the test's `Counter`.
        let counter = unsafe { &*user.cast::<Counter>() };
        counter.live.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the tests only allocate `Block<u64>`.
        unsafe {
            std::alloc::dealloc(
                ptr.cast(),
                Layout::from_size_align(size_of::<Block<u64>>(), 16).unwrap(),
            )
        };
    }

    fn callbacks(counter: &Counter) -> vk::AllocationCallbacks<'_> {
        vk::AllocationCallbacks {
            p_user_data: std::ptr::from_ref(counter).cast_mut().cast(),
            pfn_allocation: Some(allocation),
            pfn_free: Some(free),
            ..Default::default()
        }
    }

    #[test]
    fn application_storage_is_freed_through_it() {
        let counter = Counter {
            live: AtomicUsize::new(0),
            fail: false,
        };
        let cb = callbacks(&counter);
        // SAFETY: a valid structure.
        let allocator = unsafe { HostAllocator::from_ptr(&cb) };
        let b = HostBox::new_in(7u64, allocator, vk::SystemAllocationScope::OBJECT).unwrap();
        assert_eq!(*b, 7);
        assert_eq!(counter.live.load(Ordering::Relaxed), 1);
        assert!(HostBox::destroy(b, allocator));
        assert_eq!(counter.live.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_failing_allocator_drops_the_value() {
        let counter = Counter {
            live: AtomicUsize::new(0),
            fail: true,
        };
        let cb = callbacks(&counter);
        // SAFETY: a valid structure.
        let allocator = unsafe { HostAllocator::from_ptr(&cb) };
        let value = std::sync::Arc::new(());
        let r = HostBox::new_in(
            std::sync::Arc::clone(&value),
            allocator,
            vk::SystemAllocationScope::OBJECT,
        );
        assert_eq!(r.err(), Some(OUT_OF_HOST_MEMORY));
        assert_eq!(std::sync::Arc::strong_count(&value), 1);
    }

    #[test]
    fn mismatched_destroy_frees_through_the_creator() {
        let counter = Counter {
            live: AtomicUsize::new(0),
            fail: false,
        };
        let cb = callbacks(&counter);
        // SAFETY: a valid structure.
        let allocator = unsafe { HostAllocator::from_ptr(&cb) };
        let b = HostBox::new_in(1u64, allocator, vk::SystemAllocationScope::OBJECT).unwrap();
        assert!(!HostBox::destroy(b, HostAllocator::SYSTEM));
        assert_eq!(counter.live.load(Ordering::Relaxed), 0);
        let s = HostBox::new_in(1u64, HostAllocator::SYSTEM, vk::SystemAllocationScope::OBJECT).unwrap();
        assert!(!HostBox::destroy(s, allocator));
        assert_eq!(counter.live.load(Ordering::Relaxed), 0);
        // Inherited callbacks: a NULL destroy is right.
        let i = HostBox::new_in(
            1u64,
            HostAllocator::SYSTEM.or(allocator),
            vk::SystemAllocationScope::OBJECT,
        )
        .unwrap();
        assert_eq!(counter.live.load(Ordering::Relaxed), 1);
        assert!(HostBox::destroy(i, HostAllocator::SYSTEM));
        assert_eq!(counter.live.load(Ordering::Relaxed), 0);
    }
}

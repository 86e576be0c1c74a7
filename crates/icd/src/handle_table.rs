//! Non-dispatchable handles (`VkFence`, `VkSemaphore`, ...) are keys into lock-free slabs, not
//! pointers: a destroyed or made-up handle is found missing instead of being dereferenced.
//!
//! A slot owns the object's storage (a [`HostBox`], from the application's allocator when it gave
//! one). A lookup borrows the object for as long as its [`ObjectRef`] lives; removing an object
//! waits for the borrows of other threads to end, so the storage is always freed by the command
//! that destroys it (see `host_memory`). Nothing may hold an `ObjectRef` across a blocking wait.

use std::sync::LazyLock;

use sharded_slab::Slab;

use crate::host_memory::HostBox;

/// A table of live objects of one kind. Handle values are slab keys plus one (0 is
/// `VK_NULL_HANDLE`); the slab's generation bits make a destroyed handle's value stale.
pub struct HandleTable<T> {
    slab: LazyLock<Slab<HostBox<T>>>,
}

/// A live object, borrowed from its table (derefs to the object).
pub type ObjectRef<T> = sharded_slab::Entry<'static, HostBox<T>>;

impl<T: Send + Sync> HandleTable<T> {
    pub const fn new() -> Self {
        HandleTable {
            slab: LazyLock::new(Slab::new),
        }
    }

    /// Registers an object; `None` when the table is full (the object is dropped).
    pub fn insert(&'static self, object: HostBox<T>) -> Option<u64> {
        self.slab.insert(object).map(|key| key as u64 + 1)
    }

    /// The live object behind a handle value, if any.
    pub fn get(&'static self, handle: u64) -> Option<ObjectRef<T>> {
        let key = usize::try_from(handle.checked_sub(1)?).ok()?;
        self.slab.get(key)
    }

    /// Unregisters an object and hands its storage back, once no other thread borrows it. The
    /// calling thread must not hold an [`ObjectRef`] to it.
    pub fn remove(&'static self, handle: u64) -> Option<HostBox<T>> {
        let key = usize::try_from(handle.checked_sub(1)?).ok()?;
        self.slab.take(key)
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

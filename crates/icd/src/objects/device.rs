//! `VkDevice`: its queues, enabled extensions and features, and where its messages go.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::debug::DebugReporter;
use crate::handle_types::HandleMode;
use crate::host_memory::{HostAllocator, HostBox};
use crate::objects::Dispatchable;
use crate::objects::extensions::{DeviceExtension, ExtensionSet};
use crate::objects::queue::Queue;

static NEXT_DEVICE_ID: AtomicU64 = AtomicU64::new(1);

pub struct Device {
    /// Process-unique id; every object records the device it was made on.
    pub id: u64,
    pub debug: Arc<DebugReporter>,
    pub extensions: ExtensionSet,
    pub instance_extensions: ExtensionSet,
    pub handle_mode: HandleMode,
    /// The `timelineSemaphore` feature was enabled.
    pub timeline_semaphores: bool,
    /// The `synchronization2` feature was enabled.
    pub synchronization2: bool,
    /// Queues of family 0, by index; each has its own worker thread. Their storage comes from
    /// the device's allocator and goes back in `vkDestroyDevice`.
    pub queues: Vec<HostBox<Dispatchable<Queue>>>,
    /// What the device's children fall back to (the device's own, else the instance's).
    pub allocator: HostAllocator,
}

impl Device {
    pub fn next_id() -> u64 {
        NEXT_DEVICE_ID.fetch_add(1, Ordering::Relaxed)
    }

    pub fn has(&self, ext: DeviceExtension) -> bool {
        self.extensions.has_device(ext)
    }

    pub fn wait_idle(&self) {
        self.queues.iter().for_each(|q| q.object.wait_idle());
    }
}

impl Device {
    /// `vkDestroyDevice`: stops every queue's worker, then frees the queues' storage through the
    /// command's allocator (`given`). Returns false when `given` does not match how the queues
    /// were allocated.
    pub fn destroy_queues(&mut self, given: HostAllocator) -> bool {
        self.queues.iter().for_each(|q| q.object.shut_down());
        let mut matched = true;
        for q in self.queues.drain(..) {
            matched &= HostBox::destroy(q, given);
        }
        matched
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.queues.iter().for_each(|q| q.object.shut_down());
    }
}

//! `VkDevice`: its queues, enabled extensions and features, and where its messages go.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::debug::DebugReporter;
use crate::handle_types::HandleMode;
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
    /// Queues of family 0, by index; each has its own worker thread.
    pub queues: Vec<Box<Dispatchable<Queue>>>,
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

impl Drop for Device {
    fn drop(&mut self) {
        self.queues.iter().for_each(|q| q.object.shut_down());
    }
}

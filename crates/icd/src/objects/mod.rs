//! The driver's objects, in safe Rust. `entry` turns Vulkan handles into references to these.

pub mod command;
pub mod device;
pub mod extensions;
pub mod instance;
pub mod memory;
pub mod physical_device;
pub mod queue;

use std::sync::atomic::AtomicUsize;

/// `ICD_LOADER_MAGIC` from `vk_icd.h`: the loader checks it, then overwrites the word with its
/// dispatch table.
pub const ICD_LOADER_MAGIC: usize = 0x01CD_C0DE;

/// A dispatchable object (`VkInstance`, `VkPhysicalDevice`, `VkDevice`, `VkQueue`,
/// `VkCommandBuffer`): the loader's word first, then ours. The handle is a pointer to this.
#[repr(C)]
pub struct Dispatchable<T> {
    /// Written by the loader after we return the object, so it is atomic.
    loader_data: AtomicUsize,
    pub object: T,
}

impl<T> Dispatchable<T> {
    /// The object with the loader's word in front, to be placed in its storage (a
    /// [`crate::host_memory::HostBox`] or a field of its parent) before its address is handed out.
    pub fn new(object: T) -> Dispatchable<T> {
        Dispatchable {
            loader_data: AtomicUsize::new(ICD_LOADER_MAGIC),
            object,
        }
    }
}

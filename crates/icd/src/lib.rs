//! The tether Vulkan driver: a CPU device whose fences and semaphores are real, shareable OS
//! objects.
//!
//! Data flows down this list, and each step only talks to the next:
//!
//! | module | what lives there |
//! |---|---|
//! | [`loader`] | the loader interface (`vk_icd*` exports, negotiation, proc-addr lookup) |
//! | [`entry`] | every `vk*` command: C ABI, pointer and pNext walking, validation; one file per area (`entry::sync` has fences, semaphores, events and waits; `entry::queue` has submits) |
//! | [`objects`] | instance, physical device, device, queues and their worker threads, memory, buffers, command buffers |
//! | [`sync`] | `Fence` and `Semaphore`: a permanent payload and an optional temporary one |
//! | [`handle_types`] | the one table of external handle types: what each object kind can export and import |
//! | [`host_memory`] | object storage and `VkAllocationCallbacks`: what goes through the application's allocator, and how a failing one leaves nothing behind |
//! | `tether_payload` | the payload itself: private memory or a shared memfd page, futex waits |
//!
//! Nothing in `objects` or `sync` is `unsafe`; raw pointers stop at `entry`.

pub mod debug;
pub mod entry;
pub mod handle_table;
pub mod handle_types;
pub mod host_memory;
pub mod loader;
pub mod objects;
pub mod sync;

pub use loader::{
    vk_icdGetInstanceProcAddr, vk_icdGetPhysicalDeviceProcAddr, vk_icdNegotiateLoaderICDInterfaceVersion,
};

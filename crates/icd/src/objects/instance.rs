//! `VkInstance`: the debug messengers and the one physical device.

use std::sync::Arc;

use crate::debug::DebugReporter;
use crate::handle_types::HandleMode;
use crate::host_memory::HostAllocator;
use crate::objects::Dispatchable;
use crate::objects::extensions::ExtensionSet;
use crate::objects::physical_device::PhysicalDevice;

pub struct Instance {
    pub debug: Arc<DebugReporter>,
    pub extensions: ExtensionSet,
    /// The application's requested API version (0 = 1.0).
    pub app_api_version: u32,
    /// Part of the instance's storage, so its address stays valid as a `VkPhysicalDevice` for
    /// the instance's life.
    pub physical_device: Dispatchable<PhysicalDevice>,
    /// What the instance's children (messengers, devices) fall back to.
    pub allocator: HostAllocator,
    /// Messengers chained into `VkInstanceCreateInfo`: they hear only vkCreateInstance and
    /// vkDestroyInstance, so they are registered during those two calls only.
    pub create_time_messengers: Vec<crate::debug::Messenger>,
}

impl Instance {
    pub fn new(
        extensions: ExtensionSet,
        app_api_version: u32,
        debug: Arc<DebugReporter>,
        allocator: HostAllocator,
    ) -> Instance {
        Instance {
            debug: debug.clone(),
            extensions,
            app_api_version,
            physical_device: Dispatchable::new(PhysicalDevice {
                handle_mode: HandleMode::from_env(),
                debug,
                instance_extensions: extensions,
                instance_allocator: allocator.inherited(),
            }),
            allocator: allocator.inherited(),
            create_time_messengers: Vec::new(),
        }
    }
}

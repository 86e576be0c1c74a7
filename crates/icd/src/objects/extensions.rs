//! The extensions the driver offers. Which external handle types are offered (and so which
//! external-handle extensions) derives from `handle_types`.

use std::ffi::CStr;

use ash::vk;

use crate::handle_types::HandleMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceExtension {
    GetPhysicalDeviceProperties2,
    ExternalFenceCapabilities,
    ExternalSemaphoreCapabilities,
    DebugUtils,
}

pub const INSTANCE_EXTENSIONS: &[(InstanceExtension, &CStr, u32)] = &[
    (
        InstanceExtension::GetPhysicalDeviceProperties2,
        ash::khr::get_physical_device_properties2::NAME,
        ash::khr::get_physical_device_properties2::SPEC_VERSION,
    ),
    (
        InstanceExtension::ExternalFenceCapabilities,
        ash::khr::external_fence_capabilities::NAME,
        ash::khr::external_fence_capabilities::SPEC_VERSION,
    ),
    (
        InstanceExtension::ExternalSemaphoreCapabilities,
        ash::khr::external_semaphore_capabilities::NAME,
        ash::khr::external_semaphore_capabilities::SPEC_VERSION,
    ),
    (
        InstanceExtension::DebugUtils,
        ash::ext::debug_utils::NAME,
        ash::ext::debug_utils::SPEC_VERSION,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceExtension {
    TimelineSemaphore,
    Synchronization2,
    ExternalFence,
    ExternalSemaphore,
    ExternalFenceFd,
    ExternalSemaphoreFd,
    ExternalFenceWin32,
    ExternalSemaphoreWin32,
}

pub const DEVICE_EXTENSIONS: &[(DeviceExtension, &CStr, u32)] = &[
    (
        DeviceExtension::TimelineSemaphore,
        ash::khr::timeline_semaphore::NAME,
        ash::khr::timeline_semaphore::SPEC_VERSION,
    ),
    (
        DeviceExtension::Synchronization2,
        ash::khr::synchronization2::NAME,
        ash::khr::synchronization2::SPEC_VERSION,
    ),
    (
        DeviceExtension::ExternalFence,
        ash::khr::external_fence::NAME,
        ash::khr::external_fence::SPEC_VERSION,
    ),
    (
        DeviceExtension::ExternalSemaphore,
        ash::khr::external_semaphore::NAME,
        ash::khr::external_semaphore::SPEC_VERSION,
    ),
    (
        DeviceExtension::ExternalFenceFd,
        ash::khr::external_fence_fd::NAME,
        ash::khr::external_fence_fd::SPEC_VERSION,
    ),
    (
        DeviceExtension::ExternalSemaphoreFd,
        ash::khr::external_semaphore_fd::NAME,
        ash::khr::external_semaphore_fd::SPEC_VERSION,
    ),
    (
        DeviceExtension::ExternalFenceWin32,
        ash::khr::external_fence_win32::NAME,
        ash::khr::external_fence_win32::SPEC_VERSION,
    ),
    (
        DeviceExtension::ExternalSemaphoreWin32,
        ash::khr::external_semaphore_win32::NAME,
        ash::khr::external_semaphore_win32::SPEC_VERSION,
    ),
];

impl DeviceExtension {
    /// Whether the driver offers this extension in the given handle mode: an external-handle
    /// extension is offered exactly when the handle-type table offers one of its types.
    pub fn offered(self, mode: HandleMode) -> bool {
        use crate::handle_types::HandleFamily;
        match self {
            DeviceExtension::ExternalFenceFd => mode.offers_family_for_fences(HandleFamily::Fd),
            DeviceExtension::ExternalSemaphoreFd => mode.offers_family_for_semaphores(HandleFamily::Fd),
            DeviceExtension::ExternalFenceWin32 => mode.offers_family_for_fences(HandleFamily::Win32),
            DeviceExtension::ExternalSemaphoreWin32 => mode.offers_family_for_semaphores(HandleFamily::Win32),
            _ => true,
        }
    }
}

/// A set of enabled extensions, by position in one of the tables above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtensionSet(u64);

impl ExtensionSet {
    pub fn insert_index(&mut self, index: usize) {
        self.0 |= 1 << index;
    }
    pub fn has_device(self, ext: DeviceExtension) -> bool {
        DEVICE_EXTENSIONS
            .iter()
            .position(|(e, _, _)| *e == ext)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
    pub fn has_instance(self, ext: InstanceExtension) -> bool {
        INSTANCE_EXTENSIONS
            .iter()
            .position(|(e, _, _)| *e == ext)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

/// Looks up an extension name in a table.
pub fn find<E: Copy>(table: &[(E, &CStr, u32)], name: &CStr) -> Option<usize> {
    table.iter().position(|(_, n, _)| *n == name)
}

/// Fills a `VkExtensionProperties` for a table entry.
pub fn properties(name: &CStr, spec_version: u32) -> vk::ExtensionProperties {
    let mut props = vk::ExtensionProperties {
        spec_version,
        ..Default::default()
    };
    for (dst, src) in props.extension_name.iter_mut().zip(name.to_bytes()) {
        *dst = *src as std::ffi::c_char;
    }
    props
}

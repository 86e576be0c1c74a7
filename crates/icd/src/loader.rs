//! The loader interface (version 7): negotiation, `vk_icdGetInstanceProcAddr`,
//! `vk_icdGetPhysicalDeviceProcAddr`, and the one table of commands the driver implements.
//! These three are the only symbols the library exports.

use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::sync::LazyLock;

use ash::vk;
use ash::vk::Handle;

use crate::entry::{command, debug_utils, device, external_fd, external_win32, instance, memory, queue, sync};
use crate::objects::device::Device;
use crate::objects::extensions::{DeviceExtension, InstanceExtension};
use crate::objects::instance::Instance;

/// The newest loader interface version the driver speaks.
pub const LOADER_INTERFACE_VERSION: u32 = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Callable with a NULL instance.
    Global,
    Instance,
    /// Takes a `VkPhysicalDevice` first.
    PhysicalDevice,
    Device,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requires {
    Core,
    Instance(InstanceExtension),
    Device(DeviceExtension),
}

pub struct CommandEntry {
    pub name: &'static CStr,
    pub scope: Scope,
    pub requires: Requires,
    pub pfn: unsafe extern "system" fn(),
}

macro_rules! cmd {
    ($name:literal, $scope:ident, $requires:expr, $f:path) => {
        CommandEntry {
            name: $name,
            scope: Scope::$scope,
            requires: $requires,
            // SAFETY: callers cast the pointer back to the command's real type by its name, as
            // `PFN_vkVoidFunction` is used throughout Vulkan.
            pfn: unsafe { std::mem::transmute::<*const (), unsafe extern "system" fn()>($f as *const ()) },
        }
    };
}

use DeviceExtension as D;
use InstanceExtension as I;
use Requires::Core;

/// Every command the driver implements. Anything not here is absent (NULL) and listed in the
/// README.
pub static COMMANDS: LazyLock<Vec<CommandEntry>> = LazyLock::new(|| {
    let dev = Requires::Device;
    let inst = Requires::Instance;
    vec![
        // global
        cmd!(c"vkCreateInstance", Global, Core, instance::create_instance),
        cmd!(
            c"vkEnumerateInstanceExtensionProperties",
            Global,
            Core,
            instance::enumerate_instance_extension_properties
        ),
        cmd!(
            c"vkEnumerateInstanceLayerProperties",
            Global,
            Core,
            instance::enumerate_instance_layer_properties
        ),
        cmd!(
            c"vkEnumerateInstanceVersion",
            Global,
            Core,
            instance::enumerate_instance_version
        ),
        cmd!(c"vkGetInstanceProcAddr", Global, Core, get_instance_proc_addr),
        // instance
        cmd!(c"vkDestroyInstance", Instance, Core, instance::destroy_instance),
        cmd!(
            c"vkEnumeratePhysicalDevices",
            Instance,
            Core,
            instance::enumerate_physical_devices
        ),
        cmd!(
            c"vkEnumeratePhysicalDeviceGroups",
            Instance,
            Core,
            instance::enumerate_physical_device_groups
        ),
        cmd!(
            c"vkCreateDebugUtilsMessengerEXT",
            Instance,
            inst(I::DebugUtils),
            debug_utils::create_messenger
        ),
        cmd!(
            c"vkDestroyDebugUtilsMessengerEXT",
            Instance,
            inst(I::DebugUtils),
            debug_utils::destroy_messenger
        ),
        cmd!(
            c"vkSubmitDebugUtilsMessageEXT",
            Instance,
            inst(I::DebugUtils),
            debug_utils::submit_message
        ),
        // physical device
        cmd!(
            c"vkGetPhysicalDeviceProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceProperties2",
            PhysicalDevice,
            Core,
            instance::get_physical_device_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceProperties2KHR",
            PhysicalDevice,
            inst(I::GetPhysicalDeviceProperties2),
            instance::get_physical_device_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceFeatures",
            PhysicalDevice,
            Core,
            instance::get_physical_device_features
        ),
        cmd!(
            c"vkGetPhysicalDeviceFeatures2",
            PhysicalDevice,
            Core,
            instance::get_physical_device_features2
        ),
        cmd!(
            c"vkGetPhysicalDeviceFeatures2KHR",
            PhysicalDevice,
            inst(I::GetPhysicalDeviceProperties2),
            instance::get_physical_device_features2
        ),
        cmd!(
            c"vkGetPhysicalDeviceQueueFamilyProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_queue_family_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceQueueFamilyProperties2",
            PhysicalDevice,
            Core,
            instance::get_physical_device_queue_family_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceQueueFamilyProperties2KHR",
            PhysicalDevice,
            inst(I::GetPhysicalDeviceProperties2),
            instance::get_physical_device_queue_family_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceMemoryProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_memory_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceMemoryProperties2",
            PhysicalDevice,
            Core,
            instance::get_physical_device_memory_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceMemoryProperties2KHR",
            PhysicalDevice,
            inst(I::GetPhysicalDeviceProperties2),
            instance::get_physical_device_memory_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceFormatProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_format_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceFormatProperties2",
            PhysicalDevice,
            Core,
            instance::get_physical_device_format_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceFormatProperties2KHR",
            PhysicalDevice,
            inst(I::GetPhysicalDeviceProperties2),
            instance::get_physical_device_format_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceImageFormatProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_image_format_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceImageFormatProperties2",
            PhysicalDevice,
            Core,
            instance::get_physical_device_image_format_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceImageFormatProperties2KHR",
            PhysicalDevice,
            inst(I::GetPhysicalDeviceProperties2),
            instance::get_physical_device_image_format_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceSparseImageFormatProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_sparse_image_format_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceSparseImageFormatProperties2",
            PhysicalDevice,
            Core,
            instance::get_physical_device_sparse_image_format_properties2
        ),
        cmd!(
            c"vkGetPhysicalDeviceSparseImageFormatProperties2KHR",
            PhysicalDevice,
            inst(I::GetPhysicalDeviceProperties2),
            instance::get_physical_device_sparse_image_format_properties2
        ),
        cmd!(
            c"vkEnumerateDeviceExtensionProperties",
            PhysicalDevice,
            Core,
            instance::enumerate_device_extension_properties
        ),
        cmd!(
            c"vkEnumerateDeviceLayerProperties",
            PhysicalDevice,
            Core,
            instance::enumerate_device_layer_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceExternalFenceProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_external_fence_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceExternalFencePropertiesKHR",
            PhysicalDevice,
            inst(I::ExternalFenceCapabilities),
            instance::get_physical_device_external_fence_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceExternalSemaphoreProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_external_semaphore_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceExternalSemaphorePropertiesKHR",
            PhysicalDevice,
            inst(I::ExternalSemaphoreCapabilities),
            instance::get_physical_device_external_semaphore_properties
        ),
        cmd!(
            c"vkGetPhysicalDeviceExternalBufferProperties",
            PhysicalDevice,
            Core,
            instance::get_physical_device_external_buffer_properties
        ),
        cmd!(c"vkCreateDevice", PhysicalDevice, Core, device::create_device),
        // device
        cmd!(c"vkGetDeviceProcAddr", Device, Core, get_device_proc_addr),
        cmd!(c"vkDestroyDevice", Device, Core, device::destroy_device),
        cmd!(c"vkGetDeviceQueue", Device, Core, device::get_device_queue),
        cmd!(c"vkGetDeviceQueue2", Device, Core, device::get_device_queue2),
        cmd!(c"vkDeviceWaitIdle", Device, Core, device::device_wait_idle),
        cmd!(c"vkQueueSubmit", Device, Core, queue::queue_submit),
        cmd!(
            c"vkQueueSubmit2",
            Device,
            dev(D::Synchronization2),
            queue::queue_submit2
        ),
        cmd!(
            c"vkQueueSubmit2KHR",
            Device,
            dev(D::Synchronization2),
            queue::queue_submit2
        ),
        cmd!(c"vkQueueWaitIdle", Device, Core, queue::queue_wait_idle),
        cmd!(c"vkCreateFence", Device, Core, sync::create_fence),
        cmd!(c"vkDestroyFence", Device, Core, sync::destroy_fence),
        cmd!(c"vkResetFences", Device, Core, sync::reset_fences),
        cmd!(c"vkGetFenceStatus", Device, Core, sync::get_fence_status),
        cmd!(c"vkWaitForFences", Device, Core, sync::wait_for_fences),
        cmd!(c"vkCreateSemaphore", Device, Core, sync::create_semaphore),
        cmd!(c"vkDestroySemaphore", Device, Core, sync::destroy_semaphore),
        cmd!(c"vkSignalSemaphore", Device, Core, sync::signal_semaphore),
        cmd!(
            c"vkSignalSemaphoreKHR",
            Device,
            dev(D::TimelineSemaphore),
            sync::signal_semaphore
        ),
        cmd!(c"vkWaitSemaphores", Device, Core, sync::wait_semaphores),
        cmd!(
            c"vkWaitSemaphoresKHR",
            Device,
            dev(D::TimelineSemaphore),
            sync::wait_semaphores
        ),
        cmd!(
            c"vkGetSemaphoreCounterValue",
            Device,
            Core,
            sync::get_semaphore_counter_value
        ),
        cmd!(
            c"vkGetSemaphoreCounterValueKHR",
            Device,
            dev(D::TimelineSemaphore),
            sync::get_semaphore_counter_value
        ),
        cmd!(
            c"vkGetFenceFdKHR",
            Device,
            dev(D::ExternalFenceFd),
            external_fd::get_fence_fd
        ),
        cmd!(
            c"vkImportFenceFdKHR",
            Device,
            dev(D::ExternalFenceFd),
            external_fd::import_fence_fd
        ),
        cmd!(
            c"vkGetSemaphoreFdKHR",
            Device,
            dev(D::ExternalSemaphoreFd),
            external_fd::get_semaphore_fd
        ),
        cmd!(
            c"vkImportSemaphoreFdKHR",
            Device,
            dev(D::ExternalSemaphoreFd),
            external_fd::import_semaphore_fd
        ),
        cmd!(
            c"vkGetFenceWin32HandleKHR",
            Device,
            dev(D::ExternalFenceWin32),
            external_win32::get_fence_win32_handle
        ),
        cmd!(
            c"vkImportFenceWin32HandleKHR",
            Device,
            dev(D::ExternalFenceWin32),
            external_win32::import_fence_win32_handle
        ),
        cmd!(
            c"vkGetSemaphoreWin32HandleKHR",
            Device,
            dev(D::ExternalSemaphoreWin32),
            external_win32::get_semaphore_win32_handle
        ),
        cmd!(
            c"vkImportSemaphoreWin32HandleKHR",
            Device,
            dev(D::ExternalSemaphoreWin32),
            external_win32::import_semaphore_win32_handle
        ),
        cmd!(c"vkCreateEvent", Device, Core, sync::create_event),
        cmd!(c"vkDestroyEvent", Device, Core, sync::destroy_event),
        cmd!(c"vkSetEvent", Device, Core, sync::set_event),
        cmd!(c"vkResetEvent", Device, Core, sync::reset_event),
        cmd!(c"vkGetEventStatus", Device, Core, sync::get_event_status),
        cmd!(c"vkAllocateMemory", Device, Core, memory::allocate_memory),
        cmd!(c"vkFreeMemory", Device, Core, memory::free_memory),
        cmd!(c"vkMapMemory", Device, Core, memory::map_memory),
        cmd!(c"vkUnmapMemory", Device, Core, memory::unmap_memory),
        cmd!(
            c"vkFlushMappedMemoryRanges",
            Device,
            Core,
            memory::flush_mapped_memory_ranges
        ),
        cmd!(
            c"vkInvalidateMappedMemoryRanges",
            Device,
            Core,
            memory::flush_mapped_memory_ranges
        ),
        cmd!(
            c"vkGetDeviceMemoryCommitment",
            Device,
            Core,
            memory::get_device_memory_commitment
        ),
        cmd!(c"vkCreateBuffer", Device, Core, memory::create_buffer),
        cmd!(c"vkDestroyBuffer", Device, Core, memory::destroy_buffer),
        cmd!(c"vkBindBufferMemory", Device, Core, memory::bind_buffer_memory),
        cmd!(c"vkBindBufferMemory2", Device, Core, memory::bind_buffer_memory2),
        cmd!(
            c"vkGetBufferMemoryRequirements",
            Device,
            Core,
            memory::get_buffer_memory_requirements
        ),
        cmd!(
            c"vkGetBufferMemoryRequirements2",
            Device,
            Core,
            memory::get_buffer_memory_requirements2
        ),
        cmd!(c"vkCreateCommandPool", Device, Core, command::create_command_pool),
        cmd!(c"vkDestroyCommandPool", Device, Core, command::destroy_command_pool),
        cmd!(c"vkResetCommandPool", Device, Core, command::reset_command_pool),
        cmd!(c"vkTrimCommandPool", Device, Core, command::trim_command_pool),
        cmd!(
            c"vkAllocateCommandBuffers",
            Device,
            Core,
            command::allocate_command_buffers
        ),
        cmd!(c"vkFreeCommandBuffers", Device, Core, command::free_command_buffers),
        cmd!(c"vkBeginCommandBuffer", Device, Core, command::begin_command_buffer),
        cmd!(c"vkEndCommandBuffer", Device, Core, command::end_command_buffer),
        cmd!(c"vkResetCommandBuffer", Device, Core, command::reset_command_buffer),
        cmd!(c"vkCmdCopyBuffer", Device, Core, command::cmd_copy_buffer),
        cmd!(c"vkCmdFillBuffer", Device, Core, command::cmd_fill_buffer),
        cmd!(c"vkCmdUpdateBuffer", Device, Core, command::cmd_update_buffer),
        cmd!(c"vkCmdPipelineBarrier", Device, Core, command::cmd_pipeline_barrier),
        cmd!(
            c"vkCmdPipelineBarrier2",
            Device,
            dev(D::Synchronization2),
            command::cmd_pipeline_barrier2
        ),
        cmd!(
            c"vkCmdPipelineBarrier2KHR",
            Device,
            dev(D::Synchronization2),
            command::cmd_pipeline_barrier2
        ),
        cmd!(c"vkCmdSetEvent", Device, Core, command::cmd_set_event),
        cmd!(
            c"vkCmdSetEvent2",
            Device,
            dev(D::Synchronization2),
            command::cmd_set_event2
        ),
        cmd!(
            c"vkCmdSetEvent2KHR",
            Device,
            dev(D::Synchronization2),
            command::cmd_set_event2
        ),
        cmd!(c"vkCmdResetEvent", Device, Core, command::cmd_reset_event),
        cmd!(
            c"vkCmdResetEvent2",
            Device,
            dev(D::Synchronization2),
            command::cmd_reset_event2
        ),
        cmd!(
            c"vkCmdResetEvent2KHR",
            Device,
            dev(D::Synchronization2),
            command::cmd_reset_event2
        ),
        cmd!(c"vkCmdWaitEvents", Device, Core, command::cmd_wait_events),
        cmd!(
            c"vkCmdWaitEvents2",
            Device,
            dev(D::Synchronization2),
            command::cmd_wait_events2
        ),
        cmd!(
            c"vkCmdWaitEvents2KHR",
            Device,
            dev(D::Synchronization2),
            command::cmd_wait_events2
        ),
        cmd!(
            c"vkSetDebugUtilsObjectNameEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::set_object_name
        ),
        cmd!(
            c"vkSetDebugUtilsObjectTagEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::set_object_tag
        ),
        cmd!(
            c"vkQueueBeginDebugUtilsLabelEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::queue_label
        ),
        cmd!(
            c"vkQueueEndDebugUtilsLabelEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::queue_end_label
        ),
        cmd!(
            c"vkQueueInsertDebugUtilsLabelEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::queue_label
        ),
        cmd!(
            c"vkCmdBeginDebugUtilsLabelEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::cmd_label
        ),
        cmd!(
            c"vkCmdEndDebugUtilsLabelEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::cmd_end_label
        ),
        cmd!(
            c"vkCmdInsertDebugUtilsLabelEXT",
            Device,
            inst(I::DebugUtils),
            debug_utils::cmd_label
        ),
    ]
});

static BY_NAME: LazyLock<HashMap<&'static CStr, &'static CommandEntry>> =
    LazyLock::new(|| COMMANDS.iter().map(|c| (c.name, c)).collect());

fn lookup(name: &CStr) -> Option<&'static CommandEntry> {
    BY_NAME.get(name).copied()
}

/// Reads a command name.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
unsafe fn command_name<'a>(name: *const c_char) -> Option<&'a CStr> {
    // SAFETY: per the caller's contract.
    (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) })
}

/// The loader-interface functions, reachable through `vk_icdGetInstanceProcAddr(NULL, ...)`
/// (interface version 7).
fn interface_function(name: &CStr) -> vk::PFN_vkVoidFunction {
    let f: *const () = match name.to_bytes() {
        b"vk_icdNegotiateLoaderICDInterfaceVersion" => vk_icdNegotiateLoaderICDInterfaceVersion as *const (),
        b"vk_icdGetInstanceProcAddr" => vk_icdGetInstanceProcAddr as *const (),
        b"vk_icdGetPhysicalDeviceProcAddr" => vk_icdGetPhysicalDeviceProcAddr as *const (),
        _ => return None,
    };
    // SAFETY: the caller casts back to the function's real type, looked up by name.
    Some(unsafe { std::mem::transmute::<*const (), unsafe extern "system" fn()>(f) })
}

fn instance_lookup(instance: vk::Instance, name: &CStr) -> vk::PFN_vkVoidFunction {
    if let Some(f) = interface_function(name) {
        return Some(f);
    }
    let entry = lookup(name)?;
    if entry.scope == Scope::Global {
        return Some(entry.pfn);
    }
    // SAFETY: a non-null instance handle is one this driver returned (valid-usage rule).
    let inst = unsafe { crate::entry::dispatchable::<Instance>(instance.as_raw()) }?;
    let available = match entry.requires {
        Requires::Core => true,
        Requires::Instance(ext) => inst.extensions.has_instance(ext),
        Requires::Device(ext) => ext.offered(inst.physical_device.object.handle_mode),
    };
    available.then_some(entry.pfn)
}

/// `vkGetInstanceProcAddr`, as the loader (or an application without one) calls it.
///
/// # Safety
/// `name` must be a NUL-terminated string; `instance` NULL or a live instance of this driver.
pub unsafe extern "system" fn get_instance_proc_addr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    crate::entry::guard_or(None, || {
        // SAFETY: per the function's contract.
        let name = unsafe { command_name(name) }?;
        instance_lookup(instance, name)
    })
}

/// `vkGetDeviceProcAddr`: device commands of the core and of the extensions the device enabled.
///
/// # Safety
/// `name` must be a NUL-terminated string; `device` a live device of this driver.
pub unsafe extern "system" fn get_device_proc_addr(device: vk::Device, name: *const c_char) -> vk::PFN_vkVoidFunction {
    crate::entry::guard_or(None, || {
        // SAFETY: per the function's contract.
        let name = unsafe { command_name(name) }?;
        // SAFETY: per the function's contract.
        let dev = unsafe { crate::entry::dispatchable::<Device>(device.as_raw()) }?;
        let entry = lookup(name)?;
        let available = entry.scope == Scope::Device
            && match entry.requires {
                Requires::Core => true,
                Requires::Device(ext) => dev.has(ext),
                Requires::Instance(ext) => dev.instance_extensions.has_instance(ext),
            };
        available.then_some(entry.pfn)
    })
}

/// Loader interface negotiation: we speak versions up to 7.
///
/// # Safety
/// `version` must be NULL or point to a writable `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn vk_icdNegotiateLoaderICDInterfaceVersion(version: *mut u32) -> vk::Result {
    crate::entry::guard(|| {
        // SAFETY: per the function's contract.
        let Some(version) = (unsafe { version.as_mut() }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        *version = (*version).min(LOADER_INTERFACE_VERSION);
        vk::Result::SUCCESS
    })
}

/// `vk_icdGetInstanceProcAddr`: global commands for a NULL instance (and the interface functions),
/// everything the driver implements otherwise.
///
/// # Safety
/// As for [`get_instance_proc_addr`].
#[unsafe(no_mangle)]
pub unsafe extern "system" fn vk_icdGetInstanceProcAddr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: same contract.
    unsafe { get_instance_proc_addr(instance, name) }
}

/// `vk_icdGetPhysicalDeviceProcAddr`: only commands that take a `VkPhysicalDevice` first; NULL for
/// everything else, so the loader never mistakes a device command for a physical-device one.
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn vk_icdGetPhysicalDeviceProcAddr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    crate::entry::guard_or(None, || {
        // SAFETY: per the function's contract.
        let name = unsafe { command_name(name) }?;
        let entry = lookup(name)?;
        (entry.scope == Scope::PhysicalDevice).then_some(())?;
        instance_lookup(instance, name)
    })
}

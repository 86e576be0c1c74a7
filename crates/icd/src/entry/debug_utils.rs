//! `VK_EXT_debug_utils`: messengers (where the driver's messages go), and object names and
//! labels (accepted and ignored: the driver has no tools that would show them).

use std::sync::{Arc, Weak};

use ash::vk;
use ash::vk::Handle;

use super::{VkResult, dispatchable, guard, guard_or, input, result, write_out};
use crate::debug::{DebugReporter, Messenger};
use crate::handle_table::HandleTable;
use crate::host_memory::{HostAllocator, HostBox, OUT_OF_HOST_MEMORY};
use crate::objects::instance::Instance;

/// Which instance's reporter each messenger handle belongs to (the messenger's storage).
static MESSENGERS: HandleTable<Weak<DebugReporter>> = HandleTable::new();

/// Registers a messenger with a reporter, its storage from `allocator`; returns its handle
/// value.
pub fn register(
    reporter: &Arc<DebugReporter>,
    info: &vk::DebugUtilsMessengerCreateInfoEXT<'_>,
    allocator: HostAllocator,
) -> VkResult<u64> {
    if info.pfn_user_callback.is_none() {
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    }
    let storage = HostBox::new_in(Arc::downgrade(reporter), allocator, vk::SystemAllocationScope::OBJECT)?;
    let handle = MESSENGERS.insert(storage).ok_or(OUT_OF_HOST_MEMORY)?;
    if let Some(m) = Messenger::from_create_info(handle, info) {
        reporter.add(m);
    }
    Ok(handle)
}

/// Unregisters a messenger and frees its storage through `given` (the destroy's `pAllocator`).
/// Returns false when `given` does not match how it was created.
pub fn unregister(handle: u64, given: HostAllocator) -> bool {
    let Some(owner) = MESSENGERS.remove(handle) else {
        return true;
    };
    if let Some(reporter) = owner.upgrade() {
        reporter.remove(handle);
    }
    HostBox::destroy(owner, given)
}

/// # Safety
/// Per `vkCreateDebugUtilsMessengerEXT`.
pub unsafe extern "system" fn create_messenger(
    instance: vk::Instance,
    info: *const vk::DebugUtilsMessengerCreateInfoEXT<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::DebugUtilsMessengerEXT,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let inst = unsafe { dispatchable::<Instance>(instance.as_raw()) }
                .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &inst.debug,
                    info,
                    "vkCreateDebugUtilsMessengerEXT",
                    "pCreateInfo",
                    "VkDebugUtilsMessengerCreateInfoEXT",
                    Some(&[]),
                )
            }?;
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let allocator = unsafe { HostAllocator::from_ptr(allocator) }.or(inst.allocator);
            let handle = register(&inst.debug, info, allocator)?;
            // SAFETY: writable output per valid usage.
            unsafe { write_out(out, vk::DebugUtilsMessengerEXT::from_raw(handle)) }.inspect_err(|_| {
                unregister(handle, allocator);
            })
        })())
    })
}

/// # Safety
/// Per `vkDestroyDebugUtilsMessengerEXT`.
pub unsafe extern "system" fn destroy_messenger(
    instance: vk::Instance,
    messenger: vk::DebugUtilsMessengerEXT,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || {
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        let given = unsafe { HostAllocator::from_ptr(allocator) };
        let handle = messenger.as_raw();
        if handle != 0
            && MESSENGERS.get(handle).is_none()
            // SAFETY: a live instance per valid usage.
            && let Some(inst) = unsafe { dispatchable::<Instance>(instance.as_raw()) }
        {
            inst.debug.validation(
                "VUID-vkDestroyDebugUtilsMessengerEXT-messenger-parameter",
                &format!("VkDebugUtilsMessengerEXT {handle:#x} is not a live handle"),
            );
            return;
        }
        if !unregister(handle, given)
            // SAFETY: a live instance per valid usage.
            && let Some(inst) = unsafe { dispatchable::<Instance>(instance.as_raw()) }
        {
            super::allocator_mismatch(&inst.debug, "VkDebugUtilsMessengerEXT");
        }
    })
}

/// # Safety
/// Per `vkSubmitDebugUtilsMessageEXT`.
pub unsafe extern "system" fn submit_message(
    instance: vk::Instance,
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and pointers per valid usage.
        let (Some(inst), Some(data)) = (unsafe { dispatchable::<Instance>(instance.as_raw()) }, unsafe {
            input(data)
        }) else {
            return;
        };
        // SAFETY: the strings are NULL or NUL-terminated per valid usage.
        let id = unsafe { data.message_id_name_as_c_str() }
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // SAFETY: as above.
        let text = unsafe { data.message_as_c_str() }
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        inst.debug.message(severity, types, &id, &text);
    })
}

/// # Safety
/// Per `vkSetDebugUtilsObjectNameEXT`.
pub unsafe extern "system" fn set_object_name(
    _device: vk::Device,
    _info: *const vk::DebugUtilsObjectNameInfoEXT<'_>,
) -> vk::Result {
    vk::Result::SUCCESS
}

/// # Safety
/// Per `vkSetDebugUtilsObjectTagEXT`.
pub unsafe extern "system" fn set_object_tag(
    _device: vk::Device,
    _info: *const vk::DebugUtilsObjectTagInfoEXT<'_>,
) -> vk::Result {
    vk::Result::SUCCESS
}

/// `vkQueueBeginDebugUtilsLabelEXT` and `vkQueueInsertDebugUtilsLabelEXT`.
///
/// # Safety
/// None beyond the command's.
pub unsafe extern "system" fn queue_label(_queue: vk::Queue, _label: *const vk::DebugUtilsLabelEXT<'_>) {}

/// # Safety
/// None beyond the command's.
pub unsafe extern "system" fn queue_end_label(_queue: vk::Queue) {}

/// `vkCmdBeginDebugUtilsLabelEXT` and `vkCmdInsertDebugUtilsLabelEXT`.
///
/// # Safety
/// None beyond the command's.
pub unsafe extern "system" fn cmd_label(_cb: vk::CommandBuffer, _label: *const vk::DebugUtilsLabelEXT<'_>) {}

/// # Safety
/// None beyond the command's.
pub unsafe extern "system" fn cmd_end_label(_cb: vk::CommandBuffer) {}

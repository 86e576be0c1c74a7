//! `VK_EXT_debug_utils`: messengers (where the driver's messages go), and object names and
//! labels (accepted and ignored: the driver has no tools that would show them).

use std::sync::{Arc, Weak};

use ash::vk;
use ash::vk::Handle;

use super::{dispatchable, guard, guard_or, input, result, write_out};
use crate::debug::{DebugReporter, Messenger};
use crate::handle_table::HandleTable;
use crate::objects::instance::Instance;

/// Which instance's reporter each messenger handle belongs to.
static MESSENGERS: HandleTable<Weak<DebugReporter>> = HandleTable::new();

/// Registers a messenger with a reporter; returns its handle value.
pub fn register(reporter: &Arc<DebugReporter>, info: &vk::DebugUtilsMessengerCreateInfoEXT<'_>) -> Option<u64> {
    let handle = MESSENGERS.insert(Arc::new(Arc::downgrade(reporter)))?;
    match Messenger::from_create_info(handle, info) {
        Some(m) => reporter.add(m),
        None => {
            MESSENGERS.remove(handle);
            return None;
        }
    }
    Some(handle)
}

pub fn unregister(handle: u64) {
    if let Some(owner) = MESSENGERS.remove(handle)
        && let Some(reporter) = owner.upgrade()
    {
        reporter.remove(handle);
    }
}

/// # Safety
/// Per `vkCreateDebugUtilsMessengerEXT`.
pub unsafe extern "system" fn create_messenger(
    instance: vk::Instance,
    info: *const vk::DebugUtilsMessengerCreateInfoEXT<'_>,
    _allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::DebugUtilsMessengerEXT,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let inst = unsafe { dispatchable::<Instance>(instance.as_raw()) }
                .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            // SAFETY: as above.
            let info = unsafe { input(info) }.ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)?;
            let handle = register(&inst.debug, info).ok_or(vk::Result::ERROR_OUT_OF_HOST_MEMORY)?;
            // SAFETY: writable output per valid usage.
            unsafe { write_out(out, vk::DebugUtilsMessengerEXT::from_raw(handle)) }
        })())
    })
}

/// # Safety
/// Per `vkDestroyDebugUtilsMessengerEXT`.
pub unsafe extern "system" fn destroy_messenger(
    _instance: vk::Instance,
    messenger: vk::DebugUtilsMessengerEXT,
    _allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || unregister(messenger.as_raw()))
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

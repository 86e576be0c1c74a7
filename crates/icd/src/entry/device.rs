//! Device creation and destruction, queues.

use std::ffi::CStr;

use ash::vk;
use ash::vk::Handle;

use super::{VkResult, chain, guard, guard_or, input, input_slice, result, write_out};
use crate::host_memory::{HostAllocator, HostBox, try_vec};
use crate::objects::Dispatchable;
use crate::objects::device::Device;
use crate::objects::extensions::{self, DEVICE_EXTENSIONS, ExtensionSet};
use crate::objects::physical_device::{PhysicalDevice, QUEUE_COUNT};
use crate::objects::queue::Queue;

/// The `VkBool32` members of a features structure, after its sType/pNext header if it has one and
/// up to `end` bytes: the end of its last member. Trailing padding (8 bytes of alignment after an
/// odd number of members, as in `VkPhysicalDeviceVulkan12Features`) is not read: it is not
/// initialized memory and may hold anything.
///
/// # Safety
/// `T` must be a Vulkan features structure: `header` bytes then only `VkBool32` members up to
/// `end <= size_of::<T>()`.
unsafe fn feature_bits<T>(features: &T, header: usize, end: usize) -> &[vk::Bool32] {
    let len = (end.min(size_of::<T>()) - header) / size_of::<vk::Bool32>();
    // SAFETY: per the caller's contract the bytes after `header` are `len` Bool32 values.
    unsafe {
        std::slice::from_raw_parts(
            (features as *const T).cast::<u8>().add(header).cast::<vk::Bool32>(),
            len,
        )
    }
}

/// Whether `requested` turns on any feature `supported` lacks.
///
/// # Safety
/// As for [`feature_bits`].
unsafe fn asks_for_more<T>(requested: &T, supported: &T, header: usize, end: usize) -> bool {
    // SAFETY: forwarded contract.
    let (r, s) = unsafe {
        (
            feature_bits(requested, header, end),
            feature_bits(supported, header, end),
        )
    };
    r.iter().zip(s).any(|(r, s)| *r != vk::FALSE && *s == vk::FALSE)
}

/// Size of the sType/pNext header of an extensible structure.
const HEADER: usize = size_of::<vk::BaseInStructure<'static>>();

/// Where the `VkBool32` members of each features structure end.
const FEATURES_END: usize = size_of::<vk::PhysicalDeviceFeatures>();
const VULKAN11_END: usize =
    std::mem::offset_of!(vk::PhysicalDeviceVulkan11Features<'static>, shader_draw_parameters) + size_of::<vk::Bool32>();
const VULKAN12_END: usize = std::mem::offset_of!(
    vk::PhysicalDeviceVulkan12Features<'static>,
    subgroup_broadcast_dynamic_id
) + size_of::<vk::Bool32>();

/// The features a create info enables, checked against what the device has.
struct EnabledFeatures {
    timeline_semaphores: bool,
    synchronization2: bool,
}

/// # Safety
/// `info` must be a valid `VkDeviceCreateInfo`.
unsafe fn enabled_features(pd: &PhysicalDevice, info: &vk::DeviceCreateInfo<'_>) -> VkResult<EnabledFeatures> {
    let supported = pd.features();
    let mut enabled = EnabledFeatures {
        timeline_semaphores: false,
        synchronization2: false,
    };
    // SAFETY: `pEnabledFeatures` is NULL or valid.
    if let Some(f) = unsafe { input(info.p_enabled_features) }
        // SAFETY: PhysicalDeviceFeatures is all Bool32.
        && unsafe { asks_for_more(f, &supported, 0, FEATURES_END) }
    {
        return Err(vk::Result::ERROR_FEATURE_NOT_PRESENT);
    }
    // SAFETY: the chain is valid; each structure is identified by sType before the cast, and
    // each features structure is a header followed by Bool32 members only.
    unsafe {
        for s in chain(info.p_next) {
            let ptr = s as *const vk::BaseInStructure<'_>;
            match s.s_type {
                vk::StructureType::PHYSICAL_DEVICE_FEATURES_2 => {
                    let f = &*ptr.cast::<vk::PhysicalDeviceFeatures2<'_>>();
                    if asks_for_more(&f.features, &supported, 0, FEATURES_END) {
                        return Err(vk::Result::ERROR_FEATURE_NOT_PRESENT);
                    }
                }
                vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_1_FEATURES => {
                    let f = &*ptr.cast::<vk::PhysicalDeviceVulkan11Features<'_>>();
                    if asks_for_more(f, &vk::PhysicalDeviceVulkan11Features::default(), HEADER, VULKAN11_END) {
                        return Err(vk::Result::ERROR_FEATURE_NOT_PRESENT);
                    }
                }
                vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_2_FEATURES => {
                    let f = &*ptr.cast::<vk::PhysicalDeviceVulkan12Features<'_>>();
                    let ours = vk::PhysicalDeviceVulkan12Features {
                        timeline_semaphore: vk::TRUE,
                        ..Default::default()
                    };
                    if asks_for_more(f, &ours, HEADER, VULKAN12_END) {
                        return Err(vk::Result::ERROR_FEATURE_NOT_PRESENT);
                    }
                    enabled.timeline_semaphores |= f.timeline_semaphore != vk::FALSE;
                }
                vk::StructureType::PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES => {
                    let f = &*ptr.cast::<vk::PhysicalDeviceTimelineSemaphoreFeatures<'_>>();
                    enabled.timeline_semaphores |= f.timeline_semaphore != vk::FALSE;
                }
                vk::StructureType::PHYSICAL_DEVICE_SYNCHRONIZATION_2_FEATURES => {
                    let f = &*ptr.cast::<vk::PhysicalDeviceSynchronization2Features<'_>>();
                    enabled.synchronization2 |= f.synchronization2 != vk::FALSE;
                }
                _ => {}
            }
        }
    }
    Ok(enabled)
}

/// # Safety
/// Per `vkCreateDevice`.
pub unsafe extern "system" fn create_device(
    physical_device: vk::PhysicalDevice,
    info: *const vk::DeviceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Device,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let pd = unsafe { super::instance::physical_device(physical_device) }
                .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            // SAFETY: as above.
            // (The loader adds structures of its own to this chain: only the sType is checked.)
            let info = unsafe {
                super::input_struct(
                    &pd.debug,
                    info,
                    "vkCreateDevice",
                    "pCreateInfo",
                    "VkDeviceCreateInfo",
                    None,
                )
            }?;
            // SAFETY: `ppEnabledExtensionNames` holds `enabledExtensionCount` strings.
            let names = unsafe { input_slice(info.pp_enabled_extension_names, info.enabled_extension_count) }
                .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            let mut extensions = ExtensionSet::default();
            for &name in names {
                if name.is_null() {
                    return Err(vk::Result::ERROR_EXTENSION_NOT_PRESENT);
                }
                // SAFETY: each name is a NUL-terminated string.
                let name = unsafe { CStr::from_ptr(name) };
                let index = extensions::find(DEVICE_EXTENSIONS, name)
                    .filter(|&i| DEVICE_EXTENSIONS[i].0.offered(pd.handle_mode))
                    .ok_or(vk::Result::ERROR_EXTENSION_NOT_PRESENT)?;
                extensions.insert_index(index);
            }
            // SAFETY: `info` is valid.
            let features = unsafe { enabled_features(pd, info) }?;
            // SAFETY: `pQueueCreateInfos` holds `queueCreateInfoCount` structures.
            let queue_infos = unsafe { input_slice(info.p_queue_create_infos, info.queue_create_info_count) }
                .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            for q in queue_infos {
                if !super::check_s_type(&pd.debug, q, "VkDeviceQueueCreateInfo") {
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
                if q.queue_count > 0 && q.p_queue_priorities.is_null() {
                    pd.debug.validation(
                        "VUID-VkDeviceQueueCreateInfo-pQueuePriorities-parameter",
                        "pQueuePriorities must hold queueCount priorities, not be NULL",
                    );
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
            }
            let bad_queue = |q: &vk::DeviceQueueCreateInfo<'_>| {
                q.queue_family_index != 0 || q.queue_count == 0 || q.queue_count > QUEUE_COUNT
            };
            if queue_infos.len() > 1 || queue_infos.iter().any(bad_queue) {
                pd.debug.validation(
                    "VUID-VkDeviceQueueCreateInfo-queueCount-00382",
                    "the device has one queue family (index 0) of 4 queues, requested once",
                );
                return Err(vk::Result::ERROR_INITIALIZATION_FAILED);
            }
            // Storage first: the device's, then each queue's, each before its worker thread.
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let allocator = unsafe { HostAllocator::from_ptr(allocator) }.or(pd.instance_allocator);
            let storage = allocator.reserve::<Dispatchable<Device>>(vk::SystemAllocationScope::DEVICE)?;
            let id = Device::next_id();
            let mut queues = try_vec(queue_infos.first().map_or(0, |q| q.queue_count as usize))?;
            for q in queue_infos {
                for index in 0..q.queue_count {
                    let slot = allocator.reserve(vk::SystemAllocationScope::DEVICE)?;
                    let queue = Queue::new(id, 0, index, q.flags, pd.debug.clone())
                        .map_err(|_| vk::Result::ERROR_OUT_OF_HOST_MEMORY)?;
                    queues.push(slot.write(Dispatchable::new(queue)));
                }
            }
            let device = Device {
                id,
                debug: pd.debug.clone(),
                extensions,
                instance_extensions: pd.instance_extensions,
                handle_mode: pd.handle_mode,
                timeline_semaphores: features.timeline_semaphores,
                synchronization2: features.synchronization2,
                queues,
                allocator: allocator.inherited(),
            };
            let raw = HostBox::into_raw(storage.write(Dispatchable::new(device)));
            // SAFETY: writable output per valid usage.
            unsafe { write_out(out, vk::Device::from_raw(raw as u64)) }.inspect_err(|_| {
                // SAFETY: `raw` was just made by `into_raw` and never shared.
                drop(unsafe { HostBox::from_raw(raw) });
            })
        })())
    })
}

/// # Safety
/// Per `vkDestroyDevice`.
pub unsafe extern "system" fn destroy_device(device: vk::Device, allocator: *const vk::AllocationCallbacks<'_>) {
    guard_or((), || {
        let raw = device.as_raw() as usize as *mut Dispatchable<Device>;
        if raw.is_null() {
            return;
        }
        // SAFETY: created by `create_device`, destroyed once per valid usage.
        let mut device = unsafe { HostBox::from_raw(raw) };
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        let given = unsafe { HostAllocator::from_ptr(allocator) };
        let debug = std::sync::Arc::clone(&device.object.debug);
        let queues_ok = device.object.destroy_queues(given);
        if !(HostBox::destroy(device, given) && queues_ok) {
            super::allocator_mismatch(&debug, "VkDevice");
        }
    })
}

fn queue_handle(dev: &Device, index: u32, flags: vk::DeviceQueueCreateFlags) -> Option<vk::Queue> {
    let q = dev.queues.get(index as usize)?;
    (q.object.flags == flags).then(|| vk::Queue::from_raw(&**q as *const Dispatchable<Queue> as u64))
}

/// # Safety
/// Per `vkGetDeviceQueue`.
pub unsafe extern "system" fn get_device_queue(device: vk::Device, family: u32, index: u32, out: *mut vk::Queue) {
    guard_or((), || {
        // SAFETY: valid handle per valid usage.
        let Ok(dev) = (unsafe { super::device(device) }) else {
            return;
        };
        let queue = if family == 0 {
            queue_handle(dev, index, vk::DeviceQueueCreateFlags::empty())
        } else {
            None
        };
        if queue.is_none() {
            dev.debug.validation(
                "VUID-vkGetDeviceQueue-queueIndex-00385",
                "no such queue was created with the device",
            );
        }
        // SAFETY: writable output per valid usage.
        let _ = unsafe { write_out(out, queue.unwrap_or_else(vk::Queue::null)) };
    })
}

/// # Safety
/// Per `vkGetDeviceQueue2`.
pub unsafe extern "system" fn get_device_queue2(
    device: vk::Device,
    info: *const vk::DeviceQueueInfo2<'_>,
    out: *mut vk::Queue,
) {
    guard_or((), || {
        // SAFETY: valid handle and pointers per valid usage.
        let (Ok(dev), Some(info)) = (unsafe { super::device(device) }, unsafe { input(info) }) else {
            return;
        };
        let queue = if info.queue_family_index == 0 {
            queue_handle(dev, info.queue_index, info.flags)
        } else {
            None
        };
        // SAFETY: writable output per valid usage (NULL when no queue matches, as the spec says).
        let _ = unsafe { write_out(out, queue.unwrap_or_else(vk::Queue::null)) };
    })
}

/// # Safety
/// Per `vkDeviceWaitIdle`.
pub unsafe extern "system" fn device_wait_idle(device: vk::Device) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle per valid usage.
            let dev = unsafe { super::device(device) }?;
            dev.wait_idle();
            Ok(())
        })())
    })
}

//! Instance creation, enumeration and the physical-device queries (including the external fence
//! and semaphore capability queries, answered from `handle_types`).

use std::ffi::{CStr, c_char};
use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;

use super::{
    VkResult, chain, dispatchable, fill_out, find_in_chain, for_each_out, guard, guard_or, input, result, write_array,
    write_out,
};
use crate::debug::{DebugReporter, Messenger};

/// The handle value of messengers chained into `VkInstanceCreateInfo` (they have no handle).
const CREATE_TIME_MESSENGER: u64 = 0;
use crate::handle_types::{self, ObjectKind};
use crate::host_memory::{HostAllocator, HostBox};
use crate::objects::Dispatchable;
use crate::objects::extensions::{self, DEVICE_EXTENSIONS, ExtensionSet, INSTANCE_EXTENSIONS};
use crate::objects::instance::Instance;
use crate::objects::physical_device::{API_VERSION, IDENTITY, PhysicalDevice};

/// # Safety
/// Per `vkCreateInstance`.
pub unsafe extern "system" fn create_instance(
    info: *const vk::InstanceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Instance,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid pointer per the command's valid usage.
            let info = unsafe { input(info) }.ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            // No reporter exists yet: a wrong sType is refused without a message. (The loader
            // adds structures of its own to the chain, which is not checked.)
            if info.s_type != vk::StructureType::INSTANCE_CREATE_INFO {
                return Err(vk::Result::ERROR_INITIALIZATION_FAILED);
            }
            // SAFETY: `ppEnabledExtensionNames` holds `enabledExtensionCount` strings.
            let names = unsafe { super::input_slice(info.pp_enabled_extension_names, info.enabled_extension_count) }
                .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
            let mut enabled = ExtensionSet::default();
            for &name in names {
                if name.is_null() {
                    return Err(vk::Result::ERROR_EXTENSION_NOT_PRESENT);
                }
                // SAFETY: each name is a NUL-terminated string.
                let name = unsafe { CStr::from_ptr(name) };
                let index =
                    extensions::find(INSTANCE_EXTENSIONS, name).ok_or(vk::Result::ERROR_EXTENSION_NOT_PRESENT)?;
                enabled.insert_index(index);
            }
            if info.enabled_layer_count != 0 {
                return Err(vk::Result::ERROR_LAYER_NOT_PRESENT);
            }
            // SAFETY: `pApplicationInfo` is NULL or valid.
            let app_api_version = unsafe { input(info.p_application_info) }.map_or(0, |a| a.api_version);
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let allocator = unsafe { HostAllocator::from_ptr(allocator) };
            let storage = allocator.reserve::<Dispatchable<Instance>>(vk::SystemAllocationScope::INSTANCE)?;
            let debug = Arc::new(DebugReporter::default());
            let mut instance = Instance::new(enabled, app_api_version, Arc::clone(&debug), allocator);
            // SAFETY: the create info's chain is valid.
            for s in unsafe { chain(info.p_next) } {
                if s.s_type == vk::StructureType::DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT {
                    // SAFETY: sType identifies the structure.
                    let m = unsafe {
                        &*(s as *const vk::BaseInStructure<'_>).cast::<vk::DebugUtilsMessengerCreateInfoEXT<'_>>()
                    };
                    if let Some(m) = Messenger::from_create_info(CREATE_TIME_MESSENGER, m) {
                        debug.add(m);
                        instance.create_time_messengers.push(m);
                    }
                }
            }
            let raw = HostBox::into_raw(storage.write(Dispatchable::new(instance)));
            // SAFETY: `out` is a writable handle per valid usage.
            unsafe { write_out(out, vk::Instance::from_raw(raw as u64)) }.inspect_err(|_| {
                // SAFETY: `raw` was just made by `into_raw` and never shared.
                drop(unsafe { HostBox::from_raw(raw) });
            })?;
            // Chained messengers cover vkCreateInstance and vkDestroyInstance only.
            debug.remove(CREATE_TIME_MESSENGER);
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkDestroyInstance`.
pub unsafe extern "system" fn destroy_instance(instance: vk::Instance, allocator: *const vk::AllocationCallbacks<'_>) {
    guard_or((), || {
        let raw = instance.as_raw() as usize as *mut Dispatchable<Instance>;
        if raw.is_null() {
            return;
        }
        // SAFETY: the instance was created by `create_instance` and is destroyed once.
        let instance = unsafe { HostBox::from_raw(raw) };
        // Messengers chained into the create info hear vkDestroyInstance again.
        for m in &instance.object.create_time_messengers {
            instance.object.debug.add(*m);
        }
        let debug = Arc::clone(&instance.object.debug);
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        if !HostBox::destroy(instance, unsafe { HostAllocator::from_ptr(allocator) }) {
            super::allocator_mismatch(&debug, "VkInstance");
        }
    })
}

/// # Safety
/// Per `vkEnumerateInstanceExtensionProperties`.
pub unsafe extern "system" fn enumerate_instance_extension_properties(
    layer: *const c_char,
    count: *mut u32,
    out: *mut vk::ExtensionProperties,
) -> vk::Result {
    guard(|| {
        if !layer.is_null() {
            return vk::Result::ERROR_LAYER_NOT_PRESENT;
        }
        let props: Vec<_> = INSTANCE_EXTENSIONS
            .iter()
            .map(|(_, n, v)| extensions::properties(n, *v))
            .collect();
        // SAFETY: two-call idiom pointers per valid usage.
        unsafe { write_array(&props, count, out) }
    })
}

/// # Safety
/// Per `vkEnumerateInstanceLayerProperties`.
pub unsafe extern "system" fn enumerate_instance_layer_properties(
    count: *mut u32,
    out: *mut vk::LayerProperties,
) -> vk::Result {
    // SAFETY: two-call idiom pointers per valid usage.
    guard(|| unsafe { write_array::<vk::LayerProperties>(&[], count, out) })
}

/// # Safety
/// Per `vkEnumerateInstanceVersion`.
pub unsafe extern "system" fn enumerate_instance_version(version: *mut u32) -> vk::Result {
    guard(|| {
        // SAFETY: writable per valid usage.
        result(unsafe {
            write_out(
                version,
                vk::make_api_version(0, 1, 2, vk::api_version_patch(API_VERSION)),
            )
        })
    })
}

/// # Safety
/// A live instance of this driver.
unsafe fn instance_ref<'a>(instance: vk::Instance) -> VkResult<&'a Instance> {
    // SAFETY: per the caller's contract.
    unsafe { dispatchable::<Instance>(instance.as_raw()) }.ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)
}

fn physical_device_handle(instance: &Instance) -> vk::PhysicalDevice {
    vk::PhysicalDevice::from_raw(&instance.physical_device as *const Dispatchable<PhysicalDevice> as u64)
}

/// # Safety
/// Per `vkEnumeratePhysicalDevices`.
pub unsafe extern "system" fn enumerate_physical_devices(
    instance: vk::Instance,
    count: *mut u32,
    out: *mut vk::PhysicalDevice,
) -> vk::Result {
    guard(|| {
        // SAFETY: a live instance per valid usage.
        let Ok(inst) = (unsafe { instance_ref(instance) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: two-call idiom pointers per valid usage.
        unsafe { write_array(&[physical_device_handle(inst)], count, out) }
    })
}

/// # Safety
/// Per `vkEnumeratePhysicalDeviceGroups`.
pub unsafe extern "system" fn enumerate_physical_device_groups(
    instance: vk::Instance,
    count: *mut u32,
    out: *mut vk::PhysicalDeviceGroupProperties<'_>,
) -> vk::Result {
    guard(|| {
        // SAFETY: a live instance per valid usage.
        let Ok(inst) = (unsafe { instance_ref(instance) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: `count` is writable per valid usage.
        let Some(n) = (unsafe { count.as_mut() }) else {
            return vk::Result::ERROR_VALIDATION_FAILED_EXT;
        };
        if out.is_null() {
            *n = 1;
            return vk::Result::SUCCESS;
        }
        if *n == 0 {
            return vk::Result::INCOMPLETE;
        }
        // SAFETY: `out` has room for at least one element; its sType/pNext are the caller's.
        let group = unsafe { &mut *out };
        group.physical_device_count = 1;
        group.physical_devices = [vk::PhysicalDevice::null(); vk::MAX_DEVICE_GROUP_SIZE];
        group.physical_devices[0] = physical_device_handle(inst);
        group.subset_allocation = vk::FALSE;
        *n = 1;
        vk::Result::SUCCESS
    })
}

/// # Safety
/// A live physical device of this driver.
pub unsafe fn physical_device<'a>(pd: vk::PhysicalDevice) -> Option<&'a PhysicalDevice> {
    // SAFETY: per the caller's contract.
    unsafe { dispatchable::<PhysicalDevice>(pd.as_raw()) }
}

/// # Safety
/// Per `vkGetPhysicalDeviceProperties`.
pub unsafe extern "system" fn get_physical_device_properties(
    pd: vk::PhysicalDevice,
    out: *mut vk::PhysicalDeviceProperties,
) {
    guard_or((), || {
        // SAFETY: valid handle and writable output per valid usage.
        if let (Some(pd), Some(out)) = (unsafe { physical_device(pd) }, unsafe { out.as_mut() }) {
            *out = pd.properties();
        }
    })
}

/// Fills the structures of a `VkPhysicalDeviceProperties2` chain that the driver knows.
///
/// # Safety
/// `p_next` must be a valid writable chain.
unsafe fn fill_properties_chain(pd: &PhysicalDevice, p_next: *mut std::ffi::c_void) {
    let props = pd.properties();
    // SAFETY: each structure is identified by its sType before being written.
    unsafe {
        for_each_out(p_next, |s| match (*s).s_type {
            vk::StructureType::PHYSICAL_DEVICE_ID_PROPERTIES => fill_out(
                s,
                vk::PhysicalDeviceIDProperties {
                    device_uuid: IDENTITY.device_uuid,
                    driver_uuid: IDENTITY.driver_uuid,
                    device_luid_valid: vk::FALSE,
                    ..Default::default()
                },
            ),
            vk::StructureType::PHYSICAL_DEVICE_DRIVER_PROPERTIES => fill_out(
                s,
                vk::PhysicalDeviceDriverProperties {
                    driver_id: vk::DriverId::from_raw(0),
                    driver_name: pd.driver_name(),
                    driver_info: pd.driver_info(),
                    conformance_version: vk::ConformanceVersion::default(),
                    ..Default::default()
                },
            ),
            vk::StructureType::PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_PROPERTIES => fill_out(
                s,
                vk::PhysicalDeviceTimelineSemaphoreProperties {
                    max_timeline_semaphore_value_difference: u64::MAX,
                    ..Default::default()
                },
            ),
            vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES => fill_out(
                s,
                vk::PhysicalDeviceVulkan11Properties {
                    device_uuid: IDENTITY.device_uuid,
                    driver_uuid: IDENTITY.driver_uuid,
                    device_luid_valid: vk::FALSE,
                    max_multiview_view_count: 0,
                    max_per_set_descriptors: 0,
                    max_memory_allocation_size: crate::objects::physical_device::MAX_ALLOCATION_SIZE,
                    ..Default::default()
                },
            ),
            vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_2_PROPERTIES => fill_out(
                s,
                vk::PhysicalDeviceVulkan12Properties {
                    driver_id: vk::DriverId::from_raw(0),
                    driver_name: pd.driver_name(),
                    driver_info: pd.driver_info(),
                    max_timeline_semaphore_value_difference: u64::MAX,
                    ..Default::default()
                },
            ),
            vk::StructureType::PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES => fill_out(
                s,
                vk::PhysicalDeviceMaintenance3Properties {
                    max_per_set_descriptors: 0,
                    max_memory_allocation_size: crate::objects::physical_device::MAX_ALLOCATION_SIZE,
                    ..Default::default()
                },
            ),
            _ => {}
        });
    }
    let _ = props;
}

/// # Safety
/// Per `vkGetPhysicalDeviceProperties2`.
pub unsafe extern "system" fn get_physical_device_properties2(
    pd: vk::PhysicalDevice,
    out: *mut vk::PhysicalDeviceProperties2<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and writable output per valid usage.
        if let (Some(pd), Some(out)) = (unsafe { physical_device(pd) }, unsafe { out.as_mut() }) {
            out.properties = pd.properties();
            // SAFETY: the output chain is valid and writable.
            unsafe { fill_properties_chain(pd, out.p_next) };
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceFeatures`.
pub unsafe extern "system" fn get_physical_device_features(
    pd: vk::PhysicalDevice,
    out: *mut vk::PhysicalDeviceFeatures,
) {
    guard_or((), || {
        // SAFETY: valid handle and writable output per valid usage.
        if let (Some(pd), Some(out)) = (unsafe { physical_device(pd) }, unsafe { out.as_mut() }) {
            *out = pd.features();
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceFeatures2`.
pub unsafe extern "system" fn get_physical_device_features2(
    pd: vk::PhysicalDevice,
    out: *mut vk::PhysicalDeviceFeatures2<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and writable output per valid usage.
        let (Some(pd), Some(out)) = (unsafe { physical_device(pd) }, unsafe { out.as_mut() }) else {
            return;
        };
        out.features = pd.features();
        // SAFETY: each structure is identified by its sType before being written.
        unsafe {
            for_each_out(out.p_next, |s| match (*s).s_type {
                vk::StructureType::PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES => fill_out(
                    s,
                    vk::PhysicalDeviceTimelineSemaphoreFeatures {
                        timeline_semaphore: vk::TRUE,
                        ..Default::default()
                    },
                ),
                vk::StructureType::PHYSICAL_DEVICE_SYNCHRONIZATION_2_FEATURES => fill_out(
                    s,
                    vk::PhysicalDeviceSynchronization2Features {
                        synchronization2: vk::TRUE,
                        ..Default::default()
                    },
                ),
                vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_1_FEATURES => {
                    fill_out(s, vk::PhysicalDeviceVulkan11Features::default())
                }
                vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_2_FEATURES => fill_out(
                    s,
                    vk::PhysicalDeviceVulkan12Features {
                        timeline_semaphore: vk::TRUE,
                        ..Default::default()
                    },
                ),
                _ => {}
            });
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceQueueFamilyProperties`.
pub unsafe extern "system" fn get_physical_device_queue_family_properties(
    pd: vk::PhysicalDevice,
    count: *mut u32,
    out: *mut vk::QueueFamilyProperties,
) {
    guard_or((), || {
        // SAFETY: valid handle per valid usage.
        let Some(pd) = (unsafe { physical_device(pd) }) else {
            return;
        };
        // SAFETY: two-call idiom pointers per valid usage.
        let _ = unsafe { write_array(&[pd.queue_family()], count, out) };
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceQueueFamilyProperties2`.
pub unsafe extern "system" fn get_physical_device_queue_family_properties2(
    pd: vk::PhysicalDevice,
    count: *mut u32,
    out: *mut vk::QueueFamilyProperties2<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and count pointer per valid usage.
        let (Some(pd), Some(n)) = (unsafe { physical_device(pd) }, unsafe { count.as_mut() }) else {
            return;
        };
        if out.is_null() {
            *n = 1;
            return;
        }
        if *n >= 1 {
            // SAFETY: room for one element; the caller's sType/pNext stay.
            unsafe { (*out).queue_family_properties = pd.queue_family() };
            *n = 1;
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceMemoryProperties`.
pub unsafe extern "system" fn get_physical_device_memory_properties(
    pd: vk::PhysicalDevice,
    out: *mut vk::PhysicalDeviceMemoryProperties,
) {
    guard_or((), || {
        // SAFETY: valid handle and writable output per valid usage.
        if let (Some(pd), Some(out)) = (unsafe { physical_device(pd) }, unsafe { out.as_mut() }) {
            *out = pd.memory_properties();
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceMemoryProperties2`.
pub unsafe extern "system" fn get_physical_device_memory_properties2(
    pd: vk::PhysicalDevice,
    out: *mut vk::PhysicalDeviceMemoryProperties2<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and writable output per valid usage.
        if let (Some(pd), Some(out)) = (unsafe { physical_device(pd) }, unsafe { out.as_mut() }) {
            out.memory_properties = pd.memory_properties();
        }
    })
}

/// No formats are supported: the device has no images.
///
/// # Safety
/// Per `vkGetPhysicalDeviceFormatProperties`.
pub unsafe extern "system" fn get_physical_device_format_properties(
    _pd: vk::PhysicalDevice,
    _format: vk::Format,
    out: *mut vk::FormatProperties,
) {
    guard_or((), || {
        // SAFETY: writable output per valid usage.
        if let Some(out) = unsafe { out.as_mut() } {
            *out = vk::FormatProperties::default();
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceFormatProperties2`.
pub unsafe extern "system" fn get_physical_device_format_properties2(
    _pd: vk::PhysicalDevice,
    _format: vk::Format,
    out: *mut vk::FormatProperties2<'_>,
) {
    guard_or((), || {
        // SAFETY: writable output per valid usage.
        if let Some(out) = unsafe { out.as_mut() } {
            out.format_properties = vk::FormatProperties::default();
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceImageFormatProperties`.
pub unsafe extern "system" fn get_physical_device_image_format_properties(
    _pd: vk::PhysicalDevice,
    _format: vk::Format,
    _ty: vk::ImageType,
    _tiling: vk::ImageTiling,
    _usage: vk::ImageUsageFlags,
    _flags: vk::ImageCreateFlags,
    _out: *mut vk::ImageFormatProperties,
) -> vk::Result {
    vk::Result::ERROR_FORMAT_NOT_SUPPORTED
}

/// # Safety
/// Per `vkGetPhysicalDeviceImageFormatProperties2`.
pub unsafe extern "system" fn get_physical_device_image_format_properties2(
    _pd: vk::PhysicalDevice,
    _info: *const vk::PhysicalDeviceImageFormatInfo2<'_>,
    _out: *mut vk::ImageFormatProperties2<'_>,
) -> vk::Result {
    vk::Result::ERROR_FORMAT_NOT_SUPPORTED
}

/// # Safety
/// Per `vkGetPhysicalDeviceSparseImageFormatProperties`.
pub unsafe extern "system" fn get_physical_device_sparse_image_format_properties(
    _pd: vk::PhysicalDevice,
    _format: vk::Format,
    _ty: vk::ImageType,
    _samples: vk::SampleCountFlags,
    _usage: vk::ImageUsageFlags,
    _tiling: vk::ImageTiling,
    count: *mut u32,
    _out: *mut vk::SparseImageFormatProperties,
) {
    guard_or((), || {
        // SAFETY: `count` is writable per valid usage.
        if let Some(n) = unsafe { count.as_mut() } {
            *n = 0
        }
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceSparseImageFormatProperties2`.
pub unsafe extern "system" fn get_physical_device_sparse_image_format_properties2(
    _pd: vk::PhysicalDevice,
    _info: *const vk::PhysicalDeviceSparseImageFormatInfo2<'_>,
    count: *mut u32,
    _out: *mut vk::SparseImageFormatProperties2<'_>,
) {
    guard_or((), || {
        // SAFETY: `count` is writable per valid usage.
        if let Some(n) = unsafe { count.as_mut() } {
            *n = 0
        }
    })
}

/// # Safety
/// Per `vkEnumerateDeviceExtensionProperties`.
pub unsafe extern "system" fn enumerate_device_extension_properties(
    pd: vk::PhysicalDevice,
    layer: *const c_char,
    count: *mut u32,
    out: *mut vk::ExtensionProperties,
) -> vk::Result {
    guard(|| {
        if !layer.is_null() {
            return vk::Result::ERROR_LAYER_NOT_PRESENT;
        }
        // SAFETY: valid handle per valid usage.
        let Some(pd) = (unsafe { physical_device(pd) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        let props: Vec<_> = DEVICE_EXTENSIONS
            .iter()
            .filter(|(e, _, _)| e.offered(pd.handle_mode))
            .map(|(_, n, v)| extensions::properties(n, *v))
            .collect();
        // SAFETY: two-call idiom pointers per valid usage.
        unsafe { write_array(&props, count, out) }
    })
}

/// # Safety
/// Per `vkEnumerateDeviceLayerProperties`.
pub unsafe extern "system" fn enumerate_device_layer_properties(
    _pd: vk::PhysicalDevice,
    count: *mut u32,
    out: *mut vk::LayerProperties,
) -> vk::Result {
    // SAFETY: two-call idiom pointers per valid usage.
    guard(|| unsafe { write_array::<vk::LayerProperties>(&[], count, out) })
}

/// Keeps the output's sType and pNext, copies the three answer fields.
fn set_fence_answer(out: &mut vk::ExternalFenceProperties<'_>, answer: vk::ExternalFenceProperties<'_>) {
    out.export_from_imported_handle_types = answer.export_from_imported_handle_types;
    out.compatible_handle_types = answer.compatible_handle_types;
    out.external_fence_features = answer.external_fence_features;
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalFenceProperties`.
pub unsafe extern "system" fn get_physical_device_external_fence_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalFenceInfo<'_>,
    out: *mut vk::ExternalFenceProperties<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and pointers per valid usage.
        let (Some(pd), Some(info), Some(out)) = (unsafe { physical_device(pd) }, unsafe { input(info) }, unsafe {
            out.as_mut()
        }) else {
            return;
        };
        set_fence_answer(out, handle_types::fence_properties(pd.handle_mode, info.handle_type));
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalSemaphoreProperties` (with `VkSemaphoreTypeCreateInfo`
/// chained or not).
pub unsafe extern "system" fn get_physical_device_external_semaphore_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalSemaphoreInfo<'_>,
    out: *mut vk::ExternalSemaphoreProperties<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and pointers per valid usage.
        let (Some(pd), Some(info), Some(out)) = (unsafe { physical_device(pd) }, unsafe { input(info) }, unsafe {
            out.as_mut()
        }) else {
            return;
        };
        // SAFETY: the input chain is valid.
        let kind = match unsafe { find_in_chain::<vk::SemaphoreTypeCreateInfo<'_>>(info.p_next) } {
            Some(t) if t.semaphore_type == vk::SemaphoreType::TIMELINE => ObjectKind::TimelineSemaphore,
            _ => ObjectKind::BinarySemaphore,
        };
        let answer = handle_types::semaphore_properties(pd.handle_mode, kind, info.handle_type);
        out.export_from_imported_handle_types = answer.export_from_imported_handle_types;
        out.compatible_handle_types = answer.compatible_handle_types;
        out.external_semaphore_features = answer.external_semaphore_features;
    })
}

/// External memory is not offered: every answer is empty.
///
/// # Safety
/// Per `vkGetPhysicalDeviceExternalBufferProperties`.
pub unsafe extern "system" fn get_physical_device_external_buffer_properties(
    _pd: vk::PhysicalDevice,
    _info: *const vk::PhysicalDeviceExternalBufferInfo<'_>,
    out: *mut vk::ExternalBufferProperties<'_>,
) {
    guard_or((), || {
        // SAFETY: writable output per valid usage.
        if let Some(out) = unsafe { out.as_mut() } {
            out.external_memory_properties = vk::ExternalMemoryProperties::default();
        }
    })
}

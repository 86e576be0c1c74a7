//! Instance-level state and commands: `vkCreateInstance` (chain setup), `vkDestroyInstance`,
//! `vkEnumerateDeviceExtensionProperties`, and the debug-utils messengers the layer reports to.

use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::sync::{Arc, Mutex};

use ash::vk;
use ash::vk::Handle;

use crate::LAYER_NAME;
use crate::caps::PhysicalCaps;
use crate::debug::Reporter;
use crate::dispatch::{
    LayerInstanceCreateInfo, PfnGetPhysicalDeviceProcAddr, ShardedMap, dispatch_key, find_link, guard, name_of, typed,
    write_array,
};

/// The next layer's (or the loader's) instance-level commands the layer calls.
pub struct InstanceFns {
    pub destroy_instance: vk::PFN_vkDestroyInstance,
    pub enumerate_device_extension_properties: vk::PFN_vkEnumerateDeviceExtensionProperties,
    pub get_physical_device_properties: vk::PFN_vkGetPhysicalDeviceProperties,
    pub external_fence_properties: Option<vk::PFN_vkGetPhysicalDeviceExternalFenceProperties>,
    pub external_fence_properties_khr: Option<vk::PFN_vkGetPhysicalDeviceExternalFenceProperties>,
    pub external_semaphore_properties: Option<vk::PFN_vkGetPhysicalDeviceExternalSemaphoreProperties>,
    pub external_semaphore_properties_khr: Option<vk::PFN_vkGetPhysicalDeviceExternalSemaphoreProperties>,
    pub create_debug_utils_messenger: Option<vk::PFN_vkCreateDebugUtilsMessengerEXT>,
    pub destroy_debug_utils_messenger: Option<vk::PFN_vkDestroyDebugUtilsMessengerEXT>,
}

impl InstanceFns {
    /// `vkGetPhysicalDeviceExternalFenceProperties`, core or KHR, whichever exists.
    pub fn any_fence_properties(&self) -> Option<vk::PFN_vkGetPhysicalDeviceExternalFenceProperties> {
        self.external_fence_properties.or(self.external_fence_properties_khr)
    }

    /// `vkGetPhysicalDeviceExternalSemaphoreProperties`, core or KHR, whichever exists.
    pub fn any_semaphore_properties(&self) -> Option<vk::PFN_vkGetPhysicalDeviceExternalSemaphoreProperties> {
        self.external_semaphore_properties
            .or(self.external_semaphore_properties_khr)
    }
}

/// What the layer keeps per instance (keyed by dispatch key, shared with its physical devices).
pub struct InstanceData {
    pub handle: vk::Instance,
    pub next_gipa: vk::PFN_vkGetInstanceProcAddr,
    pub next_gpdpa: Option<PfnGetPhysicalDeviceProcAddr>,
    pub fns: InstanceFns,
    pub reporter: Reporter,
    /// What each physical device's driver offers, computed on first use.
    pub physical: Mutex<HashMap<u64, Arc<PhysicalCaps>>>,
}

impl InstanceData {
    /// The next layer's answer to `vkGetInstanceProcAddr(instance, name)`.
    pub fn next_proc(&self, name: &CStr) -> vk::PFN_vkVoidFunction {
        // SAFETY: the next layer's GIPA with this instance and a NUL-terminated name.
        unsafe { (self.next_gipa)(self.handle, name.as_ptr()) }
    }
}

pub static INSTANCES: ShardedMap<usize, Arc<InstanceData>> = ShardedMap::new();

/// The instance data of an instance or physical device.
///
/// # Safety
/// `handle` is NULL or a live `VkInstance` / `VkPhysicalDevice` of the loader.
pub unsafe fn instance_of(handle: u64) -> Option<Arc<InstanceData>> {
    if handle == 0 {
        return None;
    }
    // SAFETY: per the caller's contract.
    INSTANCES.get(&unsafe { dispatch_key(handle) })
}

/// `vkCreateInstance`: take the next link, advance the chain, call down, record the instance.
///
/// # Safety
/// Per `vkCreateInstance`, called by the loader with its link info in the chain.
pub unsafe extern "system" fn create_instance(
    create_info: *const vk::InstanceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    instance: *mut vk::Instance,
) -> vk::Result {
    guard(vk::Result::ERROR_INITIALIZATION_FAILED, || {
        if create_info.is_null() || instance.is_null() {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        // SAFETY: a valid create info per valid usage.
        let ci = unsafe { &*create_info };
        // SAFETY: the chain is valid; the loader put its link info in it for us to advance.
        let Some(link) = (unsafe {
            find_link::<LayerInstanceCreateInfo>(ci.p_next, vk::StructureType::LOADER_INSTANCE_CREATE_INFO)
        }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: the loader's link structure and its current element are valid.
        let (next_gipa, next_gpdpa) = unsafe {
            let info = (*link).layer_info;
            if info.is_null() {
                return vk::Result::ERROR_INITIALIZATION_FAILED;
            }
            (
                (*info).next_get_instance_proc_addr,
                (*info).next_get_physical_device_proc_addr,
            )
        };
        let Some(next_gipa) = next_gipa else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: the next GIPA with a NULL instance for a global command.
        let next_create =
            unsafe { typed::<vk::PFN_vkCreateInstance>(next_gipa(vk::Instance::null(), c"vkCreateInstance".as_ptr())) };
        let Some(next_create) = next_create else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // Advance the link for the next layer, as the loader requires.
        // SAFETY: the loader owns the link list and expects it advanced in place.
        unsafe { (*link).layer_info = (*(*link).layer_info).next };
        // SAFETY: the application's arguments, passed on.
        let r = unsafe { next_create(create_info, allocator, instance) };
        if r != vk::Result::SUCCESS {
            return r;
        }
        // SAFETY: the instance was just created.
        let handle = unsafe { *instance };
        let load = |name: &CStr| {
            // SAFETY: the next GIPA with the new instance and a NUL-terminated name.
            unsafe { next_gipa(handle, name.as_ptr()) }
        };
        // SAFETY: each name is looked up with its own function-pointer type.
        let fns = unsafe {
            (|| {
                Some(InstanceFns {
                    destroy_instance: typed(load(c"vkDestroyInstance"))?,
                    enumerate_device_extension_properties: typed(load(c"vkEnumerateDeviceExtensionProperties"))?,
                    get_physical_device_properties: typed(load(c"vkGetPhysicalDeviceProperties"))?,
                    external_fence_properties: typed(load(c"vkGetPhysicalDeviceExternalFenceProperties")),
                    external_fence_properties_khr: typed(load(c"vkGetPhysicalDeviceExternalFencePropertiesKHR")),
                    external_semaphore_properties: typed(load(c"vkGetPhysicalDeviceExternalSemaphoreProperties")),
                    external_semaphore_properties_khr: typed(load(
                        c"vkGetPhysicalDeviceExternalSemaphorePropertiesKHR",
                    )),
                    create_debug_utils_messenger: typed(load(c"vkCreateDebugUtilsMessengerEXT")),
                    destroy_debug_utils_messenger: typed(load(c"vkDestroyDebugUtilsMessengerEXT")),
                })
            })()
        };
        let Some(fns) = fns else {
            crate::debug::log("the next layer returned no core instance commands");
            // SAFETY: the next GIPA's own vkDestroyInstance, if it has one, for the instance it made.
            if let Some(destroy) = unsafe { typed::<vk::PFN_vkDestroyInstance>(load(c"vkDestroyInstance")) } {
                // SAFETY: the instance was just created and nothing else has seen it.
                unsafe { destroy(handle, allocator) };
            }
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        let data = InstanceData {
            handle,
            next_gipa,
            next_gpdpa,
            fns,
            reporter: Reporter::default(),
            physical: Mutex::default(),
        };
        // SAFETY: the instance was just created through the loader.
        INSTANCES.insert(unsafe { dispatch_key(handle.as_raw()) }, Arc::new(data));
        vk::Result::SUCCESS
    })
}

/// # Safety
/// Per `vkDestroyInstance`.
pub unsafe extern "system" fn destroy_instance(instance: vk::Instance, allocator: *const vk::AllocationCallbacks<'_>) {
    guard((), || {
        if instance == vk::Instance::null() {
            return;
        }
        // SAFETY: a live instance per valid usage.
        let key = unsafe { dispatch_key(instance.as_raw()) };
        if let Some(data) = INSTANCES.remove(&key) {
            // SAFETY: the application's arguments, passed on.
            unsafe { (data.fns.destroy_instance)(instance, allocator) };
        }
    })
}

/// `vkEnumerateDeviceExtensionProperties`: for this layer's name, the Win32 extensions the driver
/// can back; for NULL, the driver's list with those added (and any the loader added from the
/// manifest but the driver cannot back removed).
///
/// # Safety
/// Per `vkEnumerateDeviceExtensionProperties`.
pub unsafe extern "system" fn enumerate_device_extension_properties(
    physical_device: vk::PhysicalDevice,
    layer_name: *const c_char,
    count: *mut u32,
    properties: *mut vk::ExtensionProperties,
) -> vk::Result {
    guard(vk::Result::ERROR_INITIALIZATION_FAILED, || {
        // SAFETY: a live physical device per valid usage.
        let Some(inst) = (unsafe { instance_of(physical_device.as_raw()) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: NULL or a NUL-terminated string per valid usage.
        let layer = unsafe { name_of(layer_name) };
        if let Some(layer) = layer {
            if layer != LAYER_NAME {
                // SAFETY: the application's arguments, passed on.
                return unsafe {
                    (inst.fns.enumerate_device_extension_properties)(physical_device, layer_name, count, properties)
                };
            }
            let caps = crate::caps::physical_caps(&inst, physical_device);
            let ours: Vec<vk::ExtensionProperties> = caps.offered_extensions().collect();
            // SAFETY: per valid usage.
            return unsafe { write_array(&ours, count, properties) };
        }
        let mut list = match driver_extensions(&inst, physical_device) {
            Ok(list) => list,
            Err(e) => return e,
        };
        let caps = crate::caps::physical_caps(&inst, physical_device);
        // The loader appends an implicit layer's manifest extensions itself: keep only those the
        // driver (natively or through the layer) can back, then add what is missing.
        list.retain(|e| {
            let name = e.extension_name_as_c_str().unwrap_or_default();
            !crate::caps::is_win32_extension(name) || caps.can_offer(name)
        });
        for ext in caps.offered_extensions() {
            let name = ext.extension_name_as_c_str().unwrap_or_default();
            if !list.iter().any(|e| e.extension_name_as_c_str() == Ok(name)) {
                list.push(ext);
            }
        }
        // SAFETY: per valid usage.
        unsafe { write_array(&list, count, properties) }
    })
}

/// The full device-extension list below the layer (the loader's terminator included).
pub fn driver_extensions(
    inst: &InstanceData,
    physical_device: vk::PhysicalDevice,
) -> Result<Vec<vk::ExtensionProperties>, vk::Result> {
    let f = inst.fns.enumerate_device_extension_properties;
    loop {
        let mut n = 0u32;
        // SAFETY: a count query with a writable count.
        let r = unsafe { f(physical_device, std::ptr::null(), &mut n, std::ptr::null_mut()) };
        if r != vk::Result::SUCCESS {
            return Err(r);
        }
        let mut list = vec![vk::ExtensionProperties::default(); n as usize];
        // SAFETY: `list` has room for `n` elements.
        let r = unsafe { f(physical_device, std::ptr::null(), &mut n, list.as_mut_ptr()) };
        match r {
            vk::Result::SUCCESS => {
                list.truncate(n as usize);
                return Ok(list);
            }
            vk::Result::INCOMPLETE => continue,
            e => return Err(e),
        }
    }
}

/// `vkCreateDebugUtilsMessengerEXT`: passed on, and recorded for the layer's own messages.
///
/// # Safety
/// Per `vkCreateDebugUtilsMessengerEXT`.
pub unsafe extern "system" fn create_debug_utils_messenger(
    instance: vk::Instance,
    create_info: *const vk::DebugUtilsMessengerCreateInfoEXT<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    messenger: *mut vk::DebugUtilsMessengerEXT,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        // SAFETY: a live instance per valid usage.
        let Some(inst) = (unsafe { instance_of(instance.as_raw()) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        let Some(next) = inst.fns.create_debug_utils_messenger else {
            return vk::Result::ERROR_EXTENSION_NOT_PRESENT;
        };
        // SAFETY: the application's arguments, passed on.
        let r = unsafe { next(instance, create_info, allocator, messenger) };
        if r == vk::Result::SUCCESS {
            // SAFETY: valid pointers per valid usage; the messenger was just created.
            unsafe { inst.reporter.add(*messenger, &*create_info) };
        }
        r
    })
}

/// # Safety
/// Per `vkDestroyDebugUtilsMessengerEXT`.
pub unsafe extern "system" fn destroy_debug_utils_messenger(
    instance: vk::Instance,
    messenger: vk::DebugUtilsMessengerEXT,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard((), || {
        // SAFETY: a live instance per valid usage.
        let Some(inst) = (unsafe { instance_of(instance.as_raw()) }) else {
            return;
        };
        inst.reporter.remove(messenger);
        if let Some(next) = inst.fns.destroy_debug_utils_messenger {
            // SAFETY: the application's arguments, passed on.
            unsafe { next(instance, messenger, allocator) };
        }
    })
}

//! Device-level state: `vkCreateDevice` (chain setup and the extension swap),
//! `vkDestroyDevice`, and what the layer remembers per device.

use std::ffi::{CStr, c_char};
use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;

use crate::caps::physical_caps;
use crate::dispatch::{LayerDeviceCreateInfo, ShardedMap, dispatch_key, find_link, guard, slice, typed};
use crate::fd_kind::DriverFdKinds;
use crate::instance::{InstanceData, instance_of};

/// How the layer treats one of the two Win32 extensions on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The driver has the extension: everything passes through untouched.
    Native,
    /// The application enabled it and the layer provides it over OPAQUE_FD.
    Emulated,
    /// Not enabled (and not native): the layer intercepts nothing for it.
    Off,
}

/// The next layer's (or the driver's) device commands the layer calls.
pub struct DeviceFns {
    pub destroy_device: vk::PFN_vkDestroyDevice,
    pub create_fence: vk::PFN_vkCreateFence,
    pub destroy_fence: vk::PFN_vkDestroyFence,
    pub create_semaphore: vk::PFN_vkCreateSemaphore,
    pub destroy_semaphore: vk::PFN_vkDestroySemaphore,
    pub queue_submit: vk::PFN_vkQueueSubmit,
    pub get_fence_fd: Option<vk::PFN_vkGetFenceFdKHR>,
    pub import_fence_fd: Option<vk::PFN_vkImportFenceFdKHR>,
    pub get_semaphore_fd: Option<vk::PFN_vkGetSemaphoreFdKHR>,
    pub import_semaphore_fd: Option<vk::PFN_vkImportSemaphoreFdKHR>,
    pub get_semaphore_counter_value: Option<vk::PFN_vkGetSemaphoreCounterValue>,
}

/// What the layer keeps per device (keyed by dispatch key, shared with its queues).
pub struct DeviceData {
    pub handle: vk::Device,
    pub key: usize,
    pub instance: Arc<InstanceData>,
    pub next_gdpa: vk::PFN_vkGetDeviceProcAddr,
    pub fns: DeviceFns,
    pub fence: Mode,
    pub semaphore: Mode,
    /// D3D12_FENCE semaphores (timeline OPAQUE_FD underneath) are available.
    pub d3d12: bool,
    /// What the driver's OPAQUE_FD files look like.
    pub fd_kinds: DriverFdKinds,
}

impl DeviceData {
    pub fn reporter(&self) -> &crate::debug::Reporter {
        &self.instance.reporter
    }

    /// The next layer's answer to `vkGetDeviceProcAddr(device, name)`.
    pub fn next_proc(&self, name: &CStr) -> vk::PFN_vkVoidFunction {
        // SAFETY: the next GDPA with this device and a NUL-terminated name.
        unsafe { (self.next_gdpa)(self.handle, name.as_ptr()) }
    }
}

pub static DEVICES: ShardedMap<usize, Arc<DeviceData>> = ShardedMap::new();

/// The device data of a device or queue.
///
/// # Safety
/// `handle` is NULL or a live `VkDevice` / `VkQueue` of the loader.
pub unsafe fn device_of(handle: u64) -> Option<Arc<DeviceData>> {
    if handle == 0 {
        return None;
    }
    // SAFETY: per the caller's contract.
    DEVICES.get(&unsafe { dispatch_key(handle) })
}

/// The extension list the driver gets, and which Win32 extensions the layer provides.
struct ExtensionSwap {
    names: Vec<*const c_char>,
    fence: Mode,
    semaphore: Mode,
}

fn swap_extensions(
    requested: &[*const c_char],
    caps: &crate::caps::PhysicalCaps,
) -> Result<ExtensionSwap, (&'static CStr, &'static str)> {
    let fence_win32 = ash::khr::external_fence_win32::NAME;
    let semaphore_win32 = ash::khr::external_semaphore_win32::NAME;
    let mut names = Vec::with_capacity(requested.len() + 4);
    let mut fence = if caps.native_fence { Mode::Native } else { Mode::Off };
    let mut semaphore = if caps.native_semaphore { Mode::Native } else { Mode::Off };
    for &p in requested {
        // SAFETY: each enabled name is a NUL-terminated string per valid usage.
        let name = unsafe { CStr::from_ptr(p) };
        if name == fence_win32 && !caps.native_fence {
            if !caps.fence {
                return Err((fence_win32, "the driver cannot export and import OPAQUE_FD fences"));
            }
            fence = Mode::Emulated;
        } else if name == semaphore_win32 && !caps.native_semaphore {
            if !caps.semaphore {
                return Err((
                    semaphore_win32,
                    "the driver cannot export and import OPAQUE_FD semaphores",
                ));
            }
            semaphore = Mode::Emulated;
        } else {
            names.push(p);
        }
    }
    let mut add = |name: &'static CStr, available: bool| {
        // SAFETY: each enabled name is a NUL-terminated string per valid usage.
        if available && !names.iter().any(|&p| unsafe { CStr::from_ptr(p) } == name) {
            names.push(name.as_ptr());
        }
    };
    if fence == Mode::Emulated {
        add(ash::khr::external_fence::NAME, caps.has_external_fence);
        add(ash::khr::external_fence_fd::NAME, true);
    }
    if semaphore == Mode::Emulated {
        add(ash::khr::external_semaphore::NAME, caps.has_external_semaphore);
        add(ash::khr::external_semaphore_fd::NAME, true);
        add(ash::khr::timeline_semaphore::NAME, caps.has_timeline && caps.d3d12);
    }
    Ok(ExtensionSwap {
        names,
        fence,
        semaphore,
    })
}

/// `vkCreateDevice`: take the next link, swap emulated Win32 extensions for the fd ones, call
/// down, record the device.
///
/// # Safety
/// Per `vkCreateDevice`, called by the loader with its link info in the chain.
pub unsafe extern "system" fn create_device(
    physical_device: vk::PhysicalDevice,
    create_info: *const vk::DeviceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    device: *mut vk::Device,
) -> vk::Result {
    guard(vk::Result::ERROR_INITIALIZATION_FAILED, || {
        // SAFETY: a live physical device per valid usage.
        let Some(inst) = (unsafe { instance_of(physical_device.as_raw()) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        if create_info.is_null() || device.is_null() {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        // SAFETY: a valid create info per valid usage.
        let ci = unsafe { &*create_info };
        // SAFETY: the chain is valid; the loader put its link info in it for us to advance.
        let Some(link) =
            (unsafe { find_link::<LayerDeviceCreateInfo>(ci.p_next, vk::StructureType::LOADER_DEVICE_CREATE_INFO) })
        else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: the loader's link structure and its current element are valid.
        let (next_gipa, next_gdpa) = unsafe {
            let info = (*link).layer_info;
            if info.is_null() {
                return vk::Result::ERROR_INITIALIZATION_FAILED;
            }
            ((*info).next_get_instance_proc_addr, (*info).next_get_device_proc_addr)
        };
        let (Some(next_gipa), Some(next_gdpa)) = (next_gipa, next_gdpa) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: the next GIPA with the instance (not NULL), as the loader documents.
        let next_create =
            unsafe { typed::<vk::PFN_vkCreateDevice>(next_gipa(inst.handle, c"vkCreateDevice".as_ptr())) };
        let Some(next_create) = next_create else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };

        let caps = physical_caps(&inst, physical_device);
        // SAFETY: the enabled-extension array holds the count given.
        let requested = unsafe { slice(ci.pp_enabled_extension_names, ci.enabled_extension_count) };
        let swap = match swap_extensions(requested, &caps) {
            Ok(s) => s,
            Err((name, why)) => {
                crate::debug::log(&format!(
                    "vkCreateDevice: {} requested, but {why}",
                    name.to_string_lossy()
                ));
                return vk::Result::ERROR_EXTENSION_NOT_PRESENT;
            }
        };
        let mut modified = *ci;
        modified.enabled_extension_count = swap.names.len() as u32;
        modified.pp_enabled_extension_names = swap.names.as_ptr();

        // Advance the link for the next layer, as the loader requires.
        // SAFETY: the loader owns the link list and expects it advanced in place.
        unsafe { (*link).layer_info = (*(*link).layer_info).next };
        // SAFETY: the application's create info with only the extension list replaced.
        let r = unsafe { next_create(physical_device, &modified, allocator, device) };
        if r != vk::Result::SUCCESS {
            return r;
        }
        // SAFETY: the device was just created.
        let handle = unsafe { *device };
        let load = |name: &CStr| {
            // SAFETY: the next GDPA with the new device and a NUL-terminated name.
            unsafe { next_gdpa(handle, name.as_ptr()) }
        };
        // SAFETY: each name is looked up with its own function-pointer type.
        let fns = unsafe {
            (|| {
                Some(DeviceFns {
                    destroy_device: typed(load(c"vkDestroyDevice"))?,
                    create_fence: typed(load(c"vkCreateFence"))?,
                    destroy_fence: typed(load(c"vkDestroyFence"))?,
                    create_semaphore: typed(load(c"vkCreateSemaphore"))?,
                    destroy_semaphore: typed(load(c"vkDestroySemaphore"))?,
                    queue_submit: typed(load(c"vkQueueSubmit"))?,
                    get_fence_fd: typed(load(c"vkGetFenceFdKHR")),
                    import_fence_fd: typed(load(c"vkImportFenceFdKHR")),
                    get_semaphore_fd: typed(load(c"vkGetSemaphoreFdKHR")),
                    import_semaphore_fd: typed(load(c"vkImportSemaphoreFdKHR")),
                    get_semaphore_counter_value: typed(load(c"vkGetSemaphoreCounterValue"))
                        .or_else(|| typed(load(c"vkGetSemaphoreCounterValueKHR"))),
                })
            })()
        };
        let Some(fns) = fns else {
            crate::debug::log("the next layer returned no core device commands");
            // SAFETY: the next GDPA's own vkDestroyDevice, if it has one, for the device it made.
            if let Some(destroy) = unsafe { typed::<vk::PFN_vkDestroyDevice>(load(c"vkDestroyDevice")) } {
                // SAFETY: the device was just created and nothing else has seen it.
                unsafe { destroy(handle, allocator) };
            }
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        let mut fence = swap.fence;
        let mut semaphore = swap.semaphore;
        if fence == Mode::Emulated && (fns.get_fence_fd.is_none() || fns.import_fence_fd.is_none()) {
            crate::debug::log(
                "the driver enabled VK_KHR_external_fence_fd but has no vkGetFenceFdKHR/vkImportFenceFdKHR",
            );
            fence = Mode::Off;
        }
        if semaphore == Mode::Emulated && (fns.get_semaphore_fd.is_none() || fns.import_semaphore_fd.is_none()) {
            crate::debug::log(
                "the driver enabled VK_KHR_external_semaphore_fd but has no vkGetSemaphoreFdKHR/vkImportSemaphoreFdKHR",
            );
            semaphore = Mode::Off;
        }
        let d3d12 = semaphore == Mode::Emulated && caps.d3d12 && fns.get_semaphore_counter_value.is_some();
        // SAFETY: the device was just created through the loader.
        let key = unsafe { dispatch_key(handle.as_raw()) };
        DEVICES.insert(
            key,
            Arc::new(DeviceData {
                handle,
                key,
                instance: inst,
                next_gdpa,
                fns,
                fence,
                semaphore,
                d3d12,
                fd_kinds: DriverFdKinds::default(),
            }),
        );
        vk::Result::SUCCESS
    })
}

/// # Safety
/// Per `vkDestroyDevice`.
pub unsafe extern "system" fn destroy_device(device: vk::Device, allocator: *const vk::AllocationCallbacks<'_>) {
    guard((), || {
        if device == vk::Device::null() {
            return;
        }
        // SAFETY: a live device per valid usage.
        let key = unsafe { dispatch_key(device.as_raw()) };
        let Some(dev) = DEVICES.remove(&key) else { return };
        // Objects the application did not destroy die with the device, and so do their names
        // and KMT values.
        crate::sync::forget_device(key);
        // SAFETY: the application's arguments, passed on.
        unsafe { (dev.fns.destroy_device)(device, allocator) };
    })
}

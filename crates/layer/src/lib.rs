//! `VK_LAYER_TETHER_win32_sync`: a Vulkan layer that gives any driver with
//! `VK_KHR_external_fence_fd` and `VK_KHR_external_semaphore_fd` the two extensions
//! `VK_KHR_external_fence_win32` and `VK_KHR_external_semaphore_win32`, over the driver's own
//! OPAQUE_FD payloads. The Win32 handle model is DESIGN.md's (contracts 2–5): an NT handle is an
//! fd the caller owns, a KMT handle a broker value, a name a broker registration.
//!
//! | module | what lives there |
//! |---|---|
//! | `lib` | `vkNegotiateLoaderLayerInterfaceVersion` (the only export) and the three proc-addr tables |
//! | [`dispatch`] | dispatch keys, sharded maps, the loader's link structures, pNext walking and copying |
//! | [`instance`] | `vkCreateInstance` / `vkDestroyInstance`, device-extension enumeration, messengers |
//! | [`caps`] | what a driver can back, and the external fence/semaphore capability queries |
//! | [`device`] | `vkCreateDevice` (the extension swap) / `vkDestroyDevice` |
//! | [`sync`] | fence and semaphore create/destroy, and the four Win32 commands |
//! | [`submit`] | `vkQueueSubmit` with `VkD3D12FenceSubmitInfoKHR` |
//! | [`fd_kind`] | what the driver's OPAQUE_FD files look like, to refuse foreign fds before the driver sees them |
//! | [`debug`] | messages to debug-utils messengers and (with `TETHER_LOG`) stderr |
//!
//! # How it works
//!
//! * **No wrapping.** The layer never replaces a handle. Instance and device state is keyed by
//!   the dispatch key (the loader's dispatch pointer in the first word of a dispatchable object,
//!   shared by an instance and its physical devices, and by a device and its queues); fence and
//!   semaphore state by (device key, handle). All in sharded read-write-locked maps.
//! * **Pass-through where possible.** When the driver has a Win32 extension itself, nothing of
//!   that extension is intercepted. When the application did not enable an emulated extension,
//!   `vkGetDeviceProcAddr` returns the driver's own commands (and NULL for the Win32 ones).
//!   `vkQueueSubmit` is intercepted only where D3D12_FENCE is offered, and a submit without
//!   `VkD3D12FenceSubmitInfoKHR` goes down untouched after one map lookup.
//! * **Creation.** `vkCreateDevice` replaces an emulated Win32 extension by its fd extension
//!   (plus `VK_KHR_external_fence`/`_semaphore` and `VK_KHR_timeline_semaphore` when the driver
//!   lists them). `vkCreateFence` / `vkCreateSemaphore` rewrite the Win32 bits of
//!   `VkExport*CreateInfo` to OPAQUE_FD on a copy of the chain, strip
//!   `VkExport*Win32HandleInfoKHR`, and remember the export attributes in a
//!   [`tether_handles::Win32Exports`] (the same bookkeeping the ICD uses).
//! * **Export.** An NT handle (OPAQUE_WIN32, D3D12_FENCE) is a new driver OPAQUE_FD from
//!   `vkGet*FdKHR`, moved to fd ≥ 3 and made inheritable as `SECURITY_ATTRIBUTES` asks; a second
//!   NT export of one type from one object is refused (VUID-...-01449/-01127). A KMT value is a
//!   driver fd registered with the broker (the broker keeps a duplicate; the layer closes its
//!   copy). A name is registered on the first NT export.
//! * **Import.** Handle, KMT value or name resolve to an fd of the layer's own (an NT handle is
//!   duplicated: a Win32 import never takes ownership); an fd that is not the kind of file the
//!   driver exports is refused before the driver sees it ([`fd_kind`]); then
//!   `vkImport*FdKHR(OPAQUE_FD)`, and the duplicate is closed if the driver refuses it. Every
//!   driver failure except `VK_ERROR_OUT_OF_HOST_MEMORY` is reported as
//!   `VK_ERROR_INVALID_EXTERNAL_HANDLE`, the spec's code (NVIDIA says
//!   `VK_ERROR_INITIALIZATION_FAILED` for a non-payload fd); `VK_ERROR_VALIDATION_FAILED_EXT` from
//!   a driver that checks valid usage is kept, under the Win32 command's VUID.
//! * **D3D12_FENCE** exists for timeline semaphores only, where the driver has timeline
//!   OPAQUE_FD. `VkD3D12FenceSubmitInfoKHR` values become timeline values; a non-increasing D3D12
//!   signal is dropped (with a warning for a rewind) instead of reaching the driver, see
//!   [`submit`].
//! * **`dwAccess`.** The ICD gives a read-only NT handle (one that can wait, not signal) when
//!   `dwAccess` has no signal right. A driver's OPAQUE_FD cannot be restricted that way, so the
//!   layer refuses such an NT export with `VK_ERROR_TOO_MANY_OBJECTS` (of the two codes the spec
//!   allows for `vkGet*Win32HandleKHR`, the closest) and a `tether-layer-read-only-access`
//!   message, rather than hand out a handle with more rights than asked for. KMT exports (which
//!   carry no access rights) still work.
//! * **Limits.** The layer cannot check the payload kind behind an NT handle (a fence's fd
//!   imported into a semaphore): the driver does what it does with such an fd, and its failure
//!   becomes `VK_ERROR_INVALID_EXTERNAL_HANDLE`. Names and KMT values carry a tag, so those
//!   mismatches are caught. Whether a semaphore is a D3D12 fence is known for objects created
//!   exportable as D3D12_FENCE, imported as D3D12_FENCE, or imported by a name or KMT value of
//!   one; an OPAQUE_WIN32 NT handle of a D3D12 fence imported as OPAQUE_WIN32 is a plain
//!   timeline.
//!
//! # Loader interface
//!
//! Interface version 2: only `vkNegotiateLoaderLayerInterfaceVersion` is exported; every Vulkan
//! command is reached through the negotiated `vkGetInstanceProcAddr`, `vkGetDeviceProcAddr` and
//! `vk_layerGetPhysicalDeviceProcAddr`. The Win32 commands are device commands: the layer's
//! `vkGetInstanceProcAddr` returns them too (the Linux loader does not know their names and
//! builds a trampoline only if a layer or driver answers), its physical-device lookup never.

use std::ffi::{CStr, c_char, c_void};

use ash::vk;
use ash::vk::Handle;

pub mod caps;
pub mod debug;
pub mod device;
pub mod dispatch;
pub mod fd_kind;
pub mod instance;
pub mod submit;
pub mod sync;

use device::{Mode, device_of};
use dispatch::{PfnGetPhysicalDeviceProcAddr, guard, name_of, pfn};
use instance::instance_of;

/// The layer's name.
pub const LAYER_NAME: &CStr = c"VK_LAYER_TETHER_win32_sync";

/// The layer interface version this layer implements.
pub const LAYER_INTERFACE_VERSION: u32 = 2;

/// `VkNegotiateLayerInterface` (`vk_layer.h`).
#[repr(C)]
pub struct NegotiateLayerInterface {
    /// `LAYER_NEGOTIATE_INTERFACE_STRUCT` (1).
    pub s_type: u32,
    pub p_next: *mut c_void,
    pub loader_layer_interface_version: u32,
    pub pfn_get_instance_proc_addr: Option<vk::PFN_vkGetInstanceProcAddr>,
    pub pfn_get_device_proc_addr: Option<vk::PFN_vkGetDeviceProcAddr>,
    pub pfn_get_physical_device_proc_addr: Option<PfnGetPhysicalDeviceProcAddr>,
}

const LAYER_NEGOTIATE_INTERFACE_STRUCT: u32 = 1;

/// The loader's first call: agree on interface version 2 and hand over the three lookups.
///
/// # Safety
/// `negotiate` is NULL or a valid `VkNegotiateLayerInterface`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn vkNegotiateLoaderLayerInterfaceVersion(
    negotiate: *mut NegotiateLayerInterface,
) -> vk::Result {
    guard(vk::Result::ERROR_INITIALIZATION_FAILED, || {
        // SAFETY: per the caller's contract.
        let Some(n) = (unsafe { negotiate.as_mut() }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        if n.s_type != LAYER_NEGOTIATE_INTERFACE_STRUCT || n.loader_layer_interface_version < LAYER_INTERFACE_VERSION {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        n.loader_layer_interface_version = LAYER_INTERFACE_VERSION;
        n.pfn_get_instance_proc_addr = Some(get_instance_proc_addr);
        n.pfn_get_device_proc_addr = Some(get_device_proc_addr);
        n.pfn_get_physical_device_proc_addr = Some(get_physical_device_proc_addr);
        vk::Result::SUCCESS
    })
}

/// The layer's `vkGetInstanceProcAddr`.
///
/// # Safety
/// Per `vkGetInstanceProcAddr`.
unsafe extern "system" fn get_instance_proc_addr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    guard(None, || {
        // SAFETY: NULL or a NUL-terminated string per valid usage.
        let name = unsafe { name_of(name) }?;
        match name.to_bytes() {
            b"vkGetInstanceProcAddr" => return pfn!(get_instance_proc_addr),
            b"vkCreateInstance" => return pfn!(instance::create_instance),
            _ => {}
        }
        // SAFETY: NULL or a live instance per valid usage.
        let inst = unsafe { instance_of(instance.as_raw()) }?;
        let has = |f: bool| f.then_some(());
        let ours: Option<vk::PFN_vkVoidFunction> = match name.to_bytes() {
            b"vkDestroyInstance" => Some(pfn!(instance::destroy_instance)),
            b"vkCreateDevice" => Some(pfn!(device::create_device)),
            b"vkGetDeviceProcAddr" => Some(pfn!(get_device_proc_addr)),
            b"vkEnumerateDeviceExtensionProperties" => Some(pfn!(instance::enumerate_device_extension_properties)),
            b"vkCreateDebugUtilsMessengerEXT" => has(inst.fns.create_debug_utils_messenger.is_some())
                .map(|()| pfn!(instance::create_debug_utils_messenger)),
            b"vkDestroyDebugUtilsMessengerEXT" => has(inst.fns.destroy_debug_utils_messenger.is_some())
                .map(|()| pfn!(instance::destroy_debug_utils_messenger)),
            // The Win32 commands, so the loader builds a trampoline for them (see the crate docs).
            b"vkGetFenceWin32HandleKHR" => Some(pfn!(sync::get_fence_win32_handle)),
            b"vkImportFenceWin32HandleKHR" => Some(pfn!(sync::import_fence_win32_handle)),
            b"vkGetSemaphoreWin32HandleKHR" => Some(pfn!(sync::get_semaphore_win32_handle)),
            b"vkImportSemaphoreWin32HandleKHR" => Some(pfn!(sync::import_semaphore_win32_handle)),
            _ => physical_device_command(&inst, name),
        };
        match ours {
            Some(f) => f,
            None => inst.next_proc(name),
        }
    })
}

/// The physical-device commands the layer intercepts (only those the next layer has).
fn physical_device_command(inst: &instance::InstanceData, name: &CStr) -> Option<vk::PFN_vkVoidFunction> {
    let f = &inst.fns;
    let (have, ours) = match name.to_bytes() {
        b"vkGetPhysicalDeviceExternalFenceProperties" => (
            f.external_fence_properties.is_some(),
            pfn!(caps::get_physical_device_external_fence_properties),
        ),
        b"vkGetPhysicalDeviceExternalFencePropertiesKHR" => (
            f.external_fence_properties_khr.is_some(),
            pfn!(caps::get_physical_device_external_fence_properties_khr),
        ),
        b"vkGetPhysicalDeviceExternalSemaphoreProperties" => (
            f.external_semaphore_properties.is_some(),
            pfn!(caps::get_physical_device_external_semaphore_properties),
        ),
        b"vkGetPhysicalDeviceExternalSemaphorePropertiesKHR" => (
            f.external_semaphore_properties_khr.is_some(),
            pfn!(caps::get_physical_device_external_semaphore_properties_khr),
        ),
        _ => return None,
    };
    Some(if have { ours } else { None })
}

/// The layer's `vk_layerGetPhysicalDeviceProcAddr`: the capability queries; NULL for anything
/// that is not a physical-device command (the Win32 commands included).
///
/// # Safety
/// Per `vk_layerGetPhysicalDeviceProcAddr`.
unsafe extern "system" fn get_physical_device_proc_addr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    guard(None, || {
        // SAFETY: NULL or a NUL-terminated string per valid usage.
        let name = unsafe { name_of(name) }?;
        // SAFETY: NULL or a live instance per valid usage.
        let inst = unsafe { instance_of(instance.as_raw()) }?;
        if let Some(f) = physical_device_command(&inst, name) {
            return f;
        }
        let next = inst.next_gpdpa?;
        // SAFETY: the next layer's lookup with the same arguments.
        unsafe { next(instance, name.as_ptr()) }
    })
}

/// The layer's `vkGetDeviceProcAddr`.
///
/// # Safety
/// Per `vkGetDeviceProcAddr`.
unsafe extern "system" fn get_device_proc_addr(device: vk::Device, name: *const c_char) -> vk::PFN_vkVoidFunction {
    guard(None, || {
        // SAFETY: NULL or a NUL-terminated string per valid usage.
        let name = unsafe { name_of(name) }?;
        if name == c"vkGetDeviceProcAddr" {
            return pfn!(get_device_proc_addr);
        }
        // SAFETY: NULL or a live device per valid usage.
        let dev = unsafe { device_of(device.as_raw()) }?;
        let next = || dev.next_proc(name);
        // A creation/destruction command: ours where the layer provides the extension.
        let create = |mode: Mode, ours: vk::PFN_vkVoidFunction| if mode == Mode::Emulated { ours } else { next() };
        // A Win32 command: ours, the driver's, or none.
        let win32 = |mode: Mode, ours: vk::PFN_vkVoidFunction| match mode {
            Mode::Emulated => ours,
            Mode::Native => next(),
            Mode::Off => None,
        };
        match name.to_bytes() {
            b"vkDestroyDevice" => pfn!(device::destroy_device),
            b"vkCreateFence" => create(dev.fence, pfn!(sync::create_fence)),
            b"vkDestroyFence" => create(dev.fence, pfn!(sync::destroy_fence)),
            b"vkGetFenceWin32HandleKHR" => win32(dev.fence, pfn!(sync::get_fence_win32_handle)),
            b"vkImportFenceWin32HandleKHR" => win32(dev.fence, pfn!(sync::import_fence_win32_handle)),
            b"vkCreateSemaphore" => create(dev.semaphore, pfn!(sync::create_semaphore)),
            b"vkDestroySemaphore" => create(dev.semaphore, pfn!(sync::destroy_semaphore)),
            b"vkGetSemaphoreWin32HandleKHR" => win32(dev.semaphore, pfn!(sync::get_semaphore_win32_handle)),
            b"vkImportSemaphoreWin32HandleKHR" => win32(dev.semaphore, pfn!(sync::import_semaphore_win32_handle)),
            b"vkQueueSubmit" if dev.d3d12 => pfn!(submit::queue_submit),
            _ => next(),
        }
    })
}

//! What a physical device's driver can back, and the capability queries
//! (`vkGetPhysicalDeviceExternal{Fence,Semaphore}Properties` and their KHR aliases).
//!
//! A Win32 handle type is answered by asking the driver about OPAQUE_FD (with the same
//! `VkSemaphoreTypeCreateInfo` chained): when the driver can export *and* import that, the
//! Win32 type gets the same features, and every `compatibleHandleTypes` /
//! `exportFromImportedHandleTypes` set that holds OPAQUE_FD also holds the Win32 types layered on
//! it. D3D12_FENCE is offered for timeline semaphores only, where the driver has timeline
//! OPAQUE_FD. Everything else is the driver's own answer, unchanged.

use std::ffi::CStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ash::vk;
use ash::vk::Handle;

use crate::dispatch::{find_in_chain, guard};
use crate::instance::{InstanceData, driver_extensions, instance_of};

const FENCE_WIN32: &CStr = ash::khr::external_fence_win32::NAME;
const SEMAPHORE_WIN32: &CStr = ash::khr::external_semaphore_win32::NAME;

/// The Win32 fence types the layer maps onto OPAQUE_FD.
pub const FENCE_WIN32_TYPES: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::from_raw(
    vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32.as_raw()
        | vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT.as_raw(),
);

/// The Win32 semaphore types the layer maps onto OPAQUE_FD (D3D12_FENCE: timelines only).
pub const SEMAPHORE_WIN32_TYPES: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::from_raw(
    vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32.as_raw()
        | vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT.as_raw()
        | vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE.as_raw(),
);

/// What one physical device's driver offers, as far as the layer is concerned.
#[derive(Debug, Default)]
pub struct PhysicalCaps {
    /// The driver has `VK_KHR_external_fence_win32` itself: the layer passes it through.
    pub native_fence: bool,
    /// The driver has `VK_KHR_external_semaphore_win32` itself.
    pub native_semaphore: bool,
    /// The layer can offer `VK_KHR_external_fence_win32` (fd extension, OPAQUE_FD export+import).
    pub fence: bool,
    /// The layer can offer `VK_KHR_external_semaphore_win32` (binary OPAQUE_FD export+import).
    pub semaphore: bool,
    /// ... with D3D12_FENCE on timeline semaphores (timeline OPAQUE_FD export+import).
    pub d3d12: bool,
    /// Extensions the driver lists that `vkCreateDevice` may have to enable for the layer.
    pub has_external_fence: bool,
    pub has_external_semaphore: bool,
    pub has_timeline: bool,
}

impl PhysicalCaps {
    /// The Win32 extensions available on this device (natively or through the layer).
    pub fn offered_extensions(&self) -> impl Iterator<Item = vk::ExtensionProperties> + use<> {
        let mut out = Vec::new();
        if self.native_fence || self.fence {
            out.push(extension(FENCE_WIN32, ash::khr::external_fence_win32::SPEC_VERSION));
        }
        if self.native_semaphore || self.semaphore {
            out.push(extension(
                SEMAPHORE_WIN32,
                ash::khr::external_semaphore_win32::SPEC_VERSION,
            ));
        }
        out.into_iter()
    }

    /// Whether a Win32 extension may be advertised.
    pub fn can_offer(&self, name: &CStr) -> bool {
        if name == FENCE_WIN32 {
            self.native_fence || self.fence
        } else if name == SEMAPHORE_WIN32 {
            self.native_semaphore || self.semaphore
        } else {
            false
        }
    }
}

pub fn is_win32_extension(name: &CStr) -> bool {
    name == FENCE_WIN32 || name == SEMAPHORE_WIN32
}

fn extension(name: &CStr, spec_version: u32) -> vk::ExtensionProperties {
    let mut e = vk::ExtensionProperties {
        spec_version,
        ..Default::default()
    };
    for (dst, src) in e.extension_name.iter_mut().zip(name.to_bytes()) {
        *dst = *src as std::ffi::c_char;
    }
    e
}

static SAID_NO_FENCE_FD: AtomicBool = AtomicBool::new(false);
static SAID_NO_SEMAPHORE_FD: AtomicBool = AtomicBool::new(false);

/// The capabilities of a physical device, computed once per instance.
pub fn physical_caps(inst: &InstanceData, pd: vk::PhysicalDevice) -> Arc<PhysicalCaps> {
    let cached = inst
        .physical
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&pd.as_raw())
        .cloned();
    if let Some(c) = cached {
        return c;
    }
    let caps = Arc::new(compute(inst, pd));
    inst.physical
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pd.as_raw(), caps.clone());
    caps
}

const EXPORT_IMPORT_FENCE: vk::ExternalFenceFeatureFlags = vk::ExternalFenceFeatureFlags::from_raw(
    vk::ExternalFenceFeatureFlags::EXPORTABLE.as_raw() | vk::ExternalFenceFeatureFlags::IMPORTABLE.as_raw(),
);
const EXPORT_IMPORT_SEMAPHORE: vk::ExternalSemaphoreFeatureFlags = vk::ExternalSemaphoreFeatureFlags::from_raw(
    vk::ExternalSemaphoreFeatureFlags::EXPORTABLE.as_raw() | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE.as_raw(),
);

fn driver_fence_features(
    inst: &InstanceData,
    pd: vk::PhysicalDevice,
    ty: vk::ExternalFenceHandleTypeFlags,
) -> Option<vk::ExternalFenceFeatureFlags> {
    let f = inst.fns.any_fence_properties()?;
    let info = vk::PhysicalDeviceExternalFenceInfo::default().handle_type(ty);
    let mut props = vk::ExternalFenceProperties::default();
    // SAFETY: valid input and output structures.
    unsafe { f(pd, &info, &mut props) };
    Some(props.external_fence_features)
}

fn driver_semaphore_features(
    inst: &InstanceData,
    pd: vk::PhysicalDevice,
    ty: vk::ExternalSemaphoreHandleTypeFlags,
    timeline: bool,
) -> Option<vk::ExternalSemaphoreFeatureFlags> {
    let f = inst.fns.any_semaphore_properties()?;
    let mut type_info = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
    let mut info = vk::PhysicalDeviceExternalSemaphoreInfo::default().handle_type(ty);
    if timeline {
        info = info.push_next(&mut type_info);
    }
    let mut props = vk::ExternalSemaphoreProperties::default();
    // SAFETY: valid input and output structures.
    unsafe { f(pd, &info, &mut props) };
    Some(props.external_semaphore_features)
}

fn compute(inst: &InstanceData, pd: vk::PhysicalDevice) -> PhysicalCaps {
    let Ok(list) = driver_extensions(inst, pd) else {
        return PhysicalCaps::default();
    };
    let has = |name: &CStr| list.iter().any(|e| e.extension_name_as_c_str() == Ok(name));
    let mut props = vk::PhysicalDeviceProperties::default();
    // SAFETY: a valid output structure.
    unsafe { (inst.fns.get_physical_device_properties)(pd, &mut props) };
    let api_1_2 = vk::api_version_major(props.api_version) > 1 || vk::api_version_minor(props.api_version) >= 2;

    // The list may hold the Win32 names because the loader appended this (implicit) layer's
    // manifest extensions; only a driver that also reports Win32 features has them itself.
    let native_fence = has(FENCE_WIN32)
        && driver_fence_features(inst, pd, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32)
            .is_none_or(|f| !f.is_empty());
    let native_semaphore = has(SEMAPHORE_WIN32)
        && driver_semaphore_features(inst, pd, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32, false)
            .is_none_or(|f| !f.is_empty());

    let fence_fd = has(ash::khr::external_fence_fd::NAME);
    let semaphore_fd = has(ash::khr::external_semaphore_fd::NAME);
    let has_timeline = has(ash::khr::timeline_semaphore::NAME);
    let opaque_fd_fence = driver_fence_features(inst, pd, vk::ExternalFenceHandleTypeFlags::OPAQUE_FD)
        .is_none_or(|f| f.contains(EXPORT_IMPORT_FENCE));
    let opaque_fd_binary = driver_semaphore_features(inst, pd, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD, false)
        .is_none_or(|f| f.contains(EXPORT_IMPORT_SEMAPHORE));
    let opaque_fd_timeline = (has_timeline || api_1_2)
        && driver_semaphore_features(inst, pd, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD, true)
            .is_some_and(|f| f.contains(EXPORT_IMPORT_SEMAPHORE));

    let fence = !native_fence && fence_fd && opaque_fd_fence;
    let semaphore = !native_semaphore && semaphore_fd && opaque_fd_binary;
    if !native_fence && !fence {
        crate::debug::once(
            &SAID_NO_FENCE_FD,
            &inst.reporter,
            "tether-layer-no-fence-fd",
            "the driver has neither VK_KHR_external_fence_win32 nor exportable and importable OPAQUE_FD fences \
             (VK_KHR_external_fence_fd): VK_KHR_external_fence_win32 is not offered",
        );
    }
    if !native_semaphore && !semaphore {
        crate::debug::once(
            &SAID_NO_SEMAPHORE_FD,
            &inst.reporter,
            "tether-layer-no-semaphore-fd",
            "the driver has neither VK_KHR_external_semaphore_win32 nor exportable and importable OPAQUE_FD \
             semaphores (VK_KHR_external_semaphore_fd): VK_KHR_external_semaphore_win32 is not offered",
        );
    }
    PhysicalCaps {
        native_fence,
        native_semaphore,
        fence,
        semaphore,
        d3d12: semaphore && opaque_fd_timeline,
        has_external_fence: has(ash::khr::external_fence::NAME),
        has_external_semaphore: has(ash::khr::external_semaphore::NAME),
        has_timeline,
    }
}

/// Adds the Win32 fence types to a set that holds OPAQUE_FD.
fn widen_fence(set: vk::ExternalFenceHandleTypeFlags) -> vk::ExternalFenceHandleTypeFlags {
    if set.contains(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD) {
        set | FENCE_WIN32_TYPES
    } else {
        set
    }
}

/// Adds the Win32 semaphore types to a set that holds OPAQUE_FD.
fn widen_semaphore(set: vk::ExternalSemaphoreHandleTypeFlags, d3d12: bool) -> vk::ExternalSemaphoreHandleTypeFlags {
    if !set.contains(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD) {
        return set;
    }
    let mut set = set
        | vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32
        | vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
    if d3d12 {
        set |= vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
    }
    set
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalFenceProperties`.
pub unsafe extern "system" fn get_physical_device_external_fence_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalFenceInfo<'_>,
    props: *mut vk::ExternalFenceProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { fence_properties(pd, info, props, false) }
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalFencePropertiesKHR`.
pub unsafe extern "system" fn get_physical_device_external_fence_properties_khr(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalFenceInfo<'_>,
    props: *mut vk::ExternalFenceProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { fence_properties(pd, info, props, true) }
}

unsafe fn fence_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalFenceInfo<'_>,
    props: *mut vk::ExternalFenceProperties<'_>,
    khr: bool,
) {
    guard((), || {
        // SAFETY: a live physical device per valid usage.
        let Some(inst) = (unsafe { instance_of(pd.as_raw()) }) else {
            return;
        };
        let next = if khr {
            inst.fns
                .external_fence_properties_khr
                .or(inst.fns.external_fence_properties)
        } else {
            inst.fns
                .external_fence_properties
                .or(inst.fns.external_fence_properties_khr)
        };
        let Some(next) = next else { return };
        if info.is_null() || props.is_null() {
            return;
        }
        let caps = physical_caps(&inst, pd);
        if !caps.fence {
            // SAFETY: the application's arguments, passed on.
            return unsafe { next(pd, info, props) };
        }
        // SAFETY: valid structures per valid usage.
        let (query, out) = unsafe { (*info, &mut *props) };
        if FENCE_WIN32_TYPES.contains(query.handle_type) && !query.handle_type.is_empty() {
            let fd_query = vk::PhysicalDeviceExternalFenceInfo {
                handle_type: vk::ExternalFenceHandleTypeFlags::OPAQUE_FD,
                ..query
            };
            // SAFETY: a valid query (the application's chain) and its output structure.
            unsafe { next(pd, &fd_query, out) };
            if !out.external_fence_features.contains(EXPORT_IMPORT_FENCE) {
                out.external_fence_features = vk::ExternalFenceFeatureFlags::empty();
                out.compatible_handle_types = vk::ExternalFenceHandleTypeFlags::empty();
                out.export_from_imported_handle_types = vk::ExternalFenceHandleTypeFlags::empty();
                return;
            }
        } else {
            // SAFETY: the application's arguments, passed on.
            unsafe { next(pd, info, props) };
        }
        out.compatible_handle_types = widen_fence(out.compatible_handle_types);
        out.export_from_imported_handle_types = widen_fence(out.export_from_imported_handle_types);
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalSemaphoreProperties`.
pub unsafe extern "system" fn get_physical_device_external_semaphore_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalSemaphoreInfo<'_>,
    props: *mut vk::ExternalSemaphoreProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { semaphore_properties(pd, info, props, false) }
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalSemaphorePropertiesKHR`.
pub unsafe extern "system" fn get_physical_device_external_semaphore_properties_khr(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalSemaphoreInfo<'_>,
    props: *mut vk::ExternalSemaphoreProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { semaphore_properties(pd, info, props, true) }
}

unsafe fn semaphore_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalSemaphoreInfo<'_>,
    props: *mut vk::ExternalSemaphoreProperties<'_>,
    khr: bool,
) {
    guard((), || {
        // SAFETY: a live physical device per valid usage.
        let Some(inst) = (unsafe { instance_of(pd.as_raw()) }) else {
            return;
        };
        let next = if khr {
            inst.fns
                .external_semaphore_properties_khr
                .or(inst.fns.external_semaphore_properties)
        } else {
            inst.fns
                .external_semaphore_properties
                .or(inst.fns.external_semaphore_properties_khr)
        };
        let Some(next) = next else { return };
        if info.is_null() || props.is_null() {
            return;
        }
        let caps = physical_caps(&inst, pd);
        if !caps.semaphore {
            // SAFETY: the application's arguments, passed on.
            return unsafe { next(pd, info, props) };
        }
        // SAFETY: valid structures per valid usage.
        let (query, out) = unsafe { (*info, &mut *props) };
        // SAFETY: the query's chain is valid.
        let timeline = unsafe { find_in_chain::<vk::SemaphoreTypeCreateInfo<'_>>(query.p_next) }
            .is_some_and(|t| t.semaphore_type == vk::SemaphoreType::TIMELINE);
        let d3d12 = timeline && caps.d3d12;
        let ty = query.handle_type;
        if SEMAPHORE_WIN32_TYPES.contains(ty) && !ty.is_empty() {
            if ty == vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE && !d3d12 {
                out.external_semaphore_features = vk::ExternalSemaphoreFeatureFlags::empty();
                out.compatible_handle_types = vk::ExternalSemaphoreHandleTypeFlags::empty();
                out.export_from_imported_handle_types = vk::ExternalSemaphoreHandleTypeFlags::empty();
                return;
            }
            let fd_query = vk::PhysicalDeviceExternalSemaphoreInfo {
                handle_type: vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD,
                ..query
            };
            // SAFETY: a valid query (the application's chain) and its output structure.
            unsafe { next(pd, &fd_query, out) };
            if !out.external_semaphore_features.contains(EXPORT_IMPORT_SEMAPHORE) {
                out.external_semaphore_features = vk::ExternalSemaphoreFeatureFlags::empty();
                out.compatible_handle_types = vk::ExternalSemaphoreHandleTypeFlags::empty();
                out.export_from_imported_handle_types = vk::ExternalSemaphoreHandleTypeFlags::empty();
                return;
            }
        } else {
            // SAFETY: the application's arguments, passed on.
            unsafe { next(pd, info, props) };
        }
        out.compatible_handle_types = widen_semaphore(out.compatible_handle_types, d3d12);
        out.export_from_imported_handle_types = widen_semaphore(out.export_from_imported_handle_types, d3d12);
    })
}

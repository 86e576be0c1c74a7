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

/// One of the two capability queries (`vkGetPhysicalDeviceExternal{Fence,Semaphore}Properties`):
/// its structures and fields. The answer is written once over it ([`properties`]).
trait Query {
    /// `VkPhysicalDeviceExternal*Info`.
    type Info: Copy;
    /// `VkExternal*Properties`.
    type Props;

    /// Raw handle-type bits: OPAQUE_FD, and every Win32 type the layer maps onto it.
    const OPAQUE_FD: u32;
    const WIN32_TYPES: u32;
    /// Raw feature bits: EXPORTABLE | IMPORTABLE.
    const EXPORT_IMPORT: u32;

    /// The next layer's (or the driver's) query: the KHR alias first when asked through it.
    fn next(inst: &InstanceData, khr: bool) -> Option<Next<Self>>;
    /// Whether the layer offers the kind's Win32 extension on the device.
    fn offered(caps: &PhysicalCaps) -> bool;
    /// The Win32 types the layer offers for the queried object (raw bits).
    ///
    /// # Safety
    /// `query`'s chain is valid.
    unsafe fn win32_types(caps: &PhysicalCaps, query: &Self::Info) -> u32;
    fn handle_type(query: &Self::Info) -> u32;
    fn with_handle_type(query: &Self::Info, handle_type: u32) -> Self::Info;
    fn features(props: &Self::Props) -> u32;
    /// No features, no compatible types.
    fn clear(props: &mut Self::Props);
    /// Applies `widen` to `compatibleHandleTypes` and `exportFromImportedHandleTypes`.
    fn widen(props: &mut Self::Props, widen: impl Fn(u32) -> u32);
}

/// The type of a query command.
type Next<Q> = unsafe extern "system" fn(vk::PhysicalDevice, *const <Q as Query>::Info, *mut <Q as Query>::Props);

/// Fence properties.
enum FenceQuery {}

/// Semaphore properties (binary, or timeline with `VkSemaphoreTypeCreateInfo` chained).
enum SemaphoreQuery {}

impl Query for FenceQuery {
    type Info = vk::PhysicalDeviceExternalFenceInfo<'static>;
    type Props = vk::ExternalFenceProperties<'static>;

    const OPAQUE_FD: u32 = vk::ExternalFenceHandleTypeFlags::OPAQUE_FD.as_raw();
    const WIN32_TYPES: u32 = FENCE_WIN32_TYPES.as_raw();
    const EXPORT_IMPORT: u32 = EXPORT_IMPORT_FENCE.as_raw();

    fn next(inst: &InstanceData, khr: bool) -> Option<Next<Self>> {
        let (core, alias) = (
            inst.fns.external_fence_properties,
            inst.fns.external_fence_properties_khr,
        );
        let next = if khr { alias.or(core) } else { core.or(alias) };
        next.map(|f| f as Next<Self>)
    }

    fn offered(caps: &PhysicalCaps) -> bool {
        caps.fence
    }

    unsafe fn win32_types(_: &PhysicalCaps, _: &Self::Info) -> u32 {
        FENCE_WIN32_TYPES.as_raw()
    }

    fn handle_type(query: &Self::Info) -> u32 {
        query.handle_type.as_raw()
    }

    fn with_handle_type(query: &Self::Info, handle_type: u32) -> Self::Info {
        vk::PhysicalDeviceExternalFenceInfo {
            handle_type: vk::ExternalFenceHandleTypeFlags::from_raw(handle_type),
            ..*query
        }
    }

    fn features(props: &Self::Props) -> u32 {
        props.external_fence_features.as_raw()
    }

    fn clear(props: &mut Self::Props) {
        props.external_fence_features = vk::ExternalFenceFeatureFlags::empty();
        props.compatible_handle_types = vk::ExternalFenceHandleTypeFlags::empty();
        props.export_from_imported_handle_types = vk::ExternalFenceHandleTypeFlags::empty();
    }

    fn widen(props: &mut Self::Props, widen: impl Fn(u32) -> u32) {
        let widen =
            |set: vk::ExternalFenceHandleTypeFlags| vk::ExternalFenceHandleTypeFlags::from_raw(widen(set.as_raw()));
        props.compatible_handle_types = widen(props.compatible_handle_types);
        props.export_from_imported_handle_types = widen(props.export_from_imported_handle_types);
    }
}

impl Query for SemaphoreQuery {
    type Info = vk::PhysicalDeviceExternalSemaphoreInfo<'static>;
    type Props = vk::ExternalSemaphoreProperties<'static>;

    const OPAQUE_FD: u32 = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD.as_raw();
    const WIN32_TYPES: u32 = SEMAPHORE_WIN32_TYPES.as_raw();
    const EXPORT_IMPORT: u32 = EXPORT_IMPORT_SEMAPHORE.as_raw();

    fn next(inst: &InstanceData, khr: bool) -> Option<Next<Self>> {
        let (core, alias) = (
            inst.fns.external_semaphore_properties,
            inst.fns.external_semaphore_properties_khr,
        );
        let next = if khr { alias.or(core) } else { core.or(alias) };
        next.map(|f| f as Next<Self>)
    }

    fn offered(caps: &PhysicalCaps) -> bool {
        caps.semaphore
    }

    /// OPAQUE_WIN32 and its KMT, and D3D12_FENCE for a timeline where the driver has timeline
    /// OPAQUE_FD.
    unsafe fn win32_types(caps: &PhysicalCaps, query: &Self::Info) -> u32 {
        // SAFETY: per the caller's contract.
        let timeline = unsafe { find_in_chain::<vk::SemaphoreTypeCreateInfo<'_>>(query.p_next) }
            .is_some_and(|t| t.semaphore_type == vk::SemaphoreType::TIMELINE);
        let mut types =
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32 | vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
        if timeline && caps.d3d12 {
            types |= vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
        }
        types.as_raw()
    }

    fn handle_type(query: &Self::Info) -> u32 {
        query.handle_type.as_raw()
    }

    fn with_handle_type(query: &Self::Info, handle_type: u32) -> Self::Info {
        vk::PhysicalDeviceExternalSemaphoreInfo {
            handle_type: vk::ExternalSemaphoreHandleTypeFlags::from_raw(handle_type),
            ..*query
        }
    }

    fn features(props: &Self::Props) -> u32 {
        props.external_semaphore_features.as_raw()
    }

    fn clear(props: &mut Self::Props) {
        props.external_semaphore_features = vk::ExternalSemaphoreFeatureFlags::empty();
        props.compatible_handle_types = vk::ExternalSemaphoreHandleTypeFlags::empty();
        props.export_from_imported_handle_types = vk::ExternalSemaphoreHandleTypeFlags::empty();
    }

    fn widen(props: &mut Self::Props, widen: impl Fn(u32) -> u32) {
        let widen = |set: vk::ExternalSemaphoreHandleTypeFlags| {
            vk::ExternalSemaphoreHandleTypeFlags::from_raw(widen(set.as_raw()))
        };
        props.compatible_handle_types = widen(props.compatible_handle_types);
        props.export_from_imported_handle_types = widen(props.export_from_imported_handle_types);
    }
}

/// The answer to a capability query where the layer offers the kind's Win32 extension: a Win32
/// type the layer offers for the queried object gets the driver's OPAQUE_FD answer when the
/// driver can export and import that, nothing otherwise (nothing either for a Win32 type not
/// offered, D3D12_FENCE for a binary semaphore); any other type gets the driver's own answer.
/// Either way a set that holds OPAQUE_FD also holds the offered Win32 types.
///
/// # Safety
/// Per the query command.
unsafe fn properties<Q: Query>(pd: vk::PhysicalDevice, info: *const Q::Info, props: *mut Q::Props, khr: bool) {
    guard((), || {
        // SAFETY: a live physical device per valid usage.
        let Some(inst) = (unsafe { instance_of(pd.as_raw()) }) else {
            return;
        };
        let Some(next) = Q::next(&inst, khr) else { return };
        if info.is_null() || props.is_null() {
            return;
        }
        let caps = physical_caps(&inst, pd);
        if !Q::offered(&caps) {
            // SAFETY: the application's arguments, passed on.
            return unsafe { next(pd, info, props) };
        }
        // SAFETY: valid structures per valid usage.
        let (query, out) = unsafe { (&*info, &mut *props) };
        // SAFETY: the query's chain is valid.
        let win32 = unsafe { Q::win32_types(&caps, query) };
        let ty = Q::handle_type(query);
        if Q::WIN32_TYPES & ty == ty && ty != 0 {
            if win32 & ty == 0 {
                return Q::clear(out);
            }
            let fd_query = Q::with_handle_type(query, Q::OPAQUE_FD);
            // SAFETY: a valid query (the application's chain) and its output structure.
            unsafe { next(pd, &fd_query, out) };
            if Q::features(out) & Q::EXPORT_IMPORT != Q::EXPORT_IMPORT {
                return Q::clear(out);
            }
        } else {
            // SAFETY: the application's arguments, passed on.
            unsafe { next(pd, info, props) };
        }
        Q::widen(out, |set| if set & Q::OPAQUE_FD != 0 { set | win32 } else { set });
    })
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalFenceProperties`.
pub unsafe extern "system" fn get_physical_device_external_fence_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalFenceInfo<'_>,
    props: *mut vk::ExternalFenceProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { properties::<FenceQuery>(pd, info.cast(), props.cast(), false) }
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalFencePropertiesKHR`.
pub unsafe extern "system" fn get_physical_device_external_fence_properties_khr(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalFenceInfo<'_>,
    props: *mut vk::ExternalFenceProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { properties::<FenceQuery>(pd, info.cast(), props.cast(), true) }
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalSemaphoreProperties`.
pub unsafe extern "system" fn get_physical_device_external_semaphore_properties(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalSemaphoreInfo<'_>,
    props: *mut vk::ExternalSemaphoreProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { properties::<SemaphoreQuery>(pd, info.cast(), props.cast(), false) }
}

/// # Safety
/// Per `vkGetPhysicalDeviceExternalSemaphorePropertiesKHR`.
pub unsafe extern "system" fn get_physical_device_external_semaphore_properties_khr(
    pd: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalSemaphoreInfo<'_>,
    props: *mut vk::ExternalSemaphoreProperties<'_>,
) {
    // SAFETY: forwarded.
    unsafe { properties::<SemaphoreQuery>(pd, info.cast(), props.cast(), true) }
}

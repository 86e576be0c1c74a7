//! What a device can share: handle types, object kinds, and the typed answer to the external
//! fence and semaphore capability queries.
//!
//! [`DeviceCaps::query`] asks `vkGetPhysicalDeviceExternalFenceProperties` and
//! `vkGetPhysicalDeviceExternalSemaphoreProperties` (binary and timeline) for every handle type,
//! and prints as a table (`Display`), which is what `tether caps` shows.

use std::ffi::CStr;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use ash::vk;

/// The external handle types of fences and semaphores that this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandleType {
    /// `OPAQUE_FD`: an fd naming the payload (by reference).
    OpaqueFd,
    /// `OPAQUE_WIN32`: an NT handle (on Unix, an fd its holder owns) naming the payload.
    OpaqueWin32,
    /// `OPAQUE_WIN32_KMT`: a global value naming the payload, never closed.
    OpaqueWin32Kmt,
    /// `D3D12_FENCE`: an NT handle to a D3D12 fence (semaphores only).
    D3d12Fence,
    /// `SYNC_FD`: a sync file, a copy of the payload's state (temporary imports only).
    SyncFd,
}

impl HandleType {
    /// Every handle type, in table order.
    pub const ALL: [HandleType; 5] = [
        HandleType::OpaqueFd,
        HandleType::OpaqueWin32,
        HandleType::OpaqueWin32Kmt,
        HandleType::D3d12Fence,
        HandleType::SyncFd,
    ];

    /// The Vulkan name without its prefix: `OPAQUE_FD`, `OPAQUE_WIN32`, ...
    pub fn name(self) -> &'static str {
        match self {
            HandleType::OpaqueFd => "OPAQUE_FD",
            HandleType::OpaqueWin32 => "OPAQUE_WIN32",
            HandleType::OpaqueWin32Kmt => "OPAQUE_WIN32_KMT",
            HandleType::D3d12Fence => "D3D12_FENCE",
            HandleType::SyncFd => "SYNC_FD",
        }
    }

    /// A short name for lists: FD, WIN32, KMT, D3D12, SYNC.
    pub fn short_name(self) -> &'static str {
        match self {
            HandleType::OpaqueFd => "FD",
            HandleType::OpaqueWin32 => "WIN32",
            HandleType::OpaqueWin32Kmt => "KMT",
            HandleType::D3d12Fence => "D3D12",
            HandleType::SyncFd => "SYNC",
        }
    }

    /// The fence flag, if fences have this handle type (D3D12_FENCE is semaphores only).
    pub fn fence_flag(self) -> Option<vk::ExternalFenceHandleTypeFlags> {
        use vk::ExternalFenceHandleTypeFlags as F;
        match self {
            HandleType::OpaqueFd => Some(F::OPAQUE_FD),
            HandleType::OpaqueWin32 => Some(F::OPAQUE_WIN32),
            HandleType::OpaqueWin32Kmt => Some(F::OPAQUE_WIN32_KMT),
            HandleType::D3d12Fence => None,
            HandleType::SyncFd => Some(F::SYNC_FD),
        }
    }

    /// The semaphore flag.
    pub fn semaphore_flag(self) -> vk::ExternalSemaphoreHandleTypeFlags {
        use vk::ExternalSemaphoreHandleTypeFlags as S;
        match self {
            HandleType::OpaqueFd => S::OPAQUE_FD,
            HandleType::OpaqueWin32 => S::OPAQUE_WIN32,
            HandleType::OpaqueWin32Kmt => S::OPAQUE_WIN32_KMT,
            HandleType::D3d12Fence => S::D3D12_FENCE,
            HandleType::SyncFd => S::SYNC_FD,
        }
    }

    /// Whether the handle is an fd passed by `VK_KHR_external_*_fd` (OPAQUE_FD, SYNC_FD), as
    /// opposed to a Win32 handle of `VK_KHR_external_*_win32`.
    pub fn is_fd(self) -> bool {
        matches!(self, HandleType::OpaqueFd | HandleType::SyncFd)
    }

    /// Whether the handle is an NT handle (OPAQUE_WIN32, D3D12_FENCE): owned, closed by its
    /// holder, exported at most once per object, and the only kind that can have a name.
    pub fn is_nt(self) -> bool {
        matches!(self, HandleType::OpaqueWin32 | HandleType::D3d12Fence)
    }

    /// Whether imports of this type copy the payload's state (SYNC_FD) instead of referring to
    /// the payload: such imports can only be temporary.
    pub fn is_copy(self) -> bool {
        self == HandleType::SyncFd
    }

    fn bit(self) -> u8 {
        1 << HandleType::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

impl fmt::Display for HandleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of handle types. Built from fence or semaphore flags (whose bit values differ), it keeps
/// the flag bits of no [`HandleType`] aside ([`HandleTypes::unknown_bits`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HandleTypes {
    known: u8,
    unknown: u32,
}

impl HandleTypes {
    /// No handle type.
    pub const fn empty() -> HandleTypes {
        HandleTypes { known: 0, unknown: 0 }
    }

    /// The types in fence flags.
    pub fn from_fence_flags(flags: vk::ExternalFenceHandleTypeFlags) -> HandleTypes {
        let mut set = HandleTypes::empty();
        let mut rest = flags;
        for t in HandleType::ALL {
            if let Some(flag) = t.fence_flag().filter(|f| flags.contains(*f)) {
                set.insert(t);
                rest &= !flag;
            }
        }
        set.unknown = rest.as_raw();
        set
    }

    /// The types in semaphore flags.
    pub fn from_semaphore_flags(flags: vk::ExternalSemaphoreHandleTypeFlags) -> HandleTypes {
        let mut set = HandleTypes::empty();
        let mut rest = flags;
        for t in HandleType::ALL {
            if flags.contains(t.semaphore_flag()) {
                set.insert(t);
                rest &= !t.semaphore_flag();
            }
        }
        set.unknown = rest.as_raw();
        set
    }

    /// As fence flags (D3D12_FENCE has none; unknown bits are left out).
    pub fn fence_flags(self) -> vk::ExternalFenceHandleTypeFlags {
        self.iter()
            .filter_map(HandleType::fence_flag)
            .fold(vk::ExternalFenceHandleTypeFlags::empty(), |a, f| a | f)
    }

    /// As semaphore flags (unknown bits are left out).
    pub fn semaphore_flags(self) -> vk::ExternalSemaphoreHandleTypeFlags {
        self.iter()
            .map(HandleType::semaphore_flag)
            .fold(vk::ExternalSemaphoreHandleTypeFlags::empty(), |a, f| a | f)
    }

    pub fn contains(self, t: HandleType) -> bool {
        self.known & t.bit() != 0
    }

    /// Whether every type of `other` is in `self`.
    pub fn contains_all(self, other: HandleTypes) -> bool {
        other.known & !self.known == 0 && other.unknown & !self.unknown == 0
    }

    pub fn insert(&mut self, t: HandleType) {
        self.known |= t.bit();
    }

    pub fn is_empty(self) -> bool {
        self.known == 0 && self.unknown == 0
    }

    /// The known types, in table order.
    pub fn iter(self) -> impl Iterator<Item = HandleType> {
        HandleType::ALL.into_iter().filter(move |t| self.contains(*t))
    }

    /// Flag bits of no [`HandleType`], in the encoding of the flags they came from.
    pub fn unknown_bits(self) -> u32 {
        self.unknown
    }

    /// Short names ([`HandleType::short_name`]) separated by spaces; unknown bits in hex; `-` for
    /// none.
    pub fn short_names(self) -> String {
        let mut names: Vec<String> = self.iter().map(|t| t.short_name().to_string()).collect();
        if self.unknown != 0 {
            names.push(format!("0x{:x}", self.unknown));
        }
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(" ")
        }
    }
}

impl From<HandleType> for HandleTypes {
    fn from(t: HandleType) -> HandleTypes {
        let mut set = HandleTypes::empty();
        set.insert(t);
        set
    }
}

impl<const N: usize> From<[HandleType; N]> for HandleTypes {
    fn from(types: [HandleType; N]) -> HandleTypes {
        types.into_iter().collect()
    }
}

impl FromIterator<HandleType> for HandleTypes {
    fn from_iter<I: IntoIterator<Item = HandleType>>(iter: I) -> HandleTypes {
        let mut set = HandleTypes::empty();
        for t in iter {
            set.insert(t);
        }
        set
    }
}

impl BitOr for HandleTypes {
    type Output = HandleTypes;
    fn bitor(self, rhs: HandleTypes) -> HandleTypes {
        HandleTypes {
            known: self.known | rhs.known,
            unknown: self.unknown | rhs.unknown,
        }
    }
}

impl BitOr<HandleType> for HandleTypes {
    type Output = HandleTypes;
    fn bitor(self, rhs: HandleType) -> HandleTypes {
        self | HandleTypes::from(rhs)
    }
}

impl BitOr for HandleType {
    type Output = HandleTypes;
    fn bitor(self, rhs: HandleType) -> HandleTypes {
        HandleTypes::from(self) | rhs
    }
}

impl BitOrAssign<HandleType> for HandleTypes {
    fn bitor_assign(&mut self, rhs: HandleType) {
        self.insert(rhs);
    }
}

impl fmt::Display for HandleTypes {
    /// The short names, e.g. `FD WIN32 KMT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short_names())
    }
}

/// The kinds of objects that carry external payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Fence,
    BinarySemaphore,
    TimelineSemaphore,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [
        ObjectKind::Fence,
        ObjectKind::BinarySemaphore,
        ObjectKind::TimelineSemaphore,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Fence => "fence",
            ObjectKind::BinarySemaphore => "binary semaphore",
            ObjectKind::TimelineSemaphore => "timeline semaphore",
        }
    }

    /// Whether objects of this kind can have the handle type at all (fences have no
    /// D3D12_FENCE).
    pub fn can_have(self, t: HandleType) -> bool {
        self != ObjectKind::Fence || t.fence_flag().is_some()
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a device answers for one object kind and handle type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleCaps {
    pub kind: ObjectKind,
    pub handle_type: HandleType,
    /// `EXPORTABLE`: objects can be created exportable as this type and exported.
    pub exportable: bool,
    /// `IMPORTABLE`: payloads of this type can be imported.
    pub importable: bool,
    /// `compatibleHandleTypes`: the types an object exportable as this type may also be
    /// exportable as.
    pub compatible: HandleTypes,
    /// `exportFromImportedHandleTypes`: the types an object holding an imported payload of this
    /// type can export.
    pub export_from_imported: HandleTypes,
}

/// Why a device has no answers for an object kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The queries need Vulkan 1.1 (the device reports 1.0).
    NeedsVulkan11,
    /// The device has no timeline semaphores.
    NoTimelineSemaphores,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::NeedsVulkan11 => "not queried: the device reports Vulkan 1.0 (the queries are 1.1)",
            Unavailable::NoTimelineSemaphores => "no timeline semaphores on this device",
        })
    }
}

/// One physical device's identity and its answers for every object kind and handle type.
#[derive(Clone, Debug)]
pub struct DeviceCaps {
    pub name: String,
    pub device_type: vk::PhysicalDeviceType,
    pub api_version: u32,
    /// Driver name and info (`VkPhysicalDeviceDriverProperties`), for Vulkan 1.2 devices.
    pub driver: Option<(String, String)>,
    pub driver_uuid: Option<[u8; vk::UUID_SIZE]>,
    pub device_uuid: Option<[u8; vk::UUID_SIZE]>,
    /// Which of the external fence/semaphore extensions the device offers.
    pub extensions: Extensions,
    /// One row per kind and handle type the kind can have (no D3D12_FENCE fences), kinds in
    /// [`ObjectKind::ALL`] order, types in [`HandleType::ALL`] order.
    pub rows: Vec<HandleCaps>,
    /// Kinds with no rows, and why.
    pub unavailable: Vec<(ObjectKind, Unavailable)>,
    /// `maxTimelineSemaphoreValueDifference`, for devices with timeline semaphores.
    pub max_timeline_value_difference: Option<u64>,
}

/// The device extensions external fences and semaphores need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    pub fence_fd: bool,
    pub semaphore_fd: bool,
    pub fence_win32: bool,
    pub semaphore_win32: bool,
}

impl Extensions {
    /// The extensions' names, in the order of the fields.
    pub const NAMES: [&'static CStr; 4] = [
        ash::khr::external_fence_fd::NAME,
        ash::khr::external_semaphore_fd::NAME,
        ash::khr::external_fence_win32::NAME,
        ash::khr::external_semaphore_win32::NAME,
    ];

    /// Which of [`Extensions::NAMES`] appear in `names`.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a CStr>) -> Extensions {
        let mut e = Extensions::default();
        for name in names {
            match name {
                n if n == Extensions::NAMES[0] => e.fence_fd = true,
                n if n == Extensions::NAMES[1] => e.semaphore_fd = true,
                n if n == Extensions::NAMES[2] => e.fence_win32 = true,
                n if n == Extensions::NAMES[3] => e.semaphore_win32 = true,
                _ => {}
            }
        }
        e
    }

    /// The names of the extensions present.
    pub fn names(self) -> Vec<&'static CStr> {
        [self.fence_fd, self.semaphore_fd, self.fence_win32, self.semaphore_win32]
            .into_iter()
            .zip(Extensions::NAMES)
            .filter_map(|(on, name)| on.then_some(name))
            .collect()
    }

    /// Whether the extension that carries `t` for objects of `kind` is present.
    pub fn carries(self, kind: ObjectKind, t: HandleType) -> bool {
        match (kind == ObjectKind::Fence, t.is_fd()) {
            (true, true) => self.fence_fd,
            (true, false) => self.fence_win32,
            (false, true) => self.semaphore_fd,
            (false, false) => self.semaphore_win32,
        }
    }

    /// The extension that carries `t` for objects of `kind`.
    pub fn name_for(kind: ObjectKind, t: HandleType) -> &'static CStr {
        let index = match (kind == ObjectKind::Fence, t.is_fd()) {
            (true, true) => 0,
            (false, true) => 1,
            (true, false) => 2,
            (false, false) => 3,
        };
        Extensions::NAMES[index]
    }
}

fn c_chars(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl DeviceCaps {
    /// Queries one physical device. Never fails: what cannot be asked is in
    /// [`DeviceCaps::unavailable`].
    ///
    /// # Safety
    ///
    /// `physical_device` was enumerated from `instance`, which is live and was created with
    /// `apiVersion` 1.1 or later (the instance-level 1.1 queries must be loaded). [`Instance`]'s
    /// methods meet this.
    ///
    /// [`Instance`]: crate::Instance
    pub unsafe fn query(instance: &ash::Instance, physical_device: vk::PhysicalDevice) -> DeviceCaps {
        let pd = physical_device;
        // SAFETY: `pd` belongs to `instance` (the caller's guarantee).
        let props = unsafe { instance.get_physical_device_properties(pd) };
        // SAFETY: as above.
        let offered = unsafe { instance.enumerate_device_extension_properties(pd) }.unwrap_or_default();
        let offered_names: Vec<&CStr> = offered
            .iter()
            .filter_map(|e| e.extension_name_as_c_str().ok())
            .collect();
        let mut caps = DeviceCaps {
            name: props
                .device_name_as_c_str()
                .map_or_else(|_| "(unnamed)".to_string(), |n| n.to_string_lossy().into_owned()),
            device_type: props.device_type,
            api_version: props.api_version,
            driver: None,
            driver_uuid: None,
            device_uuid: None,
            extensions: Extensions::from_names(offered_names.iter().copied()),
            rows: Vec::new(),
            unavailable: Vec::new(),
            max_timeline_value_difference: None,
        };
        if props.api_version < vk::API_VERSION_1_1 {
            caps.unavailable = ObjectKind::ALL
                .iter()
                .map(|&k| (k, Unavailable::NeedsVulkan11))
                .collect();
            return caps;
        }
        let vulkan12 = props.api_version >= vk::API_VERSION_1_2;
        // SAFETY: as above.
        let timeline = unsafe { has_timeline_semaphores(instance, pd, vulkan12, &offered_names) };
        let mut id = vk::PhysicalDeviceIDProperties::default();
        let mut driver = vk::PhysicalDeviceDriverProperties::default();
        let mut timeline_props = vk::PhysicalDeviceTimelineSemaphoreProperties::default();
        {
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
            if vulkan12 {
                props2 = props2.push_next(&mut driver);
            }
            if timeline {
                props2 = props2.push_next(&mut timeline_props);
            }
            // SAFETY: a 1.1+ instance and device; the driver-properties structure is chained
            // only for 1.2 devices, the timeline one only for devices that have timelines.
            unsafe { instance.get_physical_device_properties2(pd, &mut props2) };
        }
        if timeline {
            caps.max_timeline_value_difference = Some(timeline_props.max_timeline_semaphore_value_difference);
        }
        caps.driver_uuid = Some(id.driver_uuid);
        caps.device_uuid = Some(id.device_uuid);
        if vulkan12 {
            caps.driver = Some((c_chars(&driver.driver_name), c_chars(&driver.driver_info)));
        }
        if !timeline {
            caps.unavailable
                .push((ObjectKind::TimelineSemaphore, Unavailable::NoTimelineSemaphores));
        }
        for kind in ObjectKind::ALL {
            if kind == ObjectKind::TimelineSemaphore && !timeline {
                continue;
            }
            for handle_type in HandleType::ALL.into_iter().filter(|t| kind.can_have(*t)) {
                // SAFETY: a 1.1+ device of `instance`; timeline rows only when it has them.
                caps.rows.push(unsafe { query_one(instance, pd, kind, handle_type) });
            }
        }
        caps
    }

    /// The row for one kind and handle type; `None` when the kind was not queried or cannot
    /// have the type.
    pub fn get(&self, kind: ObjectKind, handle_type: HandleType) -> Option<&HandleCaps> {
        self.rows
            .iter()
            .find(|r| r.kind == kind && r.handle_type == handle_type)
    }

    /// The types objects of `kind` can be created exportable as and exported.
    pub fn exportable(&self, kind: ObjectKind) -> HandleTypes {
        self.types_where(kind, |r| r.exportable)
    }

    /// The types payloads of `kind` can be imported from.
    pub fn importable(&self, kind: ObjectKind) -> HandleTypes {
        self.types_where(kind, |r| r.importable)
    }

    /// Whether objects of `kind` can be exportable as all of `types` at once: each is exportable
    /// and compatible with the others.
    pub fn exportable_together(&self, kind: ObjectKind, types: HandleTypes) -> bool {
        types.unknown_bits() == 0
            && types.iter().all(|t| {
                self.get(kind, t)
                    .is_some_and(|r| r.exportable && r.compatible.contains_all(types))
            })
    }

    fn types_where(&self, kind: ObjectKind, keep: impl Fn(&HandleCaps) -> bool) -> HandleTypes {
        self.rows
            .iter()
            .filter(|r| r.kind == kind && keep(r))
            .map(|r| r.handle_type)
            .collect()
    }

    /// Whether the device is Vulkan 1.2 or has `VK_KHR_timeline_semaphore`, and says it supports
    /// timeline semaphores.
    pub fn has_timeline_semaphores(&self) -> bool {
        !self
            .unavailable
            .iter()
            .any(|(k, _)| *k == ObjectKind::TimelineSemaphore)
    }
}

/// Whether the device supports timeline semaphores.
///
/// # Safety
///
/// `pd` is a 1.1+ physical device of `instance`.
unsafe fn has_timeline_semaphores(
    instance: &ash::Instance,
    pd: vk::PhysicalDevice,
    vulkan12: bool,
    offered: &[&CStr],
) -> bool {
    if !vulkan12 && !offered.contains(&ash::khr::timeline_semaphore::NAME) {
        return false;
    }
    let mut f = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
    let mut f2 = vk::PhysicalDeviceFeatures2::default().push_next(&mut f);
    // SAFETY: a 1.1+ device that knows the timeline-semaphore features structure (1.2, or the
    // extension offered).
    unsafe { instance.get_physical_device_features2(pd, &mut f2) };
    f.timeline_semaphore != vk::FALSE
}

/// One capability query.
///
/// # Safety
///
/// `pd` is a 1.1+ physical device of `instance`; for timeline semaphores it has them.
unsafe fn query_one(
    instance: &ash::Instance,
    pd: vk::PhysicalDevice,
    kind: ObjectKind,
    handle_type: HandleType,
) -> HandleCaps {
    let (features, compatible, export_from_imported) = match (kind, handle_type.fence_flag()) {
        (ObjectKind::Fence, Some(flag)) => {
            let info = vk::PhysicalDeviceExternalFenceInfo::default().handle_type(flag);
            let mut out = vk::ExternalFenceProperties::default();
            // SAFETY: the caller's guarantee.
            unsafe { instance.get_physical_device_external_fence_properties(pd, &info, &mut out) };
            use vk::ExternalFenceFeatureFlags as F;
            (
                (
                    out.external_fence_features.contains(F::EXPORTABLE),
                    out.external_fence_features.contains(F::IMPORTABLE),
                ),
                HandleTypes::from_fence_flags(out.compatible_handle_types),
                HandleTypes::from_fence_flags(out.export_from_imported_handle_types),
            )
        }
        (ObjectKind::Fence, None) => ((false, false), HandleTypes::empty(), HandleTypes::empty()),
        (ObjectKind::BinarySemaphore | ObjectKind::TimelineSemaphore, _) => {
            let semaphore_type = if kind == ObjectKind::TimelineSemaphore {
                vk::SemaphoreType::TIMELINE
            } else {
                vk::SemaphoreType::BINARY
            };
            let mut ty = vk::SemaphoreTypeCreateInfo::default().semaphore_type(semaphore_type);
            let mut info = vk::PhysicalDeviceExternalSemaphoreInfo::default().handle_type(handle_type.semaphore_flag());
            if kind == ObjectKind::TimelineSemaphore {
                info = info.push_next(&mut ty);
            }
            let mut out = vk::ExternalSemaphoreProperties::default();
            // SAFETY: the caller's guarantee; the semaphore type is chained only for timelines,
            // which the caller asks about only on devices that have them.
            unsafe { instance.get_physical_device_external_semaphore_properties(pd, &info, &mut out) };
            use vk::ExternalSemaphoreFeatureFlags as S;
            (
                (
                    out.external_semaphore_features.contains(S::EXPORTABLE),
                    out.external_semaphore_features.contains(S::IMPORTABLE),
                ),
                HandleTypes::from_semaphore_flags(out.compatible_handle_types),
                HandleTypes::from_semaphore_flags(out.export_from_imported_handle_types),
            )
        }
    };
    HandleCaps {
        kind,
        handle_type,
        exportable: features.0,
        importable: features.1,
        compatible,
        export_from_imported,
    }
}

/// A Vulkan version as `major.minor.patch`.
pub fn version_string(v: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )
}

/// A UUID as 8-4-4-4-12 hex, with its text when it is printable ASCII (tether's are).
pub fn uuid_string(uuid: &[u8; vk::UUID_SIZE]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    let mut s = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    if uuid.iter().all(|b| b.is_ascii_graphic()) {
        s.push_str(&format!(" (\"{}\")", String::from_utf8_lossy(uuid)));
    }
    s
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

impl fmt::Display for DeviceCaps {
    /// The device's identity, then one table row per object kind and handle type:
    ///
    /// ```text
    /// tether CPU
    ///   type CPU, Vulkan 1.2.0
    ///   ...
    ///   object     handle type  export  import  compatible types  export from imported
    ///   ---------  -----------  ------  ------  ----------------  --------------------
    ///   fence      OPAQUE_FD    yes     yes     FD WIN32 KMT SYNC FD WIN32 KMT SYNC
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.name)?;
        writeln!(
            f,
            "  type {:?}, Vulkan {}",
            self.device_type,
            version_string(self.api_version)
        )?;
        if let Some((name, info)) = &self.driver {
            writeln!(f, "  driver       {name} — {info}")?;
        }
        if let Some(uuid) = &self.driver_uuid {
            writeln!(f, "  driver UUID  {}", uuid_string(uuid))?;
        }
        if let Some(uuid) = &self.device_uuid {
            writeln!(f, "  device UUID  {}", uuid_string(uuid))?;
        }
        writeln!(f)?;
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.kind.name().to_string(),
                    r.handle_type.name().to_string(),
                    yes_no(r.exportable).to_string(),
                    yes_no(r.importable).to_string(),
                    r.compatible.short_names(),
                    r.export_from_imported.short_names(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            f.write_str(&crate::table::format(
                &[
                    "object",
                    "handle type",
                    "export",
                    "import",
                    "compatible types",
                    "export from imported",
                ],
                &rows,
            ))?;
        }
        for (kind, why) in &self.unavailable {
            writeln!(f, "  {}: {why}", kind.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_and_semaphore_flags_decode_apart() {
        let f = HandleTypes::from_fence_flags(
            vk::ExternalFenceHandleTypeFlags::OPAQUE_FD | vk::ExternalFenceHandleTypeFlags::SYNC_FD,
        );
        assert_eq!(f.short_names(), "FD SYNC");
        let s = HandleTypes::from_semaphore_flags(
            vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE
                | vk::ExternalSemaphoreHandleTypeFlags::ZIRCON_EVENT_FUCHSIA,
        );
        assert_eq!(s.short_names(), "D3D12 0x80");
        assert_eq!(HandleTypes::empty().short_names(), "-");
    }

    #[test]
    fn sets_round_trip_through_flags() {
        let set = HandleType::OpaqueFd | HandleType::OpaqueWin32Kmt | HandleType::D3d12Fence;
        assert_eq!(HandleTypes::from_semaphore_flags(set.semaphore_flags()), set);
        // Fences have no D3D12_FENCE flag.
        assert_eq!(
            HandleTypes::from_fence_flags(set.fence_flags()),
            HandleType::OpaqueFd | HandleType::OpaqueWin32Kmt
        );
        assert!(set.contains_all(HandleType::OpaqueFd.into()));
        assert!(!HandleTypes::from(HandleType::OpaqueFd).contains_all(set));
    }

    #[test]
    fn extensions_by_kind_and_type() {
        let e = Extensions::from_names([
            ash::khr::external_fence_fd::NAME,
            ash::khr::external_semaphore_win32::NAME,
        ]);
        assert!(e.carries(ObjectKind::Fence, HandleType::SyncFd));
        assert!(!e.carries(ObjectKind::Fence, HandleType::OpaqueWin32));
        assert!(e.carries(ObjectKind::TimelineSemaphore, HandleType::D3d12Fence));
        assert!(!e.carries(ObjectKind::BinarySemaphore, HandleType::OpaqueFd));
        assert_eq!(e.names().len(), 2);
        assert_eq!(
            Extensions::name_for(ObjectKind::BinarySemaphore, HandleType::OpaqueWin32Kmt),
            ash::khr::external_semaphore_win32::NAME
        );
    }
}

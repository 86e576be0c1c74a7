//! `tether caps`: the external fence and semaphore capabilities of every physical device.
//!
//! The query half ([`query_instance`] and the types it returns) knows nothing of printing, so it
//! can move into the `tether` crate's typed capability API as it is.

use std::ffi::CStr;

use ash::vk;

use crate::vulkan::{self, Choice, Vulkan};

/// The external handle types tether knows, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleType {
    OpaqueFd,
    OpaqueWin32,
    OpaqueWin32Kmt,
    D3d12Fence,
    SyncFd,
}

impl HandleType {
    pub const ALL: [HandleType; 5] = [
        HandleType::OpaqueFd,
        HandleType::OpaqueWin32,
        HandleType::OpaqueWin32Kmt,
        HandleType::D3d12Fence,
        HandleType::SyncFd,
    ];

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

    /// The fence bit, if fences have this handle type (D3D12_FENCE is semaphores only).
    pub fn fence_bit(self) -> Option<vk::ExternalFenceHandleTypeFlags> {
        use vk::ExternalFenceHandleTypeFlags as F;
        match self {
            HandleType::OpaqueFd => Some(F::OPAQUE_FD),
            HandleType::OpaqueWin32 => Some(F::OPAQUE_WIN32),
            HandleType::OpaqueWin32Kmt => Some(F::OPAQUE_WIN32_KMT),
            HandleType::D3d12Fence => None,
            HandleType::SyncFd => Some(F::SYNC_FD),
        }
    }

    pub fn semaphore_bit(self) -> vk::ExternalSemaphoreHandleTypeFlags {
        use vk::ExternalSemaphoreHandleTypeFlags as S;
        match self {
            HandleType::OpaqueFd => S::OPAQUE_FD,
            HandleType::OpaqueWin32 => S::OPAQUE_WIN32,
            HandleType::OpaqueWin32Kmt => S::OPAQUE_WIN32_KMT,
            HandleType::D3d12Fence => S::D3D12_FENCE,
            HandleType::SyncFd => S::SYNC_FD,
        }
    }
}

/// A set of handle types, from fence or semaphore flags (whose bit values differ); bits tether
/// does not know are kept as they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleTypes {
    /// Bit `i` is `HandleType::ALL[i]`.
    known: u8,
    /// Flag bits of no [`HandleType`], in the flags' own encoding.
    pub unknown: u32,
}

impl HandleTypes {
    pub fn from_fence(flags: vk::ExternalFenceHandleTypeFlags) -> HandleTypes {
        let mut set = HandleTypes::default();
        let mut rest = flags;
        for (i, t) in HandleType::ALL.iter().enumerate() {
            if let Some(bit) = t.fence_bit().filter(|b| flags.contains(*b)) {
                set.known |= 1 << i;
                rest &= !bit;
            }
        }
        set.unknown = rest.as_raw();
        set
    }

    pub fn from_semaphore(flags: vk::ExternalSemaphoreHandleTypeFlags) -> HandleTypes {
        let mut set = HandleTypes::default();
        let mut rest = flags;
        for (i, t) in HandleType::ALL.iter().enumerate() {
            if flags.contains(t.semaphore_bit()) {
                set.known |= 1 << i;
                rest &= !t.semaphore_bit();
            }
        }
        set.unknown = rest.as_raw();
        set
    }

    pub fn contains(self, t: HandleType) -> bool {
        HandleType::ALL
            .iter()
            .position(|x| *x == t)
            .is_some_and(|i| self.known & (1 << i) != 0)
    }

    pub fn iter(self) -> impl Iterator<Item = HandleType> {
        HandleType::ALL.into_iter().filter(move |t| self.contains(*t))
    }

    /// Short names ([`HandleType::short_name`]) separated by spaces; unknown bits in hex; `-` for
    /// none.
    pub fn names(self) -> String {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// What a device answers for one object kind and handle type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleCaps {
    pub kind: ObjectKind,
    pub handle_type: HandleType,
    pub exportable: bool,
    pub importable: bool,
    pub compatible: HandleTypes,
    pub export_from_imported: HandleTypes,
}

/// Why a device has no answers for an object kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The query needs Vulkan 1.1 (the device reports less).
    NeedsVulkan11,
    /// The device has no timeline semaphores.
    NoTimelineSemaphores,
}

/// One physical device's identity and answers.
#[derive(Clone, Debug)]
pub struct DeviceCaps {
    pub name: String,
    pub device_type: vk::PhysicalDeviceType,
    pub api_version: u32,
    /// Driver name and info (`VkPhysicalDeviceDriverProperties`), when the device has them.
    pub driver: Option<(String, String)>,
    pub driver_uuid: Option<[u8; vk::UUID_SIZE]>,
    pub device_uuid: Option<[u8; vk::UUID_SIZE]>,
    /// Rows for every kind and handle type the kind can have (no D3D12_FENCE fences).
    pub rows: Vec<HandleCaps>,
    pub unavailable: Vec<(ObjectKind, Unavailable)>,
}

fn c_chars(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether a physical device offers a device extension.
fn has_extension(instance: &ash::Instance, pd: vk::PhysicalDevice, name: &CStr) -> bool {
    // SAFETY: `pd` belongs to `instance`.
    unsafe { instance.enumerate_device_extension_properties(pd) }
        .unwrap_or_default()
        .iter()
        .any(|e| e.extension_name_as_c_str() == Ok(name))
}

/// Queries one physical device.
pub fn query_device(instance: &ash::Instance, pd: vk::PhysicalDevice) -> DeviceCaps {
    // SAFETY: `pd` belongs to `instance`.
    let props = unsafe { instance.get_physical_device_properties(pd) };
    let mut caps = DeviceCaps {
        name: vulkan::device_name(&props),
        device_type: props.device_type,
        api_version: props.api_version,
        driver: None,
        driver_uuid: None,
        device_uuid: None,
        rows: Vec::new(),
        unavailable: Vec::new(),
    };
    if props.api_version < vk::API_VERSION_1_1 {
        caps.unavailable = ObjectKind::ALL
            .iter()
            .map(|&k| (k, Unavailable::NeedsVulkan11))
            .collect();
        return caps;
    }
    let vulkan12 = props.api_version >= vk::API_VERSION_1_2;
    let mut id = vk::PhysicalDeviceIDProperties::default();
    let mut driver = vk::PhysicalDeviceDriverProperties::default();
    {
        let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
        if vulkan12 {
            props2 = props2.push_next(&mut driver);
        }
        // SAFETY: `pd` belongs to a Vulkan 1.2 instance and the device is at least 1.1; the
        // driver-properties structure is only chained for 1.2 devices.
        unsafe { instance.get_physical_device_properties2(pd, &mut props2) };
    }
    caps.driver_uuid = Some(id.driver_uuid);
    caps.device_uuid = Some(id.device_uuid);
    if vulkan12 {
        caps.driver = Some((c_chars(&driver.driver_name), c_chars(&driver.driver_info)));
    }
    let timeline = if vulkan12 {
        let mut f = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
        let mut f2 = vk::PhysicalDeviceFeatures2::default().push_next(&mut f);
        // SAFETY: a 1.2 device knows the timeline-semaphore features structure.
        unsafe { instance.get_physical_device_features2(pd, &mut f2) };
        f.timeline_semaphore != vk::FALSE
    } else {
        has_extension(instance, pd, ash::khr::timeline_semaphore::NAME)
    };
    if !timeline {
        caps.unavailable
            .push((ObjectKind::TimelineSemaphore, Unavailable::NoTimelineSemaphores));
    }
    for kind in ObjectKind::ALL {
        if kind == ObjectKind::TimelineSemaphore && !timeline {
            continue;
        }
        for handle_type in HandleType::ALL {
            if let Some(row) = query_one(instance, pd, kind, handle_type) {
                caps.rows.push(row);
            }
        }
    }
    caps
}

/// One capability query; `None` for a kind that cannot have the handle type at all.
pub fn query_one(
    instance: &ash::Instance,
    pd: vk::PhysicalDevice,
    kind: ObjectKind,
    handle_type: HandleType,
) -> Option<HandleCaps> {
    let (exportable, importable, compatible, export_from_imported) = match kind {
        ObjectKind::Fence => {
            let info = vk::PhysicalDeviceExternalFenceInfo::default().handle_type(handle_type.fence_bit()?);
            let mut out = vk::ExternalFenceProperties::default();
            // SAFETY: `pd` belongs to `instance`, a Vulkan 1.1+ device.
            unsafe { instance.get_physical_device_external_fence_properties(pd, &info, &mut out) };
            use vk::ExternalFenceFeatureFlags as F;
            (
                out.external_fence_features.contains(F::EXPORTABLE),
                out.external_fence_features.contains(F::IMPORTABLE),
                HandleTypes::from_fence(out.compatible_handle_types),
                HandleTypes::from_fence(out.export_from_imported_handle_types),
            )
        }
        ObjectKind::BinarySemaphore | ObjectKind::TimelineSemaphore => {
            let semaphore_type = if kind == ObjectKind::TimelineSemaphore {
                vk::SemaphoreType::TIMELINE
            } else {
                vk::SemaphoreType::BINARY
            };
            let mut ty = vk::SemaphoreTypeCreateInfo::default().semaphore_type(semaphore_type);
            let info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
                .handle_type(handle_type.semaphore_bit())
                .push_next(&mut ty);
            let mut out = vk::ExternalSemaphoreProperties::default();
            // SAFETY: `pd` belongs to `instance`, a Vulkan 1.1+ device; the semaphore type is
            // only chained for devices with timeline semaphores (the caller checks).
            unsafe { instance.get_physical_device_external_semaphore_properties(pd, &info, &mut out) };
            use vk::ExternalSemaphoreFeatureFlags as S;
            (
                out.external_semaphore_features.contains(S::EXPORTABLE),
                out.external_semaphore_features.contains(S::IMPORTABLE),
                HandleTypes::from_semaphore(out.compatible_handle_types),
                HandleTypes::from_semaphore(out.export_from_imported_handle_types),
            )
        }
    };
    Some(HandleCaps {
        kind,
        handle_type,
        exportable,
        importable,
        compatible,
        export_from_imported,
    })
}

/// Every physical device of an instance.
pub fn query_instance(instance: &ash::Instance) -> Result<Vec<DeviceCaps>, String> {
    // SAFETY: a live instance.
    let devices =
        unsafe { instance.enumerate_physical_devices() }.map_err(|e| format!("vkEnumeratePhysicalDevices: {e}"))?;
    Ok(devices.into_iter().map(|pd| query_device(instance, pd)).collect())
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

/// The printed form of one device's answers.
pub fn format_device(caps: &DeviceCaps) -> String {
    let mut out = format!("{}\n", caps.name);
    out += &format!(
        "  type {:?}, Vulkan {}\n",
        caps.device_type,
        vulkan::version_string(caps.api_version)
    );
    if let Some((name, info)) = &caps.driver {
        out += &format!("  driver       {name} — {info}\n");
    }
    if let Some(uuid) = &caps.driver_uuid {
        out += &format!("  driver UUID  {}\n", uuid_string(uuid));
    }
    if let Some(uuid) = &caps.device_uuid {
        out += &format!("  device UUID  {}\n", uuid_string(uuid));
    }
    out += "\n";
    let rows: Vec<Vec<String>> = caps
        .rows
        .iter()
        .map(|r| {
            vec![
                r.kind.name().to_string(),
                r.handle_type.name().to_string(),
                yes_no(r.exportable).to_string(),
                yes_no(r.importable).to_string(),
                r.compatible.names(),
                r.export_from_imported.names(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out += &tether::table::format(
            &[
                "object",
                "handle type",
                "export",
                "import",
                "compatible types",
                "export from imported",
            ],
            &rows,
        );
    }
    for (kind, why) in &caps.unavailable {
        let why = match why {
            Unavailable::NeedsVulkan11 => "not queried: the device reports Vulkan 1.0 (the queries are 1.1)",
            Unavailable::NoTimelineSemaphores => "no timeline semaphores on this device",
        };
        out += &format!("  {}: {why}\n", kind.name());
    }
    out
}

/// The devices one entry sees.
fn query_entry(vulkan: &Vulkan) -> Result<Vec<DeviceCaps>, String> {
    let instance = vulkan.create_instance()?;
    let devices = query_instance(&instance);
    // SAFETY: nothing else was created from the instance.
    unsafe { instance.destroy_instance(None) };
    devices
}

fn print_devices(devices: &[DeviceCaps]) {
    say!(
        "{} physical device{}. For each object kind and external handle type: export/import = the \
         EXPORTABLE/IMPORTABLE features, compatible = compatibleHandleTypes, export from imported = \
         exportFromImportedHandleTypes\n(FD = OPAQUE_FD, WIN32 = OPAQUE_WIN32, KMT = OPAQUE_WIN32_KMT, \
         D3D12 = D3D12_FENCE, SYNC = SYNC_FD).\n",
        devices.len(),
        if devices.len() == 1 { "" } else { "s" }
    );
    for caps in devices {
        say!("{}", format_device(caps));
    }
}

pub fn run(choice: Choice) -> Result<(), String> {
    let vulkan = Vulkan::open(choice)?;
    let from_loader = match query_entry(&vulkan) {
        Ok(devices) => {
            say!("Vulkan from {}", vulkan.describe());
            print_devices(&devices);
            devices
        }
        Err(e) if choice == Choice::Auto && vulkan.source == vulkan::Source::Loader => {
            vulkan::notice(&format!("the Vulkan loader found no usable driver ({e})"));
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    if from_loader
        .iter()
        .any(|d| d.name == tether_icd::objects::physical_device::DEVICE_NAME)
        || vulkan.source == vulkan::Source::Embedded
    {
        return Ok(());
    }
    if choice == Choice::Loader {
        say!(
            "no tether device: build it (`cargo build --release`), point the loader at \
             manifests/tether_icd.json, or pass --embedded"
        );
        return Ok(());
    }
    let embedded = Vulkan::embedded();
    say!("the loader sees no tether device; Vulkan from {}:", embedded.describe());
    print_devices(&query_entry(&embedded)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_and_semaphore_bits_decode_apart() {
        let f = HandleTypes::from_fence(
            vk::ExternalFenceHandleTypeFlags::OPAQUE_FD | vk::ExternalFenceHandleTypeFlags::SYNC_FD,
        );
        assert_eq!(f.names(), "FD SYNC");
        let s = HandleTypes::from_semaphore(
            vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE
                | vk::ExternalSemaphoreHandleTypeFlags::ZIRCON_EVENT_FUCHSIA,
        );
        assert_eq!(s.names(), "D3D12 0x80");
        assert_eq!(HandleTypes::default().names(), "-");
    }
}

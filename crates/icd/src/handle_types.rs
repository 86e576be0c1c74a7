//! The one table of external handle types. The capability queries, the extension list, the
//! create-time export checks and the import/export paths all read it, so what the driver
//! advertises cannot drift from what it does.

use std::sync::LazyLock;

use ash::vk;

/// What kind of object a handle type is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Fence,
    BinarySemaphore,
    TimelineSemaphore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleFamily {
    /// `VK_KHR_external_{fence,semaphore}_fd`
    Fd,
    /// `VK_KHR_external_{fence,semaphore}_win32`
    Win32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transference {
    /// Importers share the exporter's payload.
    Reference,
    /// Importers get a snapshot; exporting acts as a reset (fence) or a wait (semaphore).
    Copy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleType {
    OpaqueFd,
    SyncFd,
    OpaqueWin32,
    OpaqueWin32Kmt,
    D3d12Fence,
}

/// One row of the table.
pub struct HandleTypeInfo {
    pub handle_type: HandleType,
    pub fence_bit: vk::ExternalFenceHandleTypeFlags,
    pub semaphore_bit: vk::ExternalSemaphoreHandleTypeFlags,
    pub family: HandleFamily,
    pub transference: Transference,
    /// The object kinds this type can carry.
    pub kinds: &'static [ObjectKind],
    /// Whether the driver implements it yet (rows are added before their code lands so the
    /// table reads as the spec's; an unimplemented row is never advertised).
    pub implemented: bool,
}

impl HandleTypeInfo {
    pub fn carries(&self, kind: ObjectKind) -> bool {
        self.kinds.contains(&kind)
    }
    /// Temporary-only types (copy transference) cannot be imported permanently.
    pub fn permanent_import_allowed(&self) -> bool {
        self.transference == Transference::Reference
    }
}

use ObjectKind::{BinarySemaphore as Binary, Fence, TimelineSemaphore as Timeline};

pub const HANDLE_TYPES: &[HandleTypeInfo] = &[
    HandleTypeInfo {
        handle_type: HandleType::OpaqueFd,
        fence_bit: vk::ExternalFenceHandleTypeFlags::OPAQUE_FD,
        semaphore_bit: vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD,
        family: HandleFamily::Fd,
        transference: Transference::Reference,
        kinds: &[Fence, Binary, Timeline],
        implemented: true,
    },
    HandleTypeInfo {
        handle_type: HandleType::SyncFd,
        fence_bit: vk::ExternalFenceHandleTypeFlags::SYNC_FD,
        semaphore_bit: vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD,
        family: HandleFamily::Fd,
        transference: Transference::Copy,
        kinds: &[Fence, Binary],
        implemented: true,
    },
    HandleTypeInfo {
        handle_type: HandleType::OpaqueWin32,
        fence_bit: vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32,
        semaphore_bit: vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
        family: HandleFamily::Win32,
        transference: Transference::Reference,
        kinds: &[Fence, Binary, Timeline],
        implemented: true,
    },
    HandleTypeInfo {
        handle_type: HandleType::OpaqueWin32Kmt,
        fence_bit: vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT,
        semaphore_bit: vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT,
        family: HandleFamily::Win32,
        transference: Transference::Reference,
        kinds: &[Fence, Binary, Timeline],
        implemented: true,
    },
    HandleTypeInfo {
        handle_type: HandleType::D3d12Fence,
        fence_bit: vk::ExternalFenceHandleTypeFlags::empty(),
        semaphore_bit: vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE,
        family: HandleFamily::Win32,
        transference: Transference::Reference,
        kinds: &[Binary, Timeline],
        implemented: true,
    },
];

/// Which handle types this process offers: all of them, or only the fd ones
/// (`TETHER_ICD_HANDLES=fd`, so the layer can be tested on the ICD exactly as on a real driver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleMode {
    All,
    FdOnly,
}

static MODE: LazyLock<HandleMode> = LazyLock::new(|| match std::env::var("TETHER_ICD_HANDLES").as_deref() {
    Ok("fd") => HandleMode::FdOnly,
    _ => HandleMode::All,
});

impl HandleMode {
    pub fn from_env() -> HandleMode {
        *MODE
    }

    /// The rows this mode offers for an object kind.
    pub fn offered(self, kind: ObjectKind) -> impl Iterator<Item = &'static HandleTypeInfo> {
        HANDLE_TYPES.iter().filter(move |row| {
            row.implemented && row.carries(kind) && (self == HandleMode::All || row.family == HandleFamily::Fd)
        })
    }

    pub fn offers_family_for_fences(self, family: HandleFamily) -> bool {
        self.offered(ObjectKind::Fence).any(|r| r.family == family)
    }

    pub fn offers_family_for_semaphores(self, family: HandleFamily) -> bool {
        self.offered(ObjectKind::BinarySemaphore)
            .chain(self.offered(ObjectKind::TimelineSemaphore))
            .any(|r| r.family == family)
    }

    /// The row for a single fence handle-type bit, if offered.
    pub fn fence_row(self, bit: vk::ExternalFenceHandleTypeFlags) -> Option<&'static HandleTypeInfo> {
        self.offered(ObjectKind::Fence).find(|r| r.fence_bit == bit)
    }

    /// The row for a single semaphore handle-type bit, if offered for that kind.
    pub fn semaphore_row(
        self,
        kind: ObjectKind,
        bit: vk::ExternalSemaphoreHandleTypeFlags,
    ) -> Option<&'static HandleTypeInfo> {
        self.offered(kind).find(|r| r.semaphore_bit == bit)
    }

    /// Whether a create-time export set (`VkExport*CreateInfo::handleTypes`, raw bits of the
    /// object kind's flag type) is exportable and compatible, as the properties queries report
    /// it: every offered type of a kind can be exported together with every other.
    pub fn exportable_together(self, kind: ObjectKind, raw_bits: u32) -> bool {
        let offered = match kind {
            ObjectKind::Fence => self.fence_bits().as_raw(),
            _ => self.semaphore_bits(kind).as_raw(),
        };
        raw_bits & !offered == 0
    }

    /// All fence bits offered.
    pub fn fence_bits(self) -> vk::ExternalFenceHandleTypeFlags {
        self.offered(ObjectKind::Fence)
            .fold(vk::ExternalFenceHandleTypeFlags::empty(), |acc, r| acc | r.fence_bit)
    }

    /// All semaphore bits offered for a kind.
    pub fn semaphore_bits(self, kind: ObjectKind) -> vk::ExternalSemaphoreHandleTypeFlags {
        self.offered(kind)
            .fold(vk::ExternalSemaphoreHandleTypeFlags::empty(), |acc, r| {
                acc | r.semaphore_bit
            })
    }
}

/// The answer to `vkGetPhysicalDeviceExternalFenceProperties`.
pub fn fence_properties(
    mode: HandleMode,
    bit: vk::ExternalFenceHandleTypeFlags,
) -> vk::ExternalFenceProperties<'static> {
    let mut props = vk::ExternalFenceProperties::default();
    if let Some(row) = mode.fence_row(bit) {
        let all = mode.fence_bits();
        props.compatible_handle_types = all;
        props.export_from_imported_handle_types = match row.transference {
            Transference::Reference => all,
            Transference::Copy => row.fence_bit,
        };
        props.external_fence_features =
            vk::ExternalFenceFeatureFlags::EXPORTABLE | vk::ExternalFenceFeatureFlags::IMPORTABLE;
    }
    props
}

/// The answer to `vkGetPhysicalDeviceExternalSemaphoreProperties` for a semaphore type.
pub fn semaphore_properties(
    mode: HandleMode,
    kind: ObjectKind,
    bit: vk::ExternalSemaphoreHandleTypeFlags,
) -> vk::ExternalSemaphoreProperties<'static> {
    let mut props = vk::ExternalSemaphoreProperties::default();
    if let Some(row) = mode.semaphore_row(kind, bit) {
        let all = mode.semaphore_bits(kind);
        props.compatible_handle_types = all;
        props.export_from_imported_handle_types = match row.transference {
            Transference::Reference => all,
            Transference::Copy => row.semaphore_bit,
        };
        props.external_semaphore_features =
            vk::ExternalSemaphoreFeatureFlags::EXPORTABLE | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE;
    }
    props
}

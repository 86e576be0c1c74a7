//! The one physical device, "tether CPU": what it is and what it can do.

use ash::vk;
use tether_payload::DeviceIdentity;

use crate::handle_types::HandleMode;

/// The Vulkan version the driver implements (graphics and compute are not implemented; see the
/// README).
pub const API_VERSION: u32 = vk::make_api_version(0, 1, 2, 281);
pub const DRIVER_VERSION: u32 = vk::make_api_version(0, 0, 1, 0);
pub const DEVICE_NAME: &str = "tether CPU";
pub const QUEUE_COUNT: u32 = 4;
/// Not a registered vendor: tether has no PCI or Khronos vendor id.
pub const VENDOR_ID: u32 = 0;
pub const DEVICE_ID: u32 = 0;
/// The size of the one memory heap.
pub const HEAP_SIZE: u64 = 4 << 30;
/// Largest single allocation.
pub const MAX_ALLOCATION_SIZE: u64 = 1 << 30;

/// Stable identity: payloads carry it and importers compare it. The driver UUID changes when the
/// shared-page layout does (payload version 1).
pub const IDENTITY: DeviceIdentity = DeviceIdentity {
    driver_uuid: *b"tether-drv-pl-01",
    device_uuid: *b"tether-cpu-dev-0",
};

/// The physical device object behind `VkPhysicalDevice`.
pub struct PhysicalDevice {
    pub handle_mode: HandleMode,
    /// The instance's messengers and extensions, which its devices inherit.
    pub debug: std::sync::Arc<crate::debug::DebugReporter>,
    pub instance_extensions: crate::objects::extensions::ExtensionSet,
    /// The instance's allocator, which a device created without one falls back to.
    pub instance_allocator: crate::host_memory::HostAllocator,
}

fn fixed_str<const N: usize>(s: &str) -> [std::ffi::c_char; N] {
    let mut out = [0 as std::ffi::c_char; N];
    for (dst, src) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *dst = src as std::ffi::c_char;
    }
    out
}

impl PhysicalDevice {
    pub fn properties(&self) -> vk::PhysicalDeviceProperties {
        vk::PhysicalDeviceProperties {
            api_version: API_VERSION,
            driver_version: DRIVER_VERSION,
            vendor_id: VENDOR_ID,
            device_id: DEVICE_ID,
            device_type: vk::PhysicalDeviceType::CPU,
            device_name: fixed_str(DEVICE_NAME),
            pipeline_cache_uuid: *b"tether-no-pipes0",
            limits: limits(),
            sparse_properties: vk::PhysicalDeviceSparseProperties::default(),
        }
    }

    pub fn queue_family(&self) -> vk::QueueFamilyProperties {
        vk::QueueFamilyProperties {
            queue_flags: vk::QueueFlags::TRANSFER,
            queue_count: QUEUE_COUNT,
            timestamp_valid_bits: 0,
            min_image_transfer_granularity: vk::Extent3D {
                width: 1,
                height: 1,
                depth: 1,
            },
        }
    }

    pub fn memory_properties(&self) -> vk::PhysicalDeviceMemoryProperties {
        let mut props = vk::PhysicalDeviceMemoryProperties {
            memory_type_count: 1,
            memory_heap_count: 1,
            ..Default::default()
        };
        props.memory_types[0] = vk::MemoryType {
            property_flags: vk::MemoryPropertyFlags::DEVICE_LOCAL
                | vk::MemoryPropertyFlags::HOST_VISIBLE
                | vk::MemoryPropertyFlags::HOST_COHERENT
                | vk::MemoryPropertyFlags::HOST_CACHED,
            heap_index: 0,
        };
        props.memory_heaps[0] = vk::MemoryHeap {
            size: HEAP_SIZE,
            flags: vk::MemoryHeapFlags::DEVICE_LOCAL,
        };
        props
    }

    /// Vulkan 1.0 features: none of the graphics or compute ones; robust buffer access holds
    /// because every copy is bounds-checked.
    pub fn features(&self) -> vk::PhysicalDeviceFeatures {
        vk::PhysicalDeviceFeatures {
            robust_buffer_access: vk::TRUE,
            ..Default::default()
        }
    }

    pub fn driver_name(&self) -> [std::ffi::c_char; vk::MAX_DRIVER_NAME_SIZE] {
        fixed_str("tether")
    }

    pub fn driver_info(&self) -> [std::ffi::c_char; vk::MAX_DRIVER_INFO_SIZE] {
        fixed_str(concat!("tether ", env!("CARGO_PKG_VERSION"), " (CPU, sync only)"))
    }
}

fn limits() -> vk::PhysicalDeviceLimits {
    vk::PhysicalDeviceLimits {
        max_memory_allocation_count: 1 << 20,
        max_bound_descriptor_sets: 0,
        buffer_image_granularity: 1,
        non_coherent_atom_size: 1,
        min_memory_map_alignment: 64,
        optimal_buffer_copy_offset_alignment: 1,
        optimal_buffer_copy_row_pitch_alignment: 1,
        min_texel_buffer_offset_alignment: 1,
        min_uniform_buffer_offset_alignment: 1,
        min_storage_buffer_offset_alignment: 1,
        max_storage_buffer_range: u32::MAX,
        max_uniform_buffer_range: 0,
        timestamp_period: 1.0,
        discrete_queue_priorities: 2,
        standard_sample_locations: vk::FALSE,
        strict_lines: vk::FALSE,
        ..Default::default()
    }
}

//! Device memory (host memory the application maps directly) and buffers.

use std::ffi::c_void;
use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;

use super::sync::{OBJECT, destroy, lookup, publish};
use super::{VkResult, device, guard, guard_or, input, input_slice, result, write_out};
use crate::handle_table::{BUFFERS, MEMORIES};
use crate::objects::device::Device;
use crate::objects::memory::{Buffer, Mapping, Memory, buffer_requirements};
use crate::objects::physical_device::MAX_ALLOCATION_SIZE;

/// # Safety
/// Per `vkAllocateMemory`.
pub unsafe extern "system" fn allocate_memory(
    device: vk::Device,
    info: *const vk::MemoryAllocateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::DeviceMemory,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkAllocateMemory",
                    "pAllocateInfo",
                    "VkMemoryAllocateInfo",
                    Some(&[]),
                )
            }?;
            if info.memory_type_index != 0 {
                dev.debug.validation(
                    "VUID-vkAllocateMemory-pAllocateInfo-01714",
                    "the device has one memory type (index 0)",
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            if info.allocation_size == 0 || info.allocation_size > MAX_ALLOCATION_SIZE {
                return Err(vk::Result::ERROR_OUT_OF_DEVICE_MEMORY);
            }
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let storage = unsafe { super::child_allocator(dev, allocator) }.reserve(OBJECT)?;
            let mapping = Mapping::new(info.allocation_size).ok_or(vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)?;
            let memory = Memory {
                device_id: dev.id,
                size: info.allocation_size,
                mapping: Arc::new(mapping),
            };
            // SAFETY: writable output per valid usage.
            unsafe { publish(&MEMORIES, storage.write(memory), out) }
        })())
    })
}

/// # Safety
/// Per `vkFreeMemory`.
pub unsafe extern "system" fn free_memory(
    device: vk::Device,
    memory: vk::DeviceMemory,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || {
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        unsafe {
            destroy(
                &MEMORIES,
                device,
                memory.as_raw(),
                allocator,
                "VUID-vkFreeMemory-memory-parameter",
            )
        }
    })
}

/// # Safety
/// Per `vkMapMemory`.
pub unsafe extern "system" fn map_memory(
    device: vk::Device,
    memory: vk::DeviceMemory,
    offset: u64,
    size: u64,
    _flags: vk::MemoryMapFlags,
    out: *mut *mut c_void,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle per valid usage.
            let dev = unsafe { self::device(device) }?;
            let memory = lookup(&MEMORIES, dev, memory.as_raw(), "VUID-vkMapMemory-memory-parameter")?;
            if size == 0 {
                dev.debug.validation(
                    "VUID-vkMapMemory-size-00680",
                    "size must be VK_WHOLE_SIZE or greater than 0",
                );
                return Err(vk::Result::ERROR_MEMORY_MAP_FAILED);
            }
            let in_range = offset < memory.size
                && (size == vk::WHOLE_SIZE || offset.checked_add(size).is_some_and(|end| end <= memory.size));
            if !in_range {
                dev.debug.validation(
                    "VUID-vkMapMemory-offset-00679",
                    "the mapped range lies outside the allocation",
                );
                return Err(vk::Result::ERROR_MEMORY_MAP_FAILED);
            }
            let ptr = memory
                .mapping
                .host_pointer(offset)
                .ok_or(vk::Result::ERROR_MEMORY_MAP_FAILED)?;
            // SAFETY: writable output per valid usage. The mapping stays valid while the memory
            // object lives, which is the application's to ensure.
            unsafe { write_out(out, ptr.cast::<c_void>()) }
        })())
    })
}

/// Host memory stays mapped; unmapping is a no-op.
///
/// # Safety
/// Per `vkUnmapMemory`.
pub unsafe extern "system" fn unmap_memory(device: vk::Device, memory: vk::DeviceMemory) {
    guard_or((), || {
        // SAFETY: valid handle per valid usage.
        if let Ok(dev) = unsafe { self::device(device) } {
            // Nothing to undo; the lookup reports a handle that names no memory object.
            let _ = lookup(&MEMORIES, dev, memory.as_raw(), "VUID-vkUnmapMemory-memory-parameter");
        }
    })
}

/// The only memory type is coherent: flushes and invalidations have nothing to do.
///
/// # Safety
/// Per `vkFlushMappedMemoryRanges` / `vkInvalidateMappedMemoryRanges`.
pub unsafe extern "system" fn flush_mapped_memory_ranges(
    _device: vk::Device,
    _count: u32,
    _ranges: *const vk::MappedMemoryRange<'_>,
) -> vk::Result {
    vk::Result::SUCCESS
}

/// # Safety
/// Per `vkGetDeviceMemoryCommitment`.
pub unsafe extern "system" fn get_device_memory_commitment(
    _device: vk::Device,
    _memory: vk::DeviceMemory,
    out: *mut u64,
) {
    guard_or((), || {
        // SAFETY: writable output per valid usage.
        let _ = unsafe { write_out(out, 0) };
    })
}

/// # Safety
/// Per `vkCreateBuffer`.
pub unsafe extern "system" fn create_buffer(
    device: vk::Device,
    info: *const vk::BufferCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Buffer,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkCreateBuffer",
                    "pCreateInfo",
                    "VkBufferCreateInfo",
                    Some(&[]),
                )
            }?;
            if info.size == 0 {
                dev.debug
                    .validation("VUID-VkBufferCreateInfo-size-00912", "size must be greater than 0");
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            if !info.flags.is_empty() {
                dev.debug.validation(
                    "VUID-VkBufferCreateInfo-flags-00915",
                    "sparse and protected buffers are not supported",
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            let buffer = Buffer {
                device_id: dev.id,
                size: info.size,
                usage: info.usage,
                binding: Default::default(),
            };
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let storage = unsafe { super::child_allocator(dev, allocator) }.reserve(OBJECT)?;
            // SAFETY: writable output per valid usage.
            unsafe { publish(&BUFFERS, storage.write(buffer), out) }
        })())
    })
}

/// # Safety
/// Per `vkDestroyBuffer`.
pub unsafe extern "system" fn destroy_buffer(
    device: vk::Device,
    buffer: vk::Buffer,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || {
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        unsafe {
            destroy(
                &BUFFERS,
                device,
                buffer.as_raw(),
                allocator,
                "VUID-vkDestroyBuffer-buffer-parameter",
            )
        }
    })
}

fn bind(dev: &Device, buffer: vk::Buffer, memory: vk::DeviceMemory, offset: u64) -> VkResult<()> {
    let buffer = lookup(
        &BUFFERS,
        dev,
        buffer.as_raw(),
        "VUID-vkBindBufferMemory-buffer-parameter",
    )?;
    let memory = lookup(
        &MEMORIES,
        dev,
        memory.as_raw(),
        "VUID-vkBindBufferMemory-memory-parameter",
    )?;
    let needed = buffer_requirements(buffer.size);
    if offset % needed.alignment != 0 || offset.checked_add(needed.size).is_none_or(|end| end > memory.size) {
        dev.debug.validation(
            "VUID-vkBindBufferMemory-size-01037",
            "the buffer does not fit in the memory at that offset",
        );
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    }
    if buffer.binding.set((Arc::clone(&memory.mapping), offset)).is_err() {
        dev.debug.validation(
            "VUID-vkBindBufferMemory-buffer-07459",
            "the buffer is already bound to memory",
        );
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    }
    Ok(())
}

/// # Safety
/// Per `vkBindBufferMemory`.
pub unsafe extern "system" fn bind_buffer_memory(
    device: vk::Device,
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    offset: u64,
) -> vk::Result {
    // SAFETY: valid handle per valid usage.
    guard(|| result(unsafe { self::device(device) }.and_then(|dev| bind(dev, buffer, memory, offset))))
}

/// # Safety
/// Per `vkBindBufferMemory2`.
pub unsafe extern "system" fn bind_buffer_memory2(
    device: vk::Device,
    count: u32,
    infos: *const vk::BindBufferMemoryInfo<'_>,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and array per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: `pBindInfos` holds `bindInfoCount` structures.
            let infos = unsafe { input_slice(infos, count) }.ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)?;
            infos
                .iter()
                .try_for_each(|i| bind(dev, i.buffer, i.memory, i.memory_offset))
        })())
    })
}

/// # Safety
/// Per `vkGetBufferMemoryRequirements`.
pub unsafe extern "system" fn get_buffer_memory_requirements(
    device: vk::Device,
    buffer: vk::Buffer,
    out: *mut vk::MemoryRequirements,
) {
    guard_or((), || {
        // SAFETY: valid handle per valid usage.
        let Ok(dev) = (unsafe { self::device(device) }) else {
            return;
        };
        if let Ok(buffer) = lookup(
            &BUFFERS,
            dev,
            buffer.as_raw(),
            "VUID-vkGetBufferMemoryRequirements-buffer-parameter",
        ) {
            // SAFETY: writable output per valid usage.
            let _ = unsafe { write_out(out, buffer_requirements(buffer.size)) };
        }
    })
}

/// # Safety
/// Per `vkGetBufferMemoryRequirements2`.
pub unsafe extern "system" fn get_buffer_memory_requirements2(
    device: vk::Device,
    info: *const vk::BufferMemoryRequirementsInfo2<'_>,
    out: *mut vk::MemoryRequirements2<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and pointers per valid usage.
        let (Ok(dev), Some(info), Some(out)) = (unsafe { self::device(device) }, unsafe { input(info) }, unsafe {
            out.as_mut()
        }) else {
            return;
        };
        if let Ok(buffer) = lookup(
            &BUFFERS,
            dev,
            info.buffer.as_raw(),
            "VUID-VkBufferMemoryRequirementsInfo2-buffer-parameter",
        ) {
            out.memory_requirements = buffer_requirements(buffer.size);
        }
    })
}

//! Command pools, command buffers and the commands they record. Everything a command refers to
//! is checked when it is recorded; a command that fails its checks is not recorded and
//! `vkEndCommandBuffer` reports the failure.

use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;

use super::queue::command_buffer;
use super::sync::{OBJECT, destroy, lookup, publish};
use super::{VkResult, device, guard, guard_or, input, input_slice, result};
use crate::handle_table::{BUFFERS, COMMAND_POOLS, EVENTS, Owner};
use crate::host_memory::{HostBox, OUT_OF_HOST_MEMORY};
use crate::objects::Dispatchable;
use crate::objects::command::{Command, CommandBuffer, CommandPool, RecordingState};
use crate::objects::memory::BoundBuffer;
use tether_payload::Payload;

/// # Safety
/// Per `vkCreateCommandPool`.
pub unsafe extern "system" fn create_command_pool(
    device: vk::Device,
    info: *const vk::CommandPoolCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::CommandPool,
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
                    "vkCreateCommandPool",
                    "pCreateInfo",
                    "VkCommandPoolCreateInfo",
                    Some(&[]),
                )
            }?;
            if info.queue_family_index != 0 {
                dev.debug.validation(
                    "VUID-vkCreateCommandPool-queueFamilyIndex-01937",
                    "the device has one queue family (index 0)",
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let allocator = unsafe { super::child_allocator(dev, allocator) };
            let storage = allocator.reserve(OBJECT)?;
            let pool = CommandPool {
                device_id: dev.id,
                flags: info.flags,
                allocator: allocator.inherited(),
                buffers: Default::default(),
            };
            // SAFETY: writable output per valid usage.
            unsafe { publish(&COMMAND_POOLS, storage.write(pool), out) }
        })())
    })
}

/// Frees a command buffer made by `allocate_command_buffers` (through its pool's allocator).
///
/// # Safety
/// `address` must come from `HostBox::into_raw` in `allocate_command_buffers` and be freed once.
unsafe fn free_command_buffer(address: usize) {
    // SAFETY: per the caller's contract.
    drop(unsafe { HostBox::from_raw(address as *mut Dispatchable<CommandBuffer>) });
}

/// The pool's command buffers go with it.
impl Drop for CommandPool {
    fn drop(&mut self) {
        for address in std::mem::take(self.buffers.get_mut().unwrap_or_else(|e| e.into_inner())) {
            // SAFETY: the pool owned these command buffers; they are freed once, here, by the
            // command that destroys the pool.
            unsafe { free_command_buffer(address) };
        }
    }
}

/// # Safety
/// Per `vkDestroyCommandPool`.
pub unsafe extern "system" fn destroy_command_pool(
    device: vk::Device,
    pool: vk::CommandPool,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || {
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        unsafe {
            destroy(
                &COMMAND_POOLS,
                device,
                pool.as_raw(),
                allocator,
                "VUID-vkDestroyCommandPool-commandPool-parameter",
            )
        }
    })
}

/// # Safety
/// Per `vkResetCommandPool`.
pub unsafe extern "system" fn reset_command_pool(
    device: vk::Device,
    pool: vk::CommandPool,
    _flags: vk::CommandPoolResetFlags,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle per valid usage.
            let dev = unsafe { self::device(device) }?;
            let pool = lookup(
                &COMMAND_POOLS,
                dev,
                pool.as_raw(),
                "VUID-vkResetCommandPool-commandPool-parameter",
            )?;
            for &address in pool.buffers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                // SAFETY: the pool owns these live command buffers.
                unsafe { &(*(address as *const Dispatchable<CommandBuffer>)).object }.reset();
            }
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkTrimCommandPool`.
pub unsafe extern "system" fn trim_command_pool(
    _device: vk::Device,
    _pool: vk::CommandPool,
    _flags: vk::CommandPoolTrimFlags,
) {
}

/// # Safety
/// Per `vkAllocateCommandBuffers`.
pub unsafe extern "system" fn allocate_command_buffers(
    device: vk::Device,
    info: *const vk::CommandBufferAllocateInfo<'_>,
    out: *mut vk::CommandBuffer,
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
                    "vkAllocateCommandBuffers",
                    "pAllocateInfo",
                    "VkCommandBufferAllocateInfo",
                    Some(&[]),
                )
            }?;
            let pool = lookup(
                &COMMAND_POOLS,
                dev,
                info.command_pool.as_raw(),
                "VUID-VkCommandBufferAllocateInfo-commandPool-parameter",
            )?;
            if info.level != vk::CommandBufferLevel::PRIMARY {
                dev.debug.validation(
                    "VUID-VkCommandBufferAllocateInfo-level-parameter",
                    "secondary command buffers are not implemented",
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            if out.is_null() && info.command_buffer_count > 0 {
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            let count = info.command_buffer_count as usize;
            let mut buffers = pool.buffers.lock().unwrap_or_else(|e| e.into_inner());
            let start = buffers.len();
            let made = buffers
                .try_reserve(count)
                .map_err(|_| OUT_OF_HOST_MEMORY)
                .and_then(|()| {
                    (0..count).try_for_each(|_| {
                        let cb = Dispatchable::new(CommandBuffer::new(
                            dev.id,
                            info.command_pool.as_raw(),
                            Arc::clone(&dev.debug),
                        ));
                        let cb = HostBox::new_in(cb, pool.allocator, OBJECT)?;
                        buffers.push(HostBox::into_raw(cb) as usize);
                        Ok(())
                    })
                });
            if let Err(e) = made {
                // The spec: free what this command made, and set every output handle to NULL.
                for address in buffers.drain(start..) {
                    // SAFETY: made just above by this command; freed once, here.
                    unsafe { free_command_buffer(address) };
                }
                for i in 0..count {
                    // SAFETY: `pCommandBuffers` has room for `commandBufferCount` handles.
                    unsafe { out.add(i).write(vk::CommandBuffer::null()) };
                }
                return Err(e);
            }
            for (i, &address) in buffers[start..].iter().enumerate() {
                // SAFETY: `pCommandBuffers` has room for `commandBufferCount` handles.
                unsafe { out.add(i).write(vk::CommandBuffer::from_raw(address as u64)) };
            }
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkFreeCommandBuffers`.
pub unsafe extern "system" fn free_command_buffers(
    device: vk::Device,
    pool: vk::CommandPool,
    count: u32,
    cbs: *const vk::CommandBuffer,
) {
    guard_or((), || {
        // SAFETY: valid handle and array per valid usage.
        let (Ok(dev), Some(cbs)) = (unsafe { self::device(device) }, unsafe { input_slice(cbs, count) }) else {
            return;
        };
        let Ok(pool) = lookup(
            &COMMAND_POOLS,
            dev,
            pool.as_raw(),
            "VUID-vkFreeCommandBuffers-commandPool-parameter",
        ) else {
            return;
        };
        let mut owned = pool.buffers.lock().unwrap_or_else(|e| e.into_inner());
        for cb in cbs {
            let address = cb.as_raw() as usize;
            if address == 0 {
                continue;
            }
            match owned.iter().position(|&a| a == address) {
                Some(i) => {
                    owned.swap_remove(i);
                    // SAFETY: the pool owned this command buffer; it leaves the pool and is freed once.
                    unsafe { free_command_buffer(address) };
                }
                None => dev.debug.validation(
                    "VUID-vkFreeCommandBuffers-pCommandBuffers-parent",
                    "not a command buffer of this pool",
                ),
            }
        }
    })
}

/// # Safety
/// A live command buffer of this driver (NULL gives `None`).
unsafe fn cb<'a>(handle: vk::CommandBuffer) -> Option<&'a CommandBuffer> {
    // SAFETY: per the caller's contract.
    unsafe { command_buffer(handle) }
}

/// # Safety
/// Per `vkBeginCommandBuffer`.
pub unsafe extern "system" fn begin_command_buffer(
    handle: vk::CommandBuffer,
    info: *const vk::CommandBufferBeginInfo<'_>,
) -> vk::Result {
    guard(|| {
        // SAFETY: valid handle and pointer per valid usage.
        let (Some(cb), Some(info)) = (unsafe { cb(handle) }, unsafe { input(info) }) else {
            return vk::Result::ERROR_VALIDATION_FAILED_EXT;
        };
        let mut rec = cb.lock();
        if rec.state == RecordingState::Recording {
            cb.debug.validation(
                "VUID-vkBeginCommandBuffer-commandBuffer-00049",
                "the command buffer is already recording",
            );
            return vk::Result::ERROR_VALIDATION_FAILED_EXT;
        }
        rec.state = RecordingState::Recording;
        rec.one_time_submit = info.flags.contains(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        rec.commands.clear();
        rec.error = None;
        vk::Result::SUCCESS
    })
}

/// # Safety
/// Per `vkEndCommandBuffer`.
pub unsafe extern "system" fn end_command_buffer(handle: vk::CommandBuffer) -> vk::Result {
    guard(|| {
        // SAFETY: valid handle per valid usage.
        let Some(cb) = (unsafe { cb(handle) }) else {
            return vk::Result::ERROR_VALIDATION_FAILED_EXT;
        };
        let mut rec = cb.lock();
        if rec.state != RecordingState::Recording {
            cb.debug.validation(
                "VUID-vkEndCommandBuffer-commandBuffer-00059",
                "the command buffer is not recording",
            );
            return vk::Result::ERROR_VALIDATION_FAILED_EXT;
        }
        if let Some(error) = rec.error {
            rec.state = RecordingState::Invalid;
            return error;
        }
        let commands = std::mem::take(&mut rec.commands);
        rec.recorded = Arc::from(commands);
        rec.state = RecordingState::Executable;
        vk::Result::SUCCESS
    })
}

/// # Safety
/// Per `vkResetCommandBuffer`.
pub unsafe extern "system" fn reset_command_buffer(
    handle: vk::CommandBuffer,
    _flags: vk::CommandBufferResetFlags,
) -> vk::Result {
    guard(|| {
        // SAFETY: valid handle per valid usage.
        let Some(cb) = (unsafe { cb(handle) }) else {
            return vk::Result::ERROR_VALIDATION_FAILED_EXT;
        };
        cb.reset();
        vk::Result::SUCCESS
    })
}

/// Records the command `make` builds (or the error it reports).
///
/// # Safety
/// `handle` must be a live command buffer of this driver or NULL.
unsafe fn record(handle: vk::CommandBuffer, make: impl FnOnce(&CommandBuffer) -> VkResult<Command>) {
    guard_or((), || {
        // SAFETY: per the caller's contract.
        if let Some(cb) = unsafe { self::cb(handle) } {
            cb.record(make(cb));
        }
    })
}

fn invalid(cb: &CommandBuffer, vuid: &str, text: &str) -> vk::Result {
    cb.reporter().validation(vuid, text);
    vk::Result::ERROR_VALIDATION_FAILED_EXT
}

/// # Safety
/// Per `vkCmdCopyBuffer`.
pub unsafe extern "system" fn cmd_copy_buffer(
    handle: vk::CommandBuffer,
    src: vk::Buffer,
    dst: vk::Buffer,
    count: u32,
    regions: *const vk::BufferCopy,
) {
    // SAFETY: valid handle and array per valid usage.
    unsafe {
        record(handle, |cb| {
            let src = bound(cb, src, "VUID-vkCmdCopyBuffer-srcBuffer-parameter")?;
            let dst = bound(cb, dst, "VUID-vkCmdCopyBuffer-dstBuffer-parameter")?;
            if count == 0 {
                return Err(invalid(
                    cb,
                    "VUID-vkCmdCopyBuffer-regionCount-arraylength",
                    "vkCmdCopyBuffer: regionCount must be greater than 0",
                ));
            }
            let regions = input_slice(regions, count).ok_or_else(|| {
                invalid(
                    cb,
                    "VUID-vkCmdCopyBuffer-pRegions-parameter",
                    "vkCmdCopyBuffer: pRegions is NULL",
                )
            })?;
            let regions = copy_to_vec(regions)?;
            for r in &regions {
                let in_range =
                    |b: &Option<BoundBuffer>, offset| b.as_ref().is_some_and(|b| b.resolve(offset, r.size).is_some());
                if !in_range(&src, r.src_offset) || !in_range(&dst, r.dst_offset) {
                    return Err(invalid(
                        cb,
                        "VUID-vkCmdCopyBuffer-size-00115",
                        "a copy region lies outside its buffer, or a buffer is unbound",
                    ));
                }
            }
            let (Some(src), Some(dst)) = (src, dst) else {
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            };
            Ok(Command::CopyBuffer { src, dst, regions })
        })
    }
}

/// # Safety
/// Per `vkCmdFillBuffer`.
pub unsafe extern "system" fn cmd_fill_buffer(
    handle: vk::CommandBuffer,
    dst: vk::Buffer,
    offset: u64,
    size: u64,
    data: u32,
) {
    // SAFETY: valid handle per valid usage.
    unsafe {
        record(handle, |cb| {
            let buffer = lookup(&BUFFERS, cb, dst.as_raw(), "VUID-vkCmdFillBuffer-dstBuffer-parameter")?;
            let size = if size == vk::WHOLE_SIZE {
                buffer.size.saturating_sub(offset) & !3
            } else {
                size
            };
            let dst = buffer.bound();
            drop(buffer);
            let Some(dst) = dst.filter(|d| offset % 4 == 0 && size % 4 == 0 && d.resolve(offset, size).is_some())
            else {
                return Err(invalid(
                    cb,
                    "VUID-vkCmdFillBuffer-dstOffset-00024",
                    "the fill range is unaligned or outside the buffer, or the buffer is unbound",
                ));
            };
            Ok(Command::FillBuffer {
                dst,
                offset,
                size,
                data,
            })
        })
    }
}

/// # Safety
/// Per `vkCmdUpdateBuffer`.
pub unsafe extern "system" fn cmd_update_buffer(
    handle: vk::CommandBuffer,
    dst: vk::Buffer,
    offset: u64,
    size: u64,
    data: *const std::ffi::c_void,
) {
    // SAFETY: valid handle and data per valid usage.
    unsafe {
        record(handle, |cb| {
            let dst = bound(cb, dst, "VUID-vkCmdUpdateBuffer-dstBuffer-parameter")?;
            let fits = offset % 4 == 0 && size % 4 == 0 && size != 0 && size <= 65536;
            let Some(dst) = dst.filter(|d| fits && d.resolve(offset, size).is_some()) else {
                return Err(invalid(
                    cb,
                    "VUID-vkCmdUpdateBuffer-dataSize-00037",
                    "the update is unaligned, too large, or outside the buffer, or the buffer is unbound",
                ));
            };
            let bytes = input_slice(data.cast::<u8>(), size as u32).ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)?;
            let bytes = copy_to_vec(bytes)?;
            Ok(Command::UpdateBuffer { dst, offset, bytes })
        })
    }
}

/// Reports a NULL array with a non-zero count (`VUID-<cmd>-<param>-parameter`), or an element
/// with the wrong sType; returns whether the array is valid.
///
/// # Safety
/// A non-null `ptr` must hold `count` elements.
unsafe fn check_array<T: vk::TaggedStructure>(
    debug: &crate::debug::DebugReporter,
    cmd: &str,
    param: &str,
    structure: &str,
    ptr: *const T,
    count: u32,
) -> bool {
    // SAFETY: per the caller's contract.
    let Some(items) = (unsafe { input_slice(ptr, count) }) else {
        debug.validation(
            &format!("VUID-{cmd}-{param}-parameter"),
            &format!("{cmd}: {param} is NULL with a count of {count}"),
        );
        return false;
    };
    items.iter().all(|i| super::check_s_type(debug, i, structure))
}

/// Checks the barrier arrays of `vkCmdPipelineBarrier`/`vkCmdWaitEvents` (reported only).
///
/// # Safety
/// Each non-null array must hold its count of elements.
#[allow(clippy::too_many_arguments)]
unsafe fn check_barriers(
    debug: &crate::debug::DebugReporter,
    cmd: &str,
    memory_count: u32,
    memory: *const vk::MemoryBarrier<'_>,
    buffer_count: u32,
    buffers: *const vk::BufferMemoryBarrier<'_>,
    image_count: u32,
    images: *const vk::ImageMemoryBarrier<'_>,
) -> bool {
    // SAFETY: per the caller's contract.
    unsafe {
        check_array(debug, cmd, "pMemoryBarriers", "VkMemoryBarrier", memory, memory_count)
            & check_array(
                debug,
                cmd,
                "pBufferMemoryBarriers",
                "VkBufferMemoryBarrier",
                buffers,
                buffer_count,
            )
            & check_array(
                debug,
                cmd,
                "pImageMemoryBarriers",
                "VkImageMemoryBarrier",
                images,
                image_count,
            )
    }
}

/// Checks a `VkDependencyInfo` and its barrier arrays (reported only).
///
/// # Safety
/// `info` must be NULL or valid, with arrays that hold their counts when non-null.
unsafe fn check_dependency_info(
    debug: &crate::debug::DebugReporter,
    cmd: &str,
    param: &str,
    info: *const vk::DependencyInfo<'_>,
) -> bool {
    // SAFETY: per the caller's contract.
    let Ok(info) = (unsafe { super::input_struct(debug, info, cmd, param, "VkDependencyInfo", Some(&[])) }) else {
        return false;
    };
    // SAFETY: per the caller's contract.
    unsafe {
        check_array(
            debug,
            "VkDependencyInfo",
            "pMemoryBarriers",
            "VkMemoryBarrier2",
            info.p_memory_barriers,
            info.memory_barrier_count,
        ) & check_array(
            debug,
            "VkDependencyInfo",
            "pBufferMemoryBarriers",
            "VkBufferMemoryBarrier2",
            info.p_buffer_memory_barriers,
            info.buffer_memory_barrier_count,
        ) & check_array(
            debug,
            "VkDependencyInfo",
            "pImageMemoryBarriers",
            "VkImageMemoryBarrier2",
            info.p_image_memory_barriers,
            info.image_memory_barrier_count,
        )
    }
}

/// Barriers order nothing on a queue that runs its commands one after another: they are only
/// checked.
///
/// # Safety
/// Per `vkCmdPipelineBarrier`.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "system" fn cmd_pipeline_barrier(
    handle: vk::CommandBuffer,
    _src: vk::PipelineStageFlags,
    _dst: vk::PipelineStageFlags,
    _deps: vk::DependencyFlags,
    memory_count: u32,
    memory: *const vk::MemoryBarrier<'_>,
    buffer_count: u32,
    buffers: *const vk::BufferMemoryBarrier<'_>,
    image_count: u32,
    images: *const vk::ImageMemoryBarrier<'_>,
) {
    guard_or((), || {
        // SAFETY: valid handle and arrays per valid usage.
        if let Some(cb) = unsafe { self::cb(handle) } {
            // SAFETY: per the caller's contract (valid usage).
            unsafe {
                check_barriers(
                    cb.reporter(),
                    "vkCmdPipelineBarrier",
                    memory_count,
                    memory,
                    buffer_count,
                    buffers,
                    image_count,
                    images,
                )
            };
        }
    })
}

/// # Safety
/// Per `vkCmdPipelineBarrier2`.
pub unsafe extern "system" fn cmd_pipeline_barrier2(handle: vk::CommandBuffer, info: *const vk::DependencyInfo<'_>) {
    guard_or((), || {
        // SAFETY: valid handle and structure per valid usage.
        if let Some(cb) = unsafe { self::cb(handle) } {
            // SAFETY: per the caller's contract (valid usage).
            unsafe { check_dependency_info(cb.reporter(), "vkCmdPipelineBarrier2", "pDependencyInfo", info) };
        }
    })
}

/// An event's payload: what a recorded command keeps of it.
fn event(cb: &CommandBuffer, handle: vk::Event, vuid: &str) -> VkResult<Payload> {
    lookup(&EVENTS, cb, handle.as_raw(), vuid).map(|e| e.payload.clone())
}

/// A buffer's bound memory range (`None` while unbound): what a recorded command keeps of it.
fn bound(cb: &CommandBuffer, handle: vk::Buffer, vuid: &str) -> VkResult<Option<BoundBuffer>> {
    lookup(&BUFFERS, cb, handle.as_raw(), vuid).map(|b| b.bound())
}

/// An application's array, copied for a recorded command (fallibly: its size is the
/// application's).
fn copy_to_vec<T: Copy>(items: &[T]) -> VkResult<Vec<T>> {
    let mut v = crate::host_memory::try_vec(items.len())?;
    v.extend_from_slice(items);
    Ok(v)
}

/// # Safety
/// Per `vkCmdSetEvent`.
pub unsafe extern "system" fn cmd_set_event(handle: vk::CommandBuffer, e: vk::Event, _stage: vk::PipelineStageFlags) {
    // SAFETY: valid handle per valid usage.
    unsafe {
        record(handle, |cb| {
            Ok(Command::SetEvent(event(cb, e, "VUID-vkCmdSetEvent-event-parameter")?))
        })
    }
}

/// # Safety
/// Per `vkCmdSetEvent2`.
pub unsafe extern "system" fn cmd_set_event2(
    handle: vk::CommandBuffer,
    e: vk::Event,
    _info: *const vk::DependencyInfo<'_>,
) {
    // SAFETY: valid handle per valid usage.
    unsafe {
        record(handle, |cb| {
            Ok(Command::SetEvent(event(cb, e, "VUID-vkCmdSetEvent2-event-parameter")?))
        })
    }
}

/// # Safety
/// Per `vkCmdResetEvent`.
pub unsafe extern "system" fn cmd_reset_event(handle: vk::CommandBuffer, e: vk::Event, _stage: vk::PipelineStageFlags) {
    // SAFETY: valid handle per valid usage.
    unsafe {
        record(handle, |cb| {
            Ok(Command::ResetEvent(event(
                cb,
                e,
                "VUID-vkCmdResetEvent-event-parameter",
            )?))
        })
    }
}

/// # Safety
/// Per `vkCmdResetEvent2`.
pub unsafe extern "system" fn cmd_reset_event2(
    handle: vk::CommandBuffer,
    e: vk::Event,
    _stage: vk::PipelineStageFlags2,
) {
    // SAFETY: valid handle per valid usage.
    unsafe {
        record(handle, |cb| {
            Ok(Command::ResetEvent(event(
                cb,
                e,
                "VUID-vkCmdResetEvent2-event-parameter",
            )?))
        })
    }
}

fn wait_events(cb: &CommandBuffer, events: &[vk::Event], vuid: &str) -> VkResult<Command> {
    let mut payloads = crate::host_memory::try_vec(events.len())?;
    for e in events {
        payloads.push(event(cb, *e, vuid)?);
    }
    Ok(Command::WaitEvents(payloads))
}

/// # Safety
/// Per `vkCmdWaitEvents`.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "system" fn cmd_wait_events(
    handle: vk::CommandBuffer,
    count: u32,
    events: *const vk::Event,
    _src: vk::PipelineStageFlags,
    _dst: vk::PipelineStageFlags,
    memory_count: u32,
    memory: *const vk::MemoryBarrier<'_>,
    buffer_count: u32,
    buffers: *const vk::BufferMemoryBarrier<'_>,
    image_count: u32,
    images: *const vk::ImageMemoryBarrier<'_>,
) {
    // SAFETY: valid handle and array per valid usage.
    unsafe {
        record(handle, |cb| {
            if count == 0 {
                return Err(invalid(
                    cb,
                    "VUID-vkCmdWaitEvents-eventCount-arraylength",
                    "vkCmdWaitEvents: eventCount must be greater than 0",
                ));
            }
            let events = input_slice(events, count).ok_or_else(|| {
                invalid(
                    cb,
                    "VUID-vkCmdWaitEvents-pEvents-parameter",
                    "vkCmdWaitEvents: pEvents is NULL",
                )
            })?;
            if !check_barriers(
                cb.reporter(),
                "vkCmdWaitEvents",
                memory_count,
                memory,
                buffer_count,
                buffers,
                image_count,
                images,
            ) {
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            wait_events(cb, events, "VUID-vkCmdWaitEvents-pEvents-parameter")
        })
    }
}

/// # Safety
/// Per `vkCmdWaitEvents2`.
pub unsafe extern "system" fn cmd_wait_events2(
    handle: vk::CommandBuffer,
    count: u32,
    events: *const vk::Event,
    infos: *const vk::DependencyInfo<'_>,
) {
    // SAFETY: valid handle and array per valid usage.
    unsafe {
        record(handle, |cb| {
            if count == 0 {
                return Err(invalid(
                    cb,
                    "VUID-vkCmdWaitEvents2-eventCount-arraylength",
                    "vkCmdWaitEvents2: eventCount must be greater than 0",
                ));
            }
            let events = input_slice(events, count).ok_or_else(|| {
                invalid(
                    cb,
                    "VUID-vkCmdWaitEvents2-pEvents-parameter",
                    "vkCmdWaitEvents2: pEvents is NULL",
                )
            })?;
            let Some(infos) = input_slice(infos, count) else {
                return Err(invalid(
                    cb,
                    "VUID-vkCmdWaitEvents2-pDependencyInfos-parameter",
                    "vkCmdWaitEvents2: pDependencyInfos is NULL",
                ));
            };
            for info in infos {
                if !check_dependency_info(cb.reporter(), "vkCmdWaitEvents2", "pDependencyInfos", info) {
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
            }
            wait_events(cb, events, "VUID-vkCmdWaitEvents2-pEvents-parameter")
        })
    }
}

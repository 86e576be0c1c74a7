//! Fences, semaphores and events: creation, host signals, resets, status and host waits.

use ash::vk;
use ash::vk::Handle;
use tether_payload::{Deadline, Payload, PayloadKind, WaitFor, WaitOutcome, wait_many};

use super::external_win32;
use super::{VkResult, device, find_in_chain, guard, guard_or, input_slice, result, write_out};
use crate::handle_table::{DeviceChild, EVENTS, FENCES, HandleTable, ObjectRef, Owner, SEMAPHORES};
use crate::handle_types::ObjectKind;
use crate::host_memory::{HostAllocator, HostBox};
use crate::objects::device::Device;
use crate::objects::physical_device::IDENTITY;
use crate::sync::event::Event;
use crate::sync::fence::Fence;
use crate::sync::release;
use crate::sync::semaphore::{Semaphore, SemaphoreType};
use tether_handles::Win32Exports;

/// The allocation scope of every non-dispatchable object's storage.
pub const OBJECT: vk::SystemAllocationScope = vk::SystemAllocationScope::OBJECT;

/// The live object behind a handle, made on `dev`; a validation error otherwise.
pub fn lookup<T: DeviceChild>(
    table: &'static HandleTable<T>,
    owner: &impl Owner,
    handle: u64,
    vuid: &str,
) -> VkResult<ObjectRef<T>> {
    match table.get(handle) {
        Some(object) if object.device_id() == owner.owner_id() => Ok(object),
        Some(_) => {
            owner
                .reporter()
                .validation(vuid, &format!("{} {handle:#x} belongs to another device", T::KIND));
            Err(vk::Result::ERROR_VALIDATION_FAILED_EXT)
        }
        None => {
            owner
                .reporter()
                .validation(vuid, &format!("{} {handle:#x} is not a live handle", T::KIND));
            Err(vk::Result::ERROR_VALIDATION_FAILED_EXT)
        }
    }
}

/// Registers a new object (in the storage its create command reserved) and writes its handle.
///
/// # Safety
/// `out` must be NULL or writable.
pub unsafe fn publish<T: DeviceChild, H: Handle>(
    table: &'static HandleTable<T>,
    object: HostBox<T>,
    out: *mut H,
) -> VkResult<()> {
    let handle = table.insert(object).ok_or(vk::Result::ERROR_OUT_OF_HOST_MEMORY)?;
    // SAFETY: per the caller's contract.
    unsafe { write_out(out, H::from_raw(handle)) }.inspect_err(|_| {
        table.remove(handle);
    })
}

/// A payload for a new object: a shared page when it may be exported, plain memory otherwise.
fn new_payload(kind: PayloadKind, initial: u64, exportable: bool) -> VkResult<Payload> {
    if exportable {
        Payload::new_shared(kind, initial, &IDENTITY).map_err(|_| vk::Result::ERROR_OUT_OF_HOST_MEMORY)
    } else {
        Ok(Payload::new_private(kind, initial))
    }
}

/// # Safety
/// Per `vkCreateFence`.
pub unsafe extern "system" fn create_fence(
    device: vk::Device,
    info: *const vk::FenceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Fence,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { super::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkCreateFence",
                    "pCreateInfo",
                    "VkFenceCreateInfo",
                    Some(&[
                        vk::StructureType::EXPORT_FENCE_CREATE_INFO,
                        vk::StructureType::EXPORT_FENCE_WIN32_HANDLE_INFO_KHR,
                    ]),
                )
            }?;
            // SAFETY: the chain is valid.
            let export_types = unsafe { find_in_chain::<vk::ExportFenceCreateInfo<'_>>(info.p_next) }
                .map_or(vk::ExternalFenceHandleTypeFlags::empty(), |e| e.handle_types);
            if !dev
                .handle_mode
                .exportable_together(ObjectKind::Fence, export_types.as_raw())
            {
                dev.debug.validation(
                    "VUID-VkExportFenceCreateInfo-handleTypes-01446",
                    &format!("fence handle types {export_types:?} are not exportable together"),
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            // Ignored without `VkExportFenceCreateInfo`, as the spec says.
            // SAFETY: the chain is valid.
            let win32 = match unsafe { find_in_chain::<vk::ExportFenceWin32HandleInfoKHR<'_>>(info.p_next) } {
                Some(w) if !export_types.is_empty() => {
                    // SAFETY: the structure's pointers are valid per valid usage.
                    unsafe {
                        external_win32::export_attributes(
                            dev,
                            "VkExportFenceWin32HandleInfoKHR",
                            w.p_attributes,
                            w.dw_access,
                            w.name,
                        )
                    }?
                }
                _ => Default::default(),
            };
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let storage = unsafe { super::child_allocator(dev, allocator) }.reserve(OBJECT)?;
            let signaled = info.flags.contains(vk::FenceCreateFlags::SIGNALED);
            let payload = new_payload(PayloadKind::Fence, 0, !export_types.is_empty())?;
            let fence = Fence::new(dev.id, signaled, export_types, payload, Win32Exports::new(win32));
            // SAFETY: writable output per valid usage.
            unsafe { publish(&FENCES, storage.write(fence), out) }
        })())
    })
}

/// # Safety
/// Per `vkDestroyFence`.
pub unsafe extern "system" fn destroy_fence(
    device: vk::Device,
    fence: vk::Fence,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || {
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        unsafe {
            destroy(
                &FENCES,
                device,
                fence.as_raw(),
                allocator,
                "VUID-vkDestroyFence-fence-parameter",
            )
        }
    })
}

/// Unregisters an object (NULL is a no-op) and frees its storage through the command's
/// `pAllocator`; what queued work or recorded commands still use of it (payloads, pending
/// counters, memory mappings) lives on until they finish.
///
/// # Safety
/// `allocator` must be NULL or a valid `VkAllocationCallbacks`.
pub unsafe fn destroy<T: DeviceChild>(
    table: &'static HandleTable<T>,
    device: vk::Device,
    handle: u64,
    allocator: *const vk::AllocationCallbacks<'_>,
    vuid: &str,
) {
    if handle == 0 {
        return;
    }
    // SAFETY: valid handle per valid usage.
    let Ok(dev) = (unsafe { self::device(device) }) else {
        return;
    };
    // The lookup's borrow ends with this statement: `remove` waits for borrows to end.
    let ours = lookup(table, dev, handle, vuid).is_ok();
    if let Some(object) = table.remove(handle).filter(|_| ours) {
        // SAFETY: per the caller's contract.
        let given = unsafe { HostAllocator::from_ptr(allocator) };
        if !HostBox::destroy(object, given) {
            super::allocator_mismatch(&dev.debug, T::KIND);
        }
    }
}

/// # Safety
/// Per `vkResetFences`.
pub unsafe extern "system" fn reset_fences(device: vk::Device, count: u32, fences: *const vk::Fence) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: `pFences` holds `fenceCount` handles.
            let handles = unsafe { input_slice(fences, count) }.ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)?;
            let fences = handles
                .iter()
                .map(|f| lookup(&FENCES, dev, f.as_raw(), "VUID-vkResetFences-pFences-parameter"))
                .collect::<VkResult<Vec<_>>>()?;
            for fence in fences {
                if fence.pending.is_pending() {
                    dev.debug.validation(
                        "VUID-vkResetFences-pFences-01123",
                        "a fence being reset is still tied to unfinished queue work",
                    );
                }
                fence.reset();
            }
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkGetFenceStatus`.
pub unsafe extern "system" fn get_fence_status(device: vk::Device, fence: vk::Fence) -> vk::Result {
    guard(|| {
        // SAFETY: valid handle per valid usage.
        let fence = match unsafe { self::device(device) }
            .and_then(|dev| lookup(&FENCES, dev, fence.as_raw(), "VUID-vkGetFenceStatus-fence-parameter"))
        {
            Ok(f) => f,
            Err(e) => return e,
        };
        if fence.is_signaled() {
            vk::Result::SUCCESS
        } else {
            vk::Result::NOT_READY
        }
    })
}

/// Turns a wait's outcome into the command's result.
fn wait_result(outcome: Result<Option<usize>, WaitOutcome>) -> vk::Result {
    match outcome {
        Ok(_) => vk::Result::SUCCESS,
        Err(_) => vk::Result::TIMEOUT,
    }
}

/// # Safety
/// Per `vkWaitForFences`.
pub unsafe extern "system" fn wait_for_fences(
    device: vk::Device,
    count: u32,
    fences: *const vk::Fence,
    wait_all: vk::Bool32,
    timeout: u64,
) -> vk::Result {
    guard(|| {
        let body = || -> VkResult<vk::Result> {
            let deadline = Deadline::from_timeout_ns(timeout);
            // SAFETY: valid handle per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: `pFences` holds `fenceCount` handles.
            let handles = unsafe { input_slice(fences, count) }.ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)?;
            if handles.is_empty() {
                dev.debug.validation(
                    "VUID-vkWaitForFences-fenceCount-arraylength",
                    "fenceCount must be greater than 0",
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            // The clones of an earlier wait go now, not after this one wakes (see `release`).
            release::settle();
            let payloads = handles
                .iter()
                .map(|f| {
                    lookup(&FENCES, dev, f.as_raw(), "VUID-vkWaitForFences-pFences-parameter").map(|f| f.slot.active())
                })
                .collect::<VkResult<Vec<_>>>()?;
            let waits: Vec<_> = payloads.iter().map(|p| (p, WaitFor::Signaled)).collect();
            let outcome = wait_many(&waits, wait_all == vk::FALSE, deadline);
            drop(waits);
            release::release_later(payloads);
            Ok(wait_result(outcome))
        };
        body().unwrap_or_else(|e| e)
    })
}

/// # Safety
/// Per `vkCreateSemaphore`.
pub unsafe extern "system" fn create_semaphore(
    device: vk::Device,
    info: *const vk::SemaphoreCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Semaphore,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { super::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkCreateSemaphore",
                    "pCreateInfo",
                    "VkSemaphoreCreateInfo",
                    Some(&[
                        vk::StructureType::SEMAPHORE_TYPE_CREATE_INFO,
                        vk::StructureType::EXPORT_SEMAPHORE_CREATE_INFO,
                        vk::StructureType::EXPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR,
                    ]),
                )
            }?;
            // SAFETY: the chain is valid.
            let type_info = unsafe { find_in_chain::<vk::SemaphoreTypeCreateInfo<'_>>(info.p_next) };
            let (semaphore_type, initial) = match type_info {
                Some(t) if t.semaphore_type == vk::SemaphoreType::TIMELINE => {
                    if !dev.timeline_semaphores {
                        dev.debug.validation(
                            "VUID-VkSemaphoreTypeCreateInfo-timelineSemaphore-03252",
                            "timeline semaphores need the timelineSemaphore feature enabled",
                        );
                        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                    }
                    (SemaphoreType::Timeline, t.initial_value)
                }
                Some(t) if t.semaphore_type != vk::SemaphoreType::BINARY => {
                    dev.debug.validation(
                        "VUID-VkSemaphoreTypeCreateInfo-semaphoreType-parameter",
                        "unknown semaphore type",
                    );
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
                Some(t) if t.initial_value != 0 => {
                    dev.debug.validation(
                        "VUID-VkSemaphoreTypeCreateInfo-semaphoreType-03279",
                        "a binary semaphore's initialValue must be 0",
                    );
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
                _ => (SemaphoreType::Binary, 0),
            };
            let kind = match semaphore_type {
                SemaphoreType::Binary => ObjectKind::BinarySemaphore,
                SemaphoreType::Timeline => ObjectKind::TimelineSemaphore,
            };
            // SAFETY: the chain is valid.
            let export_types = unsafe { find_in_chain::<vk::ExportSemaphoreCreateInfo<'_>>(info.p_next) }
                .map_or(vk::ExternalSemaphoreHandleTypeFlags::empty(), |e| e.handle_types);
            if !dev.handle_mode.exportable_together(kind, export_types.as_raw()) {
                dev.debug.validation(
                    "VUID-VkExportSemaphoreCreateInfo-handleTypes-01124",
                    &format!("semaphore handle types {export_types:?} are not exportable together for a {kind:?}"),
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            let payload_kind = match semaphore_type {
                _ if export_types.contains(vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE) => {
                    PayloadKind::D3d12Fence
                }
                SemaphoreType::Binary => PayloadKind::BinarySemaphore,
                SemaphoreType::Timeline => PayloadKind::Timeline,
            };
            // SAFETY: the chain is valid.
            let win32 = match unsafe { find_in_chain::<vk::ExportSemaphoreWin32HandleInfoKHR<'_>>(info.p_next) } {
                Some(w) if !export_types.is_empty() => {
                    // SAFETY: the structure's pointers are valid per valid usage.
                    unsafe {
                        external_win32::export_attributes(
                            dev,
                            "VkExportSemaphoreWin32HandleInfoKHR",
                            w.p_attributes,
                            w.dw_access,
                            w.name,
                        )
                    }?
                }
                _ => Default::default(),
            };
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let storage = unsafe { super::child_allocator(dev, allocator) }.reserve(OBJECT)?;
            let payload = new_payload(payload_kind, initial, !export_types.is_empty())?;
            let semaphore = Semaphore::new(dev.id, semaphore_type, export_types, payload, Win32Exports::new(win32));
            // SAFETY: writable output per valid usage.
            unsafe { publish(&SEMAPHORES, storage.write(semaphore), out) }
        })())
    })
}

/// # Safety
/// Per `vkDestroySemaphore`.
pub unsafe extern "system" fn destroy_semaphore(
    device: vk::Device,
    semaphore: vk::Semaphore,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || {
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        unsafe {
            destroy(
                &SEMAPHORES,
                device,
                semaphore.as_raw(),
                allocator,
                "VUID-vkDestroySemaphore-semaphore-parameter",
            )
        }
    })
}

/// A timeline semaphore for a host operation; a validation error for a binary one.
fn timeline(dev: &Device, handle: vk::Semaphore, vuid: &str) -> VkResult<ObjectRef<Semaphore>> {
    let semaphore = lookup(&SEMAPHORES, dev, handle.as_raw(), vuid)?;
    if semaphore.semaphore_type != SemaphoreType::Timeline {
        dev.debug.validation(vuid, "the semaphore must be a timeline semaphore");
        return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
    }
    Ok(semaphore)
}

/// # Safety
/// Per `vkSignalSemaphore`.
pub unsafe extern "system" fn signal_semaphore(
    device: vk::Device,
    info: *const vk::SemaphoreSignalInfo<'_>,
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
                    "vkSignalSemaphore",
                    "pSignalInfo",
                    "VkSemaphoreSignalInfo",
                    Some(&[]),
                )
            }?;
            let semaphore = timeline(dev, info.semaphore, "VUID-VkSemaphoreSignalInfo-semaphore-03257")?;
            let payload = semaphore.slot.active();
            if payload.kind() == PayloadKind::Timeline && info.value <= payload.value() {
                dev.debug.validation(
                    "VUID-VkSemaphoreSignalInfo-value-03258",
                    &format!(
                        "signal value {} is not greater than the current value {}",
                        info.value,
                        payload.value()
                    ),
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            payload.signal_value(info.value);
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkWaitSemaphores`.
pub unsafe extern "system" fn wait_semaphores(
    device: vk::Device,
    info: *const vk::SemaphoreWaitInfo<'_>,
    timeout: u64,
) -> vk::Result {
    guard(|| {
        let body = || -> VkResult<vk::Result> {
            let deadline = Deadline::from_timeout_ns(timeout);
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkWaitSemaphores",
                    "pWaitInfo",
                    "VkSemaphoreWaitInfo",
                    Some(&[]),
                )
            }?;
            // SAFETY: `pSemaphores` and `pValues` hold `semaphoreCount` elements.
            let (handles, values) = unsafe {
                (
                    input_slice(info.p_semaphores, info.semaphore_count),
                    input_slice(info.p_values, info.semaphore_count),
                )
            };
            let (Some(handles), Some(values)) = (handles, values) else {
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            };
            // The clones of an earlier wait go now, not after this one wakes (see `release`).
            release::settle();
            let payloads = handles
                .iter()
                .map(|s| timeline(dev, *s, "VUID-VkSemaphoreWaitInfo-pSemaphores-03256").map(|s| s.slot.active()))
                .collect::<VkResult<Vec<_>>>()?;
            if payloads.is_empty() {
                return Ok(vk::Result::SUCCESS);
            }
            let waits: Vec<_> = payloads
                .iter()
                .zip(values)
                .map(|(p, v)| (p, WaitFor::AtLeast(*v)))
                .collect();
            let any = info.flags.contains(vk::SemaphoreWaitFlags::ANY);
            let outcome = wait_many(&waits, any, deadline);
            drop(waits);
            release::release_later(payloads);
            Ok(wait_result(outcome))
        };
        body().unwrap_or_else(|e| e)
    })
}

/// # Safety
/// Per `vkGetSemaphoreCounterValue`.
pub unsafe extern "system" fn get_semaphore_counter_value(
    device: vk::Device,
    semaphore: vk::Semaphore,
    value: *mut u64,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle per valid usage.
            let dev = unsafe { self::device(device) }?;
            let semaphore = timeline(dev, semaphore, "VUID-vkGetSemaphoreCounterValue-semaphore-03255")?;
            // SAFETY: writable output per valid usage.
            unsafe { write_out(value, semaphore.slot.active().value()) }
        })())
    })
}

/// # Safety
/// Per `vkCreateEvent`.
pub unsafe extern "system" fn create_event(
    device: vk::Device,
    info: *const vk::EventCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Event,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and pointers per valid usage.
            let dev = unsafe { self::device(device) }?;
            // SAFETY: as above.
            let _info = unsafe {
                super::input_struct(
                    &dev.debug,
                    info,
                    "vkCreateEvent",
                    "pCreateInfo",
                    "VkEventCreateInfo",
                    Some(&[]),
                )
            }?;
            // SAFETY: `pAllocator` is NULL or valid per valid usage.
            let storage = unsafe { super::child_allocator(dev, allocator) }.reserve(OBJECT)?;
            // SAFETY: writable output per valid usage.
            unsafe { publish(&EVENTS, storage.write(Event::new(dev.id)), out) }
        })())
    })
}

/// # Safety
/// Per `vkDestroyEvent`.
pub unsafe extern "system" fn destroy_event(
    device: vk::Device,
    event: vk::Event,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard_or((), || {
        // SAFETY: `pAllocator` is NULL or valid per valid usage.
        unsafe {
            destroy(
                &EVENTS,
                device,
                event.as_raw(),
                allocator,
                "VUID-vkDestroyEvent-event-parameter",
            )
        }
    })
}

fn with_event(device: vk::Device, event: vk::Event, vuid: &str, f: impl FnOnce(&Event) -> vk::Result) -> vk::Result {
    // SAFETY: valid handle per valid usage.
    match unsafe { self::device(device) }.and_then(|dev| lookup(&EVENTS, dev, event.as_raw(), vuid)) {
        Ok(e) => f(&e),
        Err(e) => e,
    }
}

/// # Safety
/// Per `vkSetEvent`.
pub unsafe extern "system" fn set_event(device: vk::Device, event: vk::Event) -> vk::Result {
    guard(|| {
        with_event(device, event, "VUID-vkSetEvent-event-parameter", |e| {
            e.payload.signal();
            vk::Result::SUCCESS
        })
    })
}

/// # Safety
/// Per `vkResetEvent`.
pub unsafe extern "system" fn reset_event(device: vk::Device, event: vk::Event) -> vk::Result {
    guard(|| {
        with_event(device, event, "VUID-vkResetEvent-event-parameter", |e| {
            e.payload.reset();
            vk::Result::SUCCESS
        })
    })
}

/// # Safety
/// Per `vkGetEventStatus`.
pub unsafe extern "system" fn get_event_status(device: vk::Device, event: vk::Event) -> vk::Result {
    guard(|| {
        with_event(device, event, "VUID-vkGetEventStatus-event-parameter", |e| {
            if e.payload.is_signaled() {
                vk::Result::EVENT_SET
            } else {
                vk::Result::EVENT_RESET
            }
        })
    })
}

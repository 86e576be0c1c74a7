//! `vkQueueSubmit`, `vkQueueSubmit2` and `vkQueueWaitIdle`. Both submit commands reduce their
//! structures to one `SubmitDesc` each, and one function turns those into queue batches.

use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;

use super::sync::lookup;
use super::{VkResult, dispatchable, find_in_chain, guard, input_slice, result};
use crate::handle_table::{FENCES, ObjectRef, SEMAPHORES};
use crate::objects::command::{CommandBuffer, RecordingState};
use crate::objects::queue::{Batch, BatchSignal, BatchWait, Queue};
use crate::sync::semaphore::{OpValues, Semaphore, SemaphoreType};

/// One submitted batch, as handles and values, whichever command it came from.
#[derive(Default)]
struct SubmitDesc {
    waits: Vec<(vk::Semaphore, OpValues)>,
    command_buffers: Vec<vk::CommandBuffer>,
    signals: Vec<(vk::Semaphore, OpValues)>,
}

/// # Safety
/// A live queue of this driver.
unsafe fn queue<'a>(handle: vk::Queue) -> VkResult<&'a Queue> {
    // SAFETY: per the caller's contract.
    unsafe { dispatchable::<Queue>(handle.as_raw()) }.ok_or(vk::Result::ERROR_DEVICE_LOST)
}

/// The command buffer behind a handle.
///
/// # Safety
/// A non-null handle must be a live command buffer of this driver.
pub unsafe fn command_buffer<'a>(handle: vk::CommandBuffer) -> Option<&'a CommandBuffer> {
    // SAFETY: per the caller's contract.
    unsafe { dispatchable::<CommandBuffer>(handle.as_raw()) }
}

/// Checks every handle of every batch first, then resolves payloads, so a rejected submit
/// changes nothing (a temporary payload is only consumed by a submit that goes through).
fn build_batches(q: &Queue, descs: Vec<SubmitDesc>, fence: vk::Fence) -> VkResult<Vec<Batch>> {
    let mut checked = Vec::with_capacity(descs.len());
    for desc in descs {
        let waits = resolve_semaphores(q, &desc.waits, "VUID-VkSubmitInfo-pWaitSemaphores-03239")?;
        let signals = resolve_semaphores(q, &desc.signals, "VUID-VkSubmitInfo-pSignalSemaphores-03240")?;
        let mut work = Vec::with_capacity(desc.command_buffers.len());
        for &cb in &desc.command_buffers {
            // SAFETY: command buffer handles in a submit are live per valid usage.
            let Some(cb) = (unsafe { command_buffer(cb) }).filter(|cb| cb.device_id == q.device_id) else {
                q.debug.validation(
                    "VUID-VkSubmitInfo-pCommandBuffers-parameter",
                    "not a command buffer of this device",
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            };
            let mut rec = cb.lock();
            if rec.state != RecordingState::Executable {
                q.debug.validation(
                    "VUID-vkQueueSubmit-pCommandBuffers-00070",
                    &format!("a submitted command buffer must be executable, it is {:?}", rec.state),
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            if rec.one_time_submit {
                rec.state = RecordingState::Invalid;
            }
            work.push(Arc::clone(&rec.recorded));
        }
        checked.push((waits, work, signals));
    }
    let fence = if fence == vk::Fence::null() {
        None
    } else {
        let fence = lookup(&FENCES, q, fence.as_raw(), "VUID-vkQueueSubmit-fence-parameter")?;
        if fence.pending.is_pending() || fence.is_signaled() {
            q.debug.validation(
                "VUID-vkQueueSubmit-fence-00063",
                "the fence must be unsignaled and not tied to other queue work",
            );
            return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
        }
        Some(fence)
    };
    let mut batches: Vec<Batch> = checked
        .into_iter()
        .map(|(waits, work, signals)| Batch {
            waits: waits
                .into_iter()
                .map(|(semaphore, values)| {
                    let (payload, what) = semaphore.payload_for_wait(values);
                    BatchWait {
                        pending: Arc::clone(&semaphore.pending),
                        payload,
                        what,
                    }
                })
                .collect(),
            work,
            signals: signals
                .into_iter()
                .map(|(semaphore, values)| {
                    let payload = semaphore.slot.active();
                    let value = values.for_payload(payload.kind());
                    BatchSignal {
                        pending: Arc::clone(&semaphore.pending),
                        payload,
                        value,
                    }
                })
                .collect(),
            fence: None,
        })
        .collect();
    if let Some(fence) = fence {
        if batches.is_empty() {
            batches.push(Batch::default());
        }
        let payload = fence.slot.active();
        if let Some(last) = batches.last_mut() {
            last.fence = Some((Arc::clone(&fence.pending), payload));
        }
    }
    Ok(batches)
}

/// Looks up the semaphores of one side of a batch; a timeline semaphore needs a value.
fn resolve_semaphores(
    q: &Queue,
    ops: &[(vk::Semaphore, OpValues)],
    missing_value_vuid: &str,
) -> VkResult<Vec<(ObjectRef<Semaphore>, OpValues)>> {
    ops.iter()
        .map(|(handle, values)| {
            let semaphore = lookup(
                &SEMAPHORES,
                q,
                handle.as_raw(),
                "VUID-VkSubmitInfo-pWaitSemaphores-parameter",
            )?;
            if semaphore.semaphore_type == SemaphoreType::Timeline
                && values.timeline.is_none()
                && values.d3d12.is_none()
            {
                q.debug.validation(
                    missing_value_vuid,
                    "a timeline semaphore in a submit needs a value (VkTimelineSemaphoreSubmitInfo)",
                );
                return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
            }
            Ok((semaphore, *values))
        })
        .collect()
}

/// Pairs semaphores with the values a `VkSubmitInfo`'s chain gives them (an array shorter than
/// the semaphore list gives no value to the rest).
fn with_values(
    semaphores: &[vk::Semaphore],
    timeline: Option<&[u64]>,
    d3d12: Option<&[u64]>,
) -> Vec<(vk::Semaphore, OpValues)> {
    semaphores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let values = OpValues {
                timeline: timeline.and_then(|v| v.get(i)).copied(),
                d3d12: d3d12.and_then(|v| v.get(i)).copied(),
            };
            (*s, values)
        })
        .collect()
}

/// # Safety
/// Per `vkQueueSubmit`.
pub unsafe extern "system" fn queue_submit(
    queue: vk::Queue,
    count: u32,
    submits: *const vk::SubmitInfo<'_>,
    fence: vk::Fence,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and arrays per valid usage.
            let q = unsafe { self::queue(queue) }?;
            // SAFETY: `pSubmits` holds `submitCount` structures.
            let submits = unsafe { input_slice(submits, count) }.ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)?;
            let mut descs = Vec::with_capacity(submits.len());
            for s in submits {
                if !super::check_s_type(&q.debug, s, "VkSubmitInfo") {
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
                if s.wait_semaphore_count > 0 && s.p_wait_dst_stage_mask.is_null() {
                    q.debug.validation(
                        "VUID-VkSubmitInfo-pWaitDstStageMask-parameter",
                        "vkQueueSubmit: pWaitDstStageMask must hold waitSemaphoreCount stage masks, not be NULL",
                    );
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
                // SAFETY: the chain is valid.
                unsafe {
                    super::check_chain(
                        &q.debug,
                        "VkSubmitInfo",
                        s.p_next,
                        &[
                            vk::StructureType::TIMELINE_SEMAPHORE_SUBMIT_INFO,
                            vk::StructureType::D3D12_FENCE_SUBMIT_INFO_KHR,
                            vk::StructureType::DEVICE_GROUP_SUBMIT_INFO,
                            vk::StructureType::PROTECTED_SUBMIT_INFO,
                        ],
                    )
                };
                // SAFETY: each array holds the count its structure gives; the chain is valid.
                let (waits, cbs, signals, timeline, d3d12) = unsafe {
                    (
                        input_slice(s.p_wait_semaphores, s.wait_semaphore_count),
                        input_slice(s.p_command_buffers, s.command_buffer_count),
                        input_slice(s.p_signal_semaphores, s.signal_semaphore_count),
                        find_in_chain::<vk::TimelineSemaphoreSubmitInfo<'_>>(s.p_next),
                        find_in_chain::<vk::D3D12FenceSubmitInfoKHR<'_>>(s.p_next),
                    )
                };
                let (Some(waits), Some(cbs), Some(signals)) = (waits, cbs, signals) else {
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                };
                if let Some(d) = d3d12
                    && (d.wait_semaphore_values_count != s.wait_semaphore_count
                        || d.signal_semaphore_values_count != s.signal_semaphore_count)
                {
                    q.debug.validation(
                        "VUID-VkD3D12FenceSubmitInfoKHR-waitSemaphoreValuesCount-00079",
                        "VkD3D12FenceSubmitInfoKHR counts must equal the submit's semaphore counts",
                    );
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
                // SAFETY: the value arrays hold the counts their structures give.
                let (wait_values, signal_values, d3d12_waits, d3d12_signals) = unsafe {
                    (
                        timeline.and_then(|t| input_slice(t.p_wait_semaphore_values, t.wait_semaphore_value_count)),
                        timeline.and_then(|t| input_slice(t.p_signal_semaphore_values, t.signal_semaphore_value_count)),
                        d3d12.and_then(|d| input_slice(d.p_wait_semaphore_values, d.wait_semaphore_values_count)),
                        d3d12.and_then(|d| input_slice(d.p_signal_semaphore_values, d.signal_semaphore_values_count)),
                    )
                };
                descs.push(SubmitDesc {
                    waits: with_values(waits, wait_values, d3d12_waits),
                    command_buffers: cbs.to_vec(),
                    signals: with_values(signals, signal_values, d3d12_signals),
                });
            }
            let batches = build_batches(q, descs, fence)?;
            q.submit(batches);
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkQueueSubmit2`.
pub unsafe extern "system" fn queue_submit2(
    queue: vk::Queue,
    count: u32,
    submits: *const vk::SubmitInfo2<'_>,
    fence: vk::Fence,
) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle and arrays per valid usage.
            let q = unsafe { self::queue(queue) }?;
            // SAFETY: `pSubmits` holds `submitCount` structures.
            let submits = unsafe { input_slice(submits, count) }.ok_or(vk::Result::ERROR_VALIDATION_FAILED_EXT)?;
            let mut descs = Vec::with_capacity(submits.len());
            for s in submits {
                if !super::check_s_type(&q.debug, s, "VkSubmitInfo2") {
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                }
                // SAFETY: the chain is valid.
                unsafe { super::check_chain(&q.debug, "VkSubmitInfo2", s.p_next, &[]) };
                // SAFETY: each array holds the count its structure gives.
                let (waits, cbs, signals) = unsafe {
                    (
                        input_slice(s.p_wait_semaphore_infos, s.wait_semaphore_info_count),
                        input_slice(s.p_command_buffer_infos, s.command_buffer_info_count),
                        input_slice(s.p_signal_semaphore_infos, s.signal_semaphore_info_count),
                    )
                };
                let (Some(waits), Some(cbs), Some(signals)) = (waits, cbs, signals) else {
                    return Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);
                };
                descs.push(SubmitDesc {
                    waits: waits
                        .iter()
                        .map(|w| {
                            (
                                w.semaphore,
                                OpValues {
                                    timeline: Some(w.value),
                                    d3d12: None,
                                },
                            )
                        })
                        .collect(),
                    command_buffers: cbs.iter().map(|c| c.command_buffer).collect(),
                    signals: signals
                        .iter()
                        .map(|w| {
                            (
                                w.semaphore,
                                OpValues {
                                    timeline: Some(w.value),
                                    d3d12: None,
                                },
                            )
                        })
                        .collect(),
                });
            }
            let batches = build_batches(q, descs, fence)?;
            q.submit(batches);
            Ok(())
        })())
    })
}

/// # Safety
/// Per `vkQueueWaitIdle`.
pub unsafe extern "system" fn queue_wait_idle(queue: vk::Queue) -> vk::Result {
    guard(|| {
        result((|| {
            // SAFETY: valid handle per valid usage.
            unsafe { self::queue(queue) }?.wait_idle();
            Ok(())
        })())
    })
}

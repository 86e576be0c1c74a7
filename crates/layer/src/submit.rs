//! `vkQueueSubmit` with `VkD3D12FenceSubmitInfoKHR`: D3D12 fence values become timeline values.
//!
//! Only submits that carry a `VkD3D12FenceSubmitInfoKHR` are touched (the layer only intercepts
//! `vkQueueSubmit` at all on devices that offer D3D12_FENCE); every other submit goes to the
//! driver as it came, after one sharded-map lookup of the device.
//!
//! For a submit with D3D12 values the layer builds a copy of the `VkSubmitInfo` whose chain has a
//! `VkTimelineSemaphoreSubmitInfo` (the application's, if it chained one, with its arrays
//! replaced) and no `VkD3D12FenceSubmitInfoKHR`. A semaphore whose payload is a D3D12 fence
//! gets its D3D12 value; any other semaphore keeps the application's timeline value (0 if none;
//! binary semaphores ignore it).
//!
//! **Non-increasing D3D12 signals.** D3D12 lets a fence be signaled with its current value, or
//! a lower one (a rewind); a Vulkan timeline signal must strictly increase, and real drivers lose
//! the device otherwise. The layer keeps, per semaphore, the highest value it has let a signal
//! submit, and also reads the payload's current value from the driver (another process may have
//! signaled it). A D3D12 signal that is not above both is dropped from the submit's signal list:
//! an equal value is what D3D12 would do anyway (the value stays); a lower value is reported as a
//! warning (`tether-layer-d3d12-rewind`) and the fence keeps its higher value, so waits for
//! values in between complete at once. The rest of the submit (work, other signals, the fence)
//! proceeds unchanged. Mapping D3D12 values onto a separate monotonic physical timeline (as
//! Proton does) would need the mapping shared with every process that holds the payload, so the
//! layer does not attempt it.

use std::sync::atomic::Ordering;

use ash::vk;
use ash::vk::Handle;

use crate::device::{DeviceData, device_of};
use crate::dispatch::{ChainCopy, VkResult, chain_has, find_in_chain, guard, slice};
use crate::sync::{SEMAPHORES, SemaphoreData};

/// # Safety
/// Per `vkQueueSubmit`.
pub unsafe extern "system" fn queue_submit(
    queue: vk::Queue,
    count: u32,
    submits: *const vk::SubmitInfo<'_>,
    fence: vk::Fence,
) -> vk::Result {
    guard(vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        // SAFETY: a live queue per valid usage (it shares its device's dispatch key).
        let Some(dev) = (unsafe { device_of(queue.as_raw()) }) else {
            return vk::Result::ERROR_DEVICE_LOST;
        };
        // SAFETY: the array holds `count` submits per valid usage.
        let list = unsafe { slice(submits, count) };
        // SAFETY: each submit's chain is valid.
        let d3d12 = list
            .iter()
            .any(|s| unsafe { chain_has(s.p_next, vk::StructureType::D3D12_FENCE_SUBMIT_INFO_KHR) });
        if !d3d12 {
            // SAFETY: the application's arguments, passed on.
            return unsafe { (dev.fns.queue_submit)(queue, count, submits, fence) };
        }
        let mut prepared = Vec::with_capacity(list.len());
        for s in list {
            // SAFETY: a valid submit per valid usage.
            match unsafe { prepare(&dev, s) } {
                Ok(p) => prepared.push(p),
                Err(e) => return e,
            }
        }
        let infos: Vec<vk::SubmitInfo<'_>> = prepared.iter_mut().map(Prepared::info).collect();
        // SAFETY: the rewritten submits; everything they point to lives in `prepared` or is the
        // application's.
        unsafe { (dev.fns.queue_submit)(queue, infos.len() as u32, infos.as_ptr(), fence) }
    })
}

/// One submit, ready to go down: either the application's untouched, or a rewritten copy and the
/// storage its pointers lead to.
struct Prepared {
    base: vk::SubmitInfo<'static>,
    rewrite: Option<Rewrite>,
}

struct Rewrite {
    chain: ChainCopy,
    signals: Vec<vk::Semaphore>,
    // The value arrays are pointed to from the timeline structure in `chain`; kept here so they
    // live as long as it does.
    _wait_values: Vec<u64>,
    _signal_values: Vec<u64>,
}

impl Prepared {
    fn info(&mut self) -> vk::SubmitInfo<'static> {
        let mut info = self.base;
        if let Some(r) = &mut self.rewrite {
            info.p_next = r.chain.link();
            info.signal_semaphore_count = r.signals.len() as u32;
            info.p_signal_semaphores = r.signals.as_ptr();
        }
        info
    }
}

/// # Safety
/// `s` is a valid submit.
unsafe fn prepare(dev: &DeviceData, s: &vk::SubmitInfo<'_>) -> Result<Prepared, vk::Result> {
    // SAFETY: erasing the lifetime of a copy whose pointers stay valid for the call.
    let base = unsafe { std::mem::transmute::<vk::SubmitInfo<'_>, vk::SubmitInfo<'static>>(*s) };
    // SAFETY: the chain is valid.
    let Some(d3d12) = (unsafe { find_in_chain::<vk::D3D12FenceSubmitInfoKHR<'_>>(s.p_next) }) else {
        return Ok(Prepared { base, rewrite: None });
    };
    if d3d12.wait_semaphore_values_count != s.wait_semaphore_count
        || d3d12.signal_semaphore_values_count != s.signal_semaphore_count
    {
        return Err(dev.reporter().validation(
            "VUID-VkD3D12FenceSubmitInfoKHR-waitSemaphoreValuesCount-00079",
            "VkD3D12FenceSubmitInfoKHR counts must equal the submit's semaphore counts",
        ));
    }
    // SAFETY: the arrays hold the counts their structures give, per valid usage.
    let (waits, signals, d3d12_waits, d3d12_signals) = unsafe {
        (
            slice(s.p_wait_semaphores, s.wait_semaphore_count),
            slice(s.p_signal_semaphores, s.signal_semaphore_count),
            slice(d3d12.p_wait_semaphore_values, d3d12.wait_semaphore_values_count),
            slice(d3d12.p_signal_semaphore_values, d3d12.signal_semaphore_values_count),
        )
    };
    // SAFETY: the chain is valid.
    let timeline = unsafe { find_in_chain::<vk::TimelineSemaphoreSubmitInfo<'_>>(s.p_next) };
    // SAFETY: as above.
    let (app_waits, app_signals) = timeline.map_or((&[][..], &[][..]), |t| unsafe {
        (
            slice(t.p_wait_semaphore_values, t.wait_semaphore_value_count),
            slice(t.p_signal_semaphore_values, t.signal_semaphore_value_count),
        )
    });
    let app_value = |values: &[u64], i: usize| values.get(i).copied().unwrap_or(0);

    let wait_values: Vec<u64> = waits
        .iter()
        .enumerate()
        .map(|(i, &sem)| match d3d12_semaphore(dev, sem) {
            Some(_) => app_value(d3d12_waits, i),
            None => app_value(app_waits, i),
        })
        .collect();
    let mut kept = Vec::with_capacity(signals.len());
    let mut signal_values = Vec::with_capacity(signals.len());
    for (i, &sem) in signals.iter().enumerate() {
        let value = match d3d12_semaphore(dev, sem) {
            Some(data) => {
                let value = app_value(d3d12_signals, i);
                if !admit_signal(dev, sem, &data, value) {
                    continue;
                }
                value
            }
            None => app_value(app_signals, i),
        };
        kept.push(sem);
        signal_values.push(value);
    }

    // SAFETY: the chain is valid.
    let mut chain = unsafe { ChainCopy::new(s.p_next) };
    chain.remove(vk::StructureType::D3D12_FENCE_SUBMIT_INFO_KHR);
    let values = vk::TimelineSemaphoreSubmitInfo {
        wait_semaphore_value_count: wait_values.len() as u32,
        p_wait_semaphore_values: wait_values.as_ptr(),
        signal_semaphore_value_count: signal_values.len() as u32,
        p_signal_semaphore_values: signal_values.as_ptr(),
        ..Default::default()
    };
    if let Some(t) = chain.find_mut::<vk::TimelineSemaphoreSubmitInfo<'_>>() {
        *t = vk::TimelineSemaphoreSubmitInfo {
            p_next: t.p_next,
            ..values
        };
    } else if chain.tail_has(vk::StructureType::TIMELINE_SEMAPHORE_SUBMIT_INFO) {
        return Err(dev.reporter().failure(
            "tether-layer-unknown-structure",
            "the VkSubmitInfo chain holds a structure type the layer cannot copy before its \
             VkTimelineSemaphoreSubmitInfo; put the timeline and D3D12 structures first",
            vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        ));
    } else {
        chain.push_front(values);
    }
    Ok(Prepared {
        base,
        rewrite: Some(Rewrite {
            chain,
            signals: kept,
            _wait_values: wait_values,
            _signal_values: signal_values,
        }),
    })
}

/// The layer's data of a semaphore whose payload is a D3D12 fence.
fn d3d12_semaphore(dev: &DeviceData, sem: vk::Semaphore) -> Option<std::sync::Arc<SemaphoreData>> {
    SEMAPHORES
        .get(&(dev.key, sem.as_raw()))
        .filter(|d| d.timeline && d.d3d12.load(Ordering::Relaxed))
}

/// Whether a D3D12 signal of `value` may reach the driver: only if it is above both the highest
/// value already let through and the payload's current value. Records it if so.
fn admit_signal(dev: &DeviceData, sem: vk::Semaphore, data: &SemaphoreData, value: u64) -> bool {
    let current = counter_value(dev, sem).unwrap_or(0);
    let mut last = data.last_signal.load(Ordering::Acquire);
    loop {
        let floor = last.max(current);
        if value <= floor {
            if value < floor {
                dev.reporter().warning(
                    "tether-layer-d3d12-rewind",
                    &format!(
                        "D3D12 fence signal {value} on semaphore {:#x} is below its value {floor}; a Vulkan \
                         timeline cannot go back, so the signal is skipped and the fence keeps {floor}",
                        sem.as_raw()
                    ),
                );
            } else {
                crate::debug::log(&format!(
                    "D3D12 fence signal {value} on semaphore {:#x} equals its value: skipped (no change)",
                    sem.as_raw()
                ));
            }
            return false;
        }
        match data
            .last_signal
            .compare_exchange_weak(last, value, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return true,
            Err(seen) => last = seen,
        }
    }
}

fn counter_value(dev: &DeviceData, sem: vk::Semaphore) -> VkResult<u64> {
    let get = dev
        .fns
        .get_semaphore_counter_value
        .ok_or(vk::Result::ERROR_INITIALIZATION_FAILED)?;
    let mut value = 0;
    // SAFETY: a timeline semaphore of this device and a writable output.
    let r = unsafe { get(dev.handle, sem, &mut value) };
    if r == vk::Result::SUCCESS { Ok(value) } else { Err(r) }
}

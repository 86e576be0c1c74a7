//! Data written by a batch is visible once its fence or semaphore says so: to the host, and to
//! later batches on other queues.

use ash::vk;
use tether_conformance::harness::{ALL_ROUTES, Route, Test};
use tether_conformance::{Batch, HostBuffer, LONG_NS, Options, TestDevice, tests};

pub fn tests() -> Vec<Test> {
    tests!(ALL_ROUTES => [
        fill_update_copy_visible_after_fence,
        visible_to_a_batch_that_waits_on_a_semaphore,
        visible_after_a_host_timeline_wait,
        host_writes_visible_to_a_later_batch,
        held_batch_writes_nothing_early,
        copy_regions_and_offsets,
    ])
}

/// A device whose workloads the validation layer also checks for hazards (every test here is
/// single-threaded on the host).
fn device(route: Route) -> TestDevice {
    TestDevice::with_options(route, Options::default().with_sync_validation())
}

/// A transfer-to-transfer barrier between commands of one command buffer.
fn transfer_barrier(dev: &TestDevice, cb: vk::CommandBuffer) {
    let barrier = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
        .dst_access_mask(vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE);
    // SAFETY: recording into a command buffer of this device.
    unsafe {
        dev.device.cmd_pipeline_barrier(
            cb,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[barrier],
            &[],
            &[],
        )
    }
}

/// The same barrier through `vkCmdPipelineBarrier2KHR`.
fn transfer_barrier2(dev: &TestDevice, cb: vk::CommandBuffer) {
    let barriers = [vk::MemoryBarrier2::default()
        .src_stage_mask(vk::PipelineStageFlags2::TRANSFER)
        .src_access_mask(vk::AccessFlags2::TRANSFER_WRITE)
        .dst_stage_mask(vk::PipelineStageFlags2::TRANSFER)
        .dst_access_mask(vk::AccessFlags2::TRANSFER_READ | vk::AccessFlags2::TRANSFER_WRITE)];
    let dependency = vk::DependencyInfo::default().memory_barriers(&barriers);
    // SAFETY: recording into a command buffer of this device (synchronization2 enabled).
    unsafe { dev.sync2.cmd_pipeline_barrier2(cb, &dependency) }
}

fn copy(dev: &TestDevice, cb: vk::CommandBuffer, src: &HostBuffer, dst: &HostBuffer, region: vk::BufferCopy) {
    // SAFETY: recording into a command buffer of this device with its buffers; callers keep
    // regions in range.
    unsafe { dev.device.cmd_copy_buffer(cb, src.buffer, dst.buffer, &[region]) }
}

fn fill_update_copy_visible_after_fence(route: Route) {
    let dev = device(route);
    let a = dev.host_buffer(256);
    let b = dev.host_buffer(256);
    let payload: Vec<u8> = (0..64u8).collect();
    let cb = dev.record(|d, cb| {
        // SAFETY: recording transfer commands with buffers of this device, in range.
        unsafe {
            d.device.cmd_fill_buffer(cb, a.buffer, 0, vk::WHOLE_SIZE, 0xaabb_ccdd);
            transfer_barrier(d, cb);
            d.device.cmd_update_buffer(cb, a.buffer, 64, &payload);
        }
        transfer_barrier2(d, cb);
        copy(
            d,
            cb,
            &a,
            &b,
            vk::BufferCopy {
                src_offset: 0,
                dst_offset: 0,
                size: 256,
            },
        );
    });
    let fence = dev.fence(false);
    assert_eq!(dev.submit(0, &[Batch::new().commands(cb)], fence), vk::Result::SUCCESS);
    dev.assert_signals(fence);
    let mut expected = 0xaabb_ccddu32.to_ne_bytes().repeat(64);
    expected[64..128].copy_from_slice(&payload);
    assert_eq!(a.read(), expected);
    assert_eq!(b.read(), expected);
}

/// q0 fills A and signals S; q1 waits for S and copies A to B: B shows the fill.
fn visible_to_a_batch_that_waits_on_a_semaphore(route: Route) {
    let dev = device(route);
    let a = dev.host_buffer(4096);
    let b = dev.host_buffer(4096);
    let gate = dev.timeline_semaphore(0);
    for (round, s) in [dev.binary_semaphore(), dev.timeline_semaphore(0)]
        .into_iter()
        .enumerate()
    {
        let value = 0x1000 + round as u32;
        let fill = dev.fill(&a, value);
        let copy_cb = dev.record(|d, cb| {
            copy(
                d,
                cb,
                &a,
                &b,
                vk::BufferCopy {
                    src_offset: 0,
                    dst_offset: 0,
                    size: 4096,
                },
            )
        });
        let fence = dev.fence(false);
        let gate_value = round as u64 + 1;
        assert_eq!(
            dev.submit(
                0,
                &[Batch::new().wait(gate, gate_value).commands(fill).signal(s, 1)],
                vk::Fence::null()
            ),
            vk::Result::SUCCESS
        );
        assert_eq!(
            dev.submit(1, &[Batch::new().wait(s, 1).commands(copy_cb)], fence),
            vk::Result::SUCCESS
        );
        dev.assert_pending(fence);
        assert_eq!(dev.signal(gate, gate_value), vk::Result::SUCCESS);
        dev.assert_signals(fence);
        assert!(b.read_u32().iter().all(|&w| w == value), "round {round}");
    }
}

/// After a host wait on the timeline value a batch signals, the host sees its writes.
fn visible_after_a_host_timeline_wait(route: Route) {
    let dev = device(route);
    let buf = dev.host_buffer(64 * 1024);
    let t = dev.timeline_semaphore(0);
    for v in 1..=5u64 {
        let cb = dev.fill(&buf, v as u32 * 3);
        assert_eq!(
            dev.submit(
                v as usize % 4,
                &[Batch::new().wait(t, v - 1).commands(cb).signal(t, v)],
                vk::Fence::null()
            ),
            vk::Result::SUCCESS
        );
        assert_eq!(dev.wait_semaphores(&[(t, v)], false, LONG_NS), vk::Result::SUCCESS);
        assert!(buf.read_u32().iter().all(|&w| w == v as u32 * 3), "value {v}");
    }
}

/// What the host wrote before a submit is what the batch reads.
fn host_writes_visible_to_a_later_batch(route: Route) {
    let dev = device(route);
    let a = dev.host_buffer(128);
    let b = dev.host_buffer(128);
    let bytes: Vec<u8> = (0..128u8).map(|i| i.wrapping_mul(7)).collect();
    a.write(0, &bytes);
    let cb = dev.record(|d, cb| {
        copy(
            d,
            cb,
            &a,
            &b,
            vk::BufferCopy {
                src_offset: 0,
                dst_offset: 0,
                size: 128,
            },
        )
    });
    let fence = dev.fence(false);
    assert_eq!(dev.submit(3, &[Batch::new().commands(cb)], fence), vk::Result::SUCCESS);
    dev.assert_signals(fence);
    assert_eq!(b.read(), bytes);
}

/// A batch held by a semaphore wait has not written anything yet.
fn held_batch_writes_nothing_early(route: Route) {
    let dev = device(route);
    let buf = dev.host_buffer(256);
    let t = dev.timeline_semaphore(0);
    let cb = dev.fill(&buf, 0xffff_ffff);
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit(2, &[Batch::new().wait(t, 1).commands(cb)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    assert!(buf.read().iter().all(|&b| b == 0));
    assert_eq!(dev.signal(t, 1), vk::Result::SUCCESS);
    dev.assert_signals(fence);
    assert!(buf.read().iter().all(|&b| b == 0xff));
}

/// Copies with offsets and several regions, fills of part of a buffer, small updates.
fn copy_regions_and_offsets(route: Route) {
    let dev = device(route);
    let src = dev.host_buffer(64);
    let dst = dev.host_buffer(64);
    let bytes: Vec<u8> = (1..=64u8).collect();
    src.write(0, &bytes);
    let cb = dev.record(|d, cb| {
        let regions = [
            vk::BufferCopy {
                src_offset: 0,
                dst_offset: 32,
                size: 8,
            },
            vk::BufferCopy {
                src_offset: 60,
                dst_offset: 0,
                size: 4,
            },
        ];
        // SAFETY: recording transfer commands with buffers of this device, in range.
        unsafe {
            d.device.cmd_fill_buffer(cb, dst.buffer, 8, 8, 0x0101_0101);
            d.device.cmd_copy_buffer(cb, src.buffer, dst.buffer, &regions);
            d.device.cmd_update_buffer(cb, dst.buffer, 48, &[9, 9, 9, 9]);
        }
    });
    let fence = dev.fence(false);
    assert_eq!(dev.submit(1, &[Batch::new().commands(cb)], fence), vk::Result::SUCCESS);
    dev.assert_signals(fence);
    let mut expected = vec![0u8; 64];
    expected[0..4].copy_from_slice(&bytes[60..64]);
    expected[8..16].fill(1);
    expected[32..40].copy_from_slice(&bytes[0..8]);
    expected[48..52].fill(9);
    assert_eq!(dst.read(), expected);
}

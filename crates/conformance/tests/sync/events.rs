//! `VkEvent`: host set/reset/status, the event commands, and `vkCmdWaitEvents` holding a batch
//! until the host sets the event; synchronization2 variants too.
//!
//! The event commands are valid only in command pools of graphics, compute, decode or encode
//! families (VUID-vkCmdSetEvent-commandBuffer-cmdpool and its siblings); tether's one family is
//! transfer-only, so the validation layer reports exactly those VUIDs here and nothing else.

use ash::vk;
use tether_conformance::harness::{ALL_ROUTES, Route, Test};
use tether_conformance::{Options, TestDevice, tests};

pub fn tests() -> Vec<Test> {
    tests!(ALL_ROUTES => [
        host_set_reset_status,
        cmd_set_and_reset,
        cmd_wait_events_blocks_until_host_set,
        cmd_wait_events_needs_every_event,
        cmd_set_then_wait_in_one_command_buffer,
        sync2_set_and_reset,
        sync2_wait_blocks_until_host_set,
        sync2_set_then_wait_in_one_command_buffer,
    ])
}

/// A device on which event commands may be recorded: the validation layer's
/// `-commandBuffer-cmdpool` errors (transfer-only family) are the only ones tolerated.
fn event_device(route: Route) -> TestDevice {
    TestDevice::with_options(
        route,
        Options::default()
            .allow("-commandBuffer-cmdpool")
            .with_sync_validation(),
    )
}

fn host_set_reset_status(route: Route) {
    let dev = TestDevice::new(route);
    let e = dev.event();
    assert_eq!(dev.event_status(e), vk::Result::EVENT_RESET);
    dev.set_event(e);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_SET);
    dev.set_event(e);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_SET);
    dev.reset_event(e);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_RESET);
    dev.reset_event(e);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_RESET);
}

fn submit_and_wait(dev: &TestDevice, cb: vk::CommandBuffer) {
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit(0, &[tether_conformance::Batch::new().commands(cb)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_signals(fence);
}

fn cmd_set_and_reset(route: Route) {
    let dev = event_device(route);
    let e = dev.event();
    let set = dev.record(|d, cb| {
        // SAFETY: recording into a command buffer of this device with an event of it.
        unsafe { d.device.cmd_set_event(cb, e, vk::PipelineStageFlags::TRANSFER) }
    });
    let reset = dev.record(|d, cb| {
        // SAFETY: as above.
        unsafe { d.device.cmd_reset_event(cb, e, vk::PipelineStageFlags::TRANSFER) }
    });
    submit_and_wait(&dev, set);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_SET);
    submit_and_wait(&dev, reset);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_RESET);
}

/// Records waits on `events` (set by the host) followed by a fill of `buf` with 0x77.
fn wait_then_fill(dev: &TestDevice, events: &[vk::Event], buf: &tether_conformance::HostBuffer) -> vk::CommandBuffer {
    dev.record(|d, cb| {
        let barrier = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::HOST_WRITE)
            .dst_access_mask(vk::AccessFlags::TRANSFER_WRITE);
        // SAFETY: recording into a command buffer of this device with its events and buffer.
        unsafe {
            d.device.cmd_wait_events(
                cb,
                events,
                vk::PipelineStageFlags::HOST,
                vk::PipelineStageFlags::TRANSFER,
                &[barrier],
                &[],
                &[],
            );
            d.device.cmd_fill_buffer(cb, buf.buffer, 0, vk::WHOLE_SIZE, 0x77);
        }
    })
}

fn cmd_wait_events_blocks_until_host_set(route: Route) {
    let dev = event_device(route);
    let e = dev.event();
    let buf = dev.host_buffer(64);
    let cb = wait_then_fill(&dev, &[e], &buf);
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit(1, &[tether_conformance::Batch::new().commands(cb)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    assert!(
        buf.read().iter().all(|&b| b == 0),
        "the fill ran before the event was set"
    );
    dev.set_event(e);
    dev.assert_signals(fence);
    assert!(buf.read_u32().iter().all(|&w| w == 0x77));
}

fn cmd_wait_events_needs_every_event(route: Route) {
    let dev = event_device(route);
    let events = [dev.event(), dev.event(), dev.event()];
    let buf = dev.host_buffer(16);
    let cb = wait_then_fill(&dev, &events, &buf);
    let fence = dev.fence(false);
    dev.set_event(events[1]);
    assert_eq!(
        dev.submit(2, &[tether_conformance::Batch::new().commands(cb)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    dev.set_event(events[0]);
    dev.assert_pending(fence);
    dev.set_event(events[2]);
    dev.assert_signals(fence);
    assert!(buf.read_u32().iter().all(|&w| w == 0x77));
}

fn cmd_set_then_wait_in_one_command_buffer(route: Route) {
    let dev = event_device(route);
    let e = dev.event();
    let buf = dev.host_buffer(16);
    let cb = dev.record(|d, cb| {
        let barrier = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::TRANSFER_WRITE);
        // SAFETY: recording into a command buffer of this device with its event and buffer.
        unsafe {
            d.device.cmd_fill_buffer(cb, buf.buffer, 0, vk::WHOLE_SIZE, 1);
            d.device.cmd_set_event(cb, e, vk::PipelineStageFlags::TRANSFER);
            d.device.cmd_wait_events(
                cb,
                &[e],
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::TRANSFER,
                &[barrier],
                &[],
                &[],
            );
            d.device.cmd_fill_buffer(cb, buf.buffer, 0, vk::WHOLE_SIZE, 2);
        }
    });
    submit_and_wait(&dev, cb);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_SET);
    assert!(buf.read_u32().iter().all(|&w| w == 2));
}

fn transfer_dependency() -> [vk::MemoryBarrier2<'static>; 1] {
    [vk::MemoryBarrier2::default()
        .src_stage_mask(vk::PipelineStageFlags2::TRANSFER)
        .src_access_mask(vk::AccessFlags2::TRANSFER_WRITE)
        .dst_stage_mask(vk::PipelineStageFlags2::TRANSFER)
        .dst_access_mask(vk::AccessFlags2::TRANSFER_WRITE)]
}

fn sync2_set_and_reset(route: Route) {
    let dev = event_device(route);
    let e = dev.event();
    let barriers = transfer_dependency();
    let dependency = vk::DependencyInfo::default().memory_barriers(&barriers);
    let set = dev.record(|d, cb| {
        // SAFETY: recording into a command buffer of this device (synchronization2 enabled).
        unsafe { d.sync2.cmd_set_event2(cb, e, &dependency) }
    });
    let reset = dev.record(|d, cb| {
        // SAFETY: as above.
        unsafe { d.sync2.cmd_reset_event2(cb, e, vk::PipelineStageFlags2::TRANSFER) }
    });
    submit_and_wait(&dev, set);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_SET);
    submit_and_wait(&dev, reset);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_RESET);
}

fn sync2_wait_blocks_until_host_set(route: Route) {
    let dev = event_device(route);
    let e = dev.event();
    let buf = dev.host_buffer(32);
    let barriers = [vk::MemoryBarrier2::default()
        .src_stage_mask(vk::PipelineStageFlags2::HOST)
        .src_access_mask(vk::AccessFlags2::HOST_WRITE)
        .dst_stage_mask(vk::PipelineStageFlags2::TRANSFER)
        .dst_access_mask(vk::AccessFlags2::TRANSFER_WRITE)];
    let dependencies = [vk::DependencyInfo::default().memory_barriers(&barriers)];
    let cb = dev.record(|d, cb| {
        // SAFETY: recording into a command buffer of this device with its event and buffer.
        unsafe {
            d.sync2.cmd_wait_events2(cb, &[e], &dependencies);
            d.device.cmd_fill_buffer(cb, buf.buffer, 0, vk::WHOLE_SIZE, 0x99);
        }
    });
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit2(3, &[tether_conformance::Batch::new().commands(cb)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    assert!(buf.read().iter().all(|&b| b == 0));
    dev.set_event(e);
    dev.assert_signals(fence);
    assert!(buf.read_u32().iter().all(|&w| w == 0x99));
}

fn sync2_set_then_wait_in_one_command_buffer(route: Route) {
    let dev = event_device(route);
    let e = dev.event();
    let buf = dev.host_buffer(16);
    let barriers = transfer_dependency();
    let dependency = vk::DependencyInfo::default().memory_barriers(&barriers);
    let cb = dev.record(|d, cb| {
        // SAFETY: recording into a command buffer of this device with its event and buffer; the
        // wait's dependency info is the set's, as VUID-vkCmdWaitEvents2-pEvents-03838 asks.
        unsafe {
            d.device.cmd_fill_buffer(cb, buf.buffer, 0, vk::WHOLE_SIZE, 3);
            d.sync2.cmd_set_event2(cb, e, &dependency);
            d.sync2.cmd_wait_events2(cb, &[e], std::slice::from_ref(&dependency));
            d.device.cmd_fill_buffer(cb, buf.buffer, 0, vk::WHOLE_SIZE, 4);
        }
    });
    submit_and_wait(&dev, cb);
    assert_eq!(dev.event_status(e), vk::Result::EVENT_SET);
    assert!(buf.read_u32().iter().all(|&w| w == 4));
}

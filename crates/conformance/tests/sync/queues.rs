//! Queues: both submit commands, batch order, idle waits, submits that never block, and many
//! queues and threads at once.

use ash::vk;
use tether_conformance::harness::{ALL_ROUTES, Route, Test};
use tether_conformance::{Batch, LONG_NS, TestDevice, tests};

pub fn tests() -> Vec<Test> {
    tests!(ALL_ROUTES => [
        submit2_waits_signals_fence,
        batches_run_in_order,
        queue_wait_idle,
        device_wait_idle,
        submit_never_blocks,
        one_thread_per_queue_with_cross_queue_waits,
        threads_share_queues,
    ])
}

/// `vkQueueSubmit2KHR`: a timeline and a binary signal on one queue release a batch on another.
fn submit2_waits_signals_fence(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    let b = dev.binary_semaphore();
    let fence = dev.fence(false);
    let gate = dev.timeline_semaphore(0);
    assert_eq!(
        dev.submit2(
            0,
            &[Batch::new().wait(gate, 1).signal(t, 1).signal(b, 0)],
            vk::Fence::null()
        ),
        vk::Result::SUCCESS
    );
    assert_eq!(
        dev.submit2(1, &[Batch::new().wait(t, 1).wait(b, 0)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
    dev.assert_signals(fence);
    assert_eq!(dev.counter(t), 1);
}

/// Batch i copies word i-1 to word i; only in-order execution leaves every word set. The first
/// batch is held so all are queued before any runs.
fn batches_run_in_order(route: Route) {
    const N: usize = 32;
    let dev = TestDevice::new(route);
    let buf = dev.host_buffer(4 * N as u64);
    let gate = dev.timeline_semaphore(0);
    let first = dev.record(|d, cb| {
        // SAFETY: recording into a command buffer of this device with its buffer.
        unsafe { d.device.cmd_update_buffer(cb, buf.buffer, 0, &1u32.to_ne_bytes()) }
    });
    let mut batches = vec![Batch::new().wait(gate, 1).commands(first)];
    for i in 1..N as u64 {
        let cb = dev.record(|d, cb| {
            let region = vk::BufferCopy {
                src_offset: 4 * (i - 1),
                dst_offset: 4 * i,
                size: 4,
            };
            // SAFETY: as above; the regions lie inside the buffer and do not overlap.
            unsafe { d.device.cmd_copy_buffer(cb, buf.buffer, buf.buffer, &[region]) }
        });
        batches.push(Batch::new().commands(cb));
    }
    let fence = dev.fence(false);
    // Half in one submit, half one submit each.
    let (head, tail) = batches.split_at(N / 2);
    assert_eq!(dev.submit(0, head, vk::Fence::null()), vk::Result::SUCCESS);
    for (i, b) in tail.iter().enumerate() {
        let f = if i == tail.len() - 1 { fence } else { vk::Fence::null() };
        assert_eq!(dev.submit(0, std::slice::from_ref(b), f), vk::Result::SUCCESS);
    }
    dev.assert_pending(fence);
    assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
    dev.assert_signals(fence);
    assert_eq!(buf.read_u32(), vec![1; N]);
}

fn queue_wait_idle(route: Route) {
    let dev = TestDevice::new(route);
    let buf = dev.host_buffer(1024);
    let fences: Vec<_> = (0..8).map(|_| dev.fence(false)).collect();
    for (i, &f) in fences.iter().enumerate() {
        let cb = dev.fill(&buf, i as u32);
        assert_eq!(dev.submit(2, &[Batch::new().commands(cb)], f), vk::Result::SUCCESS);
    }
    assert_eq!(dev.queue_wait_idle(2), vk::Result::SUCCESS);
    for &f in &fences {
        assert_eq!(dev.fence_status(f), vk::Result::SUCCESS);
    }
    assert!(buf.read_u32().iter().all(|&w| w == 7));
    // Idle queues return at once.
    for q in 0..dev.queue_count() {
        assert_eq!(dev.queue_wait_idle(q), vk::Result::SUCCESS);
    }
}

fn device_wait_idle(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    let bufs: Vec<_> = (0..dev.queue_count()).map(|_| dev.host_buffer(4096)).collect();
    let fences: Vec<_> = (0..dev.queue_count()).map(|_| dev.fence(false)).collect();
    for (q, &f) in fences.iter().enumerate() {
        let cbs: Vec<_> = (0..4).map(|i| dev.fill(&bufs[q], (q * 4 + i) as u32)).collect();
        let batches: Vec<_> = cbs.iter().map(|&cb| Batch::new().commands(cb)).collect();
        assert_eq!(dev.submit(q, &batches, f), vk::Result::SUCCESS);
    }
    // Queue 3 also signals a timeline the others wait for: still all done at idle.
    assert_eq!(
        dev.submit(3, &[Batch::new().signal(t, 1)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    assert_eq!(
        dev.submit(0, &[Batch::new().wait(t, 1)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    assert_eq!(dev.device_wait_idle(), vk::Result::SUCCESS);
    for (q, &f) in fences.iter().enumerate() {
        assert_eq!(dev.fence_status(f), vk::Result::SUCCESS);
        assert!(bufs[q].read_u32().iter().all(|&w| w == (q * 4 + 3) as u32));
    }
    assert_eq!(dev.counter(t), 1);
}

/// A submit that waits on a timeline nobody has signaled returns at once, and so do the
/// submits queued behind it on the same queue.
fn submit_never_blocks(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    let fences: Vec<_> = (0..5).map(|_| dev.fence(false)).collect();
    assert_eq!(
        dev.submit(0, &[Batch::new().wait(t, 1)], fences[0]),
        vk::Result::SUCCESS
    );
    for &f in &fences[1..] {
        assert_eq!(dev.submit(0, &[Batch::new()], f), vk::Result::SUCCESS);
    }
    // Another queue is not held up by the blocked one.
    let other = dev.fence(false);
    assert_eq!(dev.submit(1, &[Batch::new()], other), vk::Result::SUCCESS);
    dev.assert_signals(other);
    for &f in &fences {
        dev.assert_pending(f);
    }
    assert_eq!(dev.signal(t, 1), vk::Result::SUCCESS);
    assert_eq!(dev.wait_fences(&fences, true, LONG_NS), vk::Result::SUCCESS);
}

/// Four threads, one per queue, submit at once; queue k's batch i waits for queue k-1's value
/// i, so work flows across all queues while they are being fed.
fn one_thread_per_queue_with_cross_queue_waits(route: Route) {
    const BATCHES: u64 = 40;
    let dev = TestDevice::new(route);
    let timelines: Vec<_> = (0..dev.queue_count()).map(|_| dev.timeline_semaphore(0)).collect();
    let fences: Vec<_> = (0..dev.queue_count()).map(|_| dev.fence(false)).collect();
    std::thread::scope(|s| {
        for q in 0..dev.queue_count() {
            let (dev, timelines, fence) = (&dev, &timelines, fences[q]);
            s.spawn(move || {
                for i in 1..=BATCHES {
                    let mut batch = Batch::new().signal(timelines[q], i);
                    if q > 0 {
                        batch = batch.wait(timelines[q - 1], i);
                    }
                    let f = if i == BATCHES { fence } else { vk::Fence::null() };
                    assert_eq!(dev.submit(q, &[batch], f), vk::Result::SUCCESS);
                }
            });
        }
    });
    assert_eq!(dev.wait_fences(&fences, true, LONG_NS), vk::Result::SUCCESS);
    for &t in &timelines {
        assert_eq!(dev.counter(t), BATCHES);
    }
}

/// Eight threads on four queues (two per queue, serialized by the queue's lock as the spec
/// requires), each with its own timeline and buffer.
fn threads_share_queues(route: Route) {
    const BATCHES: u64 = 25;
    let dev = TestDevice::new(route);
    let work: Vec<_> = (0..8)
        .map(|_| (dev.timeline_semaphore(0), dev.host_buffer(64), dev.fence(false)))
        .collect();
    std::thread::scope(|s| {
        for (k, &(t, buf, fence)) in work.iter().enumerate() {
            let dev = &dev;
            s.spawn(move || {
                for i in 1..=BATCHES {
                    let cb = dev.fill(&buf, (k as u32) << 16 | i as u32);
                    let f = if i == BATCHES { fence } else { vk::Fence::null() };
                    assert_eq!(
                        dev.submit(k % 4, &[Batch::new().commands(cb).signal(t, i)], f),
                        vk::Result::SUCCESS
                    );
                }
                assert_eq!(
                    dev.wait_semaphores(&[(t, BATCHES)], false, LONG_NS),
                    vk::Result::SUCCESS
                );
            });
        }
    });
    for (k, &(t, buf, fence)) in work.iter().enumerate() {
        dev.assert_signals(fence);
        assert_eq!(dev.counter(t), BATCHES);
        let expected = (k as u32) << 16 | BATCHES as u32;
        assert!(buf.read_u32().iter().all(|&w| w == expected));
    }
}

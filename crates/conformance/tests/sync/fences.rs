//! `VkFence`: creation state, status, reset, host waits (all/any, with timeouts) and queue
//! signals, from one thread and from many.

use ash::vk;
use tether_conformance::harness::{ALL_ROUTES, Route, Test};
use tether_conformance::{Batch, LONG_NS, SHORT_NS, TestDevice, tests};

pub fn tests() -> Vec<Test> {
    tests!(ALL_ROUTES => [
        created_signaled_or_not,
        reset_unsignals,
        wait_timeouts,
        wait_all_and_any,
        empty_submit_signals,
        submit_with_command_buffers_signals,
        fence_per_queue,
        reuse_after_reset,
        fence_waits_for_every_batch_of_the_submit,
        waits_from_many_threads,
        wait_any_wakes_on_a_later_signal,
    ])
}

fn created_signaled_or_not(route: Route) {
    let dev = TestDevice::new(route);
    let on = dev.fence(true);
    let off = dev.fence(false);
    assert_eq!(dev.fence_status(on), vk::Result::SUCCESS);
    assert_eq!(dev.fence_status(off), vk::Result::NOT_READY);
    // Status does not change a fence.
    assert_eq!(dev.fence_status(on), vk::Result::SUCCESS);
    assert_eq!(dev.fence_status(off), vk::Result::NOT_READY);
}

fn reset_unsignals(route: Route) {
    let dev = TestDevice::new(route);
    let a = dev.fence(true);
    let b = dev.fence(false);
    dev.reset_fences(&[a, b]);
    assert_eq!(dev.fence_status(a), vk::Result::NOT_READY);
    assert_eq!(dev.fence_status(b), vk::Result::NOT_READY);
    dev.reset_fences(&[a]);
    assert_eq!(dev.fence_status(a), vk::Result::NOT_READY);
}

fn wait_timeouts(route: Route) {
    let dev = TestDevice::new(route);
    let on = dev.fence(true);
    let off = dev.fence(false);
    for timeout in [0, SHORT_NS] {
        assert_eq!(
            dev.wait_fences(&[off], true, timeout),
            vk::Result::TIMEOUT,
            "timeout {timeout}"
        );
        assert_eq!(
            dev.wait_fences(&[off], false, timeout),
            vk::Result::TIMEOUT,
            "timeout {timeout}"
        );
    }
    for timeout in [0, SHORT_NS, u64::MAX] {
        assert_eq!(
            dev.wait_fences(&[on], true, timeout),
            vk::Result::SUCCESS,
            "timeout {timeout}"
        );
    }
}

fn wait_all_and_any(route: Route) {
    let dev = TestDevice::new(route);
    let on = dev.fence(true);
    let off = dev.fence(false);
    assert_eq!(dev.wait_fences(&[on, off], false, 0), vk::Result::SUCCESS);
    assert_eq!(dev.wait_fences(&[off, on], false, SHORT_NS), vk::Result::SUCCESS);
    assert_eq!(dev.wait_fences(&[on, off], true, 0), vk::Result::TIMEOUT);
    assert_eq!(dev.wait_fences(&[on, off], true, SHORT_NS), vk::Result::TIMEOUT);
    assert_eq!(dev.submit(0, &[], off), vk::Result::SUCCESS);
    assert_eq!(dev.wait_fences(&[on, off], true, LONG_NS), vk::Result::SUCCESS);
    assert_eq!(dev.wait_fences(&[on, off], true, u64::MAX), vk::Result::SUCCESS);
    assert_eq!(dev.wait_fences(&[off, on], true, 0), vk::Result::SUCCESS);
}

fn empty_submit_signals(route: Route) {
    let dev = TestDevice::new(route);
    let a = dev.fence(false);
    let b = dev.fence(false);
    // No batches at all, and one empty batch.
    assert_eq!(dev.submit(0, &[], a), vk::Result::SUCCESS);
    assert_eq!(dev.submit(0, &[Batch::new()], b), vk::Result::SUCCESS);
    dev.assert_signals(a);
    dev.assert_signals(b);
    let c = dev.fence(false);
    assert_eq!(dev.submit2(1, &[], c), vk::Result::SUCCESS);
    dev.assert_signals(c);
}

fn submit_with_command_buffers_signals(route: Route) {
    let dev = TestDevice::new(route);
    let buf = dev.host_buffer(256);
    let cbs = [dev.fill(&buf, 7), dev.fill(&buf, 9)];
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit(2, &[Batch::new().commands(cbs[0]).commands(cbs[1])], fence),
        vk::Result::SUCCESS
    );
    dev.assert_signals(fence);
    assert!(buf.read_u32().iter().all(|&w| w == 9));
}

fn fence_per_queue(route: Route) {
    let dev = TestDevice::new(route);
    let fences: Vec<_> = (0..dev.queue_count()).map(|_| dev.fence(false)).collect();
    for (q, &f) in fences.iter().enumerate() {
        assert_eq!(dev.submit(q, &[Batch::new()], f), vk::Result::SUCCESS);
    }
    assert_eq!(dev.wait_fences(&fences, true, LONG_NS), vk::Result::SUCCESS);
}

fn reuse_after_reset(route: Route) {
    let dev = TestDevice::new(route);
    let fence = dev.fence(false);
    for round in 0..20 {
        assert_eq!(dev.submit(round % 4, &[Batch::new()], fence), vk::Result::SUCCESS);
        dev.assert_signals(fence);
        dev.reset_fences(&[fence]);
        assert_eq!(dev.fence_status(fence), vk::Result::NOT_READY);
    }
}

/// A submit's fence signals when all its batches are done, not after the first.
fn fence_waits_for_every_batch_of_the_submit(route: Route) {
    let dev = TestDevice::new(route);
    let gate = dev.timeline_semaphore(0);
    let fence = dev.fence(false);
    let batches = [Batch::new(), Batch::new(), Batch::new().wait(gate, 1)];
    assert_eq!(dev.submit(0, &batches, fence), vk::Result::SUCCESS);
    dev.assert_pending(fence);
    assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
    dev.assert_signals(fence);
}

/// Several threads wait on one fence at once; one submit releases all of them.
fn waits_from_many_threads(route: Route) {
    let dev = TestDevice::new(route);
    let fence = dev.fence(false);
    let gate = dev.timeline_semaphore(0);
    assert_eq!(dev.submit(1, &[Batch::new().wait(gate, 1)], fence), vk::Result::SUCCESS);
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..6)
            .map(|i| {
                let dev = &dev;
                s.spawn(move || {
                    let all = i % 2 == 0;
                    dev.wait_fences(&[fence], all, LONG_NS)
                })
            })
            .collect();
        dev.assert_pending(fence);
        assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
        for w in waiters {
            assert_eq!(w.join().unwrap(), vk::Result::SUCCESS);
        }
    });
}

fn wait_any_wakes_on_a_later_signal(route: Route) {
    let dev = TestDevice::new(route);
    let fences = [dev.fence(false), dev.fence(false), dev.fence(false)];
    let gate = dev.timeline_semaphore(0);
    assert_eq!(
        dev.submit(3, &[Batch::new().wait(gate, 1)], fences[2]),
        vk::Result::SUCCESS
    );
    std::thread::scope(|s| {
        let any = s.spawn(|| dev.wait_fences(&fences, false, LONG_NS));
        let all = s.spawn(|| dev.wait_fences(&fences, true, SHORT_NS));
        assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
        assert_eq!(any.join().unwrap(), vk::Result::SUCCESS);
        assert_eq!(all.join().unwrap(), vk::Result::TIMEOUT);
    });
    assert_eq!(dev.fence_status(fences[2]), vk::Result::SUCCESS);
    assert_eq!(dev.wait_fences(&fences[..2], false, 0), vk::Result::TIMEOUT);
}

//! Timeline semaphores: host signals and waits (all/any, timeouts), counter values, queue
//! signals, wait-before-signal, 64-bit values, many waiters.

use ash::vk;
use tether_conformance::harness::{ALL_ROUTES, Route, Test};
use tether_conformance::{Batch, LONG_NS, SHORT_NS, TestDevice, tests};

pub fn tests() -> Vec<Test> {
    tests!(ALL_ROUTES => [
        initial_value_and_host_signal,
        host_wait_all_and_any,
        wait_before_signal,
        queue_signals_values,
        batches_signal_in_order,
        queue_wait_and_signal_same_timeline,
        values_beyond_32_bits,
        values_near_half_of_u64,
        many_threads_wait_for_different_values,
        wait_any_of_many_timelines,
        submit2_timeline,
        khr_aliases,
    ])
}

fn initial_value_and_host_signal(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(7);
    assert_eq!(dev.counter(t), 7);
    assert_eq!(dev.signal(t, 10), vk::Result::SUCCESS);
    assert_eq!(dev.counter(t), 10);
    assert_eq!(dev.wait_semaphores(&[(t, 10)], false, 0), vk::Result::SUCCESS);
    assert_eq!(dev.wait_semaphores(&[(t, 3)], false, 0), vk::Result::SUCCESS);
    assert_eq!(dev.wait_semaphores(&[(t, 11)], false, 0), vk::Result::TIMEOUT);
    let zero = dev.timeline_semaphore(0);
    assert_eq!(dev.counter(zero), 0);
}

fn host_wait_all_and_any(route: Route) {
    let dev = TestDevice::new(route);
    let (a, b) = (dev.timeline_semaphore(0), dev.timeline_semaphore(0));
    for any in [false, true] {
        for timeout in [0, SHORT_NS] {
            assert_eq!(
                dev.wait_semaphores(&[(a, 1), (b, 1)], any, timeout),
                vk::Result::TIMEOUT
            );
        }
    }
    assert_eq!(dev.signal(a, 1), vk::Result::SUCCESS);
    assert_eq!(dev.wait_semaphores(&[(a, 1), (b, 1)], true, 0), vk::Result::SUCCESS);
    assert_eq!(
        dev.wait_semaphores(&[(b, 1), (a, 1)], true, u64::MAX),
        vk::Result::SUCCESS
    );
    assert_eq!(
        dev.wait_semaphores(&[(a, 1), (b, 1)], false, SHORT_NS),
        vk::Result::TIMEOUT
    );
    assert_eq!(dev.signal(b, 2), vk::Result::SUCCESS);
    assert_eq!(
        dev.wait_semaphores(&[(a, 1), (b, 2)], false, u64::MAX),
        vk::Result::SUCCESS
    );
}

/// A batch waiting on a value nobody signaled yet is accepted at once (a submit never blocks)
/// and runs when the host signals it.
fn wait_before_signal(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    let fence = dev.fence(false);
    assert_eq!(dev.submit(0, &[Batch::new().wait(t, 5)], fence), vk::Result::SUCCESS);
    dev.assert_pending(fence);
    assert_eq!(dev.signal(t, 3), vk::Result::SUCCESS);
    dev.assert_pending(fence);
    assert_eq!(dev.signal(t, 5), vk::Result::SUCCESS);
    dev.assert_signals(fence);
}

fn queue_signals_values(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    assert_eq!(
        dev.submit(0, &[Batch::new().signal(t, 3)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    assert_eq!(dev.wait_semaphores(&[(t, 3)], false, LONG_NS), vk::Result::SUCCESS);
    assert_eq!(dev.counter(t), 3);
    assert_eq!(
        dev.submit(1, &[Batch::new().wait(t, 3).signal(t, 8)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    assert_eq!(dev.wait_semaphores(&[(t, 8)], false, LONG_NS), vk::Result::SUCCESS);
    assert_eq!(dev.counter(t), 8);
}

/// Batches on one queue signal increasing values in submission order; the first is held back so
/// all are queued before any runs.
fn batches_signal_in_order(route: Route) {
    let dev = TestDevice::new(route);
    let gate = dev.timeline_semaphore(0);
    let t = dev.timeline_semaphore(0);
    let mut batches = vec![Batch::new().wait(gate, 1).signal(t, 1)];
    batches.extend((2..=20).map(|v| Batch::new().signal(t, v)));
    assert_eq!(dev.submit(2, &batches, vk::Fence::null()), vk::Result::SUCCESS);
    assert_eq!(dev.wait_semaphores(&[(t, 1)], false, SHORT_NS), vk::Result::TIMEOUT);
    assert_eq!(dev.counter(t), 0);
    assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
    assert_eq!(dev.wait_semaphores(&[(t, 20)], false, LONG_NS), vk::Result::SUCCESS);
    assert_eq!(dev.counter(t), 20);
}

/// q0 waits for 2 and signals 3; q1 signals 2 afterwards.
fn queue_wait_and_signal_same_timeline(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit(0, &[Batch::new().wait(t, 2).signal(t, 3)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    assert_eq!(
        dev.submit(1, &[Batch::new().signal(t, 2)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    dev.assert_signals(fence);
    assert_eq!(dev.counter(t), 3);
}

/// No 32-bit truncation anywhere: 2^32 + 1 is not 1.
fn values_beyond_32_bits(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(1);
    let big = (1u64 << 32) + 1;
    assert_eq!(dev.wait_semaphores(&[(t, big)], false, 0), vk::Result::TIMEOUT);
    assert_eq!(dev.signal(t, big), vk::Result::SUCCESS);
    assert_eq!(dev.counter(t), big);
    assert_eq!(dev.wait_semaphores(&[(t, big + 1)], false, 0), vk::Result::TIMEOUT);
    assert_eq!(
        dev.submit(
            0,
            &[Batch::new().wait(t, big).signal(t, big + (1 << 33))],
            vk::Fence::null()
        ),
        vk::Result::SUCCESS
    );
    assert_eq!(
        dev.wait_semaphores(&[(t, big + (1 << 33))], false, LONG_NS),
        vk::Result::SUCCESS
    );
    assert_eq!(dev.counter(t), big + (1 << 33));
}

/// Values around u64::MAX / 2, from the host and from a queue.
fn values_near_half_of_u64(route: Route) {
    let dev = TestDevice::new(route);
    let half = u64::MAX / 2;
    let t = dev.timeline_semaphore(half - 10);
    assert_eq!(dev.counter(t), half - 10);
    assert_eq!(dev.wait_semaphores(&[(t, half)], false, 0), vk::Result::TIMEOUT);
    assert_eq!(dev.signal(t, half), vk::Result::SUCCESS);
    assert_eq!(dev.wait_semaphores(&[(t, half)], false, 0), vk::Result::SUCCESS);
    assert_eq!(dev.wait_semaphores(&[(t, half + 1)], false, 0), vk::Result::TIMEOUT);
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit(3, &[Batch::new().wait(t, half + 1).signal(t, half + 5)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    assert_eq!(dev.signal(t, half + 1), vk::Result::SUCCESS);
    dev.assert_signals(fence);
    assert_eq!(dev.counter(t), half + 5);
}

/// Eight threads wait for eight values; the host signals them one by one. Each waiter wakes with
/// the counter at or above its value.
fn many_threads_wait_for_different_values(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    std::thread::scope(|s| {
        let waiters: Vec<_> = (1..=8u64)
            .map(|v| {
                let dev = &dev;
                s.spawn(move || {
                    let r = dev.wait_semaphores(&[(t, v)], false, LONG_NS);
                    (v, r, dev.counter(t))
                })
            })
            .collect();
        for v in 1..=8 {
            assert_eq!(dev.signal(t, v), vk::Result::SUCCESS);
        }
        for w in waiters {
            let (v, r, seen) = w.join().unwrap();
            assert_eq!(r, vk::Result::SUCCESS, "waiter for {v}");
            assert!(seen >= v, "waiter for {v} woke at {seen}");
        }
    });
}

/// A wait-any over four timelines wakes when the third is signaled by a queue.
fn wait_any_of_many_timelines(route: Route) {
    let dev = TestDevice::new(route);
    let ts: Vec<_> = (0..4).map(|_| dev.timeline_semaphore(0)).collect();
    let gate = dev.timeline_semaphore(0);
    assert_eq!(
        dev.submit(1, &[Batch::new().wait(gate, 1).signal(ts[2], 4)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    let waits: Vec<_> = ts.iter().map(|&t| (t, 4)).collect();
    std::thread::scope(|s| {
        let any = s.spawn(|| dev.wait_semaphores(&waits, true, LONG_NS));
        assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
        assert_eq!(any.join().unwrap(), vk::Result::SUCCESS);
    });
    assert_eq!(dev.wait_semaphores(&waits, false, 0), vk::Result::TIMEOUT);
    assert_eq!(dev.counter(ts[2]), 4);
}

fn submit2_timeline(route: Route) {
    let dev = TestDevice::new(route);
    let t = dev.timeline_semaphore(0);
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit2(0, &[Batch::new().wait(t, 2).signal(t, 4)], fence),
        vk::Result::SUCCESS
    );
    dev.assert_pending(fence);
    assert_eq!(
        dev.submit2(1, &[Batch::new().signal(t, 2)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    dev.assert_signals(fence);
    assert_eq!(dev.counter(t), 4);
}

/// The VK_KHR_timeline_semaphore entry points behave as the core ones.
fn khr_aliases(route: Route) {
    let dev = TestDevice::new(route);
    let khr = ash::khr::timeline_semaphore::Device::new(&dev.inst.instance, &dev.device);
    let t = dev.timeline_semaphore(2);
    let semaphores = [t];
    let values = [5u64];
    // SAFETY: a timeline semaphore of this device and arrays of matching length.
    unsafe {
        assert_eq!(khr.get_semaphore_counter_value(t), Ok(2));
        khr.signal_semaphore(&vk::SemaphoreSignalInfo::default().semaphore(t).value(5))
            .unwrap();
        let wait = vk::SemaphoreWaitInfo::default().semaphores(&semaphores).values(&values);
        assert_eq!(khr.wait_semaphores(&wait, 0), Ok(()));
        assert_eq!(khr.get_semaphore_counter_value(t), Ok(5));
    }
}

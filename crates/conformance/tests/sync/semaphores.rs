//! Binary semaphores: a signal in one batch releases a wait in another, on any queue; a wait
//! consumes the signal.

use ash::vk;
use tether_conformance::harness::{ALL_ROUTES, Route, Test};
use tether_conformance::{Batch, Options, TestDevice, tests};

pub fn tests() -> Vec<Test> {
    tests!(ALL_ROUTES => [
        signal_then_wait_on_another_queue,
        wait_consumes_the_signal,
        wait_submitted_before_its_signal,
        chain_across_four_queues,
        ping_pong_between_queues,
        signal_and_wait_in_one_submit,
        submit2_binary,
    ])
}

fn signal_then_wait_on_another_queue(route: Route) {
    let dev = TestDevice::new(route);
    let s = dev.binary_semaphore();
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit(0, &[Batch::new().signal(s, 0)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    assert_eq!(dev.submit(1, &[Batch::new().wait(s, 0)], fence), vk::Result::SUCCESS);
    dev.assert_signals(fence);
}

/// Submitting a binary wait with no signal submitted before it breaks
/// VUID-vkQueueSubmit-pWaitSemaphores-03238, so these run without the validation layer; the
/// driver still has to wait for the later signal rather than fail or hang.
fn unvalidated(route: Route) -> TestDevice {
    TestDevice::with_options(route, Options::without_validation_layer())
}

/// A wait takes the signal: a second wait blocks until a second signal.
fn wait_consumes_the_signal(route: Route) {
    let dev = unvalidated(route);
    let s = dev.binary_semaphore();
    let first = dev.fence(false);
    let second = dev.fence(false);
    assert_eq!(
        dev.submit(0, &[Batch::new().signal(s, 0)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    assert_eq!(dev.submit(1, &[Batch::new().wait(s, 0)], first), vk::Result::SUCCESS);
    dev.assert_signals(first);
    assert_eq!(dev.submit(2, &[Batch::new().wait(s, 0)], second), vk::Result::SUCCESS);
    dev.assert_pending(second);
    assert_eq!(
        dev.submit(0, &[Batch::new().signal(s, 0)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    dev.assert_signals(second);
}

fn wait_submitted_before_its_signal(route: Route) {
    let dev = unvalidated(route);
    let s = dev.binary_semaphore();
    let fence = dev.fence(false);
    assert_eq!(dev.submit(3, &[Batch::new().wait(s, 0)], fence), vk::Result::SUCCESS);
    dev.assert_pending(fence);
    assert_eq!(
        dev.submit(2, &[Batch::new().signal(s, 0)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    dev.assert_signals(fence);
}

/// q0 → q1 → q2 → q3 through three binary semaphores, the whole chain held back by a timeline
/// wait on q0 (a valid wait-before-signal) until the host releases it.
fn chain_across_four_queues(route: Route) {
    let dev = TestDevice::new(route);
    let gate = dev.timeline_semaphore(0);
    let links = [dev.binary_semaphore(), dev.binary_semaphore(), dev.binary_semaphore()];
    let fence = dev.fence(false);
    let batches = [
        Batch::new().wait(gate, 1).signal(links[0], 0),
        Batch::new().wait(links[0], 0).signal(links[1], 0),
        Batch::new().wait(links[1], 0).signal(links[2], 0),
        Batch::new().wait(links[2], 0),
    ];
    for (q, b) in batches.iter().enumerate() {
        let f = if q == 3 { fence } else { vk::Fence::null() };
        assert_eq!(dev.submit(q, std::slice::from_ref(b), f), vk::Result::SUCCESS);
    }
    dev.assert_pending(fence);
    assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
    dev.assert_signals(fence);
}

/// Two queues hand two semaphores back and forth many times.
fn ping_pong_between_queues(route: Route) {
    let dev = TestDevice::new(route);
    let (ping, pong) = (dev.binary_semaphore(), dev.binary_semaphore());
    let fence = dev.fence(false);
    const ROUNDS: usize = 50;
    assert_eq!(
        dev.submit(0, &[Batch::new().signal(ping, 0)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    for round in 0..ROUNDS {
        assert_eq!(
            dev.submit(1, &[Batch::new().wait(ping, 0).signal(pong, 0)], vk::Fence::null()),
            vk::Result::SUCCESS
        );
        let last = round == ROUNDS - 1;
        let batch = if last {
            Batch::new().wait(pong, 0)
        } else {
            Batch::new().wait(pong, 0).signal(ping, 0)
        };
        let f = if last { fence } else { vk::Fence::null() };
        assert_eq!(dev.submit(0, &[batch], f), vk::Result::SUCCESS);
    }
    dev.assert_signals(fence);
}

/// One submit whose second batch waits on what the first signals.
fn signal_and_wait_in_one_submit(route: Route) {
    let dev = TestDevice::new(route);
    let s = dev.binary_semaphore();
    let fence = dev.fence(false);
    let batches = [Batch::new().signal(s, 0), Batch::new().wait(s, 0)];
    assert_eq!(dev.submit(0, &batches, fence), vk::Result::SUCCESS);
    dev.assert_signals(fence);
}

fn submit2_binary(route: Route) {
    let dev = TestDevice::new(route);
    let s = dev.binary_semaphore();
    let fence = dev.fence(false);
    assert_eq!(
        dev.submit2(0, &[Batch::new().signal(s, 0)], vk::Fence::null()),
        vk::Result::SUCCESS
    );
    assert_eq!(dev.submit2(1, &[Batch::new().wait(s, 0)], fence), vk::Result::SUCCESS);
    dev.assert_signals(fence);
}

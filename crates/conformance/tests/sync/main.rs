//! Fences, semaphores (binary and timeline), events, queues and the data batches write: every
//! rule of the synchronization chapter the driver implements, on every route.
//!
//! On the loader route the validation layer watches (when installed), so each workload here is
//! valid usage. The few tests that break a rule on purpose (binary waits submitted before their
//! signal, event commands on a transfer-only queue) say so and how the layer is handled.

use std::process::ExitCode;

use tether_conformance::harness;

mod data;
mod events;
mod fences;
mod queues;
mod semaphores;
mod timeline;

fn main() -> ExitCode {
    harness::main(&[], || {
        let mut all = harness::group("fences", fences::tests());
        all.extend(harness::group("semaphores", semaphores::tests()));
        all.extend(harness::group("timeline", timeline::tests()));
        all.extend(harness::group("events", events::tests()));
        all.extend(harness::group("queues", queues::tests()));
        all.extend(harness::group("data", data::tests()));
        all
    })
}

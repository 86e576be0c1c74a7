//! SYNC_FD export: a pollable fd (an eventfd) that becomes readable once a flag payload is
//! signaled. Exporting has copy transference: it takes the signal from the source (resets a
//! fence, consumes a binary semaphore), as a wait would.
//!
//! One notifier thread per process waits (in the kernel, through [`crate::wait_many`]) on every
//! payload with an outstanding export plus a private control flag that wakes it for new
//! registrations. When a payload is signaled it takes the signal and then writes the eventfd,
//! so by the time an importer sees the sync file fire, the source is already unsignaled.
//!
//! Known limit: if the application submits a second signal of the same source before the first
//! exported one fires, the two signals merge into one flag and one of them is taken by the
//! export (the spec's payload model has no separate fence per signal).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{LazyLock, Mutex};

use rustix::event::{EventfdFlags, eventfd};

use crate::{Deadline, Payload, PayloadKind, WaitFor, wait_many};

struct Registration {
    payload: Payload,
    notify: OwnedFd,
}

struct Notifier {
    registrations: Mutex<Vec<Registration>>,
    /// Signaled to make the thread pick up new registrations.
    control: Payload,
}

static NOTIFIER: LazyLock<Notifier> = LazyLock::new(|| {
    let notifier = Notifier {
        registrations: Mutex::new(Vec::new()),
        control: Payload::new_private(PayloadKind::Fence, 0),
    };
    let spawned = std::thread::Builder::new()
        .name("tether-sync-file".into())
        .spawn(|| run(&NOTIFIER));
    if let Err(e) = spawned {
        // Without the thread, exports still work for signaled payloads; pending ones never fire.
        eprintln!("tether: cannot start the sync-file thread: {e}");
    }
    notifier
});

fn lock(n: &Notifier) -> std::sync::MutexGuard<'_, Vec<Registration>> {
    n.registrations.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(n: &'static Notifier) {
    loop {
        let snapshot: Vec<Payload> = lock(n).iter().map(|r| r.payload.clone()).collect();
        let mut waits: Vec<(&Payload, WaitFor)> = vec![(&n.control, WaitFor::Signaled)];
        waits.extend(snapshot.iter().map(|p| (p, WaitFor::Signaled)));
        let _ = wait_many(&waits, true, Deadline::NEVER);
        n.control.reset();
        let mut regs = lock(n);
        regs.retain(|r| {
            if !r.payload.try_consume() {
                return true;
            }
            let _ = rustix::io::write(&r.notify, &1u64.to_ne_bytes());
            false
        });
    }
}

/// See [`Payload::export_sync_file`].
pub(crate) fn export(payload: &Payload) -> std::io::Result<Option<OwnedFd>> {
    if let Some(fd) = payload.sync_file_fd() {
        return Ok(Some(fd.try_clone_to_owned()?));
    }
    if payload.try_consume() {
        return Ok(None);
    }
    let notify = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let exported = notify.as_fd().try_clone_to_owned()?;
    let n = &*NOTIFIER;
    lock(n).push(Registration {
        payload: payload.clone(),
        notify,
    });
    n.control.signal();
    Ok(Some(exported))
}

/// Outstanding exports (for leak tests).
pub(crate) fn pending_exports() -> usize {
    lock(&NOTIFIER).len()
}

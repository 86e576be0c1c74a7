//! SYNC_FD export: a pollable fd (an eventfd) that becomes readable once a flag payload is
//! signaled. Exporting has copy transference: it takes the signal from the source (resets a
//! fence, consumes a binary semaphore), as a wait would.
//!
//! A signal this process makes completes the export synchronously: a signal of a payload with
//! an outstanding export goes to the export (its eventfd is written, the payload stays
//! unsignaled), and a signal that raced with a new export settles it before the signaling
//! operation returns. So once the operation that signals is seen complete (a queue idle, a
//! fence), the export has fired and the source is unsignaled.
//!
//! Signals from other processes (shared pages) are seen by one notifier thread per process,
//! which waits (in the kernel, through [`crate::wait_many`]) on every payload with an
//! outstanding export plus a private control flag that wakes it for new registrations. When a
//! payload is signaled it takes the signal and then writes the eventfd, so by the time an
//! importer sees the sync file fire, the source is already unsignaled.
//!
//! Known limit: if the application submits a second signal of the same source before the first
//! exported one fires, the two signals merge into one flag and one of them is taken by the
//! export (the spec's payload model has no separate fence per signal).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, LazyLock, Mutex};

use rustix::event::{EventfdFlags, eventfd};

use crate::{Deadline, Inner, Payload, PayloadKind, WaitFor, wait_many};

/// The number of outstanding exports, so that a signal with none to settle takes no lock.
static OUTSTANDING: AtomicUsize = AtomicUsize::new(0);

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
        complete_signaled(&mut lock(n));
    }
}

/// Completes every registration whose payload is signaled (taking the signal).
fn complete_signaled(regs: &mut Vec<Registration>) {
    regs.retain(|r| {
        if !r.payload.try_consume() {
            return true;
        }
        let _ = rustix::io::write(&r.notify, &1u64.to_ne_bytes());
        false
    });
    OUTSTANDING.store(regs.len(), Ordering::SeqCst);
}

/// Called by a signal of a flag payload before it stores the signal: when an export of this
/// very payload is outstanding, the signal fires that export instead (true: do not store it).
pub(crate) fn redirect_signal(inner: &Inner) -> bool {
    if OUTSTANDING.load(Ordering::SeqCst) == 0 {
        return false;
    }
    let mut regs = lock(&NOTIFIER);
    let Some(index) = regs
        .iter()
        .position(|r| std::ptr::eq(Arc::as_ptr(&r.payload.inner), inner))
    else {
        return false;
    };
    let registration = regs.remove(index);
    OUTSTANDING.store(regs.len(), Ordering::SeqCst);
    drop(regs);
    let _ = rustix::io::write(&registration.notify, &1u64.to_ne_bytes());
    // The notifier thread still waits on its old list, which holds the payload: refresh it.
    NOTIFIER.control.signal();
    true
}

/// Called after a signal of a flag payload was stored: completes the exports it satisfies
/// (one registered concurrently with the signal, or of another mapping of the same page).
pub(crate) fn settle_signaled() {
    // Pairs with the fence in `export`: either this load sees the registration, or the
    // export's re-check sees the stored signal.
    fence(Ordering::SeqCst);
    if OUTSTANDING.load(Ordering::SeqCst) == 0 {
        return;
    }
    complete_signaled(&mut lock(&NOTIFIER));
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
    let mut regs = lock(n);
    regs.push(Registration {
        payload: payload.clone(),
        notify,
    });
    OUTSTANDING.store(regs.len(), Ordering::SeqCst);
    // A signal that landed since the check above and missed the registration: settle now.
    fence(Ordering::SeqCst);
    complete_signaled(&mut regs);
    drop(regs);
    n.control.signal();
    Ok(Some(exported))
}

/// Outstanding exports (for leak tests).
pub(crate) fn pending_exports() -> usize {
    lock(&NOTIFIER).len()
}

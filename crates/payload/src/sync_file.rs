//! Sync-file payloads (SYNC_FD imports): signaled once the fd polls readable.
//!
//! A sync file that reports an error or hang-up (`POLLERR`, `POLLHUP`, `POLLNVAL`) also counts
//! as signaled: such an fd will never become "more" ready, and treating it as pending would make
//! every wait on it spin in `poll` until its deadline.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use crate::state::duration_to_timespec;
use crate::{Deadline, WaitOutcome};

const READY: PollFlags = PollFlags::IN
    .union(PollFlags::ERR)
    .union(PollFlags::HUP)
    .union(PollFlags::NVAL);

/// Polls `fds` once with `timeout` (`None` = forever); returns the index of a ready one.
pub(crate) fn poll_any(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Option<usize> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(duration_to_timespec);
    match rustix::event::poll(&mut pfds, ts.as_ref()) {
        Ok(n) if n > 0 => pfds.iter().position(|p| p.revents().intersects(READY)),
        _ => None,
    }
}

/// Whether the sync file is signaled right now.
pub(crate) fn is_ready(fd: BorrowedFd<'_>) -> bool {
    poll_any(&[fd], Some(Duration::ZERO)).is_some()
}

/// Waits for the sync file with the deadline's remaining time.
pub(crate) fn wait(fd: BorrowedFd<'_>, deadline: Deadline) -> WaitOutcome {
    loop {
        let remaining = deadline.remaining();
        if poll_any(&[fd], remaining).is_some() {
            return WaitOutcome::Ready;
        }
        // Timed out, or EINTR: look at the clock and go again.
        if deadline.remaining() == Some(Duration::ZERO) {
            return WaitOutcome::TimedOut;
        }
    }
}

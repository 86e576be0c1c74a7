//! NT handles (contract 2): an NT handle on Unix is a file descriptor that its holder owns.
//!
//! * the `HANDLE` value is the fd number ([`RawHandle`], an `isize`);
//! * `CloseHandle` is `close` ([`close_handle`], or dropping an [`NtHandle`]);
//! * `DuplicateHandle` is `fcntl(F_DUPFD_CLOEXEC)` ([`NtHandle::duplicate`], [`duplicate_handle`]);
//! * inheritance (`bInheritHandle`) is the absence of close-on-exec ([`NtHandle::set_inheritable`]);
//! * a handle passes to another process by inheritance or SCM_RIGHTS ([`send_handles`],
//!   [`recv_handles`]).
//!
//! New handles are never 0, 1 or 2: duplicates are allocated from fd 3 up, so a fresh handle is
//! never mistaken for a NULL `HANDLE` and never lands on a standard stream's slot.

use std::io::{self, IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use rustix::io::{Errno, FdFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags,
};

use crate::HandleError;

/// A Win32 `HANDLE` value as Vulkan passes it (`void*`-sized).
pub type RawHandle = isize;

/// The lowest fd a new handle gets (see the module documentation).
pub const MIN_HANDLE_FD: RawFd = 3;

/// The most handles one [`send_handles`] call may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_HANDLES_PER_MESSAGE: usize = 253;

/// An owned NT handle: an [`OwnedFd`]. Dropping it closes it (`CloseHandle`).
#[derive(Debug)]
pub struct NtHandle(OwnedFd);

impl NtHandle {
    /// Takes ownership of a raw handle value.
    ///
    /// # Safety
    ///
    /// `raw` is an open fd (so it is in `0..=i32::MAX`) that the caller owns and gives up.
    pub unsafe fn from_raw_handle(raw: RawHandle) -> NtHandle {
        // SAFETY: the caller guarantees `raw` is an open fd it owns, hence a valid `RawFd`.
        NtHandle(unsafe { OwnedFd::from_raw_fd(raw as RawFd) })
    }

    /// The handle value, still owned by `self`.
    pub fn as_raw_handle(&self) -> RawHandle {
        self.0.as_raw_fd() as RawHandle
    }

    /// The handle value; the caller now owns the fd (and must close it).
    pub fn into_raw_handle(self) -> RawHandle {
        self.0.into_raw_fd() as RawHandle
    }

    /// A new handle to the same object (`DuplicateHandle`): a new fd number, close-on-exec unless
    /// `inheritable`.
    pub fn duplicate(&self, inheritable: bool) -> io::Result<NtHandle> {
        duplicate_handle(self.0.as_fd(), inheritable)
    }

    /// Sets or clears inheritance (`SetHandleInformation(HANDLE_FLAG_INHERIT)`): an inheritable
    /// handle is one without close-on-exec.
    pub fn set_inheritable(&self, inheritable: bool) -> io::Result<()> {
        set_fd_inheritable(self.0.as_fd(), inheritable)
    }

    /// Whether the handle is inherited by `exec`ed children (no close-on-exec).
    pub fn is_inheritable(&self) -> io::Result<bool> {
        Ok(!rustix::io::fcntl_getfd(&self.0)?.contains(FdFlags::CLOEXEC))
    }

    /// The fd it owns.
    pub fn into_owned_fd(self) -> OwnedFd {
        self.0
    }

    /// Borrows the handle, for an import (which never takes ownership of a Win32 handle).
    pub fn as_handle(&self) -> BorrowedHandle<'_> {
        BorrowedHandle::from(self.0.as_fd())
    }
}

impl From<OwnedFd> for NtHandle {
    fn from(fd: OwnedFd) -> NtHandle {
        NtHandle(fd)
    }
}

impl From<NtHandle> for OwnedFd {
    fn from(h: NtHandle) -> OwnedFd {
        h.0
    }
}

impl AsFd for NtHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for NtHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

fn set_fd_inheritable(fd: BorrowedFd<'_>, inheritable: bool) -> io::Result<()> {
    let flags = rustix::io::fcntl_getfd(fd)?;
    let flags = if inheritable {
        flags - FdFlags::CLOEXEC
    } else {
        flags | FdFlags::CLOEXEC
    };
    rustix::io::fcntl_setfd(fd, flags)?;
    Ok(())
}

/// `DuplicateHandle`: a new handle (fd ≥ 3) to the object behind `fd`, close-on-exec unless
/// `inheritable`.
pub fn duplicate_handle(fd: BorrowedFd<'_>, inheritable: bool) -> io::Result<NtHandle> {
    let new = rustix::io::fcntl_dupfd_cloexec(fd, MIN_HANDLE_FD)?;
    if inheritable {
        set_fd_inheritable(new.as_fd(), true)?;
    }
    Ok(NtHandle(new))
}

/// `CloseHandle`.
///
/// # Safety
///
/// `raw` is an open fd that the caller owns and gives up; nothing uses it afterwards.
pub unsafe fn close_handle(raw: RawHandle) {
    // SAFETY: forwarded to the caller's guarantee.
    drop(unsafe { NtHandle::from_raw_handle(raw) });
}

/// A borrowed raw handle value that may or may not be an open fd: what an importer receives from
/// an application. Check it with [`BorrowedHandle::is_open`] (or use [`BorrowedHandle::as_fd`] /
/// [`BorrowedHandle::duplicate`], which check) so a closed handle is an error, not UB.
#[derive(Clone, Copy, Debug)]
pub struct BorrowedHandle<'a> {
    fd: RawFd,
    _borrow: PhantomData<BorrowedFd<'a>>,
}

impl<'a> BorrowedHandle<'a> {
    /// Borrows a raw handle value. `None` when the value cannot be an fd (negative, e.g.
    /// `INVALID_HANDLE_VALUE`, or above `i32::MAX`).
    ///
    /// # Safety
    ///
    /// If `raw` is an open fd, it stays open (nobody closes it) for `'a`. A closed value is
    /// allowed: the checks below report it.
    pub unsafe fn borrow_raw(raw: RawHandle) -> Option<BorrowedHandle<'a>> {
        let fd = RawFd::try_from(raw).ok().filter(|fd| *fd >= 0)?;
        Some(BorrowedHandle {
            fd,
            _borrow: PhantomData,
        })
    }

    /// The raw value.
    pub fn as_raw_handle(&self) -> RawHandle {
        self.fd as RawHandle
    }

    /// Whether the value is an open fd (`fcntl(F_GETFD)` succeeds).
    pub fn is_open(&self) -> bool {
        // SAFETY: the BorrowedFd lives only for this call; F_GETFD on a closed fd number only
        // returns EBADF, and an open one stays open for 'a by the constructor's contract.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        !matches!(rustix::io::fcntl_getfd(fd), Err(Errno::BADF))
    }

    /// The fd, if it is open; [`HandleError::InvalidHandle`] otherwise.
    pub fn as_fd(&self) -> Result<BorrowedFd<'a>, HandleError> {
        if self.is_open() {
            // SAFETY: it is open, and the constructor's contract keeps it open for 'a.
            Ok(unsafe { BorrowedFd::borrow_raw(self.fd) })
        } else {
            Err(HandleError::InvalidHandle)
        }
    }

    /// `DuplicateHandle` on the borrowed value: [`HandleError::InvalidHandle`] when it is closed.
    pub fn duplicate(&self, inheritable: bool) -> Result<NtHandle, HandleError> {
        let fd = self.as_fd()?;
        duplicate_handle(fd, inheritable).map_err(|e| match e.raw_os_error() {
            Some(code) if code == Errno::BADF.raw_os_error() => HandleError::InvalidHandle,
            _ => HandleError::Io(e),
        })
    }
}

impl<'a> From<BorrowedFd<'a>> for BorrowedHandle<'a> {
    /// An open fd, borrowed for `'a`, as a handle value.
    fn from(fd: BorrowedFd<'a>) -> BorrowedHandle<'a> {
        BorrowedHandle {
            fd: fd.as_raw_fd(),
            _borrow: PhantomData,
        }
    }
}

/// Sends `bytes` and the fds in `handles` (SCM_RIGHTS) as one message on a Unix socket. The
/// receiver gets its own copies; the sender keeps its fds. Never raises SIGPIPE (MSG_NOSIGNAL).
/// Returns the number of bytes sent. `bytes` must not be empty when `handles` is not (some
/// socket types drop ancillary data on empty messages).
pub fn send_handles(socket: BorrowedFd<'_>, handles: &[BorrowedFd<'_>], bytes: &[u8]) -> io::Result<usize> {
    if handles.len() > MAX_HANDLES_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many handles for one message",
        ));
    }
    if bytes.is_empty() && !handles.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handles need at least one byte of data",
        ));
    }
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(handles.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !handles.is_empty() && !control.push(SendAncillaryMessage::ScmRights(handles)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    let iov = [IoSlice::new(bytes)];
    loop {
        match rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Like [`recv_handles`], but reports truncation instead of failing: returns the fds that
/// arrived, the byte count (with `RecvFlags::TRUNC` in `flags`, the full message length), and the
/// kernel's flags (`ReturnFlags::TRUNC`: the data did not fit; `CTRUNC`: fds were dropped). Fds
/// are received close-on-exec; `flags` may add e.g. `RecvFlags::DONTWAIT`. The ancillary buffer
/// is padded to the kernel's alignment, so slightly more than `max_handles` fds may arrive
/// without `CTRUNC`: callers check the count.
pub fn recv_handles_flags(
    socket: BorrowedFd<'_>,
    max_handles: usize,
    buf: &mut [u8],
    flags: RecvFlags,
) -> io::Result<(Vec<OwnedFd>, usize, ReturnFlags)> {
    let max_handles = max_handles.min(MAX_HANDLES_PER_MESSAGE);
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(max_handles.max(1)))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(socket, &mut iov, &mut control, flags | RecvFlags::CMSG_CLOEXEC) {
            Err(Errno::INTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    Ok((fds, msg.bytes, msg.flags))
}

/// Receives one message and up to `max_handles` fds (close-on-exec) from a Unix socket. Returns
/// the fds and the number of bytes written to `buf`; `(vec![], 0)` at end of stream. A message
/// whose data or fds did not fit is an [`io::ErrorKind::InvalidData`] error (fds that did arrive
/// are closed).
pub fn recv_handles(socket: BorrowedFd<'_>, max_handles: usize, buf: &mut [u8]) -> io::Result<(Vec<OwnedFd>, usize)> {
    let (fds, len, flags) = recv_handles_flags(socket, max_handles, buf, RecvFlags::empty())?;
    // The ancillary buffer is padded, so a few more fds than asked for may fit: refuse them too.
    if flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_handles {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more handles arrived than there was room for",
        ));
    }
    if flags.contains(ReturnFlags::TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the message did not fit the buffer",
        ));
    }
    Ok((fds, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{MemfdFlags, fstat, memfd_create};
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};

    fn memfd() -> OwnedFd {
        memfd_create("tether-test", MemfdFlags::CLOEXEC).unwrap()
    }

    #[test]
    fn duplicate_inherit_close() {
        let h = NtHandle::from(memfd());
        assert!(!h.is_inheritable().unwrap());
        let d = h.duplicate(false).unwrap();
        assert_ne!(d.as_raw_handle(), h.as_raw_handle());
        assert!(d.as_raw_handle() >= MIN_HANDLE_FD as isize);
        assert!(!d.is_inheritable().unwrap());
        assert_eq!(fstat(&d).unwrap().st_ino, fstat(&h).unwrap().st_ino);
        let i = h.duplicate(true).unwrap();
        assert!(i.is_inheritable().unwrap());
        i.set_inheritable(false).unwrap();
        assert!(!i.is_inheritable().unwrap());
        i.set_inheritable(true).unwrap();
        assert!(i.is_inheritable().unwrap());

        // Raw round trip and CloseHandle.
        let raw = d.into_raw_handle();
        // SAFETY: `raw` is open (we own it) and stays open for the borrow.
        let b = unsafe { BorrowedHandle::borrow_raw(raw) }.unwrap();
        assert!(b.is_open());
        let d2 = b.duplicate(false).unwrap();
        assert_ne!(d2.as_raw_handle(), raw);
        // SAFETY: we own `raw` and give it up.
        unsafe { close_handle(raw) };
        // The number is closed now (nothing else in this test opens fds concurrently... other
        // tests might, so only check the duplicate survived).
        assert_eq!(fstat(&d2).unwrap().st_ino, fstat(&h).unwrap().st_ino);
        let via_free = duplicate_handle(h.as_fd(), false).unwrap();
        assert!(!via_free.is_inheritable().unwrap());
        // SAFETY: taking back ownership of a handle we own.
        let back = unsafe { NtHandle::from_raw_handle(via_free.into_raw_handle()) };
        drop(back);
    }

    #[test]
    fn borrowed_handle_rejects_bad_values() {
        // SAFETY: nothing is open for these values.
        unsafe {
            assert!(BorrowedHandle::borrow_raw(-1).is_none());
            assert!(BorrowedHandle::borrow_raw(1 << 40).is_none());
            // Above the open-file limit: never an open fd.
            let b = BorrowedHandle::borrow_raw(i32::MAX as isize - 1).unwrap();
            assert!(!b.is_open());
            assert!(matches!(b.as_fd(), Err(HandleError::InvalidHandle)));
            assert!(matches!(b.duplicate(false), Err(HandleError::InvalidHandle)));
        }
    }

    #[test]
    fn send_recv_over_socketpair() {
        let (a, b) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        let m1 = memfd();
        let m2 = memfd();
        let n = send_handles(a.as_fd(), &[m1.as_fd(), m2.as_fd()], b"hello").unwrap();
        assert_eq!(n, 5);
        let mut buf = [0u8; 64];
        let (fds, len) = recv_handles(b.as_fd(), 4, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(fds.len(), 2);
        for (got, sent) in fds.iter().zip([&m1, &m2]) {
            assert_ne!(got.as_raw_fd(), sent.as_raw_fd());
            assert_eq!(fstat(got).unwrap().st_ino, fstat(sent).unwrap().st_ino);
            assert!(rustix::io::fcntl_getfd(got).unwrap().contains(FdFlags::CLOEXEC));
        }
        // No handles.
        send_handles(a.as_fd(), &[], b"x").unwrap();
        let (fds, len) = recv_handles(b.as_fd(), 1, &mut buf).unwrap();
        assert_eq!((fds.len(), len), (0, 1));
        // Too many handles for the receiver's room: an error, and nothing leaks (2 fds fit the
        // padded buffer for 1, 4 do not).
        send_handles(a.as_fd(), &[m1.as_fd(), m2.as_fd()], b"y").unwrap();
        assert_eq!(
            recv_handles(b.as_fd(), 1, &mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        send_handles(a.as_fd(), &[m1.as_fd(), m2.as_fd(), m1.as_fd(), m2.as_fd()], b"y").unwrap();
        assert_eq!(
            recv_handles(b.as_fd(), 1, &mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // A message bigger than the buffer.
        send_handles(a.as_fd(), &[], &[7u8; 100]).unwrap();
        assert_eq!(
            recv_handles(b.as_fd(), 0, &mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // Invalid input.
        assert!(send_handles(a.as_fd(), &[m1.as_fd()], b"").is_err());
        // End of stream.
        drop(a);
        let (fds, len) = recv_handles(b.as_fd(), 1, &mut buf).unwrap();
        assert_eq!((fds.len(), len), (0, 0));
    }

    #[test]
    fn send_recv_stream_socket() {
        let (a, b) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap();
        let m = memfd();
        send_handles(a.as_fd(), &[m.as_fd()], b"s").unwrap();
        let mut buf = [0u8; 8];
        let (fds, len) = recv_handles(b.as_fd(), 1, &mut buf).unwrap();
        assert_eq!((fds.len(), len, buf[0]), (1, 1, b's'));
    }
}

//! The broker client (contract 5): connecting to the per-user `tether-broker`, starting it on
//! demand, and registering / opening named and KMT objects.
//!
//! # Where the broker lives
//!
//! The socket directory is `$XDG_RUNTIME_DIR/tether/` when `XDG_RUNTIME_DIR` names an existing
//! absolute directory, else `/tmp/tether-<euid>/` ([`default_socket_dir`]). It is created with
//! mode 0700 and checked every time ([`ensure_private_dir`]): a real directory (not a symlink),
//! owned by the effective uid, mode exactly 0700; anything else is refused with
//! [`HandleError::PermissionDenied`]. The socket is `broker.sock` in it (`SOCK_SEQPACKET`), the
//! broker's single-instance lock `broker.lock`. Both sides check the peer's uid (SO_PEERCRED).
//!
//! # Starting the broker
//!
//! When nothing listens on the socket, the client runs `tether-broker --dir <dir>`, found as
//! (first match wins):
//! 1. the path in `TETHER_BROKER` (if set, and only it);
//! 2. `tether-broker` next to the hint path the caller passed (a file: its directory; a
//!    directory: itself);
//! 3. `tether-broker` next to the shared library or executable that contains this code
//!    (found through `/proc/self/maps`), then next to the current executable;
//! 4. `tether-broker` on `PATH`.
//!
//! That process detaches the real broker (new session, stdio on /dev/null), waits until it
//! listens, and exits; the client waits for it and retries connecting with a short backoff,
//! [`START_TIMEOUT`] in all, then fails with [`HandleError::BrokerUnavailable`] naming what it
//! tried.
//!
//! # Lifetimes
//!
//! A registration lives until it is unregistered or its connection closes, so it dies with its
//! process. A process should therefore keep one long-lived connection: [`Broker::shared`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, ReturnFlags, SocketAddrUnix, SocketFlags, SocketType};

use crate::kmt::KmtHandle;
use crate::name::ObjectName;
use crate::nt::{recv_handles_flags, send_handles};
use crate::protocol::{ErrorCode, MAX_MESSAGE, Reply, Request};
use crate::{HandleError, Result};

/// The socket's file name in the socket directory.
pub const SOCKET_NAME: &str = "broker.sock";
/// The broker's lock file name in the socket directory.
pub const LOCK_NAME: &str = "broker.lock";
/// The broker binary's name.
pub const BROKER_BINARY: &str = "tether-broker";
/// The environment variable naming the broker binary.
pub const BROKER_ENV: &str = "TETHER_BROKER";
/// How long [`Broker::connect`] tries to start and reach a broker that is not running.
pub const START_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request waits for the broker's reply before the connection is given up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The default socket directory (not created or checked; see the module documentation).
pub fn default_socket_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() && xdg.is_dir() {
            return xdg.join("tether");
        }
    }
    PathBuf::from(format!("/tmp/tether-{}", rustix::process::geteuid().as_raw()))
}

/// Creates `dir` (mode 0700) if it does not exist, then checks it is a real directory (not a
/// symlink), owned by the effective uid, with mode exactly 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    let denied = |why: String| {
        Err(HandleError::PermissionDenied(format!(
            "socket directory {}: {why}",
            dir.display()
        )))
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {
                    // The umask may have cleared bits; set exactly 0700 on what we created.
                    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return denied(format!("cannot create it: {e}")),
            }
            std::fs::symlink_metadata(dir).map_err(HandleError::Io)?
        }
        Err(e) => return Err(HandleError::Io(e)),
    };
    let uid = rustix::process::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        return denied("is a symbolic link; refusing to use it".into());
    }
    if !meta.is_dir() {
        return denied("is not a directory".into());
    }
    if meta.uid() != uid {
        return denied(format!(
            "is owned by uid {}, not by us (uid {uid}); refusing to use it",
            meta.uid()
        ));
    }
    if meta.mode() & 0o7777 != 0o700 {
        return denied(format!(
            "has mode {:04o}, not 0700; refusing to use it",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A registration: the broker holds an fd under a name or KMT value until it is unregistered or
/// the connection it was made on closes.
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a registration lives until unregistered or until its connection closes"]
pub struct Registration {
    id: u64,
    generation: u64,
}

impl Registration {
    /// The broker's id for it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The connection it was made on (see [`Broker::generation`]); it is alive only while that
    /// connection is.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// One connection to the broker. Requests are synchronous: one request, one reply.
///
/// Once the connection breaks (the broker died, a reply timed out, garbage came back), every
/// later request fails with [`HandleError::BrokerUnavailable`]; connect again (or use
/// [`SharedBroker`], which does).
#[derive(Debug)]
pub struct Broker {
    sock: OwnedFd,
    generation: u64,
    pid: i32,
    connected: bool,
}

impl Broker {
    /// Whether the broker's end of the connection is closed (or it sent something unasked),
    /// without blocking.
    fn peer_gone(&self) -> bool {
        let mut poll = [rustix::event::PollFd::new(
            &self.sock,
            rustix::event::PollFlags::IN | rustix::event::PollFlags::RDHUP,
        )];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        match rustix::event::poll(&mut poll, Some(&zero)) {
            Ok(0) => false,
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Connects to the broker in the default socket directory, starting it if needed.
    pub fn connect() -> Result<Broker> {
        Broker::connect_with(None)
    }

    /// Like [`Broker::connect`], with a hint where the broker binary is (a file next to it, e.g.
    /// the calling library, or its directory).
    pub fn connect_with(hint: Option<&Path>) -> Result<Broker> {
        Broker::connect_at(&default_socket_dir(), hint)
    }

    /// Connects to the broker whose socket directory is `dir` (for tests and isolated setups),
    /// starting it there if needed.
    pub fn connect_at(dir: &Path, hint: Option<&Path>) -> Result<Broker> {
        ensure_private_dir(dir)?;
        let path = dir.join(SOCKET_NAME);
        match try_connect(&path) {
            Ok(b) => return Ok(b),
            Err(Some(e)) => return Err(e),
            Err(None) => {}
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let binary = find_broker(hint)?;
        start_broker(&binary, dir, deadline)?;
        let mut delay = Duration::from_millis(2);
        loop {
            match try_connect(&path) {
                Ok(b) => return Ok(b),
                Err(Some(e)) => return Err(e),
                Err(None) if Instant::now() >= deadline => {
                    return Err(HandleError::BrokerUnavailable(format!(
                        "started {} but nothing listens on {} after {:?}",
                        binary.display(),
                        path.display(),
                        START_TIMEOUT
                    )));
                }
                Err(None) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
            }
        }
    }

    /// Connects to a running broker in `dir` without starting one: `Ok(None)` when none runs.
    pub fn connect_existing_at(dir: &Path) -> Result<Option<Broker>> {
        ensure_private_dir(dir)?;
        match try_connect(&dir.join(SOCKET_NAME)) {
            Ok(b) => Ok(Some(b)),
            Err(Some(e)) => Err(e),
            Err(None) => Ok(None),
        }
    }

    /// The process-global connection (see [`SharedBroker`]).
    pub fn shared() -> &'static SharedBroker {
        static SHARED: OnceLock<SharedBroker> = OnceLock::new();
        SHARED.get_or_init(|| SharedBroker::new(None, None))
    }

    /// A process-unique, increasing number for this connection. Registrations carry the number
    /// of the connection they were made on.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// False once the connection has broken.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Asks the broker for its pid (and checks it answers).
    pub fn ping(&mut self) -> Result<u32> {
        match self.request(&Request::Ping, None)? {
            (Reply::Pong { pid }, _) => Ok(pid),
            (r, _) => Err(self.unexpected(r)),
        }
    }

    /// Registers `fd` (the broker keeps its own reference) under `name`, tagged with `kind`.
    /// [`HandleError::AlreadyExists`] when the name is taken.
    pub fn register_name(&mut self, name: &ObjectName, kind: u32, fd: BorrowedFd<'_>) -> Result<Registration> {
        let req = Request::RegisterName {
            name: name.as_utf16().to_vec(),
            kind,
        };
        match self.request(&req, Some(fd))? {
            (Reply::Registered { id }, _) => Ok(Registration {
                id,
                generation: self.generation,
            }),
            (r, _) => Err(self.unexpected(r)),
        }
    }

    /// Opens the object registered under `name`: its kind and a new fd (close-on-exec).
    /// [`HandleError::NotFound`] when there is none.
    pub fn open_name(&mut self, name: &ObjectName) -> Result<(u32, OwnedFd)> {
        self.open(&Request::OpenName {
            name: name.as_utf16().to_vec(),
        })
    }

    /// Registers `fd` under a new KMT value, tagged with `kind`. Every call allocates a new
    /// value (callers that want one value per object cache it).
    pub fn register_kmt(&mut self, kind: u32, fd: BorrowedFd<'_>) -> Result<(KmtHandle, Registration)> {
        match self.request(&Request::RegisterKmt { kind }, Some(fd))? {
            (Reply::Kmt { value, id }, _) => match KmtHandle::new(value) {
                Some(k) => Ok((
                    k,
                    Registration {
                        id,
                        generation: self.generation,
                    },
                )),
                None => Err(self.protocol_error("the broker allocated KMT value 0".into())),
            },
            (r, _) => Err(self.unexpected(r)),
        }
    }

    /// Opens the object registered under a KMT value: its kind and a new fd (close-on-exec).
    /// [`HandleError::NotFound`] for an unknown or stale value.
    pub fn open_kmt(&mut self, kmt: KmtHandle) -> Result<(u32, OwnedFd)> {
        self.open(&Request::OpenKmt { value: kmt.get() })
    }

    /// Removes a registration made on this connection. [`HandleError::BrokerRestarted`] when it
    /// was made on another connection (it is gone with that connection, or not ours to remove).
    pub fn unregister(&mut self, registration: Registration) -> Result<()> {
        if registration.generation != self.generation {
            return Err(HandleError::BrokerRestarted);
        }
        match self.request(&Request::Unregister { id: registration.id }, None)? {
            (Reply::Ok, _) => Ok(()),
            (r, _) => Err(self.unexpected(r)),
        }
    }

    fn open(&mut self, req: &Request) -> Result<(u32, OwnedFd)> {
        match self.request(req, None)? {
            (Reply::Opened { kind }, Some(fd)) => Ok((kind, fd)),
            (r, _) => Err(self.unexpected(r)),
        }
    }

    fn unexpected(&mut self, reply: Reply) -> HandleError {
        match reply {
            Reply::Error {
                code: ErrorCode::NotFound,
                ..
            } => HandleError::NotFound,
            Reply::Error {
                code: ErrorCode::AlreadyExists,
                ..
            } => HandleError::AlreadyExists,
            Reply::Error {
                code: ErrorCode::PermissionDenied,
                message,
            } => HandleError::PermissionDenied(message),
            Reply::Error { code, message } => HandleError::Broker { code, message },
            other => self.protocol_error(format!("unexpected reply {other:?}")),
        }
    }

    fn protocol_error(&mut self, message: String) -> HandleError {
        self.connected = false;
        HandleError::Protocol(message)
    }

    fn broken(&mut self, what: &str, e: impl std::fmt::Display) -> HandleError {
        self.connected = false;
        HandleError::BrokerUnavailable(format!("{what}: {e}"))
    }

    /// Sends one request (with its fd) and reads its reply (with its fd).
    fn request(&mut self, req: &Request, fd: Option<BorrowedFd<'_>>) -> Result<(Reply, Option<OwnedFd>)> {
        if !self.connected {
            return Err(HandleError::BrokerUnavailable(
                "the connection to the broker was lost".into(),
            ));
        }
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        if let Err(e) = send_handles(self.sock.as_fd(), &fds, &req.encode()) {
            return Err(self.broken("sending to the broker failed", e));
        }
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let (fds, len, flags) = match recv_handles_flags(self.sock.as_fd(), 1, &mut buf, RecvFlags::empty()) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(self.broken("no reply from the broker", format!("timed out after {REPLY_TIMEOUT:?}")));
            }
            Err(e) => return Err(self.broken("receiving from the broker failed", e)),
        };
        if len == 0 && fds.is_empty() {
            return Err(self.broken("receiving from the broker failed", "the broker closed the connection"));
        }
        if flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC) || len > MAX_MESSAGE {
            return Err(self.protocol_error("oversized reply".into()));
        }
        let reply = match Reply::decode(&buf[..len]) {
            Ok(r) => r,
            Err(e) => return Err(self.protocol_error(format!("malformed reply: {e}"))),
        };
        if fds.len() != reply.fd_count() {
            let n = fds.len();
            return Err(self.protocol_error(format!("reply {reply:?} came with {n} fds")));
        }
        Ok((reply, fds.into_iter().next()))
    }
}

/// Connects to the socket at `path`. `Err(None)`: nobody listens (start the broker);
/// `Err(Some(e))`: a real error.
fn try_connect(path: &Path) -> std::result::Result<Broker, Option<HandleError>> {
    let addr = SocketAddrUnix::new(path).map_err(|e| {
        Some(HandleError::BrokerUnavailable(format!(
            "bad socket path {}: {e} (too long?)",
            path.display()
        )))
    })?;
    let sock = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .map_err(|e| Some(e.into()))?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            Err(Errno::NOENT | Errno::CONNREFUSED) => return Err(None),
            Err(e) => {
                return Err(Some(HandleError::BrokerUnavailable(format!(
                    "connecting to {}: {e}",
                    path.display()
                ))));
            }
        }
    }
    let cred = rustix::net::sockopt::socket_peercred(&sock).map_err(|e| Some(e.into()))?;
    let uid = rustix::process::geteuid();
    if cred.uid != uid {
        return Err(Some(HandleError::PermissionDenied(format!(
            "the broker at {} runs as uid {}, not as us (uid {})",
            path.display(),
            cred.uid.as_raw(),
            uid.as_raw()
        ))));
    }
    use rustix::net::sockopt::{Timeout, set_socket_timeout};
    set_socket_timeout(&sock, Timeout::Recv, Some(REPLY_TIMEOUT)).map_err(|e| Some(e.into()))?;
    set_socket_timeout(&sock, Timeout::Send, Some(REPLY_TIMEOUT)).map_err(|e| Some(e.into()))?;
    Ok(Broker {
        sock,
        generation: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
        pid: rustix::process::getpid().as_raw_nonzero().get(),
        connected: true,
    })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// The path of the mapped file (shared library or executable) that contains `addr`, from
/// `/proc/self/maps`.
fn module_containing(addr: usize) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        if !(start..end).contains(&addr) {
            return None;
        }
        let path = fields.nth(4)?.trim_start();
        path.starts_with('/')
            .then(|| PathBuf::from(path.trim_end_matches(" (deleted)")))
    })
}

/// The broker binary (see the module documentation for the order).
pub fn find_broker(hint: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(BROKER_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(HandleError::BrokerUnavailable(format!(
                "{BROKER_ENV}={} is not an executable file",
                p.display()
            )))
        };
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(h) = hint {
        if h.is_dir() {
            dirs.push(h.to_path_buf());
        } else if let Some(parent) = h.parent() {
            dirs.push(parent.to_path_buf());
        }
    }
    let here = find_broker as fn(Option<&Path>) -> Result<PathBuf> as usize;
    if let Some(parent) = module_containing(here).as_deref().and_then(Path::parent) {
        dirs.push(parent.to_path_buf());
    }
    if let Some(parent) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        dirs.push(parent.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|p| p.is_absolute()));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    for d in &dirs {
        let candidate = d.join(BROKER_BINARY);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(HandleError::BrokerUnavailable(format!(
        "cannot find {BROKER_BINARY}: set {BROKER_ENV}, or install it next to the library or on PATH (looked in {})",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Runs `binary --dir dir` (which detaches the broker and exits once it listens) and waits for
/// it until `deadline`.
fn start_broker(binary: &Path, dir: &Path, deadline: Instant) -> Result<()> {
    let mut child = Command::new(binary)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| HandleError::BrokerUnavailable(format!("cannot run {}: {e}", binary.display())))?;
    let mut delay = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(HandleError::BrokerUnavailable(format!(
                    "{} failed ({status})",
                    binary.display()
                )));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HandleError::BrokerUnavailable(format!(
                    "{} did not come up within {START_TIMEOUT:?}",
                    binary.display()
                )));
            }
            Ok(None) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            // ECHILD: the application reaps children itself (SIGCHLD ignored); just try to
            // connect.
            Err(_) => return Ok(()),
        }
    }
}

struct SharedState {
    conn: Option<Broker>,
    hint: Option<PathBuf>,
}

/// A process-wide, lazily connected, self-healing broker connection ([`Broker::shared`]).
///
/// Every method takes the lock, connects (starting the broker) if needed, and runs the request.
/// If the connection turns out to be broken (the broker died, or it dropped us), it connects
/// again — which restarts the broker — and retries the request (a few times at most).
///
/// **Registrations do not survive a reconnection**: they lived on the dead connection (and in
/// the dead broker). Each [`Registration`] carries the [`generation`](Registration::generation)
/// of its connection; [`SharedBroker::generation`] changes whenever a new connection is made, and
/// [`SharedBroker::is_live`] tells whether a registration still exists. Unregistering a lost
/// registration returns [`HandleError::BrokerRestarted`] (safe to ignore). Owners of names and
/// KMT values that must survive a broker restart re-register when the generation changes.
///
/// After `fork`, the child does not use the parent's connection (that would interleave both
/// processes' requests): it opens its own, so the parent's registrations stay the parent's.
pub struct SharedBroker {
    dir: Option<PathBuf>,
    state: Mutex<SharedState>,
}

impl SharedBroker {
    /// A shared connection to the broker in `dir` (default: [`default_socket_dir`], resolved at
    /// connection time), starting it with `hint` (see [`Broker::connect_with`]).
    pub fn new(dir: Option<PathBuf>, hint: Option<PathBuf>) -> SharedBroker {
        SharedBroker {
            dir,
            state: Mutex::new(SharedState { conn: None, hint }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets where to look for the broker binary when it must be started.
    pub fn set_hint(&self, hint: Option<PathBuf>) {
        self.lock().hint = hint;
    }

    /// The generation of the current connection (0 before the first one). It changes when the
    /// connection is replaced, i.e. when earlier registrations were lost.
    pub fn generation(&self) -> u64 {
        self.lock().conn.as_ref().map_or(0, |c| c.generation)
    }

    /// Whether `registration` was made on the current, unbroken connection (so it still exists
    /// unless unregistered).
    pub fn is_live(&self, registration: &Registration) -> bool {
        let mut st = self.lock();
        let Some(c) = st.conn.as_mut() else {
            return false;
        };
        if !c.connected || c.generation != registration.generation {
            return false;
        }
        // A broker killed since the last request took the registration with it, and nothing
        // has noticed yet: its end of the socket is closed. (It never writes unprompted, so
        // anything to read, EOF included, or a hang-up means the connection is gone.)
        if c.peer_gone() {
            c.connected = false;
            return false;
        }
        true
    }

    fn with<T>(&self, mut f: impl FnMut(&mut Broker) -> Result<T>) -> Result<T> {
        // A dying broker can still accept a connection for an instant (its listening socket is
        // released after its connections), so a fresh connection may break once more: allow a
        // few attempts, each on a new connection.
        const ATTEMPTS: u32 = 3;
        let mut st = self.lock();
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let usable = st.conn.as_ref().is_some_and(|c| c.connected && c.pid == pid);
            if !usable {
                if st.conn.take().is_some() && attempt > 1 {
                    std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
                }
                let dir = self.dir.clone().unwrap_or_else(default_socket_dir);
                st.conn = Some(Broker::connect_at(&dir, st.hint.as_deref())?);
            }
            let conn = st.conn.as_mut().expect("connected above");
            match f(conn) {
                Err(_) if attempt < ATTEMPTS && !conn.connected => continue,
                r => return r,
            }
        }
    }

    /// See [`Broker::ping`].
    pub fn ping(&self) -> Result<u32> {
        self.with(Broker::ping)
    }

    /// See [`Broker::register_name`].
    pub fn register_name(&self, name: &ObjectName, kind: u32, fd: BorrowedFd<'_>) -> Result<Registration> {
        self.with(|b| b.register_name(name, kind, fd))
    }

    /// See [`Broker::open_name`].
    pub fn open_name(&self, name: &ObjectName) -> Result<(u32, OwnedFd)> {
        self.with(|b| b.open_name(name))
    }

    /// See [`Broker::register_kmt`].
    pub fn register_kmt(&self, kind: u32, fd: BorrowedFd<'_>) -> Result<(KmtHandle, Registration)> {
        self.with(|b| b.register_kmt(kind, fd))
    }

    /// See [`Broker::open_kmt`].
    pub fn open_kmt(&self, kmt: KmtHandle) -> Result<(u32, OwnedFd)> {
        self.with(|b| b.open_kmt(kmt))
    }

    /// Removes a registration. [`HandleError::BrokerRestarted`] when it was made on a connection
    /// that is gone (so it is gone too); this never reconnects.
    pub fn unregister(&self, registration: Registration) -> Result<()> {
        let mut st = self.lock();
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        match st.conn.as_mut() {
            Some(c) if c.connected && c.pid == pid && c.generation == registration.generation => {
                match c.unregister(registration) {
                    Err(_) if !c.connected => Err(HandleError::BrokerRestarted),
                    r => r,
                }
            }
            _ => Err(HandleError::BrokerRestarted),
        }
    }

    /// Drops the current connection (its registrations die with it); the next request
    /// reconnects.
    pub fn disconnect(&self) {
        self.lock().conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lookup_finds_this_binary() {
        let here = module_lookup_finds_this_binary as fn() as usize;
        let m = module_containing(here).expect("this test's code is mapped from a file");
        assert_eq!(
            m.canonicalize().unwrap(),
            std::env::current_exe().unwrap().canonicalize().unwrap()
        );
        assert!(module_containing(0).is_none());
    }

    #[test]
    fn default_dir_shape() {
        let d = default_socket_dir();
        assert!(d.is_absolute());
        assert!(d.ends_with("tether") || d.to_string_lossy().starts_with("/tmp/tether-"));
    }
}

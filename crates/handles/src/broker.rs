//! The broker server, `tether-broker`: the per-user daemon that holds named objects and KMT handles (contract 5).
//!
//! ```text
//! tether-broker [--foreground] [--dir DIR] [--idle-exit SECONDS]
//! ```
//!
//! * `--dir DIR`: the socket directory (default `$XDG_RUNTIME_DIR/tether`, else
//!   `/tmp/tether-<uid>`); created 0700 and checked.
//! * `--foreground`: serve in this process and log every action to stderr. Without it, the broker
//!   detaches (a new session, stdio on /dev/null, cwd `/`, inherited fds closed) and this process
//!   exits 0 once the detached broker listens (or when another broker already serves the
//!   directory), 1 if it failed to start. A detached broker logs to the file named by
//!   `TETHER_BROKER_LOG`, if set.
//! * `--idle-exit SECONDS`: exit after that long without any connection (no connection means no
//!   registration, so nothing is lost). 0 = never. Default: never in the foreground, 60 s when
//!   detached.
//!
//! One broker per directory: the broker takes an exclusive `flock` on `broker.lock` before it
//! touches `broker.sock`. If another broker holds the lock and answers on the socket, this one
//! exits 0. A socket file left by a dead broker is removed and bound again.
//!
//! Each peer is checked with SO_PEERCRED (other uids are refused). Registrations (fds under a
//! name or a KMT value, with the client's opaque `kind`) belong to the connection that made them
//! and are removed when it unregisters them or closes. KMT values start at 0x40000002 and step
//! by 4; they are never reused for the directory's user, across broker restarts too (see
//! `kmt.next`). A malformed or oversized message drops
//! its connection (with a log line); other connections are unaffected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, ReturnFlags, SocketAddrUnix, SocketFlags, SocketType};
use rustix::process::{Resource, Uid};

use crate::client::{LOCK_NAME, SOCKET_NAME, default_socket_dir, ensure_private_dir};
use crate::kmt::{KMT_FIRST, KMT_STEP};
use crate::nt::{recv_handles_flags, send_handles};
use crate::protocol::{ErrorCode, MAX_MESSAGE, Reply, Request};
use crate::{KmtHandle, ObjectName};

/// A file a detached broker appends its log to (default: none).
const LOG_ENV: &str = "TETHER_BROKER_LOG";
/// Default `--idle-exit` of a detached broker.
const DEFAULT_DETACHED_IDLE: Duration = Duration::from_secs(60);
/// How long a starting broker waits for a dying one to release the lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// Messages handled per connection per poll round (fairness).
const BURST: usize = 32;

fn log(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "tether-broker: {args}");
}

macro_rules! log {
    ($($t:tt)*) => { log(format_args!($($t)*)) };
}

struct Options {
    dir: Option<PathBuf>,
    foreground: bool,
    daemon_child: bool,
    idle_exit: Option<Option<Duration>>,
}

const USAGE: &str = "usage: tether-broker [--foreground] [--dir DIR] [--idle-exit SECONDS]";

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        dir: None,
        foreground: false,
        daemon_child: false,
        idle_exit: None,
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--foreground") => opts.foreground = true,
            Some("--daemon-child") => opts.daemon_child = true,
            Some("--dir") => opts.dir = Some(PathBuf::from(args.next().ok_or("--dir needs a directory")?)),
            Some("--idle-exit") => {
                let v = args.next().ok_or("--idle-exit needs a number of seconds")?;
                let secs: u64 = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--idle-exit needs a number of seconds")?;
                opts.idle_exit = Some((secs > 0).then(|| Duration::from_secs(secs)));
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Some("--version" | "-V") => {
                println!("tether-broker {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            _ => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    Ok(opts)
}

/// Runs the broker with this process's command-line arguments (the `tether-broker` binary's
/// `main`; the `tether` CLI also runs it when no `tether-broker` binary was built, since
/// `cargo run --bin tether` builds only `tether`).
pub fn run() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            log!("{e}");
            return ExitCode::from(2);
        }
    };
    let dir = match &opts.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => match std::env::current_dir() {
            Ok(cwd) => cwd.join(d),
            Err(e) => {
                log!("cannot resolve {}: {e}", d.display());
                return ExitCode::FAILURE;
            }
        },
        None => default_socket_dir(),
    };
    if opts.foreground || opts.daemon_child {
        serve(&dir, &opts)
    } else {
        launch(&dir, &opts)
    }
}

/// Starts the detached broker and waits until it listens (or exits).
fn launch(dir: &Path, opts: &Options) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            log!("cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let idle = opts
        .idle_exit
        .unwrap_or(Some(DEFAULT_DETACHED_IDLE))
        .map_or(0, |d| d.as_secs());
    let mut cmd = Command::new(exe);
    cmd.arg("--daemon-child")
        .arg("--dir")
        .arg(dir)
        .arg("--idle-exit")
        .arg(idle.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            log!("cannot start the broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line == "ready\n" {
        // The broker runs on; it is reparented when we exit.
        return ExitCode::SUCCESS;
    }
    match child.wait() {
        Ok(s) if s.success() => ExitCode::SUCCESS, // another broker serves this directory
        Ok(s) => {
            log!("the broker failed to start ({s}); run `tether-broker --foreground` to see why");
            ExitCode::FAILURE
        }
        Err(e) => {
            log!("the broker failed to start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Closes every fd above 2 that this process inherited (a detached broker must not keep the
/// starting application's pipes or exported handles alive).
fn close_inherited_fds() {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // SAFETY: a short-lived borrow to test whether the number is open (the directory fd of
        // the listing above is closed by now; F_GETFD on it returns EBADF).
        let open = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(fd) }).is_ok();
        if open {
            // SAFETY: this runs first thing in a single-threaded process; fds above 2 were
            // inherited from the parent and nothing in this process owns or uses them.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

fn raise_fd_limit() {
    let lim = rustix::process::getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum
        && lim.current != Some(max)
    {
        let _ = rustix::process::setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
}

/// Can we connect to a broker at `path`?
fn broker_answers(path: &Path) -> bool {
    let Ok(addr) = SocketAddrUnix::new(path) else {
        return false;
    };
    let Ok(sock) = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
    else {
        return false;
    };
    rustix::net::connect(&sock, &addr).is_ok()
}

fn serve(dir: &Path, opts: &Options) -> ExitCode {
    if opts.daemon_child {
        let _ = rustix::process::chdir("/");
        close_inherited_fds();
        rustix::process::umask(Mode::from_raw_mode(0o077));
    }
    raise_fd_limit();
    if let Err(e) = ensure_private_dir(dir) {
        log!("{e}");
        return ExitCode::FAILURE;
    }
    let sock_path = dir.join(SOCKET_NAME);
    let lock_path = dir.join(LOCK_NAME);
    let lock = match rustix::fs::open(
        &lock_path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(l) => l,
        Err(e) => {
            log!("cannot open {}: {e}", lock_path.display());
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {
                // Another broker holds the lock: if it answers, it serves this directory; if not,
                // it is starting (it will answer soon) or exiting (it will release the lock).
                if broker_answers(&sock_path) {
                    if opts.foreground {
                        log!("another broker already serves {}", dir.display());
                    }
                    return ExitCode::SUCCESS;
                }
                if Instant::now() >= deadline {
                    log!("{} is locked by a broker that does not answer", lock_path.display());
                    return ExitCode::FAILURE;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                log!("cannot lock {}: {e}", lock_path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    // We hold the lock: any socket file is stale.
    match std::fs::remove_file(&sock_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            log!("cannot remove the stale socket {}: {e}", sock_path.display());
            return ExitCode::FAILURE;
        }
    }
    let listener = match bind(&sock_path) {
        Ok(l) => l,
        Err(e) => {
            log!("cannot listen on {}: {e}", sock_path.display());
            return ExitCode::FAILURE;
        }
    };
    if opts.daemon_child {
        // Detach from the starter's stdio; stdout tells it we are ready, then goes away too.
        if let Ok(null) = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
            let log_file = std::env::var_os(LOG_ENV).filter(|p| !p.is_empty()).and_then(|p| {
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::CLOEXEC;
                rustix::fs::open(p.as_os_str(), flags, Mode::from_raw_mode(0o600)).ok()
            });
            let _ = rustix::stdio::dup2_stderr(log_file.as_ref().unwrap_or(&null));
            let _ = io::stdout().write_all(b"ready\n").and_then(|()| io::stdout().flush());
            let _ = rustix::stdio::dup2_stdout(&null);
        }
    }
    let idle = opts.idle_exit.unwrap_or(if opts.daemon_child {
        Some(DEFAULT_DETACHED_IDLE)
    } else {
        None
    });
    log!("listening on {} (pid {})", sock_path.display(), std::process::id());
    let mut server = Server::new(listener, Some(dir));
    server.run(idle);
    // Idle exit: stop answering before releasing the lock, so a new broker can take over.
    let _ = std::fs::remove_file(&sock_path);
    drop(lock);
    ExitCode::SUCCESS
}

fn bind(path: &Path) -> io::Result<OwnedFd> {
    let addr = SocketAddrUnix::new(path)?;
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&sock, &addr)?;
    rustix::fs::chmod(path, Mode::from_raw_mode(0o600))?;
    rustix::net::listen(&sock, 128)?;
    Ok(sock)
}

enum Key {
    Name(ObjectName),
    Kmt(KmtHandle),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Name(n) => write!(f, "name {n:?}"),
            Key::Kmt(k) => write!(f, "KMT {k}"),
        }
    }
}

struct Registration {
    fd: OwnedFd,
    kind: u32,
    conn: u64,
    key: Key,
}

struct Conn {
    fd: OwnedFd,
    pid: i32,
    regs: BTreeSet<u64>,
}

struct Server {
    listener: OwnedFd,
    uid: Uid,
    conns: BTreeMap<u64, Conn>,
    regs: HashMap<u64, Registration>,
    names: HashMap<String, u64>,
    kmts: HashMap<u32, u64>,
    next_conn: u64,
    next_id: u64,
    next_kmt: Option<u32>,
    /// KMT values below this were handed out by this or an earlier broker of the directory.
    kmt_reserved: KmtReservation,
}

/// KMT values must never be handed out twice for one user, even across broker restarts (a
/// stale value in some process would otherwise name another object). The broker records, in
/// `kmt.next` in its directory, a bound below which values may have been used, advanced a block
/// at a time; a restarted broker starts at that bound.
struct KmtReservation {
    path: Option<PathBuf>,
    bound: u32,
}

/// How many KMT values one write of `kmt.next` reserves.
const KMT_BLOCK: u32 = 4096 * KMT_STEP;

impl KmtReservation {
    /// Reads the bound left by earlier brokers of `dir` (none: start at the first value).
    fn load(dir: Option<&Path>) -> KmtReservation {
        let path = dir.map(|d| d.join("kmt.next"));
        let bound = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| text.trim().parse::<u32>().ok())
            .filter(|v| *v >= KMT_FIRST && (v - KMT_FIRST) % KMT_STEP == 0)
            .unwrap_or(KMT_FIRST);
        KmtReservation { path, bound }
    }

    /// Makes sure `value` is below the recorded bound; false if it cannot be recorded (then
    /// the value must not be used).
    fn cover(&mut self, value: u32) -> bool {
        if value < self.bound {
            return true;
        }
        let Some(bound) = value.checked_add(KMT_BLOCK) else {
            return false;
        };
        if let Some(path) = &self.path {
            let tmp = path.with_extension("tmp");
            let written = std::fs::write(&tmp, format!("{bound}\n")).and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = written {
                log!("cannot record KMT values in {}: {e}", path.display());
                return false;
            }
        }
        self.bound = bound;
        true
    }
}

enum Outcome {
    Keep,
    Drop,
}

impl Server {
    fn new(listener: OwnedFd, dir: Option<&Path>) -> Server {
        let kmt_reserved = KmtReservation::load(dir);
        Server {
            listener,
            uid: rustix::process::geteuid(),
            conns: BTreeMap::new(),
            regs: HashMap::new(),
            names: HashMap::new(),
            kmts: HashMap::new(),
            next_conn: 1,
            next_id: 1,
            next_kmt: Some(kmt_reserved.bound),
            kmt_reserved,
        }
    }

    /// Serves until idle for `idle` (never when `None`).
    fn run(&mut self, idle: Option<Duration>) {
        let mut idle_since = Instant::now();
        loop {
            let timeout = match idle {
                Some(idle) if self.conns.is_empty() => {
                    let left = (idle_since + idle).saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        log!("no connection for {}s, exiting", idle.as_secs());
                        return;
                    }
                    Timespec::try_from(left).ok()
                }
                _ => None,
            };
            let (listener_ready, ready) = {
                let mut fds = Vec::with_capacity(self.conns.len() + 1);
                fds.push(PollFd::new(&self.listener, PollFlags::IN));
                for c in self.conns.values() {
                    fds.push(PollFd::new(&c.fd, PollFlags::IN));
                }
                match rustix::event::poll(&mut fds, timeout.as_ref()) {
                    Ok(_) => {}
                    Err(Errno::INTR) => continue,
                    Err(e) => {
                        log!("poll failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                let listener_ready = !fds[0].revents().is_empty();
                let ready: Vec<u64> = self
                    .conns
                    .keys()
                    .zip(&fds[1..])
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(id, _)| *id)
                    .collect();
                (listener_ready, ready)
            };
            for id in ready {
                if let Outcome::Drop = self.service(id) {
                    self.drop_conn(id);
                }
            }
            if listener_ready {
                self.accept();
            }
            // Idle time counts from the moment the last connection went away.
            if !self.conns.is_empty() {
                idle_since = Instant::now();
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let fd = match rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(fd) => fd,
                Err(Errno::INTR | Errno::CONNABORTED) => continue,
                Err(Errno::AGAIN) => return,
                Err(e) => {
                    // Out of fds or memory: back off instead of spinning on a readable listener.
                    log!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            };
            let cred = match rustix::net::sockopt::socket_peercred(&fd) {
                Ok(c) => c,
                Err(e) => {
                    log!("refused a connection: cannot read its credentials: {e}");
                    continue;
                }
            };
            let pid = cred.pid.as_raw_nonzero().get();
            if cred.uid != self.uid {
                log!(
                    "refused a connection from pid {pid}: uid {} is not ours ({})",
                    cred.uid.as_raw(),
                    self.uid.as_raw()
                );
                continue;
            }
            let id = self.next_conn;
            self.next_conn += 1;
            log!("connection from pid {pid}");
            self.conns.insert(
                id,
                Conn {
                    fd,
                    pid,
                    regs: BTreeSet::new(),
                },
            );
        }
    }

    fn drop_conn(&mut self, id: u64) {
        let Some(conn) = self.conns.remove(&id) else { return };
        for rid in &conn.regs {
            if let Some(reg) = self.remove_reg(*rid) {
                log!("removed {} (pid {} disconnected)", reg.key, conn.pid);
            }
        }
        log!("pid {} disconnected", conn.pid);
    }

    fn remove_reg(&mut self, rid: u64) -> Option<Registration> {
        let reg = self.regs.remove(&rid)?;
        match &reg.key {
            Key::Name(n) => self.names.remove(n.key()),
            Key::Kmt(k) => self.kmts.remove(&k.get()),
        };
        if let Some(c) = self.conns.get_mut(&reg.conn) {
            c.regs.remove(&rid);
        }
        Some(reg)
    }

    /// Handles the messages waiting on a connection.
    fn service(&mut self, id: u64) -> Outcome {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        for _ in 0..BURST {
            let Some(conn) = self.conns.get(&id) else {
                return Outcome::Drop;
            };
            let pid = conn.pid;
            let (fds, len, flags) = match recv_handles_flags(conn.fd.as_fd(), 1, &mut buf, RecvFlags::DONTWAIT) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log!("receiving from pid {pid} failed: {e}; dropping the connection");
                    return Outcome::Drop;
                }
            };
            if len == 0 && fds.is_empty() {
                return Outcome::Drop; // closed (an empty message is malformed anyway)
            }
            if flags.contains(ReturnFlags::TRUNC) || len > MAX_MESSAGE {
                log!("oversized message from pid {pid}; dropping the connection");
                return Outcome::Drop;
            }
            let req = match Request::decode(&buf[..len]) {
                Ok(r) => r,
                Err(e) => {
                    log!("malformed message from pid {pid} ({e}); dropping the connection");
                    return Outcome::Drop;
                }
            };
            let (reply, out_fd) = if flags.contains(ReturnFlags::CTRUNC) {
                // Too many fds, or we are out of fds: the kernel dropped what did not fit.
                log!("could not receive the fds of a request from pid {pid}");
                (
                    Reply::error(ErrorCode::Exhausted, "the broker could not receive the handle"),
                    None,
                )
            } else if fds.len() != req.fd_count() {
                log!(
                    "malformed message from pid {pid} ({} fds with {req:?}); dropping the connection",
                    fds.len()
                );
                return Outcome::Drop;
            } else {
                let (reply, out) = self.handle(id, pid, req, fds.into_iter().next());
                (reply, out)
            };
            let Some(conn) = self.conns.get(&id) else {
                return Outcome::Drop;
            };
            let out: Vec<BorrowedFd<'_>> = out_fd
                .and_then(|rid| self.regs.get(&rid))
                .map(|r| r.fd.as_fd())
                .into_iter()
                .collect();
            if let Err(e) = send_handles(conn.fd.as_fd(), &out, &reply.encode()) {
                log!("replying to pid {pid} failed: {e}; dropping the connection");
                return Outcome::Drop;
            }
        }
        Outcome::Keep
    }

    /// Runs one request; returns the reply and, for `Opened`, the registration whose fd goes
    /// with it.
    fn handle(&mut self, conn: u64, pid: i32, req: Request, fd: Option<OwnedFd>) -> (Reply, Option<u64>) {
        match req {
            Request::Ping => (
                Reply::Pong {
                    pid: std::process::id(),
                },
                None,
            ),
            Request::RegisterName { name, kind } => {
                let name = match ObjectName::from_utf16(&name) {
                    Ok(n) => n,
                    Err(e) => return (Reply::error(ErrorCode::Invalid, e.to_string()), None),
                };
                if self.names.contains_key(name.key()) {
                    log!("name {name:?} already exists (register from pid {pid})");
                    return (
                        Reply::error(ErrorCode::AlreadyExists, format!("name {name:?} already exists")),
                        None,
                    );
                }
                let Some(fd) = fd else {
                    return (Reply::error(ErrorCode::Invalid, "no fd"), None);
                };
                let id = self.add(conn, fd, kind, Key::Name(name.clone()));
                self.names.insert(name.key().to_owned(), id);
                log!("registered name {name:?} (kind {kind}) for pid {pid}");
                (Reply::Registered { id }, None)
            }
            Request::RegisterKmt { kind } => {
                let Some(fd) = fd else {
                    return (Reply::error(ErrorCode::Invalid, "no fd"), None);
                };
                let Some(value) = self
                    .next_kmt
                    .and_then(KmtHandle::new)
                    .filter(|v| self.kmt_reserved.cover(v.get()))
                else {
                    return (Reply::error(ErrorCode::Exhausted, "out of KMT values"), None);
                };
                self.next_kmt = value.get().checked_add(KMT_STEP);
                let id = self.add(conn, fd, kind, Key::Kmt(value));
                self.kmts.insert(value.get(), id);
                log!("registered KMT {value} (kind {kind}) for pid {pid}");
                (Reply::Kmt { value: value.get(), id }, None)
            }
            Request::OpenName { name } => {
                let name = match ObjectName::from_utf16(&name) {
                    Ok(n) => n,
                    Err(e) => return (Reply::error(ErrorCode::Invalid, e.to_string()), None),
                };
                let found = self.names.get(name.key()).copied();
                self.open(found, &format!("name {name:?}"), pid)
            }
            Request::OpenKmt { value } => {
                let found = self.kmts.get(&value).copied();
                self.open(found, &format!("KMT {value:#010x}"), pid)
            }
            Request::Unregister { id } => match self.regs.get(&id) {
                Some(r) if r.conn == conn => {
                    if let Some(reg) = self.remove_reg(id) {
                        log!("unregistered {} for pid {pid}", reg.key);
                    }
                    (Reply::Ok, None)
                }
                _ => (
                    Reply::error(ErrorCode::NotFound, format!("no registration {id} on this connection")),
                    None,
                ),
            },
        }
    }

    fn add(&mut self, conn: u64, fd: OwnedFd, kind: u32, key: Key) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.regs.insert(id, Registration { fd, kind, conn, key });
        if let Some(c) = self.conns.get_mut(&conn) {
            c.regs.insert(id);
        }
        id
    }

    fn open(&self, found: Option<u64>, what: &str, pid: i32) -> (Reply, Option<u64>) {
        match found.and_then(|id| Some((id, self.regs.get(&id)?))) {
            Some((id, reg)) => {
                log!("opened {what} (kind {}) for pid {pid}", reg.kind);
                (Reply::Opened { kind: reg.kind }, Some(id))
            }
            None => {
                log!("no {what} (open from pid {pid})");
                (Reply::error(ErrorCode::NotFound, format!("no {what}")), None)
            }
        }
    }
}

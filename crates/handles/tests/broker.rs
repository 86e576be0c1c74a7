//! End-to-end tests of `tether-broker` and the client, each in its own temporary socket
//! directory.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, fstat, memfd_create};
use rustix::io::FdFlags;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use rustix::process::{Pid, Signal};

use tether_handles::client::{SOCKET_NAME, ensure_private_dir};
use tether_handles::kmt::KMT_FIRST;
use tether_handles::nt::send_handles;
use tether_handles::protocol::{ErrorCode, MAX_MESSAGE, Reply, Request};
use tether_handles::{Broker, HandleError, KmtHandle, ObjectName, SharedBroker};

const BROKER: &str = env!("CARGO_BIN_EXE_tether-broker");

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tether-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(p)
    }
    /// The socket directory inside (created by whoever comes first).
    fn sock_dir(&self) -> PathBuf {
        self.0.join("tether")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A broker run with `--foreground` as our child, its log collected.
struct Foreground {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl Foreground {
    /// Started with `XDG_RUNTIME_DIR` (and no `--dir`), as a user would.
    fn start(tmp: &TempDir) -> Foreground {
        let mut child = Command::new(BROKER)
            .arg("--foreground")
            .env("XDG_RUNTIME_DIR", &tmp.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let dir = tmp.sock_dir();
        let start = Instant::now();
        while Broker::connect_existing_at(&dir).ok().flatten().is_none() {
            assert!(start.elapsed() < Duration::from_secs(5), "broker did not come up");
            std::thread::sleep(Duration::from_millis(5));
        }
        Foreground { child, logs, dir }
    }

    fn connect(&self) -> Broker {
        Broker::connect_at(&self.dir, None).unwrap()
    }

    fn wait_log(&self, needle: &str) {
        eventually(&format!("log line containing {needle:?}"), || {
            self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
        });
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn memfd() -> OwnedFd {
    memfd_create("tether-test", MemfdFlags::CLOEXEC).unwrap()
}

fn name(s: &str) -> ObjectName {
    s.parse().unwrap()
}

fn ino(fd: impl AsFd) -> u64 {
    fstat(fd).unwrap().st_ino
}

fn raw_connect(dir: &Path) -> OwnedFd {
    let sock =
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
    rustix::net::connect(&sock, &SocketAddrUnix::new(dir.join(SOCKET_NAME)).unwrap()).unwrap();
    rustix::net::sockopt::set_socket_timeout(&sock, rustix::net::sockopt::Timeout::Recv, Some(Duration::from_secs(5)))
        .unwrap();
    sock
}

/// Waits for the broker to close `sock` (recv returns 0).
fn assert_dropped(sock: &OwnedFd) {
    let mut buf = [0u8; MAX_MESSAGE + 1];
    let n = rustix::net::recv(sock, &mut buf[..], rustix::net::RecvFlags::empty()).expect("no timeout");
    assert_eq!(n.0, 0, "expected the broker to drop the connection");
}

fn kill(pid: u32, sig: Signal) {
    rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), sig).unwrap();
}

#[test]
fn names_register_open_collide() {
    let tmp = TempDir::new();
    let broker = Foreground::start(&tmp);
    let mut a = broker.connect();
    let mut b = broker.connect();
    let m = memfd();
    let reg = a.register_name(&name("Local\\foo"), 3, m.as_fd()).unwrap();
    assert_eq!(reg.generation(), a.generation());
    broker.wait_log(&format!(
        "registered name \"Local\\\\foo\" (kind 3) for pid {}",
        std::process::id()
    ));

    // Another connection opens it under any prefix: the same file, a new close-on-exec fd.
    for n in ["Local\\foo", "Global\\foo", "foo", "LOCAL\\foo"] {
        let (kind, fd) = b.open_name(&name(n)).unwrap();
        assert_eq!(kind, 3);
        assert_eq!(ino(&fd), ino(&m));
        assert_ne!(fd.as_raw_fd(), m.as_raw_fd());
        assert!(rustix::io::fcntl_getfd(&fd).unwrap().contains(FdFlags::CLOEXEC));
    }
    // Names are case-sensitive after the prefix.
    assert!(matches!(b.open_name(&name("FOO")), Err(HandleError::NotFound)));
    // Collision, from either connection and any prefix.
    let other = memfd();
    assert!(matches!(
        b.register_name(&name("Global\\foo"), 1, other.as_fd()),
        Err(HandleError::AlreadyExists)
    ));
    assert!(matches!(
        a.register_name(&name("foo"), 1, other.as_fd()),
        Err(HandleError::AlreadyExists)
    ));
    // Unknown name.
    assert!(matches!(b.open_name(&name("Local\\nope")), Err(HandleError::NotFound)));
    // Non-ASCII names.
    let uni = name("Local\\événement-🦀");
    let _r = b.register_name(&uni, 9, other.as_fd()).unwrap();
    assert_eq!(a.open_name(&uni).unwrap().0, 9);
    // Everything still works afterwards.
    assert!(a.ping().unwrap() > 0);
    assert_eq!(a.ping().unwrap(), broker.child.id());
}

#[test]
fn kmt_register_open() {
    let tmp = TempDir::new();
    let broker = Foreground::start(&tmp);
    let mut a = broker.connect();
    let mut b = broker.connect();
    let (m1, m2) = (memfd(), memfd());
    let (k1, r1) = a.register_kmt(7, m1.as_fd()).unwrap();
    let (k2, _r2) = b.register_kmt(8, m2.as_fd()).unwrap();
    assert_eq!(k1.get(), KMT_FIRST);
    assert_eq!(k2.get(), KMT_FIRST + 4);
    broker.wait_log("registered KMT 0x40000002 (kind 7)");
    let (kind, fd) = b.open_kmt(k1).unwrap();
    assert_eq!((kind, ino(&fd)), (7, ino(&m1)));
    let (kind, fd) = a.open_kmt(k2).unwrap();
    assert_eq!((kind, ino(&fd)), (8, ino(&m2)));
    // Unknown values.
    assert!(matches!(
        a.open_kmt(KmtHandle::new(0x4000_1002).unwrap()),
        Err(HandleError::NotFound)
    ));
    assert!(matches!(
        a.open_kmt(KmtHandle::new(1).unwrap()),
        Err(HandleError::NotFound)
    ));
    // Unregistered values go stale and are never handed out again.
    a.unregister(r1).unwrap();
    assert!(matches!(b.open_kmt(k1), Err(HandleError::NotFound)));
    let (k3, _r3) = a.register_kmt(7, m1.as_fd()).unwrap();
    assert_eq!(k3.get(), KMT_FIRST + 8);
}

#[test]
fn registrations_die_with_unregister_and_connection() {
    let tmp = TempDir::new();
    let broker = Foreground::start(&tmp);
    let mut a = broker.connect();
    let mut b = broker.connect();
    let m = memfd();
    let n = name("Local\\gone");
    let r = a.register_name(&n, 1, m.as_fd()).unwrap();
    // Another connection cannot unregister it: locally refused (wrong connection) ...
    let fake = b.register_name(&name("other"), 1, m.as_fd()).unwrap();
    assert!(matches!(a.unregister(fake), Err(HandleError::BrokerRestarted)));
    // ... and refused by the broker when asked directly with the id.
    let raw = raw_connect(&broker.dir);
    send_handles(raw.as_fd(), &[], &Request::Unregister { id: r.id() }.encode()).unwrap();
    let mut buf = [0u8; MAX_MESSAGE];
    let (_, len) = tether_handles::nt::recv_handles(raw.as_fd(), 1, &mut buf).unwrap();
    assert!(matches!(
        Reply::decode(&buf[..len]).unwrap(),
        Reply::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    assert!(b.open_name(&n).is_ok());

    a.unregister(r).unwrap();
    broker.wait_log("unregistered name \"Local\\\\gone\"");
    assert!(matches!(b.open_name(&n), Err(HandleError::NotFound)));
    // The name is free again.
    let r = a.register_name(&n, 2, m.as_fd()).unwrap();
    assert_eq!(b.open_name(&n).unwrap().0, 2);
    let (k, _kr) = a.register_kmt(5, m.as_fd()).unwrap();
    // Closing the connection removes everything it registered.
    drop(r);
    drop(a);
    eventually("the name to go away", || {
        matches!(b.open_name(&n), Err(HandleError::NotFound))
    });
    assert!(matches!(b.open_kmt(k), Err(HandleError::NotFound)));
    broker.wait_log("disconnected)");
}

/// Run as a child by `registrations_die_with_killed_process`: registers, reports, waits to be
/// killed.
#[test]
fn child_helper() {
    let Some(dir) = std::env::var_os("TETHER_TEST_CHILD_DIR") else {
        return;
    };
    let mut b = Broker::connect_at(Path::new(&dir), None).unwrap();
    let m = memfd();
    let _r = b.register_name(&name("Local\\child"), 4, m.as_fd()).unwrap();
    let (k, _kr) = b.register_kmt(4, m.as_fd()).unwrap();
    println!("ready {}", k.get());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn registrations_die_with_killed_process() {
    let tmp = TempDir::new();
    let broker = Foreground::start(&tmp);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
        .env("TETHER_TEST_CHILD_DIR", &broker.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let kmt = loop {
        let line = lines.next().expect("child output").unwrap();
        // libtest prints "test child_helper ... " on the same line first.
        if let Some((_, v)) = line.split_once("ready ") {
            break KmtHandle::new(v.trim().parse().unwrap()).unwrap();
        }
    };
    let mut b = broker.connect();
    assert_eq!(b.open_name(&name("Local\\child")).unwrap().0, 4);
    assert_eq!(b.open_kmt(kmt).unwrap().0, 4);
    child.kill().unwrap(); // SIGKILL: no chance to unregister
    child.wait().unwrap();
    eventually("the child's name to go away", || {
        matches!(b.open_name(&name("Local\\child")), Err(HandleError::NotFound))
    });
    assert!(matches!(b.open_kmt(kmt), Err(HandleError::NotFound)));
}

#[test]
fn malformed_messages_drop_only_their_connection() {
    let tmp = TempDir::new();
    let broker = Foreground::start(&tmp);
    let mut good = broker.connect();
    let m = memfd();
    let _r = good.register_name(&name("survivor"), 1, m.as_fd()).unwrap();

    // Garbage.
    let raw = raw_connect(&broker.dir);
    send_handles(raw.as_fd(), &[], b"\x01\x42garbage").unwrap();
    assert_dropped(&raw);
    // Wrong version.
    let raw = raw_connect(&broker.dir);
    send_handles(raw.as_fd(), &[], b"\x07\x01").unwrap();
    assert_dropped(&raw);
    // Oversized.
    let raw = raw_connect(&broker.dir);
    let mut big = Request::Ping.encode();
    big.resize(MAX_MESSAGE * 2, 0);
    send_handles(raw.as_fd(), &[], &big).unwrap();
    assert_dropped(&raw);
    // Just over the limit.
    let raw = raw_connect(&broker.dir);
    big.truncate(MAX_MESSAGE + 1);
    send_handles(raw.as_fd(), &[], &big).unwrap();
    assert_dropped(&raw);
    // A request without its fd, and one with an fd it should not have.
    let raw = raw_connect(&broker.dir);
    send_handles(raw.as_fd(), &[], &Request::RegisterKmt { kind: 1 }.encode()).unwrap();
    assert_dropped(&raw);
    let raw = raw_connect(&broker.dir);
    send_handles(raw.as_fd(), &[m.as_fd()], &Request::Ping.encode()).unwrap();
    assert_dropped(&raw);
    // An invalid name is an error reply, not a dropped connection.
    let raw = raw_connect(&broker.dir);
    send_handles(
        raw.as_fd(),
        &[],
        &Request::OpenName {
            name: vec![0x61, 0xD800],
        }
        .encode(),
    )
    .unwrap();
    let mut buf = [0u8; MAX_MESSAGE];
    let (_, len) = tether_handles::nt::recv_handles(raw.as_fd(), 1, &mut buf).unwrap();
    assert!(matches!(
        Reply::decode(&buf[..len]).unwrap(),
        Reply::Error {
            code: ErrorCode::Invalid,
            ..
        }
    ));
    send_handles(raw.as_fd(), &[], &Request::Ping.encode()).unwrap();
    let (_, len) = tether_handles::nt::recv_handles(raw.as_fd(), 1, &mut buf).unwrap();
    assert!(matches!(Reply::decode(&buf[..len]).unwrap(), Reply::Pong { .. }));

    broker.wait_log("malformed message");
    broker.wait_log("oversized message");
    // The well-behaved connection and its registration are untouched.
    assert!(good.ping().is_ok());
    assert_eq!(broker.connect().open_name(&name("survivor")).unwrap().0, 1);
}

#[test]
fn start_on_demand_restart_and_reconnect() {
    let tmp = TempDir::new();
    let dir = tmp.sock_dir();
    let shared = SharedBroker::new(Some(dir.clone()), Some(PathBuf::from(BROKER)));
    assert_eq!(shared.generation(), 0);
    // Nothing runs: the first request starts a detached broker.
    let pid1 = shared.ping().unwrap();
    let gen1 = shared.generation();
    assert!(gen1 > 0);
    // A second client finds the same broker, and a second broker refuses to start.
    let mut other = Broker::connect_at(&dir, Some(Path::new(BROKER))).unwrap();
    assert_eq!(other.ping().unwrap(), pid1);
    let status = Command::new(BROKER)
        .args(["--foreground", "--dir"])
        .arg(&dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(other.ping().unwrap(), pid1);

    let m = memfd();
    let n = name("Local\\restart");
    let reg = shared.register_name(&n, 6, m.as_fd()).unwrap();
    let (kmt, kreg) = shared.register_kmt(6, m.as_fd()).unwrap();
    assert!(shared.is_live(&reg) && shared.is_live(&kreg));
    assert_eq!(other.open_name(&n).unwrap().0, 6);

    // The broker dies (its socket file stays behind, stale).
    kill(pid1, Signal::KILL);
    eventually("the old broker to die", || other.ping().is_err());
    assert!(!other.is_connected());
    assert!(dir.join(SOCKET_NAME).exists());

    // The shared connection notices, starts a new broker, and retries: the name is gone.
    let r = shared.open_name(&n);
    assert!(matches!(r, Err(HandleError::NotFound)), "{r:?}");
    let pid2 = shared.ping().unwrap();
    assert_ne!(pid1, pid2);
    assert!(shared.generation() > gen1);
    assert!(!shared.is_live(&reg));
    assert!(matches!(shared.unregister(reg), Err(HandleError::BrokerRestarted)));
    assert!(matches!(shared.open_kmt(kmt), Err(HandleError::NotFound)));
    // The new broker never hands out a value the dead one may have used (a stale value in some
    // process would name another object).
    let (k, r) = shared.register_kmt(1, m.as_fd()).unwrap();
    assert!(k.get() > kmt.get(), "{k} after {kmt}");
    assert!(shared.is_live(&r));
    shared.unregister(r).unwrap();
    drop(kreg);
    // A plain connection does not reconnect by itself.
    assert!(matches!(other.ping(), Err(HandleError::BrokerUnavailable(_))));
    kill(pid2, Signal::TERM);
}

#[test]
fn broker_binary_not_found() {
    let tmp = TempDir::new();
    // A hint directory without the broker, and no broker next to the test binary or on PATH
    // (cargo puts the broker in target/debug, the test binary in target/debug/deps).
    let err = Broker::connect_at(&tmp.sock_dir(), Some(&tmp.0));
    if let Err(e) = err {
        assert!(matches!(e, HandleError::BrokerUnavailable(_)), "{e}");
        assert!(e.to_string().to_lowercase().contains("tether"), "{e}");
    } else {
        // tether-broker is installed on PATH on this machine: nothing to check, but stop it.
        let pid = err.unwrap().ping().unwrap();
        kill(pid, Signal::TERM);
    }
}

#[test]
fn socket_dir_must_be_private() {
    let tmp = TempDir::new();
    // Created 0700 when missing.
    let fresh = tmp.0.join("fresh");
    ensure_private_dir(&fresh).unwrap();
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    // Wrong mode.
    let open = tmp.0.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = Broker::connect_at(&open, Some(Path::new(BROKER))).unwrap_err();
    assert!(matches!(e, HandleError::PermissionDenied(_)), "{e}");
    assert!(e.to_string().contains("0755"), "{e}");
    // A symlink to a good directory.
    let link = tmp.0.join("link");
    std::os::unix::fs::symlink(&fresh, &link).unwrap();
    let e = Broker::connect_at(&link, Some(Path::new(BROKER))).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // Not a directory.
    let file = tmp.0.join("file");
    std::fs::write(&file, b"").unwrap();
    assert!(matches!(
        ensure_private_dir(&file),
        Err(HandleError::PermissionDenied(_))
    ));
    // Another owner (we are root in CI; skip otherwise).
    if rustix::process::geteuid().is_root() {
        let foreign = tmp.0.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
        rustix::fs::chown(&foreign, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        let e = ensure_private_dir(&foreign).unwrap_err();
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    }
    // The broker refuses it too.
    let out = Command::new(BROKER)
        .args(["--foreground", "--dir"])
        .arg(&open)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let mut msg = String::new();
    out.stderr.as_slice().read_to_string(&mut msg).unwrap();
    assert!(msg.contains("0755"), "{msg}");
}

#[test]
fn idle_exit_removes_the_socket() {
    let tmp = TempDir::new();
    let dir = tmp.sock_dir();
    let mut child = Command::new(BROKER)
        .args(["--foreground", "--idle-exit", "1", "--dir"])
        .arg(&dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the broker to listen", || {
        Broker::connect_existing_at(&dir).ok().flatten().is_some()
    });
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(!dir.join(SOCKET_NAME).exists());
    assert!(Broker::connect_existing_at(&dir).unwrap().is_none());
}

/// Run by `other_users_are_refused` as uid 65534: connects and pings the broker; exits 0 when the
/// broker hangs up without answering.
#[test]
fn foreign_uid_helper() {
    let Some(dir) = std::env::var_os("TETHER_TEST_FOREIGN_DIR") else {
        return;
    };
    let raw = raw_connect(Path::new(&dir));
    let _ = send_handles(raw.as_fd(), &[], &Request::Ping.encode());
    let mut buf = [0u8; 64];
    match rustix::net::recv(&raw, &mut buf[..], rustix::net::RecvFlags::empty()) {
        Ok((0, _)) | Err(rustix::io::Errno::CONNRESET) => std::process::exit(0),
        other => panic!("the broker answered a foreign uid: {other:?}"),
    }
}

#[test]
fn other_users_are_refused() {
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run a child as another user");
        return;
    }
    let tmp = TempDir::new();
    let broker = Foreground::start(&tmp);
    // Let uid 65534 reach the socket (the broker only checks the directory when it starts), so
    // SO_PEERCRED is what stops it.
    for p in [&tmp.0, &broker.dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(broker.dir.join(SOCKET_NAME), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "foreign_uid_helper", "--nocapture", "--test-threads=1"])
        .env("TETHER_TEST_FOREIGN_DIR", &broker.dir)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: cannot run the test binary as uid 65534");
        return;
    };
    if String::from_utf8_lossy(&out.stderr).contains("Permission denied") {
        eprintln!("skipped: the test binary is not reachable for uid 65534");
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    broker.wait_log("refused a connection from pid");
    broker.wait_log("uid 65534 is not ours");
}

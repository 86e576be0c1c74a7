//! Helpers shared by the `robustness_*` test binaries (each includes this file with `#[path]`).

#![allow(dead_code)]

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use tether_conformance::Options;
use tether_conformance::external::{FdCommands, WithFdExtensions};
use tether_conformance::harness::Route;
use tether_conformance::win32::Win32Device;

/// A count from the environment (`name=<n>`), else `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Seconds from the environment (`name=<s>`, fractions allowed), else `default`.
pub fn env_seconds(name: &str, default: f64) -> Duration {
    let s = std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(default);
    Duration::from_secs_f64(s)
}

/// Raises `TETHER_TEST_WATCHDOG_S` (the harness's limit for a whole test binary) to at least
/// `seconds` unless the user set it. Call first thing in `main`, while single-threaded.
///
/// # Safety
/// The process must be single-threaded.
pub unsafe fn raise_watchdog(seconds: u64) {
    if std::env::var_os("TETHER_TEST_WATCHDOG_S").is_none() && seconds > 120 {
        // SAFETY: per the function's contract nothing else touches the environment now.
        unsafe { std::env::set_var("TETHER_TEST_WATCHDOG_S", seconds.to_string()) };
    }
}

/// A [`Win32Device`] with the fd extensions too, and their commands.
pub struct SyncDevice {
    pub fd: FdCommands,
    pub win: Win32Device,
}

impl std::ops::Deref for SyncDevice {
    type Target = Win32Device;
    fn deref(&self) -> &Win32Device {
        &self.win
    }
}

impl SyncDevice {
    pub fn new(route: Route) -> SyncDevice {
        SyncDevice::with_options(route, Options::default())
    }

    pub fn with_options(route: Route, options: Options) -> SyncDevice {
        let win = Win32Device::with_options(route, options.with_fd_extensions());
        SyncDevice {
            fd: FdCommands::new(&win),
            win,
        }
    }
}

/// Runs `f` and asserts it returned within `limit` plus a generous slack (only a hang takes
/// that long): "the wait returned", never how fast.
#[track_caller]
pub fn returns_within<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    let bound = limit + SLACK;
    assert!(
        took <= bound,
        "{what}: returned only after {took:?} (its timeout was {limit:?}; a wait must end by its timeout)"
    );
    out
}

/// What a wait may take beyond its timeout before it counts as hung: scheduling on a loaded
/// 2-core machine, never a timing claim.
pub const SLACK: Duration = Duration::from_secs(5);

/// `VmRSS` of this process in KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The entries of `/proc/self/fd`, each with what it points to (for failure messages).
pub fn fd_listing() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let target = std::fs::read_link(e.path()).ok()?;
                    Some(format!("{} -> {}", e.file_name().to_string_lossy(), target.display()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `fd` has close-on-exec set.
pub fn cloexec(fd: BorrowedFd<'_>) -> bool {
    rustix::io::fcntl_getfd(fd).is_ok_and(|f| f.contains(rustix::io::FdFlags::CLOEXEC))
}

/// Every fd of this process without close-on-exec, other than the standard streams.
pub fn inheritable_fds() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return out;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if n <= 2 {
            continue;
        }
        // SAFETY: only used for fcntl(F_GETFD), harmless on any number (the listing's own fd
        // may be closed by now: then it fails and is skipped).
        let fd = unsafe { BorrowedFd::borrow_raw(n) };
        if rustix::io::fcntl_getfd(fd).is_ok_and(|f| !f.contains(rustix::io::FdFlags::CLOEXEC)) {
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            out.push(format!("{n} -> {target}"));
        }
    }
    out
}

/// A name as NUL-terminated UTF-16.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A xorshift generator for the tests' own randomness (not proptest's).
pub struct XorShift(pub u64);

impl XorShift {
    pub fn seeded() -> XorShift {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        XorShift(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The device extensions' names, for messages.
pub fn names(list: &[&CStr]) -> Vec<String> {
    list.iter().map(|c| c.to_string_lossy().into_owned()).collect()
}

/// Whether `fd` refers to a tether payload page (a memfd named `tether-payload`).
pub fn is_payload_fd(fd: impl AsFd) -> bool {
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd());
    std::fs::read_link(format!("/proc/self/fd/{raw}")).is_ok_and(|t| t.to_string_lossy().contains("tether-payload"))
}

/// A child process the test talks to line by line: commands on its stdin, replies on its stdout
/// (stderr is collected for failure messages).
pub struct Peer {
    pub child: std::process::Child,
    pub name: String,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    pub seen: Vec<String>,
}

impl Peer {
    /// Starts `cmd` with piped stdio.
    pub fn spawn(name: &str, cmd: &mut std::process::Command) -> Peer {
        use std::io::{BufRead, Read};
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        Peer {
            stdin: child.stdin.take(),
            child,
            name: name.to_owned(),
            lines,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line that starts with `prefix` (earlier lines are kept in `seen`), within
    /// `limit` (only a hang takes that long).
    pub fn expect(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    self.seen.push(line.clone());
                    return line;
                }
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let status = self.child.wait();
                    let stderr = self
                        .stderr
                        .take()
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default();
                    panic!(
                        "{}: no line starting with {prefix:?} (status {status:?}); its output: {:?}\n--- stderr ---\n{stderr}",
                        self.name, self.seen
                    );
                }
            }
        }
    }

    /// Sends one line to the child.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes its stdin and waits for it to exit (at most `limit`); panics unless it exited 0.
    pub fn finish(mut self, limit: Duration) {
        self.stdin = None;
        let status = tether_conformance::external::wait_child(&mut self.child, limit);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "{}: {} ; its output: {:?}\n--- stderr ---\n{stderr}",
            self.name,
            match status {
                Some(s) => format!("exited with {s}"),
                None => "ran past its limit and was killed".into(),
            },
            self.seen
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the next line of this process's stdin (a child's command), `None` at EOF.
pub fn read_command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_owned()),
    }
}

/// Prints one reply line and flushes.
pub fn reply(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Clears close-on-exec on `fds` in a `Command`'s child only (between fork and exec).
pub fn inherit_fds(cmd: &mut std::process::Command, fds: &[std::os::fd::RawFd]) {
    let fds = fds.to_vec();
    // SAFETY: runs in the forked child before exec and only calls fcntl (async-signal-safe).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            for &fd in &fds {
                rustix::io::fcntl_setfd(BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
}

/// The files in the runtime directory `dir` (recursively, relative names), for checking that
/// only the broker's own files are left.
pub fn runtime_files(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .map(|r| r.display().to_string())
                .unwrap_or_default();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The broker's own files in a runtime directory: its socket directory, socket, lock and KMT
/// counter.
pub fn broker_files_only(files: &[String]) -> bool {
    files.iter().all(|f| {
        matches!(
            f.as_str(),
            "tether/" | "tether/broker.sock" | "tether/broker.lock" | "tether/kmt.next"
        )
    })
}

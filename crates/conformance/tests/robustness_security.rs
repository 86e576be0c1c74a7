//! Security (issue 6): handles are close-on-exec unless inheritance was asked for, names and KMT
//! values are per-user, the broker survives whatever a client sends it, and a read-only handle
//! cannot signal.
//!
//! * `cloexec::{icd, icd_loader, layer}`: every export path — OPAQUE_FD and SYNC_FD of fences,
//!   binary and timeline semaphores; OPAQUE_WIN32 and D3D12_FENCE without export info, with a
//!   NULL `pAttributes`, with `bInheritHandle = FALSE` and `TRUE` — and the fds the driver keeps
//!   for its imports: afterwards exactly the fds exported with `bInheritHandle = TRUE` lack
//!   close-on-exec, and a child process started then (a real `exec`) holds exactly those fds
//!   besides its standard streams. Runs in a child process per target (in process, through the
//!   loader, through the layer over the fd-only ICD).
//! * `per_user::other_user`: extends the Win32 suite's `broker::other_user_cannot_open` (a
//!   semaphore's name and KMT value) to a fence's name and KMT value and a D3D12 fence's name:
//!   a child that drops to `nobody` cannot open them through the driver, and cannot take the
//!   payload's fd from the exporting process through `/proc/<pid>/fd` or `pidfd_getfd` either.
//!   Needs root (skipped otherwise).
//! * `broker::random_messages`: `TETHER_BROKER_FUZZ_MESSAGES` (default 400) random messages to a
//!   private broker — garbage, truncated and oversized messages, unknown opcodes, valid requests
//!   with random fields, 0 to 4 fds of any sort attached (pipes, sockets, `/dev/null`, memfds),
//!   many connections open at once, some closed mid-conversation — while a connection that sent
//!   half a message and then nothing stays open. Afterwards the same broker process (it never
//!   crashed or restarted) serves a well-behaved client, and holds as many fds as before (every
//!   fd attached to a refused message was closed). (`crates/handles/tests/broker.rs` covers each
//!   malformed and oversized case and other users' connections one by one.)
//! * `read_only::across_processes`: extends the Win32 suite's `access` tests (one process) to a
//!   child that imports NT handles exported with `dwAccess = SYNCHRONIZE` (a fence, a binary and
//!   a timeline semaphore): its host signals, queue signals, fence resets and binary waits leave
//!   the payloads as the parent set them, and its waits still see the parent's signals; it also
//!   cannot map the fd writable. Whether the fd can be reopened read-write through
//!   `/proc/self/fd` is printed (a memfd's inode allows it: see the report).

#[path = "robustness/common.rs"]
mod common;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ash::vk;
use common::{SyncDevice, XorShift, env_count};
use tether_conformance::external::child_main;
use tether_conformance::harness::{self, NO_ROUTE, Role, Route, Target};
use tether_conformance::win32::{
    ExportAttributes, NativeHandle, Permanence, RuntimeDir, SYNCHRONIZE, Win32HandleType, route_from_name, run_child,
    unique_name,
};
use tether_conformance::{Batch, LONG_NS, Options, tests};

const CHILD_LIMIT: Duration = Duration::from_secs(120);

const ROLES: &[Role] = &[
    Role {
        name: "cloexec",
        setup_environment: true,
        run: cloexec::role_cloexec,
    },
    Role {
        name: "list-fds",
        setup_environment: false,
        run: cloexec::role_list_fds,
    },
    Role {
        name: "nobody",
        setup_environment: false,
        run: per_user::role_nobody,
    },
    Role {
        name: "read-only",
        setup_environment: true,
        run: read_only::role_read_only,
    },
];

fn main() -> ExitCode {
    use broker::random_messages;
    use cloexec::{icd, icd_loader, layer};
    use per_user::other_user;
    use read_only::across_processes;
    tether_conformance::win32::main(ROLES, || {
        let mut all = harness::group("cloexec", tests!(NO_ROUTE => [icd, icd_loader, layer]));
        all.extend(harness::group("per_user", tests!(NO_ROUTE => [other_user])));
        all.extend(harness::group("broker", tests!(NO_ROUTE => [random_messages])));
        all.extend(harness::group("read_only", tests!(NO_ROUTE => [across_processes])));
        all
    })
}

// --- close-on-exec ----------------------------------------------------------------------------

mod cloexec {
    use super::*;

    pub fn icd(_route: Route) {
        run(Route::InProcess, None);
    }

    pub fn icd_loader(_route: Route) {
        harness::require_loader();
        run(Route::Loader, None);
    }

    pub fn layer(_route: Route) {
        harness::require_loader();
        run(Route::Loader, Some(Target::LayerOverFdIcd));
    }

    fn run(route: Route, target: Option<Target>) {
        let mut cmd = harness::child_command("cloexec");
        cmd.arg(route.name());
        if let Some(t) = target {
            cmd.env(harness::TARGET_ENV, t.name());
        }
        let output = run_child(&mut cmd, CHILD_LIMIT);
        output.assert_success("the close-on-exec checks");
        eprintln!("{}", output.stdout.trim_end());
    }

    /// `list-fds`: prints `FD <n> <target>` for each open fd, then `END`.
    pub fn role_list_fds(_args: &[String]) -> i32 {
        for line in common::fd_listing() {
            println!("FD {line}");
        }
        println!("END");
        0
    }

    /// `cloexec <route>`: exports through every path, imports, checks the flags, execs a child.
    pub fn role_cloexec(args: &[String]) -> i32 {
        child_main(|| {
            let [route] = args else {
                panic!("cloexec <route>, got {args:?}")
            };
            // What this process inherited itself (e.g. a jobserver pipe of cargo's) is not the
            // driver's doing: only what appears from here on counts.
            let already: Vec<RawFd> = common::inheritable_fds()
                .iter()
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect();
            let d = SyncDevice::new(route_from_name(route));
            let mut inherited_what: Vec<String> = Vec::new();
            // Exports that asked for inheritance: their fds must survive exec.
            let mut inherited: Vec<OwnedFd> = Vec::new();
            // Everything else: close-on-exec.
            let mut kept: Vec<(String, OwnedFd)> = Vec::new();
            let expect_cloexec = |what: String, fd: OwnedFd, kept: &mut Vec<(String, OwnedFd)>| {
                assert!(
                    common::cloexec(fd.as_fd()),
                    "{what}: fd {} lacks close-on-exec",
                    fd.as_raw_fd()
                );
                kept.push((what, fd));
            };
            let own = |raw: Result<i32, vk::Result>, what: &str| -> Option<OwnedFd> {
                let raw = raw.unwrap_or_else(|e| panic!("{what}: {e}; {}", d.messages()));
                // SAFETY: a successful export returns a new fd the caller owns (-1: none).
                (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
            };
            let fd_fence = vk::ExternalFenceHandleTypeFlags::OPAQUE_FD;
            let sync_fence = vk::ExternalFenceHandleTypeFlags::SYNC_FD;
            let fd_sem = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;
            let sync_sem = vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD;

            // OPAQUE_FD, and imports of it (the driver keeps the fd it was given).
            let f = d.exportable_fence(fd_fence | sync_fence);
            let fd = own(d.fd.get_fence_fd(f, fd_fence), "OPAQUE_FD fence").expect("an fd");
            let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 3).expect("dup");
            let g = d.fence(false);
            assert_eq!(
                d.fd.import_fence_raw(
                    g,
                    fd_fence,
                    vk::FenceImportFlags::empty(),
                    std::os::fd::IntoRawFd::into_raw_fd(dup)
                ),
                vk::Result::SUCCESS
            );
            expect_cloexec("OPAQUE_FD fence".into(), fd, &mut kept);
            let b = d.exportable_semaphore(fd_sem | sync_sem);
            let fd = own(d.fd.get_semaphore_fd(b, fd_sem), "OPAQUE_FD binary semaphore").expect("an fd");
            expect_cloexec("OPAQUE_FD binary semaphore".into(), fd, &mut kept);
            let t = d.exportable_timeline(fd_sem, 0, None);
            let fd = own(d.fd.get_semaphore_fd(t, fd_sem), "OPAQUE_FD timeline").expect("an fd");
            let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 3).expect("dup");
            let t2 = d.timeline_semaphore(0);
            assert_eq!(
                d.fd.import_semaphore_raw(
                    t2,
                    fd_sem,
                    vk::SemaphoreImportFlags::empty(),
                    std::os::fd::IntoRawFd::into_raw_fd(dup)
                ),
                vk::Result::SUCCESS
            );
            expect_cloexec("OPAQUE_FD timeline".into(), fd, &mut kept);

            // SYNC_FD while the signal is pending (a real sync file), imported elsewhere.
            let gate = d.gate();
            assert_eq!(d.submit(0, &[Batch::new().wait(gate, 1)], f), vk::Result::SUCCESS);
            let fd = own(d.fd.get_fence_fd(f, sync_fence), "SYNC_FD fence");
            assert_eq!(
                d.submit(0, &[Batch::new().wait(gate, 1).signal(b, 0)], vk::Fence::null()),
                vk::Result::SUCCESS
            );
            let sfd = own(d.fd.get_semaphore_fd(b, sync_sem), "SYNC_FD binary semaphore");
            if let Some(fd) = fd {
                let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 3).expect("dup");
                let h = d.fence(false);
                assert_eq!(
                    d.fd.import_fence_raw(
                        h,
                        sync_fence,
                        vk::FenceImportFlags::TEMPORARY,
                        std::os::fd::IntoRawFd::into_raw_fd(dup)
                    ),
                    vk::Result::SUCCESS
                );
                expect_cloexec("SYNC_FD fence (pending)".into(), fd, &mut kept);
            }
            if let Some(fd) = sfd {
                expect_cloexec("SYNC_FD binary semaphore (pending)".into(), fd, &mut kept);
            }

            // Win32 NT handles: every way of asking, for every object.
            let variants: [(&str, Option<ExportAttributes>, bool); 4] = [
                ("without export info", None, false),
                ("pAttributes NULL", Some(ExportAttributes::default()), false),
                (
                    "bInheritHandle FALSE",
                    Some(ExportAttributes {
                        inherit: Some(false),
                        ..ExportAttributes::default()
                    }),
                    false,
                ),
                (
                    "bInheritHandle TRUE",
                    Some(ExportAttributes {
                        inherit: Some(true),
                        ..ExportAttributes::default()
                    }),
                    true,
                ),
            ];
            let nt = Win32HandleType::OpaqueWin32;
            let d3d12 = Win32HandleType::D3d12Fence;
            for (label, attrs, inherit) in &variants {
                let mut handles: Vec<(String, NativeHandle)> = Vec::new();
                let f = d
                    .try_exportable_fence(nt.fence_bit(), attrs.as_ref())
                    .expect("an exportable fence");
                handles.push((format!("OPAQUE_WIN32 fence, {label}"), d.export_fence(f, nt)));
                let s = d
                    .try_exportable_semaphore(nt.semaphore_bit(), vk::SemaphoreType::BINARY, 0, attrs.as_ref())
                    .expect("an exportable semaphore");
                handles.push((
                    format!("OPAQUE_WIN32 binary semaphore, {label}"),
                    d.export_semaphore(s, nt),
                ));
                let s = d
                    .try_exportable_semaphore(nt.semaphore_bit(), vk::SemaphoreType::TIMELINE, 0, attrs.as_ref())
                    .expect("an exportable timeline");
                handles.push((format!("OPAQUE_WIN32 timeline, {label}"), d.export_semaphore(s, nt)));
                if let Ok(s) =
                    d.try_exportable_semaphore(d3d12.semaphore_bit(), vk::SemaphoreType::TIMELINE, 0, attrs.as_ref())
                {
                    handles.push((format!("D3D12_FENCE, {label}"), d.export_semaphore(s, d3d12)));
                }
                for (what, handle) in handles {
                    // An import duplicates the handle: the duplicate must be close-on-exec.
                    if what.contains("fence,") {
                        let g = d.fence(false);
                        d.import_fence(g, nt, Permanence::Permanent, &handle);
                    } else if what.starts_with("D3D12") {
                        let g = d.timeline_semaphore(0);
                        d.import_semaphore(g, d3d12, Permanence::Permanent, &handle);
                    } else if what.contains("timeline") {
                        let g = d.timeline_semaphore(0);
                        d.import_semaphore(g, nt, Permanence::Permanent, &handle);
                    } else {
                        let g = d.binary_semaphore();
                        d.import_semaphore(g, nt, Permanence::Permanent, &handle);
                    }
                    let NativeHandle::Nt(fd) = handle else {
                        unreachable!("an NT handle")
                    };
                    if *inherit {
                        assert!(
                            !common::cloexec(fd.as_fd()),
                            "{what}: inheritance was asked for, yet fd {} has close-on-exec",
                            fd.as_raw_fd()
                        );
                        inherited_what.push(what);
                        inherited.push(fd);
                    } else {
                        expect_cloexec(what, fd, &mut kept);
                    }
                }
            }
            d.open_gate(gate);
            d.idle();

            // Nothing else of this process is inheritable: not the driver's own fds (pages,
            // sync files, the broker connection), not the layer's.
            let expected: Vec<RawFd> = inherited.iter().map(AsRawFd::as_raw_fd).collect();
            let inheritable = common::inheritable_fds();
            let unexpected: Vec<&String> = inheritable
                .iter()
                .filter(|l| {
                    let n: RawFd = l.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(-1);
                    !expected.contains(&n) && !already.contains(&n)
                })
                .collect();
            assert!(
                unexpected.is_empty(),
                "fds without close-on-exec that nobody asked to inherit: {unexpected:?}"
            );

            // And a real exec: the child holds its stdio and exactly the inherited exports.
            let output = run_child(&mut harness::child_command("list-fds"), CHILD_LIMIT);
            output.assert_success("a child listing its fds");
            let listed: Vec<(RawFd, String)> = output
                .stdout
                .lines()
                .filter_map(|l| l.strip_prefix("FD "))
                .filter_map(|l| {
                    let (n, target) = l.split_once(" -> ")?;
                    Some((n.parse().ok()?, target.to_owned()))
                })
                .collect();
            let extra: Vec<&(RawFd, String)> = listed
                .iter()
                .filter(|(n, target)| {
                    *n > 2 && !expected.contains(n) && !already.contains(n) && !target.starts_with("/proc/")
                })
                .collect();
            assert!(
                extra.is_empty(),
                "a child started after the exports holds fds nobody asked to inherit: {extra:?} (all: {listed:?})"
            );
            for n in &expected {
                let target = listed.iter().find(|(m, _)| m == n).map(|(_, t)| t.as_str());
                assert!(
                    target.is_some_and(|t| t.contains("tether-payload")),
                    "the inheritable export fd {n} did not reach the child as a payload page: {target:?}"
                );
            }
            println!(
                "{} export paths checked on {route}{}: {} inherited by exec as asked, nothing else",
                kept.len() + inherited_what.len(),
                if harness::target().through_layer() {
                    " (through the layer)"
                } else {
                    ""
                },
                expected.len()
            );
            d.log().take();
            drop((kept, inherited));
        })
    }
}

// --- names and KMT values are per-user --------------------------------------------------------

mod per_user {
    use super::*;

    pub fn other_user(route: Route) {
        if !rustix::process::geteuid().is_root() {
            harness::skip("skipped: switching to the user nobody needs root");
        }
        let d = SyncDevice::new(route);
        let fence_name = unique_name("private-fence");
        let d3d12_name = unique_name("private-d3d12");
        let nt = Win32HandleType::OpaqueWin32;
        let kmt = Win32HandleType::OpaqueWin32Kmt;
        let fence = d.exportable_fence_with(nt.fence_bit() | kmt.fence_bit(), &ExportAttributes::named(&fence_name));
        let fence_nt = d.export_fence(fence, nt);
        let fence_kmt = d.export_fence(fence, kmt);
        let d3d12 = d.try_exportable_semaphore(
            Win32HandleType::D3d12Fence.semaphore_bit(),
            vk::SemaphoreType::TIMELINE,
            0,
            Some(&ExportAttributes::named(&d3d12_name)),
        );
        let _d3d12_nt = d3d12.ok().map(|s| d.export_semaphore(s, Win32HandleType::D3d12Fence));
        let payload_fd = fence_nt.fd().expect("an NT handle").as_raw_fd();
        let mut cmd = harness::child_command("nobody");
        cmd.arg(route.name())
            .arg(&fence_name)
            .arg(format!("{:#x}", fence_kmt.raw()))
            .arg(&d3d12_name)
            .arg(std::process::id().to_string())
            .arg(payload_fd.to_string())
            .env_remove("XDG_RUNTIME_DIR");
        std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
        std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
        let output = run_child(&mut cmd, CHILD_LIMIT);
        output.assert_success("a child running as nobody");
        eprintln!("{}", output.stdout.trim_end());
        d.log().take();
    }

    /// `nobody <route> <fence name> <fence KMT> <D3D12 name> <parent pid> <payload fd>`.
    pub fn role_nobody(args: &[String]) -> i32 {
        child_main(|| {
            let [route, fence_name, fence_kmt, d3d12_name, parent, payload_fd] = args else {
                panic!("nobody <route> <fence name> <fence KMT> <D3D12 name> <pid> <fd>, got {args:?}")
            };
            assert_eq!(rustix::process::geteuid().as_raw(), 65534, "not running as nobody");
            let own_dir = tether_handles::client::default_socket_dir();
            let created = !own_dir.exists();
            // The payload's fd cannot be taken from the exporting process.
            let proc_path = format!("/proc/{parent}/fd/{payload_fd}");
            let opened = std::fs::OpenOptions::new().read(true).open(&proc_path);
            println!("nobody opening {proc_path}: {:?}", opened.as_ref().map(|_| "opened"));
            assert!(
                opened.is_err(),
                "nobody opened another user's payload through {proc_path}"
            );
            let pid = rustix::process::Pid::from_raw(parent.parse().expect("a pid")).expect("a pid");
            match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
                Ok(pidfd) => {
                    let fd: RawFd = payload_fd.parse().expect("an fd");
                    let got = rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty());
                    println!(
                        "nobody's pidfd_getfd of the payload: {:?}",
                        got.as_ref().map(|_| "got it")
                    );
                    assert!(got.is_err(), "nobody took another user's payload fd with pidfd_getfd");
                }
                Err(e) => println!("nobody's pidfd_open of the exporter: {e}"),
            }
            // Nor through the driver.
            let d = SyncDevice::with_options(route_from_name(route), Options::expecting_errors());
            let units = |s: &str| -> Vec<u16> { s.encode_utf16().collect() };
            let f = d.fence(false);
            let r = d.import_fence_by_name(f, vk::FenceImportFlags::empty(), &units(fence_name));
            println!("nobody importing the fence's name: {r:?}");
            assert_eq!(r, vk::Result::ERROR_INVALID_EXTERNAL_HANDLE);
            let kmt = vk::HANDLE::from_str_radix(fence_kmt.trim_start_matches("0x"), 16).expect("a KMT value");
            let r = d.import_fence_raw(
                f,
                vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT,
                vk::FenceImportFlags::empty(),
                kmt,
                std::ptr::null(),
            );
            println!("nobody importing the fence's KMT value: {r:?}");
            assert_eq!(r, vk::Result::ERROR_INVALID_EXTERNAL_HANDLE);
            let t = d.timeline_semaphore(0);
            let r = d.import_semaphore_by_name(
                t,
                vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE,
                vk::SemaphoreImportFlags::empty(),
                &units(d3d12_name),
            );
            println!("nobody importing the D3D12 fence's name: {r:?}");
            assert_eq!(r, vk::Result::ERROR_INVALID_EXTERNAL_HANDLE);
            d.log().take();
            drop(d);
            if let Some(pid) = tether_conformance::win32::broker_pid(&own_dir) {
                tether_conformance::win32::kill_and_wait(pid);
            }
            if created {
                let _ = std::fs::remove_dir_all(&own_dir);
            }
        })
    }
}

// --- the broker under random messages ---------------------------------------------------------

mod broker {
    use super::*;
    use tether_handles::protocol::{MAX_MESSAGE, Request};

    fn fd_of_some_sort(rng: &mut XorShift) -> OwnedFd {
        match rng.below(5) {
            0 => std::fs::File::open("/dev/null").map(OwnedFd::from).expect("/dev/null"),
            1 => {
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .expect("pipe")
                    .0
            }
            2 => tether_conformance::external::socket_pair().0,
            3 => rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("eventfd"),
            _ => {
                let fd = rustix::fs::memfd_create("tether-fuzz", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
                rustix::fs::ftruncate(&fd, 4096).expect("ftruncate");
                fd
            }
        }
    }

    fn message(rng: &mut XorShift) -> Vec<u8> {
        let random = |rng: &mut XorShift, n: usize| -> Vec<u8> { (0..n).map(|_| rng.next() as u8).collect() };
        match rng.below(8) {
            0 => {
                let n = rng.below(64) as usize;
                random(rng, n)
            }
            1 => {
                let mut m = vec![1u8, [0u8, 7, 0x80, 0xff, rng.next() as u8][rng.below(5) as usize]];
                let n = rng.below(40) as usize;
                m.extend(random(rng, n));
                m
            }
            2 => {
                let n = MAX_MESSAGE + 1 + rng.below(MAX_MESSAGE as u64) as usize;
                let mut m = random(rng, n);
                m[0] = 1;
                m
            }
            3 => {
                let units: Vec<u16> = (0..rng.below(300)).map(|_| rng.next() as u16).collect();
                Request::OpenName { name: units }.encode()
            }
            4 => Request::OpenKmt {
                value: rng.next() as u32,
            }
            .encode(),
            5 => Request::Unregister { id: rng.next() }.encode(),
            6 => Request::RegisterKmt {
                kind: rng.next() as u32,
            }
            .encode(),
            _ => {
                let mut m = Request::RegisterName {
                    name: format!("fuzz-{}", rng.next()).encode_utf16().collect(),
                    kind: rng.next() as u32,
                }
                .encode();
                // Sometimes cut short.
                if rng.below(3) == 0 {
                    let keep = rng.below(m.len() as u64) as usize;
                    m.truncate(keep);
                }
                m
            }
        }
    }

    fn broker_fds(pid: u32) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_link(e.path()).ok().map(|t| t.display().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn raw_connect(dir: &std::path::Path) -> OwnedFd {
        let sock = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .expect("socket");
        let addr = rustix::net::SocketAddrUnix::new(dir.join(tether_handles::client::SOCKET_NAME)).expect("address");
        rustix::net::connect(&sock, &addr).expect("connecting to the broker");
        sock
    }

    /// Reads whatever the broker answered within a moment (closing any fds it sent).
    fn drain(sock: &OwnedFd) -> bool {
        let mut poll = [rustix::event::PollFd::new(sock, rustix::event::PollFlags::IN)];
        let wait = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        if !matches!(rustix::event::poll(&mut poll, Some(&wait)), Ok(n) if n > 0) {
            return true;
        }
        let mut buf = vec![0u8; MAX_MESSAGE];
        match tether_handles::nt::recv_handles(sock.as_fd(), 4, &mut buf) {
            Ok((_fds, 0)) => false,
            Ok(_) => true,
            Err(_) => false,
        }
    }

    pub fn random_messages(_route: Route) {
        let runtime = RuntimeDir::new("tether-broker-fuzz");
        let dir = runtime.socket_dir();
        let hint = std::env::var_os(tether_handles::client::BROKER_ENV).map(std::path::PathBuf::from);
        let mut good = tether_handles::Broker::connect_at(&dir, hint.as_deref()).expect("starting a private broker");
        let pid = good.ping().expect("the broker answers");
        // A connection that sent half a message, then nothing, held to the end.
        let slow = raw_connect(&dir);
        let ping = Request::Ping.encode();
        let _ = tether_handles::nt::send_handles(slow.as_fd(), &[], &ping[..1]);
        let baseline = broker_fds(pid);
        let count = env_count("TETHER_BROKER_FUZZ_MESSAGES", 400);
        let mut rng = XorShift::seeded();
        let seed = rng.0;
        let mut open: Vec<OwnedFd> = Vec::new();
        let (mut sent, mut dropped) = (0u64, 0u64);
        for _ in 0..count {
            if open.is_empty() || rng.below(4) == 0 {
                open.push(raw_connect(&dir));
                if open.len() > 20 {
                    open.remove(0);
                }
            }
            let i = rng.below(open.len() as u64) as usize;
            let fds: Vec<OwnedFd> = (0..rng.below(5)).map(|_| fd_of_some_sort(&mut rng)).collect();
            let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
            let m = message(&mut rng);
            let _ = tether_handles::nt::send_handles(open[i].as_fd(), &borrowed, &m);
            sent += 1;
            if !drain(&open[i]) {
                open.remove(i);
                dropped += 1;
            }
            // Meanwhile the well-behaved connection is served.
            if rng.below(50) == 0 {
                assert_eq!(good.ping().expect("the broker answers a good client mid-fuzz"), pid);
            }
        }
        drop(open);
        // The same broker process, serving a good client, with its fds back to the baseline.
        assert_eq!(
            good.ping().expect("the broker answers after the fuzz"),
            pid,
            "the broker restarted"
        );
        let name =
            tether_handles::ObjectName::from_utf16(&unique_name("after-fuzz").encode_utf16().collect::<Vec<_>>())
                .expect("a name");
        let memfd = fd_of_some_sort(&mut XorShift(4));
        let registration = good
            .register_name(&name, 7, memfd.as_fd())
            .expect("registering after the fuzz");
        let (kind, _fd) = good.open_name(&name).expect("opening after the fuzz");
        assert_eq!(kind, 7);
        good.unregister(registration).expect("unregistering after the fuzz");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut now = broker_fds(pid);
        while now.len() != baseline.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            now = broker_fds(pid);
        }
        assert_eq!(
            now.len(),
            baseline.len(),
            "the broker holds other fds than before the fuzz (seed {seed:#x}): before {baseline:?}, after {now:?}"
        );
        drop(slow);
        eprintln!(
            "broker fuzz (seed {seed:#x}): {sent} messages, {dropped} connections dropped by the broker, its fds {} -> {}, pid {pid} throughout",
            baseline.len(),
            now.len()
        );
    }
}

// --- read-only handles ------------------------------------------------------------------------

mod read_only {
    use super::*;

    pub fn across_processes(route: Route) {
        let d = SyncDevice::new(route);
        let nt = Win32HandleType::OpaqueWin32;
        let read_only = ExportAttributes {
            inherit: Some(true),
            access: SYNCHRONIZE,
            name: None,
        };
        let fence = d.exportable_fence_with(nt.fence_bit(), &read_only);
        let binary = d.exportable_semaphore_with(nt.semaphore_bit(), &read_only);
        let timeline = d.exportable_timeline(nt.semaphore_bit(), 10, Some(&read_only));
        let handles = [
            d.export_fence(fence, nt),
            d.export_semaphore(binary, nt),
            d.export_semaphore(timeline, nt),
        ];
        // The parent's state before the child acts: the fence signaled, the binary semaphore
        // signaled, the timeline at 10.
        d.submit_signal_fence(fence);
        d.wait_fence(fence);
        d.submit_signal_semaphore(binary);
        d.idle();
        let fds: Vec<RawFd> = handles.iter().map(|h| h.raw() as RawFd).collect();
        let mut cmd = harness::child_command("read-only");
        cmd.arg(route.name());
        for fd in &fds {
            cmd.arg(fd.to_string());
        }
        let mut peer = common::Peer::spawn("the read-only importer", &mut cmd);
        peer.expect("TRIED", Duration::from_secs(60));
        // Nothing the child did changed the payloads.
        assert_eq!(d.counter(timeline), 10, "a read-only importer moved the timeline");
        assert_eq!(
            d.fence_status(fence),
            vk::Result::SUCCESS,
            "a read-only importer reset the fence"
        );
        // The binary semaphore is still signaled: this process can still consume its signal.
        let consumed = d.fence(false);
        assert_eq!(
            d.submit(0, &[Batch::new().wait(binary, 0)], consumed),
            vk::Result::SUCCESS
        );
        assert_eq!(
            d.wait_fences(&[consumed], true, LONG_NS),
            vk::Result::SUCCESS,
            "a read-only importer took the binary semaphore's signal"
        );
        // The child's waits still see this process's signals.
        assert_eq!(d.signal(timeline, 11), vk::Result::SUCCESS);
        peer.send("WAIT 11");
        let waited = peer.expect("WAITED", Duration::from_secs(60));
        assert_eq!(
            waited, "WAITED SUCCESS",
            "a read-only importer's wait for the exporter's signal"
        );
        eprintln!("the read-only importer: {:?}", peer.seen);
        peer.finish(Duration::from_secs(60));
        drop(handles);
    }

    /// `read-only <route> <fence fd> <binary fd> <timeline fd>` (inherited NT handles).
    pub fn role_read_only(args: &[String]) -> i32 {
        child_main(|| {
            let [route, fence_fd, binary_fd, timeline_fd] = args else {
                panic!("read-only <route> <fds>, got {args:?}")
            };
            let take = |s: &str| -> OwnedFd {
                // SAFETY: inherited from the parent for this process to own.
                unsafe { OwnedFd::from_raw_fd(s.parse().expect("an fd")) }
            };
            let (fence_fd, binary_fd, timeline_fd) = (take(fence_fd), take(binary_fd), take(timeline_fd));
            let d = SyncDevice::with_options(route_from_name(route), Options::expecting_errors());
            let nt = Win32HandleType::OpaqueWin32;
            let fence = d.fence(false);
            d.import_fence(
                fence,
                nt,
                Permanence::Permanent,
                &NativeHandle::Nt(rustix::io::fcntl_dupfd_cloexec(&fence_fd, 3).expect("dup")),
            );
            let binary = d.binary_semaphore();
            d.import_semaphore(
                binary,
                nt,
                Permanence::Permanent,
                &NativeHandle::Nt(rustix::io::fcntl_dupfd_cloexec(&binary_fd, 3).expect("dup")),
            );
            let timeline = d.timeline_semaphore(0);
            d.import_semaphore(
                timeline,
                nt,
                Permanence::Permanent,
                &NativeHandle::Nt(rustix::io::fcntl_dupfd_cloexec(&timeline_fd, 3).expect("dup")),
            );
            // Every way of signaling, resetting or consuming.
            let tried = [
                ("vkSignalSemaphore", d.signal(timeline, 50)),
                (
                    "vkQueueSubmit signal timeline",
                    d.submit(0, &[Batch::new().signal(timeline, 60)], vk::Fence::null()),
                ),
                ("vkResetFences", {
                    // SAFETY: a fence of this device.
                    unsafe { (d.device.fp_v1_0().reset_fences)(d.device.handle(), 1, &fence) }
                }),
                (
                    "vkQueueSubmit wait binary",
                    d.submit(1, &[Batch::new().wait(binary, 0)], vk::Fence::null()),
                ),
            ];
            // (The binary wait completes without taking the signal: a read-only page.)
            let _ = d.queue_wait_idle(0);
            let _ = d.queue_wait_idle(1);
            println!("read-only attempts: {tried:?}");
            // The pages cannot be mapped writable.
            for (what, fd) in [("fence", &fence_fd), ("binary", &binary_fd), ("timeline", &timeline_fd)] {
                // SAFETY: a new shared mapping at an address the kernel picks (unmapped at once if
                // it were made).
                let mapped = unsafe {
                    rustix::mm::mmap(
                        std::ptr::null_mut(),
                        4096,
                        rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                        rustix::mm::MapFlags::SHARED,
                        fd,
                        0,
                    )
                };
                if let Ok(p) = mapped {
                    // SAFETY: the mapping just made.
                    let _ = unsafe { rustix::mm::munmap(p, 4096) };
                    panic!("the read-only {what} handle could be mapped writable");
                }
                let reopened = rustix::fs::open(
                    format!("/proc/self/fd/{}", fd.as_raw_fd()),
                    rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                );
                println!(
                    "reopening the read-only {what} handle read-write through /proc/self/fd: {}",
                    if reopened.is_ok() {
                        "possible (the memfd's inode is 0777)"
                    } else {
                        "refused"
                    }
                );
            }
            println!("TRIED");
            while let Some(command) = common::read_command() {
                if let Some(v) = command.strip_prefix("WAIT ") {
                    let v: u64 = v.parse().expect("a value");
                    let r = d.wait_semaphores(&[(timeline, v)], false, LONG_NS);
                    println!("WAITED {r:?}");
                }
            }
            d.log().take();
        })
    }
}

//! The API cases, run on every target (the tether ICD in process; the layer over the fd-only
//! ICD through the loader). Each takes a fresh device.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use tether::{
    Device, DeviceOptions, Error, ExportOptions, ExternalFence, ExternalSemaphore, HandleType, HandleTypes, Import,
    Instance, ObjectKind, Shareable, Submission,
};

use tether_conformance::context::{device_list_lock, entry};
use tether_conformance::harness::{DEVICE_ENV, Route, Target, Test, not_supported, target};

/// Every case as a conformance-harness test on `routes`.
macro_rules! cases {
    ($routes:expr => [$($case:ident),* $(,)?]) => {
        vec![$(Test { name: stringify!($case), routes: $routes, run: |route| run(route, $case) }),*]
    };
}

pub fn tests(routes: &'static [Route]) -> Vec<(String, Test)> {
    let all = cases!(routes => [
        caps_rows_are_consistent,
        caps_print_as_a_table,
        timeline_shared_by_nt_handle,
        timeline_shared_by_opaque_fd,
        names_and_kmt_values,
        unknown_name_is_an_invalid_handle,
        failed_fd_import_gives_the_fd_back,
        second_nt_export_is_refused_before_the_driver,
        export_outside_the_created_types_is_refused,
        unsupported_types_are_refused_at_creation,
        import_rules_are_checked,
        temporary_fence_import_ends_at_reset,
        sync_fd_copies_a_pending_signal,
        binary_semaphore_hand_off_through_submits,
        imported_payload_exports_what_the_device_allows,
        objects_keep_the_device_alive,
        no_fd_is_leaked,
    ]);
    tether_conformance::harness::group("api", all)
}

/// Runs one case on a fresh device. The cases run one at a time: the Khronos loader's device
/// list is not safe to change from several threads (see `device_list_lock`), and the fd-leak
/// case counts this process's fds.
fn run(route: Route, case: fn(&Device)) {
    let _serial = device_list_lock();
    let device = open_device(entry(route));
    case(&device);
}

fn open_device(entry: ash::Entry) -> Device {
    let instance = Instance::new(entry, c"tether crate tests").expect("instance");
    // The target's device: the tether device, or through the layer over the system's driver the
    // first whose name contains TETHER_TEST_DEVICE (else the first other one).
    let wanted = std::env::var(DEVICE_ENV).ok().filter(|s| !s.is_empty());
    let physical = instance
        .physical_devices()
        .expect("physical devices")
        .into_iter()
        .find(|p| match (target(), &wanted) {
            (Target::LayerOverSystem, Some(part)) => p.name().contains(part.as_str()),
            (Target::LayerOverSystem, None) => p.name() != TETHER_DEVICE,
            _ => p.name() == TETHER_DEVICE,
        })
        .expect("the target's device");
    let options = DeviceOptions {
        queue_family: None,
        queue_count: 2,
    };
    Device::new(&physical, options).expect("device")
}

const TETHER_DEVICE: &str = "tether CPU";
const SECOND: Duration = Duration::from_secs(1);
const SHORT: Duration = Duration::from_millis(20);

fn none() -> ExportOptions {
    ExportOptions::default()
}

fn has_win32(device: &Device) -> bool {
    device
        .capabilities()
        .exportable(ObjectKind::TimelineSemaphore)
        .contains(HandleType::OpaqueWin32)
}

fn unique_name(what: &str) -> tether::ObjectName {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("Local\\tether-crate-test-{}-{what}-{n}", std::process::id())
        .parse()
        .expect("a valid name")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn caps_rows_are_consistent(device: &Device) {
    let caps = device.capabilities();
    assert!(!caps.rows.is_empty());
    for row in &caps.rows {
        assert!(row.kind.can_have(row.handle_type), "{row:?}");
        if row.exportable {
            // The specification: compatibleHandleTypes contains the queried type when exportable.
            assert!(row.compatible.contains(row.handle_type), "{row:?}");
        }
        if row.importable && !row.handle_type.is_copy() {
            assert!(
                !row.export_from_imported.is_empty() || !row.exportable,
                "an importable and exportable reference type exports something after an import: {row:?}"
            );
        }
        assert_eq!(caps.get(row.kind, row.handle_type), Some(row));
        assert_eq!(caps.exportable(row.kind).contains(row.handle_type), row.exportable);
        assert_eq!(caps.importable(row.kind).contains(row.handle_type), row.importable);
    }
    assert!(caps.get(ObjectKind::Fence, HandleType::D3d12Fence).is_none());
    let fence = caps.exportable(ObjectKind::Fence);
    assert!(fence.contains(HandleType::OpaqueFd), "{fence}");
    assert!(caps.exportable_together(ObjectKind::Fence, HandleTypes::from(HandleType::OpaqueFd)));
    assert!(
        !caps
            .get(ObjectKind::TimelineSemaphore, HandleType::SyncFd)
            .unwrap()
            .exportable
    );
}

fn caps_print_as_a_table(device: &Device) {
    let text = device.capabilities().to_string();
    assert!(text.starts_with(&format!("{}\n", device.physical().name())), "{text}");
    assert!(text.contains("timeline semaphore  OPAQUE_FD"), "{text}");
    for row in &device.capabilities().rows {
        assert!(text.contains(row.handle_type.name()), "{text}");
    }
}

fn ping_pong(a: &ExternalSemaphore, b: &ExternalSemaphore) {
    a.signal(1).unwrap();
    assert!(b.wait(1, SECOND).unwrap());
    b.signal(2).unwrap();
    assert!(a.wait(2, SECOND).unwrap());
    assert_eq!(a.value().unwrap(), 2);
    assert!(
        !a.wait(3, SHORT).unwrap(),
        "a wait for a value nobody signals times out"
    );
}

fn timeline_shared_by_nt_handle(device: &Device) {
    if !has_win32(device) {
        return;
    }
    let t = HandleType::OpaqueWin32;
    let a = ExternalSemaphore::timeline(device, 0, &ExportOptions::new(t)).unwrap();
    let handle = a.export_nt_handle(t).unwrap();
    assert!(!handle.is_inheritable().unwrap(), "not inheritable unless asked");
    let mut b = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    b.import_nt_handle(t, handle.as_handle(), Import::Permanent).unwrap();
    // The import did not take the handle: it is still open and ours to close.
    assert!(rustix_like_is_open(handle.as_fd()));
    drop(handle);
    ping_pong(&a, &b);
}

fn rustix_like_is_open(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    fd.try_clone_to_owned().is_ok()
}

fn timeline_shared_by_opaque_fd(device: &Device) {
    let a = ExternalSemaphore::timeline(device, 5, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
    let fd = a.export_fd().unwrap();
    let mut b = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    b.import_fd(HandleType::OpaqueFd, fd, Import::Permanent).unwrap();
    assert_eq!(b.value().unwrap(), 5);
    a.signal(6).unwrap();
    assert!(b.wait(6, SECOND).unwrap());
}

fn names_and_kmt_values(device: &Device) {
    if !has_win32(device) {
        return;
    }
    if let Err(e) = tether::broker::ensure() {
        panic!("the broker is needed for names and KMT values: {e}");
    }
    let t = HandleType::OpaqueWin32;
    let name = unique_name("named");
    let options = ExportOptions::new(t | HandleType::OpaqueWin32Kmt).name(name.clone());
    let a = ExternalSemaphore::timeline(device, 0, &options).unwrap();
    drop(a.export_nt_handle(t).unwrap());
    let kmt = a.export_kmt().unwrap();
    assert_eq!(a.export_kmt().unwrap(), kmt, "one KMT value per object");
    let mut by_name = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    by_name.import_name(t, &name, Import::Permanent).unwrap();
    let mut by_kmt = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    by_kmt.import_kmt(kmt, Import::Permanent).unwrap();
    a.signal(3).unwrap();
    assert!(by_name.wait(3, SECOND).unwrap());
    assert!(by_kmt.wait(3, SECOND).unwrap());

    // Fences by name, temporarily.
    let fence_name = unique_name("fence");
    let f = ExternalFence::new(device, &ExportOptions::new(t).name(fence_name.clone())).unwrap();
    drop(f.export_nt_handle(t).unwrap());
    let mut g = ExternalFence::new(device, &none()).unwrap();
    g.import_name(t, &fence_name, Import::Temporary).unwrap();
    assert!(!g.is_signaled().unwrap());
}

fn unknown_name_is_an_invalid_handle(device: &Device) {
    if !has_win32(device) {
        return;
    }
    tether::broker::ensure().expect("broker");
    let mut s = ExternalSemaphore::binary(device, &none()).unwrap();
    let err = s
        .import_name(HandleType::OpaqueWin32, &unique_name("nobody"), Import::Permanent)
        .unwrap_err();
    assert_eq!(err.result(), ash::vk::Result::ERROR_INVALID_EXTERNAL_HANDLE, "{err}");
    assert!(err.to_string().contains("vkImportSemaphoreWin32HandleKHR"), "{err}");
}

fn failed_fd_import_gives_the_fd_back(device: &Device) {
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd: OwnedFd = reader.into();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut s = ExternalSemaphore::binary(device, &none()).unwrap();
    let err = s.import_fd(HandleType::OpaqueFd, fd, Import::Permanent).unwrap_err();
    // The spec's answer; the layer passes fd imports to the driver, and NVIDIA says
    // INITIALIZATION_FAILED (crates/layer/README.md).
    let nvidia = ash::vk::Result::ERROR_INITIALIZATION_FAILED;
    let result = err.error.result();
    assert!(
        result == ash::vk::Result::ERROR_INVALID_EXTERNAL_HANDLE
            || (target() == Target::LayerOverSystem && result == nvidia),
        "{err}"
    );
    let (error, fd) = err.into_parts();
    assert_eq!(std::os::fd::AsRawFd::as_raw_fd(&fd), raw, "the same fd comes back");
    assert!(rustix_like_is_open(fd.as_fd()), "and it is still open: {error}");
    drop(writer);
    // A rule broken before the driver is called gives the fd back too.
    let mut t = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    let err = t.import_fd(HandleType::SyncFd, fd, Import::Temporary).unwrap_err();
    assert!(
        matches!(err.error, Error::Unsupported(_) | Error::InvalidUsage(_)),
        "{err}"
    );
    assert!(rustix_like_is_open(err.fd.as_fd()));
    let as_error: Error = err.into();
    assert_ne!(as_error.result(), ash::vk::Result::SUCCESS);
}

fn second_nt_export_is_refused_before_the_driver(device: &Device) {
    if !has_win32(device) {
        return;
    }
    let t = HandleType::OpaqueWin32;
    let f = ExternalFence::new(device, &ExportOptions::new(t)).unwrap();
    let first = f.export_nt_handle(t).unwrap();
    let err = f.export_nt_handle(t).unwrap_err();
    assert!(matches!(err, Error::InvalidUsage(_)), "{err}");
    assert_eq!(err.result(), ash::vk::Result::ERROR_VALIDATION_FAILED_EXT);
    // More handles come from duplicating the first.
    let second = first.duplicate(false).unwrap();
    assert_ne!(first.as_raw_handle(), second.as_raw_handle());
}

fn export_outside_the_created_types_is_refused(device: &Device) {
    let s = ExternalSemaphore::binary(device, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
    if has_win32(device) {
        let err = s.export_kmt().unwrap_err();
        assert!(matches!(err, Error::InvalidUsage(_)), "{err}");
    }
    let plain = ExternalFence::new(device, &none()).unwrap();
    let err = plain.export_fd().unwrap_err();
    assert!(matches!(err, Error::InvalidUsage(_)), "{err}");
    // A method for another family of types.
    let err = s.export_nt_handle(HandleType::OpaqueFd).unwrap_err();
    assert!(matches!(err, Error::InvalidUsage(_)), "{err}");
}

fn unsupported_types_are_refused_at_creation(device: &Device) {
    let err = ExternalFence::new(device, &ExportOptions::new(HandleType::D3d12Fence)).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert_eq!(err.result(), ash::vk::Result::ERROR_FEATURE_NOT_PRESENT);
    let err = ExternalSemaphore::timeline(device, 0, &ExportOptions::new(HandleType::SyncFd)).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    // Win32 attributes need an NT handle type.
    let options = ExportOptions::new(HandleType::OpaqueFd).inheritable(true);
    let err = ExternalSemaphore::binary(device, &options).unwrap_err();
    assert!(matches!(err, Error::InvalidUsage(_)), "{err}");
    if !has_win32(device) {
        let err = ExternalFence::new(device, &ExportOptions::new(HandleType::OpaqueWin32)).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
    }
}

fn import_rules_are_checked(device: &Device) {
    let a = ExternalSemaphore::timeline(device, 0, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
    let mut b = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    let err = b
        .import_fd(HandleType::OpaqueFd, a.export_fd().unwrap(), Import::Temporary)
        .unwrap_err();
    assert!(err.error.to_string().contains("temporarily"), "{err}");
    let mut g = ExternalFence::new(device, &none()).unwrap();
    let (reader, _writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let err = g
        .import_fd(HandleType::SyncFd, reader.into(), Import::Permanent)
        .unwrap_err();
    // Refused before the driver: a permanent SYNC_FD import (or, where the device imports no
    // SYNC_FD at all, the type).
    assert!(
        matches!(err.error, Error::InvalidUsage(_) | Error::Unsupported(_)),
        "{err}"
    );
    let mut s = ExternalSemaphore::binary(device, &none()).unwrap();
    let err = s
        .import_name(HandleType::OpaqueWin32Kmt, &unique_name("kmt"), Import::Permanent)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUsage(_)), "{err}");
    let err = b.signal(0).unwrap_err();
    assert!(matches!(err, Error::InvalidUsage(_)), "a signal must increase: {err}");
    let err = s.value().unwrap_err();
    assert!(
        matches!(err, Error::InvalidUsage(_)),
        "a binary semaphore has no value: {err}"
    );
}

fn signal_fence(device: &Device, fence: &ExternalFence) {
    let batch = Submission {
        fence: Some(fence),
        ..Submission::default()
    };
    // SAFETY: the fence is unsignaled, and the callers wait for it before touching it again.
    unsafe { device.submit(0, &batch) }.unwrap();
    assert!(fence.wait(SECOND).unwrap());
}

fn temporary_fence_import_ends_at_reset(device: &Device) {
    let a = ExternalFence::new(device, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
    let mut b = ExternalFence::new(device, &none()).unwrap();
    b.import_fd(HandleType::OpaqueFd, a.export_fd().unwrap(), Import::Temporary)
        .unwrap();
    signal_fence(device, &a);
    assert!(b.is_signaled().unwrap(), "b shares a's payload");
    // The reset first restores b's own payload, then resets that one: a's stays signaled.
    b.reset().unwrap();
    assert!(a.is_signaled().unwrap(), "the reset did not reach the imported payload");
    assert!(!b.is_signaled().unwrap());
    let mut a = a;
    a.reset().unwrap();
    signal_fence(device, &a);
    assert!(!b.is_signaled().unwrap(), "after the reset b has its own payload again");
}

fn sync_fd_copies_a_pending_signal(device: &Device) {
    if !device
        .capabilities()
        .exportable(ObjectKind::Fence)
        .contains(HandleType::SyncFd)
    {
        not_supported("the device does not export SYNC_FD fences");
    }
    // The fence's signal is submitted behind a timeline wait, so it is pending, not done: the
    // export must give a real sync file, which the importer then waits on.
    let gate = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    let mut a = ExternalFence::new(device, &ExportOptions::new(HandleType::SyncFd)).unwrap();
    let batch = Submission {
        waits: &[(&gate, 1)],
        fence: Some(&a),
        ..Submission::default()
    };
    // SAFETY: the fence is unsignaled; the gate is a timeline (wait-before-signal is valid); the
    // gate is signaled and the fence waited for below before anything is dropped.
    unsafe { device.submit(0, &batch) }.unwrap();
    // SAFETY: the fence's signal is pending (submitted above).
    let sync_file = unsafe { a.export_sync_fd() }.unwrap();
    let sync_file = sync_file.expect("a pending signal exports a sync file, not -1");
    // A copy-transference export acts on the source as a reset.
    assert!(!a.is_signaled().unwrap());
    let mut b = ExternalFence::new(device, &none()).unwrap();
    b.import_fd(HandleType::SyncFd, sync_file, Import::Temporary).unwrap();
    assert!(!b.wait(SHORT).unwrap(), "the copy waits for the gated signal");
    gate.signal(1).unwrap();
    assert!(b.wait(SECOND).unwrap(), "and signals with it (the batch has executed)");
}

fn binary_semaphore_hand_off_through_submits(device: &Device) {
    let a = ExternalSemaphore::binary(device, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
    let mut b = ExternalSemaphore::binary(device, &none()).unwrap();
    b.import_fd(HandleType::OpaqueFd, a.export_fd().unwrap(), Import::Permanent)
        .unwrap();
    let fence = ExternalFence::new(device, &none()).unwrap();
    let signal = Submission {
        signals: &[(&a, 0)],
        ..Submission::default()
    };
    let wait = Submission {
        waits: &[(&b, 0)],
        fence: Some(&fence),
        ..Submission::default()
    };
    // SAFETY: a is unsignaled; b (a's payload) is waited on once, after a's signal was
    // submitted; the fence is waited for before anything is dropped.
    unsafe {
        device.submit(0, &signal).unwrap();
        device.submit(device.queue_count() - 1, &wait).unwrap();
    }
    assert!(fence.wait(SECOND).unwrap());
    // A queue that does not exist.
    // SAFETY: an empty batch.
    let err = unsafe { device.submit(99, &Submission::default()) }.unwrap_err();
    assert!(matches!(err, Error::InvalidUsage(_)), "{err}");
}

fn imported_payload_exports_what_the_device_allows(device: &Device) {
    let a = ExternalSemaphore::timeline(device, 0, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
    let mut b = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
    assert!(b.export_fd().is_err(), "created exportable as nothing");
    b.import_fd(HandleType::OpaqueFd, a.export_fd().unwrap(), Import::Permanent)
        .unwrap();
    let allowed = device
        .capabilities()
        .get(ObjectKind::TimelineSemaphore, HandleType::OpaqueFd)
        .unwrap()
        .export_from_imported;
    assert_eq!(b.export_fd().is_ok(), allowed.contains(HandleType::OpaqueFd));
}

fn objects_keep_the_device_alive(device: &Device) {
    let physical = device.physical().clone();
    let own = Device::new(&physical, DeviceOptions::default()).unwrap();
    let s = ExternalSemaphore::timeline(&own, 0, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
    drop(own);
    // The device lives on in the semaphore.
    s.signal(1).unwrap();
    assert_eq!(s.value().unwrap(), 1);
}

fn no_fd_is_leaked(device: &Device) {
    if target() == Target::LayerOverSystem {
        not_supported("a system driver may keep fds of its own (NVIDIA's payload fds all name /dev/nvidiactl)");
    }
    let round = || {
        let a = ExternalSemaphore::timeline(device, 0, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
        let mut b = ExternalSemaphore::timeline(device, 0, &none()).unwrap();
        b.import_fd(HandleType::OpaqueFd, a.export_fd().unwrap(), Import::Permanent)
            .unwrap();
        let c = ExternalFence::new(device, &ExportOptions::new(HandleType::OpaqueFd)).unwrap();
        let (reader, _writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut d = ExternalFence::new(device, &none()).unwrap();
        let failed = d.import_fd(HandleType::OpaqueFd, reader.into(), Import::Permanent);
        drop(failed);
        drop(c.export_fd().unwrap());
    };
    round();
    let before = open_fds();
    for _ in 0..50 {
        round();
    }
    assert_eq!(open_fds(), before, "fds before and after 50 rounds");
}

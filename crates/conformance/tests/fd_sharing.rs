//! Sharing through fds beyond what the CTS covers:
//!
//! * `timeline`: timeline semaphores exported and imported as OPAQUE_FD (values seen on both
//!   sides, host and queue signals through either side, wait-before-signal across the share);
//! * `instances`: two instances sharing payloads; one payload imported many times (one mapping);
//! * `bad_input`: wrong object kinds and fds that are no payload, imports into pending objects:
//!   the error the spec asks for, a debug-utils message, and the fd left open on failure
//!   (closed on success);
//! * `sync_fd`: SYNC_FD imports of `-1`, of an eventfd and of a pipe (signaled when readable);
//!   SYNC_FD exports of signaled objects (`-1` or a readable fd, and the signal is taken);
//! * `process`: a child process (this binary re-executed in a child role) that gets a fence, a
//!   binary and a timeline semaphore by SCM_RIGHTS or by inheritance, imports them in its own
//!   instance and signals back; 4096 export/import/destroy cycles that leave the fd and
//!   mapping counts of a child process where they started.
//!
//! Every wait is bounded (10 s): a sharing bug fails a test instead of hanging it.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use ash::vk;
use tether_conformance::external::{
    ExportedFd, FdDevice, FdHandleType, Permanence, child_main, copy_handle, is_open, is_readable, mapping_count,
    mappings_of, open_fd_count, recv_fds, renumber, send_fds, socket_pair, wait_child,
};
use tether_conformance::harness::{self, LOADER_AND_IN_PROCESS, Role, Route, Test};
use tether_conformance::{Batch, LONG_NS, Options, tests};

const OPAQUE: FdHandleType = FdHandleType::OpaqueFd;
const SYNC: FdHandleType = FdHandleType::SyncFd;
const OPAQUE_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_FD;
const OPAQUE_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD;

/// How long a parent waits for a child process before killing it (only a hang takes this long).
const CHILD_LIMIT: Duration = Duration::from_secs(40);

fn main() -> ExitCode {
    harness::main(
        &[
            Role {
                name: "sharer",
                setup_environment: true,
                run: process::role_sharer,
            },
            Role {
                name: "leak-check",
                setup_environment: true,
                run: process::role_leak_check,
            },
        ],
        || {
            let mut all = harness::group("timeline", timeline::tests());
            all.extend(harness::group("instances", instances::tests()));
            all.extend(harness::group("bad_input", bad_input::tests()));
            all.extend(harness::group("sync_fd", sync_fd::tests()));
            all.extend(harness::group("process", process::tests()));
            all
        },
    )
}

/// An exported timeline and a plain timeline semaphore with it imported permanently.
fn shared_timeline(exporter: &FdDevice, importer: &FdDevice, initial: u64) -> (vk::Semaphore, vk::Semaphore) {
    let exported = exporter.exportable_timeline(OPAQUE_SEMAPHORE, initial);
    let fd = exporter.export_semaphore(exported, OPAQUE);
    let imported = importer.timeline_semaphore(0);
    importer.import_semaphore(imported, OPAQUE, Permanence::Permanent, fd);
    (exported, imported)
}

/// Asserts a timeline reaches `value` within [`LONG_NS`].
fn assert_reaches(d: &FdDevice, semaphore: vk::Semaphore, value: u64) {
    assert_eq!(
        d.wait_semaphores(&[(semaphore, value)], false, LONG_NS),
        vk::Result::SUCCESS,
        "the timeline never reached {value} (it is at {})",
        d.counter(semaphore)
    );
}

mod timeline {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            values_seen_on_both_sides,
            host_and_queue_signals_through_either_side,
            wait_before_signal_across_the_share,
            temporary_import_is_refused,
        ])
    }

    /// The importer reads the exporter's value at import, and every later value either side sets.
    fn values_seen_on_both_sides(route: Route) {
        let d = FdDevice::new(route);
        let (exported, imported) = shared_timeline(&d, &d, 5);
        assert_eq!(
            d.counter(imported),
            5,
            "the imported timeline starts at the exporter's value"
        );
        assert_eq!(d.signal(exported, 6), vk::Result::SUCCESS);
        assert_eq!(d.counter(imported), 6);
        assert_eq!(d.signal(imported, 1 << 40), vk::Result::SUCCESS);
        assert_eq!(d.counter(exported), 1 << 40, "64-bit values cross the share");
    }

    /// Host signals and queue signals through the exporter and through the importer, each
    /// observed (counter and host wait) through the other.
    fn host_and_queue_signals_through_either_side(route: Route) {
        let d = FdDevice::new(route);
        let (exported, imported) = shared_timeline(&d, &d, 0);
        assert_eq!(d.signal(imported, 7), vk::Result::SUCCESS);
        assert_reaches(&d, exported, 7);
        let fence = d.fence(false);
        assert_eq!(
            d.submit(0, &[Batch::new().signal(imported, 8)], fence),
            vk::Result::SUCCESS
        );
        assert_reaches(&d, exported, 8);
        d.assert_signals(fence);
        d.reset_fences(&[fence]);
        assert_eq!(
            d.submit(1, &[Batch::new().signal(exported, 9)], fence),
            vk::Result::SUCCESS
        );
        assert_reaches(&d, imported, 9);
        d.assert_signals(fence);
        assert_eq!(d.counter(exported), 9);
        assert_eq!(d.counter(imported), 9);
    }

    /// A batch on the importer's side waits for a value the exporter has not reached yet, and
    /// runs once the exporter gets there (host signal, then queue signal).
    fn wait_before_signal_across_the_share(route: Route) {
        let d = FdDevice::new(route);
        let (exported, imported) = shared_timeline(&d, &d, 0);
        let waiter = d.fence(false);
        assert_eq!(
            d.submit(0, &[Batch::new().wait(imported, 7)], waiter),
            vk::Result::SUCCESS
        );
        d.assert_pending(waiter);
        assert_eq!(d.signal(exported, 6), vk::Result::SUCCESS);
        d.assert_pending(waiter);
        assert_eq!(d.signal(exported, 7), vk::Result::SUCCESS);
        d.assert_signals(waiter);

        // The same through queues: queue 0 waits on the importer, queue 1 signals the exporter
        // after its own host-held wait.
        let waiter = d.fence(false);
        let gate = d.gate();
        assert_eq!(
            d.submit(0, &[Batch::new().wait(imported, 10)], waiter),
            vk::Result::SUCCESS
        );
        let signal = Batch::new().wait(gate, 1).signal(exported, 10);
        assert_eq!(d.submit(1, &[signal], vk::Fence::null()), vk::Result::SUCCESS);
        d.assert_pending(waiter);
        d.open_gate(gate);
        d.assert_signals(waiter);
        assert_eq!(d.counter(imported), 10);
    }

    /// A timeline payload cannot be imported temporarily (VUID-…-flags-03323).
    fn temporary_import_is_refused(route: Route) {
        let d = FdDevice::with_options(route, Options::expecting_errors());
        let exported = d.exportable_timeline(OPAQUE_SEMAPHORE, 0);
        let fd = d.export_semaphore(exported, OPAQUE);
        let imported = d.timeline_semaphore(0);
        let failed = d
            .try_import_semaphore(imported, OPAQUE, vk::SemaphoreImportFlags::TEMPORARY, fd)
            .expect_err("a temporary import of a timeline payload");
        assert_eq!(failed.result, vk::Result::ERROR_VALIDATION_FAILED_EXT);
        assert!(
            d.log().has("VUID-VkImportSemaphoreFdInfoKHR-flags-03323"),
            "{:?}",
            d.log().snapshot()
        );
        assert!(failed.fd.is_some_and(|fd| is_open(fd.as_raw_fd())));
    }
}

mod instances {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            two_instances_share_a_fence,
            two_instances_share_semaphores,
            one_payload_imported_many_times,
        ])
    }

    /// A fence exported in one instance and imported in another: signals and resets cross.
    fn two_instances_share_a_fence(route: Route) {
        let first = FdDevice::new(route);
        let second = FdDevice::new(route);
        let exported = first.exportable_fence(OPAQUE_FENCE);
        let imported =
            second.create_and_import_fence(OPAQUE, Permanence::Permanent, first.export_fence(exported, OPAQUE));
        assert_eq!(second.fence_status(imported), vk::Result::NOT_READY);
        first.submit_signal_fence(exported);
        second.wait_fence(imported);
        second.reset_fences(&[imported]);
        assert_eq!(
            first.fence_status(exported),
            vk::Result::NOT_READY,
            "a reset in the other instance"
        );
        second.submit_signal_fence(imported);
        first.wait_fence(exported);
    }

    /// A binary and a timeline semaphore shared between two instances, used in both directions.
    fn two_instances_share_semaphores(route: Route) {
        let first = FdDevice::new(route);
        let second = FdDevice::new(route);
        let exported = first.exportable_semaphore(OPAQUE_SEMAPHORE);
        let imported =
            second.create_and_import_semaphore(OPAQUE, Permanence::Permanent, first.export_semaphore(exported, OPAQUE));
        first.submit_signal_semaphore(exported);
        second.submit_wait_semaphore(imported);
        second.idle();
        second.submit_signal_semaphore(imported);
        first.submit_wait_semaphore(exported);
        first.idle();

        let (exported, imported) = shared_timeline(&first, &second, 3);
        assert_eq!(second.counter(imported), 3);
        assert_eq!(second.signal(imported, 4), vk::Result::SUCCESS);
        assert_reaches(&first, exported, 4);
        let waiter = second.fence(false);
        assert_eq!(
            second.submit(0, &[Batch::new().wait(imported, 6)], waiter),
            vk::Result::SUCCESS
        );
        second.assert_pending(waiter);
        assert_eq!(
            first.submit(0, &[Batch::new().signal(exported, 6)], vk::Fence::null()),
            vk::Result::SUCCESS
        );
        second.assert_signals(waiter);
        first.idle();
    }

    /// 64 fences and 64 timeline semaphores import copies of one fd each: they all act as one
    /// object, and the page is mapped once however often it is imported.
    fn one_payload_imported_many_times(route: Route) {
        const IMPORTS: usize = 64;
        let d = FdDevice::new(route);
        let exported = d.exportable_fence(OPAQUE_FENCE);
        let fd = d.export_fence(exported, OPAQUE);
        let page = fd.as_ref().expect("an OPAQUE_FD export").as_fd();
        let mapped_before = mappings_of(page);
        let fences: Vec<vk::Fence> = (0..IMPORTS)
            .map(|_| d.create_and_import_fence(OPAQUE, Permanence::Permanent, copy_handle(&fd)))
            .collect();
        assert_eq!(
            mappings_of(page),
            mapped_before,
            "repeated imports of one page reuse its mapping"
        );
        assert_eq!(mapped_before, 1, "one mapping of the page in this process");
        d.submit_signal_fence(exported);
        assert_eq!(d.wait_fences(&fences, true, LONG_NS), vk::Result::SUCCESS);
        d.reset_fences(&fences[IMPORTS / 2..IMPORTS / 2 + 1]);
        for &fence in fences.iter().chain([&exported]) {
            assert_eq!(
                d.fence_status(fence),
                vk::Result::NOT_READY,
                "a reset through one member"
            );
        }

        let timeline = d.exportable_timeline(OPAQUE_SEMAPHORE, 0);
        let fd = d.export_semaphore(timeline, OPAQUE);
        let semaphores: Vec<vk::Semaphore> = (0..IMPORTS)
            .map(|_| {
                let s = d.timeline_semaphore(0);
                d.import_semaphore(s, OPAQUE, Permanence::Permanent, copy_handle(&fd));
                s
            })
            .collect();
        assert_eq!(d.signal(semaphores[IMPORTS - 1], 12), vk::Result::SUCCESS);
        let all: Vec<(vk::Semaphore, u64)> = semaphores.iter().chain([&timeline]).map(|&s| (s, 12)).collect();
        assert_eq!(d.wait_semaphores(&all, false, LONG_NS), vk::Result::SUCCESS);
    }
}

mod bad_input {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            fence_page_into_a_semaphore,
            semaphore_page_into_a_fence,
            binary_page_into_a_timeline,
            timeline_page_into_a_binary_semaphore,
            closed_fd,
            dev_null,
            pipe,
            plain_memfd,
            sealed_memfd_of_the_right_size,
            import_into_a_pending_fence,
            import_into_a_pending_semaphore,
            opaque_fd_import_closes_the_fd_on_success,
        ])
    }

    /// A device for imports that fail on purpose: no validation layer (the driver's own
    /// answers are under test), errors expected.
    fn device(route: Route) -> FdDevice {
        FdDevice::with_options(route, Options::expecting_errors())
    }

    /// A high fd number for a test that checks whether a number is closed: one range per test
    /// and route, so that trials running at once never reuse each other's numbers.
    fn parking(route: Route, test: i32) -> RawFd {
        let route_index = match route {
            Route::Loader => 0,
            Route::InProcess => 1,
            Route::DirectDriverLoading => 2,
        };
        6000 + 1000 * test + 300 * route_index
    }

    /// What the driver must report for an fd that names no usable payload.
    const INVALID_HANDLE_MESSAGE: &str = "invalid-external-handle";

    /// Which object an import targets.
    #[derive(Clone, Copy, Debug)]
    enum Target {
        Fence,
        Binary,
        Timeline,
    }

    /// Imports `fd` (OPAQUE_FD unless `handle_type` says otherwise) into a new object of
    /// `target`; asserts it fails with `expected`, records a message whose id contains
    /// `message`, sends no error-severity message for an invalid handle, and gives the fd back
    /// open.
    fn assert_import_fails(
        d: &FdDevice,
        target: Target,
        handle_type: FdHandleType,
        fd: OwnedFd,
        expected: vk::Result,
        message: &str,
    ) -> OwnedFd {
        let raw = fd.as_raw_fd();
        d.log().take();
        let result = match target {
            Target::Fence => {
                let fence = d.fence(false);
                d.try_import_fence(fence, handle_type, vk::FenceImportFlags::TEMPORARY, Some(fd))
            }
            Target::Binary => {
                let semaphore = d.binary_semaphore();
                d.try_import_semaphore(semaphore, handle_type, vk::SemaphoreImportFlags::TEMPORARY, Some(fd))
            }
            Target::Timeline => {
                let semaphore = d.timeline_semaphore(0);
                d.try_import_semaphore(semaphore, handle_type, vk::SemaphoreImportFlags::empty(), Some(fd))
            }
        };
        let failed = result.expect_err("an import of an fd that is not a matching payload");
        assert_eq!(failed.result, expected, "importing into a {target:?}");
        let messages = d.log().snapshot();
        assert!(
            messages.iter().any(|m| m.id.contains(message)),
            "no debug-utils message {message:?} for the failed import: {messages:?}"
        );
        if expected == vk::Result::ERROR_INVALID_EXTERNAL_HANDLE {
            assert!(
                d.log().errors().is_empty(),
                "an invalid handle is no validation error: {messages:?}"
            );
        }
        let fd = failed.fd.expect("the fd comes back");
        assert_eq!(fd.as_raw_fd(), raw);
        assert!(is_open(raw), "a failed import closed the application's fd");
        fd
    }

    fn invalid_handle(d: &FdDevice, target: Target, fd: OwnedFd) -> OwnedFd {
        assert_import_fails(
            d,
            target,
            OPAQUE,
            fd,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        )
    }

    /// Then the fd still imports where it belongs (nothing was consumed).
    fn fence_page_into_a_semaphore(route: Route) {
        let d = device(route);
        let exported = d.exportable_fence(OPAQUE_FENCE);
        let fd = d.export_fence(exported, OPAQUE).expect("an OPAQUE_FD export");
        let fd = invalid_handle(&d, Target::Binary, fd);
        let fd = invalid_handle(&d, Target::Timeline, fd);
        let fence = d.create_and_import_fence(OPAQUE, Permanence::Permanent, Some(fd));
        d.submit_signal_fence(exported);
        d.wait_fence(fence);
    }

    fn semaphore_page_into_a_fence(route: Route) {
        let d = device(route);
        let binary = d.exportable_semaphore(OPAQUE_SEMAPHORE);
        let fd = d.export_semaphore(binary, OPAQUE).expect("an OPAQUE_FD export");
        drop(invalid_handle(&d, Target::Fence, fd));
        let timeline = d.exportable_timeline(OPAQUE_SEMAPHORE, 0);
        let fd = d.export_semaphore(timeline, OPAQUE).expect("an OPAQUE_FD export");
        drop(invalid_handle(&d, Target::Fence, fd));
    }

    fn binary_page_into_a_timeline(route: Route) {
        let d = device(route);
        let binary = d.exportable_semaphore(OPAQUE_SEMAPHORE);
        let fd = d.export_semaphore(binary, OPAQUE).expect("an OPAQUE_FD export");
        let fd = invalid_handle(&d, Target::Timeline, fd);
        d.create_and_import_semaphore(OPAQUE, Permanence::Permanent, Some(fd));
    }

    fn timeline_page_into_a_binary_semaphore(route: Route) {
        let d = device(route);
        let timeline = d.exportable_timeline(OPAQUE_SEMAPHORE, 0);
        let fd = d.export_semaphore(timeline, OPAQUE).expect("an OPAQUE_FD export");
        let fd = invalid_handle(&d, Target::Binary, fd);
        let imported = d.timeline_semaphore(0);
        d.import_semaphore(imported, OPAQUE, Permanence::Permanent, Some(fd));
    }

    /// A number that is not an open fd, for both fd types and every object kind.
    fn closed_fd(route: Route) {
        let d = device(route);
        // Park the number high, where other threads' new fds are unlikely to land, then close it.
        let closed = renumber(rustix::io::dup(std::io::stderr()).expect("dup"), parking(route, 0)).as_raw_fd();
        assert!(!is_open(closed));
        let invalid = vk::Result::ERROR_INVALID_EXTERNAL_HANDLE;
        for handle_type in [OPAQUE, SYNC] {
            d.log().take();
            let fence = d.fence(false);
            let result =
                d.fd.import_fence_raw(fence, handle_type.fence_bit(), vk::FenceImportFlags::TEMPORARY, closed);
            assert_eq!(result, invalid, "{handle_type:?} fence import of closed fd {closed}");
            assert!(d.log().has(INVALID_HANDLE_MESSAGE), "{:?}", d.log().snapshot());
            d.log().take();
            let semaphore = d.binary_semaphore();
            let flags = vk::SemaphoreImportFlags::TEMPORARY;
            let result =
                d.fd.import_semaphore_raw(semaphore, handle_type.semaphore_bit(), flags, closed);
            assert_eq!(
                result, invalid,
                "{handle_type:?} semaphore import of closed fd {closed}"
            );
            assert!(d.log().has(INVALID_HANDLE_MESSAGE), "{:?}", d.log().snapshot());
        }
        let timeline = d.timeline_semaphore(0);
        let result =
            d.fd.import_semaphore_raw(timeline, OPAQUE_SEMAPHORE, vk::SemaphoreImportFlags::empty(), closed);
        assert_eq!(result, invalid, "timeline import of closed fd {closed}");
    }

    fn dev_null(route: Route) {
        let d = device(route);
        let mut fd: OwnedFd = std::fs::File::open("/dev/null").expect("opening /dev/null").into();
        for target in [Target::Fence, Target::Binary, Target::Timeline] {
            fd = invalid_handle(&d, target, fd);
        }
    }

    fn pipe(route: Route) {
        let d = device(route);
        let (mut reader, mut writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        for target in [Target::Fence, Target::Binary, Target::Timeline] {
            reader = invalid_handle(&d, target, reader);
            writer = invalid_handle(&d, target, writer);
        }
    }

    /// A memfd of a page's size that is no payload: unsealed, then sealed but all zeros.
    fn plain_memfd(route: Route) {
        let d = device(route);
        let mut fd = memfd(false);
        for target in [Target::Fence, Target::Binary, Target::Timeline] {
            fd = invalid_handle(&d, target, fd);
        }
    }

    fn sealed_memfd_of_the_right_size(route: Route) {
        let d = device(route);
        let mut fd = memfd(true);
        for target in [Target::Fence, Target::Binary, Target::Timeline] {
            fd = invalid_handle(&d, target, fd);
        }
    }

    /// A 4 KiB zero-filled memfd named like a payload page, sealed as one or not.
    fn memfd(sealed: bool) -> OwnedFd {
        use rustix::fs::{MemfdFlags, SealFlags};
        let fd = rustix::fs::memfd_create("tether-payload", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .expect("memfd_create");
        rustix::fs::ftruncate(&fd, 4096).expect("ftruncate");
        if sealed {
            let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
            rustix::fs::fcntl_add_seals(&fd, seals).expect("sealing");
        }
        fd
    }

    /// A fence tied to unfinished queue work cannot take an import (VUID-vkImportFenceFdKHR-fence-01463).
    fn import_into_a_pending_fence(route: Route) {
        let d = device(route);
        let exported = d.exportable_fence(OPAQUE_FENCE);
        let fd = d.export_fence(exported, OPAQUE).expect("an OPAQUE_FD export");
        let pending = d.fence(false);
        let gate = d.gate();
        assert_eq!(d.submit(0, &[Batch::new().wait(gate, 1)], pending), vk::Result::SUCCESS);
        d.log().take();
        let failed = d
            .try_import_fence(pending, OPAQUE, vk::FenceImportFlags::empty(), Some(fd))
            .expect_err("an import into a pending fence");
        assert_eq!(failed.result, vk::Result::ERROR_VALIDATION_FAILED_EXT);
        assert!(
            d.log().has("VUID-vkImportFenceFdKHR-fence-01463"),
            "{:?}",
            d.log().snapshot()
        );
        let fd = failed.fd.expect("the fd comes back");
        assert!(is_open(fd.as_raw_fd()));
        d.open_gate(gate);
        d.wait_fence(pending);
        // The fence kept its own payload: the exported one is still unsignaled.
        assert_eq!(d.fence_status(exported), vk::Result::NOT_READY);
    }

    /// A semaphore with a pending signal or wait cannot take an import
    /// (VUID-vkImportSemaphoreFdKHR-semaphore-01142).
    fn import_into_a_pending_semaphore(route: Route) {
        let d = device(route);
        let exported = d.exportable_semaphore(OPAQUE_SEMAPHORE);
        let mut fd = d.export_semaphore(exported, OPAQUE).expect("an OPAQUE_FD export");
        let pending = d.binary_semaphore();
        let gate = d.gate();
        let batches = [
            Batch::new().wait(gate, 1).signal(pending, 0),
            Batch::new().wait(pending, 0),
        ];
        assert_eq!(d.submit(0, &batches, vk::Fence::null()), vk::Result::SUCCESS);
        for flags in [vk::SemaphoreImportFlags::empty(), vk::SemaphoreImportFlags::TEMPORARY] {
            d.log().take();
            let failed = d
                .try_import_semaphore(pending, OPAQUE, flags, Some(fd))
                .expect_err("an import into a pending semaphore");
            assert_eq!(failed.result, vk::Result::ERROR_VALIDATION_FAILED_EXT);
            assert!(
                d.log().has("VUID-vkImportSemaphoreFdKHR-semaphore-01142"),
                "{:?}",
                d.log().snapshot()
            );
            fd = failed.fd.expect("the fd comes back");
            assert!(is_open(fd.as_raw_fd()));
        }
        d.open_gate(gate);
        d.idle();
    }

    /// A successful OPAQUE_FD import closes the fd; a failed one (above) leaves it open.
    fn opaque_fd_import_closes_the_fd_on_success(route: Route) {
        let d = FdDevice::new(route);
        let fence = d.exportable_fence(OPAQUE_FENCE);
        let semaphore = d.exportable_semaphore(OPAQUE_SEMAPHORE);
        let timeline = d.exportable_timeline(OPAQUE_SEMAPHORE, 0);
        let exports = [
            (d.export_fence(fence, OPAQUE), Target::Fence),
            (d.export_semaphore(semaphore, OPAQUE), Target::Binary),
            (d.export_semaphore(timeline, OPAQUE), Target::Timeline),
        ];
        for (at_least, (fd, target)) in (parking(route, 1)..).step_by(100).zip(exports) {
            let fd = renumber(fd.expect("an OPAQUE_FD export"), at_least);
            let raw = fd.as_raw_fd();
            match target {
                Target::Fence => {
                    d.create_and_import_fence(OPAQUE, Permanence::Permanent, Some(fd));
                }
                Target::Binary => {
                    d.create_and_import_semaphore(OPAQUE, Permanence::Permanent, Some(fd));
                }
                Target::Timeline => {
                    let imported = d.timeline_semaphore(0);
                    d.import_semaphore(imported, OPAQUE, Permanence::Permanent, Some(fd));
                }
            }
            assert!(
                !is_open(raw),
                "a successful OPAQUE_FD import of a {target:?} left fd {raw} open"
            );
        }
    }
}

mod sync_fd {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            minus_one_is_signaled,
            eventfd_signals_once_readable,
            pipe_signals_once_written,
            export_of_a_signaled_fence_takes_the_signal,
            export_of_a_signaled_semaphore_takes_the_signal,
        ])
    }

    /// A SYNC_FD export of an already signaled object gives `-1` or an fd that is already
    /// readable (the CTS's "early pass" case), and an import of it is signaled.
    fn assert_signaled_copy(d: &FdDevice, copy: ExportedFd) {
        if let Some(fd) = &copy {
            assert!(
                is_readable(fd),
                "a SYNC_FD export of a signaled object must be signaled"
            );
        }
        let fence = d.create_and_import_fence(SYNC, Permanence::Temporary, copy);
        assert_eq!(d.fence_status(fence), vk::Result::SUCCESS);
    }

    /// Copy transference: exporting acts as a reset of the fence.
    fn export_of_a_signaled_fence_takes_the_signal(route: Route) {
        let d = FdDevice::new(route);
        let fence = d.exportable_fence(vk::ExternalFenceHandleTypeFlags::SYNC_FD);
        d.submit_signal_fence(fence);
        d.wait_fence(fence);
        assert_signaled_copy(&d, d.export_fence(fence, SYNC));
        assert_eq!(
            d.fence_status(fence),
            vk::Result::NOT_READY,
            "the export did not reset the fence"
        );
        // Redundant for the driver (the fence is unsignaled), but VK_LAYER_KHRONOS_validation
        // 1.3.239 aborts (std::future_error on its retire thread) when a fence it saw exported
        // as SYNC_FD after its signal is submitted again without a reset.
        d.reset_fences(&[fence]);
        d.submit_signal_fence(fence);
        d.wait_fence(fence);
    }

    /// Copy transference: exporting acts as a wait on the semaphore. Proven by a wait submitted
    /// before any new signal staying blocked, so without the validation layer (a binary wait
    /// submitted before its signal breaks VUID-vkQueueSubmit-pWaitSemaphores-03238).
    fn export_of_a_signaled_semaphore_takes_the_signal(route: Route) {
        let d = FdDevice::with_options(route, Options::without_validation_layer());
        let semaphore = d.exportable_semaphore(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
        d.submit_signal_semaphore(semaphore);
        d.idle();
        assert_signaled_copy(&d, d.export_semaphore(semaphore, SYNC));
        let waiter = d.fence(false);
        assert_eq!(
            d.submit(0, &[Batch::new().wait(semaphore, 0)], waiter),
            vk::Result::SUCCESS
        );
        d.assert_pending(waiter);
        assert_eq!(
            d.submit(1, &[Batch::new().signal(semaphore, 0)], vk::Fence::null()),
            vk::Result::SUCCESS
        );
        d.wait_fence(waiter);
    }

    fn minus_one_is_signaled(route: Route) {
        let d = FdDevice::new(route);
        let fence = d.create_and_import_fence(SYNC, Permanence::Temporary, None);
        assert_eq!(d.fence_status(fence), vk::Result::SUCCESS);
        let semaphore = d.create_and_import_semaphore(SYNC, Permanence::Temporary, None);
        d.submit_wait_semaphore(semaphore);
        d.idle();
    }

    /// Imports a copy of `readable_later` into a fence and a binary semaphore (a batch waits on
    /// it); neither is signaled until `make_readable`, both are after.
    fn signals_once_readable(route: Route, readable_later: OwnedFd, make_readable: impl FnOnce()) {
        let d = FdDevice::new(route);
        let copy = rustix::io::fcntl_dupfd_cloexec(&readable_later, 0).expect("dup");
        let fence = d.create_and_import_fence(SYNC, Permanence::Temporary, Some(readable_later));
        let semaphore = d.create_and_import_semaphore(SYNC, Permanence::Temporary, Some(copy));
        let waiter = d.fence(false);
        assert_eq!(
            d.submit(0, &[Batch::new().wait(semaphore, 0)], waiter),
            vk::Result::SUCCESS
        );
        d.assert_pending(fence);
        d.assert_pending(waiter);
        make_readable();
        d.wait_fence(fence);
        d.wait_fence(waiter);
    }

    fn eventfd_signals_once_readable(route: Route) {
        use rustix::event::{EventfdFlags, eventfd};
        let event = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
        let writer = rustix::io::fcntl_dupfd_cloexec(&event, 0).expect("dup");
        signals_once_readable(route, event, || {
            rustix::io::write(&writer, &1u64.to_ne_bytes()).expect("writing the eventfd");
        });
    }

    fn pipe_signals_once_written(route: Route) {
        let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        signals_once_readable(route, reader, || {
            rustix::io::write(&writer, b"x").expect("writing the pipe");
        });
    }
}

pub mod process {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            child_shares_by_scm_rights,
            child_shares_by_inheritance,
            export_import_cycles_leak_nothing,
        ])
    }

    /// How the sharer child gets its fds.
    const BY_SOCKET: &str = "socket";
    const BY_INHERITANCE: &str = "inherit";
    /// The bytes that travel with the fds.
    const GREETING: &[u8] = b"tether";

    /// The protocol on the shared timeline (the values each side sets):
    /// child imported (1) → parent signaled fence and binary (2) → child saw both and reset the
    /// fence (3) → parent saw the reset (4) → child signaled fence, binary and 5 from its queue.
    mod step {
        pub const CHILD_IMPORTED: u64 = 1;
        pub const PARENT_SIGNALED: u64 = 2;
        pub const CHILD_RESET_FENCE: u64 = 3;
        pub const PARENT_SAW_RESET: u64 = 4;
        pub const CHILD_SIGNALED: u64 = 5;
    }

    /// The parent's side of the sharing protocol with a child on the loader route.
    fn share_with_child(route: Route, by: &str) {
        harness::require_loader();
        let d = FdDevice::new(route);
        let fence = d.exportable_fence(OPAQUE_FENCE);
        let binary = d.exportable_semaphore(OPAQUE_SEMAPHORE);
        let timeline = d.exportable_timeline(OPAQUE_SEMAPHORE, 0);
        let fds: Vec<OwnedFd> = [
            d.export_fence(fence, OPAQUE),
            d.export_semaphore(binary, OPAQUE),
            d.export_semaphore(timeline, OPAQUE),
        ]
        .into_iter()
        .map(|fd| fd.expect("an OPAQUE_FD export"))
        .collect();

        let mut command = harness::child_command("sharer");
        command.arg(by).stdout(Stdio::null());
        let mut child = if by == BY_SOCKET {
            let (ours, theirs) = socket_pair();
            let child = command.stdin(Stdio::from(theirs)).spawn().expect("spawning the child");
            let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
            send_fds(ours.as_fd(), &borrowed, GREETING).expect("sending the fds");
            child
        } else {
            // Inheritable duplicates (no close-on-exec), their numbers as arguments.
            let inheritable: Vec<OwnedFd> = fds.iter().map(|fd| rustix::io::dup(fd).expect("dup")).collect();
            for fd in &inheritable {
                command.arg(fd.as_raw_fd().to_string());
            }
            command.stdin(Stdio::null()).spawn().expect("spawning the child")
        };
        drop(fds);

        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_reaches(&d, timeline, step::CHILD_IMPORTED);
            let batch = Batch::new().signal(binary, 0);
            assert_eq!(d.submit(0, &[batch], fence), vk::Result::SUCCESS);
            assert_eq!(d.signal(timeline, step::PARENT_SIGNALED), vk::Result::SUCCESS);
            assert_reaches(&d, timeline, step::CHILD_RESET_FENCE);
            assert_eq!(
                d.fence_status(fence),
                vk::Result::NOT_READY,
                "the child's reset of the fence"
            );
            assert_eq!(d.signal(timeline, step::PARENT_SAW_RESET), vk::Result::SUCCESS);
            assert_reaches(&d, timeline, step::CHILD_SIGNALED);
            d.wait_fence(fence);
            d.submit_wait_semaphore(binary);
            d.idle();
        }));
        let status = wait_child(&mut child, CHILD_LIMIT);
        if let Err(panic) = result {
            eprintln!("child status: {status:?}");
            std::panic::resume_unwind(panic);
        }
        let status = status.expect("the child did not finish in time");
        assert!(status.success(), "the child failed: {status}");
    }

    fn child_shares_by_scm_rights(route: Route) {
        share_with_child(route, BY_SOCKET);
    }

    fn child_shares_by_inheritance(route: Route) {
        share_with_child(route, BY_INHERITANCE);
    }

    /// Child role `sharer <socket|inherit> [fence binary timeline]`: gets the three fds
    /// (from a socket on stdin, or inherited with their numbers as arguments), imports them in
    /// its own instance (loader route) and plays the child's side of the protocol.
    pub fn role_sharer(args: &[String]) -> i32 {
        let args = args.to_vec();
        child_main(move || {
            let fds: Vec<OwnedFd> = match args.first().map(String::as_str) {
                Some(BY_SOCKET) => {
                    let (fds, payload) = recv_fds(std::io::stdin().as_fd(), 3, 64).expect("receiving the fds");
                    assert_eq!(payload, GREETING);
                    fds
                }
                Some(BY_INHERITANCE) => args[1..]
                    .iter()
                    .map(|n| {
                        let raw: RawFd = n.parse().expect("an fd number");
                        assert!(is_open(raw), "inherited fd {raw} is not open");
                        // SAFETY: the parent passed this inherited fd to us and nothing else
                        // in this process uses it.
                        unsafe { OwnedFd::from_raw_fd(raw) }
                    })
                    .collect(),
                other => panic!("unknown sharing mode {other:?}"),
            };
            let [fence_fd, binary_fd, timeline_fd]: [OwnedFd; 3] = fds.try_into().expect("three fds");
            let d = FdDevice::new(Route::Loader);
            let fence = d.create_and_import_fence(OPAQUE, Permanence::Permanent, Some(fence_fd));
            let binary = d.create_and_import_semaphore(OPAQUE, Permanence::Permanent, Some(binary_fd));
            let timeline = d.timeline_semaphore(0);
            d.import_semaphore(timeline, OPAQUE, Permanence::Permanent, Some(timeline_fd));

            assert_eq!(d.signal(timeline, step::CHILD_IMPORTED), vk::Result::SUCCESS);
            assert_reaches(&d, timeline, step::PARENT_SIGNALED);
            d.wait_fence(fence);
            d.submit_wait_semaphore(binary);
            d.idle();
            d.reset_fences(&[fence]);
            assert_eq!(d.signal(timeline, step::CHILD_RESET_FENCE), vk::Result::SUCCESS);
            assert_reaches(&d, timeline, step::PARENT_SAW_RESET);
            let batch = Batch::new().signal(binary, 0).signal(timeline, step::CHILD_SIGNALED);
            assert_eq!(d.submit(0, &[batch], fence), vk::Result::SUCCESS);
            d.wait_fence(fence);
            d.idle();
        })
    }

    /// Runs the `leak-check` child on this route; it must report equal counts.
    fn export_import_cycles_leak_nothing(route: Route) {
        if route.uses_loader() {
            harness::require_loader();
        }
        // One malloc arena: a thread arena created mid-run is a mapping, but no leak.
        let mut child = harness::child_command("leak-check")
            .env("MALLOC_ARENA_MAX", "1")
            .arg(route.name())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning the child");
        let status = wait_child(&mut child, CHILD_LIMIT).expect("the leak check did not finish in time");
        assert!(
            status.success(),
            "the leak check failed: {status} (its stderr says why)"
        );
    }

    /// One export/import/destroy cycle: a new exportable fence, binary and timeline semaphore,
    /// each exported as OPAQUE_FD and imported into a new plain object; a SYNC_FD export of the
    /// fence while its signal is pending, imported into a fence; then everything destroyed.
    fn cycle(d: &FdDevice, gate_value: u64, gate: vk::Semaphore) {
        let fence = d.exportable_fence(OPAQUE_FENCE | vk::ExternalFenceHandleTypeFlags::SYNC_FD);
        let binary = d.exportable_semaphore(OPAQUE_SEMAPHORE);
        let timeline = d.exportable_timeline(OPAQUE_SEMAPHORE, 0);
        let imported_fence = d.create_and_import_fence(OPAQUE, Permanence::Permanent, d.export_fence(fence, OPAQUE));
        let imported_binary =
            d.create_and_import_semaphore(OPAQUE, Permanence::Permanent, d.export_semaphore(binary, OPAQUE));
        let imported_timeline = d.timeline_semaphore(0);
        d.import_semaphore(
            imported_timeline,
            OPAQUE,
            Permanence::Permanent,
            d.export_semaphore(timeline, OPAQUE),
        );

        assert_eq!(
            d.submit(0, &[Batch::new().wait(gate, gate_value)], fence),
            vk::Result::SUCCESS
        );
        let copy: ExportedFd = d.export_fence(fence, SYNC);
        let fence_copy = d.create_and_import_fence(SYNC, Permanence::Temporary, copy);
        assert_eq!(d.signal(gate, gate_value), vk::Result::SUCCESS);
        d.wait_fence(fence_copy);
        d.idle();

        d.destroy_fence(imported_fence);
        d.destroy_fence(fence_copy);
        d.destroy_semaphore(imported_binary);
        d.destroy_semaphore(imported_timeline);
        d.destroy_exportable_fence(fence);
        d.destroy_exportable_semaphore(binary);
        d.destroy_exportable_semaphore(timeline);
    }

    /// Child role `leak-check <route>`: 4096 cycles (after a warm-up that starts every lazy
    /// thread and cache) must not grow `/proc/self/fd` or `/proc/self/maps` (a leak of one fd or
    /// mapping per cycle would add thousands). Runs without the validation layer, whose own
    /// allocations are not under test.
    pub fn role_leak_check(args: &[String]) -> i32 {
        const WARM_UP: u64 = 16;
        const CYCLES: u64 = 4096;
        let route = match args.first().map(String::as_str) {
            Some("in_process") => Route::InProcess,
            _ => Route::Loader,
        };
        child_main(move || {
            let d = FdDevice::with_options(route, Options::without_validation_layer().queues(1));
            let gate = d.timeline_semaphore(0);
            for value in 1..=WARM_UP {
                cycle(&d, value, gate);
            }
            let (fds_before, maps_before) = (open_fd_count(), mapping_count());
            let maps_at_start = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
            for value in WARM_UP + 1..=WARM_UP + CYCLES {
                cycle(&d, value, gate);
            }
            // The driver's sync-file thread lets go of the last exported payload a moment after
            // the export fired (it holds the page while it waits): give it that moment.
            let settle_limit = Instant::now() + Duration::from_secs(5);
            let (fds_after, maps_after) = loop {
                let counts = (open_fd_count(), mapping_count());
                if (counts.0 <= fds_before && counts.1 <= maps_before) || Instant::now() > settle_limit {
                    break counts;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            eprintln!(
                "leak-check ({route}): fds {fds_before} -> {fds_after}, mappings {maps_before} -> {maps_after} after {CYCLES} cycles"
            );
            if maps_after > maps_before {
                let maps_at_end = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
                for line in maps_at_end.lines().filter(|l| !maps_at_start.lines().any(|s| s == *l)) {
                    eprintln!("leak-check: new mapping {line}");
                }
            }
            assert!(
                fds_after <= fds_before,
                "open fds grew over {CYCLES} export/import/destroy cycles"
            );
            assert!(
                maps_after <= maps_before,
                "mappings grew over {CYCLES} export/import/destroy cycles"
            );
        })
    }
}

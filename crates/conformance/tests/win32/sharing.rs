//! Sharing through Win32 handles beyond what the CTS covers (the CTS never imports by name, never
//! crosses a process, never uses D3D12_FENCE):
//!
//! A module of two test binaries: `win32_sharing` (the tether ICD) and `layer_win32` (through
//! `VK_LAYER_TETHER_win32_sync`, loader route only); what a target does not support is reported
//! as ignored with its reason (`tether_conformance::limits`).
//!
//! * `names`: import by name in the same process and another instance, in another process, after
//!   the exporting handle was closed, before any NT export, after the exporter died; unknown
//!   names; two objects with one name; `Local\` and `Global\` prefixes; invalid names at export
//!   creation and at import;
//! * `kmt`: one KMT value per object, a child process importing the parent's value, stale and
//!   never-allocated values;
//! * `d3d12`: D3D12_FENCE timelines across instances (values on both sides, host signals,
//!   `VkD3D12FenceSubmitInfoKHR` signal and wait values, a value going backwards, waits completing
//!   at value ≥ target), D3D12_FENCE on a binary semaphore, D3D12 values ignored for other
//!   payloads, a D3D12 import of a payload that is no D3D12 fence;
//! * `inherit`: `SECURITY_ATTRIBUTES::bInheritHandle` and close-on-exec, a child that imports an
//!   inherited handle by its number;
//! * `access`: `dwAccess` without a write right gives a handle that waits but cannot signal;
//! * `close`: closing the NT handle right after the import, even across instances;
//! * `errors`: every error on purpose, each checked with its code and a recorded debug-utils
//!   message, and the object's payload unchanged after a failed import;
//! * `entry_points`: `vkGetDeviceProcAddr` for the Win32 commands with and without their
//!   extensions;
//! * `broker`: the tests' private broker; a broker killed while objects are shared; another user
//!   (a child that drops to `nobody`) cannot open a name or a KMT value; the detached broker
//!   keeps none of its starter's fds;
//! * `c`: a C program using `include/tether/win32_handles.h` and `<vulkan/vulkan_win32.h>`.
//!
//! Every wait is bounded (10 s): a sharing bug fails a test instead of hanging it. Errors are
//! produced with the validation layer off (see `Win32Device::with_options`); the driver's own
//! messages are what is checked.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use ash::vk;
use tether_conformance::external::{child_main, is_open, renumber};
use tether_conformance::harness::{self, LOADER_AND_IN_PROCESS, NO_ROUTE, Role, Route, Test};
use tether_conformance::limits::{self, Limit};
use tether_conformance::win32::{
    self, ExportAttributes, NativeHandle, Permanence, RuntimeDir, Win32Device, Win32HandleType, file_identity,
    is_cloexec, is_read_only, route_from_name, run_child, unique_name,
};
use tether_conformance::{Batch, LONG_NS, Options, tests};

const NT: Win32HandleType = Win32HandleType::OpaqueWin32;
const KMT: Win32HandleType = Win32HandleType::OpaqueWin32Kmt;
const D3D12: Win32HandleType = Win32HandleType::D3d12Fence;
const NT_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32;
const KMT_FENCE: vk::ExternalFenceHandleTypeFlags = vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT;
const NT_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32;
const KMT_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT;
const D3D12_SEMAPHORE: vk::ExternalSemaphoreHandleTypeFlags = vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
const PERMANENT: vk::SemaphoreImportFlags = vk::SemaphoreImportFlags::empty();

/// The id of the driver's message for `VK_ERROR_INVALID_EXTERNAL_HANDLE`.
const INVALID_HANDLE_MESSAGE: &str = "tether-invalid-external-handle";
/// The id of the driver's message for an NT export whose name another object holds.
const NAME_IN_USE_MESSAGE: &str = "tether-name-in-use";

/// How long a parent waits for a child process before killing it (only a hang takes this long).
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// The child roles the tests start (re-executions of the test binary).
pub const ROLES: &[Role] = &[
    Role {
        name: "import-named",
        setup_environment: true,
        run: process::role_import_named,
    },
    Role {
        name: "import-kmt",
        setup_environment: true,
        run: process::role_import_kmt,
    },
    Role {
        name: "import-inherited",
        setup_environment: true,
        run: process::role_import_inherited,
    },
    Role {
        name: "broker-killed",
        setup_environment: true,
        run: broker::role_broker_killed,
    },
    Role {
        name: "other-user",
        setup_environment: false,
        run: broker::role_other_user,
    },
];

/// Every test, grouped by module.
pub fn tests() -> Vec<(String, Test)> {
    let mut all = harness::group("names", names::tests());
    all.extend(harness::group("kmt", kmt::tests()));
    all.extend(harness::group("d3d12", d3d12::tests()));
    all.extend(harness::group("inherit", inherit::tests()));
    all.extend(harness::group("access", access::tests()));
    all.extend(harness::group("close", close::tests()));
    all.extend(harness::group("errors", errors::tests()));
    all.extend(harness::group("entry_points", entry_points::tests()));
    all.extend(harness::group("broker", broker::tests()));
    all.extend(harness::group("c", c_program::tests()));
    all
}

// --- shared helpers ---------------------------------------------------------------------------

/// A name's UTF-16 units (no NUL).
fn units(name: &str) -> Vec<u16> {
    name.encode_utf16().collect()
}

/// A device for tests whose errors are the point (its messages are checked one by one).
fn error_device(route: Route) -> Win32Device {
    Win32Device::with_options(route, Options::expecting_errors())
}

/// Asserts `result` is `expected` and that the driver sent a debug-utils message whose id
/// contains `message_id` since the last check (the log is emptied).
fn assert_error(d: &Win32Device, what: &str, result: vk::Result, expected: vk::Result, message_id: &str) {
    let messages = d.log().take();
    assert_eq!(result, expected, "{what}: messages: {messages:?}");
    assert!(
        messages.iter().any(|m| m.id.contains(message_id)),
        "{what}: returned {result} but sent no debug-utils message with id {message_id:?}: {messages:?}"
    );
}

/// An fd number at or above `base` that no trial of another route uses (the same test runs on
/// each route at once): tests that close a handle moved up there check nobody reuses it.
fn route_private_fd(route: Route, base: RawFd) -> RawFd {
    base + match route {
        Route::Loader => 0,
        Route::InProcess => 100,
        Route::DirectDriverLoading => 200,
    }
}

/// An NT-handle import that the ICD refuses because of the payload the handle carries (a fence
/// or a semaphore, binary or timeline, D3D12 fence or not): on the ICD, [`assert_error`] and
/// `None`. On a target that cannot see that payload ([`Limit::NtHandlePayload`]) the driver
/// decides: the ICD's answer is `None` too; otherwise the import must be refused with
/// `VK_ERROR_INVALID_EXTERNAL_HANDLE` and its message (the layer's code for any refusal of the
/// driver) or accepted, and what happened is returned for [`report_payload_cases`].
fn payload_refusal(
    d: &Win32Device,
    what: &str,
    result: vk::Result,
    expected: vk::Result,
    message_id: &str,
) -> Option<String> {
    if limits::limit(Limit::NtHandlePayload).is_none() {
        assert_error(d, what, result, expected, message_id);
        return None;
    }
    let messages = d.log().take();
    let said = |id: &str| messages.iter().any(|m| m.id.contains(id));
    match result {
        r if r == expected && said(message_id) => None,
        vk::Result::SUCCESS => Some(format!("{what}: accepted")),
        vk::Result::ERROR_INVALID_EXTERNAL_HANDLE if said(INVALID_HANDLE_MESSAGE) => Some(format!(
            "{what}: VK_ERROR_INVALID_EXTERNAL_HANDLE instead of {expected}"
        )),
        other => panic!(
            "{what}: {other}; a refusal of the driver must come back as VK_ERROR_INVALID_EXTERNAL_HANDLE with \
             a {INVALID_HANDLE_MESSAGE} message: {messages:?}"
        ),
    }
}

/// Ends the test as not supported ([`Limit::NtHandlePayload`]) when [`payload_refusal`] saw
/// the target answer otherwise than the ICD.
fn report_payload_cases(cases: &[Option<String>]) {
    let cases: Vec<&str> = cases.iter().flatten().map(String::as_str).collect();
    if let (Some(reason), false) = (limits::limit(Limit::NtHandlePayload), cases.is_empty()) {
        harness::not_supported(format!("{reason}; here: {}", cases.join("; ")));
    }
}

/// A broken valid-usage rule that only the driver can see (an import into an object tied to
/// unfinished queue work): on the ICD, [`assert_error`] and `false`. Through the layer
/// ([`Limit::DriverValidation`]) the driver's answer comes back: the ICD's answer gives `false`;
/// `VK_SUCCESS` gives `true` (this driver does not check the rule: the caller cleans up and
/// reports the case as not supported); anything else fails.
fn driver_accepted(d: &Win32Device, what: &str, result: vk::Result, expected: vk::Result, message_id: &str) -> bool {
    if limits::limit(Limit::DriverValidation).is_some() && result == vk::Result::SUCCESS {
        d.log().take();
        return true;
    }
    assert_error(d, what, result, expected, message_id);
    false
}

/// Asserts a timeline (of any payload) reaches `value` within [`LONG_NS`].
fn assert_reaches(d: &Win32Device, semaphore: vk::Semaphore, value: u64) {
    assert_eq!(
        d.wait_semaphores(&[(semaphore, value)], false, LONG_NS),
        vk::Result::SUCCESS,
        "the timeline never reached {value} (it is at {})",
        d.counter(semaphore)
    );
}

/// Submits a wait on a binary semaphore on queue 0 with a fence, and asserts the fence signals:
/// the semaphore was signaled (or becomes so).
fn assert_binary_wait_completes(d: &Win32Device, semaphore: vk::Semaphore) {
    let fence = d.fence(false);
    assert_eq!(
        d.submit(0, &[Batch::new().wait(semaphore, 0)], fence),
        vk::Result::SUCCESS,
        "vkQueueSubmit (wait)"
    );
    d.wait_fence(fence);
    d.destroy_fence(fence);
}

/// An exportable fence, its NT handle, and a plain fence on `importer` with it imported
/// permanently: two fences sharing one payload.
fn shared_fence(exporter: &Win32Device, importer: &Win32Device) -> (vk::Fence, vk::Fence) {
    let exported = exporter.exportable_fence(NT_FENCE);
    let handle = exporter.export_fence(exported, NT);
    let imported = importer.create_and_import_fence(NT, Permanence::Permanent, &handle);
    (exported, imported)
}

/// The same for a binary semaphore.
fn shared_binary(exporter: &Win32Device, importer: &Win32Device) -> (vk::Semaphore, vk::Semaphore) {
    let exported = exporter.exportable_semaphore(NT_SEMAPHORE);
    let handle = exporter.export_semaphore(exported, NT);
    let imported = importer.create_and_import_semaphore(NT, Permanence::Permanent, &handle);
    (exported, imported)
}

/// The same for a timeline semaphore (at `initial`).
fn shared_timeline(exporter: &Win32Device, importer: &Win32Device, initial: u64) -> (vk::Semaphore, vk::Semaphore) {
    let exported = exporter.exportable_timeline(NT_SEMAPHORE, initial, None);
    let handle = exporter.export_semaphore(exported, NT);
    let imported = importer.timeline_semaphore(0);
    importer.import_semaphore(imported, NT, Permanence::Permanent, &handle);
    (exported, imported)
}

// --- names ------------------------------------------------------------------------------------

mod names {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            same_process_and_other_instance,
            other_process,
            registered_at_first_nt_export,
            after_handle_closed_until_exporter_dies,
            unknown,
            collision,
            local_and_global_prefixes,
            invalid_at_export,
            invalid_at_import,
            longest_valid_name,
        ])
    }

    /// A fence, a binary and a timeline semaphore and a D3D12 fence, each exported under a name
    /// and imported by that name into an object of another instance (and of the same device,
    /// temporarily for the fence): every importer shares the exporter's payload.
    fn same_process_and_other_instance(route: Route) {
        let d = Win32Device::new(route);
        let d2 = Win32Device::new(route);
        // A fence.
        let name = unique_name("fence");
        let fence_a = d.exportable_fence_with(NT_FENCE, &ExportAttributes::named(&name));
        let handle = d.export_fence(fence_a, NT);
        let fence_b = d2.fence(false);
        assert_eq!(
            d2.import_fence_by_name(fence_b, vk::FenceImportFlags::empty(), &units(&name)),
            vk::Result::SUCCESS,
            "importing fence {name:?} by name: {}",
            d2.messages()
        );
        let fence_c = d.fence(false);
        assert_eq!(
            d.import_fence_by_name(fence_c, vk::FenceImportFlags::TEMPORARY, &units(&name)),
            vk::Result::SUCCESS,
            "importing fence {name:?} by name (temporary): {}",
            d.messages()
        );
        d.submit_signal_fence(fence_a);
        d2.wait_fence(fence_b);
        d.wait_fence(fence_c);
        handle.close();
        // A binary semaphore.
        let name = unique_name("binary");
        let binary_a = d.exportable_semaphore_with(NT_SEMAPHORE, &ExportAttributes::named(&name));
        d.export_semaphore(binary_a, NT).close();
        let binary_b = d2.binary_semaphore();
        assert_eq!(
            d2.import_semaphore_by_name(binary_b, NT_SEMAPHORE, PERMANENT, &units(&name)),
            vk::Result::SUCCESS,
            "importing binary semaphore {name:?} by name: {}",
            d2.messages()
        );
        d.submit_signal_semaphore(binary_a);
        assert_binary_wait_completes(&d2, binary_b);
        // A timeline semaphore: values seen and moved on both sides.
        let name = unique_name("timeline");
        let timeline_a = d.exportable_timeline(NT_SEMAPHORE, 3, Some(&ExportAttributes::named(&name)));
        d.export_semaphore(timeline_a, NT).close();
        let timeline_b = d2.timeline_semaphore(0);
        assert_eq!(
            d2.import_semaphore_by_name(timeline_b, NT_SEMAPHORE, PERMANENT, &units(&name)),
            vk::Result::SUCCESS,
            "importing timeline {name:?} by name: {}",
            d2.messages()
        );
        assert_eq!(d2.counter(timeline_b), 3);
        assert_eq!(d.signal(timeline_a, 7), vk::Result::SUCCESS);
        assert_reaches(&d2, timeline_b, 7);
        assert_eq!(d2.signal(timeline_b, 9), vk::Result::SUCCESS);
        assert_eq!(d.counter(timeline_a), 9);
        // A D3D12 fence (D3D12_FENCE may be named, as OPAQUE_WIN32).
        let name = unique_name("d3d12");
        let d3d12_a = d.exportable_timeline(D3D12_SEMAPHORE, 11, Some(&ExportAttributes::named(&name)));
        d.export_semaphore(d3d12_a, D3D12).close();
        let d3d12_b = d2.timeline_semaphore(0);
        assert_eq!(
            d2.import_semaphore_by_name(d3d12_b, D3D12_SEMAPHORE, PERMANENT, &units(&name)),
            vk::Result::SUCCESS,
            "importing D3D12 fence {name:?} by name: {}",
            d2.messages()
        );
        assert_eq!(d2.counter(d3d12_b), 11);
        d.idle();
        d2.idle();
    }

    /// A child process imports a fence and a timeline semaphore by the names the parent gave
    /// them (through the same per-user broker) and signals both; the parent sees the signals.
    fn other_process(route: Route) {
        let d = Win32Device::new(route);
        let fence_name = unique_name("process-fence");
        let fence = d.exportable_fence_with(NT_FENCE, &ExportAttributes::named(&fence_name));
        let fence_handle = d.export_fence(fence, NT);
        let timeline_name = unique_name("process-timeline");
        let timeline = d.exportable_timeline(NT_SEMAPHORE, 0, Some(&ExportAttributes::named(&timeline_name)));
        // The parent's own handles are closed before the child looks the names up.
        d.export_semaphore(timeline, NT).close();
        fence_handle.close();
        assert_eq!(d.signal(timeline, 1), vk::Result::SUCCESS);
        let output = run_child(
            harness::child_command("import-named")
                .arg(route.name())
                .arg(&fence_name)
                .arg(&timeline_name),
            CHILD_LIMIT,
        );
        output.assert_success("a child importing by name");
        d.wait_fence(fence);
        assert_reaches(&d, timeline, 2);
    }

    /// The name is registered with the first NT export (the spec associates it with "NT
    /// handles exported"): before it, and after only a KMT export, the name resolves to nothing.
    fn registered_at_first_nt_export(route: Route) {
        let d = error_device(route);
        let name = unique_name("late");
        let exporter = d.exportable_timeline(NT_SEMAPHORE | KMT_SEMAPHORE, 0, Some(&ExportAttributes::named(&name)));
        let importer = d.timeline_semaphore(0);
        let result = d.import_semaphore_by_name(importer, NT_SEMAPHORE, PERMANENT, &units(&name));
        assert_error(
            &d,
            "import by name before any export",
            result,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        );
        let _kmt = d.export_semaphore(exporter, KMT);
        let result = d.import_semaphore_by_name(importer, NT_SEMAPHORE, PERMANENT, &units(&name));
        assert_error(
            &d,
            "import by name after only a KMT export",
            result,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        );
        d.export_semaphore(exporter, NT).close();
        assert_eq!(
            d.import_semaphore_by_name(importer, NT_SEMAPHORE, PERMANENT, &units(&name)),
            vk::Result::SUCCESS,
            "import by name after the NT export: {}",
            d.messages()
        );
        assert_eq!(d.signal(exporter, 4), vk::Result::SUCCESS);
        assert_eq!(d.counter(importer), 4);
    }

    /// The name outlives the exported handle (closed at once) but not the exporting object:
    /// once that is destroyed the name is gone, while objects that imported it keep working.
    fn after_handle_closed_until_exporter_dies(route: Route) {
        let d = error_device(route);
        let name = unique_name("closed");
        let exporter = d.exportable_fence_with(NT_FENCE, &ExportAttributes::named(&name));
        d.export_fence(exporter, NT).close();
        let importer = d.fence(false);
        assert_eq!(
            d.import_fence_by_name(importer, vk::FenceImportFlags::empty(), &units(&name)),
            vk::Result::SUCCESS,
            "import by name after the handle was closed: {}",
            d.messages()
        );
        d.submit_signal_fence(exporter);
        d.wait_fence(importer);
        d.idle();
        d.destroy_exportable_fence(exporter);
        let late = d.fence(false);
        let result = d.import_fence_by_name(late, vk::FenceImportFlags::empty(), &units(&name));
        assert_error(
            &d,
            "import by name after the exporter was destroyed",
            result,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        );
        // The importer still holds the payload: reset and signal it through the import.
        d.reset_fences(&[importer]);
        d.submit_signal_fence(importer);
        d.wait_fence(importer);
    }

    /// A name nobody registered.
    fn unknown(route: Route) {
        let d = error_device(route);
        let name = units(&unique_name("nobody-has-this"));
        let fence = d.fence(false);
        let result = d.import_fence_by_name(fence, vk::FenceImportFlags::empty(), &name);
        assert_error(
            &d,
            "fence import of an unknown name",
            result,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        );
        let semaphore = d.binary_semaphore();
        let result = d.import_semaphore_by_name(semaphore, NT_SEMAPHORE, PERMANENT, &name);
        assert_error(
            &d,
            "semaphore import of an unknown name",
            result,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        );
        let result = d.import_semaphore_by_name(semaphore, D3D12_SEMAPHORE, PERMANENT, &name);
        assert_error(
            &d,
            "D3D12 import of an unknown name",
            result,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        );
        // The failed imports changed nothing.
        d.submit_signal_fence(fence);
        d.wait_fence(fence);
        d.submit_signal_semaphore(semaphore);
        assert_binary_wait_completes(&d, semaphore);
    }

    /// Two objects, one name: creating the second is fine (names are registered at the first NT
    /// export), its NT export fails with `VK_ERROR_TOO_MANY_OBJECTS` (of the codes the spec allows
    /// for an export, the closest; the message says the name is taken) and records nothing, so it can be
    /// retried; the name keeps naming the first object until that is destroyed, then the second
    /// one's export takes it. Fences and semaphores share the one namespace.
    fn collision(route: Route) {
        let d = error_device(route);
        let d2 = error_device(route);
        let name = unique_name("taken");
        let first = d.exportable_fence_with(NT_FENCE, &ExportAttributes::named(&name));
        let first_handle = d.export_fence(first, NT);
        let second = d2.exportable_fence_with(NT_FENCE, &ExportAttributes::named(&name));
        for attempt in 1..=2 {
            let result = d2
                .get_fence_win32(second, NT_FENCE)
                .err()
                .unwrap_or(vk::Result::SUCCESS);
            assert_error(
                &d2,
                &format!("NT export #{attempt} of a second fence named {name:?}"),
                result,
                vk::Result::ERROR_TOO_MANY_OBJECTS,
                NAME_IN_USE_MESSAGE,
            );
        }
        let semaphore = d2.exportable_semaphore_with(NT_SEMAPHORE, &ExportAttributes::named(&name));
        let result = d2
            .get_semaphore_win32(semaphore, NT_SEMAPHORE)
            .err()
            .unwrap_or(vk::Result::SUCCESS);
        assert_error(
            &d2,
            &format!("NT export of a semaphore named {name:?} while a fence has the name"),
            result,
            vk::Result::ERROR_TOO_MANY_OBJECTS,
            NAME_IN_USE_MESSAGE,
        );
        // The name still names the first fence.
        let importer = d2.fence(false);
        assert_eq!(
            d2.import_fence_by_name(importer, vk::FenceImportFlags::empty(), &units(&name)),
            vk::Result::SUCCESS,
            "{}",
            d2.messages()
        );
        d.submit_signal_fence(first);
        d2.wait_fence(importer);
        d.idle();
        first_handle.close();
        d.destroy_exportable_fence(first);
        // Free again: the second fence's export takes it.
        let second_handle = d2.export_fence(second, NT);
        let importer2 = d.fence(false);
        assert_eq!(
            d.import_fence_by_name(importer2, vk::FenceImportFlags::empty(), &units(&name)),
            vk::Result::SUCCESS,
            "{}",
            d.messages()
        );
        d2.submit_signal_fence(second);
        d.wait_fence(importer2);
        d2.idle();
        second_handle.close();
    }

    /// `Local\x`, `Global\x` and `x` name one object; the prefixes match in any case, the rest
    /// of the name is case-sensitive; no other prefix exists.
    fn local_and_global_prefixes(route: Route) {
        let d = error_device(route);
        let base = unique_name("prefixed");
        let exporter = d.exportable_timeline(
            NT_SEMAPHORE,
            0,
            Some(&ExportAttributes::named(&format!("Local\\{base}"))),
        );
        d.export_semaphore(exporter, NT).close();
        let mut importers = Vec::new();
        for name in [
            format!("Global\\{base}"),
            base.clone(),
            format!("global\\{base}"),
            format!("LOCAL\\{base}"),
            format!("Local\\{base}"),
        ] {
            let importer = d.timeline_semaphore(0);
            assert_eq!(
                d.import_semaphore_by_name(importer, NT_SEMAPHORE, PERMANENT, &units(&name)),
                vk::Result::SUCCESS,
                "import of {name:?} (exported as Local\\{base}): {}",
                d.messages()
            );
            importers.push(importer);
        }
        assert_eq!(d.signal(exporter, 5), vk::Result::SUCCESS);
        for importer in importers {
            assert_eq!(d.counter(importer), 5);
        }
        for (name, expected) in [
            (base.to_uppercase(), vk::Result::ERROR_INVALID_EXTERNAL_HANDLE),
            (format!("Session\\1\\{base}"), vk::Result::ERROR_INVALID_EXTERNAL_HANDLE),
        ] {
            let importer = d.timeline_semaphore(0);
            let result = d.import_semaphore_by_name(importer, NT_SEMAPHORE, PERMANENT, &units(&name));
            assert_error(
                &d,
                &format!("import of {name:?}"),
                result,
                expected,
                INVALID_HANDLE_MESSAGE,
            );
        }
        // And the other way round: exported under Global\, found under Local\.
        let other = unique_name("global");
        let fence = d.exportable_fence_with(NT_FENCE, &ExportAttributes::named(&format!("Global\\{other}")));
        d.export_fence(fence, NT).close();
        let importer = d.fence(false);
        assert_eq!(
            d.import_fence_by_name(
                importer,
                vk::FenceImportFlags::empty(),
                &units(&format!("Local\\{other}"))
            ),
            vk::Result::SUCCESS,
            "{}",
            d.messages()
        );
        d.submit_signal_fence(fence);
        d.wait_fence(importer);
    }

    /// Names that break the rules of `tether_handles::name`, as UTF-16 units (no NUL).
    fn invalid_names() -> Vec<(&'static str, Vec<u16>)> {
        vec![
            ("empty", Vec::new()),
            ("a prefix alone", units("Local\\")),
            ("a lone high surrogate", vec![u16::from(b'a'), 0xD800, u16::from(b'b')]),
            ("a lone low surrogate", vec![0xDC00]),
            ("an embedded backslash", units("tether\\test")),
            (
                "261 units (MAX_PATH + 1)",
                vec![u16::from(b'x'); tether_handles::name::MAX_NAME_LEN + 1],
            ),
            ("5000 units", vec![u16::from(b'y'); 5000]),
        ]
    }

    /// An invalid name in `VkExport*Win32HandleInfoKHR`: the create fails with
    /// `VK_ERROR_VALIDATION_FAILED_EXT` and a message naming that structure's `name` (the spec
    /// has no VUID for it; the ICD reports `VUID-<structure>-name-parameter`).
    fn invalid_at_export(route: Route) {
        let d = error_device(route);
        for (what, name) in invalid_names() {
            let attrs = ExportAttributes::named_units(&name);
            let result = d
                .try_exportable_fence(NT_FENCE, Some(&attrs))
                .err()
                .unwrap_or(vk::Result::SUCCESS);
            assert_error(
                &d,
                &format!("creating a fence named with {what}"),
                result,
                vk::Result::ERROR_VALIDATION_FAILED_EXT,
                "VUID-VkExportFenceWin32HandleInfoKHR-name-parameter",
            );
            let result = d
                .try_exportable_semaphore(NT_SEMAPHORE, vk::SemaphoreType::BINARY, 0, Some(&attrs))
                .err()
                .unwrap_or(vk::Result::SUCCESS);
            assert_error(
                &d,
                &format!("creating a semaphore named with {what}"),
                result,
                vk::Result::ERROR_VALIDATION_FAILED_EXT,
                "VUID-VkExportSemaphoreWin32HandleInfoKHR-name-parameter",
            );
        }
    }

    /// An invalid name at import: `VK_ERROR_INVALID_EXTERNAL_HANDLE` with a message, and the
    /// object is unchanged.
    fn invalid_at_import(route: Route) {
        let d = error_device(route);
        let fence = d.fence(false);
        let semaphore = d.binary_semaphore();
        for (what, name) in invalid_names() {
            let result = d.import_fence_by_name(fence, vk::FenceImportFlags::empty(), &name);
            assert_error(
                &d,
                &format!("fence import of a name with {what}"),
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
            let result = d.import_semaphore_by_name(semaphore, NT_SEMAPHORE, PERMANENT, &name);
            assert_error(
                &d,
                &format!("semaphore import of a name with {what}"),
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
        }
        d.submit_signal_fence(fence);
        d.wait_fence(fence);
        d.submit_signal_semaphore(semaphore);
        assert_binary_wait_completes(&d, semaphore);
    }

    /// A name of exactly 260 units (prefix included) is valid, with non-ASCII and a surrogate
    /// pair in it.
    fn longest_valid_name(route: Route) {
        let d = Win32Device::new(route);
        let mut name = units(&format!("Global\\{}-é😀-", unique_name("long")));
        name.resize(tether_handles::name::MAX_NAME_LEN, u16::from(b'z'));
        let fence = d.exportable_fence_with(NT_FENCE, &ExportAttributes::named_units(&name));
        d.export_fence(fence, NT).close();
        let importer = d.fence(false);
        assert_eq!(
            d.import_fence_by_name(importer, vk::FenceImportFlags::empty(), &name),
            vk::Result::SUCCESS,
            "{}",
            d.messages()
        );
        d.submit_signal_fence(fence);
        d.wait_fence(importer);
    }
}

// --- KMT --------------------------------------------------------------------------------------

mod kmt {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [one_value_per_object, other_process, stale_and_unknown_values])
    }

    /// Every KMT export of an object gives the same value (it is global), next to its one NT
    /// export; imports of either share the payload.
    fn one_value_per_object(route: Route) {
        let d = Win32Device::new(route);
        let fence = d.exportable_fence(NT_FENCE | KMT_FENCE);
        let first = d.export_fence(fence, KMT);
        let second = d.export_fence(fence, KMT);
        assert_eq!(
            first.raw(),
            second.raw(),
            "two KMT exports of one fence gave two values"
        );
        let nt = d.export_fence(fence, NT);
        let by_kmt = d.create_and_import_fence(KMT, Permanence::Permanent, &first);
        let by_nt = d.create_and_import_fence(NT, Permanence::Permanent, &nt);
        d.submit_signal_fence(fence);
        d.wait_fence(by_kmt);
        d.wait_fence(by_nt);
        let semaphore = d.exportable_timeline(NT_SEMAPHORE | KMT_SEMAPHORE, 0, None);
        let first = d.export_semaphore(semaphore, KMT);
        assert_eq!(first.raw(), d.export_semaphore(semaphore, KMT).raw());
        let other = d.exportable_timeline(KMT_SEMAPHORE, 0, None);
        assert_ne!(
            first.raw(),
            d.export_semaphore(other, KMT).raw(),
            "two objects got one KMT value"
        );
        d.idle();
    }

    /// A child process imports the parent's KMT values (given as numbers) through its own broker
    /// connection and signals a fence and a timeline semaphore.
    fn other_process(route: Route) {
        let d = Win32Device::new(route);
        let fence = d.exportable_fence(KMT_FENCE);
        let fence_kmt = d.export_fence(fence, KMT);
        let timeline = d.exportable_timeline(KMT_SEMAPHORE, 1, None);
        let timeline_kmt = d.export_semaphore(timeline, KMT);
        let output = run_child(
            harness::child_command("import-kmt")
                .arg(route.name())
                .arg(format!("{:#x}", fence_kmt.raw()))
                .arg(format!("{:#x}", timeline_kmt.raw())),
            CHILD_LIMIT,
        );
        output.assert_success("a child importing KMT values");
        d.wait_fence(fence);
        assert_reaches(&d, timeline, 2);
    }

    /// A KMT value of an object that was destroyed (no importer left) is stale:
    /// `VK_ERROR_INVALID_EXTERNAL_HANDLE`. So are values never handed out, and 0.
    fn stale_and_unknown_values(route: Route) {
        let d = error_device(route);
        let fence = d.exportable_fence(KMT_FENCE);
        let stale_fence = d.export_fence(fence, KMT);
        d.destroy_exportable_fence(fence);
        let semaphore = d.exportable_semaphore(KMT_SEMAPHORE);
        let stale_semaphore = d.export_semaphore(semaphore, KMT);
        d.destroy_exportable_semaphore(semaphore);
        let target_fence = d.fence(false);
        let target_semaphore = d.binary_semaphore();
        let values: Vec<(&str, vk::HANDLE)> = vec![
            ("a stale fence value", stale_fence.raw()),
            ("a stale semaphore value", stale_semaphore.raw()),
            ("a value the broker never hands out", 0x4000_0001),
            ("a value far beyond those handed out", 0xffff_fff2),
            ("0", 0),
            ("a value above 32 bits", 1 << 40),
            ("-1", -1),
        ];
        for (what, value) in values {
            let result = d.import_fence_raw(
                target_fence,
                KMT_FENCE,
                vk::FenceImportFlags::empty(),
                value,
                std::ptr::null(),
            );
            assert_error(
                &d,
                &format!("fence import of {what}"),
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
            let result = d.import_semaphore_raw(target_semaphore, KMT_SEMAPHORE, PERMANENT, value, std::ptr::null());
            assert_error(
                &d,
                &format!("semaphore import of {what}"),
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
        }
        d.submit_signal_fence(target_fence);
        d.wait_fence(target_fence);
    }
}

// --- D3D12_FENCE ------------------------------------------------------------------------------

mod d3d12 {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            timeline_across_instances,
            rewind,
            binary_semaphore,
            values_ignored_for_other_payloads,
            import_of_other_payload,
            export_of_type_not_created,
        ])
    }

    /// A timeline semaphore created exportable as D3D12_FENCE at `initial` on `d`, imported
    /// permanently into a timeline of `d2` (the handle closed right after).
    fn shared_d3d12(d: &Win32Device, d2: &Win32Device, initial: u64) -> (vk::Semaphore, vk::Semaphore) {
        let a = d.exportable_timeline(D3D12_SEMAPHORE, initial, None);
        let handle = d.export_semaphore(a, D3D12);
        let b = d2.timeline_semaphore(0);
        d2.import_semaphore(b, D3D12, Permanence::Permanent, &handle);
        handle.close();
        assert_eq!((d.counter(a), d2.counter(b)), (initial, initial));
        (a, b)
    }

    /// A timeline semaphore created exportable as D3D12_FENCE, imported in another instance:
    /// values seen on both sides, host signals either way, `VkD3D12FenceSubmitInfoKHR` signal
    /// and wait values, and waits that complete at value ≥ target.
    fn timeline_across_instances(route: Route) {
        let d = Win32Device::new(route);
        let d2 = Win32Device::new(route);
        let (a, b) = shared_d3d12(&d, &d2, 5);
        // Host signals, either side.
        assert_eq!(d.signal(a, 10), vk::Result::SUCCESS);
        assert_eq!(d2.counter(b), 10);
        assert_eq!(d2.signal(b, 12), vk::Result::SUCCESS);
        assert_eq!(d.counter(a), 12);
        // A queue signal with a D3D12 value, on the importer's device.
        let fence = d2.fence(false);
        assert_eq!(d2.submit_d3d12(&[], &[(b, 20)], fence), vk::Result::SUCCESS);
        d2.wait_fence(fence);
        assert_eq!(d.counter(a), 20);
        // A queue wait with a D3D12 value on the exporter's device: pending until a signal of
        // a value ≥ 25 (here 30) lands through the other device.
        let waited = d.fence(false);
        assert_eq!(d.submit_d3d12(&[(a, 25)], &[], waited), vk::Result::SUCCESS);
        d.assert_pending(waited);
        let fence = d2.fence(false);
        assert_eq!(d2.submit_d3d12(&[], &[(b, 30)], fence), vk::Result::SUCCESS);
        d2.wait_fence(fence);
        d.wait_fence(waited);
        assert_eq!(d2.wait_semaphores(&[(b, 25)], false, LONG_NS), vk::Result::SUCCESS);
        // A D3D12 signal of the current value changes nothing.
        let fence = d2.fence(false);
        assert_eq!(d2.submit_d3d12(&[], &[(b, 30)], fence), vk::Result::SUCCESS);
        d2.wait_fence(fence);
        assert_eq!((d.counter(a), d2.counter(b)), (30, 30));
        // Without VkD3D12FenceSubmitInfoKHR the timeline values apply to a D3D12 payload.
        assert_eq!(
            d.submit(0, &[Batch::new().signal(a, 40)], vk::Fence::null()),
            vk::Result::SUCCESS
        );
        assert_reaches(&d2, b, 40);
        d.idle();
        d2.idle();
    }

    /// Backwards: a D3D12 signal of a lower value sets it, on both sides (D3D12 fences may go
    /// back); a wait for a value in between is pending again until the value passes it once
    /// more. Through the layer ([`Limit::D3d12Rewind`]): the documented behaviour instead (the
    /// value stays, a `tether-layer-d3d12-rewind` warning, the rest of the submit runs, waits
    /// in between complete at once), then reported as not supported.
    fn rewind(route: Route) {
        let d = Win32Device::new(route);
        let d2 = Win32Device::new(route);
        let (a, b) = shared_d3d12(&d, &d2, 30);
        let fence = d2.fence(false);
        assert_eq!(d2.submit_d3d12(&[], &[(b, 3)], fence), vk::Result::SUCCESS);
        d2.wait_fence(fence);
        if let Some(reason) = limits::limit(Limit::D3d12Rewind) {
            assert_eq!(
                (d.counter(a), d2.counter(b)),
                (30, 30),
                "the layer keeps the higher value of a rewound D3D12 fence"
            );
            assert!(
                d2.log().has("tether-layer-d3d12-rewind"),
                "the layer warns about a D3D12 rewind: {}",
                d2.messages()
            );
            let waited = d.fence(false);
            assert_eq!(d.submit_d3d12(&[(a, 25)], &[], waited), vk::Result::SUCCESS);
            d.wait_fence(waited);
            d.idle();
            d2.idle();
            harness::not_supported(reason);
        }
        assert_eq!((d.counter(a), d2.counter(b)), (3, 3), "a D3D12 fence signaled lower");
        // So a wait for 25 is pending again, until the value passes it once more.
        let waited = d.fence(false);
        assert_eq!(d.submit_d3d12(&[(a, 25)], &[], waited), vk::Result::SUCCESS);
        d.assert_pending(waited);
        assert_eq!(
            d2.wait_semaphores(&[(b, 25)], false, 0),
            vk::Result::TIMEOUT,
            "a host wait for 25 completed at 3"
        );
        let fence = d2.fence(false);
        assert_eq!(d2.submit_d3d12(&[], &[(b, 26)], fence), vk::Result::SUCCESS);
        d.wait_fence(waited);
        d2.wait_fence(fence);
        d.idle();
        d2.idle();
    }

    /// The ICD offers D3D12_FENCE for binary semaphores too: the payload is a D3D12 fence (a
    /// counter), signals and waits with `VkD3D12FenceSubmitInfoKHR` values act on it; a signal
    /// without values adds 1 and a wait without values completes when it is non-zero. A target
    /// whose capability query offers no D3D12_FENCE export and import for binary semaphores (the
    /// layer offers D3D12_FENCE for timelines only) reports it as not supported.
    fn binary_semaphore(route: Route) {
        let d = Win32Device::new(route);
        let d2 = Win32Device::new(route);
        let props =
            tether_conformance::external::semaphore_properties(&d.inst, D3D12_SEMAPHORE, vk::SemaphoreType::BINARY);
        let both = vk::ExternalSemaphoreFeatureFlags::EXPORTABLE | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE;
        if !props.external_semaphore_features.contains(both) {
            harness::not_supported(format!(
                "D3D12_FENCE on binary semaphores: vkGetPhysicalDeviceExternalSemaphoreProperties gives them the \
                 features [{:?}], not export and import (the layer offers D3D12_FENCE for timelines only)",
                props.external_semaphore_features
            ));
        }
        let a = d.exportable_semaphore(D3D12_SEMAPHORE);
        let handle = d.export_semaphore(a, D3D12);
        let b = d2.binary_semaphore();
        d2.import_semaphore(b, D3D12, Permanence::Permanent, &handle);
        handle.close();
        let waited = d2.fence(false);
        assert_eq!(d2.submit_d3d12(&[(b, 2)], &[], waited), vk::Result::SUCCESS);
        d2.assert_pending(waited);
        assert_eq!(d.submit_d3d12(&[], &[(a, 1)], vk::Fence::null()), vk::Result::SUCCESS);
        d.idle();
        d2.assert_pending(waited);
        assert_eq!(d.submit_d3d12(&[], &[(a, 2)], vk::Fence::null()), vk::Result::SUCCESS);
        d2.wait_fence(waited);
        // A plain binary signal and wait on a D3D12 payload.
        d.submit_signal_semaphore(a);
        assert_binary_wait_completes(&d2, b);
        d.idle();
        d2.idle();
    }

    /// `VkD3D12FenceSubmitInfoKHR` values are ignored for semaphores whose payload is not a D3D12
    /// fence: a binary semaphore signaled with one is simply signaled.
    fn values_ignored_for_other_payloads(route: Route) {
        let d = Win32Device::new(route);
        let semaphore = d.binary_semaphore();
        assert_eq!(
            d.submit_d3d12(&[], &[(semaphore, 99)], vk::Fence::null()),
            vk::Result::SUCCESS
        );
        let fence = d.fence(false);
        assert_eq!(d.submit_d3d12(&[(semaphore, 1234)], &[], fence), vk::Result::SUCCESS);
        d.wait_fence(fence);
    }

    /// A D3D12_FENCE import of an NT handle of a payload that is no D3D12 fence fails, and
    /// leaves the target alone. On a target that cannot see what an NT handle carries
    /// ([`Limit::NtHandlePayload`]) the driver decides: a refusal must look like the ICD's, an
    /// acceptance makes the case not supported.
    fn import_of_other_payload(route: Route) {
        let d = error_device(route);
        let timeline = d.exportable_timeline(NT_SEMAPHORE, 0, None);
        let handle = d.export_semaphore(timeline, NT);
        let target = d.timeline_semaphore(0);
        let result = d.import_semaphore_raw(target, D3D12_SEMAPHORE, PERMANENT, handle.raw(), std::ptr::null());
        report_payload_cases(&[payload_refusal(
            &d,
            "a D3D12_FENCE import of a Vulkan timeline's handle",
            result,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
            INVALID_HANDLE_MESSAGE,
        )]);
        // The failed import left the target alone.
        assert_eq!(d.signal(target, 1), vk::Result::SUCCESS);
        assert_eq!(d.counter(target), 1);
        assert_eq!(d.counter(timeline), 0);
    }

    /// A D3D12 export of a semaphore not created exportable as D3D12_FENCE:
    /// `VK_ERROR_VALIDATION_FAILED_EXT` (VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01126).
    fn export_of_type_not_created(route: Route) {
        let d = error_device(route);
        let timeline = d.exportable_timeline(NT_SEMAPHORE, 0, None);
        let result = d
            .get_semaphore_win32(timeline, D3D12_SEMAPHORE)
            .err()
            .unwrap_or(vk::Result::SUCCESS);
        assert_error(
            &d,
            "a D3D12_FENCE export of a timeline created exportable as OPAQUE_WIN32 only",
            result,
            vk::Result::ERROR_VALIDATION_FAILED_EXT,
            "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01126",
        );
        assert_eq!(d.counter(timeline), 0);
    }
}

// --- inheritance ------------------------------------------------------------------------------

mod inherit {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [close_on_exec_flags, child_imports_inherited_handle])
    }

    /// `bInheritHandle = TRUE` gives an fd without close-on-exec; FALSE or no
    /// `SECURITY_ATTRIBUTES` (or no `VkExport*Win32HandleInfoKHR` at all) gives close-on-exec.
    fn close_on_exec_flags(route: Route) {
        let d = Win32Device::new(route);
        for (inherit, expect_cloexec) in [(Some(true), false), (Some(false), true), (None, true)] {
            let attrs = ExportAttributes {
                inherit,
                ..ExportAttributes::default()
            };
            let fence = d.exportable_fence_with(NT_FENCE, &attrs);
            let handle = d.export_fence(fence, NT);
            assert_eq!(
                is_cloexec(handle.fd().expect("an NT handle")),
                expect_cloexec,
                "fence exported with SECURITY_ATTRIBUTES {inherit:?}"
            );
            let semaphore = d.exportable_semaphore_with(NT_SEMAPHORE, &attrs);
            let handle = d.export_semaphore(semaphore, NT);
            assert_eq!(
                is_cloexec(handle.fd().expect("an NT handle")),
                expect_cloexec,
                "semaphore exported with SECURITY_ATTRIBUTES {inherit:?}"
            );
            let d3d12 = d.exportable_timeline(D3D12_SEMAPHORE, 0, Some(&attrs));
            let handle = d.export_semaphore(d3d12, D3D12);
            assert_eq!(
                is_cloexec(handle.fd().expect("an NT handle")),
                expect_cloexec,
                "D3D12 fence exported with SECURITY_ATTRIBUTES {inherit:?}"
            );
        }
        let plain = d.exportable_fence(NT_FENCE);
        assert!(is_cloexec(d.export_fence(plain, NT).fd().expect("an NT handle")));
    }

    /// A child process gets inheritable handles to a timeline semaphore and a fence by number
    /// in its arguments, imports them, closes them and signals; a non-inheritable handle's
    /// number does not reach it.
    fn child_imports_inherited_handle(route: Route) {
        let d = Win32Device::new(route);
        let inheritable = ExportAttributes {
            inherit: Some(true),
            ..ExportAttributes::default()
        };
        let timeline = d.exportable_timeline(NT_SEMAPHORE, 0, Some(&inheritable));
        let timeline_handle = d.export_semaphore(timeline, NT);
        let fence = d.exportable_fence_with(NT_FENCE, &inheritable);
        let fence_handle = d.export_fence(fence, NT);
        let private = d.exportable_fence(NT_FENCE);
        let private_handle = d.export_fence(private, NT);
        let (dev, ino) = file_identity(private_handle.fd().expect("an NT handle"));
        assert_eq!(d.signal(timeline, 1), vk::Result::SUCCESS);
        let output = run_child(
            harness::child_command("import-inherited")
                .arg(route.name())
                .arg(timeline_handle.raw().to_string())
                .arg(fence_handle.raw().to_string())
                .arg(private_handle.raw().to_string())
                .arg(dev.to_string())
                .arg(ino.to_string()),
            CHILD_LIMIT,
        );
        output.assert_success("a child importing inherited handles");
        assert_reaches(&d, timeline, 2);
        d.wait_fence(fence);
    }
}

// --- dwAccess ---------------------------------------------------------------------------------

mod access {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [rights_and_handle_modes, wait_only_fence, wait_only_semaphores])
    }

    fn access(access: u32) -> ExportAttributes {
        ExportAttributes {
            access,
            ..ExportAttributes::default()
        }
    }

    /// On a target that refuses wait-only NT handles ([`Limit::ReadOnlyNtHandle`]): the export
    /// gave `VK_ERROR_TOO_MANY_OBJECTS` (an export's allowed codes) with a
    /// `tether-layer-read-only-access` message.
    fn assert_refused(d: &Win32Device, what: &str, result: Result<vk::HANDLE, vk::Result>) {
        let messages = d.log().take();
        assert_eq!(
            result.err(),
            Some(vk::Result::ERROR_TOO_MANY_OBJECTS),
            "{what}: a wait-only NT export is refused: {messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.id == "tether-layer-read-only-access"),
            "{what}: refused without a tether-layer-read-only-access message: {messages:?}"
        );
    }

    /// Which `dwAccess` gives a full handle and which a wait-only one (an fd opened read-only),
    /// as `tether_handles::export::SIGNAL_RIGHTS` says: 0 (default), GENERIC_ALL, GENERIC_WRITE,
    /// DXGI_SHARED_RESOURCE_WRITE and the MODIFY_STATE bit can signal; SYNCHRONIZE,
    /// GENERIC_READ and DXGI_SHARED_RESOURCE_READ alone cannot.
    ///
    /// A target that refuses wait-only NT handles ([`Limit::ReadOnlyNtHandle`]) must give full
    /// handles for the first set and refuse the second; then the case is not supported.
    fn rights_and_handle_modes(route: Route) {
        let d = Win32Device::new(route);
        let refused = limits::limit(Limit::ReadOnlyNtHandle);
        for (rights, read_only) in [
            (0, false),
            (win32::GENERIC_ALL, false),
            (0x4000_0000, false),
            (
                win32::DXGI_SHARED_RESOURCE_READ | win32::DXGI_SHARED_RESOURCE_WRITE,
                false,
            ),
            (win32::SYNCHRONIZE | 0x0000_0002, false),
            (win32::SYNCHRONIZE, true),
            (win32::DXGI_SHARED_RESOURCE_READ, true),
            (0x8000_0000 | win32::SYNCHRONIZE, true),
        ] {
            let fence = d.exportable_fence_with(NT_FENCE, &access(rights));
            let timeline = d.exportable_timeline(NT_SEMAPHORE, 0, Some(&access(rights)));
            if read_only && refused.is_some() {
                let what = format!("dwAccess {rights:#x}");
                assert_refused(&d, &format!("fence, {what}"), d.get_fence_win32(fence, NT_FENCE));
                assert_refused(
                    &d,
                    &format!("timeline, {what}"),
                    d.get_semaphore_win32(timeline, NT_SEMAPHORE),
                );
                continue;
            }
            let handle = d.export_fence(fence, NT);
            assert_eq!(
                is_read_only(handle.fd().expect("an NT handle")),
                read_only,
                "fence exported with dwAccess {rights:#x}"
            );
            let handle = d.export_semaphore(timeline, NT);
            assert_eq!(
                is_read_only(handle.fd().expect("an NT handle")),
                read_only,
                "timeline exported with dwAccess {rights:#x}"
            );
        }
        if let Some(reason) = refused {
            harness::not_supported(reason);
        }
    }

    /// A fence exported with `SYNCHRONIZE` only: an importer sees the exporter's signal and can
    /// be waited on; its own signal (a queue submit with it) and its reset have no effect on the
    /// shared payload. Observed: the submit succeeds and the imported fence simply never
    /// signals; `vkResetFences` succeeds and leaves the payload signaled.
    ///
    /// A target that refuses wait-only NT handles ([`Limit::ReadOnlyNtHandle`]) must refuse the
    /// export; then the case is not supported.
    fn wait_only_fence(route: Route) {
        let d = Win32Device::new(route);
        let d2 = Win32Device::new(route);
        let exporter = d.exportable_fence_with(NT_FENCE, &access(win32::SYNCHRONIZE));
        if let Some(reason) = limits::limit(Limit::ReadOnlyNtHandle) {
            assert_refused(&d, "fence, SYNCHRONIZE", d.get_fence_win32(exporter, NT_FENCE));
            harness::not_supported(reason);
        }
        let handle = d.export_fence(exporter, NT);
        assert!(is_read_only(handle.fd().expect("an NT handle")));
        let importer = d2.create_and_import_fence(NT, Permanence::Permanent, &handle);
        handle.close();
        d2.assert_pending(importer);
        d.submit_signal_fence(exporter);
        d2.wait_fence(importer);
        d2.reset_fences(&[importer]);
        assert_eq!(
            d2.fence_status(importer),
            vk::Result::SUCCESS,
            "a reset through a wait-only handle reset the payload"
        );
        d.reset_fences(&[exporter]);
        assert_eq!(d2.fence_status(importer), vk::Result::NOT_READY);
        d2.submit_signal_fence(importer);
        d2.idle();
        assert_eq!(
            d.fence_status(exporter),
            vk::Result::NOT_READY,
            "a signal through a wait-only handle reached the exporter"
        );
        assert_eq!(d2.fence_status(importer), vk::Result::NOT_READY);
        // The exporter still signals both.
        d.submit_signal_fence(exporter);
        d2.wait_fence(importer);
        d.idle();
    }

    /// Semaphores exported with `SYNCHRONIZE` only. Binary: a wait through the import completes
    /// once the exporter is signaled but does not take the signal (observed: the exporter's own
    /// wait still completes afterwards); a signal through the import has no effect. Timeline:
    /// the import follows the exporter's value; a host signal through it returns `VK_SUCCESS` and
    /// changes nothing.
    ///
    /// A target that refuses wait-only NT handles ([`Limit::ReadOnlyNtHandle`]) must refuse both
    /// exports; then the case is not supported.
    fn wait_only_semaphores(route: Route) {
        let d = Win32Device::new(route);
        let d2 = Win32Device::new(route);
        let binary = d.exportable_semaphore_with(NT_SEMAPHORE, &access(win32::SYNCHRONIZE));
        if let Some(reason) = limits::limit(Limit::ReadOnlyNtHandle) {
            assert_refused(&d, "binary, SYNCHRONIZE", d.get_semaphore_win32(binary, NT_SEMAPHORE));
            let timeline = d.exportable_timeline(NT_SEMAPHORE, 2, Some(&access(win32::SYNCHRONIZE)));
            assert_refused(
                &d,
                "timeline, SYNCHRONIZE",
                d.get_semaphore_win32(timeline, NT_SEMAPHORE),
            );
            harness::not_supported(reason);
        }
        let handle = d.export_semaphore(binary, NT);
        let imported = d2.create_and_import_semaphore(NT, Permanence::Permanent, &handle);
        handle.close();
        d.submit_signal_semaphore(binary);
        assert_binary_wait_completes(&d2, imported);
        // The wait through the wait-only handle left the signal for the exporter.
        assert_binary_wait_completes(&d, binary);
        // A signal through the import does nothing: a wait through the exporter stays pending
        // until the exporter itself is signaled (from another queue, as the first one is
        // blocked in the wait).
        d2.submit_signal_semaphore(imported);
        d2.idle();
        let waited = d.fence(false);
        assert_eq!(
            d.submit(0, &[Batch::new().wait(binary, 0)], waited),
            vk::Result::SUCCESS
        );
        d.assert_pending(waited);
        assert_eq!(
            d.submit(1, &[Batch::new().signal(binary, 0)], vk::Fence::null()),
            vk::Result::SUCCESS
        );
        d.wait_fence(waited);
        // A timeline.
        let timeline = d.exportable_timeline(NT_SEMAPHORE, 2, Some(&access(win32::SYNCHRONIZE)));
        let handle = d.export_semaphore(timeline, NT);
        let imported = d2.timeline_semaphore(0);
        d2.import_semaphore(imported, NT, Permanence::Permanent, &handle);
        assert_eq!(d2.counter(imported), 2);
        assert_eq!(d.signal(timeline, 6), vk::Result::SUCCESS);
        assert_reaches(&d2, imported, 6);
        assert_eq!(
            d2.signal(imported, 9),
            vk::Result::SUCCESS,
            "a host signal through a wait-only timeline"
        );
        assert_eq!(
            (d.counter(timeline), d2.counter(imported)),
            (6, 6),
            "a host signal through a wait-only handle moved the payload"
        );
        d.idle();
        d2.idle();
    }
}

// --- closing the handle -----------------------------------------------------------------------

mod close {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [right_after_import])
    }

    /// As the CTS's cross-instance cases do: the NT handle (and every copy of it) is closed
    /// right after the import, before the imported object is used, here across two instances;
    /// the import took its own reference, and the handle's fd is really closed.
    fn right_after_import(route: Route) {
        let d = Win32Device::new(route);
        let d2 = Win32Device::new(route);
        // A fence: a copy imported permanently, the handle itself temporarily, then both closed
        // (the handle moved to a high number first, to check its fd really is closed).
        let exporter = d.exportable_fence(NT_FENCE);
        let handle = d.export_fence(exporter, NT);
        let copy = handle.copy();
        let importer = d2.create_and_import_fence(NT, Permanence::Permanent, &copy);
        let temporary = d2.create_and_import_fence(NT, Permanence::Temporary, &handle);
        copy.close();
        let NativeHandle::Nt(fd) = handle else { unreachable!() };
        let moved = renumber(fd, route_private_fd(route, 4000));
        let moved_raw = moved.as_raw_fd();
        let identity = file_identity(moved.as_fd());
        drop(moved);
        // Closed, or reused meanwhile by another thread for another file.
        let reused = || {
            // SAFETY: only borrowed for fstat, while the number is open.
            is_open(moved_raw) && file_identity(unsafe { BorrowedFd::borrow_raw(moved_raw) }) == identity
        };
        assert!(!reused(), "CloseHandle did not close fd {moved_raw}");
        d.submit_signal_fence(exporter);
        d2.wait_fence(importer);
        d2.wait_fence(temporary);
        d2.reset_fences(&[importer]);
        assert_eq!(d.fence_status(exporter), vk::Result::NOT_READY);
        d2.submit_signal_fence(importer);
        d.wait_fence(exporter);
        // A binary semaphore.
        let exporter = d.exportable_semaphore(NT_SEMAPHORE);
        let handle = d.export_semaphore(exporter, NT);
        let importer = d2.create_and_import_semaphore(NT, Permanence::Permanent, &handle);
        handle.close();
        d.submit_signal_semaphore(exporter);
        assert_binary_wait_completes(&d2, importer);
        // A timeline semaphore.
        let exporter = d.exportable_timeline(NT_SEMAPHORE, 0, None);
        let handle = d.export_semaphore(exporter, NT);
        let importer = d2.timeline_semaphore(0);
        d2.import_semaphore(importer, NT, Permanence::Permanent, &handle);
        handle.close();
        assert_eq!(d2.signal(importer, 3), vk::Result::SUCCESS);
        assert_reaches(&d, exporter, 3);
        d.idle();
        d2.idle();
    }
}

// --- errors -----------------------------------------------------------------------------------

mod errors {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            handles_that_are_no_payload,
            closed_handle,
            wrong_object_kind,
            binary_and_timeline_mismatch,
            handle_and_name_both_set,
            name_with_kmt,
            temporary_import_into_timeline,
            import_into_pending_fence,
            import_into_pending_semaphore,
            second_nt_export,
        ])
    }

    /// Objects that share a payload with an exporter, to check that a failed import leaves
    /// them exactly as they were.
    struct Targets {
        fence_exporter: vk::Fence,
        fence: vk::Fence,
        binary_exporter: vk::Semaphore,
        binary: vk::Semaphore,
        timeline_exporter: vk::Semaphore,
        timeline: vk::Semaphore,
        /// The capability query offers D3D12_FENCE imports into binary semaphores (the ICD
        /// does; the layer offers D3D12_FENCE for timelines only).
        d3d12_binary: bool,
    }

    impl Targets {
        fn new(d: &Win32Device) -> Targets {
            let (fence_exporter, fence) = shared_fence(d, d);
            let (binary_exporter, binary) = shared_binary(d, d);
            let (timeline_exporter, timeline) = shared_timeline(d, d, 0);
            let props =
                tether_conformance::external::semaphore_properties(&d.inst, D3D12_SEMAPHORE, vk::SemaphoreType::BINARY);
            Targets {
                fence_exporter,
                fence,
                binary_exporter,
                binary,
                timeline_exporter,
                timeline,
                d3d12_binary: props
                    .external_semaphore_features
                    .contains(vk::ExternalSemaphoreFeatureFlags::IMPORTABLE),
            }
        }

        /// Imports `handle` as `handle_type` into each target (permanently and temporarily where
        /// allowed) and asserts every import fails with `expected` and a message.
        fn reject(&self, d: &Win32Device, what: &str, handle_type: Win32HandleType, handle: vk::HANDLE) {
            let invalid = vk::Result::ERROR_INVALID_EXTERNAL_HANDLE;
            if handle_type != D3D12 {
                for flags in [vk::FenceImportFlags::empty(), vk::FenceImportFlags::TEMPORARY] {
                    let result =
                        d.import_fence_raw(self.fence, handle_type.fence_bit(), flags, handle, std::ptr::null());
                    assert_error(
                        d,
                        &format!("{what} into a fence ({flags:?})"),
                        result,
                        invalid,
                        INVALID_HANDLE_MESSAGE,
                    );
                }
            }
            for flags in [PERMANENT, vk::SemaphoreImportFlags::TEMPORARY] {
                let result = d.import_semaphore_raw(
                    self.binary,
                    handle_type.semaphore_bit(),
                    flags,
                    handle,
                    std::ptr::null(),
                );
                let what = format!("{what} into a binary semaphore ({flags:?})");
                if handle_type == D3D12 && !self.d3d12_binary {
                    // A type the device cannot import into a binary semaphore: invalid usage
                    // (VUID-...-handleType-01140) whatever the handle, unless the handle is
                    // refused first.
                    let messages = d.log().take();
                    let said = |id: &str| messages.iter().any(|m| m.id.contains(id));
                    assert!(
                        (result == vk::Result::ERROR_VALIDATION_FAILED_EXT
                            && said("VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-01140"))
                            || (result == invalid && said(INVALID_HANDLE_MESSAGE)),
                        "{what}, D3D12_FENCE not importable into binary semaphores here: {result}, {messages:?}"
                    );
                } else {
                    assert_error(d, &what, result, invalid, INVALID_HANDLE_MESSAGE);
                }
            }
            let result = d.import_semaphore_raw(
                self.timeline,
                handle_type.semaphore_bit(),
                PERMANENT,
                handle,
                std::ptr::null(),
            );
            assert_error(
                d,
                &format!("{what} into a timeline semaphore"),
                result,
                invalid,
                INVALID_HANDLE_MESSAGE,
            );
        }

        /// Every target still shares its exporter's payload.
        fn check_unchanged(&self, d: &Win32Device) {
            d.submit_signal_fence(self.fence_exporter);
            d.wait_fence(self.fence);
            d.reset_fences(&[self.fence]);
            assert_eq!(d.fence_status(self.fence_exporter), vk::Result::NOT_READY);
            d.submit_signal_semaphore(self.binary_exporter);
            assert_binary_wait_completes(d, self.binary);
            let value = d.counter(self.timeline) + 1;
            assert_eq!(d.signal(self.timeline_exporter, value), vk::Result::SUCCESS);
            assert_eq!(d.counter(self.timeline), value);
        }
    }

    /// Handle values that are no payload, for each NT type: an fd number that is not open,
    /// negative values, NULL (with no name), `/dev/null`, a pipe, a memfd that is no payload
    /// (empty, a zeroed page, a page of garbage, sealed or not), a socket. Each import fails with
    /// `VK_ERROR_INVALID_EXTERNAL_HANDLE` and a message, and changes nothing.
    fn handles_that_are_no_payload(route: Route) {
        let d = error_device(route);
        let targets = Targets::new(&d);
        let dev_null = std::fs::File::open("/dev/null").expect("/dev/null");
        let (pipe_read, pipe_write) = rustix::pipe::pipe().expect("pipe");
        let (socket, _peer) = tether_conformance::external::socket_pair();
        let memfd = |size: u64, fill: u8, seal: bool| -> OwnedFd {
            let fd = rustix::fs::memfd_create(
                "foreign",
                rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
            )
            .expect("memfd_create");
            rustix::fs::ftruncate(&fd, size).expect("ftruncate");
            if size > 0 && fill != 0 {
                rustix::io::write(&fd, &vec![fill; size as usize]).expect("write");
            }
            if seal {
                rustix::fs::fcntl_add_seals(
                    &fd,
                    rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW | rustix::fs::SealFlags::SEAL,
                )
                .expect("F_ADD_SEALS");
            }
            fd
        };
        let memfds = [
            ("an empty memfd", memfd(0, 0, false)),
            ("a zeroed 4 KiB memfd", memfd(4096, 0, false)),
            ("a sealed zeroed 4 KiB memfd", memfd(4096, 0, true)),
            ("a sealed 4 KiB memfd of garbage", memfd(4096, 0xa5, true)),
            ("an 8 KiB memfd", memfd(8192, 0, true)),
        ];
        let mut handles: Vec<(String, vk::HANDLE)> = vec![
            ("fd 987654 (not open)".into(), 987_654),
            ("-1 (INVALID_HANDLE_VALUE)".into(), -1),
            ("-5".into(), -5),
            ("NULL with no name".into(), 0),
            ("a value above 32 bits".into(), 1 << 40),
            ("/dev/null".into(), dev_null.as_raw_fd() as vk::HANDLE),
            ("a pipe's read end".into(), pipe_read.as_raw_fd() as vk::HANDLE),
            ("a pipe's write end".into(), pipe_write.as_raw_fd() as vk::HANDLE),
            ("a socket".into(), socket.as_raw_fd() as vk::HANDLE),
        ];
        handles.extend(
            memfds
                .iter()
                .map(|(what, fd)| (what.to_string(), fd.as_raw_fd() as vk::HANDLE)),
        );
        for (what, handle) in &handles {
            for handle_type in [NT, D3D12] {
                targets.reject(&d, &format!("{} {what}", handle_type.name()), handle_type, *handle);
            }
        }
        targets.check_unchanged(&d);
        // Nothing was closed: the import borrows what it is given.
        assert!(is_open(dev_null.as_raw_fd()) && is_open(pipe_read.as_raw_fd()));
        for (what, fd) in &memfds {
            assert!(is_open(fd.as_raw_fd()), "the failed import closed {what}");
        }
    }

    /// A handle that was exported and then closed (moved to a high number first so nothing
    /// reuses it): `VK_ERROR_INVALID_EXTERNAL_HANDLE`.
    fn closed_handle(route: Route) {
        let d = error_device(route);
        let targets = Targets::new(&d);
        let fence = d.exportable_fence(NT_FENCE);
        let NativeHandle::Nt(fd) = d.export_fence(fence, NT) else {
            unreachable!()
        };
        let fd = renumber(fd, route_private_fd(route, 5000));
        let raw = fd.as_raw_fd() as vk::HANDLE;
        drop(fd);
        targets.reject(&d, "a closed handle", NT, raw);
        targets.check_unchanged(&d);
    }

    /// A fence's handle into a semaphore and a semaphore's into a fence, by NT handle, KMT
    /// value and name: `VK_ERROR_INVALID_EXTERNAL_HANDLE`. An NT handle goes to fresh targets
    /// where the target cannot see its payload ([`Limit::NtHandlePayload`]: see
    /// [`payload_refusal`]), so an import the driver accepts changes none of the others.
    fn wrong_object_kind(route: Route) {
        let d = error_device(route);
        let invalid = vk::Result::ERROR_INVALID_EXTERNAL_HANDLE;
        let limited = limits::limit(Limit::NtHandlePayload).is_some();
        let mut cases = Vec::new();
        let fence_name = unique_name("kind-fence");
        let fence = d.exportable_fence_with(NT_FENCE | KMT_FENCE, &ExportAttributes::named(&fence_name));
        let fence_nt = d.export_fence(fence, NT);
        let fence_kmt = d.export_fence(fence, KMT);
        let semaphore_name = unique_name("kind-semaphore");
        let semaphore =
            d.exportable_semaphore_with(NT_SEMAPHORE | KMT_SEMAPHORE, &ExportAttributes::named(&semaphore_name));
        let semaphore_nt = d.export_semaphore(semaphore, NT);
        let semaphore_kmt = d.export_semaphore(semaphore, KMT);
        let target_semaphore = d.binary_semaphore();
        let target_timeline = d.timeline_semaphore(0);
        let target_fence = d.fence(false);
        for (what, handle_type, handle) in [("NT", NT, &fence_nt), ("KMT", KMT, &fence_kmt)] {
            let fresh = limited && handle_type.is_nt();
            for timeline in [false, true] {
                let target = match (fresh, timeline) {
                    (true, false) => d.binary_semaphore(),
                    (true, true) => d.timeline_semaphore(0),
                    (false, false) => target_semaphore,
                    (false, true) => target_timeline,
                };
                let result = d.import_semaphore_raw(
                    target,
                    handle_type.semaphore_bit(),
                    PERMANENT,
                    handle.raw(),
                    std::ptr::null(),
                );
                let what = format!(
                    "a fence's {what} handle into a {} semaphore",
                    if timeline { "timeline" } else { "binary" }
                );
                if handle_type.is_nt() {
                    cases.push(payload_refusal(&d, &what, result, invalid, INVALID_HANDLE_MESSAGE));
                } else {
                    assert_error(&d, &what, result, invalid, INVALID_HANDLE_MESSAGE);
                }
            }
        }
        let result = d.import_semaphore_by_name(target_semaphore, NT_SEMAPHORE, PERMANENT, &units(&fence_name));
        assert_error(
            &d,
            "a fence's name into a semaphore",
            result,
            invalid,
            INVALID_HANDLE_MESSAGE,
        );
        // A semaphore's and a D3D12 fence's handles into a fence.
        let d3d12 = d.exportable_timeline(D3D12_SEMAPHORE, 0, None);
        let d3d12_handle = d.export_semaphore(d3d12, D3D12);
        for (what, handle_type, handle) in [
            ("a semaphore's NT handle", NT, &semaphore_nt),
            ("a semaphore's KMT handle", KMT, &semaphore_kmt),
            ("a D3D12 fence's handle", NT, &d3d12_handle),
        ] {
            let target = if limited && handle_type.is_nt() {
                d.fence(false)
            } else {
                target_fence
            };
            let result = d.import_fence_raw(
                target,
                handle_type.fence_bit(),
                vk::FenceImportFlags::empty(),
                handle.raw(),
                std::ptr::null(),
            );
            let what = format!("{what} into a fence");
            if handle_type.is_nt() {
                cases.push(payload_refusal(&d, &what, result, invalid, INVALID_HANDLE_MESSAGE));
            } else {
                assert_error(&d, &what, result, invalid, INVALID_HANDLE_MESSAGE);
            }
        }
        let result = d.import_fence_by_name(target_fence, vk::FenceImportFlags::empty(), &units(&semaphore_name));
        assert_error(
            &d,
            "a semaphore's name into a fence",
            result,
            invalid,
            INVALID_HANDLE_MESSAGE,
        );
        d.submit_signal_fence(target_fence);
        d.wait_fence(target_fence);
        report_payload_cases(&cases);
    }

    /// A binary semaphore's payload into a timeline semaphore and the other way round, by NT
    /// handle and KMT value: `VK_ERROR_VALIDATION_FAILED_EXT` per
    /// VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-03262. An NT handle goes to fresh
    /// targets where the target cannot see its payload ([`Limit::NtHandlePayload`]: see
    /// [`payload_refusal`]).
    fn binary_and_timeline_mismatch(route: Route) {
        let d = error_device(route);
        let limited = limits::limit(Limit::NtHandlePayload).is_some();
        let mut cases = Vec::new();
        let binary = d.exportable_semaphore(NT_SEMAPHORE | KMT_SEMAPHORE);
        let timeline = d.exportable_timeline(NT_SEMAPHORE | KMT_SEMAPHORE, 0, None);
        let target_binary = d.binary_semaphore();
        let target_timeline = d.timeline_semaphore(0);
        for handle_type in [NT, KMT] {
            let fresh = limited && handle_type.is_nt();
            let binary_handle = d.export_semaphore(binary, handle_type);
            let timeline_handle = d.export_semaphore(timeline, handle_type);
            for (what, target, handle) in [
                (
                    "a binary payload into a timeline",
                    if fresh {
                        d.timeline_semaphore(0)
                    } else {
                        target_timeline
                    },
                    &binary_handle,
                ),
                (
                    "a timeline payload into a binary semaphore",
                    if fresh { d.binary_semaphore() } else { target_binary },
                    &timeline_handle,
                ),
            ] {
                let result = d.import_semaphore_raw(
                    target,
                    handle_type.semaphore_bit(),
                    PERMANENT,
                    handle.raw(),
                    std::ptr::null(),
                );
                let what = format!("{what} ({})", handle_type.name());
                let expected = vk::Result::ERROR_VALIDATION_FAILED_EXT;
                let vuid = "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-03262";
                if handle_type.is_nt() {
                    cases.push(payload_refusal(&d, &what, result, expected, vuid));
                } else {
                    assert_error(&d, &what, result, expected, vuid);
                }
            }
        }
        d.submit_signal_semaphore(target_binary);
        assert_binary_wait_completes(&d, target_binary);
        assert_eq!(d.signal(target_timeline, 1), vk::Result::SUCCESS);
        report_payload_cases(&cases);
    }

    /// A handle and a name at once: `VK_ERROR_VALIDATION_FAILED_EXT` (VUID-...-handle-01462 for
    /// fences, -handle-01469 for semaphores), even when both name the same object.
    fn handle_and_name_both_set(route: Route) {
        let d = error_device(route);
        let name = unique_name("both");
        let wide = win32::wide(&name);
        let fence = d.exportable_fence_with(NT_FENCE, &ExportAttributes::named(&name));
        let handle = d.export_fence(fence, NT);
        let target = d.fence(false);
        let result = d.import_fence_raw(
            target,
            NT_FENCE,
            vk::FenceImportFlags::empty(),
            handle.raw(),
            wide.as_ptr(),
        );
        assert_error(
            &d,
            "a fence import with a handle and a name",
            result,
            vk::Result::ERROR_VALIDATION_FAILED_EXT,
            "VUID-VkImportFenceWin32HandleInfoKHR-handle-01462",
        );
        let semaphore_name = unique_name("both-semaphore");
        let semaphore_wide = win32::wide(&semaphore_name);
        let semaphore = d.exportable_semaphore_with(NT_SEMAPHORE, &ExportAttributes::named(&semaphore_name));
        let semaphore_handle = d.export_semaphore(semaphore, NT);
        let target_semaphore = d.binary_semaphore();
        for handle_type in [NT_SEMAPHORE, D3D12_SEMAPHORE] {
            let result = d.import_semaphore_raw(
                target_semaphore,
                handle_type,
                PERMANENT,
                semaphore_handle.raw(),
                semaphore_wide.as_ptr(),
            );
            assert_error(
                &d,
                &format!("a semaphore import ({handle_type:?}) with a handle and a name"),
                result,
                vk::Result::ERROR_VALIDATION_FAILED_EXT,
                "VUID-VkImportSemaphoreWin32HandleInfoKHR-handle-01469",
            );
        }
        d.submit_signal_fence(target);
        d.wait_fence(target);
    }

    /// A name with the KMT type (KMT handles are never named): `VK_ERROR_VALIDATION_FAILED_EXT`
    /// (VUID-...-handleType-01459 for fences, -handleType-01466 for semaphores).
    fn name_with_kmt(route: Route) {
        let d = error_device(route);
        let name = unique_name("kmt-named");
        let fence = d.exportable_fence_with(NT_FENCE | KMT_FENCE, &ExportAttributes::named(&name));
        let _nt = d.export_fence(fence, NT);
        let target = d.fence(false);
        let wide = win32::wide(&name);
        let result = d.import_fence_raw(target, KMT_FENCE, vk::FenceImportFlags::empty(), 0, wide.as_ptr());
        assert_error(
            &d,
            "a fence import by name with the KMT type",
            result,
            vk::Result::ERROR_VALIDATION_FAILED_EXT,
            "VUID-VkImportFenceWin32HandleInfoKHR-handleType-01459",
        );
        let target_semaphore = d.binary_semaphore();
        let result = d.import_semaphore_raw(target_semaphore, KMT_SEMAPHORE, PERMANENT, 0, wide.as_ptr());
        assert_error(
            &d,
            "a semaphore import by name with the KMT type",
            result,
            vk::Result::ERROR_VALIDATION_FAILED_EXT,
            "VUID-VkImportSemaphoreWin32HandleInfoKHR-handleType-01466",
        );
        d.submit_signal_fence(target);
        d.wait_fence(target);
    }

    /// A temporary import into a timeline semaphore, or of a timeline payload into a binary
    /// one: `VK_ERROR_VALIDATION_FAILED_EXT` per VUID-...-flags-03322 (the first) or -03262.
    fn temporary_import_into_timeline(route: Route) {
        let d = error_device(route);
        let timeline = d.exportable_timeline(NT_SEMAPHORE | KMT_SEMAPHORE, 0, None);
        let target = d.timeline_semaphore(0);
        for handle_type in [NT, KMT] {
            let handle = d.export_semaphore(timeline, handle_type);
            let result = d.import_semaphore_raw(
                target,
                handle_type.semaphore_bit(),
                vk::SemaphoreImportFlags::TEMPORARY,
                handle.raw(),
                std::ptr::null(),
            );
            assert_error(
                &d,
                &format!("a temporary {} import into a timeline", handle_type.name()),
                result,
                vk::Result::ERROR_VALIDATION_FAILED_EXT,
                "VUID-VkImportSemaphoreWin32HandleInfoKHR-flags-03322",
            );
        }
        let d3d12 = d.exportable_timeline(D3D12_SEMAPHORE, 0, None);
        let handle = d.export_semaphore(d3d12, D3D12);
        let result = d.import_semaphore_raw(
            target,
            D3D12_SEMAPHORE,
            vk::SemaphoreImportFlags::TEMPORARY,
            handle.raw(),
            std::ptr::null(),
        );
        assert_error(
            &d,
            "a temporary D3D12_FENCE import into a timeline",
            result,
            vk::Result::ERROR_VALIDATION_FAILED_EXT,
            "VUID-VkImportSemaphoreWin32HandleInfoKHR-flags-03322",
        );
        assert_eq!(d.signal(target, 1), vk::Result::SUCCESS);
        assert_eq!(d.counter(timeline), 0, "a failed import shared the payload");
    }

    /// An import into a fence whose signal is still pending:
    /// VUID-vkImportFenceWin32HandleKHR-fence-04448, `VK_ERROR_VALIDATION_FAILED_EXT`; once the
    /// work completes the same import succeeds.
    fn import_into_pending_fence(route: Route) {
        let d = error_device(route);
        let exporter = d.exportable_fence(NT_FENCE | KMT_FENCE);
        let handle = d.export_fence(exporter, NT);
        let kmt = d.export_fence(exporter, KMT);
        let target = d.fence(false);
        let gate = d.gate();
        assert_eq!(d.submit(0, &[Batch::new().wait(gate, 1)], target), vk::Result::SUCCESS);
        let mut accepted = false;
        for (what, handle) in [("NT", &handle), ("KMT", &kmt)] {
            let handle_type = if what == "NT" { NT } else { KMT };
            let result = d.import_fence_raw(
                target,
                handle_type.fence_bit(),
                vk::FenceImportFlags::TEMPORARY,
                handle.raw(),
                std::ptr::null(),
            );
            accepted |= driver_accepted(
                &d,
                &format!("an {what} import into a pending fence"),
                result,
                vk::Result::ERROR_VALIDATION_FAILED_EXT,
                "VUID-vkImportFenceWin32HandleKHR-fence-04448",
            );
        }
        if let (true, Some(reason)) = (accepted, limits::limit(Limit::DriverValidation)) {
            // The target's payload is now the exporter's: no wait on it.
            d.open_gate(gate);
            d.idle();
            harness::not_supported(reason);
        }
        d.open_gate(gate);
        d.wait_fence(target);
        d.idle();
        d.import_fence(target, NT, Permanence::Permanent, &handle);
        assert_eq!(d.fence_status(target), vk::Result::NOT_READY);
        d.submit_signal_fence(exporter);
        d.wait_fence(target);
    }

    /// An import into a semaphore with a pending wait or signal: the spec has no VUID for the
    /// Win32 command (Khronos issue 3507); the ICD answers `VK_ERROR_VALIDATION_FAILED_EXT` with
    /// "VUID-vkImportSemaphoreWin32HandleKHR-semaphore-in-use".
    fn import_into_pending_semaphore(route: Route) {
        let d = error_device(route);
        let exporter = d.exportable_semaphore(NT_SEMAPHORE);
        let handle = d.export_semaphore(exporter, NT);
        let target = d.binary_semaphore();
        let gate = d.gate();
        assert_eq!(
            d.submit(0, &[Batch::new().wait(gate, 1).signal(target, 0)], vk::Fence::null()),
            vk::Result::SUCCESS
        );
        let result = d.import_semaphore_raw(target, NT_SEMAPHORE, PERMANENT, handle.raw(), std::ptr::null());
        let accepted = driver_accepted(
            &d,
            "an import into a semaphore with a pending signal",
            result,
            vk::Result::ERROR_VALIDATION_FAILED_EXT,
            "semaphore-in-use",
        );
        if let (true, Some(reason)) = (accepted, limits::limit(Limit::DriverValidation)) {
            d.open_gate(gate);
            d.idle();
            harness::not_supported(reason);
        }
        d.open_gate(gate);
        d.idle();
        assert_binary_wait_completes(&d, target);
        d.import_semaphore(target, NT, Permanence::Permanent, &handle);
        d.submit_signal_semaphore(exporter);
        assert_binary_wait_completes(&d, target);
    }

    /// A second NT export of one object and type: `VK_ERROR_VALIDATION_FAILED_EXT`
    /// (VUID-VkFenceGetWin32HandleInfoKHR-handleType-01449, -VkSemaphoreGetWin32HandleInfoKHR-
    /// handleType-01127), for OPAQUE_WIN32 and D3D12_FENCE; KMT exports repeat freely. After a
    /// permanent import the object counts as new, so it may export again.
    fn second_nt_export(route: Route) {
        let d = error_device(route);
        let fence = d.exportable_fence(NT_FENCE | KMT_FENCE);
        let first = d.export_fence(fence, NT);
        let result = d.get_fence_win32(fence, NT_FENCE).err().unwrap_or(vk::Result::SUCCESS);
        assert_error(
            &d,
            "a second NT export of a fence",
            result,
            vk::Result::ERROR_VALIDATION_FAILED_EXT,
            "VUID-VkFenceGetWin32HandleInfoKHR-handleType-01449",
        );
        let _kmt = d.export_fence(fence, KMT);
        let _kmt_again = d.export_fence(fence, KMT);
        // The first handle still works.
        let importer = d.create_and_import_fence(NT, Permanence::Permanent, &first);
        d.submit_signal_fence(fence);
        d.wait_fence(importer);
        for (ty, handle_type) in [(NT_SEMAPHORE, NT), (D3D12_SEMAPHORE, D3D12)] {
            let semaphore = d.exportable_timeline(ty, 0, None);
            let _first = d.export_semaphore(semaphore, handle_type);
            let result = d
                .get_semaphore_win32(semaphore, ty)
                .err()
                .unwrap_or(vk::Result::SUCCESS);
            assert_error(
                &d,
                &format!("a second {} export of a semaphore", handle_type.name()),
                result,
                vk::Result::ERROR_VALIDATION_FAILED_EXT,
                "VUID-VkSemaphoreGetWin32HandleInfoKHR-handleType-01127",
            );
        }
        // A permanent import makes the importer a new object: its own NT export is allowed.
        let other = d.exportable_fence(NT_FENCE);
        let other_handle = d.export_fence(other, NT);
        d.import_fence(fence, NT, Permanence::Permanent, &other_handle);
        let again = d.export_fence(fence, NT);
        let importer = d.create_and_import_fence(NT, Permanence::Permanent, &again);
        d.submit_signal_fence(other);
        d.wait_fence(importer);
    }
}

// --- entry points -----------------------------------------------------------------------------

mod entry_points {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [device_proc_addr])
    }

    fn resolved(d: &tether_conformance::TestDevice) -> Vec<bool> {
        win32::WIN32_COMMANDS
            .iter()
            .map(|name| d.proc_addr(name).is_some())
            .collect()
    }

    /// `vkGetDeviceProcAddr` returns NULL for the Win32 commands of an extension the device did
    /// not enable (as `dEQP-VK.api.version_check.entry_points` requires) and non-NULL once it
    /// is enabled, per extension.
    fn device_proc_addr(route: Route) {
        let base = Options::without_validation_layer();
        let none = tether_conformance::TestDevice::with_options(route, base.clone());
        assert_eq!(resolved(&none), [false; 4], "no Win32 extension enabled");
        drop(none);
        let mut fence_only = base.clone();
        fence_only
            .extra_device_extensions
            .push(ash::khr::external_fence_win32::NAME);
        let fence_only = tether_conformance::TestDevice::with_options(route, fence_only);
        assert_eq!(
            resolved(&fence_only),
            [true, true, false, false],
            "only the fence extension"
        );
        drop(fence_only);
        let mut semaphore_only = base.clone();
        semaphore_only
            .extra_device_extensions
            .push(ash::khr::external_semaphore_win32::NAME);
        let semaphore_only = tether_conformance::TestDevice::with_options(route, semaphore_only);
        assert_eq!(
            resolved(&semaphore_only),
            [false, false, true, true],
            "only the semaphore extension"
        );
        drop(semaphore_only);
        let both = Win32Device::with_options(route, base);
        assert_eq!(resolved(&both), [true; 4], "both extensions");
    }
}

// --- child processes --------------------------------------------------------------------------

mod process {
    use super::*;

    /// `import-named <route> <fence name> <timeline name>`: imports both by name, signals the
    /// fence, waits for the timeline to reach 1 and signals 2.
    pub fn role_import_named(args: &[String]) -> i32 {
        child_main(|| {
            let [route, fence_name, timeline_name] = args else {
                panic!("import-named <route> <fence name> <timeline name>, got {args:?}")
            };
            let d = Win32Device::new(route_from_name(route));
            let fence = d.fence(false);
            assert_eq!(
                d.import_fence_by_name(fence, vk::FenceImportFlags::empty(), &units(fence_name)),
                vk::Result::SUCCESS,
                "importing fence {fence_name:?} by name: {}",
                d.messages()
            );
            let timeline = d.timeline_semaphore(0);
            assert_eq!(
                d.import_semaphore_by_name(timeline, NT_SEMAPHORE, PERMANENT, &units(timeline_name)),
                vk::Result::SUCCESS,
                "importing timeline {timeline_name:?} by name: {}",
                d.messages()
            );
            signal_back(&d, fence, timeline);
        })
    }

    /// Waits for `timeline` ≥ 1, signals it to 2, signals `fence` through the queue.
    fn signal_back(d: &Win32Device, fence: vk::Fence, timeline: vk::Semaphore) {
        assert_reaches(d, timeline, 1);
        assert_eq!(d.signal(timeline, 2), vk::Result::SUCCESS);
        d.submit_signal_fence(fence);
        d.wait_fence(fence);
        d.idle();
    }

    /// `import-kmt <route> <fence KMT> <timeline KMT>` (hex): imports both values through this
    /// process's own broker connection and signals back.
    pub fn role_import_kmt(args: &[String]) -> i32 {
        child_main(|| {
            let [route, fence_kmt, timeline_kmt] = args else {
                panic!("import-kmt <route> <fence KMT> <timeline KMT>, got {args:?}")
            };
            let parse = |s: &str| {
                vk::HANDLE::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s:?}: {e}"))
            };
            let d = Win32Device::new(route_from_name(route));
            let fence = d.create_and_import_fence(KMT, Permanence::Permanent, &NativeHandle::Kmt(parse(fence_kmt)));
            let timeline = d.timeline_semaphore(0);
            d.import_semaphore(
                timeline,
                KMT,
                Permanence::Permanent,
                &NativeHandle::Kmt(parse(timeline_kmt)),
            );
            signal_back(&d, fence, timeline);
        })
    }

    /// `import-inherited <route> <timeline fd> <fence fd> <private fd> <private dev> <private
    /// ino>`: the first two are inherited NT handles (open, no close-on-exec): imports them,
    /// closes them, signals back. The private handle was close-on-exec: its number is closed
    /// here, or names another file.
    pub fn role_import_inherited(args: &[String]) -> i32 {
        child_main(|| {
            let [route, timeline_fd, fence_fd, private_fd, private_dev, private_ino] = args else {
                panic!("import-inherited <route> <timeline fd> <fence fd> <private fd> <dev> <ino>, got {args:?}")
            };
            let fd = |s: &str| -> RawFd { s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}")) };
            let private_fd = fd(private_fd);
            if is_open(private_fd) {
                // SAFETY: only borrowed for fstat while this thread owns the process's fds.
                let borrowed = unsafe { BorrowedFd::borrow_raw(private_fd) };
                assert_ne!(
                    file_identity(borrowed),
                    (
                        private_dev.parse::<u64>().expect("dev"),
                        private_ino.parse::<u64>().expect("ino")
                    ),
                    "a handle exported without bInheritHandle reached the child"
                );
            }
            let mut handles = Vec::new();
            for raw in [fd(timeline_fd), fd(fence_fd)] {
                assert!(is_open(raw), "the inherited handle {raw} is not open in the child");
                // SAFETY: the parent passed this inherited fd to us; nothing else here owns it.
                let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                assert!(
                    !is_cloexec(owned.as_fd()),
                    "fd {raw} was inherited, so it has no close-on-exec"
                );
                handles.push(NativeHandle::Nt(owned));
            }
            let d = Win32Device::new(route_from_name(route));
            let timeline = d.timeline_semaphore(0);
            d.import_semaphore(timeline, NT, Permanence::Permanent, &handles[0]);
            let fence = d.create_and_import_fence(NT, Permanence::Permanent, &handles[1]);
            for handle in handles {
                handle.close();
            }
            signal_back(&d, fence, timeline);
        })
    }
}

// --- the broker -------------------------------------------------------------------------------

mod broker {
    use super::*;
    use tether_conformance::win32::{broker_pid, kill_and_wait, private_runtime_dir, process_gone, socket_dir};

    pub fn tests() -> Vec<Test> {
        tests!(
            NO_ROUTE => [private_broker, detached_broker_keeps_no_inherited_fd, other_user_cannot_open],
            LOADER_AND_IN_PROCESS => [killed_while_shared],
        )
    }

    /// The trials use a broker of their own: `XDG_RUNTIME_DIR` is a private 0700 directory, the
    /// broker that serves it runs this build's `tether-broker`, and its stdio are `/dev/null`.
    fn private_broker(_route: Route) {
        let runtime = private_runtime_dir().expect("win32::main set up a private XDG_RUNTIME_DIR");
        assert_eq!(
            std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from),
            Some(runtime.clone())
        );
        let meta = std::fs::metadata(&runtime).expect("the private runtime directory");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o700
        );
        tether_handles::Broker::connect()
            .and_then(|mut b| b.ping())
            .expect("the broker starts in the private directory");
        let pid = broker_pid(&socket_dir(&runtime)).expect("a broker serves the private directory");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the broker's executable");
        // A binary rebuilt while the broker runs shows as "(deleted)".
        let exe = std::path::PathBuf::from(exe.to_string_lossy().trim_end_matches(" (deleted)"));
        let expected = std::env::var_os(tether_handles::client::BROKER_ENV).expect("TETHER_BROKER is set");
        assert_eq!(
            exe.canonicalize().ok(),
            std::path::Path::new(&expected).canonicalize().ok(),
            "the broker is not this build's"
        );
        // stdin and stdout are /dev/null; so is stderr unless TETHER_BROKER_LOG names a log file.
        let log = std::env::var_os("TETHER_BROKER_LOG").filter(|l| !l.is_empty());
        let streams = if log.is_some() { 0..2 } else { 0..3 };
        for stdio in streams {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{stdio}")).expect("the broker's stdio");
            assert_eq!(target, std::path::Path::new("/dev/null"), "the broker's fd {stdio}");
        }
    }

    /// `tether-broker --dir DIR`, started as the client starts it but with stdout and stderr
    /// on pipes (as a test harness's are) and one more inheritable pipe: once the launcher
    /// exited and the detached broker listens, every pipe reads EOF (the broker holds none of
    /// them) and the broker's fds are only /dev/null, its socket and its lock.
    fn detached_broker_keeps_no_inherited_fd(_route: Route) {
        let runtime = RuntimeDir::new("tether-broker-fds");
        let binary = std::env::var_os(tether_handles::client::BROKER_ENV).expect("TETHER_BROKER is set");
        let (extra_read, extra_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        let extra_raw = extra_write.as_raw_fd();
        let mut cmd = Command::new(&binary);
        cmd.arg("--dir")
            .arg(runtime.socket_dir())
            .env_remove("TETHER_BROKER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: runs in the forked child before exec and only clears close-on-exec on one fd
        // (fcntl is async-signal-safe), so only this child inherits the extra pipe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let fd = BorrowedFd::borrow_raw(extra_raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
        let mut launcher = cmd.spawn().expect("starting tether-broker");
        drop(extra_write);
        let readers: Vec<_> = [
            Box::new(launcher.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(launcher.stderr.take().expect("stderr")),
            Box::new(std::fs::File::from(extra_read)),
        ]
        .into_iter()
        .map(|mut pipe| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.read_to_end(&mut text);
                let _ = tx.send(String::from_utf8_lossy(&text).into_owned());
            });
            rx
        })
        .collect();
        let status = tether_conformance::external::wait_child(&mut launcher, CHILD_LIMIT);
        assert!(
            status.is_some_and(|s| s.success()),
            "tether-broker --dir exited with {status:?}"
        );
        let pid = broker_pid(&runtime.socket_dir()).expect("the detached broker answers");
        // An fd closed between the listing and its readlink (the connection of the ping above,
        // still being torn down) is left out.
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the broker's fds")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!("{} -> {}", e.file_name().to_string_lossy(), target.display()))
            })
            .collect();
        for (rx, what) in readers.into_iter().zip(["stdout", "stderr", "the extra pipe"]) {
            if rx.recv_timeout(Duration::from_secs(20)).is_err() {
                kill_and_wait(pid);
                panic!("{what} never reached EOF: the detached broker (pid {pid}) holds it; its fds: {fds:?}");
            }
        }
        let expected = |fd: &String| {
            fd.ends_with("-> /dev/null") || fd.contains("-> socket:") || fd.ends_with(tether_handles::client::LOCK_NAME)
        };
        let unexpected: Vec<&String> = fds.iter().filter(|fd| !expected(fd)).collect();
        kill_and_wait(pid);
        assert!(process_gone(pid));
        assert!(
            unexpected.is_empty(),
            "the detached broker holds fds other than /dev/null, sockets and its lock: {unexpected:?} (all: {fds:?})"
        );
    }

    /// `broker-killed <route>` in a private runtime directory of its own (its broker is killed).
    fn killed_while_shared(route: Route) {
        let runtime = RuntimeDir::new("tether-broker-killed");
        let output = run_child(
            harness::child_command("broker-killed")
                .arg(route.name())
                .env("XDG_RUNTIME_DIR", &runtime.path),
            CHILD_LIMIT,
        );
        output.assert_success("a child that kills its broker");
        eprintln!("{}", output.stdout.trim_end());
    }

    /// `broker-killed <route>`: names and KMT values shared, then the broker SIGKILLed. Already
    /// imported payloads keep working; new lookups of the old name and value fail cleanly with
    /// `VK_ERROR_INVALID_EXTERNAL_HANDLE` and a message (the client starts a new, empty broker);
    /// a new KMT export of the object registers a new value that works. Prints what it saw.
    pub fn role_broker_killed(args: &[String]) -> i32 {
        child_main(|| {
            let [route] = args else {
                panic!("broker-killed <route>, got {args:?}")
            };
            let dir = socket_dir(&private_runtime_dir().expect("XDG_RUNTIME_DIR"));
            let d = Win32Device::new(route_from_name(route));
            let name = unique_name("killed");
            let exporter =
                d.exportable_timeline(NT_SEMAPHORE | KMT_SEMAPHORE, 0, Some(&ExportAttributes::named(&name)));
            let nt = d.export_semaphore(exporter, NT);
            let kmt = d.export_semaphore(exporter, KMT);
            let by_name = d.timeline_semaphore(0);
            assert_eq!(
                d.import_semaphore_by_name(by_name, NT_SEMAPHORE, PERMANENT, &units(&name)),
                vk::Result::SUCCESS,
                "{}",
                d.messages()
            );
            let by_kmt = d.timeline_semaphore(0);
            d.import_semaphore(by_kmt, KMT, Permanence::Permanent, &kmt);
            let pid = broker_pid(&dir).expect("a broker serves the child's directory");
            assert!(kill_and_wait(pid), "the broker (pid {pid}) did not die");
            println!("killed broker pid {pid}");
            // Already imported payloads keep working, both ways.
            assert_eq!(d.signal(exporter, 1), vk::Result::SUCCESS);
            assert_eq!((d.counter(by_name), d.counter(by_kmt)), (1, 1));
            assert_eq!(d.signal(by_kmt, 2), vk::Result::SUCCESS);
            assert_eq!(d.counter(exporter), 2);
            // The NT handle needs no broker.
            let by_handle = d.timeline_semaphore(0);
            d.import_semaphore(by_handle, NT, Permanence::Permanent, &nt);
            assert_eq!(d.counter(by_handle), 2);
            // New lookups fail cleanly.
            d.log().take();
            let late = d.timeline_semaphore(0);
            let result = d.import_semaphore_by_name(late, NT_SEMAPHORE, PERMANENT, &units(&name));
            assert_error(
                &d,
                "a name lookup after the broker died",
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
            let result = d.import_semaphore_raw(late, KMT_SEMAPHORE, PERMANENT, kmt.raw(), std::ptr::null());
            assert_error(
                &d,
                "a KMT lookup after the broker died",
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
            let new_pid = broker_pid(&dir);
            println!("after the lookups: broker pid {new_pid:?} (old {pid})");
            assert!(new_pid.is_some_and(|p| p != pid), "no new broker was started");
            // Another object registers first with the new broker: it must not get the old value
            // (a stale value in some process would then name the wrong object).
            let other = d.exportable_timeline(KMT_SEMAPHORE, 100, None);
            let other_kmt = d.export_semaphore(other, KMT);
            assert_ne!(other_kmt.raw(), kmt.raw(), "the restarted broker reused a KMT value");
            // A new KMT export registers the object again, under a new value that works.
            let kmt_again = d.export_semaphore(exporter, KMT);
            println!(
                "KMT value before the kill {:#x}, after {:#x}",
                kmt.raw(),
                kmt_again.raw()
            );
            assert_ne!(kmt_again.raw(), other_kmt.raw());
            let again = d.timeline_semaphore(0);
            d.import_semaphore(again, KMT, Permanence::Permanent, &kmt_again);
            assert_eq!(d.counter(again), 2);
            // The name is not registered again (it was registered by the one NT export).
            let result = d.import_semaphore_by_name(again, NT_SEMAPHORE, PERMANENT, &units(&name));
            println!("name lookup after the restart: {result}");
            d.log().take();
            nt.close();
        })
    }

    /// A child that runs as `nobody` cannot open the parent's name or KMT value: not through its
    /// own broker (`/tmp/tether-65534`), not through the driver (the ICD in-process, or the
    /// layer through the loader), and it cannot reach the parent's broker socket at all. Needs
    /// root to switch users; skipped otherwise.
    fn other_user_cannot_open(route: Route) {
        if !rustix::process::geteuid().is_root() {
            harness::skip("skipped: switching to the user nobody needs root");
        }
        let d = Win32Device::new(route);
        let name = unique_name("private");
        let semaphore = d.exportable_timeline(NT_SEMAPHORE | KMT_SEMAPHORE, 0, Some(&ExportAttributes::named(&name)));
        let _nt = d.export_semaphore(semaphore, NT);
        let kmt = d.export_semaphore(semaphore, KMT);
        let parent_dir = socket_dir(&private_runtime_dir().expect("the private runtime directory"));
        let mut cmd = harness::child_command("other-user");
        cmd.arg(route.name())
            .arg(&name)
            .arg(format!("{:#x}", kmt.raw()))
            .arg(&parent_dir)
            .env_remove("XDG_RUNTIME_DIR");
        std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
        std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
        let output = run_child(&mut cmd, CHILD_LIMIT);
        output.assert_success("a child running as nobody");
        eprintln!("{}", output.stdout.trim_end());
    }

    /// `other-user <route> <name> <KMT> <parent's socket dir>`, run as `nobody`.
    pub fn role_other_user(args: &[String]) -> i32 {
        child_main(|| {
            let [route, name, kmt, parent_dir] = args else {
                panic!("other-user <route> <name> <KMT> <parent socket dir>, got {args:?}")
            };
            assert_eq!(rustix::process::geteuid().as_raw(), 65534, "not running as nobody");
            let kmt_value = vk::HANDLE::from_str_radix(kmt.trim_start_matches("0x"), 16).expect("a KMT value");
            let parent_dir = std::path::Path::new(parent_dir);
            // The parent's broker is out of reach.
            match tether_handles::Broker::connect_existing_at(parent_dir) {
                Ok(Some(_)) => panic!("nobody connected to the parent's broker in {}", parent_dir.display()),
                Ok(None) => println!("the parent's broker socket: nothing reachable"),
                Err(e) => println!("the parent's broker socket: {e}"),
            }
            let own_dir = tether_handles::client::default_socket_dir();
            assert_eq!(own_dir, std::path::PathBuf::from("/tmp/tether-65534"));
            let created = !own_dir.exists();
            // Its own broker does not know the parent's objects (NotFound when nobody's own
            // directory is usable; any other error also means they cannot be opened: printed).
            let object = tether_handles::ObjectName::from_utf16(&units(name)).expect("a valid name");
            let by_name = tether_handles::Broker::shared().open_name(&object);
            println!(
                "nobody's broker, name {name:?}: {:?}",
                by_name.as_ref().map(|(kind, _)| kind)
            );
            assert!(by_name.is_err(), "nobody's broker resolved the parent's name");
            let kmt = tether_handles::KmtHandle::from_raw_handle(kmt_value).expect("a KMT value");
            let by_kmt = tether_handles::Broker::shared().open_kmt(kmt);
            println!(
                "nobody's broker, KMT {kmt}: {:?}",
                by_kmt.as_ref().map(|(kind, _)| kind)
            );
            assert!(by_kmt.is_err(), "nobody's broker resolved the parent's KMT value");
            // Nor does the driver.
            let d = Win32Device::with_options(route_from_name(route), Options::expecting_errors());
            let target = d.timeline_semaphore(0);
            let result = d.import_semaphore_by_name(target, NT_SEMAPHORE, PERMANENT, &units(name));
            assert_error(
                &d,
                "nobody importing the parent's name",
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
            let result = d.import_semaphore_raw(target, KMT_SEMAPHORE, PERMANENT, kmt_value, std::ptr::null());
            assert_error(
                &d,
                "nobody importing the parent's KMT value",
                result,
                vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
                INVALID_HANDLE_MESSAGE,
            );
            drop(d);
            // Stop the broker this child started, and remove its directory if it made it.
            if let Some(pid) = broker_pid(&own_dir) {
                kill_and_wait(pid);
            }
            if created {
                let _ = std::fs::remove_dir_all(&own_dir);
            }
        })
    }
}

// --- the C program ----------------------------------------------------------------------------

mod c_program {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(NO_ROUTE => [win32_import_export])
    }

    /// Skips (fails under `CI=true`) when the C toolchain or the Vulkan headers are missing.
    fn missing(reason: String) -> ! {
        if harness::environment().ci {
            panic!("{reason} (CI=true: install a C compiler and libvulkan-dev)");
        }
        harness::skip(format!("skipped: {reason}"))
    }

    /// `tests/c/win32_import_export.c`, compiled with `cc` against `<vulkan/vulkan_core.h>`,
    /// `include/tether/win32_handles.h` and `<vulkan/vulkan_win32.h>`, run through the loader
    /// with this build's driver (on `layer-over-fd-icd`: through the layer over the fd-only
    /// driver, as the environment the harness set up says); it exits 0 when every step worked.
    fn win32_import_export(_route: Route) {
        limits::require(Limit::CProgramDevice);
        harness::require_loader();
        let root = harness::workspace_root();
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/win32_import_export.c");
        if !source.is_file() {
            missing(format!(
                "{} is not on this machine (a test binary carried away from its checkout)",
                source.display()
            ));
        }
        let out = RuntimeDir::new("tether-c-test");
        let binary = out.path.join("win32_import_export");
        let compile = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()))
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
            .arg(root.join("include"))
            .arg(&source)
            .arg("-o")
            .arg(&binary)
            .arg("-lvulkan")
            .output();
        let compile = match compile {
            Ok(output) => output,
            Err(e) => missing(format!("no C compiler (cc): {e}")),
        };
        if !compile.status.success() {
            let stderr = String::from_utf8_lossy(&compile.stderr);
            if stderr.contains("vulkan/vulkan_core.h")
                || stderr.contains("vulkan/vulkan_win32.h")
                || stderr.contains("-lvulkan")
            {
                missing(format!(
                    "the Vulkan headers or libvulkan.so are missing (libvulkan-dev): {stderr}"
                ));
            }
            panic!("compiling {}: {}\n{stderr}", source.display(), compile.status);
        }
        let output = run_child(&mut Command::new(&binary), CHILD_LIMIT);
        output.assert_success("tests/c/win32_import_export.c");
        eprintln!("{}", output.stdout.trim_end());
    }
}

//! The two kinds of object the external-sync tests share their cases between: a fence and a
//! binary semaphore ([`SyncKind`]).
//!
//! Most CTS cases (`dEQP-VK.api.external.{fence,semaphore}.*`) are one script written twice:
//! create, export, import, signal, wait. Here the script is written once, generic over the kind
//! ([`crate::cts`]), and each kind says what its steps are:
//!
//! | step | [`Fence`] | [`BinarySemaphore`] |
//! |---|---|---|
//! | signal | an empty submit that signals the fence | an empty submit that signals the semaphore |
//! | wait | a bounded `vkWaitForFences` | an empty submit that waits on the semaphore |
//! | rearm (before signaling a signaled object again) | `vkResetFences` | nothing: the wait consumed the signal |
//! | export / import | `vkGetFence*` / `vkImportFence*` | `vkGetSemaphore*` / `vkImportSemaphore*` |

use std::fmt::Debug;
use std::os::fd::RawFd;

use ash::vk;

use crate::context::{Batch, TestDevice};
use crate::external::{FdDevice, FdHandleType, Permanence};
use crate::win32::{ExportAttributes, Win32Device, Win32HandleType};

/// An object kind that can be shared through external handles: its Vulkan types, its commands,
/// and what "signal" and "wait" mean for it in a CTS case.
pub trait SyncKind: Sized + 'static {
    /// `vk::Fence` or `vk::Semaphore`.
    type Object: Copy + PartialEq + Debug;
    /// `vk::External{Fence,Semaphore}HandleTypeFlags`.
    type HandleTypes: Copy + Debug;
    /// `vk::{Fence,Semaphore}ImportFlags`.
    type ImportFlags: Copy + Debug;

    /// The CTS's group name (`fence`, `semaphore`), the first part of a case name.
    const NAME: &'static str;
    /// `vkGet*FdKHR`, for messages.
    const GET_FD: &'static str;
    /// `vkImport*FdKHR`, for messages.
    const IMPORT_FD: &'static str;
    /// `vkGet*Win32HandleKHR`, for messages.
    const GET_WIN32: &'static str;
    /// `vkImport*Win32HandleKHR`, for messages.
    const IMPORT_WIN32: &'static str;

    /// The bit of an fd handle type.
    fn fd_bit(handle_type: FdHandleType) -> Self::HandleTypes;
    /// The bit of a Win32 handle type.
    fn win32_bit(handle_type: Win32HandleType) -> Self::HandleTypes;
    /// The import flags of a permanence.
    fn import_flags(permanence: Permanence) -> Self::ImportFlags;

    /// A plain object (a fence unsignaled), tracked by the device.
    fn create(d: &TestDevice) -> Self::Object;
    /// Destroys an object made on `d` (plain or exportable).
    fn destroy(d: &TestDevice, object: Self::Object);
    /// The CTS's `submitEmptySignal`.
    fn signal(d: &TestDevice, object: Self::Object);
    /// The CTS's wait: bounded on the host for a fence, `submitEmptyWait` for a semaphore.
    fn wait(d: &TestDevice, object: Self::Object);
    /// Makes a signaled object ready to be signaled again: `vkResetFences` for a fence; nothing
    /// for a semaphore, whose wait already consumed the signal.
    fn rearm(d: &TestDevice, object: Self::Object);
    /// Asserts the object is signaled now (a fence's status; a semaphore's wait completes).
    fn expect_signaled(d: &TestDevice, object: Self::Object);
    /// Submits [wait `gate` = 1] → signal `object` (see [`TestDevice::while_signal_pending`]).
    fn submit_gated_signal(d: &TestDevice, gate: vk::Semaphore, object: Self::Object) -> vk::Result;

    /// An unsignaled object created exportable as `handle_types` on an [`FdDevice`].
    fn exportable_fd(d: &FdDevice, handle_types: Self::HandleTypes) -> Self::Object;
    /// `vkGet*FdKHR` as is.
    fn get_fd(d: &FdDevice, object: Self::Object, handle_type: Self::HandleTypes) -> Result<RawFd, vk::Result>;
    /// `vkImport*FdKHR` with a raw fd, as is.
    fn import_fd_raw(
        d: &FdDevice,
        object: Self::Object,
        handle_type: Self::HandleTypes,
        flags: Self::ImportFlags,
        fd: RawFd,
    ) -> vk::Result;

    /// An unsignaled object created exportable as `handle_types` on a [`Win32Device`] (with
    /// `VkExport*Win32HandleInfoKHR` when `attrs` is given).
    fn exportable_win32(
        d: &Win32Device,
        handle_types: Self::HandleTypes,
        attrs: Option<&ExportAttributes>,
    ) -> Self::Object;
    /// `vkGet*Win32HandleKHR` as is.
    fn get_win32(
        d: &Win32Device,
        object: Self::Object,
        handle_type: Self::HandleTypes,
    ) -> Result<vk::HANDLE, vk::Result>;
    /// `vkImport*Win32HandleKHR` as is (`name` NULL or NUL-terminated).
    fn import_win32_raw(
        d: &Win32Device,
        object: Self::Object,
        handle_type: Self::HandleTypes,
        flags: Self::ImportFlags,
        handle: vk::HANDLE,
        name: *const u16,
    ) -> vk::Result;
}

/// Implements [`SyncKind`]: what the kind does in a case as written in the invocation, and the
/// rest from the names of its Vulkan types and of the devices' commands for it (a fence and a
/// semaphore have the same commands under other names).
macro_rules! sync_kind {
    (
        $kind:ident: vk::$object:ident, vk::$handle_types:ident, vk::$import_flags:ident,
        bit $bit:ident, flags $flags:ident, commands $cmd:literal,
        fd $get_fd:ident, $import_fd:ident, win32 $get_win32:ident, $import_win32:ident;
        $($semantics:item)*
    ) => {
        impl SyncKind for $kind {
            type Object = vk::$object;
            type HandleTypes = vk::$handle_types;
            type ImportFlags = vk::$import_flags;

            const GET_FD: &'static str = concat!("vkGet", $cmd, "FdKHR");
            const IMPORT_FD: &'static str = concat!("vkImport", $cmd, "FdKHR");
            const GET_WIN32: &'static str = concat!("vkGet", $cmd, "Win32HandleKHR");
            const IMPORT_WIN32: &'static str = concat!("vkImport", $cmd, "Win32HandleKHR");

            fn fd_bit(handle_type: FdHandleType) -> vk::$handle_types {
                handle_type.$bit()
            }

            fn win32_bit(handle_type: Win32HandleType) -> vk::$handle_types {
                handle_type.$bit()
            }

            fn import_flags(permanence: Permanence) -> vk::$import_flags {
                permanence.$flags()
            }

            fn get_fd(d: &FdDevice, object: vk::$object, handle_type: vk::$handle_types) -> Result<RawFd, vk::Result> {
                d.fd.$get_fd(object, handle_type)
            }

            fn import_fd_raw(
                d: &FdDevice,
                object: vk::$object,
                handle_type: vk::$handle_types,
                flags: vk::$import_flags,
                fd: RawFd,
            ) -> vk::Result {
                d.fd.$import_fd(object, handle_type, flags, fd)
            }

            fn get_win32(
                d: &Win32Device,
                object: vk::$object,
                handle_type: vk::$handle_types,
            ) -> Result<vk::HANDLE, vk::Result> {
                d.$get_win32(object, handle_type)
            }

            fn import_win32_raw(
                d: &Win32Device,
                object: vk::$object,
                handle_type: vk::$handle_types,
                flags: vk::$import_flags,
                handle: vk::HANDLE,
                name: *const u16,
            ) -> vk::Result {
                d.$import_win32(object, handle_type, flags, handle, name)
            }

            $($semantics)*
        }
    };
}

/// A fence.
pub enum Fence {}

sync_kind! {
    Fence: vk::Fence, vk::ExternalFenceHandleTypeFlags, vk::FenceImportFlags,
    bit fence_bit, flags fence_flags, commands "Fence",
    fd get_fence_fd, import_fence_raw, win32 get_fence_win32, import_fence_raw;

    const NAME: &'static str = "fence";

    fn create(d: &TestDevice) -> vk::Fence {
        d.fence(false)
    }

    fn destroy(d: &TestDevice, fence: vk::Fence) {
        d.destroy_fence(fence);
    }

    fn signal(d: &TestDevice, fence: vk::Fence) {
        d.submit_signal_fence(fence);
    }

    fn wait(d: &TestDevice, fence: vk::Fence) {
        d.wait_fence(fence);
    }

    fn rearm(d: &TestDevice, fence: vk::Fence) {
        d.reset_fences(&[fence]);
    }

    fn expect_signaled(d: &TestDevice, fence: vk::Fence) {
        assert_eq!(d.wait_fences(&[fence], true, 0), vk::Result::SUCCESS, "the fence is not signaled");
    }

    fn submit_gated_signal(d: &TestDevice, gate: vk::Semaphore, fence: vk::Fence) -> vk::Result {
        let result = d.submit(0, &[Batch::new().wait(gate, 1)], fence);
        if result == vk::Result::SUCCESS {
            assert_eq!(d.fence_status(fence), vk::Result::NOT_READY, "the gated fence signaled early");
        }
        result
    }

    fn exportable_fd(d: &FdDevice, handle_types: vk::ExternalFenceHandleTypeFlags) -> vk::Fence {
        d.exportable_fence(handle_types)
    }

    fn exportable_win32(
        d: &Win32Device,
        handle_types: vk::ExternalFenceHandleTypeFlags,
        attrs: Option<&ExportAttributes>,
    ) -> vk::Fence {
        d.try_exportable_fence(handle_types, attrs)
            .unwrap_or_else(|e| panic!("vkCreateFence (exportable, {attrs:?}): {e}; messages: {}", d.messages()))
    }
}

/// A binary semaphore.
pub enum BinarySemaphore {}

sync_kind! {
    BinarySemaphore: vk::Semaphore, vk::ExternalSemaphoreHandleTypeFlags, vk::SemaphoreImportFlags,
    bit semaphore_bit, flags semaphore_flags, commands "Semaphore",
    fd get_semaphore_fd, import_semaphore_raw, win32 get_semaphore_win32, import_semaphore_raw;

    const NAME: &'static str = "semaphore";

    fn create(d: &TestDevice) -> vk::Semaphore {
        d.binary_semaphore()
    }

    fn destroy(d: &TestDevice, semaphore: vk::Semaphore) {
        d.destroy_semaphore(semaphore);
    }

    fn signal(d: &TestDevice, semaphore: vk::Semaphore) {
        d.submit_signal_semaphore(semaphore);
    }

    fn wait(d: &TestDevice, semaphore: vk::Semaphore) {
        d.submit_wait_semaphore(semaphore);
    }

    fn rearm(_: &TestDevice, _: vk::Semaphore) {}

    fn expect_signaled(d: &TestDevice, semaphore: vk::Semaphore) {
        d.submit_wait_semaphore(semaphore);
        d.idle();
    }

    fn submit_gated_signal(d: &TestDevice, gate: vk::Semaphore, semaphore: vk::Semaphore) -> vk::Result {
        d.submit(0, &[Batch::new().wait(gate, 1).signal(semaphore, 0)], vk::Fence::null())
    }

    fn exportable_fd(d: &FdDevice, handle_types: vk::ExternalSemaphoreHandleTypeFlags) -> vk::Semaphore {
        d.exportable_semaphore(handle_types)
    }

    fn exportable_win32(
        d: &Win32Device,
        handle_types: vk::ExternalSemaphoreHandleTypeFlags,
        attrs: Option<&ExportAttributes>,
    ) -> vk::Semaphore {
        d.try_exportable_semaphore(handle_types, vk::SemaphoreType::BINARY, 0, attrs)
            .unwrap_or_else(|e| {
                panic!("vkCreateSemaphore (exportable binary, {attrs:?}): {e}; messages: {}", d.messages())
            })
    }
}

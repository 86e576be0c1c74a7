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

/// A fence.
pub enum Fence {}

/// A binary semaphore.
pub enum BinarySemaphore {}

impl SyncKind for Fence {
    type Object = vk::Fence;
    type HandleTypes = vk::ExternalFenceHandleTypeFlags;
    type ImportFlags = vk::FenceImportFlags;

    const NAME: &'static str = "fence";
    const GET_FD: &'static str = "vkGetFenceFdKHR";
    const IMPORT_FD: &'static str = "vkImportFenceFdKHR";
    const GET_WIN32: &'static str = "vkGetFenceWin32HandleKHR";
    const IMPORT_WIN32: &'static str = "vkImportFenceWin32HandleKHR";

    fn fd_bit(handle_type: FdHandleType) -> Self::HandleTypes {
        handle_type.fence_bit()
    }

    fn win32_bit(handle_type: Win32HandleType) -> Self::HandleTypes {
        handle_type.fence_bit()
    }

    fn import_flags(permanence: Permanence) -> Self::ImportFlags {
        permanence.fence_flags()
    }

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
        assert_eq!(
            d.wait_fences(&[fence], true, 0),
            vk::Result::SUCCESS,
            "the fence is not signaled"
        );
    }

    fn submit_gated_signal(d: &TestDevice, gate: vk::Semaphore, fence: vk::Fence) -> vk::Result {
        let result = d.submit(0, &[Batch::new().wait(gate, 1)], fence);
        if result == vk::Result::SUCCESS {
            assert_eq!(
                d.fence_status(fence),
                vk::Result::NOT_READY,
                "the gated fence signaled early"
            );
        }
        result
    }

    fn exportable_fd(d: &FdDevice, handle_types: Self::HandleTypes) -> vk::Fence {
        d.exportable_fence(handle_types)
    }

    fn get_fd(d: &FdDevice, fence: vk::Fence, handle_type: Self::HandleTypes) -> Result<RawFd, vk::Result> {
        d.fd.get_fence_fd(fence, handle_type)
    }

    fn import_fd_raw(
        d: &FdDevice,
        fence: vk::Fence,
        handle_type: Self::HandleTypes,
        flags: Self::ImportFlags,
        fd: RawFd,
    ) -> vk::Result {
        d.fd.import_fence_raw(fence, handle_type, flags, fd)
    }

    fn exportable_win32(
        d: &Win32Device,
        handle_types: Self::HandleTypes,
        attrs: Option<&ExportAttributes>,
    ) -> vk::Fence {
        d.try_exportable_fence(handle_types, attrs)
            .unwrap_or_else(|e| panic!("vkCreateFence (exportable, {attrs:?}): {e}; messages: {}", d.messages()))
    }

    fn get_win32(d: &Win32Device, fence: vk::Fence, handle_type: Self::HandleTypes) -> Result<vk::HANDLE, vk::Result> {
        d.get_fence_win32(fence, handle_type)
    }

    fn import_win32_raw(
        d: &Win32Device,
        fence: vk::Fence,
        handle_type: Self::HandleTypes,
        flags: Self::ImportFlags,
        handle: vk::HANDLE,
        name: *const u16,
    ) -> vk::Result {
        d.import_fence_raw(fence, handle_type, flags, handle, name)
    }
}

impl SyncKind for BinarySemaphore {
    type Object = vk::Semaphore;
    type HandleTypes = vk::ExternalSemaphoreHandleTypeFlags;
    type ImportFlags = vk::SemaphoreImportFlags;

    const NAME: &'static str = "semaphore";
    const GET_FD: &'static str = "vkGetSemaphoreFdKHR";
    const IMPORT_FD: &'static str = "vkImportSemaphoreFdKHR";
    const GET_WIN32: &'static str = "vkGetSemaphoreWin32HandleKHR";
    const IMPORT_WIN32: &'static str = "vkImportSemaphoreWin32HandleKHR";

    fn fd_bit(handle_type: FdHandleType) -> Self::HandleTypes {
        handle_type.semaphore_bit()
    }

    fn win32_bit(handle_type: Win32HandleType) -> Self::HandleTypes {
        handle_type.semaphore_bit()
    }

    fn import_flags(permanence: Permanence) -> Self::ImportFlags {
        permanence.semaphore_flags()
    }

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

    fn exportable_fd(d: &FdDevice, handle_types: Self::HandleTypes) -> vk::Semaphore {
        d.exportable_semaphore(handle_types)
    }

    fn get_fd(d: &FdDevice, semaphore: vk::Semaphore, handle_type: Self::HandleTypes) -> Result<RawFd, vk::Result> {
        d.fd.get_semaphore_fd(semaphore, handle_type)
    }

    fn import_fd_raw(
        d: &FdDevice,
        semaphore: vk::Semaphore,
        handle_type: Self::HandleTypes,
        flags: Self::ImportFlags,
        fd: RawFd,
    ) -> vk::Result {
        d.fd.import_semaphore_raw(semaphore, handle_type, flags, fd)
    }

    fn exportable_win32(
        d: &Win32Device,
        handle_types: Self::HandleTypes,
        attrs: Option<&ExportAttributes>,
    ) -> vk::Semaphore {
        d.try_exportable_semaphore(handle_types, vk::SemaphoreType::BINARY, 0, attrs)
            .unwrap_or_else(|e| {
                panic!(
                    "vkCreateSemaphore (exportable binary, {attrs:?}): {e}; messages: {}",
                    d.messages()
                )
            })
    }

    fn get_win32(
        d: &Win32Device,
        semaphore: vk::Semaphore,
        handle_type: Self::HandleTypes,
    ) -> Result<vk::HANDLE, vk::Result> {
        d.get_semaphore_win32(semaphore, handle_type)
    }

    fn import_win32_raw(
        d: &Win32Device,
        semaphore: vk::Semaphore,
        handle_type: Self::HandleTypes,
        flags: Self::ImportFlags,
        handle: vk::HANDLE,
        name: *const u16,
    ) -> vk::Result {
        d.import_semaphore_raw(semaphore, handle_type, flags, handle, name)
    }
}

//! What a driver's OPAQUE_FD payloads look like, so an import can refuse an fd that is plainly
//! not one before the driver sees it.
//!
//! NVIDIA 580 (seen on an H200) exports fences and semaphores as fds of `/dev/nvidiactl`, and an
//! OPAQUE_FD import of anything else (a memfd, `/dev/null`) fails *and* leaves the device unable
//! to create exportable fences afterwards ("Failed to allocate semaphore device memory",
//! `VK_ERROR_INITIALIZATION_FAILED`). The spec wants `VK_ERROR_INVALID_EXTERNAL_HANDLE` for a bad
//! handle and nothing else, so the layer learns the kind of file the driver exports (file type
//! and device: `st_rdev` for a device node, `st_dev` otherwise) and refuses any other kind
//! itself. It learns it from its own exports, or, before the first import, from a throwaway
//! exportable object. An fd of the right kind still goes to the driver, which decides.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use ash::vk;
use rustix::fs::FileType;

/// The kind of file behind an fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdKind {
    file_type: FileType,
    device: u64,
}

impl FdKind {
    pub fn of(fd: BorrowedFd<'_>) -> Option<FdKind> {
        let st = rustix::fs::fstat(fd).ok()?;
        let file_type = FileType::from_raw_mode(st.st_mode);
        let is_device = matches!(file_type, FileType::CharacterDevice | FileType::BlockDevice);
        Some(FdKind {
            file_type,
            device: if is_device { st.st_rdev } else { st.st_dev },
        })
    }
}

/// Which object an fd is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Fence,
    Semaphore,
}

/// The kinds a device's driver exports, learned once each.
#[derive(Default)]
pub struct DriverFdKinds {
    fence: Mutex<Option<FdKind>>,
    semaphore: Mutex<Option<FdKind>>,
}

impl DriverFdKinds {
    fn slot(&self, object: Object) -> &Mutex<Option<FdKind>> {
        match object {
            Object::Fence => &self.fence,
            Object::Semaphore => &self.semaphore,
        }
    }

    /// Records the kind of an fd the driver exported.
    pub fn learn(&self, object: Object, fd: BorrowedFd<'_>) {
        let mut slot = self.slot(object).lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = FdKind::of(fd);
        }
    }

    /// The kind the driver exports, learning it with `probe` (which returns a fresh driver fd of
    /// that object) if no export has taught it yet. `None` when it cannot be learned.
    pub fn get(&self, object: Object, probe: impl FnOnce() -> Option<OwnedFd>) -> Option<FdKind> {
        let mut slot = self.slot(object).lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = probe().and_then(|fd| FdKind::of(fd.as_fd()));
        }
        *slot
    }
}

/// Makes a throwaway exportable fence and exports it as OPAQUE_FD, to learn what the driver's
/// fds look like.
pub fn probe_fence(dev: &crate::device::DeviceData) -> Option<OwnedFd> {
    let get = dev.fns.get_fence_fd?;
    let mut export = vk::ExportFenceCreateInfo::default().handle_types(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD);
    let ci = vk::FenceCreateInfo::default().push_next(&mut export);
    let mut fence = vk::Fence::null();
    // SAFETY: a valid create info, through the next layer's own command.
    if unsafe { (dev.fns.create_fence)(dev.handle, &ci, std::ptr::null(), &mut fence) } != vk::Result::SUCCESS {
        return None;
    }
    let info = vk::FenceGetFdInfoKHR::default()
        .fence(fence)
        .handle_type(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD);
    let mut fd = -1;
    // SAFETY: a fence just made exportable as OPAQUE_FD, and a writable output.
    let r = unsafe { get(dev.handle, &info, &mut fd) };
    // SAFETY: the fence was made here and never used.
    unsafe { (dev.fns.destroy_fence)(dev.handle, fence, std::ptr::null()) };
    // SAFETY: on success the driver returned a new fd we own.
    (r == vk::Result::SUCCESS && fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// As [`probe_fence`], for a binary semaphore.
pub fn probe_semaphore(dev: &crate::device::DeviceData) -> Option<OwnedFd> {
    let get = dev.fns.get_semaphore_fd?;
    let mut export =
        vk::ExportSemaphoreCreateInfo::default().handle_types(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
    let ci = vk::SemaphoreCreateInfo::default().push_next(&mut export);
    let mut semaphore = vk::Semaphore::null();
    // SAFETY: a valid create info, through the next layer's own command.
    if unsafe { (dev.fns.create_semaphore)(dev.handle, &ci, std::ptr::null(), &mut semaphore) } != vk::Result::SUCCESS {
        return None;
    }
    let info = vk::SemaphoreGetFdInfoKHR::default()
        .semaphore(semaphore)
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
    let mut fd = -1;
    // SAFETY: a semaphore just made exportable as OPAQUE_FD, and a writable output.
    let r = unsafe { get(dev.handle, &info, &mut fd) };
    // SAFETY: the semaphore was made here and never used.
    unsafe { (dev.fns.destroy_semaphore)(dev.handle, semaphore, std::ptr::null()) };
    // SAFETY: on success the driver returned a new fd we own.
    (r == vk::Result::SUCCESS && fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A readable description of an fd for messages (`/proc/self/fd` link).
pub fn describe(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

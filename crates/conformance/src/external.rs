//! Sharing fences and semaphores through file descriptors (`VK_KHR_external_fence_fd`,
//! `VK_KHR_external_semaphore_fd`): what the CTS ports and the fd-sharing tests build on.
//!
//! * [`FdHandleType`], [`Transference`] and [`Permanence`]: the two fd handle types and the
//!   CTS's hard-coded table of how each transfers.
//! * [`FdCommands`]: the two extensions' commands as they are.
//! * [`FdDevice`]: a [`TestDevice`] with the two fd extensions enabled and exportable fences and
//!   semaphores (the `TestDevice` destroys them), export and import of either kind
//!   ([`crate::kind::SyncKind`]) with the fd's ownership kept in the types ([`ExportedFd`]).
//! * [`FdDevice::signal_and_export_while_pending`] stands in for the CTS's timed compute job
//!   (see [`TestDevice::while_signal_pending`]): the object is pending when it is exported.
//! * fd plumbing: SCM_RIGHTS over a socket, whether an fd is open, counts of open fds and of
//!   mappings, child processes.
//!
//! Every wait here is bounded ([`crate::context::LONG_NS`]): a driver bug fails the test instead
//! of hanging it.

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use ash::vk;

use crate::context::{Options, TestDevice, TestInstance};
use crate::harness::{Route, Test};
use crate::kind::{BinarySemaphore, Fence, SyncKind};

/// The device extensions the fd tests enable on top of the default ones.
pub const FD_EXTENSIONS: &[&CStr] = &[ash::khr::external_fence_fd::NAME, ash::khr::external_semaphore_fd::NAME];

/// Adds [`FD_EXTENSIONS`] to a context's options.
pub trait WithFdExtensions {
    fn with_fd_extensions(self) -> Options;
}

impl WithFdExtensions for Options {
    fn with_fd_extensions(mut self) -> Options {
        for extension in FD_EXTENSIONS {
            if !self.extra_device_extensions.contains(extension) {
                self.extra_device_extensions.push(extension);
            }
        }
        self
    }
}

/// How an importer relates to the exporter (the CTS hard-codes it per handle type, as here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transference {
    /// Importer and exporter share one payload.
    Reference,
    /// The importer gets a copy; exporting acts as a reset (fence) or a wait (semaphore).
    Copy,
}

/// Whether an import replaces the object's payload for good or until its next reset or wait.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permanence {
    Temporary = 0,
    Permanent = 1,
}

impl Permanence {
    /// The inverse of `as u8` (for const-generic test functions).
    pub const fn from_u8(value: u8) -> Permanence {
        match value {
            0 => Permanence::Temporary,
            _ => Permanence::Permanent,
        }
    }

    /// The suffix of a CTS case name.
    pub const fn name(self) -> &'static str {
        match self {
            Permanence::Temporary => "temporary",
            Permanence::Permanent => "permanent",
        }
    }

    pub fn fence_flags(self) -> vk::FenceImportFlags {
        match self {
            Permanence::Temporary => vk::FenceImportFlags::TEMPORARY,
            Permanence::Permanent => vk::FenceImportFlags::empty(),
        }
    }

    pub fn semaphore_flags(self) -> vk::SemaphoreImportFlags {
        match self {
            Permanence::Temporary => vk::SemaphoreImportFlags::TEMPORARY,
            Permanence::Permanent => vk::SemaphoreImportFlags::empty(),
        }
    }
}

/// The fd handle types of fences and semaphores.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdHandleType {
    OpaqueFd = 0,
    SyncFd = 1,
}

impl FdHandleType {
    /// The inverse of `as u8` (for const-generic test functions).
    pub const fn from_u8(value: u8) -> FdHandleType {
        match value {
            0 => FdHandleType::OpaqueFd,
            _ => FdHandleType::SyncFd,
        }
    }

    /// The CTS group name.
    pub const fn name(self) -> &'static str {
        match self {
            FdHandleType::OpaqueFd => "opaque_fd",
            FdHandleType::SyncFd => "sync_fd",
        }
    }

    pub fn fence_bit(self) -> vk::ExternalFenceHandleTypeFlags {
        match self {
            FdHandleType::OpaqueFd => vk::ExternalFenceHandleTypeFlags::OPAQUE_FD,
            FdHandleType::SyncFd => vk::ExternalFenceHandleTypeFlags::SYNC_FD,
        }
    }

    pub fn semaphore_bit(self) -> vk::ExternalSemaphoreHandleTypeFlags {
        match self {
            FdHandleType::OpaqueFd => vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD,
            FdHandleType::SyncFd => vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD,
        }
    }

    pub const fn transference(self) -> Transference {
        match self {
            FdHandleType::OpaqueFd => Transference::Reference,
            FdHandleType::SyncFd => Transference::Copy,
        }
    }

    /// The permanences the CTS registers cases for (SYNC_FD is temporary only).
    pub const fn permanences(self) -> &'static [Permanence] {
        match self {
            FdHandleType::OpaqueFd => &[Permanence::Temporary, Permanence::Permanent],
            FdHandleType::SyncFd => &[Permanence::Temporary],
        }
    }
}

/// An fd as `vkGet*FdKHR` returns it and `vkImport*FdKHR` takes it: `None` is `-1` (SYNC_FD:
/// already signaled). Whoever holds the value owns the fd.
pub type ExportedFd = Option<OwnedFd>;

/// A copy of a handle, as the CTS's `NativeHandle` copy constructor makes it: `dup` of an fd,
/// `-1` stays `-1`.
pub fn copy_handle(fd: &ExportedFd) -> ExportedFd {
    fd.as_ref()
        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).expect("duplicating an exported fd"))
}

/// The raw number of an [`ExportedFd`] (`-1` for `None`).
pub fn raw_fd(fd: &ExportedFd) -> RawFd {
    fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
}

/// An import that failed, and the fd it gives back (an fd import takes ownership only on success).
#[derive(Debug)]
pub struct ImportFailed {
    pub result: vk::Result,
    pub fd: ExportedFd,
}

/// One CTS case as a trial: `<object>.<handle type>.<case>[_<permanence>]`.
pub fn cts_case(
    prefix: &str,
    case: &'static str,
    permanence: Option<Permanence>,
    routes: &'static [Route],
    run: fn(Route),
) -> (String, Test) {
    let name = match permanence {
        Some(p) => format!("{prefix}.{case}_{}", p.name()),
        None => format!("{prefix}.{case}"),
    };
    (
        name,
        Test {
            name: case,
            routes,
            run,
        },
    )
}

/// `vkGetPhysicalDeviceExternalFenceProperties` with `sType` and `pNext` pre-set as the CTS does.
pub fn fence_properties(
    inst: &TestInstance,
    handle_type: vk::ExternalFenceHandleTypeFlags,
) -> vk::ExternalFenceProperties<'static> {
    let info = vk::PhysicalDeviceExternalFenceInfo::default().handle_type(handle_type);
    let mut props = vk::ExternalFenceProperties::default();
    // SAFETY: a physical device of this instance; `info` and `props` are valid structures.
    unsafe {
        inst.instance
            .get_physical_device_external_fence_properties(inst.physical_device, &info, &mut props)
    };
    props
}

/// What every fence `info` case checks of a handle type tether offers: the query keeps `sType`
/// and `pNext` (the CTS's only assertions), both features, and the type among the compatible
/// ones and among the types exportable from an import. Returns the instance and the answer.
pub fn offered_fence_properties(
    route: Route,
    handle_type: vk::ExternalFenceHandleTypeFlags,
) -> (TestInstance, vk::ExternalFenceProperties<'static>) {
    let inst = TestInstance::with_options(route, Options::default());
    let props = fence_properties(&inst, handle_type);
    assert_eq!(props.s_type, vk::StructureType::EXTERNAL_FENCE_PROPERTIES);
    assert!(props.p_next.is_null());
    let both = vk::ExternalFenceFeatureFlags::EXPORTABLE | vk::ExternalFenceFeatureFlags::IMPORTABLE;
    assert_eq!(props.external_fence_features, both, "{props:?}");
    assert!(props.compatible_handle_types.contains(handle_type), "{props:?}");
    assert!(
        props.export_from_imported_handle_types.contains(handle_type),
        "{props:?}"
    );
    (inst, props)
}

/// `vkGetPhysicalDeviceExternalSemaphoreProperties` with `VkSemaphoreTypeCreateInfo` chained.
pub fn semaphore_properties(
    inst: &TestInstance,
    handle_type: vk::ExternalSemaphoreHandleTypeFlags,
    semaphore_type: vk::SemaphoreType,
) -> vk::ExternalSemaphoreProperties<'static> {
    let mut ty = vk::SemaphoreTypeCreateInfo::default()
        .semaphore_type(semaphore_type)
        .initial_value(0);
    let info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
        .handle_type(handle_type)
        .push_next(&mut ty);
    let mut props = vk::ExternalSemaphoreProperties::default();
    // SAFETY: a physical device of this instance; `info`'s chain and `props` are valid.
    unsafe {
        inst.instance
            .get_physical_device_external_semaphore_properties(inst.physical_device, &info, &mut props)
    };
    props
}

/// The commands of `VK_KHR_external_fence_fd` and `VK_KHR_external_semaphore_fd` on one device,
/// as they are.
pub struct FdCommands {
    pub fence_fd: ash::khr::external_fence_fd::Device,
    pub semaphore_fd: ash::khr::external_semaphore_fd::Device,
}

impl FdCommands {
    /// The commands of `dev`, which enabled both extensions.
    pub fn new(dev: &TestDevice) -> FdCommands {
        let _held = crate::context::device_list_lock();
        FdCommands {
            fence_fd: ash::khr::external_fence_fd::Device::new(&dev.inst.instance, &dev.device),
            semaphore_fd: ash::khr::external_semaphore_fd::Device::new(&dev.inst.instance, &dev.device),
        }
    }

    /// `vkGetFenceFdKHR` as is: the raw fd or the error.
    pub fn get_fence_fd(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
    ) -> Result<RawFd, vk::Result> {
        let info = vk::FenceGetFdInfoKHR::default().fence(fence).handle_type(handle_type);
        // SAFETY: a fence of this device (or a deliberately bad one on routes that tolerate it).
        unsafe { self.fence_fd.get_fence_fd(&info) }
    }

    /// `vkImportFenceFdKHR` with a raw fd, as is. The caller keeps track of who owns `fd`.
    pub fn import_fence_raw(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
        flags: vk::FenceImportFlags,
        fd: RawFd,
    ) -> vk::Result {
        let info = vk::ImportFenceFdInfoKHR::default()
            .fence(fence)
            .handle_type(handle_type)
            .flags(flags)
            .fd(fd);
        // SAFETY: a fence of this device; the fd is the caller's to hand over.
        crate::context::code(unsafe { self.fence_fd.import_fence_fd(&info) })
    }

    /// `vkGetSemaphoreFdKHR` as is.
    pub fn get_semaphore_fd(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
    ) -> Result<RawFd, vk::Result> {
        let info = vk::SemaphoreGetFdInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type);
        // SAFETY: a semaphore of this device.
        unsafe { self.semaphore_fd.get_semaphore_fd(&info) }
    }

    /// `vkImportSemaphoreFdKHR` with a raw fd, as is.
    pub fn import_semaphore_raw(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
        flags: vk::SemaphoreImportFlags,
        fd: RawFd,
    ) -> vk::Result {
        let info = vk::ImportSemaphoreFdInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type)
            .flags(flags)
            .fd(fd);
        // SAFETY: a semaphore of this device; the fd is the caller's to hand over.
        crate::context::code(unsafe { self.semaphore_fd.import_semaphore_fd(&info) })
    }
}

/// A [`TestDevice`] with `VK_KHR_external_fence_fd` and `VK_KHR_external_semaphore_fd`. It
/// dereferences to the `TestDevice`, which also tracks (and destroys) its exportable objects.
pub struct FdDevice {
    pub fd: FdCommands,
    pub dev: TestDevice,
}

impl Deref for FdDevice {
    type Target = TestDevice;
    fn deref(&self) -> &TestDevice {
        &self.dev
    }
}

impl FdDevice {
    /// Default options (validation layer on the loader routes when installed) plus the fd
    /// extensions.
    pub fn new(route: Route) -> FdDevice {
        FdDevice::with_options(route, Options::default())
    }

    pub fn with_options(route: Route, options: Options) -> FdDevice {
        let dev = TestDevice::with_options(route, options.with_fd_extensions());
        FdDevice {
            fd: FdCommands::new(&dev),
            dev,
        }
    }

    // --- exportable objects ---------------------------------------------------------------

    /// An unsignaled fence with `VkExportFenceCreateInfo{handle_types}`.
    pub fn exportable_fence(&self, handle_types: vk::ExternalFenceHandleTypeFlags) -> vk::Fence {
        let mut export = vk::ExportFenceCreateInfo::default().handle_types(handle_types);
        let info = vk::FenceCreateInfo::default().push_next(&mut export);
        // SAFETY: a live device; `info`'s chain is valid.
        let fence = unsafe { self.device.create_fence(&info, None) }.expect("vkCreateFence (exportable)");
        self.track_fence(fence)
    }

    /// A semaphore of `semaphore_type` (timeline: with `initial_value`) with
    /// `VkExportSemaphoreCreateInfo{handle_types}`.
    pub fn try_exportable_semaphore(
        &self,
        handle_types: vk::ExternalSemaphoreHandleTypeFlags,
        semaphore_type: vk::SemaphoreType,
        initial_value: u64,
    ) -> ash::prelude::VkResult<vk::Semaphore> {
        let mut export = vk::ExportSemaphoreCreateInfo::default().handle_types(handle_types);
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(semaphore_type)
            .initial_value(initial_value);
        let mut info = vk::SemaphoreCreateInfo::default().push_next(&mut export);
        if semaphore_type == vk::SemaphoreType::TIMELINE {
            info = info.push_next(&mut ty);
        }
        // SAFETY: a live device; `info`'s chain is valid.
        let semaphore = unsafe { self.device.create_semaphore(&info, None) }?;
        Ok(self.track_semaphore(semaphore))
    }

    /// An exportable binary semaphore.
    pub fn exportable_semaphore(&self, handle_types: vk::ExternalSemaphoreHandleTypeFlags) -> vk::Semaphore {
        self.try_exportable_semaphore(handle_types, vk::SemaphoreType::BINARY, 0)
            .expect("vkCreateSemaphore (exportable binary)")
    }

    /// An exportable timeline semaphore.
    pub fn exportable_timeline(
        &self,
        handle_types: vk::ExternalSemaphoreHandleTypeFlags,
        initial: u64,
    ) -> vk::Semaphore {
        self.try_exportable_semaphore(handle_types, vk::SemaphoreType::TIMELINE, initial)
            .expect("vkCreateSemaphore (exportable timeline)")
    }

    /// An unsignaled object of kind `K` exportable as `handle_type`.
    pub fn exportable<K: SyncKind>(&self, handle_type: FdHandleType) -> K::Object {
        K::exportable_fd(self, K::fd_bit(handle_type))
    }

    /// Destroys an exportable fence made here.
    pub fn destroy_exportable_fence(&self, fence: vk::Fence) {
        self.destroy_fence(fence);
    }

    /// Destroys an exportable semaphore made here.
    pub fn destroy_exportable_semaphore(&self, semaphore: vk::Semaphore) {
        self.destroy_semaphore(semaphore);
    }

    // --- export and import of either kind ---------------------------------------------------

    /// Exports an object of kind `K`; the fd must be valid (`>= 0`, or `-1` for SYNC_FD only).
    pub fn export<K: SyncKind>(&self, object: K::Object, handle_type: FdHandleType) -> ExportedFd {
        let raw = K::get_fd(self, object, K::fd_bit(handle_type)).unwrap_or_else(|e| {
            panic!(
                "{}({}): {e}; messages: {}",
                K::GET_FD,
                handle_type.name(),
                self.messages()
            )
        });
        own_exported(raw, handle_type)
    }

    /// Imports `fd` into `object`; on success the driver owns the fd, on failure it comes back.
    pub fn try_import<K: SyncKind>(
        &self,
        object: K::Object,
        handle_type: FdHandleType,
        flags: K::ImportFlags,
        fd: ExportedFd,
    ) -> Result<(), ImportFailed> {
        match K::import_fd_raw(self, object, K::fd_bit(handle_type), flags, raw_fd(&fd)) {
            vk::Result::SUCCESS => {
                // The driver owns it now.
                let _ = fd.map(IntoRawFd::into_raw_fd);
                Ok(())
            }
            result => Err(ImportFailed { result, fd }),
        }
    }

    /// Imports `fd` into `object` and panics if that fails.
    pub fn import<K: SyncKind>(
        &self,
        object: K::Object,
        handle_type: FdHandleType,
        permanence: Permanence,
        fd: ExportedFd,
    ) {
        if let Err(e) = self.try_import::<K>(object, handle_type, K::import_flags(permanence), fd) {
            panic!(
                "{}({}, {permanence:?}): {}; messages: {}",
                K::IMPORT_FD,
                handle_type.name(),
                e.result,
                self.messages()
            );
        }
    }

    /// A plain object (tracked by the `TestDevice`) with `fd` imported into it.
    pub fn create_and_import<K: SyncKind>(
        &self,
        handle_type: FdHandleType,
        permanence: Permanence,
        fd: ExportedFd,
    ) -> K::Object {
        let object = K::create(self);
        self.import::<K>(object, handle_type, permanence, fd);
        object
    }

    /// Exports `object` while a signal of it is pending (see
    /// [`TestDevice::while_signal_pending`]).
    ///
    /// The CTS accepts `-1` from a COPY export only when the object was already signaled; here
    /// it never is (the gate holds the signal back), so the export must return a real fd.
    pub fn signal_and_export_while_pending<K: SyncKind>(
        &self,
        object: K::Object,
        handle_type: FdHandleType,
    ) -> ExportedFd {
        let fd = self.while_signal_pending::<K, _>(object, || self.export::<K>(object, handle_type));
        assert!(
            fd.is_some(),
            "exporting a {} whose signal is pending returned -1",
            K::NAME
        );
        fd
    }

    // --- the same by name, for each kind ----------------------------------------------------

    pub fn export_fence(&self, fence: vk::Fence, handle_type: FdHandleType) -> ExportedFd {
        self.export::<Fence>(fence, handle_type)
    }

    pub fn try_import_fence(
        &self,
        fence: vk::Fence,
        handle_type: FdHandleType,
        flags: vk::FenceImportFlags,
        fd: ExportedFd,
    ) -> Result<(), ImportFailed> {
        self.try_import::<Fence>(fence, handle_type, flags, fd)
    }

    pub fn import_fence(&self, fence: vk::Fence, handle_type: FdHandleType, permanence: Permanence, fd: ExportedFd) {
        self.import::<Fence>(fence, handle_type, permanence, fd);
    }

    pub fn create_and_import_fence(
        &self,
        handle_type: FdHandleType,
        permanence: Permanence,
        fd: ExportedFd,
    ) -> vk::Fence {
        self.create_and_import::<Fence>(handle_type, permanence, fd)
    }

    pub fn signal_fence_and_export_while_pending(&self, fence: vk::Fence, handle_type: FdHandleType) -> ExportedFd {
        self.signal_and_export_while_pending::<Fence>(fence, handle_type)
    }

    pub fn export_semaphore(&self, semaphore: vk::Semaphore, handle_type: FdHandleType) -> ExportedFd {
        self.export::<BinarySemaphore>(semaphore, handle_type)
    }

    pub fn try_import_semaphore(
        &self,
        semaphore: vk::Semaphore,
        handle_type: FdHandleType,
        flags: vk::SemaphoreImportFlags,
        fd: ExportedFd,
    ) -> Result<(), ImportFailed> {
        self.try_import::<BinarySemaphore>(semaphore, handle_type, flags, fd)
    }

    pub fn import_semaphore(
        &self,
        semaphore: vk::Semaphore,
        handle_type: FdHandleType,
        permanence: Permanence,
        fd: ExportedFd,
    ) {
        self.import::<BinarySemaphore>(semaphore, handle_type, permanence, fd);
    }

    pub fn create_and_import_semaphore(
        &self,
        handle_type: FdHandleType,
        permanence: Permanence,
        fd: ExportedFd,
    ) -> vk::Semaphore {
        self.create_and_import::<BinarySemaphore>(handle_type, permanence, fd)
    }

    pub fn signal_semaphore_and_export_while_pending(
        &self,
        semaphore: vk::Semaphore,
        handle_type: FdHandleType,
    ) -> ExportedFd {
        self.signal_and_export_while_pending::<BinarySemaphore>(semaphore, handle_type)
    }
}

/// Takes ownership of what `vkGet*FdKHR` returned, checking the value is legal for the type.
fn own_exported(raw: RawFd, handle_type: FdHandleType) -> ExportedFd {
    match (raw, handle_type) {
        (-1, FdHandleType::SyncFd) => None,
        (raw, _) if raw >= 0 => {
            // SAFETY: a successful export returns a new fd that the application owns.
            Some(unsafe { OwnedFd::from_raw_fd(raw) })
        }
        (raw, _) => panic!("an {} export returned fd {raw}", handle_type.name()),
    }
}

// --- fd plumbing ------------------------------------------------------------------------------

/// Whether `raw` is an open fd in this process (`fcntl(F_GETFD)`).
pub fn is_open(raw: RawFd) -> bool {
    if raw < 0 {
        return false;
    }
    // SAFETY: only used for `fcntl(F_GETFD)`, which is harmless on any number, open or not.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_getfd(fd).is_ok()
}

/// A duplicate of `fd` at the lowest free number `>= at_least` (close-on-exec), `fd` closed.
/// Tests that check an fd got closed move it to a number other threads are unlikely to reuse.
pub fn renumber(fd: OwnedFd, at_least: RawFd) -> OwnedFd {
    rustix::io::fcntl_dupfd_cloexec(&fd, at_least).expect("fcntl(F_DUPFD_CLOEXEC)")
}

/// Sends `payload` with `fds` attached (SCM_RIGHTS) on a socket.
pub fn send_fds(socket: BorrowedFd<'_>, fds: &[BorrowedFd<'_>], payload: &[u8]) -> std::io::Result<()> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("the SCM_RIGHTS message does not fit its buffer"));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(payload)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )?;
    if sent != payload.len() {
        return Err(std::io::Error::other(format!("sent {sent} of {} bytes", payload.len())));
    }
    Ok(())
}

/// Receives one message of at most `max_payload` bytes and the fds attached to it
/// (close-on-exec). Checks what the CTS checks: one SCM_RIGHTS message.
pub fn recv_fds(
    socket: BorrowedFd<'_>,
    max_fds: usize,
    max_payload: usize,
) -> std::io::Result<(Vec<OwnedFd>, Vec<u8>)> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(max_fds))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut payload = vec![0u8; max_payload];
    let received = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut payload)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )?;
    payload.truncate(received.bytes);
    let mut fds = Vec::new();
    let mut messages = 0;
    for message in control.drain() {
        messages += 1;
        match message {
            rustix::net::RecvAncillaryMessage::ScmRights(received) => fds.extend(received),
            _ => return Err(std::io::Error::other("an ancillary message that is not SCM_RIGHTS")),
        }
    }
    if messages != 1 {
        return Err(std::io::Error::other(format!(
            "{messages} ancillary messages, expected one SCM_RIGHTS"
        )));
    }
    Ok((fds, payload))
}

/// A connected `AF_UNIX` `SOCK_STREAM` pair (close-on-exec).
pub fn socket_pair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair")
}

/// The number of open fds of this process (entries of `/proc/self/fd`, the listing's own
/// directory fd included, which is the same every time).
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("reading /proc/self/fd")
        .count()
}

/// The number of mappings of this process (lines of `/proc/self/maps`).
pub fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("reading /proc/self/maps")
        .lines()
        .count()
}

/// The number of mappings of the file `fd` refers to (lines of `/proc/self/maps` with its
/// device and inode).
pub fn mappings_of(fd: BorrowedFd<'_>) -> usize {
    let stat = rustix::fs::fstat(fd).expect("fstat");
    let inode = stat.st_ino.to_string();
    std::fs::read_to_string("/proc/self/maps")
        .expect("reading /proc/self/maps")
        .lines()
        .filter(|line| line.split_whitespace().nth(4) == Some(inode.as_str()))
        .count()
}

/// Waits for a child process at most `limit`, killing it if it takes longer (then the status
/// is `None`). Polls: a child has no fd to block on here.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().expect("waiting for a child process") {
            Some(status) => return Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Runs a child-role body, turning a panic into exit status 1 (and printing it).
pub fn child_main(body: impl FnOnce() + std::panic::UnwindSafe) -> i32 {
    match std::panic::catch_unwind(body) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Whether an fd polls readable now (SYNC_FD: signaled).
pub fn is_readable(fd: impl AsFd) -> bool {
    let mut poll = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut poll, Some(&zero)), Ok(n) if n > 0)
}

//! Sharing fences and semaphores through Win32 handles (`VK_KHR_external_fence_win32`,
//! `VK_KHR_external_semaphore_win32`): what the Win32 CTS ports and the Win32 sharing tests
//! build on.
//!
//! * [`Win32HandleType`]: OPAQUE_WIN32, OPAQUE_WIN32_KMT and D3D12_FENCE, all of reference
//!   transference.
//! * [`NativeHandle`]: the CTS's `NativeHandle` for Win32 types under DESIGN.md's contracts 2
//!   and 3: an NT handle is an fd the test owns (`CloseHandle` = `close`, `DuplicateHandle` =
//!   `fcntl(F_DUPFD_CLOEXEC)`), a KMT handle is a value that is copied as is and never closed.
//! * [`Win32Device`]: a [`TestDevice`] with the two Win32 extensions, exportable fences and
//!   semaphores (with `VkExport*Win32HandleInfoKHR` when asked: [`ExportAttributes`]), export and
//!   import by handle and by name, the CTS's empty submits, `VkD3D12FenceSubmitInfoKHR` submits,
//!   and bounded waits. Where the CTS keeps an object pending with a timed compute job, the
//!   signal here waits on a private timeline semaphore that the host signals after the export.
//! * The broker (contract 5): [`main`] wraps [`harness::main`] so a test binary never touches
//!   the user's real broker: before anything runs it points `XDG_RUNTIME_DIR` at a fresh private
//!   directory and `TETHER_BROKER` at the `tether-broker` cargo built next to the test binaries
//!   (building it with `cargo build -p tether-handles --bin tether-broker` when it is missing or
//!   older than its sources, which happens when only `-p tether-conformance` was built); at the
//!   end it kills the broker it caused to start and removes the directory. Child processes
//!   inherit both variables, so they share the parent's broker. [`RuntimeDir`] makes further
//!   private directories (one broker each) for tests that must not disturb the others.
//! * fd plumbing: counting the fds open on one file (robust against other threads), fd flags,
//!   UTF-16 names, child processes with captured output.
//!
//! Every wait here is bounded ([`crate::context::LONG_NS`]): a driver bug fails the test instead of hanging it.

use std::ffi::{CStr, OsString, c_void};
use std::io::Read;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ash::vk;

use crate::context::{Options, TestDevice, code};
use crate::harness::{self, Role, Route, Target, Test};
use crate::kind::{BinarySemaphore, Fence, SyncKind};

pub use crate::external::{Permanence, Transference};

/// `DXGI_SHARED_RESOURCE_READ`.
pub const DXGI_SHARED_RESOURCE_READ: u32 = 0x8000_0000;
/// `DXGI_SHARED_RESOURCE_WRITE`.
pub const DXGI_SHARED_RESOURCE_WRITE: u32 = 0x0000_0001;
/// `SYNCHRONIZE`: wait, never signal.
pub const SYNCHRONIZE: u32 = 0x0010_0000;
/// `GENERIC_ALL`.
pub const GENERIC_ALL: u32 = 0x1000_0000;

/// The device extensions the Win32 tests enable on top of the default ones.
pub const WIN32_EXTENSIONS: &[&CStr] = &[
    ash::khr::external_fence_win32::NAME,
    ash::khr::external_semaphore_win32::NAME,
];

/// The four Win32 commands.
pub const WIN32_COMMANDS: &[&CStr] = &[
    c"vkGetFenceWin32HandleKHR",
    c"vkImportFenceWin32HandleKHR",
    c"vkGetSemaphoreWin32HandleKHR",
    c"vkImportSemaphoreWin32HandleKHR",
];

/// Adds [`WIN32_EXTENSIONS`] to a context's options.
pub fn with_win32_extensions(mut options: Options) -> Options {
    for extension in WIN32_EXTENSIONS {
        if !options.extra_device_extensions.contains(extension) {
            options.extra_device_extensions.push(extension);
        }
    }
    options
}

/// `SECURITY_ATTRIBUTES` as C lays it out on LP64 Linux (`include/tether/win32_handles.h`).
#[repr(C)]
#[derive(Debug)]
pub struct SecurityAttributes {
    pub length: u32,
    pub security_descriptor: *mut c_void,
    pub inherit_handle: i32,
}

impl SecurityAttributes {
    pub fn new(inherit: bool) -> SecurityAttributes {
        SecurityAttributes {
            length: std::mem::size_of::<SecurityAttributes>() as u32,
            security_descriptor: std::ptr::null_mut(),
            inherit_handle: i32::from(inherit),
        }
    }
}

/// The Win32 handle types of fences and semaphores (all of reference transference).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Win32HandleType {
    /// An NT handle.
    OpaqueWin32 = 0,
    /// A global share (KMT) value.
    OpaqueWin32Kmt = 1,
    /// An NT handle to a D3D12 fence (semaphores only).
    D3d12Fence = 2,
}

impl Win32HandleType {
    /// The inverse of `as u8` (for const-generic test functions).
    pub const fn from_u8(value: u8) -> Win32HandleType {
        match value {
            0 => Win32HandleType::OpaqueWin32,
            1 => Win32HandleType::OpaqueWin32Kmt,
            _ => Win32HandleType::D3d12Fence,
        }
    }

    /// The CTS group name.
    pub const fn name(self) -> &'static str {
        match self {
            Win32HandleType::OpaqueWin32 => "opaque_win32",
            Win32HandleType::OpaqueWin32Kmt => "opaque_win32_kmt",
            Win32HandleType::D3d12Fence => "d3d12_fence",
        }
    }

    /// Whether the handle is an NT handle (an fd), rather than a KMT value.
    pub const fn is_nt(self) -> bool {
        !matches!(self, Win32HandleType::OpaqueWin32Kmt)
    }

    pub fn fence_bit(self) -> vk::ExternalFenceHandleTypeFlags {
        match self {
            Win32HandleType::OpaqueWin32 => vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32,
            Win32HandleType::OpaqueWin32Kmt => vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT,
            Win32HandleType::D3d12Fence => panic!("there is no D3D12_FENCE handle type for fences"),
        }
    }

    pub fn semaphore_bit(self) -> vk::ExternalSemaphoreHandleTypeFlags {
        match self {
            Win32HandleType::OpaqueWin32 => vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
            Win32HandleType::OpaqueWin32Kmt => vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT,
            Win32HandleType::D3d12Fence => vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE,
        }
    }

    /// Every Win32 type is by reference (the CTS hard-codes it so).
    pub const fn transference(self) -> Transference {
        Transference::Reference
    }
}

/// A Win32 handle the test holds, as the CTS's `NativeHandle`: an NT handle is an fd the test
/// owns (dropping it is `CloseHandle`); a KMT value owns nothing and is never closed.
#[derive(Debug)]
pub enum NativeHandle {
    Nt(OwnedFd),
    Kmt(vk::HANDLE),
}

impl NativeHandle {
    /// Takes what `vkGet*Win32HandleKHR` returned for `handle_type`.
    ///
    /// # Panics
    /// When the value cannot be a handle of that type (an NT handle must be an open fd above the
    /// standard streams; a KMT value must be non-zero and fit 32 bits).
    pub fn from_exported(raw: vk::HANDLE, handle_type: Win32HandleType) -> NativeHandle {
        if handle_type.is_nt() {
            assert!(raw > 2, "an NT export returned handle {raw}");
            let fd = RawFd::try_from(raw).unwrap_or_else(|_| panic!("an NT export returned handle {raw:#x}"));
            assert!(
                crate::external::is_open(fd),
                "an NT export returned fd {fd}, which is not open"
            );
            // SAFETY: a successful NT export returns a new fd that the application owns.
            NativeHandle::Nt(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            assert!(raw != 0 && u32::try_from(raw).is_ok(), "a KMT export returned {raw:#x}");
            NativeHandle::Kmt(raw)
        }
    }

    /// The `HANDLE` value.
    pub fn raw(&self) -> vk::HANDLE {
        match self {
            NativeHandle::Nt(fd) => fd.as_raw_fd() as vk::HANDLE,
            NativeHandle::Kmt(value) => *value,
        }
    }

    /// The fd of an NT handle.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            NativeHandle::Nt(fd) => Some(fd.as_fd()),
            NativeHandle::Kmt(_) => None,
        }
    }

    /// The copy constructor of the CTS's `NativeHandle`: `DuplicateHandle` (a new fd, `F_DUPFD_CLOEXEC`
    /// from 3 up) for an NT handle, the same value for a KMT handle.
    pub fn copy(&self) -> NativeHandle {
        match self {
            NativeHandle::Nt(fd) => {
                NativeHandle::Nt(rustix::io::fcntl_dupfd_cloexec(fd, 3).expect("DuplicateHandle (F_DUPFD_CLOEXEC)"))
            }
            NativeHandle::Kmt(value) => NativeHandle::Kmt(*value),
        }
    }

    /// `CloseHandle` for an NT handle; nothing for a KMT value.
    pub fn close(self) {
        drop(self);
    }

    /// A new fd on the payload's file, for counting fds and mappings: a duplicate of an NT
    /// handle, or for a KMT value the fd the broker hands out for it (on its own connection).
    pub fn open_payload_fd(&self) -> OwnedFd {
        match self {
            NativeHandle::Nt(fd) => rustix::io::fcntl_dupfd_cloexec(fd, 3).expect("F_DUPFD_CLOEXEC"),
            NativeHandle::Kmt(value) => {
                let kmt = tether_handles::KmtHandle::from_raw_handle(*value).expect("a KMT value");
                let (_, fd) = tether_handles::Broker::connect()
                    .and_then(|mut b| b.open_kmt(kmt))
                    .unwrap_or_else(|e| panic!("opening KMT {kmt} through the broker: {e}"));
                fd
            }
        }
    }
}

/// `VkExport{Fence,Semaphore}Win32HandleInfoKHR` for an exportable object.
#[derive(Clone, Debug, Default)]
pub struct ExportAttributes {
    /// `pAttributes`: `None` is NULL, `Some(b)` a `SECURITY_ATTRIBUTES{bInheritHandle = b}`.
    pub inherit: Option<bool>,
    /// `dwAccess`.
    pub access: u32,
    /// `name`: the UTF-16 units, NUL added when passed (`None` is NULL).
    pub name: Option<Vec<u16>>,
}

impl ExportAttributes {
    /// What the CTS's `create_win32_*` chains: `{NULL, DXGI_SHARED_RESOURCE_READ | WRITE, NULL}`.
    pub fn cts() -> ExportAttributes {
        ExportAttributes {
            inherit: None,
            access: DXGI_SHARED_RESOURCE_READ | DXGI_SHARED_RESOURCE_WRITE,
            name: None,
        }
    }

    /// Default attributes with a name.
    pub fn named(name: &str) -> ExportAttributes {
        ExportAttributes {
            name: Some(name.encode_utf16().collect()),
            ..ExportAttributes::default()
        }
    }

    /// Default attributes with raw UTF-16 units as the name (for invalid names).
    pub fn named_units(units: &[u16]) -> ExportAttributes {
        ExportAttributes {
            name: Some(units.to_vec()),
            ..ExportAttributes::default()
        }
    }
}

/// The pointers behind an [`ExportAttributes`], alive while the create call runs.
struct ExportStorage {
    security: Option<SecurityAttributes>,
    name: Option<Vec<u16>>,
}

impl ExportStorage {
    fn new(attrs: &ExportAttributes) -> ExportStorage {
        ExportStorage {
            security: attrs.inherit.map(SecurityAttributes::new),
            name: attrs.name.as_ref().map(|n| nul_terminated(n)),
        }
    }

    fn attributes_ptr(&self) -> *const c_void {
        self.security
            .as_ref()
            .map_or(std::ptr::null(), |s| (s as *const SecurityAttributes).cast())
    }

    fn name_ptr(&self) -> *const u16 {
        self.name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr())
    }
}

/// `units` with a terminating NUL.
pub fn nul_terminated(units: &[u16]) -> Vec<u16> {
    let mut v = units.to_vec();
    v.push(0);
    v
}

/// `s` as a NUL-terminated UTF-16 string (an `LPCWSTR`'s storage).
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A name no other test (and no other run) uses: `tether-test-<pid>-<n>-<tag>`.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "tether-test-{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A [`TestDevice`] with `VK_KHR_external_fence_win32` and `VK_KHR_external_semaphore_win32`.
/// It dereferences to the `TestDevice`, which also tracks (and destroys) its exportable objects.
pub struct Win32Device {
    pub fence_win32: ash::khr::external_fence_win32::Device,
    pub semaphore_win32: ash::khr::external_semaphore_win32::Device,
    pub dev: TestDevice,
}

impl Deref for Win32Device {
    type Target = TestDevice;
    fn deref(&self) -> &TestDevice {
        &self.dev
    }
}

impl Win32Device {
    /// Default options plus the Win32 extensions (no validation layer: see
    /// [`Win32Device::with_options`]).
    pub fn new(route: Route) -> Win32Device {
        Win32Device::with_options(route, Options::default())
    }

    /// `options` plus the Win32 extensions, **without** the validation layer: a
    /// `VK_LAYER_KHRONOS_validation` built for Linux compiles out `VK_KHR_external_*_win32`, and
    /// its `vkGetDeviceProcAddr` returns NULL for their commands even when the device enabled
    /// them (seen with Debian's 1.3.239), so no Win32 test could run under it.
    pub fn with_options(route: Route, options: Options) -> Win32Device {
        let options = Options {
            validation_layer: false,
            ..with_win32_extensions(options)
        };
        let dev = TestDevice::with_options(route, options);
        let held = crate::context::device_list_lock();
        let fence_win32 = ash::khr::external_fence_win32::Device::new(&dev.inst.instance, &dev.device);
        let semaphore_win32 = ash::khr::external_semaphore_win32::Device::new(&dev.inst.instance, &dev.device);
        drop(held);
        Win32Device {
            fence_win32,
            semaphore_win32,
            dev,
        }
    }

    // --- exportable objects ---------------------------------------------------------------

    /// An unsignaled fence with `VkExportFenceCreateInfo{handle_types}` and, with `attrs`,
    /// `VkExportFenceWin32HandleInfoKHR`.
    pub fn try_exportable_fence(
        &self,
        handle_types: vk::ExternalFenceHandleTypeFlags,
        attrs: Option<&ExportAttributes>,
    ) -> ash::prelude::VkResult<vk::Fence> {
        let storage = attrs.map(ExportStorage::new);
        let mut export = vk::ExportFenceCreateInfo::default().handle_types(handle_types);
        let mut win32 = vk::ExportFenceWin32HandleInfoKHR::default();
        let mut info = vk::FenceCreateInfo::default().push_next(&mut export);
        if let (Some(storage), Some(attrs)) = (&storage, attrs) {
            win32.p_attributes = storage.attributes_ptr();
            win32.dw_access = attrs.access.into();
            win32.name = storage.name_ptr();
            info = info.push_next(&mut win32);
        }
        // SAFETY: a live device; `info`'s chain and what it points to outlive the call.
        let fence = unsafe { self.device.create_fence(&info, None) }?;
        Ok(self.track_fence(fence))
    }

    pub fn exportable_fence(&self, handle_types: vk::ExternalFenceHandleTypeFlags) -> vk::Fence {
        Fence::exportable_win32(self, handle_types, None)
    }

    pub fn exportable_fence_with(
        &self,
        handle_types: vk::ExternalFenceHandleTypeFlags,
        attrs: &ExportAttributes,
    ) -> vk::Fence {
        Fence::exportable_win32(self, handle_types, Some(attrs))
    }

    /// A semaphore of `semaphore_type` (timeline: with `initial_value`) with
    /// `VkExportSemaphoreCreateInfo{handle_types}` and, with `attrs`,
    /// `VkExportSemaphoreWin32HandleInfoKHR`.
    pub fn try_exportable_semaphore(
        &self,
        handle_types: vk::ExternalSemaphoreHandleTypeFlags,
        semaphore_type: vk::SemaphoreType,
        initial_value: u64,
        attrs: Option<&ExportAttributes>,
    ) -> ash::prelude::VkResult<vk::Semaphore> {
        let storage = attrs.map(ExportStorage::new);
        let mut export = vk::ExportSemaphoreCreateInfo::default().handle_types(handle_types);
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(semaphore_type)
            .initial_value(initial_value);
        let mut win32 = vk::ExportSemaphoreWin32HandleInfoKHR::default();
        let mut info = vk::SemaphoreCreateInfo::default().push_next(&mut export);
        if semaphore_type == vk::SemaphoreType::TIMELINE {
            info = info.push_next(&mut ty);
        }
        if let (Some(storage), Some(attrs)) = (&storage, attrs) {
            win32.p_attributes = storage.attributes_ptr();
            win32.dw_access = attrs.access.into();
            win32.name = storage.name_ptr();
            info = info.push_next(&mut win32);
        }
        // SAFETY: a live device; `info`'s chain and what it points to outlive the call.
        let semaphore = unsafe { self.device.create_semaphore(&info, None) }?;
        Ok(self.track_semaphore(semaphore))
    }

    /// An exportable binary semaphore.
    pub fn exportable_semaphore(&self, handle_types: vk::ExternalSemaphoreHandleTypeFlags) -> vk::Semaphore {
        BinarySemaphore::exportable_win32(self, handle_types, None)
    }

    /// An exportable binary semaphore with Win32 export attributes.
    pub fn exportable_semaphore_with(
        &self,
        handle_types: vk::ExternalSemaphoreHandleTypeFlags,
        attrs: &ExportAttributes,
    ) -> vk::Semaphore {
        BinarySemaphore::exportable_win32(self, handle_types, Some(attrs))
    }

    /// An exportable timeline semaphore (with Win32 export attributes when given).
    pub fn exportable_timeline(
        &self,
        handle_types: vk::ExternalSemaphoreHandleTypeFlags,
        initial: u64,
        attrs: Option<&ExportAttributes>,
    ) -> vk::Semaphore {
        self.try_exportable_semaphore(handle_types, vk::SemaphoreType::TIMELINE, initial, attrs)
            .unwrap_or_else(|e| {
                panic!(
                    "vkCreateSemaphore (exportable timeline): {e}; messages: {}",
                    self.messages()
                )
            })
    }

    /// An unsignaled object of kind `K` exportable as `handle_type` (with Win32 export
    /// attributes when given).
    pub fn exportable<K: SyncKind>(&self, handle_type: Win32HandleType, attrs: Option<&ExportAttributes>) -> K::Object {
        K::exportable_win32(self, K::win32_bit(handle_type), attrs)
    }

    /// Destroys an exportable fence made here.
    pub fn destroy_exportable_fence(&self, fence: vk::Fence) {
        self.destroy_fence(fence);
    }

    /// Destroys an exportable semaphore made here.
    pub fn destroy_exportable_semaphore(&self, semaphore: vk::Semaphore) {
        self.destroy_semaphore(semaphore);
    }

    // --- raw export and import -------------------------------------------------------------

    /// `vkGetFenceWin32HandleKHR` as is: the raw value or the error.
    pub fn get_fence_win32(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
    ) -> Result<vk::HANDLE, vk::Result> {
        let info = vk::FenceGetWin32HandleInfoKHR::default()
            .fence(fence)
            .handle_type(handle_type);
        // SAFETY: a fence of this device.
        unsafe { self.fence_win32.get_fence_win32_handle(&info) }
    }

    /// `vkImportFenceWin32HandleKHR` as is. Never takes ownership of `handle`.
    pub fn import_fence_raw(
        &self,
        fence: vk::Fence,
        handle_type: vk::ExternalFenceHandleTypeFlags,
        flags: vk::FenceImportFlags,
        handle: vk::HANDLE,
        name: *const u16,
    ) -> vk::Result {
        let mut info = vk::ImportFenceWin32HandleInfoKHR::default()
            .fence(fence)
            .handle_type(handle_type)
            .flags(flags)
            .handle(handle);
        info.name = name;
        // SAFETY: a fence of this device; `name` is NULL or NUL-terminated, alive for the call.
        code(unsafe { self.fence_win32.import_fence_win32_handle(&info) })
    }

    /// `vkImportFenceWin32HandleKHR` by name (OPAQUE_WIN32, handle NULL): `name` without NUL.
    pub fn import_fence_by_name(&self, fence: vk::Fence, flags: vk::FenceImportFlags, name: &[u16]) -> vk::Result {
        let name = nul_terminated(name);
        self.import_fence_raw(
            fence,
            vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32,
            flags,
            0,
            name.as_ptr(),
        )
    }

    /// `vkGetSemaphoreWin32HandleKHR` as is.
    pub fn get_semaphore_win32(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
    ) -> Result<vk::HANDLE, vk::Result> {
        let info = vk::SemaphoreGetWin32HandleInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type);
        // SAFETY: a semaphore of this device.
        unsafe { self.semaphore_win32.get_semaphore_win32_handle(&info) }
    }

    /// `vkImportSemaphoreWin32HandleKHR` as is. Never takes ownership of `handle`.
    pub fn import_semaphore_raw(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
        flags: vk::SemaphoreImportFlags,
        handle: vk::HANDLE,
        name: *const u16,
    ) -> vk::Result {
        let mut info = vk::ImportSemaphoreWin32HandleInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(handle_type)
            .flags(flags)
            .handle(handle);
        info.name = name;
        // SAFETY: a semaphore of this device; `name` is NULL or NUL-terminated, alive for the call.
        code(unsafe { self.semaphore_win32.import_semaphore_win32_handle(&info) })
    }

    /// `vkImportSemaphoreWin32HandleKHR` by name (handle NULL): `name` without NUL.
    pub fn import_semaphore_by_name(
        &self,
        semaphore: vk::Semaphore,
        handle_type: vk::ExternalSemaphoreHandleTypeFlags,
        flags: vk::SemaphoreImportFlags,
        name: &[u16],
    ) -> vk::Result {
        let name = nul_terminated(name);
        self.import_semaphore_raw(semaphore, handle_type, flags, 0, name.as_ptr())
    }

    // --- export and import of either kind ---------------------------------------------------

    /// Exports an object of kind `K`; the value must be a valid handle of the type.
    pub fn export<K: SyncKind>(&self, object: K::Object, handle_type: Win32HandleType) -> NativeHandle {
        let raw = K::get_win32(self, object, K::win32_bit(handle_type)).unwrap_or_else(|e| {
            panic!(
                "{}({}): {e}; messages: {}",
                K::GET_WIN32,
                handle_type.name(),
                self.messages()
            )
        });
        NativeHandle::from_exported(raw, handle_type)
    }

    /// Imports `handle` into `object` and panics if that fails.
    pub fn import<K: SyncKind>(
        &self,
        object: K::Object,
        handle_type: Win32HandleType,
        permanence: Permanence,
        handle: &NativeHandle,
    ) {
        let result = K::import_win32_raw(
            self,
            object,
            K::win32_bit(handle_type),
            K::import_flags(permanence),
            handle.raw(),
            std::ptr::null(),
        );
        assert_eq!(
            result,
            vk::Result::SUCCESS,
            "{}({}, {permanence:?}, {:#x}); messages: {}",
            K::IMPORT_WIN32,
            handle_type.name(),
            handle.raw(),
            self.messages()
        );
    }

    /// A plain object (tracked by the `TestDevice`) with `handle` imported into it.
    pub fn create_and_import<K: SyncKind>(
        &self,
        handle_type: Win32HandleType,
        permanence: Permanence,
        handle: &NativeHandle,
    ) -> K::Object {
        let object = K::create(self);
        self.import::<K>(object, handle_type, permanence, handle);
        object
    }

    /// Exports `object` while a signal of it is pending (see
    /// [`TestDevice::while_signal_pending`]).
    pub fn signal_and_export_while_pending<K: SyncKind>(
        &self,
        object: K::Object,
        handle_type: Win32HandleType,
    ) -> NativeHandle {
        self.while_signal_pending::<K, _>(object, || self.export::<K>(object, handle_type))
    }

    // --- the same by name, for each kind ----------------------------------------------------

    pub fn export_fence(&self, fence: vk::Fence, handle_type: Win32HandleType) -> NativeHandle {
        self.export::<Fence>(fence, handle_type)
    }

    pub fn import_fence(
        &self,
        fence: vk::Fence,
        handle_type: Win32HandleType,
        permanence: Permanence,
        handle: &NativeHandle,
    ) {
        self.import::<Fence>(fence, handle_type, permanence, handle);
    }

    pub fn create_and_import_fence(
        &self,
        handle_type: Win32HandleType,
        permanence: Permanence,
        handle: &NativeHandle,
    ) -> vk::Fence {
        self.create_and_import::<Fence>(handle_type, permanence, handle)
    }

    pub fn signal_fence_and_export_while_pending(
        &self,
        fence: vk::Fence,
        handle_type: Win32HandleType,
    ) -> NativeHandle {
        self.signal_and_export_while_pending::<Fence>(fence, handle_type)
    }

    pub fn export_semaphore(&self, semaphore: vk::Semaphore, handle_type: Win32HandleType) -> NativeHandle {
        self.export::<BinarySemaphore>(semaphore, handle_type)
    }

    pub fn import_semaphore(
        &self,
        semaphore: vk::Semaphore,
        handle_type: Win32HandleType,
        permanence: Permanence,
        handle: &NativeHandle,
    ) {
        self.import::<BinarySemaphore>(semaphore, handle_type, permanence, handle);
    }

    pub fn create_and_import_semaphore(
        &self,
        handle_type: Win32HandleType,
        permanence: Permanence,
        handle: &NativeHandle,
    ) -> vk::Semaphore {
        self.create_and_import::<BinarySemaphore>(handle_type, permanence, handle)
    }

    pub fn signal_semaphore_and_export_while_pending(
        &self,
        semaphore: vk::Semaphore,
        handle_type: Win32HandleType,
    ) -> NativeHandle {
        self.signal_and_export_while_pending::<BinarySemaphore>(semaphore, handle_type)
    }

    // --- D3D12 ------------------------------------------------------------------------------
    /// One `vkQueueSubmit` batch on queue 0 whose semaphore values come in a chained
    /// `VkD3D12FenceSubmitInfoKHR` (and no `VkTimelineSemaphoreSubmitInfo`), with `fence`.
    pub fn submit_d3d12(
        &self,
        waits: &[(vk::Semaphore, u64)],
        signals: &[(vk::Semaphore, u64)],
        fence: vk::Fence,
    ) -> vk::Result {
        let wait_semaphores: Vec<_> = waits.iter().map(|w| w.0).collect();
        let wait_values: Vec<_> = waits.iter().map(|w| w.1).collect();
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; waits.len()];
        let signal_semaphores: Vec<_> = signals.iter().map(|s| s.0).collect();
        let signal_values: Vec<_> = signals.iter().map(|s| s.1).collect();
        let mut d3d12 = vk::D3D12FenceSubmitInfoKHR::default()
            .wait_semaphore_values(&wait_values)
            .signal_semaphore_values(&signal_values);
        let info = vk::SubmitInfo::default()
            .wait_semaphores(&wait_semaphores)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(&signal_semaphores)
            .push_next(&mut d3d12);
        // SAFETY: handles of this device; this test is the only user of queue 0 now.
        code(unsafe { self.device.queue_submit(self.queue(0), &[info], fence) })
    }
}

// --- fd plumbing ------------------------------------------------------------------------------

/// `(st_dev, st_ino)` of what `fd` refers to.
pub fn file_identity(fd: BorrowedFd<'_>) -> (u64, u64) {
    let stat = rustix::fs::fstat(fd).expect("fstat");
    (stat.st_dev, stat.st_ino)
}

/// The number of this process's fds that refer to the same file as `fd` (`fd` included).
/// Robust against other threads opening and closing unrelated fds meanwhile: only fds on this
/// one file (a payload's memfd, which nothing else in the process opens) are counted.
pub fn fds_on_file(fd: BorrowedFd<'_>) -> usize {
    let wanted = file_identity(fd);
    std::fs::read_dir("/proc/self/fd")
        .expect("reading /proc/self/fd")
        .filter_map(|e| e.ok())
        .filter(|e| {
            // An fd closed meanwhile (or the listing's own) simply fails to stat.
            rustix::fs::stat(e.path()).is_ok_and(|s| (s.st_dev, s.st_ino) == wanted)
        })
        .count()
}

/// Whether the fds and mappings of `fd`'s file are the payload's alone, so that counting them
/// finds leaks: a regular file (the tether payload's memfd). A driver whose payload fd is a
/// device node it also uses for everything else (NVIDIA's `/dev/nvidiactl`) has fds and
/// mappings of that file of its own, which come and go with other work.
pub fn payload_file_is_private(fd: BorrowedFd<'_>) -> bool {
    let stat = rustix::fs::fstat(fd).expect("fstat");
    rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
}

/// What `fd` is, for messages (`/proc/self/fd` link).
pub fn describe_fd(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_or_else(|e| format!("fd {}: {e}", fd.as_raw_fd()), |p| p.display().to_string())
}

/// Whether `fd` has close-on-exec set.
pub fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
    rustix::io::fcntl_getfd(fd)
        .expect("fcntl(F_GETFD)")
        .contains(rustix::io::FdFlags::CLOEXEC)
}

/// Whether `fd` was opened read-only.
pub fn is_read_only(fd: BorrowedFd<'_>) -> bool {
    let flags = rustix::fs::fcntl_getfl(fd).expect("fcntl(F_GETFL)");
    (flags & rustix::fs::OFlags::RWMODE) == rustix::fs::OFlags::RDONLY
}

/// A route from its name (for child roles that get it as an argument).
pub fn route_from_name(name: &str) -> Route {
    match name {
        "loader" => Route::Loader,
        "in_process" => Route::InProcess,
        "direct" => Route::DirectDriverLoading,
        other => panic!("unknown route {other:?}"),
    }
}

/// What a child process did.
#[derive(Debug)]
pub struct ChildOutput {
    /// `None`: it ran past its limit and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl ChildOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the child's output unless it exited 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.success(),
            "{what}: the child {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            match self.status {
                Some(s) => format!("exited with {s}"),
                None => "ran past its time limit and was killed".into(),
            },
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `cmd` with stdout and stderr captured, killing it after `limit`.
pub fn run_child(cmd: &mut Command, limit: Duration) -> ChildOutput {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = crate::external::wait_child(&mut child, limit);
    ChildOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

// --- the broker -------------------------------------------------------------------------------

/// The private `XDG_RUNTIME_DIR` [`main`] made for this test binary.
static PRIVATE_RUNTIME_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The private runtime directory of this test binary (or of the parent that started this
/// child), if [`main`] set one up.
pub fn private_runtime_dir() -> Option<PathBuf> {
    PRIVATE_RUNTIME_DIR
        .get()
        .cloned()
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
}

/// The broker's socket directory under a runtime directory (contract 5).
pub fn socket_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("tether")
}

/// A new directory `<tmp>/<prefix>-<pid>-<n>` with mode 0700.
pub fn make_private_dir(prefix: &str) -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{nanos:x}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The pid of the broker serving the socket directory `dir`, if one answers.
pub fn broker_pid(dir: &Path) -> Option<u32> {
    let mut broker = tether_handles::Broker::connect_existing_at(dir).ok()??;
    broker.ping().ok()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
    }
}

/// Sends SIGKILL to `pid` and waits (at most 10 s) until it is gone.
pub fn kill_and_wait(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Kills the broker serving socket directory `dir`, if one runs; returns its pid.
pub fn kill_broker(dir: &Path) -> Option<u32> {
    let pid = broker_pid(dir)?;
    kill_and_wait(pid);
    Some(pid)
}

/// A private runtime directory with its own broker (started on demand by whoever connects with
/// `XDG_RUNTIME_DIR` pointing here); dropping it kills that broker and removes the directory.
pub struct RuntimeDir {
    pub path: PathBuf,
}

impl RuntimeDir {
    pub fn new(prefix: &str) -> RuntimeDir {
        RuntimeDir {
            path: make_private_dir(prefix).expect("creating a private runtime directory"),
        }
    }

    /// The broker's socket directory in it.
    pub fn socket_dir(&self) -> PathBuf {
        socket_dir(&self.path)
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = kill_broker(&self.socket_dir());
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The newest modification time of the files under `path`.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| newest_mtime(&e.path()))
        .max()
}

/// The variable that names the `tether-broker` the tests use instead of this build's.
pub const TEST_BROKER_ENV: &str = "TETHER_TEST_BROKER";

/// The `tether-broker` of this build (`TETHER_TEST_BROKER` overrides it):
/// `target/<profile>/tether-broker` next to the test binary's directory. Builds it (`cargo build -p tether-handles --bin tether-broker`, same
/// profile and target directory) when it is missing or older than `crates/handles`, which
/// happens when only `-p tether-conformance` was built. Err: why there is none.
pub fn broker_binary() -> Result<PathBuf, String> {
    // A build carried to another machine, with no cargo there, names its broker.
    if let Some(path) = std::env::var_os(TEST_BROKER_ENV) {
        let path = PathBuf::from(path);
        return path
            .canonicalize()
            .map_err(|e| format!("{TEST_BROKER_ENV}={}: {e}", path.display()));
    }
    let exe = std::env::current_exe().map_err(|e| format!("the test binary's path: {e}"))?;
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the test binary is not in target/<profile>/deps")?;
    let binary = profile_dir.join(tether_handles::client::BROKER_BINARY);
    let sources = harness::workspace_root().join("crates/handles");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let fresh = match (built, newest_mtime(&sources)) {
        (Some(built), Some(source)) => built >= source,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if fresh {
        return Ok(binary);
    }
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => return Err("no profile directory".into()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from(env!("CARGO")));
    let output = Command::new(&cargo)
        .args(["build", "--quiet", "-p", "tether-handles", "--bin"])
        .arg(tether_handles::client::BROKER_BINARY)
        .arg("--profile")
        .arg(&profile)
        .arg("--manifest-path")
        .arg(harness::workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cargo:?} to build tether-broker: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build -p tether-handles --bin tether-broker` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("{} is missing after building it", binary.display()))
    }
}

/// Points `XDG_RUNTIME_DIR` at a fresh private directory and `TETHER_BROKER` at this build's
/// broker.
///
/// # Safety
/// The process must be single-threaded (no other thread reads or writes the environment).
unsafe fn set_up_private_broker() {
    match make_private_dir("tether-conformance") {
        Ok(dir) => {
            // SAFETY: per the function's contract nothing else touches the environment now.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
            let _ = PRIVATE_RUNTIME_DIR.set(dir);
        }
        Err(e) => eprintln!("note: cannot create a private XDG_RUNTIME_DIR: {e}; broker tests will fail"),
    }
    match broker_binary() {
        // SAFETY: as above.
        Ok(binary) => unsafe { std::env::set_var(tether_handles::client::BROKER_ENV, binary) },
        Err(e) => {
            eprintln!("note: no tether-broker for this build: {e}; tests that need the broker will fail");
            // Never fall back to one found on PATH: it could be another build's.
            // SAFETY: as above.
            unsafe { std::env::set_var(tether_handles::client::BROKER_ENV, "/nonexistent/tether-broker") };
        }
    }
}

/// The `main` of a test binary that uses the broker, on the target `TETHER_TEST_TARGET` names,
/// else the ICD: see [`main_on`].
pub fn main(roles: &[Role], tests: impl FnOnce() -> Vec<(String, Test)>) -> ExitCode {
    main_on(Target::Icd, roles, tests)
}

/// The `main` of a test binary that uses the broker: [`harness::main_on`] between setting up a
/// private broker (see the module documentation) and shutting it down. The target is the one
/// `TETHER_TEST_TARGET` names, else `default_target`. A child role (started with
/// `--child-role`) keeps the environment its parent gave it.
pub fn main_on(default_target: Target, roles: &[Role], tests: impl FnOnce() -> Vec<(String, Test)>) -> ExitCode {
    let child = std::env::args().nth(1).as_deref() == Some("--child-role");
    let target = match harness::target_from_env(default_target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !child {
        // SAFETY: nothing has started a thread yet.
        unsafe { set_up_private_broker() };
    }
    let code = harness::main_on(target, roles, tests);
    if !child && let Some(dir) = PRIVATE_RUNTIME_DIR.get() {
        let _ = kill_broker(&socket_dir(dir));
        let _ = std::fs::remove_dir_all(dir);
    }
    code
}

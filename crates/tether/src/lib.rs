//! Share Vulkan fences and semaphores between processes and APIs, safely.
//!
//! `tether` is a safe layer over [`ash`] for `VK_KHR_external_{fence,semaphore}_{fd,win32}`
//! and timeline semaphores, for any driver: the tether CPU driver, a real driver with the
//! `VK_LAYER_TETHER_win32_sync` layer (which brings the Win32 handle types to Linux drivers), or
//! a real driver alone (fd handle types).
//!
//! * [`ExternalFence`] and [`ExternalSemaphore`] (binary and timeline) are created exportable as
//!   a set of handle types ([`ExportOptions`]) that is checked against what the device can
//!   share. Their [`Shareable`] methods export owned values — an [`OwnedFd`](std::os::fd::OwnedFd),
//!   an [`NtHandle`] (on Unix an fd its holder owns: dropping it is `CloseHandle`), a
//!   [`KmtHandle`] (a global value nobody closes) — and import by handle, by name or by KMT
//!   value, permanently or temporarily ([`Import`]). A Win32 import borrows its handle; an fd
//!   import takes its fd only when it succeeds ([`FdImportError`] gives it back).
//! * [`DeviceCaps`] answers "what can this device share?": for each object kind and handle type,
//!   whether it exports, imports, and what it can export after an import. It prints as a table
//!   (`tether caps` shows it).
//! * [`Error`] is the one error type: the Vulkan result ([`Error::result`]) and a message.
//!   Valid-usage rules that can be checked on this side are checked before the driver sees the
//!   call; what cannot be checked (queue work still pending) is the `# Safety` contract of the
//!   one unsafe submission call, [`Device::submit`].
//! * [`broker`]: names and KMT values go through a per-user broker; an application can carry it.
//!
//! On Unix the Win32 handle model is the one DESIGN.md of the tether project fixes: an NT handle
//! is an fd (`DuplicateHandle` is [`NtHandle::duplicate`], inheritance is the absence of
//! close-on-exec), a KMT handle is a 32-bit value resolved through the broker, and names are
//! UTF-16 strings in one per-user namespace (`Local\` and `Global\` prefixes accepted).
//!
//! # Examples
//!
//! The examples run in CI on the tether CPU driver linked into the test (the hidden first line
//! of each). An application gets its entry from the system Vulkan loader instead:
//! `unsafe { ash::Entry::load()? }` (with ash's `loaded` feature).
//!
//! ## Checking what a device can share
//!
//! ```
//! use tether::{HandleType, Instance, ObjectKind};
//!
//! # let entry = unsafe { ash::Entry::from_static_fn(ash::StaticFn { get_instance_proc_addr: tether_icd::vk_icdGetInstanceProcAddr }) };
//! let instance = Instance::new(entry, c"what can it share")?;
//! for physical in instance.physical_devices()? {
//!     let caps = physical.capabilities();
//!     println!("{caps}"); // the whole table
//!     let timeline = caps.exportable(ObjectKind::TimelineSemaphore);
//!     if timeline.contains(HandleType::D3d12Fence) {
//!         println!("{} can share timelines with D3D12", physical.name());
//!     }
//!     if let Some(row) = caps.get(ObjectKind::Fence, HandleType::SyncFd) {
//!         println!("a fence holding an imported SYNC_FD can export {}", row.export_from_imported);
//!     }
//! }
//! # Ok::<(), tether::Error>(())
//! ```
//!
//! ## Importing by name
//!
//! An object created with [`ExportOptions::name`] registers its name at its first NT-handle
//! export; any process of the same user can then import its payload by that name.
//!
//! ```standalone_crate
//! use std::time::Duration;
//! use tether::{Device, DeviceOptions, ExportOptions, ExternalSemaphore, HandleType, Import, Instance, Shareable};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Names need the per-user broker; this binary can serve as one if none is installed.
//!     if let Some(exit) = tether::broker::serve_if_requested() {
//!         std::process::exit(if exit == std::process::ExitCode::SUCCESS { 0 } else { 1 });
//!     }
//!     tether::broker::ensure()?;
//! #   let entry = unsafe { ash::Entry::from_static_fn(ash::StaticFn { get_instance_proc_addr: tether_icd::vk_icdGetInstanceProcAddr }) };
//!     let instance = Instance::new(entry, c"names")?;
//!     let physical = instance.physical_devices()?.remove(0);
//!     let device = Device::new(&physical, DeviceOptions::default())?;
//!
//!     // The exporter: a timeline named after this process, so runs do not collide.
//!     let name = format!("Local\\tether-example-{}", std::process::id()).parse()?;
//!     let options = ExportOptions::new(HandleType::OpaqueWin32).name(name);
//!     let exported = ExternalSemaphore::timeline(&device, 0, &options)?;
//!     let handle = exported.export_nt_handle(HandleType::OpaqueWin32)?; // registers the name
//!
//!     // The importer (here the same process; usually another one).
//!     let name = format!("Local\\tether-example-{}", std::process::id()).parse()?;
//!     let mut imported = ExternalSemaphore::timeline(&device, 0, &ExportOptions::default())?;
//!     imported.import_name(HandleType::OpaqueWin32, &name, Import::Permanent)?;
//!
//!     exported.signal(7)?;
//!     assert!(imported.wait(7, Duration::from_secs(5))?);
//!     assert_eq!(imported.value()?, 7);
//!     drop(handle); // CloseHandle; the name lives as long as `exported`
//!     Ok(())
//! }
//! ```
//!
//! ## Sharing a timeline semaphore with a child process
//!
//! The parent exports an inheritable NT handle; the child inherits the fd, imports it (the
//! import does not take it; the child closes it after) and the two ping-pong on the counter.
//!
//! ```standalone_crate
//! use std::time::Duration;
//! use tether::{Device, DeviceOptions, ExportOptions, ExternalSemaphore, HandleType, Import, Instance, NtHandle, Shareable};
//!
//! const CHILD_ENV: &str = "TIMELINE_EXAMPLE_HANDLE";
//!
//! fn open_device() -> Result<Device, tether::Error> {
//! #   let entry = unsafe { ash::Entry::from_static_fn(ash::StaticFn { get_instance_proc_addr: tether_icd::vk_icdGetInstanceProcAddr }) };
//!     let instance = Instance::new(entry, c"timeline example")?;
//!     let physical = instance.physical_devices()?.remove(0);
//!     Device::new(&physical, DeviceOptions::default())
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let device = open_device()?;
//!     if let Ok(raw) = std::env::var(CHILD_ENV) {
//!         // The child: it owns the inherited handle.
//!         // SAFETY: the parent passed this fd by inheritance, and nothing else in this process
//!         // uses it.
//!         let handle = unsafe { NtHandle::from_raw_handle(raw.parse()?) };
//!         let mut timeline = ExternalSemaphore::timeline(&device, 0, &ExportOptions::default())?;
//!         timeline.import_nt_handle(HandleType::OpaqueWin32, handle.as_handle(), Import::Permanent)?;
//!         drop(handle);
//!         assert!(timeline.wait(1, Duration::from_secs(10))?, "the parent never signaled 1");
//!         timeline.signal(2)?;
//!         return Ok(());
//!     }
//!     let options = ExportOptions::new(HandleType::OpaqueWin32).inheritable(true);
//!     let timeline = ExternalSemaphore::timeline(&device, 0, &options)?;
//!     let handle = timeline.export_nt_handle(HandleType::OpaqueWin32)?;
//!     let mut child = std::process::Command::new(std::env::current_exe()?)
//!         .env(CHILD_ENV, handle.as_raw_handle().to_string())
//!         .spawn()?;
//!     drop(handle); // the child has its own copy now
//!     timeline.signal(1)?;
//!     let answered = timeline.wait(2, Duration::from_secs(10))?;
//!     let status = child.wait()?;
//!     assert!(status.success(), "child: {status}");
//!     assert!(answered, "the child never signaled 2");
//!     Ok(())
//! }
//! ```

pub mod broker;
pub mod caps;
mod device;
mod error;
mod export;
mod sync;
pub mod table;

pub use ash;
pub use caps::{DeviceCaps, HandleCaps, HandleType, HandleTypes, ObjectKind};
pub use device::{Device, DeviceOptions, ExistingDevice, ExternalCommands, Instance, PhysicalDevice};
pub use error::{Error, FdImportError, Result};
pub use export::{DXGI_SHARED_RESOURCE_READ, DXGI_SHARED_RESOURCE_WRITE, ExportOptions, GENERIC_ALL, SYNCHRONIZE};
pub use sync::{ExternalFence, ExternalSemaphore, Import, Shareable, Submission};
pub use tether_handles::{BorrowedHandle, KmtHandle, NameError, NtHandle, ObjectName};

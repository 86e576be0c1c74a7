//! Instances, physical devices and devices: what the external objects are made on.
//!
//! Each is a cheap, clonable reference. An object keeps its device (and so its instance) alive,
//! so a device made here is destroyed only after the last fence or semaphore made on it.

use std::ffi::CStr;
use std::sync::{Arc, Mutex};

use ash::vk;

use crate::caps::{DeviceCaps, Extensions, HandleType, ObjectKind};
use crate::error::{Error, Result};

struct InstanceInner {
    entry: ash::Entry,
    instance: ash::Instance,
    owned: bool,
}

impl Drop for InstanceInner {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: created by `Instance::new`, destroyed once, after every device and object
            // made from it (they hold this `Arc`).
            unsafe { self.instance.destroy_instance(None) };
        }
    }
}

/// A Vulkan instance (1.1 or later), owned by this crate or borrowed from the application.
#[derive(Clone)]
pub struct Instance {
    inner: Arc<InstanceInner>,
}

impl Instance {
    /// Creates an instance with no layers or extensions, for Vulkan 1.2 (1.1 when that is all
    /// the loader offers), destroyed when the last clone and the last device made from it are
    /// gone.
    ///
    /// `entry` is usually the system loader, `unsafe { ash::Entry::load() }`.
    pub fn new(entry: ash::Entry, application_name: &CStr) -> Result<Instance> {
        // SAFETY: a global command of a loaded entry.
        let available = unsafe { entry.try_enumerate_instance_version() }
            .map_err(|e| Error::vulkan("vkEnumerateInstanceVersion", e, ""))?
            .unwrap_or(vk::API_VERSION_1_0);
        if available < vk::API_VERSION_1_1 {
            return Err(Error::Unsupported(
                "external fences and semaphores need Vulkan 1.1; the loader offers 1.0".into(),
            ));
        }
        let api_version = available.min(vk::API_VERSION_1_2);
        let app = vk::ApplicationInfo::default()
            .application_name(application_name)
            .engine_name(c"tether")
            .api_version(api_version);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: a valid create info with no layers or extensions.
        let instance =
            unsafe { entry.create_instance(&info, None) }.map_err(|e| Error::vulkan("vkCreateInstance", e, ""))?;
        Ok(Instance {
            inner: Arc::new(InstanceInner {
                entry,
                instance,
                owned: true,
            }),
        })
    }

    /// Uses an instance the application made. It is not destroyed here.
    ///
    /// # Safety
    ///
    /// `instance` was created from `entry` with `apiVersion` 1.1 or later, and stays alive
    /// until every clone of the returned value, and every device and object made through it,
    /// is dropped.
    pub unsafe fn from_ash(entry: ash::Entry, instance: ash::Instance) -> Instance {
        Instance {
            inner: Arc::new(InstanceInner {
                entry,
                instance,
                owned: false,
            }),
        }
    }

    pub fn ash(&self) -> &ash::Instance {
        &self.inner.instance
    }

    pub fn entry(&self) -> &ash::Entry {
        &self.inner.entry
    }

    /// Every physical device.
    pub fn physical_devices(&self) -> Result<Vec<PhysicalDevice>> {
        // SAFETY: a live instance.
        let handles = unsafe { self.inner.instance.enumerate_physical_devices() }
            .map_err(|e| Error::vulkan("vkEnumeratePhysicalDevices", e, ""))?;
        Ok(handles
            .into_iter()
            .map(|handle| {
                // SAFETY: enumerated from this 1.1+ instance just now.
                let caps = unsafe { DeviceCaps::query(&self.inner.instance, handle) };
                PhysicalDevice {
                    instance: self.clone(),
                    handle,
                    caps: Arc::new(caps),
                }
            })
            .collect())
    }
}

/// A physical device and what it can share (queried once).
#[derive(Clone)]
pub struct PhysicalDevice {
    instance: Instance,
    handle: vk::PhysicalDevice,
    caps: Arc<DeviceCaps>,
}

impl PhysicalDevice {
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    pub fn handle(&self) -> vk::PhysicalDevice {
        self.handle
    }

    /// The device's name, e.g. `tether CPU`.
    pub fn name(&self) -> &str {
        &self.caps.name
    }

    /// Which handle types each object kind can export, import and export after an import.
    /// Prints as a table.
    pub fn capabilities(&self) -> &DeviceCaps {
        &self.caps
    }

    /// The queue families.
    pub fn queue_families(&self) -> Vec<vk::QueueFamilyProperties> {
        // SAFETY: a physical device of a live instance.
        unsafe {
            self.instance
                .ash()
                .get_physical_device_queue_family_properties(self.handle)
        }
    }
}

impl std::fmt::Debug for PhysicalDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysicalDevice")
            .field("name", &self.caps.name)
            .field("handle", &self.handle)
            .finish()
    }
}

/// The timeline-semaphore commands: core 1.2, or `VK_KHR_timeline_semaphore` on 1.1.
pub(crate) enum TimelineCommands {
    Core,
    Khr(ash::khr::timeline_semaphore::Device),
}

/// The external-handle commands of the enabled extensions, for raw calls the safe API does not
/// make ([`Device::external_commands`]).
pub struct ExternalCommands {
    pub fence_fd: Option<ash::khr::external_fence_fd::Device>,
    pub semaphore_fd: Option<ash::khr::external_semaphore_fd::Device>,
    pub fence_win32: Option<ash::khr::external_fence_win32::Device>,
    pub semaphore_win32: Option<ash::khr::external_semaphore_win32::Device>,
}

pub(crate) struct DeviceInner {
    pub physical: PhysicalDevice,
    pub device: ash::Device,
    owned: bool,
    pub enabled: Extensions,
    pub timeline: Option<TimelineCommands>,
    pub external: ExternalCommands,
    queue_family: u32,
    /// `vkQueueSubmit` needs the queue externally synchronized.
    queues: Vec<Mutex<vk::Queue>>,
}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: created by `Device::new`, destroyed once, after every object made on it
            // (they hold this `Arc`); waiting for idle first ends any submitted work.
            unsafe {
                let _ = self.device.device_wait_idle();
                self.device.destroy_device(None);
            }
        }
    }
}

/// Which queues [`Device::new`] creates.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceOptions {
    /// The queue family; `None` takes the first.
    pub queue_family: Option<u32>,
    /// How many queues of that family (at least 1, at most what the family has).
    pub queue_count: u32,
}

/// A device that the application created: what [`Device::from_ash`] needs to know of it.
pub struct ExistingDevice<'a> {
    pub device: ash::Device,
    /// The device extensions it was created with.
    pub enabled_extensions: &'a [&'a CStr],
    /// Whether the `timelineSemaphore` feature was enabled.
    pub timeline_semaphores: bool,
    /// The queue family and count of the queues [`Device::queue`] may hand out.
    pub queue_family: u32,
    pub queue_count: u32,
}

/// A logical device with the external fence and semaphore extensions it offers enabled.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

impl Device {
    /// Creates a device on `physical` with every external fence/semaphore extension it offers
    /// (fd and Win32) and timeline semaphores when it has them.
    pub fn new(physical: &PhysicalDevice, options: DeviceOptions) -> Result<Device> {
        let caps = physical.capabilities();
        if caps.api_version < vk::API_VERSION_1_1 {
            return Err(Error::Unsupported(format!(
                "{} is a Vulkan 1.0 device; external fences and semaphores need 1.1",
                caps.name
            )));
        }
        let families = physical.queue_families();
        let family = options.queue_family.unwrap_or(0);
        let Some(props) = families.get(family as usize) else {
            return Err(Error::InvalidUsage(format!(
                "queue family {family} does not exist ({} families)",
                families.len()
            )));
        };
        let count = options.queue_count.clamp(1, props.queue_count.max(1));
        let priorities = vec![1.0f32; count as usize];
        let queue_info = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities)];
        let timeline = caps.has_timeline_semaphores();
        let vulkan12 = caps.api_version >= vk::API_VERSION_1_2;
        let mut extensions = caps.extensions.names();
        if timeline && !vulkan12 {
            extensions.push(ash::khr::timeline_semaphore::NAME);
        }
        let extension_ptrs: Vec<*const std::ffi::c_char> = extensions.iter().map(|e| e.as_ptr()).collect();
        let mut timeline_features = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
        let mut info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_info)
            .enabled_extension_names(&extension_ptrs);
        if timeline {
            info = info.push_next(&mut timeline_features);
        }
        let instance = physical.instance().ash();
        // SAFETY: a valid create info for a physical device of a live instance; every extension
        // named is one the device offers.
        let device = unsafe { instance.create_device(physical.handle(), &info, None) }
            .map_err(|e| Error::vulkan("vkCreateDevice", e, caps.name.clone()))?;
        let existing = ExistingDevice {
            device,
            enabled_extensions: &extensions,
            timeline_semaphores: timeline,
            queue_family: family,
            queue_count: count,
        };
        // SAFETY: the device was just created as `existing` describes it, and is ours to destroy.
        Ok(unsafe { Device::wrap(physical, existing, true) })
    }

    /// Uses a device the application made. It is not destroyed here.
    ///
    /// # Safety
    ///
    /// `existing.device` was created from `physical` with exactly `enabled_extensions` and the
    /// timeline feature as stated, has `queue_count` queues of `queue_family`, and stays alive
    /// until every clone of the returned value and every object made on it is dropped. Those
    /// queues are submitted to only through [`Device::submit`] or under the application's own
    /// synchronization with it.
    pub unsafe fn from_ash(physical: &PhysicalDevice, existing: ExistingDevice<'_>) -> Device {
        // SAFETY: the caller's guarantee; the application destroys its device.
        unsafe { Device::wrap(physical, existing, false) }
    }

    /// Loads the commands of `existing` and takes it, destroying it at the end when `owned`.
    ///
    /// # Safety
    ///
    /// As [`Device::from_ash`].
    unsafe fn wrap(physical: &PhysicalDevice, existing: ExistingDevice<'_>, owned: bool) -> Device {
        let instance = physical.instance().ash();
        let device = existing.device;
        let enabled = Extensions::from_names(existing.enabled_extensions.iter().copied());
        let vulkan12 = physical.capabilities().api_version >= vk::API_VERSION_1_2;
        let timeline = existing.timeline_semaphores.then(|| {
            if vulkan12 {
                TimelineCommands::Core
            } else {
                TimelineCommands::Khr(ash::khr::timeline_semaphore::Device::new(instance, &device))
            }
        });
        let external = ExternalCommands {
            fence_fd: enabled
                .fence_fd
                .then(|| ash::khr::external_fence_fd::Device::new(instance, &device)),
            semaphore_fd: enabled
                .semaphore_fd
                .then(|| ash::khr::external_semaphore_fd::Device::new(instance, &device)),
            fence_win32: enabled
                .fence_win32
                .then(|| ash::khr::external_fence_win32::Device::new(instance, &device)),
            semaphore_win32: enabled
                .semaphore_win32
                .then(|| ash::khr::external_semaphore_win32::Device::new(instance, &device)),
        };
        let queues = (0..existing.queue_count)
            .map(|i| {
                // SAFETY: the caller guarantees the device has these queues.
                Mutex::new(unsafe { device.get_device_queue(existing.queue_family, i) })
            })
            .collect();
        Device {
            inner: Arc::new(DeviceInner {
                physical: physical.clone(),
                device,
                owned,
                enabled,
                timeline,
                external,
                queue_family: existing.queue_family,
                queues,
            }),
        }
    }

    pub fn ash(&self) -> &ash::Device {
        &self.inner.device
    }

    pub fn handle(&self) -> vk::Device {
        self.inner.device.handle()
    }

    pub fn physical(&self) -> &PhysicalDevice {
        &self.inner.physical
    }

    /// What the device can share.
    pub fn capabilities(&self) -> &DeviceCaps {
        self.inner.physical.capabilities()
    }

    /// The external fence/semaphore extensions enabled on this device.
    pub fn enabled_extensions(&self) -> Extensions {
        self.inner.enabled
    }

    /// The loaded commands of the enabled external fence/semaphore extensions (`None` for those
    /// not enabled), for raw calls; calling them is `unsafe` and bound by the specification's
    /// valid usage, as any ash call.
    pub fn external_commands(&self) -> &ExternalCommands {
        &self.inner.external
    }

    /// Whether timeline semaphores are enabled.
    pub fn has_timeline_semaphores(&self) -> bool {
        self.inner.timeline.is_some()
    }

    /// The family of [`Device::queue`]'s queues.
    pub fn queue_family(&self) -> u32 {
        self.inner.queue_family
    }

    /// How many queues [`Device::submit`] can use.
    pub fn queue_count(&self) -> u32 {
        self.inner.queues.len() as u32
    }

    /// Queue `index`, for the application's own commands (it must not submit to it while
    /// [`Device::submit`] may).
    pub fn queue(&self, index: u32) -> Option<vk::Queue> {
        self.inner
            .queues
            .get(index as usize)
            .map(|q| *q.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Checks that objects of `kind` on this device can be exported or imported as `t`:
    /// the extension is enabled and the device says so.
    pub(crate) fn check_handle_type(&self, kind: ObjectKind, t: HandleType, export: bool) -> Result<()> {
        if !kind.can_have(t) {
            return Err(Error::Unsupported(format!("a {kind} has no {t} handle type")));
        }
        if !self.inner.enabled.carries(kind, t) {
            return Err(Error::Unsupported(format!(
                "{} is not enabled on {} (needed for {t} handles of a {kind})",
                Extensions::name_for(kind, t).to_string_lossy(),
                self.capabilities().name
            )));
        }
        let row = self.capabilities().get(kind, t);
        let ok = row.is_some_and(|r| if export { r.exportable } else { r.importable });
        if !ok {
            return Err(Error::Unsupported(format!(
                "{} cannot {} {t} handles of a {kind}",
                self.capabilities().name,
                if export { "export" } else { "import" }
            )));
        }
        Ok(())
    }

    /// Locks queue `index` for a submission.
    pub(crate) fn lock_queue(&self, index: u32) -> Result<std::sync::MutexGuard<'_, vk::Queue>> {
        let queue = self.inner.queues.get(index as usize).ok_or_else(|| {
            Error::InvalidUsage(format!(
                "queue {index} does not exist (the device has {})",
                self.inner.queues.len()
            ))
        })?;
        Ok(queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("physical", &self.inner.physical)
            .field("handle", &self.handle())
            .field("enabled", &self.inner.enabled)
            .finish()
    }
}

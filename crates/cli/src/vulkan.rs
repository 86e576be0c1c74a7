//! Choosing the Vulkan entry: the system loader when there is one (with this checkout's tether ICD
//! made visible to it), otherwise the tether ICD linked into this binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ash::vk;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The loader if it loads, else the embedded ICD.
    Auto,
    Loader,
    Embedded,
}

/// Where the Vulkan commands come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The Khronos loader, `libvulkan.so.1`, with every driver it finds.
    Loader,
    /// The tether ICD linked into this binary, called directly (no loader, no other driver).
    Embedded,
}

impl Source {
    /// The global option that makes a child `tether` process use the same source.
    pub fn flag(self) -> &'static str {
        match self {
            Source::Loader => "--loader",
            Source::Embedded => "--embedded",
        }
    }
}

/// A Vulkan entry and where it came from.
pub struct Vulkan {
    pub entry: ash::Entry,
    pub source: Source,
}

/// Whether [`notice`] writes to stderr (when stdout carries machine-readable output).
static NOTICES_TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Sends later notices (such as "using the embedded tether ICD") to stderr instead of stdout.
pub fn set_notices_to_stderr() {
    NOTICES_TO_STDERR.store(true, Ordering::Relaxed);
}

/// A line for the user about which Vulkan is used: stdout, unless stdout is for machines.
pub fn notice(line: &str) {
    if NOTICES_TO_STDERR.load(Ordering::Relaxed) {
        eprintln!("{line}");
    } else {
        say!("{line}");
    }
}

/// What [`expose_tether_icd`] did.
#[derive(Debug)]
enum Exposed {
    /// Added this manifest to `VK_ADD_DRIVER_FILES`.
    Added(PathBuf),
    /// Left out this library: the driver cargo last built for this binary's profile is newer
    /// (`cargo build` of one binary does not refresh `target/release/libtether_icd.so`).
    Stale(PathBuf),
}

static EXPOSED: OnceLock<Exposed> = OnceLock::new();

/// This checkout's ICD manifest.
fn manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/tether_icd.json")
}

/// The library a manifest names, resolved relative to the manifest as the loader does.
fn manifest_library(manifest: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let after_key = &text[text.find("\"library_path\"")? + "\"library_path\"".len()..];
    let value = after_key[after_key.find('"')? + 1..].split('"').next()?;
    let library = Path::new(value);
    Some(if library.is_absolute() {
        library.to_path_buf()
    } else {
        manifest.parent()?.join(library)
    })
}

/// Whether `library` is older than the driver cargo built next to this binary (in `deps/`).
fn older_than_this_build(library: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("deps/libtether_icd.so")))
        .and_then(|p| modified(&p));
    matches!((modified(library), built), (Some(lib), Some(built)) if lib < built)
}

/// Makes this checkout's tether ICD visible to the loader: when neither `VK_DRIVER_FILES` nor
/// `VK_ICD_FILENAMES` is set (those replace the driver list, and the user chose it), and the
/// manifest's library has been built (`cargo build --release`) and is not older than the driver
/// built with this binary, the manifest is added to `VK_ADD_DRIVER_FILES`.
///
/// Must run at the very start of `main`, before any other thread exists.
pub fn expose_tether_icd() {
    if std::env::var_os("VK_DRIVER_FILES").is_some() || std::env::var_os("VK_ICD_FILENAMES").is_some() {
        return;
    }
    let Ok(manifest) = manifest_path().canonicalize() else {
        return;
    };
    let Some(library) = manifest_library(&manifest).filter(|lib| lib.exists()) else {
        return;
    };
    if older_than_this_build(&library) {
        let _ = EXPOSED.set(Exposed::Stale(library));
        return;
    }
    let mut value = OsString::from(manifest.as_os_str());
    if let Some(existing) = std::env::var_os("VK_ADD_DRIVER_FILES").filter(|v| !v.is_empty()) {
        if std::env::split_paths(&existing).any(|p| p == manifest) {
            return;
        }
        value.push(":");
        value.push(existing);
    }
    // SAFETY: called first thing in `main`, while the process has a single thread, so nothing
    // reads the environment concurrently.
    unsafe { std::env::set_var("VK_ADD_DRIVER_FILES", &value) };
    let _ = EXPOSED.set(Exposed::Added(manifest));
}

/// The manifest [`expose_tether_icd`] added, if any.
pub fn added_manifest() -> Option<&'static Path> {
    match EXPOSED.get() {
        Some(Exposed::Added(m)) => Some(m),
        _ => None,
    }
}

/// A stale library [`expose_tether_icd`] left out, if any.
fn stale_library() -> Option<&'static Path> {
    match EXPOSED.get() {
        Some(Exposed::Stale(l)) => Some(l),
        _ => None,
    }
}

/// The loader's `vkGetInstanceProcAddr`, or why it is not there. The library stays loaded for
/// the life of the process (drivers it loads may keep threads running until exit).
fn load_loader() -> Result<vk::PFN_vkGetInstanceProcAddr, String> {
    // SAFETY: loading the Khronos loader runs its initializers, which are sound to run at any
    // point of a program.
    let lib = unsafe { libloading::Library::new("libvulkan.so.1") }.map_err(|e| e.to_string())?;
    // SAFETY: the loader exports `vkGetInstanceProcAddr` with exactly this type.
    let gipa = unsafe { lib.get::<vk::PFN_vkGetInstanceProcAddr>(b"vkGetInstanceProcAddr\0") }
        .map(|sym| *sym)
        .map_err(|e| e.to_string())?;
    std::mem::forget(lib);
    Ok(gipa)
}

/// The embedded tether ICD as a Vulkan entry.
fn embedded_entry() -> ash::Entry {
    // SAFETY: `vk_icdGetInstanceProcAddr` answers global commands for a NULL instance, as
    // `vkGetInstanceProcAddr` does, and lives as long as the program.
    unsafe {
        ash::Entry::from_static_fn(ash::StaticFn {
            get_instance_proc_addr: tether_icd::vk_icdGetInstanceProcAddr,
        })
    }
}

impl Vulkan {
    /// Opens the entry the user chose. In `Auto` mode, falls back to the embedded ICD and says
    /// so on stdout.
    pub fn open(choice: Choice) -> Result<Vulkan, String> {
        if choice == Choice::Embedded {
            return Ok(Vulkan::embedded());
        }
        match load_loader() {
            Ok(gipa) => {
                if let Some(lib) = stale_library() {
                    notice(&format!(
                        "not offering {} to the loader: it is older than the driver built with this binary \
                         (`cargo build --release` refreshes it)",
                        lib.display()
                    ));
                }
                Ok(Vulkan {
                    // SAFETY: the loader's `vkGetInstanceProcAddr`, loaded for the life of the process.
                    entry: unsafe {
                        ash::Entry::from_static_fn(ash::StaticFn {
                            get_instance_proc_addr: gipa,
                        })
                    },
                    source: Source::Loader,
                })
            }
            Err(e) if choice == Choice::Loader => Err(format!("cannot load the Vulkan loader libvulkan.so.1: {e}")),
            Err(_) => {
                notice("no Vulkan loader found: using the embedded tether ICD");
                Ok(Vulkan::embedded())
            }
        }
    }

    pub fn embedded() -> Vulkan {
        Vulkan {
            entry: embedded_entry(),
            source: Source::Embedded,
        }
    }

    /// One line about where the commands come from.
    pub fn describe(&self) -> String {
        match self.source {
            Source::Embedded => "the tether ICD linked into this binary (no loader)".to_string(),
            Source::Loader => match added_manifest() {
                Some(m) => format!(
                    "the Vulkan loader (libvulkan.so.1), tether ICD added from {}",
                    m.display()
                ),
                None => "the Vulkan loader (libvulkan.so.1)".to_string(),
            },
        }
    }
}

/// Whether a physical device is a tether device.
pub fn is_tether(name: &str) -> bool {
    name == tether_icd::objects::physical_device::DEVICE_NAME
}

/// The variable `--device` sets, so that child processes pick the same device.
pub const DEVICE_ENV: &str = "TETHER_DEVICE";

/// The part of a device name `--device` (`TETHER_DEVICE`) asked for, if any.
fn wanted_name() -> Option<String> {
    std::env::var(DEVICE_ENV).ok().filter(|s| !s.is_empty())
}

/// Whether a physical device is the one to work on: the first whose name contains the
/// `--device` text, else a tether device.
fn is_wanted(name: &str) -> bool {
    match wanted_name() {
        Some(part) => name.contains(&part),
        None => is_tether(name),
    }
}

/// The device [`is_wanted`] looks for, for messages.
fn wanted_description() -> String {
    match wanted_name() {
        Some(part) => format!("device whose name contains {part:?}"),
        None => "tether device".to_string(),
    }
}

/// The tether device opened for work: a [`tether::Device`] with up to two queues of its first
/// transfer-capable family, every external extension it offers and timeline semaphores enabled.
/// The raw `device` is for the benchmark's raw calls; it is destroyed with the last clone of
/// `shared`.
pub struct TetherDevice {
    pub vulkan: Vulkan,
    /// The physical device's name.
    pub name: String,
    pub shared: tether::Device,
    pub device: ash::Device,
    /// Two queues, or the same queue twice when the family has only one.
    pub queues: [vk::Queue; 2],
}

impl TetherDevice {
    /// Opens the tether device through the chosen entry. In `Auto` mode, when the loader finds
    /// no driver or no tether device, uses the embedded ICD (and says so).
    pub fn open(choice: Choice) -> Result<TetherDevice, String> {
        let vulkan = Vulkan::open(choice)?;
        if vulkan.source == Source::Embedded {
            return TetherDevice::open_embedded(vulkan);
        }
        let why = match tether::Instance::new(vulkan.entry.clone(), c"tether") {
            Ok(instance) => match find_wanted(&instance) {
                Ok(Some(pd)) => return TetherDevice::create(vulkan, &pd),
                Ok(None) | Err(_) => format!("the Vulkan loader sees no {}", wanted_description()),
            },
            Err(e) => format!("the Vulkan loader found no usable driver ({e})"),
        };
        if choice == Choice::Loader {
            return Err(format!(
                "{why}: build it with `cargo build --release`, set \
                 VK_DRIVER_FILES=$PWD/manifests/tether_icd.json, or leave out --loader"
            ));
        }
        notice(&format!(
            "{why} (`cargo build --release` builds libtether_icd.so): using the embedded tether ICD"
        ));
        TetherDevice::open_embedded(Vulkan::embedded())
    }

    fn open_embedded(vulkan: Vulkan) -> Result<TetherDevice, String> {
        let instance = tether::Instance::new(vulkan.entry.clone(), c"tether").map_err(|e| e.to_string())?;
        match find_wanted(&instance)? {
            Some(pd) => TetherDevice::create(vulkan, &pd),
            None => Err(format!("the embedded ICD offers no {}", wanted_description())),
        }
    }

    fn create(vulkan: Vulkan, physical: &tether::PhysicalDevice) -> Result<TetherDevice, String> {
        let Some(family) = physical
            .queue_families()
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::TRANSFER))
        else {
            return Err(format!("{} has no transfer queue family", physical.name()));
        };
        let options = tether::DeviceOptions {
            queue_family: Some(family as u32),
            queue_count: 2,
        };
        let shared = tether::Device::new(physical, options).map_err(|e| e.to_string())?;
        let last = shared.queue_count() - 1;
        let queue = |i| shared.queue(i).unwrap_or_default();
        Ok(TetherDevice {
            vulkan,
            name: physical.name().to_string(),
            device: shared.ash().clone(),
            queues: [queue(0), queue(last)],
            shared,
        })
    }

    /// Whether both Win32 extensions are enabled.
    pub fn has_win32(&self) -> bool {
        let e = self.shared.enabled_extensions();
        e.fence_win32 && e.semaphore_win32
    }

    pub fn create_fence(&self) -> Result<vk::Fence, String> {
        // SAFETY: a valid create info on a live device.
        unsafe { self.device.create_fence(&vk::FenceCreateInfo::default(), None) }
            .map_err(|e| format!("vkCreateFence: {e}"))
    }

    pub fn create_timeline(&self, initial: u64) -> Result<vk::Semaphore, String> {
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(initial);
        let info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
        // SAFETY: a valid create info on a live device with timeline semaphores enabled.
        unsafe { self.device.create_semaphore(&info, None) }.map_err(|e| format!("vkCreateSemaphore (timeline): {e}"))
    }
}

/// Host-side synchronization commands, with errors as strings.
impl TetherDevice {
    /// `vkSignalSemaphore` of a timeline.
    pub fn signal(&self, semaphore: vk::Semaphore, value: u64) -> Result<(), String> {
        let info = vk::SemaphoreSignalInfo::default().semaphore(semaphore).value(value);
        // SAFETY: a live timeline semaphore of this device.
        unsafe { self.device.signal_semaphore(&info) }.map_err(|e| format!("vkSignalSemaphore({value}): {e}"))
    }

    /// `vkWaitSemaphores` for one timeline value: `Ok(false)` on timeout.
    pub fn wait_value(&self, semaphore: vk::Semaphore, value: u64, timeout: Duration) -> Result<bool, String> {
        let semaphores = [semaphore];
        let values = [value];
        let info = vk::SemaphoreWaitInfo::default().semaphores(&semaphores).values(&values);
        // SAFETY: a live timeline semaphore of this device.
        match unsafe { self.device.wait_semaphores(&info, crate::stats::nanos(timeout)) } {
            Ok(()) => Ok(true),
            Err(vk::Result::TIMEOUT) => Ok(false),
            Err(e) => Err(format!("vkWaitSemaphores({value}): {e}")),
        }
    }

    /// `vkGetSemaphoreCounterValue`.
    pub fn counter(&self, semaphore: vk::Semaphore) -> Result<u64, String> {
        // SAFETY: a live timeline semaphore of this device.
        unsafe { self.device.get_semaphore_counter_value(semaphore) }
            .map_err(|e| format!("vkGetSemaphoreCounterValue: {e}"))
    }

    /// `vkWaitForFences` for one fence: `Ok(false)` on timeout.
    pub fn wait_fence(&self, fence: vk::Fence, timeout: Duration) -> Result<bool, String> {
        // SAFETY: a live fence of this device.
        match unsafe {
            self.device
                .wait_for_fences(&[fence], true, crate::stats::nanos(timeout))
        } {
            Ok(()) => Ok(true),
            Err(vk::Result::TIMEOUT) => Ok(false),
            Err(e) => Err(format!("vkWaitForFences: {e}")),
        }
    }

    /// `vkResetFences` of one fence.
    pub fn reset_fence(&self, fence: vk::Fence) -> Result<(), String> {
        // SAFETY: a live fence of this device, not tied to pending work (callers reset only
        // fences whose signal they have seen).
        unsafe { self.device.reset_fences(&[fence]) }.map_err(|e| format!("vkResetFences: {e}"))
    }

    /// One `vkQueueSubmit` of one batch without command buffers; values apply to timeline
    /// semaphores (give 0 for binary ones).
    pub fn submit(
        &self,
        queue: vk::Queue,
        waits: &[(vk::Semaphore, u64)],
        signals: &[(vk::Semaphore, u64)],
        fence: vk::Fence,
    ) -> Result<(), String> {
        let wait_semaphores: Vec<_> = waits.iter().map(|w| w.0).collect();
        let wait_values: Vec<_> = waits.iter().map(|w| w.1).collect();
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; waits.len()];
        let signal_semaphores: Vec<_> = signals.iter().map(|s| s.0).collect();
        let signal_values: Vec<_> = signals.iter().map(|s| s.1).collect();
        let mut values = vk::TimelineSemaphoreSubmitInfo::default()
            .wait_semaphore_values(&wait_values)
            .signal_semaphore_values(&signal_values);
        let info = vk::SubmitInfo::default()
            .wait_semaphores(&wait_semaphores)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(&signal_semaphores)
            .push_next(&mut values);
        // SAFETY: every handle is a live object of this device; the caller guarantees binary
        // waits have their signal submitted (in this process or another one sharing the payload).
        unsafe { self.device.queue_submit(queue, &[info], fence) }.map_err(|e| format!("vkQueueSubmit: {e}"))
    }
}

/// The first tether physical device of an instance (or, with `--device`, the first whose name
/// contains its text).
fn find_wanted(instance: &tether::Instance) -> Result<Option<tether::PhysicalDevice>, String> {
    let devices = instance.physical_devices().map_err(|e| e.to_string())?;
    Ok(devices.into_iter().find(|pd| is_wanted(pd.name())))
}

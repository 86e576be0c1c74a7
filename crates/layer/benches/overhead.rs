//! What `VK_LAYER_TETHER_win32_sync` adds on a real driver, measured in one run.
//!
//! Two instances on the same physical device: one with the layer enabled (its device uses the
//! Win32 commands the layer provides), one plain (its device uses the driver's own fd commands).
//! Every measurement alternates between the two call by call (the order flips every iteration),
//! so both see the same machine state:
//!
//! | measurement | with the layer | the driver alone |
//! |---|---|---|
//! | fence export | `vkGetFenceWin32HandleKHR(OPAQUE_WIN32)` | `vkGetFenceFdKHR(OPAQUE_FD)` |
//! | timeline export | `vkGetSemaphoreWin32HandleKHR(OPAQUE_WIN32)` | `vkGetSemaphoreFdKHR(OPAQUE_FD)` |
//! | fence import | `vkImportFenceWin32HandleKHR` of an NT handle | `vkImportFenceFdKHR` of a `dup` of an fd |
//! | timeline import | `vkImportSemaphoreWin32HandleKHR` of an NT handle | `vkImportSemaphoreFdKHR` of a `dup` |
//! | signal -> wait | `vkSignalSemaphore` of a timeline, `vkWaitSemaphores` on the timeline that imported it | the same |
//!
//! Each export is of a new object (an NT handle is exported once per object), each import into a
//! new object; creating and destroying them, closing handles and the `dup` are outside the timed
//! call. The overhead is the difference of the medians over the driver's median; the budget is 5%
//! for export and import and 2% for signal -> wait.
//!
//! Run it where the layer is found: `VK_ADD_LAYER_PATH` naming a directory with a manifest whose
//! `library_path` is absolute (the layer is enabled on one instance only, by name), e.g.
//!
//! ```sh
//! cargo build --release -p tether-layer
//! mkdir -p /tmp/layer && sed "s|../target/release/|$PWD/target/release/|" manifests/tether_layer.json > /tmp/layer/tether_layer.json
//! VK_ADD_LAYER_PATH=/tmp/layer cargo bench -p tether-layer --bench overhead -- --iterations 2000
//! ```
//!
//! Options: `--iterations N` (export and import; signal -> wait runs 10 N), `--device NAME` (the
//! first device whose name contains NAME; default: the first that is not the tether device).

use std::ffi::{CStr, c_char};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::Instant;

use ash::vk;

const LAYER: &CStr = c"VK_LAYER_TETHER_win32_sync";
const TETHER_DEVICE: &str = "tether CPU";
const WAIT_NS: u64 = 5_000_000_000;

type Result<T> = std::result::Result<T, String>;

fn vk_err(what: &'static str) -> impl Fn(vk::Result) -> String {
    move |e| format!("{what}: {e}")
}

/// One instance and one device on the chosen physical device.
struct Side {
    instance: ash::Instance,
    device: ash::Device,
    /// Win32 commands (layer side) or fd commands (driver side).
    fence_win32: Option<ash::khr::external_fence_win32::Device>,
    semaphore_win32: Option<ash::khr::external_semaphore_win32::Device>,
    fence_fd: Option<ash::khr::external_fence_fd::Device>,
    semaphore_fd: Option<ash::khr::external_semaphore_fd::Device>,
}

impl Side {
    fn new(
        entry: &ash::Entry,
        layer: bool,
        device_name: Option<&str>,
        uuid: Option<[u8; 16]>,
    ) -> Result<(Side, [u8; 16], String)> {
        let app = vk::ApplicationInfo::default()
            .application_name(c"tether-layer-overhead")
            .api_version(vk::API_VERSION_1_2);
        let layers: Vec<*const c_char> = if layer { vec![LAYER.as_ptr()] } else { Vec::new() };
        let info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layers);
        // SAFETY: a valid create info.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|e| {
            format!(
                "vkCreateInstance ({}): {e}{}",
                if layer { "with the layer" } else { "plain" },
                if layer {
                    " (is VK_ADD_LAYER_PATH set to the layer manifest's directory?)"
                } else {
                    ""
                }
            )
        })?;
        // SAFETY: a live instance.
        let devices = unsafe { instance.enumerate_physical_devices() }.map_err(vk_err("vkEnumeratePhysicalDevices"))?;
        let mut chosen = None;
        for pd in devices {
            let mut id = vk::PhysicalDeviceIDProperties::default();
            let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
            // SAFETY: a physical device of this instance, valid output structures.
            unsafe { instance.get_physical_device_properties2(pd, &mut props) };
            let name = props
                .properties
                .device_name_as_c_str()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let wanted = match (uuid, device_name) {
                (Some(u), _) => id.device_uuid == u,
                (None, Some(part)) => name.contains(part),
                (None, None) => name != TETHER_DEVICE,
            };
            if wanted {
                chosen = Some((pd, id.device_uuid, name));
                break;
            }
        }
        let Some((pd, uuid, name)) = chosen else {
            // SAFETY: nothing was made from the instance.
            unsafe { instance.destroy_instance(None) };
            return Err("no matching physical device".into());
        };
        let (fence_ext, semaphore_ext) = if layer {
            (
                ash::khr::external_fence_win32::NAME,
                ash::khr::external_semaphore_win32::NAME,
            )
        } else {
            (ash::khr::external_fence_fd::NAME, ash::khr::external_semaphore_fd::NAME)
        };
        // SAFETY: a physical device of this instance.
        let offered = unsafe { instance.enumerate_device_extension_properties(pd) }
            .map_err(vk_err("vkEnumerateDeviceExtensionProperties"))?;
        for ext in [fence_ext, semaphore_ext] {
            if !offered.iter().any(|e| e.extension_name_as_c_str() == Ok(ext)) {
                return Err(format!(
                    "{name} does not offer {ext:?} on the {} instance",
                    if layer { "layer" } else { "plain" }
                ));
            }
        }
        let extensions = [fence_ext.as_ptr(), semaphore_ext.as_ptr()];
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&extensions)
            .push_next(&mut timeline);
        // SAFETY: a valid create info for a physical device of this instance.
        let device = unsafe { instance.create_device(pd, &info, None) }.map_err(vk_err("vkCreateDevice"))?;
        let side = Side {
            fence_win32: layer.then(|| ash::khr::external_fence_win32::Device::new(&instance, &device)),
            semaphore_win32: layer.then(|| ash::khr::external_semaphore_win32::Device::new(&instance, &device)),
            fence_fd: (!layer).then(|| ash::khr::external_fence_fd::Device::new(&instance, &device)),
            semaphore_fd: (!layer).then(|| ash::khr::external_semaphore_fd::Device::new(&instance, &device)),
            instance,
            device,
        };
        Ok((side, uuid, name))
    }

    fn layer(&self) -> bool {
        self.fence_win32.is_some()
    }

    fn fence_type(&self) -> vk::ExternalFenceHandleTypeFlags {
        if self.layer() {
            vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32
        } else {
            vk::ExternalFenceHandleTypeFlags::OPAQUE_FD
        }
    }

    fn semaphore_type(&self) -> vk::ExternalSemaphoreHandleTypeFlags {
        if self.layer() {
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32
        } else {
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD
        }
    }

    fn fence(&self, exportable: bool) -> Result<vk::Fence> {
        let mut export = vk::ExportFenceCreateInfo::default().handle_types(self.fence_type());
        let mut info = vk::FenceCreateInfo::default();
        if exportable {
            info = info.push_next(&mut export);
        }
        // SAFETY: a valid create info on a live device.
        unsafe { self.device.create_fence(&info, None) }.map_err(vk_err("vkCreateFence"))
    }

    fn timeline(&self, exportable: bool) -> Result<vk::Semaphore> {
        let mut export = vk::ExportSemaphoreCreateInfo::default().handle_types(self.semaphore_type());
        let mut ty = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
        let mut info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
        if exportable {
            info = info.push_next(&mut export);
        }
        // SAFETY: a valid create info on a live device with timeline semaphores enabled.
        unsafe { self.device.create_semaphore(&info, None) }.map_err(vk_err("vkCreateSemaphore"))
    }

    fn destroy_fence(&self, fence: vk::Fence) {
        // SAFETY: a fence of this device with no pending work.
        unsafe { self.device.destroy_fence(fence, None) };
    }

    fn destroy_semaphore(&self, semaphore: vk::Semaphore) {
        // SAFETY: a semaphore of this device with no pending work.
        unsafe { self.device.destroy_semaphore(semaphore, None) };
    }

    /// Exports a fence (the timed call); the handle is an fd the caller owns either way.
    fn export_fence(&self, fence: vk::Fence) -> Result<(u64, OwnedFd)> {
        let raw = if let Some(w) = &self.fence_win32 {
            let info = vk::FenceGetWin32HandleInfoKHR::default()
                .fence(fence)
                .handle_type(self.fence_type());
            let start = Instant::now();
            // SAFETY: a fence created exportable as OPAQUE_WIN32.
            let r = unsafe { w.get_fence_win32_handle(&info) };
            let ns = elapsed(start);
            (ns, r.map_err(vk_err("vkGetFenceWin32HandleKHR"))? as i32)
        } else {
            let f = self.fence_fd.as_ref().ok_or("no fd commands")?;
            let info = vk::FenceGetFdInfoKHR::default()
                .fence(fence)
                .handle_type(self.fence_type());
            let start = Instant::now();
            // SAFETY: a fence created exportable as OPAQUE_FD.
            let r = unsafe { f.get_fence_fd(&info) };
            let ns = elapsed(start);
            (ns, r.map_err(vk_err("vkGetFenceFdKHR"))?)
        };
        // SAFETY: an export returns a new fd the caller owns (an NT handle is an fd here).
        Ok((raw.0, unsafe { OwnedFd::from_raw_fd(raw.1) }))
    }

    fn export_semaphore(&self, semaphore: vk::Semaphore) -> Result<(u64, OwnedFd)> {
        let raw = if let Some(w) = &self.semaphore_win32 {
            let info = vk::SemaphoreGetWin32HandleInfoKHR::default()
                .semaphore(semaphore)
                .handle_type(self.semaphore_type());
            let start = Instant::now();
            // SAFETY: a semaphore created exportable as OPAQUE_WIN32.
            let r = unsafe { w.get_semaphore_win32_handle(&info) };
            let ns = elapsed(start);
            (ns, r.map_err(vk_err("vkGetSemaphoreWin32HandleKHR"))? as i32)
        } else {
            let f = self.semaphore_fd.as_ref().ok_or("no fd commands")?;
            let info = vk::SemaphoreGetFdInfoKHR::default()
                .semaphore(semaphore)
                .handle_type(self.semaphore_type());
            let start = Instant::now();
            // SAFETY: a semaphore created exportable as OPAQUE_FD.
            let r = unsafe { f.get_semaphore_fd(&info) };
            let ns = elapsed(start);
            (ns, r.map_err(vk_err("vkGetSemaphoreFdKHR"))?)
        };
        // SAFETY: as in `export_fence`.
        Ok((raw.0, unsafe { OwnedFd::from_raw_fd(raw.1) }))
    }

    /// Imports `handle` permanently into `fence` (the timed call). The layer borrows the NT
    /// handle; the driver takes a `dup` of the fd (made before the clock starts).
    fn import_fence(&self, fence: vk::Fence, handle: &OwnedFd) -> Result<u64> {
        if let Some(w) = &self.fence_win32 {
            let info = vk::ImportFenceWin32HandleInfoKHR::default()
                .fence(fence)
                .handle_type(self.fence_type())
                .handle(handle.as_raw_fd() as vk::HANDLE);
            let start = Instant::now();
            // SAFETY: a valid import of an NT handle the caller keeps.
            let r = unsafe { w.import_fence_win32_handle(&info) };
            let ns = elapsed(start);
            r.map_err(vk_err("vkImportFenceWin32HandleKHR"))?;
            Ok(ns)
        } else {
            let f = self.fence_fd.as_ref().ok_or("no fd commands")?;
            let dup = rustix::io::fcntl_dupfd_cloexec(handle, 3).map_err(|e| format!("dup: {e}"))?;
            let raw = dup.into_raw_fd();
            let info = vk::ImportFenceFdInfoKHR::default()
                .fence(fence)
                .handle_type(self.fence_type())
                .fd(raw);
            let start = Instant::now();
            // SAFETY: a valid import; on success the driver owns the fd.
            let r = unsafe { f.import_fence_fd(&info) };
            let ns = elapsed(start);
            if r.is_err() {
                // SAFETY: the driver did not take it.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
            }
            r.map_err(vk_err("vkImportFenceFdKHR"))?;
            Ok(ns)
        }
    }

    fn import_semaphore(&self, semaphore: vk::Semaphore, handle: &OwnedFd) -> Result<u64> {
        if let Some(w) = &self.semaphore_win32 {
            let info = vk::ImportSemaphoreWin32HandleInfoKHR::default()
                .semaphore(semaphore)
                .handle_type(self.semaphore_type())
                .handle(handle.as_raw_fd() as vk::HANDLE);
            let start = Instant::now();
            // SAFETY: a valid import of an NT handle the caller keeps.
            let r = unsafe { w.import_semaphore_win32_handle(&info) };
            let ns = elapsed(start);
            r.map_err(vk_err("vkImportSemaphoreWin32HandleKHR"))?;
            Ok(ns)
        } else {
            let f = self.semaphore_fd.as_ref().ok_or("no fd commands")?;
            let dup = rustix::io::fcntl_dupfd_cloexec(handle, 3).map_err(|e| format!("dup: {e}"))?;
            let raw = dup.into_raw_fd();
            let info = vk::ImportSemaphoreFdInfoKHR::default()
                .semaphore(semaphore)
                .handle_type(self.semaphore_type())
                .fd(raw);
            let start = Instant::now();
            // SAFETY: a valid import; on success the driver owns the fd.
            let r = unsafe { f.import_semaphore_fd(&info) };
            let ns = elapsed(start);
            if r.is_err() {
                // SAFETY: the driver did not take it.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
            }
            r.map_err(vk_err("vkImportSemaphoreFdKHR"))?;
            Ok(ns)
        }
    }

    /// Host signal of `value` on `exporter`, then a wait for it on `importer` (timed together).
    fn signal_wait(&self, exporter: vk::Semaphore, importer: vk::Semaphore, value: u64) -> Result<u64> {
        let signal = vk::SemaphoreSignalInfo::default().semaphore(exporter).value(value);
        let semaphores = [importer];
        let values = [value];
        let wait = vk::SemaphoreWaitInfo::default().semaphores(&semaphores).values(&values);
        let start = Instant::now();
        // SAFETY: timeline semaphores of this device; `importer` shares `exporter`'s payload.
        let r = unsafe {
            self.device
                .signal_semaphore(&signal)
                .and_then(|()| self.device.wait_semaphores(&wait, WAIT_NS))
        };
        let ns = elapsed(start);
        r.map_err(vk_err("vkSignalSemaphore / vkWaitSemaphores"))?;
        Ok(ns)
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        // SAFETY: everything made on the device was destroyed; the device, then the instance.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

fn elapsed(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Samples of one measurement on both sides.
struct Measurement {
    name: &'static str,
    budget_percent: f64,
    layer: Vec<u64>,
    driver: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn micros(ns: u64) -> String {
    format!("{:.2} us", ns as f64 / 1000.0)
}

/// Runs `iterations` (plus `warmup` unrecorded) of `f(side)` on both sides, alternating which
/// goes first.
fn interleaved(
    sides: [&Side; 2],
    warmup: usize,
    iterations: usize,
    mut f: impl FnMut(&Side, usize) -> Result<u64>,
) -> Result<(Vec<u64>, Vec<u64>)> {
    let mut layer = Vec::with_capacity(iterations);
    let mut driver = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for s in order {
            let ns = f(sides[s], i)?;
            if i >= warmup {
                if sides[s].layer() { &mut layer } else { &mut driver }.push(ns);
            }
        }
    }
    Ok((layer, driver))
}

fn run() -> Result<()> {
    let mut iterations = 2000usize;
    let mut device_name: Option<String> = std::env::var("TETHER_BENCH_DEVICE").ok().filter(|s| !s.is_empty());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => {
                iterations = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--iterations takes a positive number")?;
            }
            "--device" => device_name = Some(args.next().ok_or("--device takes a name")?),
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?} (--iterations N, --device NAME)")),
        }
    }
    // SAFETY: loading the system loader runs its initialisers, nothing else.
    let entry = unsafe { ash::Entry::load() }.map_err(|e| format!("no Vulkan loader (libvulkan.so.1): {e}"))?;
    let (layer, uuid, name) = Side::new(&entry, true, device_name.as_deref(), None)?;
    let (driver, _, _) = Side::new(&entry, false, None, Some(uuid))?;
    println!(
        "device {name:?}; {iterations} iterations of export and import, {} of signal -> wait, alternating call by call \
         between a device of an instance with {} and a device of a plain instance",
        10 * iterations,
        LAYER.to_string_lossy()
    );
    let sides = [&layer, &driver];
    let warmup = 50;
    let mut results = Vec::new();

    let (l, d) = interleaved(sides, warmup, iterations, |s, _| {
        let fence = s.fence(true)?;
        let (ns, handle) = s.export_fence(fence)?;
        drop(handle);
        s.destroy_fence(fence);
        Ok(ns)
    })?;
    results.push(Measurement {
        name: "fence export",
        budget_percent: 5.0,
        layer: l,
        driver: d,
    });

    let (l, d) = interleaved(sides, warmup, iterations, |s, _| {
        let semaphore = s.timeline(true)?;
        let (ns, handle) = s.export_semaphore(semaphore)?;
        drop(handle);
        s.destroy_semaphore(semaphore);
        Ok(ns)
    })?;
    results.push(Measurement {
        name: "timeline export",
        budget_percent: 5.0,
        layer: l,
        driver: d,
    });

    // One exporter per side for the imports.
    let fence_exporters = [layer.fence(true)?, driver.fence(true)?];
    let fence_handles = [
        layer.export_fence(fence_exporters[0])?.1,
        driver.export_fence(fence_exporters[1])?.1,
    ];
    let (l, d) = interleaved(sides, warmup, iterations, |s, _| {
        let k = usize::from(!s.layer());
        let fence = s.fence(false)?;
        let ns = s.import_fence(fence, &fence_handles[k])?;
        s.destroy_fence(fence);
        Ok(ns)
    })?;
    results.push(Measurement {
        name: "fence import",
        budget_percent: 5.0,
        layer: l,
        driver: d,
    });

    let semaphore_exporters = [layer.timeline(true)?, driver.timeline(true)?];
    let semaphore_handles = [
        layer.export_semaphore(semaphore_exporters[0])?.1,
        driver.export_semaphore(semaphore_exporters[1])?.1,
    ];
    let (l, d) = interleaved(sides, warmup, iterations, |s, _| {
        let k = usize::from(!s.layer());
        let semaphore = s.timeline(false)?;
        let ns = s.import_semaphore(semaphore, &semaphore_handles[k])?;
        s.destroy_semaphore(semaphore);
        Ok(ns)
    })?;
    results.push(Measurement {
        name: "timeline import",
        budget_percent: 5.0,
        layer: l,
        driver: d,
    });

    // The imported timelines of the signal -> wait loop.
    let importers = [layer.timeline(false)?, driver.timeline(false)?];
    layer.import_semaphore(importers[0], &semaphore_handles[0])?;
    driver.import_semaphore(importers[1], &semaphore_handles[1])?;
    let (l, d) = interleaved(sides, warmup * 10, iterations * 10, |s, i| {
        let k = usize::from(!s.layer());
        s.signal_wait(semaphore_exporters[k], importers[k], i as u64 + 1)
    })?;
    results.push(Measurement {
        name: "signal -> wait (imported timeline)",
        budget_percent: 2.0,
        layer: l,
        driver: d,
    });

    for (s, k) in [(&layer, 0), (&driver, 1)] {
        s.destroy_semaphore(importers[k]);
        s.destroy_semaphore(semaphore_exporters[k]);
        s.destroy_fence(fence_exporters[k]);
    }

    println!();
    println!(
        "| measurement | n | layer p50 | layer p99 | driver p50 | driver p99 | layer - driver (p50) | overhead (p50) | budget |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut over = Vec::new();
    for m in &mut results {
        m.layer.sort_unstable();
        m.driver.sort_unstable();
        let (lp50, dp50) = (percentile(&m.layer, 50.0), percentile(&m.driver, 50.0));
        let diff = lp50 as f64 - dp50 as f64;
        let overhead = 100.0 * diff / dp50.max(1) as f64;
        let verdict = if overhead <= m.budget_percent { "within" } else { "OVER" };
        if overhead > m.budget_percent {
            over.push(m.name);
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {:+.2} us | {overhead:+.2}% | {}% ({verdict}) |",
            m.name,
            m.layer.len(),
            micros(lp50),
            micros(percentile(&m.layer, 99.0)),
            micros(dp50),
            micros(percentile(&m.driver, 99.0)),
            diff / 1000.0,
            m.budget_percent
        );
    }
    println!();
    if over.is_empty() {
        println!("every measurement is within its budget");
    } else {
        println!("over budget: {}", over.join(", "));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overhead: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

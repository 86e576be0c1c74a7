//! Smoke test of `VK_LAYER_TETHER_win32_sync` through the system's Vulkan loader.
//!
//! It builds nothing itself: it expects `libtether_layer.so`, `libtether_icd.so` and
//! `tether-broker` in `target/<profile>/` or its `deps/` (`cargo test -p tether-layer` leaves a
//! fresh layer there; the other two come from `cargo build -p tether-icd -p tether-handles`, or
//! `--release`), taking the newest copy of each. It writes manifests with absolute library paths to a
//! temporary directory and re-runs this test binary as a child (role in `TETHER_LAYER_SMOKE_ROLE`)
//! with the layer enabled over the tether ICD:
//!
//! * `emulated`: `TETHER_ICD_HANDLES=fd`, so the ICD has only the fd types and the layer provides
//!   both Win32 extensions (as on NVIDIA or Mesa);
//! * `native`: the full ICD, which has the Win32 extensions itself, so the layer must pass them
//!   through.
//!
//! Without a loader or the built libraries the tests print why they skip (and fail when
//! `CI=true`).

use std::ffi::{CStr, c_void};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use ash::vk;

const ROLE: &str = "TETHER_LAYER_SMOKE_ROLE";
const LAYER: &CStr = c"VK_LAYER_TETHER_win32_sync";
const LONG_NS: u64 = 10_000_000_000;

// ---------------------------------------------------------------------------------------------
// The parent side.

/// `target/<profile>/`: the test binary lives in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_path_buf()
}

/// The newest of `target/<profile>/<name>` and `target/<profile>/deps/<name>` (a test build
/// leaves this crate's fresh cdylib in `deps/` without copying it up).
fn built(name: &str) -> Option<PathBuf> {
    let dir = profile_dir();
    [dir.join(name), dir.join("deps").join(name)]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max_by_key(|(time, _)| *time)
        .map(|(_, p)| p)
}

fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("cannot run the layer smoke test under CI: {why}");
    }
    eprintln!("skipping the layer smoke test: {why}");
}

fn loader_present() -> bool {
    // SAFETY: loading the system loader library runs its initialisers, nothing else.
    unsafe { ash::Entry::load() }.is_ok()
}

fn run_child(role: &str) {
    if !loader_present() {
        return skip("no Vulkan loader (libvulkan.so.1) is installed");
    }
    let (Some(layer), Some(icd), Some(broker)) = (
        built("libtether_layer.so"),
        built("libtether_icd.so"),
        built("tether-broker"),
    ) else {
        return skip(&format!(
            "libtether_layer.so, libtether_icd.so or tether-broker is missing from {} \
             (build them first: cargo build -p tether-layer -p tether-icd -p tether-handles)",
            profile_dir().display()
        ));
    };
    let tmp = std::env::temp_dir().join(format!("tether-layer-smoke-{}-{role}", std::process::id()));
    let runtime = tmp.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let layer_manifest = include_str!("../../../manifests/tether_layer.json")
        .replace("../target/release/libtether_layer.so", layer.to_str().unwrap());
    let icd_manifest = include_str!("../../../manifests/tether_icd.json")
        .replace("../target/release/libtether_icd.so", icd.to_str().unwrap());
    let layer_dir = tmp.join("layers");
    std::fs::create_dir_all(&layer_dir).unwrap();
    std::fs::write(layer_dir.join("tether_layer.json"), layer_manifest).unwrap();
    std::fs::write(tmp.join("tether_icd.json"), icd_manifest).unwrap();

    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("VK_DRIVER_FILES", tmp.join("tether_icd.json"))
        .env("VK_ADD_LAYER_PATH", &layer_dir)
        .env("VK_INSTANCE_LAYERS", LAYER.to_str().unwrap())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("TETHER_BROKER", &broker)
        .env("TETHER_LOG", "1")
        .env_remove("VK_ICD_FILENAMES")
        .env_remove("VK_LOADER_LAYERS_ENABLE")
        .env_remove("VK_LOADER_LAYERS_DISABLE")
        .env_remove("TETHER_WIN32_SYNC_DISABLE");
    if role == "emulated" {
        cmd.env("TETHER_ICD_HANDLES", "fd");
    } else {
        cmd.env_remove("TETHER_ICD_HANDLES");
    }
    let out = cmd.output().expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        out.status.success() && stdout.contains("SMOKE OK"),
        "child ({role}) failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    eprintln!("{stderr}");
}

#[test]
fn layer_over_fd_only_icd() {
    run_child("emulated");
}

#[test]
fn layer_passes_through_a_driver_with_win32() {
    run_child("native");
}

/// The child's entry point (a no-op unless the parent set the role).
#[test]
fn child() {
    if let Ok(role) = std::env::var(ROLE) {
        Smoke::new(role == "emulated").run();
        println!("SMOKE OK");
    }
}

// ---------------------------------------------------------------------------------------------
// The child side.

static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "system" fn record(
    _severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    _user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the loader passes valid callback data for the duration of the call.
    let data = unsafe { &*data };
    // SAFETY: as above; the strings are NUL-terminated or NULL.
    let (id, text) = unsafe {
        (
            data.message_id_name_as_c_str()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            data.message_as_c_str()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        )
    };
    if std::env::var_os("TETHER_LAYER_SMOKE_VERBOSE").is_some() {
        eprintln!("debug-utils: {id}: {text}");
    }
    MESSAGES.lock().unwrap().push(format!("{id}: {text}"));
    vk::FALSE
}

fn take_messages() -> Vec<String> {
    std::mem::take(&mut *MESSAGES.lock().unwrap())
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// `SECURITY_ATTRIBUTES` on LP64 Linux.
#[repr(C)]
struct SecurityAttributes {
    length: u32,
    descriptor: *mut c_void,
    inherit: i32,
}

fn is_inheritable(handle: isize) -> bool {
    // SAFETY: the handle is an fd this process owns, open for the call.
    let fd = unsafe { BorrowedFd::borrow_raw(handle as i32) };
    !rustix::io::fcntl_getfd(fd)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC)
}

fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD on any number is harmless.
    rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(fd) }).is_ok()
}

fn close(handle: isize) {
    // SAFETY: the caller owns the handle and gives it up.
    drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(handle as i32) });
}

struct Smoke {
    emulated: bool,
    /// The device is the tether ICD (not some other driver the test was pointed at).
    tether: bool,
    _entry: ash::Entry,
    instance: ash::Instance,
    pd: vk::PhysicalDevice,
    device: ash::Device,
    queue: vk::Queue,
    fence_win32: ash::khr::external_fence_win32::Device,
    semaphore_win32: ash::khr::external_semaphore_win32::Device,
    debug: ash::ext::debug_utils::Instance,
    messenger: vk::DebugUtilsMessengerEXT,
    pid: u32,
}

impl Smoke {
    fn new(emulated: bool) -> Smoke {
        // SAFETY: loading the system loader.
        let entry = unsafe { ash::Entry::load() }.expect("Vulkan loader");
        let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_2);
        let exts = [ash::ext::debug_utils::NAME.as_ptr()];
        let ci = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_extension_names(&exts);
        // SAFETY: a valid create info.
        let instance = unsafe { entry.create_instance(&ci, None) }.expect("vkCreateInstance");
        let debug = ash::ext::debug_utils::Instance::new(&entry, &instance);
        let mci = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::WARNING | vk::DebugUtilsMessageSeverityFlagsEXT::ERROR,
            )
            .message_type(vk::DebugUtilsMessageTypeFlagsEXT::GENERAL | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION)
            .pfn_user_callback(Some(record));
        // SAFETY: a valid create info; the callback is a plain function.
        let messenger = unsafe { debug.create_debug_utils_messenger(&mci, None) }.expect("messenger");
        // SAFETY: a live instance.
        let pds = unsafe { instance.enumerate_physical_devices() }.unwrap();
        let pd = *pds.first().expect("a physical device");
        // SAFETY: a live physical device.
        let props = unsafe { instance.get_physical_device_properties(pd) };
        let tether = props.device_name_as_c_str() == Ok(c"tether CPU");

        // The layer's own extension list, and the full one.
        let mut n = 0;
        // SAFETY: a count query for this layer's name.
        let r = unsafe {
            (instance.fp_v1_0().enumerate_device_extension_properties)(pd, LAYER.as_ptr(), &mut n, std::ptr::null_mut())
        };
        assert_eq!(r, vk::Result::SUCCESS);
        let mut ours = vec![vk::ExtensionProperties::default(); n as usize];
        // SAFETY: room for `n`.
        let r = unsafe {
            (instance.fp_v1_0().enumerate_device_extension_properties)(pd, LAYER.as_ptr(), &mut n, ours.as_mut_ptr())
        };
        assert_eq!(r, vk::Result::SUCCESS);
        let names = |list: &[vk::ExtensionProperties]| -> Vec<String> {
            list.iter()
                .map(|e| e.extension_name_as_c_str().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let ours = names(&ours);
        assert_eq!(
            ours,
            ["VK_KHR_external_fence_win32", "VK_KHR_external_semaphore_win32"],
            "the layer's own device extensions"
        );
        // SAFETY: a live physical device.
        let all = names(&unsafe { instance.enumerate_device_extension_properties(pd) }.unwrap());
        for e in ["VK_KHR_external_fence_win32", "VK_KHR_external_semaphore_win32"] {
            assert_eq!(all.iter().filter(|n| *n == e).count(), 1, "{e} once in {all:?}");
        }

        let queue_info = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&[1.0])];
        let dev_exts = [
            ash::khr::external_fence_win32::NAME.as_ptr(),
            ash::khr::external_semaphore_win32::NAME.as_ptr(),
        ];
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
        let dci = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_info)
            .enabled_extension_names(&dev_exts)
            .push_next(&mut timeline);
        // SAFETY: a valid create info.
        let device =
            unsafe { instance.create_device(pd, &dci, None) }.expect("vkCreateDevice with the Win32 extensions");
        // SAFETY: queue 0 of family 0 exists.
        let queue = unsafe { device.get_device_queue(0, 0) };
        for name in [
            c"vkGetFenceWin32HandleKHR",
            c"vkImportFenceWin32HandleKHR",
            c"vkGetSemaphoreWin32HandleKHR",
            c"vkImportSemaphoreWin32HandleKHR",
        ] {
            // SAFETY: a live device and a NUL-terminated name.
            let f = unsafe { instance.get_device_proc_addr(device.handle(), name.as_ptr()) };
            assert!(f.is_some(), "{name:?} through vkGetDeviceProcAddr");
        }
        let fence_win32 = ash::khr::external_fence_win32::Device::new(&instance, &device);
        let semaphore_win32 = ash::khr::external_semaphore_win32::Device::new(&instance, &device);
        Smoke {
            emulated,
            tether,
            _entry: entry,
            instance,
            pd,
            device,
            queue,
            fence_win32,
            semaphore_win32,
            debug,
            messenger,
            pid: std::process::id(),
        }
    }

    fn run(self) {
        self.capabilities();
        self.fence_nt();
        self.fence_kmt_and_name();
        self.timeline_nt();
        self.d3d12();
        self.bad_handles();
        self.read_only_access();
        // No device loss anywhere.
        // SAFETY: a live device.
        unsafe { self.device.device_wait_idle() }.expect("device still alive");
        // SAFETY: everything made here, destroyed once.
        unsafe {
            self.device.destroy_device(None);
            self.debug.destroy_debug_utils_messenger(self.messenger, None);
            self.instance.destroy_instance(None);
        }
    }

    fn capabilities(&self) {
        let fence = |ty| {
            let info = vk::PhysicalDeviceExternalFenceInfo::default().handle_type(ty);
            let mut props = vk::ExternalFenceProperties::default();
            // SAFETY: valid structures.
            unsafe {
                self.instance
                    .get_physical_device_external_fence_properties(self.pd, &info, &mut props)
            };
            props
        };
        let semaphore = |ty, timeline: bool| {
            let mut type_info = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
            let mut info = vk::PhysicalDeviceExternalSemaphoreInfo::default().handle_type(ty);
            if timeline {
                info = info.push_next(&mut type_info);
            }
            let mut props = vk::ExternalSemaphoreProperties::default();
            // SAFETY: valid structures.
            unsafe {
                self.instance
                    .get_physical_device_external_semaphore_properties(self.pd, &info, &mut props)
            };
            props
        };
        let both_f = vk::ExternalFenceFeatureFlags::EXPORTABLE | vk::ExternalFenceFeatureFlags::IMPORTABLE;
        let both_s = vk::ExternalSemaphoreFeatureFlags::EXPORTABLE | vk::ExternalSemaphoreFeatureFlags::IMPORTABLE;
        for ty in [
            vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32,
            vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT,
        ] {
            let p = fence(ty);
            assert!(p.external_fence_features.contains(both_f), "fence {ty:?}: {p:?}");
            assert!(
                p.compatible_handle_types
                    .contains(ty | vk::ExternalFenceHandleTypeFlags::OPAQUE_FD)
            );
        }
        let p = fence(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD);
        assert!(
            p.compatible_handle_types
                .contains(vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32)
        );
        for timeline in [false, true] {
            for ty in [
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT,
            ] {
                let p = semaphore(ty, timeline);
                assert!(
                    p.external_semaphore_features.contains(both_s),
                    "{ty:?} timeline={timeline}"
                );
                assert!(p.compatible_handle_types.contains(ty));
            }
        }
        let p = semaphore(vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE, true);
        assert!(
            p.external_semaphore_features.contains(both_s),
            "timeline D3D12_FENCE: {p:?}"
        );
        assert!(
            p.compatible_handle_types
                .contains(vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE)
        );
        if self.emulated {
            let p = semaphore(vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE, false);
            assert!(
                p.external_semaphore_features.is_empty(),
                "binary D3D12_FENCE is not offered by the layer"
            );
            assert!(
                semaphore(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD, true)
                    .compatible_handle_types
                    .contains(vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE)
            );
        }
    }

    fn fence(
        &self,
        types: vk::ExternalFenceHandleTypeFlags,
        win32: Option<&vk::ExportFenceWin32HandleInfoKHR<'_>>,
    ) -> vk::Fence {
        let mut export = vk::ExportFenceCreateInfo::default().handle_types(types);
        let mut win32 = win32.copied();
        let mut ci = vk::FenceCreateInfo::default();
        if !types.is_empty() {
            ci = ci.push_next(&mut export);
        }
        if let Some(w) = win32.as_mut() {
            ci = ci.push_next(w);
        }
        // SAFETY: a valid create info.
        unsafe { self.device.create_fence(&ci, None) }.expect("vkCreateFence")
    }

    fn semaphore(
        &self,
        types: vk::ExternalSemaphoreHandleTypeFlags,
        timeline: bool,
        win32: Option<&vk::ExportSemaphoreWin32HandleInfoKHR<'_>>,
    ) -> vk::Semaphore {
        let mut export = vk::ExportSemaphoreCreateInfo::default().handle_types(types);
        let mut type_info = vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
        let mut win32 = win32.copied();
        let mut ci = vk::SemaphoreCreateInfo::default();
        if !types.is_empty() {
            ci = ci.push_next(&mut export);
        }
        if timeline {
            ci = ci.push_next(&mut type_info);
        }
        if let Some(w) = win32.as_mut() {
            ci = ci.push_next(w);
        }
        // SAFETY: a valid create info.
        unsafe { self.device.create_semaphore(&ci, None) }.expect("vkCreateSemaphore")
    }

    fn get_fence(&self, fence: vk::Fence, ty: vk::ExternalFenceHandleTypeFlags) -> Result<isize, vk::Result> {
        let info = vk::FenceGetWin32HandleInfoKHR::default().fence(fence).handle_type(ty);
        // SAFETY: a valid info.
        unsafe { self.fence_win32.get_fence_win32_handle(&info) }
    }

    fn import_fence(
        &self,
        fence: vk::Fence,
        ty: vk::ExternalFenceHandleTypeFlags,
        handle: isize,
        name: Option<&[u16]>,
        temporary: bool,
    ) -> Result<(), vk::Result> {
        let mut info = vk::ImportFenceWin32HandleInfoKHR::default()
            .fence(fence)
            .handle_type(ty)
            .handle(handle);
        if let Some(n) = name {
            info = info.name(n.as_ptr());
        }
        if temporary {
            info = info.flags(vk::FenceImportFlags::TEMPORARY);
        }
        // SAFETY: a valid info.
        unsafe { self.fence_win32.import_fence_win32_handle(&info) }
    }

    fn get_semaphore(&self, sem: vk::Semaphore, ty: vk::ExternalSemaphoreHandleTypeFlags) -> Result<isize, vk::Result> {
        let info = vk::SemaphoreGetWin32HandleInfoKHR::default()
            .semaphore(sem)
            .handle_type(ty);
        // SAFETY: a valid info.
        unsafe { self.semaphore_win32.get_semaphore_win32_handle(&info) }
    }

    fn import_semaphore(
        &self,
        sem: vk::Semaphore,
        ty: vk::ExternalSemaphoreHandleTypeFlags,
        handle: isize,
        name: Option<&[u16]>,
        temporary: bool,
    ) -> Result<(), vk::Result> {
        let mut info = vk::ImportSemaphoreWin32HandleInfoKHR::default()
            .semaphore(sem)
            .handle_type(ty)
            .handle(handle);
        if let Some(n) = name {
            info = info.name(n.as_ptr());
        }
        if temporary {
            info = info.flags(vk::SemaphoreImportFlags::TEMPORARY);
        }
        // SAFETY: a valid info.
        unsafe { self.semaphore_win32.import_semaphore_win32_handle(&info) }
    }

    /// Signals `fence` from the queue (an empty submit) and waits for `observer`.
    fn signal_and_wait(&self, fence: vk::Fence, observer: vk::Fence) {
        // SAFETY: live objects; an empty submit.
        unsafe {
            self.device.queue_submit(self.queue, &[], fence).unwrap();
            self.device
                .wait_for_fences(&[observer], true, LONG_NS)
                .expect("the importer sees the signal");
        }
    }

    fn counter(&self, sem: vk::Semaphore) -> u64 {
        // SAFETY: a live timeline semaphore.
        unsafe { self.device.get_semaphore_counter_value(sem) }.unwrap()
    }

    fn destroy_fences(&self, fences: &[vk::Fence]) {
        for &f in fences {
            // SAFETY: idle fences made here.
            unsafe { self.device.destroy_fence(f, None) };
        }
    }

    fn destroy_semaphores(&self, sems: &[vk::Semaphore]) {
        // SAFETY: a live device.
        unsafe { self.device.device_wait_idle() }.unwrap();
        for &s in sems {
            // SAFETY: idle semaphores made here.
            unsafe { self.device.destroy_semaphore(s, None) };
        }
    }

    fn fence_nt(&self) {
        let sa = SecurityAttributes {
            length: size_of::<SecurityAttributes>() as u32,
            descriptor: std::ptr::null_mut(),
            inherit: 1,
        };
        let win32 = vk::ExportFenceWin32HandleInfoKHR {
            p_attributes: (&raw const sa).cast(),
            ..Default::default()
        };
        let a = self.fence(vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32, Some(&win32));
        let h = self
            .get_fence(a, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32)
            .expect("OPAQUE_WIN32 export");
        assert!(h >= 3, "an NT handle is an fd ≥ 3: {h}");
        assert!(is_inheritable(h), "bInheritHandle makes the handle inheritable");
        assert_eq!(
            self.get_fence(a, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32),
            Err(vk::Result::ERROR_VALIDATION_FAILED_EXT),
            "a second NT export of one fence is refused"
        );
        let b = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        self.import_fence(b, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32, h, None, false)
            .expect("OPAQUE_WIN32 import");
        // A Win32 import does not take ownership: the handle is still ours to close.
        assert!(is_open(h as i32));
        close(h);
        self.signal_and_wait(a, b);
        // Both ways: reset through the importer, signal through it, see it in the exporter.
        // SAFETY: live, idle fences.
        unsafe { self.device.reset_fences(&[b]) }.unwrap();
        // SAFETY: a live fence.
        assert!(!unsafe { self.device.get_fence_status(a) }.unwrap(), "one payload");
        self.signal_and_wait(b, a);
        assert!(
            self.get_fence(b, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT)
                .is_ok(),
            "an imported payload may be exported again"
        );
        // A fence without a Win32 export type cannot be exported as one.
        let c = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        assert_eq!(
            self.get_fence(c, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32),
            Err(vk::Result::ERROR_VALIDATION_FAILED_EXT)
        );
        self.destroy_fences(&[a, b, c]);
    }

    fn fence_kmt_and_name(&self) {
        let a = self.fence(vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT, None);
        let k = self
            .get_fence(a, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT)
            .expect("KMT export");
        assert!(k >= 0x4000_0002, "a KMT value: {k:#x}");
        assert_eq!(
            self.get_fence(a, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT),
            Ok(k),
            "a KMT handle is global: the same value every time"
        );
        let b = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        self.import_fence(b, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT, k, None, false)
            .expect("KMT import");
        self.signal_and_wait(a, b);
        self.destroy_fences(&[a, b]);
        let c = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        assert_eq!(
            self.import_fence(c, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT, k, None, false),
            Err(vk::Result::ERROR_INVALID_EXTERNAL_HANDLE),
            "a KMT value dies with its object"
        );

        let name = utf16(&format!("Local\\tether-layer-smoke-fence-{}", self.pid));
        let win32 = vk::ExportFenceWin32HandleInfoKHR {
            name: name.as_ptr(),
            ..Default::default()
        };
        let d = self.fence(vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32, Some(&win32));
        let h = self
            .get_fence(d, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32)
            .expect("named export");
        assert!(!is_inheritable(h), "not inheritable without SECURITY_ATTRIBUTES");
        close(h);
        let e = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        self.import_fence(e, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32, 0, Some(&name), false)
            .expect("import by name");
        self.signal_and_wait(d, e);
        self.destroy_fences(&[c, d, e]);
    }

    fn timeline_nt(&self) {
        let a = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32, true, None);
        let h = self
            .get_semaphore(a, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32)
            .expect("timeline OPAQUE_WIN32 export");
        assert!(h >= 3);
        let b = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::empty(), true, None);
        assert_eq!(
            self.import_semaphore(b, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32, h, None, true),
            Err(vk::Result::ERROR_VALIDATION_FAILED_EXT),
            "no temporary import into a timeline"
        );
        self.import_semaphore(b, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32, h, None, false)
            .expect("timeline OPAQUE_WIN32 import");
        close(h);
        let signal = vk::SemaphoreSignalInfo::default().semaphore(a).value(5);
        // SAFETY: a live timeline semaphore; 5 > 0.
        unsafe { self.device.signal_semaphore(&signal) }.unwrap();
        let sems = [b];
        let values = [5];
        let wait = vk::SemaphoreWaitInfo::default().semaphores(&sems).values(&values);
        // SAFETY: a live timeline semaphore.
        unsafe { self.device.wait_semaphores(&wait, LONG_NS) }.expect("the importer sees the signal");
        assert_eq!(self.counter(b), 5);

        // A binary semaphore through KMT: signal on the queue, wait on the queue.
        let c = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT, false, None);
        let k = self
            .get_semaphore(c, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT)
            .expect("binary KMT export");
        let d = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::empty(), false, None);
        assert_eq!(
            self.import_semaphore(
                d,
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT,
                k,
                None,
                false
            ),
            Ok(())
        );
        let f = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        let signal_c = [c];
        let wait_d = [d];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let submits = [
            vk::SubmitInfo::default().signal_semaphores(&signal_c),
            vk::SubmitInfo::default()
                .wait_semaphores(&wait_d)
                .wait_dst_stage_mask(&stages),
        ];
        // SAFETY: valid submits of live objects.
        unsafe {
            self.device.queue_submit(self.queue, &submits, f).unwrap();
            self.device
                .wait_for_fences(&[f], true, LONG_NS)
                .expect("the wait on the importer completes");
        }
        self.destroy_fences(&[f]);
        self.destroy_semaphores(&[a, b, c, d]);
    }

    /// Submits D3D12 fence values (and waits for the submit's fence).
    fn d3d12_submit(&self, waits: &[(vk::Semaphore, u64)], signals: &[(vk::Semaphore, u64)]) -> vk::Result {
        let wait_sems: Vec<_> = waits.iter().map(|w| w.0).collect();
        let wait_values: Vec<_> = waits.iter().map(|w| w.1).collect();
        let signal_sems: Vec<_> = signals.iter().map(|s| s.0).collect();
        let signal_values: Vec<_> = signals.iter().map(|s| s.1).collect();
        let stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; waits.len()];
        let mut d3d12 = vk::D3D12FenceSubmitInfoKHR::default()
            .wait_semaphore_values(&wait_values)
            .signal_semaphore_values(&signal_values);
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(&wait_sems)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(&signal_sems)
            .push_next(&mut d3d12);
        let f = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        // SAFETY: a valid submit of live objects.
        let r = unsafe { self.device.queue_submit(self.queue, &[submit], f) };
        if r.is_ok() {
            // SAFETY: a live fence.
            unsafe { self.device.wait_for_fences(&[f], true, LONG_NS) }.expect("the D3D12 submit completes");
        }
        self.destroy_fences(&[f]);
        r.err().unwrap_or(vk::Result::SUCCESS)
    }

    fn d3d12(&self) {
        let a = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE, true, None);
        let h = self
            .get_semaphore(a, vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE)
            .expect("D3D12_FENCE export");
        let b = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::empty(), true, None);
        self.import_semaphore(b, vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE, h, None, false)
            .expect("D3D12_FENCE import");
        close(h);
        assert_eq!(self.d3d12_submit(&[], &[(a, 10)]), vk::Result::SUCCESS);
        assert_eq!(self.counter(b), 10);
        take_messages();
        // A rewind: D3D12 allows it, a Vulkan timeline does not. No device loss either way.
        assert_eq!(
            self.d3d12_submit(&[], &[(a, 7)]),
            vk::Result::SUCCESS,
            "a backwards D3D12 signal"
        );
        // An equal value: a no-op in D3D12.
        assert_eq!(
            self.d3d12_submit(&[], &[(b, 10)]),
            vk::Result::SUCCESS,
            "an equal D3D12 signal"
        );
        if self.emulated {
            assert_eq!(
                self.counter(a),
                10,
                "the layer skips a rewind; the fence keeps its value"
            );
            let messages = take_messages();
            assert!(
                messages.iter().any(|m| m.contains("tether-layer-d3d12-rewind")),
                "a rewind is reported: {messages:?}"
            );
        }
        // Wait through the importer on the current value, signal it higher.
        let current = self.counter(b);
        assert_eq!(
            self.d3d12_submit(&[(b, current)], &[(b, current + 5)]),
            vk::Result::SUCCESS
        );
        assert_eq!(self.counter(a), current + 5);
        // The counts must match the semaphore counts.
        let sems = [a];
        let mut d3d12 = vk::D3D12FenceSubmitInfoKHR::default();
        let submit = vk::SubmitInfo::default().signal_semaphores(&sems).push_next(&mut d3d12);
        // SAFETY: a submit that breaks a VU the layer checks; nothing is submitted.
        let r = unsafe { self.device.queue_submit(self.queue, &[submit], vk::Fence::null()) };
        assert_eq!(r, Err(vk::Result::ERROR_VALIDATION_FAILED_EXT));
        self.destroy_semaphores(&[a, b]);
    }

    /// An exportable fence can still be made (NVIDIA 580 cannot after an OPAQUE_FD import of a
    /// foreign fd reached it; the layer refuses those itself).
    fn still_exportable(&self, after: &str) {
        let mut export =
            vk::ExportFenceCreateInfo::default().handle_types(vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32);
        let ci = vk::FenceCreateInfo::default().push_next(&mut export);
        // SAFETY: a valid create info.
        let f = unsafe { self.device.create_fence(&ci, None) }
            .unwrap_or_else(|e| panic!("no exportable fence after {after}: {e:?}"));
        self.destroy_fences(&[f]);
    }

    fn bad_handles(&self) {
        let f = self.fence(vk::ExternalFenceHandleTypeFlags::empty(), None);
        let s = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::empty(), false, None);
        let t = self.semaphore(vk::ExternalSemaphoreHandleTypeFlags::empty(), true, None);
        let win32 = vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32;
        let kmt = vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32_KMT;
        let invalid = Err(vk::Result::ERROR_INVALID_EXTERNAL_HANDLE);
        let validation = Err(vk::Result::ERROR_VALIDATION_FAILED_EXT);

        // A closed fd.
        let closed = std::fs::File::open("/dev/null").unwrap();
        let closed_fd = closed.as_raw_fd() as isize;
        drop(closed);
        assert_eq!(
            self.import_fence(f, win32, closed_fd, None, false),
            invalid,
            "closed handle"
        );
        // An open fd that is no payload: the driver's refusal becomes INVALID_EXTERNAL_HANDLE.
        let null = std::fs::File::open("/dev/null").unwrap();
        let null_fd = null.as_raw_fd() as isize;
        assert_eq!(
            self.import_fence(f, win32, null_fd, None, false),
            invalid,
            "a foreign fd"
        );
        self.still_exportable("a foreign fd into a fence");
        assert_eq!(
            self.import_semaphore(
                s,
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32,
                null_fd,
                None,
                false
            ),
            invalid,
            "a foreign fd into a semaphore"
        );
        self.still_exportable("a foreign fd into a semaphore");
        // A memfd that is no payload (the tether ICD's payloads are memfds: it refuses this one).
        let memfd = rustix::fs::memfd_create("not-a-payload", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert_eq!(
            self.import_fence(f, win32, memfd.as_raw_fd() as isize, None, false),
            invalid,
            "a memfd that is no payload"
        );
        drop(memfd);
        self.still_exportable("a memfd into a fence");
        assert!(
            is_open(null_fd as i32),
            "a failed import leaves the caller's handle alone"
        );
        drop(null);
        assert_eq!(
            self.import_fence(f, win32, 0, None, false),
            invalid,
            "NULL handle, no name"
        );
        assert_eq!(
            self.import_fence(f, win32, -1, None, false),
            invalid,
            "INVALID_HANDLE_VALUE"
        );
        assert_eq!(
            self.import_fence(f, kmt, 0x7fff_fff2, None, false),
            invalid,
            "unknown KMT value"
        );
        let missing = utf16(&format!("Local\\tether-layer-smoke-missing-{}", self.pid));
        assert_eq!(
            self.import_fence(f, win32, 0, Some(&missing), false),
            invalid,
            "unknown name"
        );
        assert_eq!(
            self.import_fence(f, win32, 5, Some(&missing), false),
            validation,
            "handle and name"
        );
        assert_eq!(
            self.import_fence(f, kmt, 0, Some(&missing), false),
            validation,
            "name with KMT"
        );
        // A fence's payload into a semaphore: the tether ICD refuses it (NVIDIA 580 accepts it, and
        // the layer cannot tell an NT handle's payload kind).
        let g = self.fence(win32 | kmt, None);
        let h = self.get_fence(g, win32).unwrap();
        if self.tether {
            assert_eq!(
                self.import_semaphore(s, vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32, h, None, false),
                invalid,
                "a fence handle into a semaphore"
            );
        }
        close(h);
        // By KMT value the layer knows the kind: a fence's value into a semaphore.
        let k = self.get_fence(g, kmt).unwrap();
        assert_eq!(
            self.import_semaphore(
                s,
                vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32_KMT,
                k,
                None,
                false
            ),
            invalid,
            "a fence KMT value into a semaphore"
        );
        // Binary semaphores have no D3D12_FENCE through the layer (a good handle: bad ones are
        // refused as bad handles first).
        if self.emulated {
            let d3d12 = vk::ExternalSemaphoreHandleTypeFlags::D3D12_FENCE;
            let exporter = self.semaphore(d3d12, true, None);
            let h = self.get_semaphore(exporter, d3d12).unwrap();
            assert_eq!(self.import_semaphore(s, d3d12, h, None, false), validation);
            close(h);
            self.destroy_semaphores(&[exporter]);
        }
        let messages = take_messages();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("VUID-VkImportFenceWin32HandleInfoKHR-handle-01462")),
            "validation messages reach the messenger: {messages:?}"
        );
        self.destroy_fences(&[f, g]);
        self.destroy_semaphores(&[s, t]);
    }

    fn read_only_access(&self) {
        let win32 = vk::ExportFenceWin32HandleInfoKHR {
            dw_access: 0x8000_0000, // DXGI_SHARED_RESOURCE_READ
            ..Default::default()
        };
        let a = self.fence(vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32, Some(&win32));
        let r = self.get_fence(a, vk::ExternalFenceHandleTypeFlags::OPAQUE_WIN32);
        if self.emulated {
            assert_eq!(
                r,
                Err(vk::Result::ERROR_TOO_MANY_OBJECTS),
                "the layer refuses read-only NT handles"
            );
        } else {
            close(r.expect("the ICD makes read-only handles"));
        }
        self.destroy_fences(&[a]);
    }
}

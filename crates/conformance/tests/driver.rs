//! The driver as the loader and applications see it: manifests, the loader interface, routes,
//! instance and physical-device queries, extensions and proc-addr lookups.

use std::ffi::{CStr, c_char};
use std::process::ExitCode;

use ash::vk;
use tether_conformance::harness::{self, ALL_ROUTES, IN_PROCESS, NO_ROUTE, Role, Route};
use tether_conformance::{Batch, Options, TestDevice, TestInstance, environment, json, tests};

fn main() -> ExitCode {
    harness::main(
        &[
            Role {
                name: "ping",
                setup_environment: true,
                run: role_ping,
            },
            Role {
                name: "list-devices",
                setup_environment: false,
                run: role_list_devices,
            },
        ],
        || {
            let mut all = harness::group("manifest", manifest::tests());
            all.extend(harness::group("loader_interface", loader_interface::tests()));
            all.extend(harness::group("instance", instance::tests()));
            all.extend(harness::group("device", device::tests()));
            all
        },
    )
}

/// Child role `ping`: prints `pong` and its arguments.
fn role_ping(args: &[String]) -> i32 {
    println!("pong {}", args.join(" "));
    0
}

/// Child role `list-devices`: the loader route with the environment the parent gave, printing
/// each physical device's name.
fn role_list_devices(_args: &[String]) -> i32 {
    let Ok(entry) = harness::load_loader() else {
        eprintln!("no loader");
        return 3;
    };
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_2);
    // SAFETY: plain instance creation, enumeration and destruction.
    unsafe {
        let instance = match entry.create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("vkCreateInstance: {e}");
                return 4;
            }
        };
        for pd in instance.enumerate_physical_devices().unwrap_or_default() {
            let props = instance.get_physical_device_properties(pd);
            println!("{}", props.device_name_as_c_str().unwrap_or(c"?").to_string_lossy());
        }
        instance.destroy_instance(None);
    }
    0
}

fn name_of(bytes: &[c_char]) -> String {
    // SAFETY: Vulkan fixed-size name arrays are NUL-terminated (checked by the slice bound).
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len()) };
    CStr::from_bytes_until_nul(bytes)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

mod manifest {
    use super::*;

    pub fn tests() -> Vec<harness::Test> {
        tests!(NO_ROUTE => [
            shipped_manifest_contract,
            generated_manifest_points_at_built_driver,
            shipped_manifest_loads_release_build,
            child_role_round_trip,
            validation_layer_installed,
        ])
    }

    fn read(path: &std::path::Path) -> json::Value {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        json::parse(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    }

    /// DESIGN.md contract 1: `manifests/tether_icd.json` loads `../target/release/libtether_icd.so`
    /// and says API 1.2.
    fn shipped_manifest_contract(_: Route) {
        let m = read(&harness::shipped_manifest());
        let format = m.get("file_format_version").and_then(json::Value::as_str);
        assert!(
            matches!(format, Some("1.0.0") | Some("1.0.1")),
            "file_format_version {format:?}"
        );
        let icd = m.get("ICD").expect("an \"ICD\" object");
        assert_eq!(
            icd.get("library_path").and_then(json::Value::as_str),
            Some("../target/release/libtether_icd.so")
        );
        let api = icd.get("api_version").and_then(json::Value::as_str).unwrap_or_default();
        let parts: Vec<u32> = api
            .split('.')
            .map(|p| p.parse().expect("numeric api_version"))
            .collect();
        assert_eq!(parts.len(), 3, "api_version {api:?}");
        assert_eq!(&parts[..2], &[1, 2], "api_version {api:?}");
        if format == Some("1.0.1") {
            assert_eq!(icd.get("library_arch").and_then(json::Value::as_str), Some("64"));
            assert_eq!(
                icd.get("is_portability_driver").and_then(json::Value::as_bool),
                Some(false)
            );
        }
    }

    /// The manifest the loader trials use names the library cargo built, by absolute path, with
    /// the shipped manifest's API version.
    fn generated_manifest_points_at_built_driver(_: Route) {
        let env = environment();
        let library = env.icd_library.as_ref().expect("the driver library was built");
        let manifest = env.manifest.as_ref().expect("the manifest was written");
        let m = read(manifest);
        let path = m.path(&["ICD", "library_path"]).and_then(json::Value::as_str).unwrap();
        assert_eq!(std::path::Path::new(path), library.as_path());
        assert!(library.is_absolute() && library.exists());
        let shipped = read(&harness::shipped_manifest());
        assert_eq!(m.path(&["ICD", "api_version"]), shipped.path(&["ICD", "api_version"]));
        assert_eq!(
            std::env::var_os("VK_DRIVER_FILES").as_deref(),
            Some(manifest.as_os_str())
        );
    }

    /// With a release build present, `VK_DRIVER_FILES=manifests/tether_icd.json` is all an
    /// application needs (checked in a child process, whose environment we choose).
    fn shipped_manifest_loads_release_build(_: Route) {
        harness::require_loader();
        let release = harness::workspace_root().join("target/release/libtether_icd.so");
        if !release.exists() {
            harness::skip("skipped: target/release/libtether_icd.so is not built (cargo build --release)");
        }
        let manifest = harness::shipped_manifest().canonicalize().unwrap();
        let out = harness::child_command("list-devices")
            .env("VK_DRIVER_FILES", &manifest)
            .output()
            .expect("running the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().collect::<Vec<_>>(), ["tether CPU"]);
    }

    /// The loader trials run under `VK_LAYER_KHRONOS_validation`, which CI installs: without it
    /// they would pass without the layer's check, so CI fails here instead.
    fn validation_layer_installed(_: Route) {
        harness::require_loader();
        if !environment().validation_layer {
            let reason = "VK_LAYER_KHRONOS_validation is not installed (Debian: vulkan-validationlayers)";
            if environment().ci {
                panic!("{reason}; CI=true requires it");
            }
            harness::skip(format!("skipped: {reason}"));
        }
        let inst = TestInstance::new(Route::Loader);
        assert!(inst.validation_layer);
    }

    /// The re-exec machinery later cross-process tests use.
    fn child_role_round_trip(_: Route) {
        let out = harness::child_command("ping")
            .args(["a", "b"])
            .output()
            .expect("running the child");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pong a b");
        let out = harness::child_command("no-such-role").output().unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
}

mod loader_interface {
    use super::*;
    use tether_icd::{
        vk_icdGetInstanceProcAddr, vk_icdGetPhysicalDeviceProcAddr, vk_icdNegotiateLoaderICDInterfaceVersion,
    };

    pub fn tests() -> Vec<harness::Test> {
        tests!(
            IN_PROCESS => [negotiation, interface_functions_through_gipa, gpdpa_only_physical_device_commands],
            harness::LOADER_ROUTES => [loader_uses_the_driver],
        )
    }

    fn gipa(instance: vk::Instance, name: &CStr) -> vk::PFN_vkVoidFunction {
        // SAFETY: a NUL-terminated name; the instance is NULL or live.
        unsafe { vk_icdGetInstanceProcAddr(instance, name.as_ptr()) }
    }

    fn negotiation(_: Route) {
        for (offered, expected) in [(7, 7), (8, 7), (99, 7), (5, 5), (2, 2)] {
            let mut version = offered;
            // SAFETY: a writable u32.
            let r = unsafe { vk_icdNegotiateLoaderICDInterfaceVersion(&mut version) };
            assert_eq!(r, vk::Result::SUCCESS);
            assert_eq!(version, expected, "loader offered {offered}");
        }
        // SAFETY: NULL is what is being tested.
        let r = unsafe { vk_icdNegotiateLoaderICDInterfaceVersion(std::ptr::null_mut()) };
        assert_ne!(r, vk::Result::SUCCESS);
    }

    /// Interface version 7: the three interface functions are reachable through
    /// `vk_icdGetInstanceProcAddr(NULL, ...)` (direct driver loading requires it).
    fn interface_functions_through_gipa(_: Route) {
        for name in [
            c"vk_icdNegotiateLoaderICDInterfaceVersion",
            c"vk_icdGetInstanceProcAddr",
            c"vk_icdGetPhysicalDeviceProcAddr",
            c"vkCreateInstance",
            c"vkEnumerateInstanceExtensionProperties",
            c"vkEnumerateInstanceVersion",
            c"vkGetInstanceProcAddr",
        ] {
            assert!(gipa(vk::Instance::null(), name).is_some(), "{name:?}");
        }
        for name in [
            c"vkCreateFence",
            c"vkDestroyInstance",
            c"vkCreateImage",
            c"vkNoSuchCommand",
        ] {
            assert!(
                gipa(vk::Instance::null(), name).is_none(),
                "{name:?} with a NULL instance"
            );
        }
        // SAFETY: NULL name: must not crash.
        assert!(unsafe { vk_icdGetInstanceProcAddr(vk::Instance::null(), std::ptr::null()) }.is_none());
    }

    /// `vk_icdGetPhysicalDeviceProcAddr` answers only for commands taking a `VkPhysicalDevice`.
    fn gpdpa_only_physical_device_commands(route: Route) {
        let inst = TestInstance::new(route);
        let handle = inst.instance.handle();
        // SAFETY: a live instance of this driver (in-process route) and NUL-terminated names.
        unsafe {
            for name in [
                c"vkGetPhysicalDeviceProperties",
                c"vkGetPhysicalDeviceExternalFenceProperties",
            ] {
                assert!(
                    vk_icdGetPhysicalDeviceProcAddr(handle, name.as_ptr()).is_some(),
                    "{name:?}"
                );
            }
            for name in [
                c"vkCreateFence",
                c"vkCreateInstance",
                c"vkDestroyInstance",
                c"vkImportFenceWin32HandleKHR",
                c"vkNoSuchCommand",
            ] {
                assert!(
                    vk_icdGetPhysicalDeviceProcAddr(handle, name.as_ptr()).is_none(),
                    "{name:?}"
                );
            }
        }
    }

    /// Both loader routes reach this driver and only it.
    fn loader_uses_the_driver(route: Route) {
        let inst = TestInstance::new(route);
        // SAFETY: a live instance.
        let devices = unsafe { inst.instance.enumerate_physical_devices() }.unwrap();
        assert_eq!(
            devices.len(),
            1,
            "VK_DRIVER_FILES / exclusive direct loading must give one device"
        );
        let dev = TestDevice::new(route);
        let fence = dev.fence(false);
        assert_eq!(dev.submit(0, &[], fence), vk::Result::SUCCESS);
        dev.assert_signals(fence);
    }
}

mod instance {
    use super::*;

    pub fn tests() -> Vec<harness::Test> {
        tests!(
            ALL_ROUTES => [
                enumerate_physical_devices,
                physical_device_properties,
                properties2_chain,
                id_uuids_stable_across_instances,
                queue_family,
                memory_properties,
                features2,
                instance_extensions,
                device_extensions,
                unknown_instance_extension,
                unknown_device_extension,
                instance_version,
            ],
            IN_PROCESS => [create_time_messenger_scope],
        )
    }

    fn enumerate_physical_devices(route: Route) {
        let inst = TestInstance::new(route);
        // SAFETY: a live instance; the two-call idiom with a short array.
        unsafe {
            let devices = inst.instance.enumerate_physical_devices().unwrap();
            assert_eq!(devices, [inst.physical_device]);
            let groups_len = inst.instance.enumerate_physical_device_groups_len().unwrap();
            assert_eq!(groups_len, 1);
            let mut groups = [vk::PhysicalDeviceGroupProperties::default()];
            inst.instance.enumerate_physical_device_groups(&mut groups).unwrap();
            assert_eq!(groups[0].physical_device_count, 1);
            assert_eq!(groups[0].physical_devices[0], inst.physical_device);
            let mut count = 0u32;
            let r = (inst.instance.fp_v1_0().enumerate_physical_devices)(
                inst.instance.handle(),
                &mut count,
                std::ptr::null_mut(),
            );
            assert_eq!((r, count), (vk::Result::SUCCESS, 1));
            let mut none = 0u32;
            let mut out = [vk::PhysicalDevice::null()];
            let r = (inst.instance.fp_v1_0().enumerate_physical_devices)(
                inst.instance.handle(),
                &mut none,
                out.as_mut_ptr(),
            );
            assert_eq!((r, none), (vk::Result::INCOMPLETE, 0));
        }
    }

    fn physical_device_properties(route: Route) {
        let inst = TestInstance::new(route);
        let p = inst.properties();
        assert_eq!(p.device_name_as_c_str(), Ok(c"tether CPU"));
        assert_eq!(p.device_type, vk::PhysicalDeviceType::CPU);
        assert_eq!(
            (
                vk::api_version_major(p.api_version),
                vk::api_version_minor(p.api_version)
            ),
            (1, 2)
        );
        assert!(p.limits.max_memory_allocation_count >= 4096);
        assert!(p.limits.non_coherent_atom_size >= 1);
    }

    fn properties2_chain(route: Route) {
        let inst = TestInstance::new(route);
        let mut id = vk::PhysicalDeviceIDProperties::default();
        let mut driver = vk::PhysicalDeviceDriverProperties::default();
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreProperties::default();
        let mut p2 = vk::PhysicalDeviceProperties2::default()
            .push_next(&mut id)
            .push_next(&mut driver)
            .push_next(&mut timeline);
        // SAFETY: a physical device of this instance and a valid output chain.
        unsafe {
            inst.instance
                .get_physical_device_properties2(inst.physical_device, &mut p2)
        };
        assert_eq!(p2.properties.device_name_as_c_str(), Ok(c"tether CPU"));
        let (id, driver, timeline) = (id, driver, timeline);
        assert_ne!(id.device_uuid, [0; 16]);
        assert_ne!(id.driver_uuid, [0; 16]);
        assert_eq!(id.device_luid_valid, vk::FALSE);
        assert_eq!(name_of(&driver.driver_name), "tether");
        assert!(timeline.max_timeline_semaphore_value_difference >= (1 << 31) - 1);
    }

    fn uuids(inst: &TestInstance) -> ([u8; 16], [u8; 16]) {
        let mut id = vk::PhysicalDeviceIDProperties::default();
        let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
        // SAFETY: a physical device of this instance and a valid output chain.
        unsafe {
            inst.instance
                .get_physical_device_properties2(inst.physical_device, &mut p2)
        };
        (id.device_uuid, id.driver_uuid)
    }

    /// Opaque handles are only importable between matching UUIDs, so they must not change
    /// between instances, nor between the loader's copy of the driver and the in-process one.
    fn id_uuids_stable_across_instances(route: Route) {
        let a = TestInstance::new(route);
        let b = TestInstance::new(route);
        let in_process = TestInstance::new(Route::InProcess);
        assert_eq!(uuids(&a), uuids(&b));
        assert_eq!(uuids(&a), uuids(&in_process));
    }

    fn queue_family(route: Route) {
        let inst = TestInstance::new(route);
        // SAFETY: a physical device of this instance.
        let families = unsafe {
            inst.instance
                .get_physical_device_queue_family_properties(inst.physical_device)
        };
        assert_eq!(families.len(), 1);
        assert!(families[0].queue_flags.contains(vk::QueueFlags::TRANSFER));
        assert!(
            !families[0]
                .queue_flags
                .intersects(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE)
        );
        assert_eq!(families[0].queue_count, 4);
        // SAFETY: as above, through the 2 variant.
        let len = unsafe {
            inst.instance
                .get_physical_device_queue_family_properties2_len(inst.physical_device)
        };
        assert_eq!(len, 1);
        let mut out = [vk::QueueFamilyProperties2::default()];
        // SAFETY: as above.
        unsafe {
            inst.instance
                .get_physical_device_queue_family_properties2(inst.physical_device, &mut out)
        };
        assert_eq!(out[0].queue_family_properties.queue_count, 4);
        assert_eq!(out[0].queue_family_properties.queue_flags, families[0].queue_flags);
    }

    fn memory_properties(route: Route) {
        let inst = TestInstance::new(route);
        // SAFETY: a physical device of this instance.
        let m = unsafe {
            inst.instance
                .get_physical_device_memory_properties(inst.physical_device)
        };
        assert_eq!(m.memory_heap_count, 1);
        assert!(m.memory_heaps[0].size > 0);
        assert!(m.memory_type_count >= 1);
        let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        assert!(
            m.memory_types[..m.memory_type_count as usize]
                .iter()
                .all(|t| t.heap_index == 0 && t.property_flags.contains(host))
        );
    }

    fn features2(route: Route) {
        let inst = TestInstance::new(route);
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
        let mut sync2 = vk::PhysicalDeviceSynchronization2Features::default();
        let mut v12 = vk::PhysicalDeviceVulkan12Features::default();
        let mut f2 = vk::PhysicalDeviceFeatures2::default()
            .push_next(&mut timeline)
            .push_next(&mut sync2)
            .push_next(&mut v12);
        // SAFETY: a physical device of this instance and a valid output chain.
        unsafe {
            inst.instance
                .get_physical_device_features2(inst.physical_device, &mut f2)
        };
        let (timeline, sync2, v12) = (timeline, sync2, v12);
        assert_eq!(timeline.timeline_semaphore, vk::TRUE);
        assert_eq!(sync2.synchronization2, vk::TRUE);
        assert_eq!(v12.timeline_semaphore, vk::TRUE);
    }

    fn instance_extensions(route: Route) {
        let inst = TestInstance::new(route);
        // SAFETY: a global query.
        let props = unsafe { inst.entry.enumerate_instance_extension_properties(None) }.unwrap();
        let names: Vec<String> = props.iter().map(|p| name_of(&p.extension_name)).collect();
        for wanted in [
            "VK_KHR_get_physical_device_properties2",
            "VK_KHR_external_fence_capabilities",
            "VK_KHR_external_semaphore_capabilities",
            "VK_EXT_debug_utils",
        ] {
            assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
        }
    }

    fn device_extensions(route: Route) {
        let inst = TestInstance::new(route);
        let names = inst.device_extension_names();
        for wanted in [
            "VK_KHR_timeline_semaphore",
            "VK_KHR_synchronization2",
            "VK_KHR_external_fence",
            "VK_KHR_external_semaphore",
        ] {
            assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicates in {names:?}");
    }

    fn unknown_instance_extension(route: Route) {
        let entry = tether_conformance::context::entry(route);
        let extensions = [c"VK_TETHER_no_such_extension".as_ptr()];
        let info = vk::InstanceCreateInfo::default().enabled_extension_names(&extensions);
        // SAFETY: a valid create info naming an extension nobody offers.
        let r = unsafe { entry.create_instance(&info, None) };
        match r {
            Err(e) => assert_eq!(e, vk::Result::ERROR_EXTENSION_NOT_PRESENT),
            Ok(instance) => {
                // SAFETY: the instance just made.
                unsafe { instance.destroy_instance(None) };
                panic!("an unknown instance extension was accepted");
            }
        }
    }

    fn unknown_device_extension(route: Route) {
        let inst = TestInstance::with_options(route, Options::default().allow("Loader Message"));
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let extensions = [c"VK_TETHER_no_such_extension".as_ptr()];
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&extensions);
        let _held = tether_conformance::context::device_list_lock();
        // SAFETY: a valid create info naming an extension nobody offers.
        let r = unsafe { inst.instance.create_device(inst.physical_device, &info, None) };
        match r {
            Err(e) => assert_eq!(e, vk::Result::ERROR_EXTENSION_NOT_PRESENT),
            Ok(device) => {
                // SAFETY: the device just made.
                unsafe { device.destroy_device(None) };
                panic!("an unknown device extension was accepted");
            }
        }
    }

    fn instance_version(route: Route) {
        let entry = tether_conformance::context::entry(route);
        // SAFETY: a global query.
        let version = unsafe { entry.try_enumerate_instance_version() }
            .unwrap()
            .unwrap_or(vk::API_VERSION_1_0);
        assert!(version >= vk::API_VERSION_1_2, "{version:#x}");
    }

    /// A messenger chained into `VkInstanceCreateInfo` covers only vkCreateInstance and
    /// vkDestroyInstance: later messages go to created messengers only.
    fn create_time_messenger_scope(route: Route) {
        let create_time_log = std::sync::Arc::new(tether_conformance::MessageLog::default());
        let entry = tether_conformance::context::entry(route);
        let extensions = [ash::ext::debug_utils::NAME.as_ptr()];
        let mut chained = tether_conformance::context::messenger_info(&create_time_log);
        let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_2);
        let info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_extension_names(&extensions)
            .push_next(&mut chained);
        // SAFETY: valid create info; the log outlives the instance.
        let instance = unsafe { entry.create_instance(&info, None) }.unwrap();
        // SAFETY: a live instance, a device made on it, and a made-up fence handle (which the
        // driver reports rather than dereferences).
        unsafe {
            let _held = tether_conformance::context::device_list_lock();
            let pd = instance.enumerate_physical_devices().unwrap()[0];
            let priorities = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(0)
                .queue_priorities(&priorities)];
            let device = instance
                .create_device(pd, &vk::DeviceCreateInfo::default().queue_create_infos(&queues), None)
                .unwrap();
            let status = device.get_fence_status(ash::vk::Handle::from_raw(0xdead));
            assert!(status.is_err());
            device.destroy_device(None);
            instance.destroy_instance(None);
        }
        assert!(
            create_time_log.snapshot().is_empty(),
            "the create-time messenger got messages after vkCreateInstance returned: {:?}",
            create_time_log.snapshot()
        );
    }
}

mod device {
    use super::*;

    pub fn tests() -> Vec<harness::Test> {
        tests!(ALL_ROUTES => [
            create_with_one_to_four_queues,
            device_proc_addr_follows_enabled_extensions,
            device_proc_addr_core_commands,
            get_device_queue2,
            direct_driver_loading_smoke,
        ])
    }

    fn create_with_one_to_four_queues(route: Route) {
        for n in 1..=4 {
            let dev = TestDevice::with_options(route, Options::default().queues(n));
            assert_eq!(dev.queue_count(), n as usize);
            let fence = dev.fence(false);
            assert_eq!(dev.submit(n as usize - 1, &[Batch::new()], fence), vk::Result::SUCCESS);
            dev.assert_signals(fence);
        }
    }

    /// Extension commands are NULL unless their extension is enabled on the device.
    fn device_proc_addr_follows_enabled_extensions(route: Route) {
        let plain = TestDevice::with_options(
            route,
            Options {
                features: false,
                ..Options::default()
            },
        );
        let full = TestDevice::new(route);
        for name in [
            c"vkQueueSubmit2KHR",
            c"vkCmdSetEvent2KHR",
            c"vkCmdWaitEvents2KHR",
            c"vkCmdPipelineBarrier2KHR",
            c"vkGetSemaphoreCounterValueKHR",
            c"vkWaitSemaphoresKHR",
            c"vkSignalSemaphoreKHR",
        ] {
            assert!(plain.proc_addr(name).is_none(), "{name:?} without its extension");
            assert!(full.proc_addr(name).is_some(), "{name:?} with its extension");
        }
        for name in [
            c"vkImportFenceWin32HandleKHR",
            c"vkGetFenceWin32HandleKHR",
            c"vkImportSemaphoreWin32HandleKHR",
            c"vkGetSemaphoreWin32HandleKHR",
            c"vkImportFenceFdKHR",
            c"vkGetSemaphoreFdKHR",
            c"vkNoSuchCommandKHR",
        ] {
            assert!(full.proc_addr(name).is_none(), "{name:?} (extension not enabled)");
        }
    }

    /// Core commands the driver implements are there; ones it does not are NULL in-process
    /// (the loader hands out its own trampolines for every core command, so only the in-process
    /// route sees the driver's answer).
    fn device_proc_addr_core_commands(route: Route) {
        let dev = TestDevice::new(route);
        for name in [
            c"vkCreateFence",
            c"vkQueueSubmit",
            c"vkWaitSemaphores",
            c"vkCmdWaitEvents",
            c"vkCmdFillBuffer",
            c"vkGetDeviceProcAddr",
        ] {
            assert!(dev.proc_addr(name).is_some(), "{name:?}");
        }
        if route == Route::InProcess {
            for name in [
                c"vkCreateImage",
                c"vkCmdDraw",
                c"vkCreateGraphicsPipelines",
                c"vkCmdDispatch",
            ] {
                assert!(dev.proc_addr(name).is_none(), "{name:?} is not implemented");
            }
            // Instance-level commands are not device commands.
            for name in [
                c"vkCreateInstance",
                c"vkGetPhysicalDeviceProperties",
                c"vkEnumeratePhysicalDevices",
            ] {
                assert!(dev.proc_addr(name).is_none(), "{name:?} is not a device command");
            }
        }
    }

    fn get_device_queue2(route: Route) {
        let dev = TestDevice::new(route);
        for i in 0..4 {
            let info = vk::DeviceQueueInfo2::default().queue_family_index(0).queue_index(i);
            // SAFETY: a queue the device was created with.
            let q = unsafe { dev.device.get_device_queue2(&info) };
            assert_eq!(q, dev.queue(i as usize));
            // The same queue every time.
            // SAFETY: as above.
            assert_eq!(unsafe { dev.device.get_device_queue(0, i) }, q);
        }
    }

    /// Direct driver loading is the route's point; on the others this is one more smoke test.
    fn direct_driver_loading_smoke(route: Route) {
        let dev = TestDevice::new(route);
        let timeline = dev.timeline_semaphore(0);
        let binary = dev.binary_semaphore();
        let fence = dev.fence(false);
        let buf = dev.host_buffer(64);
        let cb = dev.fill(&buf, 0x5a5a_5a5a);
        assert_eq!(
            dev.submit(
                0,
                &[Batch::new().wait(timeline, 1).signal(binary, 0).commands(cb)],
                vk::Fence::null()
            ),
            vk::Result::SUCCESS
        );
        assert_eq!(
            dev.submit(1, &[Batch::new().wait(binary, 0)], fence),
            vk::Result::SUCCESS
        );
        dev.assert_pending(fence);
        assert_eq!(dev.signal(timeline, 1), vk::Result::SUCCESS);
        dev.assert_signals(fence);
        assert!(buf.read_u32().iter().all(|&w| w == 0x5a5a_5a5a));
    }
}

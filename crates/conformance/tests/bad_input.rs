//! Bad input: NULL pointers where the spec forbids them, unknown and looping pNext chains,
//! destroyed and made-up handles, broken valid-usage rules. Each gives an error result or a
//! debug-utils validation message, never a crash or a hang.
//!
//! Pointer tests run in-process only: the loader and the validation layer would dereference
//! them first. Handle tests also run through the loader (without the validation layer), which
//! passes non-dispatchable handles straight to the driver.

use std::ffi::c_void;
use std::process::ExitCode;
use std::ptr::{null, null_mut};

use ash::vk;
use ash::vk::Handle;
use tether_conformance::harness::{self, IN_PROCESS, LOADER_AND_IN_PROCESS, Route, Test};
use tether_conformance::{Batch, Options, TestDevice, tests};

fn main() -> ExitCode {
    harness::main(&[], || {
        let mut all = harness::group("pointers", pointers::tests());
        all.extend(harness::group("chains", chains::tests()));
        all.extend(harness::group("handles", handles::tests()));
        all.extend(harness::group("rules", rules::tests()));
        all
    })
}

/// A device whose errors are the point of the test.
fn device(route: Route) -> TestDevice {
    TestDevice::with_options(route, Options::expecting_errors())
}

/// Asserts the driver refused: an error result, or an error message since the last check.
#[track_caller]
fn refused(dev: &TestDevice, r: vk::Result, what: &str) {
    let messages = dev.log().take();
    // The driver turns a panic into VK_ERROR_UNKNOWN at its C boundary: no crash, but not a
    // deliberate answer to bad input either.
    assert_ne!(r, vk::Result::ERROR_UNKNOWN, "{what}: the driver panicked");
    assert!(
        r.as_raw() < 0 || messages.iter().any(|m| m.is_error()),
        "{what}: {r:?} and no validation message"
    );
}

/// Asserts the driver reported a validation message (for commands that return nothing).
#[track_caller]
fn reported(dev: &TestDevice, what: &str) {
    let messages = dev.log().take();
    assert!(messages.iter().any(|m| m.is_error()), "{what}: no validation message");
}

/// Asserts a message with this id arrived since the last check.
#[track_caller]
fn reported_id(dev: &TestDevice, id: &str) {
    let messages = dev.log().take();
    assert!(
        messages.iter().any(|m| m.is_error() && m.id.contains(id)),
        "no {id} message; got {messages:?}"
    );
}

/// Made-up handle values: never returned by the driver.
const MADE_UP: [u64; 4] = [0xdead, 0xdead_beef_0000, u64::MAX, 1 << 40];

mod pointers {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(IN_PROCESS => [null_create_infos, null_outputs, null_arrays_with_counts, null_queries])
    }

    fn null_create_infos(route: Route) {
        let dev = device(route);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        // SAFETY: NULL create infos are the bad input under test; every output is writable.
        unsafe {
            let mut fence = vk::Fence::null();
            refused(
                &dev,
                (f.create_fence)(d, null(), null(), &mut fence),
                "vkCreateFence(NULL info)",
            );
            assert_eq!(fence, vk::Fence::null());
            let mut semaphore = vk::Semaphore::null();
            refused(
                &dev,
                (f.create_semaphore)(d, null(), null(), &mut semaphore),
                "vkCreateSemaphore(NULL info)",
            );
            let mut event = vk::Event::null();
            refused(
                &dev,
                (f.create_event)(d, null(), null(), &mut event),
                "vkCreateEvent(NULL info)",
            );
            let mut buffer = vk::Buffer::null();
            refused(
                &dev,
                (f.create_buffer)(d, null(), null(), &mut buffer),
                "vkCreateBuffer(NULL info)",
            );
            let mut memory = vk::DeviceMemory::null();
            refused(
                &dev,
                (f.allocate_memory)(d, null(), null(), &mut memory),
                "vkAllocateMemory(NULL info)",
            );
            let mut pool = vk::CommandPool::null();
            refused(
                &dev,
                (f.create_command_pool)(d, null(), null(), &mut pool),
                "vkCreateCommandPool(NULL info)",
            );
            let mut cb = vk::CommandBuffer::null();
            refused(
                &dev,
                (f.allocate_command_buffers)(d, null(), &mut cb),
                "vkAllocateCommandBuffers(NULL info)",
            );
            let mut device = vk::Device::null();
            let i = &dev.inst.instance;
            refused(
                &dev,
                (i.fp_v1_0().create_device)(dev.inst.physical_device, null(), null(), &mut device),
                "vkCreateDevice(NULL info)",
            );
        }
    }

    fn null_outputs(route: Route) {
        let dev = device(route);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        // SAFETY: NULL outputs are the bad input under test; every input is valid.
        unsafe {
            refused(
                &dev,
                (f.create_fence)(d, &vk::FenceCreateInfo::default(), null(), null_mut()),
                "vkCreateFence(NULL pFence)",
            );
            refused(
                &dev,
                (f.create_semaphore)(d, &vk::SemaphoreCreateInfo::default(), null(), null_mut()),
                "vkCreateSemaphore(NULL pSemaphore)",
            );
            refused(
                &dev,
                (f.create_event)(d, &vk::EventCreateInfo::default(), null(), null_mut()),
                "vkCreateEvent(NULL pEvent)",
            );
            let t = dev.timeline_semaphore(0);
            refused(
                &dev,
                (dev.device.fp_v1_2().get_semaphore_counter_value)(d, t, null_mut()),
                "vkGetSemaphoreCounterValue(NULL pValue)",
            );
            let buf = dev.host_buffer(64);
            refused(
                &dev,
                (f.map_memory)(d, buf.memory, 0, 64, vk::MemoryMapFlags::empty(), null_mut()),
                "vkMapMemory(NULL ppData)",
            );
            // Commands that return nothing must simply survive.
            (f.get_device_queue)(d, 0, 0, null_mut());
            (f.get_buffer_memory_requirements)(d, buf.buffer, null_mut());
            let inst = &dev.inst.instance;
            let pd = dev.inst.physical_device;
            (inst.fp_v1_0().get_physical_device_properties)(pd, null_mut());
            (inst.fp_v1_0().get_physical_device_features)(pd, null_mut());
            (inst.fp_v1_0().get_physical_device_memory_properties)(pd, null_mut());
            (inst.fp_v1_1().get_physical_device_properties2)(pd, null_mut());
            (inst.fp_v1_1().get_physical_device_features2)(pd, null_mut());
            (inst.fp_v1_0().get_physical_device_queue_family_properties)(pd, null_mut(), null_mut());
            refused(
                &dev,
                (inst.fp_v1_0().enumerate_physical_devices)(inst.handle(), null_mut(), null_mut()),
                "vkEnumeratePhysicalDevices(NULL pCount)",
            );
            refused(
                &dev,
                (inst.fp_v1_0().enumerate_device_extension_properties)(pd, null(), null_mut(), null_mut()),
                "vkEnumerateDeviceExtensionProperties(NULL pCount)",
            );
        }
    }

    fn null_arrays_with_counts(route: Route) {
        let dev = device(route);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        let q = dev.queue(0);
        // SAFETY: NULL arrays with non-zero counts are the bad input under test.
        unsafe {
            refused(
                &dev,
                (f.wait_for_fences)(d, 1, null(), vk::TRUE, 0),
                "vkWaitForFences(NULL)",
            );
            refused(&dev, (f.reset_fences)(d, 2, null()), "vkResetFences(NULL)");
            refused(
                &dev,
                (f.queue_submit)(q, 1, null(), vk::Fence::null()),
                "vkQueueSubmit(NULL pSubmits)",
            );
            let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
            let bad = vk::SubmitInfo {
                wait_semaphore_count: 1,
                ..vk::SubmitInfo::default().wait_dst_stage_mask(&stages)
            };
            refused(
                &dev,
                (f.queue_submit)(q, 1, &bad, vk::Fence::null()),
                "vkQueueSubmit(NULL pWaitSemaphores)",
            );
            let bad = vk::SubmitInfo {
                command_buffer_count: 3,
                ..Default::default()
            };
            refused(
                &dev,
                (f.queue_submit)(q, 1, &bad, vk::Fence::null()),
                "vkQueueSubmit(NULL pCommandBuffers)",
            );
            let bad = vk::SubmitInfo {
                signal_semaphore_count: 1,
                ..Default::default()
            };
            refused(
                &dev,
                (f.queue_submit)(q, 1, &bad, vk::Fence::null()),
                "vkQueueSubmit(NULL pSignalSemaphores)",
            );
            let t = dev.timeline_semaphore(0);
            let semaphores = [t];
            let values_missing = vk::SemaphoreWaitInfo {
                p_values: null(),
                ..vk::SemaphoreWaitInfo::default().semaphores(&semaphores)
            };
            let v12 = dev.device.fp_v1_2();
            refused(
                &dev,
                (v12.wait_semaphores)(d, &values_missing, 0),
                "vkWaitSemaphores(NULL pValues)",
            );
            refused(&dev, (v12.wait_semaphores)(d, null(), 0), "vkWaitSemaphores(NULL info)");
            refused(&dev, (v12.signal_semaphore)(d, null()), "vkSignalSemaphore(NULL info)");
            let s2 = dev.sync2.fp();
            refused(
                &dev,
                (s2.queue_submit2_khr)(q, 1, null(), vk::Fence::null()),
                "vkQueueSubmit2KHR(NULL)",
            );
            let bad2 = vk::SubmitInfo2 {
                wait_semaphore_info_count: 1,
                ..Default::default()
            };
            refused(
                &dev,
                (s2.queue_submit2_khr)(q, 1, &bad2, vk::Fence::null()),
                "vkQueueSubmit2KHR(NULL pWaitSemaphoreInfos)",
            );
            // Recording: a bad command is not recorded and vkEndCommandBuffer reports it.
            let buf = dev.host_buffer(64);
            let cb = dev.record(|_, _| {});
            assert_eq!(
                (f.reset_command_buffer)(cb, vk::CommandBufferResetFlags::empty()),
                vk::Result::SUCCESS
            );
            refused(
                &dev,
                (f.begin_command_buffer)(cb, null()),
                "vkBeginCommandBuffer(NULL info)",
            );
            let begin = vk::CommandBufferBeginInfo::default();
            assert_eq!((f.begin_command_buffer)(cb, &begin), vk::Result::SUCCESS);
            (f.cmd_update_buffer)(cb, buf.buffer, 0, 16, null());
            refused(&dev, (f.end_command_buffer)(cb), "vkCmdUpdateBuffer(NULL pData)");
            assert_eq!((f.begin_command_buffer)(cb, &begin), vk::Result::SUCCESS);
            (f.cmd_copy_buffer)(cb, buf.buffer, buf.buffer, 2, null());
            refused(&dev, (f.end_command_buffer)(cb), "vkCmdCopyBuffer(NULL pRegions)");
            assert_eq!((f.begin_command_buffer)(cb, &begin), vk::Result::SUCCESS);
            (f.cmd_wait_events)(
                cb,
                1,
                null(),
                vk::PipelineStageFlags::HOST,
                vk::PipelineStageFlags::TRANSFER,
                0,
                null(),
                0,
                null(),
                0,
                null(),
            );
            refused(&dev, (f.end_command_buffer)(cb), "vkCmdWaitEvents(NULL pEvents)");
        }
        // The queue still works.
        let fence = dev.fence(false);
        assert_eq!(dev.submit(0, &[Batch::new()], fence), vk::Result::SUCCESS);
        dev.assert_signals(fence);
    }

    fn null_queries(route: Route) {
        let dev = device(route);
        let inst = &dev.inst.instance;
        let pd = dev.inst.physical_device;
        // SAFETY: NULL inputs and outputs are the bad input under test.
        unsafe {
            let mut props = vk::ExternalFenceProperties::default();
            (inst.fp_v1_1().get_physical_device_external_fence_properties)(pd, null(), &mut props);
            (inst.fp_v1_1().get_physical_device_external_fence_properties)(
                pd,
                &vk::PhysicalDeviceExternalFenceInfo::default(),
                null_mut(),
            );
            let mut sprops = vk::ExternalSemaphoreProperties::default();
            (inst.fp_v1_1().get_physical_device_external_semaphore_properties)(pd, null(), &mut sprops);
            let f = dev.device.fp_v1_0();
            (f.destroy_fence)(dev.device.handle(), vk::Fence::null(), null());
            (f.destroy_semaphore)(dev.device.handle(), vk::Semaphore::null(), null());
            (f.destroy_buffer)(dev.device.handle(), vk::Buffer::null(), null());
            (f.free_memory)(dev.device.handle(), vk::DeviceMemory::null(), null());
        }
        assert!(dev.log().errors().is_empty(), "destroying VK_NULL_HANDLE is valid");
    }
}

mod chains {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(IN_PROCESS => [unknown_stype_in_input_chains, looping_input_chains, looping_output_chains])
    }

    /// A structure no Vulkan version defines.
    #[repr(C)]
    struct Alien {
        s_type: vk::StructureType,
        p_next: *mut c_void,
        payload: [u64; 4],
    }

    const ALIEN: vk::StructureType = vk::StructureType::from_raw(0x7fff_0000);

    fn alien() -> Alien {
        Alien {
            s_type: ALIEN,
            p_next: null_mut(),
            payload: [0xdead; 4],
        }
    }

    /// Unknown structures are reported (`-pNext-pNext`) and ignored or refused; either way the
    /// command survives, and an object it made works.
    fn unknown_stype_in_input_chains(route: Route) {
        let dev = device(route);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        let mut a = alien();
        let next = (&mut a as *mut Alien).cast::<c_void>();
        // SAFETY: valid structures whose chains hold an unknown (but well-formed) structure.
        unsafe {
            let info = vk::FenceCreateInfo {
                p_next: next,
                ..Default::default()
            };
            let mut fence = vk::Fence::null();
            if (f.create_fence)(d, &info, null(), &mut fence) == vk::Result::SUCCESS {
                assert_eq!(dev.submit(0, &[], fence), vk::Result::SUCCESS);
                dev.assert_signals(fence);
                (f.destroy_fence)(d, fence, null());
            }
            reported_id(&dev, "VUID-VkFenceCreateInfo-pNext-pNext");
            let info = vk::SemaphoreCreateInfo {
                p_next: next,
                ..Default::default()
            };
            let mut semaphore = vk::Semaphore::null();
            if (f.create_semaphore)(d, &info, null(), &mut semaphore) == vk::Result::SUCCESS {
                (f.destroy_semaphore)(d, semaphore, null());
            }
            reported_id(&dev, "VUID-VkSemaphoreCreateInfo-pNext-pNext");
            let info = vk::EventCreateInfo {
                p_next: next,
                ..Default::default()
            };
            let mut event = vk::Event::null();
            if (f.create_event)(d, &info, null(), &mut event) == vk::Result::SUCCESS {
                (f.destroy_event)(d, event, null());
            }
            reported_id(&dev, "VUID-VkEventCreateInfo-pNext-pNext");
            let submit = vk::SubmitInfo {
                p_next: next,
                ..Default::default()
            };
            let fence = dev.fence(false);
            if (f.queue_submit)(dev.queue(1), 1, &submit, fence) == vk::Result::SUCCESS {
                dev.assert_signals(fence);
            }
            reported_id(&dev, "VUID-VkSubmitInfo-pNext-pNext");
            let submit2 = vk::SubmitInfo2 {
                p_next: next,
                ..Default::default()
            };
            let fence = dev.fence(false);
            if (dev.sync2.fp().queue_submit2_khr)(dev.queue(1), 1, &submit2, fence) == vk::Result::SUCCESS {
                dev.assert_signals(fence);
            }
            reported_id(&dev, "VUID-VkSubmitInfo2-pNext-pNext");
            // Output chains: the driver leaves structures it does not know alone.
            let mut p2 = vk::PhysicalDeviceProperties2 {
                p_next: next,
                ..Default::default()
            };
            (dev.inst.instance.fp_v1_1().get_physical_device_properties2)(dev.inst.physical_device, &mut p2);
            let mut f2 = vk::PhysicalDeviceFeatures2 {
                p_next: next,
                ..Default::default()
            };
            (dev.inst.instance.fp_v1_1().get_physical_device_features2)(dev.inst.physical_device, &mut f2);
        }
        assert_eq!(a.s_type, ALIEN);
        assert_eq!(
            a.payload, [0xdead; 4],
            "the driver wrote into a structure it does not know"
        );
        dev.log().take();
    }

    /// A chain whose last structure points back at itself is reported (`-sType-unique`) and cut
    /// off, not walked forever.
    fn looping_input_chains(route: Route) {
        let dev = device(route);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        let mut a = alien();
        let a_ptr: *mut Alien = &mut a;
        let looped = a_ptr.cast::<c_void>();
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(0);
        let ty_ptr: *mut vk::SemaphoreTypeCreateInfo<'_> = &mut ty;
        // SAFETY: valid structures whose chains loop, the bad input under test; `a` and `ty`
        // are only reached through their pointers from here on.
        unsafe {
            (*a_ptr).p_next = looped;
            let info = vk::FenceCreateInfo {
                p_next: looped,
                ..Default::default()
            };
            let mut fence = vk::Fence::null();
            if (f.create_fence)(d, &info, null(), &mut fence) == vk::Result::SUCCESS {
                (f.destroy_fence)(d, fence, null());
            }
            reported_id(&dev, "VUID-VkFenceCreateInfo-sType-unique");
            // A loop of two: a known structure pointing at a structure pointing back at it.
            (*ty_ptr).p_next = looped;
            (*a_ptr).p_next = ty_ptr.cast();
            let info = vk::SemaphoreCreateInfo {
                p_next: ty_ptr.cast(),
                ..Default::default()
            };
            let mut semaphore = vk::Semaphore::null();
            if (f.create_semaphore)(d, &info, null(), &mut semaphore) == vk::Result::SUCCESS {
                (f.destroy_semaphore)(d, semaphore, null());
            }
            reported_id(&dev, "VUID-VkSemaphoreCreateInfo-sType-unique");
            (*a_ptr).p_next = looped;
            let submit = vk::SubmitInfo {
                p_next: looped,
                ..Default::default()
            };
            let fence = dev.fence(false);
            if (f.queue_submit)(dev.queue(2), 1, &submit, fence) == vk::Result::SUCCESS {
                dev.assert_signals(fence);
            }
            reported_id(&dev, "VUID-VkSubmitInfo-sType-unique");
            // Device and instance creation walk their chains too.
            let priorities = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(0)
                .queue_priorities(&priorities)];
            let info = vk::DeviceCreateInfo {
                p_next: looped,
                ..vk::DeviceCreateInfo::default().queue_create_infos(&queues)
            };
            let mut device = vk::Device::null();
            let i = &dev.inst.instance;
            let held = tether_conformance::context::device_list_lock();
            if (i.fp_v1_0().create_device)(dev.inst.physical_device, &info, null(), &mut device) == vk::Result::SUCCESS
            {
                let destroy: vk::PFN_vkDestroyDevice = std::mem::transmute(
                    i.get_device_proc_addr(device, c"vkDestroyDevice".as_ptr())
                        .expect("vkDestroyDevice"),
                );
                destroy(device, null());
            }
            drop(held);
            let info = vk::InstanceCreateInfo {
                p_next: looped,
                ..Default::default()
            };
            if let Ok(instance) = dev.inst.entry.create_instance(&info, None) {
                instance.destroy_instance(None);
            }
        }
        dev.log().take();
    }

    /// Output chains that loop: the driver fills what it knows, a bounded number of times.
    fn looping_output_chains(route: Route) {
        let dev = device(route);
        let inst = &dev.inst.instance;
        let pd = dev.inst.physical_device;
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default();
        let timeline_ptr: *mut vk::PhysicalDeviceTimelineSemaphoreFeatures<'_> = &mut timeline;
        let mut id = vk::PhysicalDeviceIDProperties::default();
        let id_ptr: *mut vk::PhysicalDeviceIDProperties<'_> = &mut id;
        // SAFETY: valid output structures whose chains loop, the bad input under test; both are
        // only reached through their pointers inside this block.
        let (enabled, uuid, next) = unsafe {
            (*timeline_ptr).p_next = timeline_ptr.cast();
            (*id_ptr).p_next = id_ptr.cast();
            let mut f2 = vk::PhysicalDeviceFeatures2 {
                p_next: timeline_ptr.cast(),
                ..Default::default()
            };
            (inst.fp_v1_1().get_physical_device_features2)(pd, &mut f2);
            let mut p2 = vk::PhysicalDeviceProperties2 {
                p_next: id_ptr.cast(),
                ..Default::default()
            };
            (inst.fp_v1_1().get_physical_device_properties2)(pd, &mut p2);
            (
                (*timeline_ptr).timeline_semaphore,
                (*id_ptr).device_uuid,
                (*timeline_ptr).p_next,
            )
        };
        assert_eq!(enabled, vk::TRUE);
        assert_ne!(uuid, [0; 16]);
        // The chain is still the caller's.
        assert_eq!(next, timeline_ptr.cast());
    }
}

mod handles {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            destroyed_fence,
            destroyed_semaphores,
            destroyed_event,
            destroyed_buffer_and_memory,
            made_up_handles,
            handles_of_another_device,
            destroyed_while_in_use,
        ])
    }

    fn destroyed_fence(route: Route) {
        let dev = device(route);
        let fence = dev.fence(true);
        dev.destroy_fence(fence);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        // SAFETY: a destroyed handle is the bad input under test.
        unsafe {
            refused(&dev, (f.get_fence_status)(d, fence), "vkGetFenceStatus(destroyed)");
            refused(
                &dev,
                (f.wait_for_fences)(d, 1, &fence, vk::TRUE, 0),
                "vkWaitForFences(destroyed)",
            );
            refused(&dev, (f.reset_fences)(d, 1, &fence), "vkResetFences(destroyed)");
            refused(&dev, dev.submit(0, &[], fence), "vkQueueSubmit(destroyed fence)");
            (f.destroy_fence)(d, fence, null());
            reported(&dev, "vkDestroyFence twice");
        }
        // A new fence does not answer to the old handle.
        let new = dev.fence(false);
        assert_ne!(new, fence);
        refused(
            &dev,
            dev.fence_status(fence),
            "vkGetFenceStatus(destroyed) after a new fence",
        );
    }

    fn destroyed_semaphores(route: Route) {
        let dev = device(route);
        let binary = dev.binary_semaphore();
        let timeline = dev.timeline_semaphore(3);
        dev.destroy_semaphore(binary);
        dev.destroy_semaphore(timeline);
        refused(
            &dev,
            dev.submit(0, &[Batch::new().signal(binary, 0)], vk::Fence::null()),
            "signal(destroyed)",
        );
        refused(
            &dev,
            dev.submit(0, &[Batch::new().wait(binary, 0)], vk::Fence::null()),
            "wait(destroyed)",
        );
        refused(
            &dev,
            dev.submit2(1, &[Batch::new().wait(timeline, 1)], vk::Fence::null()),
            "wait2(destroyed)",
        );
        refused(&dev, dev.signal(timeline, 4), "vkSignalSemaphore(destroyed)");
        refused(
            &dev,
            dev.wait_semaphores(&[(timeline, 1)], false, 0),
            "vkWaitSemaphores(destroyed)",
        );
        let mut value = 0;
        // SAFETY: a destroyed handle is the bad input under test.
        let r =
            unsafe { (dev.device.fp_v1_2().get_semaphore_counter_value)(dev.device.handle(), timeline, &mut value) };
        refused(&dev, r, "vkGetSemaphoreCounterValue(destroyed)");
        // A refused submit changed nothing: the queue still runs later work.
        let fence = dev.fence(false);
        assert_eq!(dev.submit(0, &[Batch::new()], fence), vk::Result::SUCCESS);
        dev.assert_signals(fence);
    }

    fn destroyed_event(route: Route) {
        let dev = device(route);
        let e = dev.event();
        let cb_set = dev.record(|_, _| {});
        dev.destroy_event(e);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        // SAFETY: a destroyed handle is the bad input under test.
        unsafe {
            refused(&dev, (f.set_event)(d, e), "vkSetEvent(destroyed)");
            refused(&dev, (f.reset_event)(d, e), "vkResetEvent(destroyed)");
            refused(&dev, (f.get_event_status)(d, e), "vkGetEventStatus(destroyed)");
            assert_eq!(
                (f.reset_command_buffer)(cb_set, vk::CommandBufferResetFlags::empty()),
                vk::Result::SUCCESS
            );
            assert_eq!(
                (f.begin_command_buffer)(cb_set, &vk::CommandBufferBeginInfo::default()),
                vk::Result::SUCCESS
            );
            (f.cmd_set_event)(cb_set, e, vk::PipelineStageFlags::TRANSFER);
            refused(&dev, (f.end_command_buffer)(cb_set), "vkCmdSetEvent(destroyed)");
        }
    }

    fn destroyed_buffer_and_memory(route: Route) {
        let dev = device(route);
        let good = dev.host_buffer(64);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        // SAFETY: destroyed handles are the bad input under test.
        unsafe {
            let info = vk::BufferCreateInfo::default()
                .size(64)
                .usage(vk::BufferUsageFlags::TRANSFER_DST);
            let buffer = dev.device.create_buffer(&info, None).unwrap();
            dev.device.destroy_buffer(buffer, None);
            let cb = dev.record(|_, _| {});
            assert_eq!(
                (f.reset_command_buffer)(cb, vk::CommandBufferResetFlags::empty()),
                vk::Result::SUCCESS
            );
            assert_eq!(
                (f.begin_command_buffer)(cb, &vk::CommandBufferBeginInfo::default()),
                vk::Result::SUCCESS
            );
            (f.cmd_fill_buffer)(cb, buffer, 0, vk::WHOLE_SIZE, 1);
            refused(&dev, (f.end_command_buffer)(cb), "vkCmdFillBuffer(destroyed buffer)");
            assert_eq!(
                (f.begin_command_buffer)(cb, &vk::CommandBufferBeginInfo::default()),
                vk::Result::SUCCESS
            );
            let region = vk::BufferCopy {
                src_offset: 0,
                dst_offset: 0,
                size: 4,
            };
            (f.cmd_copy_buffer)(cb, good.buffer, buffer, 1, &region);
            refused(&dev, (f.end_command_buffer)(cb), "vkCmdCopyBuffer(destroyed dst)");
            let alloc = vk::MemoryAllocateInfo::default()
                .allocation_size(256)
                .memory_type_index(0);
            let memory = dev.device.allocate_memory(&alloc, None).unwrap();
            dev.device.free_memory(memory, None);
            let mut ptr = null_mut();
            refused(
                &dev,
                (f.map_memory)(d, memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty(), &mut ptr),
                "vkMapMemory(freed)",
            );
            let buffer = dev.device.create_buffer(&info, None).unwrap();
            refused(
                &dev,
                (f.bind_buffer_memory)(d, buffer, memory, 0),
                "vkBindBufferMemory(freed)",
            );
            dev.device.destroy_buffer(buffer, None);
            (f.free_memory)(d, memory, null());
            reported(&dev, "vkFreeMemory twice");
        }
    }

    fn made_up_handles(route: Route) {
        let dev = device(route);
        let d = dev.device.handle();
        let f = dev.device.fp_v1_0();
        for raw in MADE_UP {
            let fence = vk::Fence::from_raw(raw);
            let semaphore = vk::Semaphore::from_raw(raw);
            // SAFETY: made-up handles are the bad input under test.
            unsafe {
                refused(&dev, (f.get_fence_status)(d, fence), "vkGetFenceStatus(made up)");
                refused(
                    &dev,
                    (f.wait_for_fences)(d, 1, &fence, vk::FALSE, u64::MAX),
                    "vkWaitForFences(made up)",
                );
                refused(&dev, (f.reset_fences)(d, 1, &fence), "vkResetFences(made up)");
                refused(
                    &dev,
                    dev.submit(0, &[Batch::new()], fence),
                    "vkQueueSubmit(made-up fence)",
                );
                refused(
                    &dev,
                    dev.submit(0, &[Batch::new().wait(semaphore, 1)], vk::Fence::null()),
                    "vkQueueSubmit(made-up semaphore)",
                );
                refused(&dev, dev.signal(semaphore, 1), "vkSignalSemaphore(made up)");
                refused(
                    &dev,
                    dev.wait_semaphores(&[(semaphore, 1)], false, u64::MAX),
                    "vkWaitSemaphores(made up)",
                );
                let event = vk::Event::from_raw(raw);
                refused(&dev, (f.set_event)(d, event), "vkSetEvent(made up)");
                refused(&dev, (f.get_event_status)(d, event), "vkGetEventStatus(made up)");
                let memory = vk::DeviceMemory::from_raw(raw);
                let mut ptr = null_mut();
                refused(
                    &dev,
                    (f.map_memory)(d, memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty(), &mut ptr),
                    "vkMapMemory(made up)",
                );
                let pool = vk::CommandPool::from_raw(raw);
                refused(
                    &dev,
                    (f.reset_command_pool)(d, pool, vk::CommandPoolResetFlags::empty()),
                    "vkResetCommandPool(made up)",
                );
                (f.destroy_fence)(d, fence, null());
                reported(&dev, "vkDestroyFence(made up)");
                (f.destroy_semaphore)(d, semaphore, null());
                reported(&dev, "vkDestroySemaphore(made up)");
                (f.destroy_buffer)(d, vk::Buffer::from_raw(raw), null());
                reported(&dev, "vkDestroyBuffer(made up)");
                (f.destroy_command_pool)(d, pool, null());
            }
        }
    }

    fn handles_of_another_device(route: Route) {
        let a = device(route);
        let b = device(route);
        let fence = a.fence(false);
        let semaphore = a.timeline_semaphore(0);
        refused(&b, b.fence_status(fence), "vkGetFenceStatus(other device's fence)");
        refused(&b, b.submit(0, &[], fence), "vkQueueSubmit(other device's fence)");
        refused(
            &b,
            b.signal(semaphore, 1),
            "vkSignalSemaphore(other device's semaphore)",
        );
        let buf = a.host_buffer(64);
        let d = b.device.handle();
        let f = b.device.fp_v1_0();
        let cb = b.record(|_, _| {});
        // SAFETY: another device's handles are the bad input under test.
        unsafe {
            assert_eq!(
                (f.reset_command_buffer)(cb, vk::CommandBufferResetFlags::empty()),
                vk::Result::SUCCESS
            );
            assert_eq!(
                (f.begin_command_buffer)(cb, &vk::CommandBufferBeginInfo::default()),
                vk::Result::SUCCESS
            );
            (f.cmd_fill_buffer)(cb, buf.buffer, 0, 64, 1);
            refused(&b, (f.end_command_buffer)(cb), "vkCmdFillBuffer(other device's buffer)");
            let mut ptr = null_mut();
            refused(
                &b,
                (f.map_memory)(d, buf.memory, 0, 64, vk::MemoryMapFlags::empty(), &mut ptr),
                "vkMapMemory(other device's memory)",
            );
        }
        // Nothing happened to device a's objects.
        assert_eq!(a.fence_status(fence), vk::Result::NOT_READY);
        assert_eq!(a.counter(semaphore), 0);
    }

    /// Destroying objects that queued work still uses is invalid; the driver keeps them alive
    /// until the work is done instead of crashing.
    fn destroyed_while_in_use(route: Route) {
        let dev = device(route);
        let gate = dev.timeline_semaphore(0);
        let s = dev.binary_semaphore();
        let buf = dev.host_buffer(64);
        let cb = dev.fill(&buf, 0x42);
        let fence = dev.fence(false);
        assert_eq!(
            dev.submit(
                0,
                &[Batch::new().wait(gate, 1).commands(cb).signal(s, 0)],
                vk::Fence::null()
            ),
            vk::Result::SUCCESS
        );
        assert_eq!(dev.submit(1, &[Batch::new().wait(s, 0)], fence), vk::Result::SUCCESS);
        dev.destroy_semaphore(s);
        // SAFETY: destroying the buffer the pending batch writes is the bad input under test.
        unsafe { dev.device.destroy_buffer(buf.buffer, None) };
        assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
        dev.assert_signals(fence);
        assert!(buf.read_u32().iter().all(|&w| w == 0x42));
    }
}

mod rules {
    use super::*;

    pub fn tests() -> Vec<Test> {
        tests!(LOADER_AND_IN_PROCESS => [
            submit_rules,
            timeline_values_missing,
            semaphore_rules,
            fence_wait_with_no_fences,
            timeline_without_the_feature,
        ])
    }

    fn submit_rules(route: Route) {
        let dev = device(route);
        let f = dev.device.fp_v1_0();
        // Not ended.
        let pool_cb = dev.record(|_, _| {});
        // SAFETY: a command buffer of this device put back into the recording state.
        unsafe {
            assert_eq!(
                (f.reset_command_buffer)(pool_cb, vk::CommandBufferResetFlags::empty()),
                vk::Result::SUCCESS
            );
            assert_eq!(
                (f.begin_command_buffer)(pool_cb, &vk::CommandBufferBeginInfo::default()),
                vk::Result::SUCCESS
            );
        }
        refused(
            &dev,
            dev.submit(0, &[Batch::new().commands(pool_cb)], vk::Fence::null()),
            "submitting a recording command buffer",
        );
        // SAFETY: as above.
        assert_eq!(unsafe { (f.end_command_buffer)(pool_cb) }, vk::Result::SUCCESS);
        // A signaled fence.
        let signaled = dev.fence(true);
        refused(&dev, dev.submit(0, &[], signaled), "vkQueueSubmit(signaled fence)");
        // A fence still tied to earlier work.
        let gate = dev.timeline_semaphore(0);
        let pending = dev.fence(false);
        assert_eq!(
            dev.submit(1, &[Batch::new().wait(gate, 1)], pending),
            vk::Result::SUCCESS
        );
        refused(&dev, dev.submit(2, &[], pending), "vkQueueSubmit(pending fence)");
        assert_eq!(dev.signal(gate, 1), vk::Result::SUCCESS);
        dev.assert_signals(pending);
    }

    /// A submit that waits on or signals a timeline needs its values
    /// (VUID-VkSubmitInfo-pWaitSemaphores-03239, -pNext-03241).
    fn timeline_values_missing(route: Route) {
        let dev = device(route);
        let t = dev.timeline_semaphore(0);
        let q = dev.queue(0);
        let f = dev.device.fp_v1_0();
        let semaphores = [t];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let signal = vk::SubmitInfo::default().signal_semaphores(&semaphores);
        let wait = vk::SubmitInfo::default()
            .wait_semaphores(&semaphores)
            .wait_dst_stage_mask(&stages);
        let few: [u64; 0] = [];
        let mut short = vk::TimelineSemaphoreSubmitInfo::default().signal_semaphore_values(&few);
        let short_signal = vk::SubmitInfo::default()
            .signal_semaphores(&semaphores)
            .push_next(&mut short);
        // SAFETY: valid structures breaking the rules under test.
        unsafe {
            refused(
                &dev,
                (f.queue_submit)(q, 1, &signal, vk::Fence::null()),
                "timeline signal without values",
            );
            refused(
                &dev,
                (f.queue_submit)(q, 1, &wait, vk::Fence::null()),
                "timeline wait without values",
            );
            refused(
                &dev,
                (f.queue_submit)(q, 1, &short_signal, vk::Fence::null()),
                "timeline signal with too few values",
            );
        }
        assert_eq!(dev.counter(t), 0, "a refused submit signaled");
        let fence = dev.fence(false);
        assert_eq!(dev.submit(0, &[Batch::new()], fence), vk::Result::SUCCESS);
        dev.assert_signals(fence);
    }

    fn semaphore_rules(route: Route) {
        let dev = device(route);
        let t = dev.timeline_semaphore(5);
        refused(&dev, dev.signal(t, 5), "vkSignalSemaphore(equal value)");
        refused(&dev, dev.signal(t, 4), "vkSignalSemaphore(lower value)");
        assert_eq!(dev.counter(t), 5);
        let binary = dev.binary_semaphore();
        refused(&dev, dev.signal(binary, 1), "vkSignalSemaphore(binary)");
        refused(
            &dev,
            dev.wait_semaphores(&[(binary, 1)], false, 0),
            "vkWaitSemaphores(binary)",
        );
        let mut value = 0;
        // SAFETY: a binary semaphore is the bad input under test.
        let r = unsafe { (dev.device.fp_v1_2().get_semaphore_counter_value)(dev.device.handle(), binary, &mut value) };
        refused(&dev, r, "vkGetSemaphoreCounterValue(binary)");
        // A binary semaphore with an initial value.
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::BINARY)
            .initial_value(1);
        let info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
        let mut out = vk::Semaphore::null();
        // SAFETY: a valid structure breaking VUID-VkSemaphoreTypeCreateInfo-semaphoreType-03279.
        let r = unsafe { (dev.device.fp_v1_0().create_semaphore)(dev.device.handle(), &info, null(), &mut out) };
        refused(&dev, r, "binary semaphore with initialValue 1");
        if r == vk::Result::SUCCESS {
            dev.destroy_semaphore(out);
        }
    }

    fn fence_wait_with_no_fences(route: Route) {
        let dev = device(route);
        // SAFETY: fenceCount 0 is the bad input under test.
        let r = unsafe { (dev.device.fp_v1_0().wait_for_fences)(dev.device.handle(), 0, null(), vk::TRUE, u64::MAX) };
        refused(&dev, r, "vkWaitForFences(fenceCount 0)");
    }

    /// A timeline semaphore on a device that did not enable timelineSemaphore.
    fn timeline_without_the_feature(route: Route) {
        let dev = TestDevice::with_options(
            route,
            Options {
                features: false,
                ..Options::expecting_errors()
            },
        );
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(0);
        let info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
        let mut out = vk::Semaphore::null();
        // SAFETY: a valid structure breaking VUID-VkSemaphoreTypeCreateInfo-timelineSemaphore-03252.
        let r = unsafe { (dev.device.fp_v1_0().create_semaphore)(dev.device.handle(), &info, null(), &mut out) };
        refused(&dev, r, "timeline semaphore without the feature");
        if r == vk::Result::SUCCESS {
            dev.destroy_semaphore(out);
        }
    }
}

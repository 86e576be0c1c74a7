//! `VkAllocationCallbacks`, in process through `tether_icd::vk_icdGetInstanceProcAddr`.
//!
//! A recording allocator checks that the driver honours the callbacks: every block it hands out
//! comes back through the same callbacks (balance 0 after the destroys), every request has a
//! power-of-two alignment that the block honours, nothing foreign is freed, and every call comes
//! from the thread that called the command (never from a queue worker). A failing allocator
//! fails the Nth allocation of one command, for every N below the number that command makes: the
//! command must return `VK_ERROR_OUT_OF_HOST_MEMORY` (NULL command buffers for
//! `vkAllocateCommandBuffers`) and leave nothing behind: no block, no fd, no mapping, no thread.
//!
//! The tests share process-wide counts (fds, mappings, threads), so they run one at a time.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::{CStr, c_void};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;

use ash::vk;
use ash::vk::Handle;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the recording allocator has seen.
#[derive(Default)]
struct Record {
    /// Live blocks: address → (layout, scope).
    live: HashMap<usize, (Layout, vk::SystemAllocationScope)>,
    /// Allocation calls, failed ones included.
    calls: usize,
    /// Fail the call with this index (0-based), if any.
    fail_at: Option<usize>,
    /// Allocation calls by scope.
    scopes: HashMap<i32, usize>,
    /// Rule violations seen.
    errors: Vec<String>,
}

/// A recording (and optionally failing) allocator. Its address is the callbacks' `pUserData`.
struct Recorder {
    record: Mutex<Record>,
    thread: ThreadId,
}

impl Recorder {
    fn new() -> Box<Recorder> {
        Box::new(Recorder {
            record: Mutex::new(Record::default()),
            thread: std::thread::current().id(),
        })
    }

    fn failing_at(n: usize) -> Box<Recorder> {
        let r = Recorder::new();
        r.lock().fail_at = Some(n);
        r
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn callbacks(&self) -> vk::AllocationCallbacks<'_> {
        vk::AllocationCallbacks {
            p_user_data: std::ptr::from_ref(self).cast_mut().cast(),
            pfn_allocation: Some(allocation),
            pfn_reallocation: Some(reallocation),
            pfn_free: Some(free),
            pfn_internal_allocation: None,
            pfn_internal_free: None,
            ..Default::default()
        }
    }

    fn calls(&self) -> usize {
        self.lock().calls
    }

    fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// No violations and nothing live.
    fn assert_balanced(&self, what: &str) {
        let r = self.lock();
        assert!(r.errors.is_empty(), "{what}: allocator misuse: {:?}", r.errors);
        assert!(
            r.live.is_empty(),
            "{what}: {} block(s) not freed: {:?}",
            r.live.len(),
            r.live.values().collect::<Vec<_>>()
        );
    }

    fn assert_no_errors(&self, what: &str) {
        let r = self.lock();
        assert!(r.errors.is_empty(), "{what}: allocator misuse: {:?}", r.errors);
    }
}

/// # Safety
/// `user` is a live `Recorder`.
unsafe fn recorder<'a>(user: *mut c_void) -> &'a Recorder {
    // SAFETY: per the contract.
    unsafe { &*user.cast::<Recorder>() }
}

unsafe extern "system" fn allocation(
    user: *mut c_void,
    size: usize,
    alignment: usize,
    scope: vk::SystemAllocationScope,
) -> *mut c_void {
    // SAFETY: the driver passes back our `pUserData`.
    let rec = unsafe { recorder(user) };
    let mut r = rec.lock();
    let call = r.calls;
    r.calls += 1;
    *r.scopes.entry(scope.as_raw()).or_default() += 1;
    if std::thread::current().id() != rec.thread {
        r.errors.push(format!("allocation of {size} bytes on another thread"));
    }
    if !(0..=4).contains(&scope.as_raw()) {
        r.errors.push(format!("allocation with an unknown scope {scope:?}"));
    }
    let Ok(layout) = Layout::from_size_align(size, alignment) else {
        r.errors.push(format!("bad alignment {alignment} for {size} bytes"));
        return std::ptr::null_mut();
    };
    if size == 0 {
        r.errors.push("zero-size allocation".into());
        return std::ptr::null_mut();
    }
    if r.fail_at == Some(call) {
        return std::ptr::null_mut();
    }
    // SAFETY: a valid layout of non-zero size.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if !ptr.is_null() {
        // Garbage, so that the driver cannot rely on zeroed memory.
        // SAFETY: `size` bytes were just allocated.
        unsafe { ptr.write_bytes(0xa5, size) };
        r.live.insert(ptr.addr(), (layout, scope));
    }
    ptr.cast()
}

unsafe extern "system" fn free(user: *mut c_void, ptr: *mut c_void) {
    // SAFETY: the driver passes back our `pUserData`.
    let rec = unsafe { recorder(user) };
    let mut r = rec.lock();
    if std::thread::current().id() != rec.thread {
        r.errors.push("free on another thread".into());
    }
    if ptr.is_null() {
        return;
    }
    match r.live.remove(&ptr.addr()) {
        // SAFETY: allocated above with this layout.
        Some((layout, _)) => unsafe { std::alloc::dealloc(ptr.cast(), layout) },
        None => r
            .errors
            .push(format!("free of a pointer this allocator did not make: {ptr:p}")),
    }
}

unsafe extern "system" fn reallocation(
    user: *mut c_void,
    _original: *mut c_void,
    _size: usize,
    _alignment: usize,
    _scope: vk::SystemAllocationScope,
) -> *mut c_void {
    // SAFETY: the driver passes back our `pUserData`.
    let rec = unsafe { recorder(user) };
    rec.lock().errors.push("unexpected reallocation".into());
    std::ptr::null_mut()
}

/// What the process holds that a failed command must not leave behind.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Resources {
    fds: usize,
    mappings: usize,
    threads: usize,
}

fn resources() -> Resources {
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    Resources {
        fds,
        mappings: tether_payload::mapping_count(),
        threads: driver_threads(),
    }
}

/// The driver's threads (queue workers, the SYNC_FD notifier): they are named `tether-*`. The
/// test harness's own threads come and go, so they are not counted.
fn driver_threads() -> usize {
    let comm = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let own_tid = rustix::thread::gettid().as_raw_nonzero().get().to_string();
    let own = comm(format!("/proc/self/task/{own_tid}/comm").into());
    for _ in 0..1000 {
        let tasks: Vec<(String, String)> = std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|t| {
                        (
                            t.file_name().to_string_lossy().into_owned(),
                            comm(t.path().join("comm")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A thread names itself once it runs: until then it has its creator's name.
        if tasks.iter().all(|(tid, name)| *tid == own_tid || *name != own) {
            return tasks.iter().filter(|(_, name)| name.starts_with("tether-")).count();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("a thread of the driver never named itself")
}

fn entry() -> ash::Entry {
    // SAFETY: the driver's `vk_icdGetInstanceProcAddr` answers global commands for a NULL
    // instance, and lives as long as the process.
    unsafe {
        ash::Entry::from_static_fn(ash::StaticFn {
            get_instance_proc_addr: tether_icd::vk_icdGetInstanceProcAddr,
        })
    }
}

const INSTANCE_EXTENSIONS: [&CStr; 1] = [ash::ext::debug_utils::NAME];
const DEVICE_EXTENSIONS: [&CStr; 2] = [ash::khr::external_fence_fd::NAME, ash::khr::external_semaphore_fd::NAME];

fn create_instance(
    entry: &ash::Entry,
    callbacks: Option<&vk::AllocationCallbacks<'_>>,
) -> ash::prelude::VkResult<ash::Instance> {
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_2);
    let ext: Vec<_> = INSTANCE_EXTENSIONS.iter().map(|e| e.as_ptr()).collect();
    let info = vk::InstanceCreateInfo::default()
        .application_info(&app)
        .enabled_extension_names(&ext);
    // SAFETY: valid create info; the callbacks outlive the instance.
    unsafe { entry.create_instance(&info, callbacks) }
}

fn create_device(
    instance: &ash::Instance,
    queues: u32,
    callbacks: Option<&vk::AllocationCallbacks<'_>>,
) -> ash::prelude::VkResult<ash::Device> {
    // SAFETY: a live instance.
    let pd = unsafe { instance.enumerate_physical_devices() }.expect("physical devices")[0];
    let priorities = vec![1.0f32; queues as usize];
    let queue_info = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(0)
        .queue_priorities(&priorities)];
    let ext: Vec<_> = DEVICE_EXTENSIONS.iter().map(|e| e.as_ptr()).collect();
    let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
    let info = vk::DeviceCreateInfo::default()
        .queue_create_infos(&queue_info)
        .enabled_extension_names(&ext)
        .push_next(&mut timeline);
    // SAFETY: valid create info on a live physical device.
    unsafe { instance.create_device(pd, &info, callbacks) }
}

/// An instance and a device made without callbacks, for the object tests.
struct Base {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
}

impl Base {
    fn new() -> Base {
        let entry = entry();
        let instance = create_instance(&entry, None).expect("instance");
        let device = create_device(&instance, 2, None).expect("device");
        Base {
            _entry: entry,
            instance,
            device,
        }
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        // SAFETY: everything made on them was destroyed by the tests.
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

/// Runs `create` with a recording allocator (it must succeed and allocate at least once), then
/// `destroy` with the same callbacks; then again with an allocator that fails allocation N, for
/// every N below the count, each of which must fail with `VK_ERROR_OUT_OF_HOST_MEMORY` and leave
/// nothing behind. Returns the count.
fn sweep<T>(
    what: &str,
    mut create: impl FnMut(&vk::AllocationCallbacks<'_>) -> ash::prelude::VkResult<T>,
    mut destroy: impl FnMut(T, &vk::AllocationCallbacks<'_>),
) -> usize {
    let before = resources();
    let counting = Recorder::new();
    let object = create(&counting.callbacks()).unwrap_or_else(|e| panic!("{what}: {e:?} with a working allocator"));
    let total = counting.calls();
    assert!(
        total >= 1,
        "{what}: the command made no allocation through the callbacks"
    );
    assert_eq!(counting.live(), total, "{what}: live blocks after create");
    destroy(object, &counting.callbacks());
    counting.assert_balanced(what);
    assert_eq!(resources(), before, "{what}: resources after destroy");

    for n in 0..total {
        let failing = Recorder::failing_at(n);
        match create(&failing.callbacks()) {
            Err(vk::Result::ERROR_OUT_OF_HOST_MEMORY) => {}
            Err(e) => panic!("{what}: failing allocation {n} of {total} gave {e:?}"),
            Ok(_) => panic!("{what}: failing allocation {n} of {total} succeeded"),
        }
        failing.assert_balanced(&format!("{what}, allocation {n} failing"));
        assert_eq!(
            resources(),
            before,
            "{what}, allocation {n} failing: something was left behind"
        );
    }
    // Failing past the last allocation changes nothing.
    let late = Recorder::failing_at(total);
    let object = create(&late.callbacks()).unwrap_or_else(|e| panic!("{what}: {e:?} failing past the end"));
    destroy(object, &late.callbacks());
    late.assert_balanced(what);
    eprintln!("{what}: {total} allocation(s), each failed in turn");
    total
}

#[test]
fn instance_allocations_go_through_the_callbacks() {
    let _serial = serial();
    let entry = entry();
    // Warm up the driver's process-wide state (tables, the command list) outside the counts.
    let warm = create_instance(&entry, None).expect("instance");
    // SAFETY: made above.
    unsafe { warm.destroy_instance(None) };

    let total = sweep(
        "vkCreateInstance",
        |cb| create_instance(&entry, Some(cb)),
        // SAFETY: made by `create`.
        |i, cb| unsafe { i.destroy_instance(Some(cb)) },
    );
    assert_eq!(total, 1, "one block: the instance with its physical device");

    // A chained messenger is part of the instance.
    unsafe extern "system" fn quiet(
        _: vk::DebugUtilsMessageSeverityFlagsEXT,
        _: vk::DebugUtilsMessageTypeFlagsEXT,
        _: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
        _: *mut c_void,
    ) -> vk::Bool32 {
        vk::FALSE
    }
    let rec = Recorder::new();
    let mut chained = vk::DebugUtilsMessengerCreateInfoEXT::default()
        .message_severity(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR)
        .message_type(vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION)
        .pfn_user_callback(Some(quiet));
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_2);
    let ext: Vec<_> = INSTANCE_EXTENSIONS.iter().map(|e| e.as_ptr()).collect();
    let info = vk::InstanceCreateInfo::default()
        .application_info(&app)
        .enabled_extension_names(&ext)
        .push_next(&mut chained);
    // SAFETY: valid create info.
    let instance = unsafe { entry.create_instance(&info, Some(&rec.callbacks())) }.expect("instance");
    // SAFETY: made above.
    unsafe { instance.destroy_instance(Some(&rec.callbacks())) };
    rec.assert_balanced("instance with a chained messenger");
}

#[test]
fn device_and_queues_go_through_the_callbacks() {
    let _serial = serial();
    let entry = entry();
    let instance = create_instance(&entry, None).expect("instance");
    for queues in [1, 4] {
        let total = sweep(
            &format!("vkCreateDevice with {queues} queue(s)"),
            |cb| create_device(&instance, queues, Some(cb)),
            // SAFETY: made by `create`.
            |d, cb| unsafe { d.destroy_device(Some(cb)) },
        );
        assert_eq!(total, 1 + queues as usize, "the device, then each queue");
    }
    // SAFETY: made above.
    unsafe { instance.destroy_instance(None) };
}

#[test]
fn children_fall_back_to_the_device_then_the_instance() {
    let _serial = serial();
    let entry = entry();
    let for_instance = Recorder::new();
    let instance = create_instance(&entry, Some(&for_instance.callbacks())).expect("instance");
    let after_instance = for_instance.calls();
    // A device made without callbacks uses the instance's (scope DEVICE).
    let device = create_device(&instance, 2, None).expect("device");
    assert_eq!(for_instance.calls(), after_instance + 3);
    assert_eq!(
        for_instance
            .lock()
            .scopes
            .get(&vk::SystemAllocationScope::DEVICE.as_raw()),
        Some(&3)
    );
    // A fence made without callbacks uses the device's, that is the instance's (scope OBJECT).
    // SAFETY: valid create info on a live device.
    let fence = unsafe { device.create_fence(&vk::FenceCreateInfo::default(), None) }.expect("fence");
    assert_eq!(
        for_instance
            .lock()
            .scopes
            .get(&vk::SystemAllocationScope::OBJECT.as_raw()),
        Some(&1)
    );
    // A fence with its own callbacks uses only those.
    let own = Recorder::new();
    let calls = for_instance.calls();
    // SAFETY: as above.
    let own_fence =
        unsafe { device.create_fence(&vk::FenceCreateInfo::default(), Some(&own.callbacks())) }.expect("fence");
    assert_eq!(for_instance.calls(), calls);
    assert_eq!(own.live(), 1);
    // SAFETY: made above, each with its own callbacks (or none).
    unsafe {
        device.destroy_fence(own_fence, Some(&own.callbacks()));
        device.destroy_fence(fence, None);
        device.destroy_device(None);
        instance.destroy_instance(Some(&for_instance.callbacks()));
    }
    own.assert_balanced("a fence with its own callbacks");
    for_instance.assert_balanced("instance, inheriting device and fence");
}

#[test]
fn fences_semaphores_and_events() {
    let _serial = serial();
    let base = Base::new();
    let d = &base.device;
    let fence_infos: [(&str, vk::FenceCreateFlags, vk::ExternalFenceHandleTypeFlags); 4] = [
        (
            "fence",
            vk::FenceCreateFlags::empty(),
            vk::ExternalFenceHandleTypeFlags::empty(),
        ),
        (
            "signaled fence",
            vk::FenceCreateFlags::SIGNALED,
            vk::ExternalFenceHandleTypeFlags::empty(),
        ),
        (
            "exportable fence (OPAQUE_FD)",
            vk::FenceCreateFlags::empty(),
            vk::ExternalFenceHandleTypeFlags::OPAQUE_FD,
        ),
        (
            "exportable fence (SYNC_FD)",
            vk::FenceCreateFlags::SIGNALED,
            vk::ExternalFenceHandleTypeFlags::SYNC_FD,
        ),
    ];
    for (what, flags, export) in fence_infos {
        sweep(
            &format!("vkCreateFence: {what}"),
            |cb| {
                let mut e = vk::ExportFenceCreateInfo::default().handle_types(export);
                let mut info = vk::FenceCreateInfo::default().flags(flags);
                if !export.is_empty() {
                    info = info.push_next(&mut e);
                }
                // SAFETY: valid create info on a live device.
                unsafe { d.create_fence(&info, Some(cb)) }
            },
            // SAFETY: made by `create`.
            |f, cb| unsafe { d.destroy_fence(f, Some(cb)) },
        );
    }
    let semaphore_infos: [(&str, vk::SemaphoreType, u64, vk::ExternalSemaphoreHandleTypeFlags); 5] = [
        (
            "binary",
            vk::SemaphoreType::BINARY,
            0,
            vk::ExternalSemaphoreHandleTypeFlags::empty(),
        ),
        (
            "timeline",
            vk::SemaphoreType::TIMELINE,
            5,
            vk::ExternalSemaphoreHandleTypeFlags::empty(),
        ),
        (
            "exportable binary (OPAQUE_FD)",
            vk::SemaphoreType::BINARY,
            0,
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD,
        ),
        (
            "exportable binary (SYNC_FD)",
            vk::SemaphoreType::BINARY,
            0,
            vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD,
        ),
        (
            "exportable timeline (OPAQUE_FD)",
            vk::SemaphoreType::TIMELINE,
            7,
            vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD,
        ),
    ];
    for (what, ty, initial, export) in semaphore_infos {
        sweep(
            &format!("vkCreateSemaphore: {what}"),
            |cb| {
                let mut t = vk::SemaphoreTypeCreateInfo::default()
                    .semaphore_type(ty)
                    .initial_value(initial);
                let mut e = vk::ExportSemaphoreCreateInfo::default().handle_types(export);
                let mut info = vk::SemaphoreCreateInfo::default().push_next(&mut t);
                if !export.is_empty() {
                    info = info.push_next(&mut e);
                }
                // SAFETY: valid create info on a live device.
                unsafe { d.create_semaphore(&info, Some(cb)) }
            },
            // SAFETY: made by `create`.
            |s, cb| unsafe { d.destroy_semaphore(s, Some(cb)) },
        );
    }
    sweep(
        "vkCreateEvent",
        // SAFETY: valid create info on a live device.
        |cb| unsafe { d.create_event(&vk::EventCreateInfo::default(), Some(cb)) },
        // SAFETY: made by `create`.
        |e, cb| unsafe { d.destroy_event(e, Some(cb)) },
    );
}

#[test]
fn memory_buffers_pools_and_command_buffers() {
    let _serial = serial();
    let base = Base::new();
    let d = &base.device;
    sweep(
        "vkAllocateMemory",
        // SAFETY: valid allocate info on a live device.
        |cb| unsafe { d.allocate_memory(&vk::MemoryAllocateInfo::default().allocation_size(65536), Some(cb)) },
        // SAFETY: made by `create`.
        |m, cb| unsafe { d.free_memory(m, Some(cb)) },
    );
    sweep(
        "vkCreateBuffer",
        |cb| {
            let info = vk::BufferCreateInfo::default()
                .size(256)
                .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST);
            // SAFETY: valid create info on a live device.
            unsafe { d.create_buffer(&info, Some(cb)) }
        },
        // SAFETY: made by `create`.
        |b, cb| unsafe { d.destroy_buffer(b, Some(cb)) },
    );
    sweep(
        "vkCreateCommandPool",
        // SAFETY: valid create info on a live device.
        |cb| unsafe { d.create_command_pool(&vk::CommandPoolCreateInfo::default(), Some(cb)) },
        // SAFETY: made by `create`.
        |p, cb| unsafe { d.destroy_command_pool(p, Some(cb)) },
    );

    // Command buffers come from their pool's allocator; `vkAllocateCommandBuffers` takes none.
    const COUNT: u32 = 3;
    let allocate = |pool: vk::CommandPool| -> (vk::Result, [vk::CommandBuffer; COUNT as usize]) {
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(COUNT);
        // Garbage in the outputs, to see them set to NULL on failure.
        let mut out = [vk::CommandBuffer::from_raw(0xdead); COUNT as usize];
        // SAFETY: room for COUNT handles; a live device and pool.
        let r = unsafe { (d.fp_v1_0().allocate_command_buffers)(d.handle(), &info, out.as_mut_ptr()) };
        (r, out)
    };
    let before = resources();
    let counting = Recorder::new();
    // SAFETY: valid create info on a live device.
    let pool = unsafe { d.create_command_pool(&vk::CommandPoolCreateInfo::default(), Some(&counting.callbacks())) }
        .expect("pool");
    let after_pool = counting.calls();
    let (r, cbs) = allocate(pool);
    assert_eq!(r, vk::Result::SUCCESS);
    let total = counting.calls() - after_pool;
    assert_eq!(total, COUNT as usize, "one block per command buffer");
    // SAFETY: allocated above from `pool`.
    unsafe { d.free_command_buffers(pool, &cbs[..1]) };
    assert_eq!(counting.live(), after_pool + COUNT as usize - 1);
    // The rest go with the pool.
    // SAFETY: made above.
    unsafe { d.destroy_command_pool(pool, Some(&counting.callbacks())) };
    counting.assert_balanced("command pool with command buffers");
    for n in 0..total {
        // Fail the pool's allocation number `after_pool + n`: the nth command buffer.
        let failing = Recorder::failing_at(after_pool + n);
        // SAFETY: as above.
        let pool = unsafe { d.create_command_pool(&vk::CommandPoolCreateInfo::default(), Some(&failing.callbacks())) }
            .expect("pool");
        let (r, cbs) = allocate(pool);
        assert_eq!(r, vk::Result::ERROR_OUT_OF_HOST_MEMORY, "command buffer {n} failing");
        assert!(cbs.iter().all(|c| c.is_null()), "outputs must all be NULL: {cbs:?}");
        assert_eq!(
            failing.live(),
            after_pool,
            "command buffer {n} failing: the pool alone is live"
        );
        // SAFETY: made above.
        unsafe { d.destroy_command_pool(pool, Some(&failing.callbacks())) };
        failing.assert_balanced(&format!("command buffer {n} failing"));
    }
    assert_eq!(resources(), before);
    eprintln!("vkAllocateCommandBuffers ({COUNT}): {total} allocation(s), each failed in turn");
}

#[test]
fn messengers() {
    let _serial = serial();
    let entry = entry();
    let instance = create_instance(&entry, None).expect("instance");
    let utils = ash::ext::debug_utils::Instance::new(&entry, &instance);
    unsafe extern "system" fn quiet(
        _: vk::DebugUtilsMessageSeverityFlagsEXT,
        _: vk::DebugUtilsMessageTypeFlagsEXT,
        _: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
        _: *mut c_void,
    ) -> vk::Bool32 {
        vk::FALSE
    }
    let info = vk::DebugUtilsMessengerCreateInfoEXT::default()
        .message_severity(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR)
        .message_type(vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION)
        .pfn_user_callback(Some(quiet));
    sweep(
        "vkCreateDebugUtilsMessengerEXT",
        // SAFETY: valid create info on a live instance.
        |cb| unsafe { utils.create_debug_utils_messenger(&info, Some(cb)) },
        // SAFETY: made by `create`.
        |m, cb| unsafe { utils.destroy_debug_utils_messenger(m, Some(cb)) },
    );
    // SAFETY: made above.
    unsafe { instance.destroy_instance(None) };
}

/// Exports and imports allocate no object storage (payloads are internal); objects made with
/// callbacks keep their balance through them, and fds come back to where they were.
#[test]
fn import_and_export_paths() {
    let _serial = serial();
    let base = Base::new();
    let d = &base.device;
    let fence_fd = ash::khr::external_fence_fd::Device::new(&base.instance, d);
    let semaphore_fd = ash::khr::external_semaphore_fd::Device::new(&base.instance, d);
    let before = resources();
    let rec = Recorder::new();
    let cb = rec.callbacks();
    let mut export = vk::ExportFenceCreateInfo::default().handle_types(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD);
    // SAFETY: valid create infos on a live device.
    let (source, target) = unsafe {
        (
            d.create_fence(&vk::FenceCreateInfo::default().push_next(&mut export), Some(&cb))
                .unwrap(),
            d.create_fence(&vk::FenceCreateInfo::default(), Some(&cb)).unwrap(),
        )
    };
    let calls = rec.calls();
    let info = vk::FenceGetFdInfoKHR::default()
        .fence(source)
        .handle_type(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD);
    // SAFETY: a live exportable fence.
    let fd = unsafe { fence_fd.get_fence_fd(&info) }.expect("export");
    let import = vk::ImportFenceFdInfoKHR::default()
        .fence(target)
        .handle_type(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD)
        .fd(fd);
    // SAFETY: a live fence and an fd of a fence payload (the import takes it).
    unsafe { fence_fd.import_fence_fd(&import) }.expect("import");
    assert_eq!(rec.calls(), calls, "import and export make no object allocation");

    let mut sem_export =
        vk::ExportSemaphoreCreateInfo::default().handle_types(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
    // SAFETY: valid create infos on a live device.
    let (s_source, s_target) = unsafe {
        (
            d.create_semaphore(
                &vk::SemaphoreCreateInfo::default().push_next(&mut sem_export),
                Some(&cb),
            )
            .unwrap(),
            d.create_semaphore(&vk::SemaphoreCreateInfo::default(), Some(&cb))
                .unwrap(),
        )
    };
    let calls = rec.calls();
    let info = vk::SemaphoreGetFdInfoKHR::default()
        .semaphore(s_source)
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
    // SAFETY: a live exportable semaphore.
    let fd = unsafe { semaphore_fd.get_semaphore_fd(&info) }.expect("export");
    let import = vk::ImportSemaphoreFdInfoKHR::default()
        .semaphore(s_target)
        .flags(vk::SemaphoreImportFlags::TEMPORARY)
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD)
        .fd(fd);
    // SAFETY: a live semaphore and an fd of a semaphore payload (the import takes it).
    unsafe { semaphore_fd.import_semaphore_fd(&import) }.expect("import");
    assert_eq!(rec.calls(), calls, "import and export make no object allocation");

    // SAFETY: made above with these callbacks.
    unsafe {
        d.destroy_fence(source, Some(&cb));
        d.destroy_fence(target, Some(&cb));
        d.destroy_semaphore(s_source, Some(&cb));
        d.destroy_semaphore(s_target, Some(&cb));
    }
    rec.assert_balanced("import and export");
    assert_eq!(resources(), before);
}

/// Objects made with callbacks and used by queue work: their storage is freed by their destroy
/// command on this thread, never by a queue worker, even when the worker still finishes the
/// batch after the application has seen its fence; recorded commands outlive what they name.
#[test]
fn queue_work_never_frees_through_the_callbacks() {
    let _serial = serial();
    let base = Base::new();
    let d = &base.device;
    // SAFETY: a live device with two queues.
    let (queue, waiting_queue) = unsafe { (d.get_device_queue(0, 0), d.get_device_queue(0, 1)) };
    for round in 0..50 {
        let rec = Recorder::new();
        let cb = rec.callbacks();
        // SAFETY: valid create infos, submits and waits on live objects; each destroyed once.
        unsafe {
            let fence = d.create_fence(&vk::FenceCreateInfo::default(), Some(&cb)).unwrap();
            let a = d
                .create_semaphore(&vk::SemaphoreCreateInfo::default(), Some(&cb))
                .unwrap();
            let mut t = vk::SemaphoreTypeCreateInfo::default()
                .semaphore_type(vk::SemaphoreType::TIMELINE)
                .initial_value(0);
            let b = d
                .create_semaphore(&vk::SemaphoreCreateInfo::default().push_next(&mut t), Some(&cb))
                .unwrap();
            let event = d.create_event(&vk::EventCreateInfo::default(), Some(&cb)).unwrap();
            let memory = d
                .allocate_memory(&vk::MemoryAllocateInfo::default().allocation_size(4096), Some(&cb))
                .unwrap();
            let buffer = d
                .create_buffer(
                    &vk::BufferCreateInfo::default()
                        .size(256)
                        .usage(vk::BufferUsageFlags::TRANSFER_DST),
                    Some(&cb),
                )
                .unwrap();
            d.bind_buffer_memory(buffer, memory, 0).unwrap();
            let pool = d
                .create_command_pool(&vk::CommandPoolCreateInfo::default(), Some(&cb))
                .unwrap();
            let cbuf = d
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(pool)
                        .level(vk::CommandBufferLevel::PRIMARY)
                        .command_buffer_count(1),
                )
                .unwrap()[0];
            d.begin_command_buffer(cbuf, &vk::CommandBufferBeginInfo::default())
                .unwrap();
            d.cmd_fill_buffer(cbuf, buffer, 0, 256, 0x0102_0304);
            d.cmd_set_event(cbuf, event, vk::PipelineStageFlags::ALL_COMMANDS);
            d.end_command_buffer(cbuf).unwrap();

            // One queue's worker waits on `a`, then signals the fence; the other queue runs the
            // command buffer and signals `a` and `b`.
            let values = [1u64];
            let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
            let waiting = vk::SubmitInfo::default()
                .wait_semaphores(std::slice::from_ref(&a))
                .wait_dst_stage_mask(&stages);
            d.queue_submit(waiting_queue, &[waiting], fence).unwrap();
            let mut timeline = vk::TimelineSemaphoreSubmitInfo::default().signal_semaphore_values(&[0, 1]);
            let signals = [a, b];
            let signaling = vk::SubmitInfo::default()
                .command_buffers(std::slice::from_ref(&cbuf))
                .signal_semaphores(&signals)
                .push_next(&mut timeline);
            d.queue_submit(queue, &[signaling], vk::Fence::null()).unwrap();
            d.wait_for_fences(&[fence], true, u64::MAX).unwrap();
            d.wait_semaphores(
                &vk::SemaphoreWaitInfo::default()
                    .semaphores(std::slice::from_ref(&b))
                    .values(&values),
                u64::MAX,
            )
            .unwrap();
            // Destroyed the moment the fence is seen: the worker may still hold the batch.
            d.destroy_fence(fence, Some(&cb));
            d.destroy_semaphore(a, Some(&cb));
            d.destroy_semaphore(b, Some(&cb));
            // The command buffer still records the event and the buffer.
            d.destroy_event(event, Some(&cb));
            d.destroy_buffer(buffer, Some(&cb));
            d.free_memory(memory, Some(&cb));
            rec.assert_no_errors(&format!("round {round}, before the pool"));
            d.queue_wait_idle(queue).unwrap();
            d.destroy_command_pool(pool, Some(&cb));
            d.queue_wait_idle(waiting_queue).unwrap();
        }
        rec.assert_balanced(&format!("round {round}"));
    }
}

/// A destroy whose `pAllocator` does not match the creation (invalid usage) still frees through
/// the allocator the storage came from.
#[test]
fn mismatched_destroy_frees_through_the_creator() {
    let _serial = serial();
    let base = Base::new();
    let d = &base.device;
    let rec = Recorder::new();
    let other = Recorder::new();
    // SAFETY: valid create infos; the destroys are deliberately mismatched (invalid usage the
    // driver tolerates).
    unsafe {
        let f = d
            .create_fence(&vk::FenceCreateInfo::default(), Some(&rec.callbacks()))
            .unwrap();
        d.destroy_fence(f, None);
        let g = d.create_fence(&vk::FenceCreateInfo::default(), None).unwrap();
        d.destroy_fence(g, Some(&other.callbacks()));
    }
    rec.assert_balanced("created with callbacks, destroyed without");
    assert_eq!(other.calls(), 0);
    other.assert_balanced("created without callbacks, destroyed with");
}

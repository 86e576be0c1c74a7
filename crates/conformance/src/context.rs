//! Test contexts: an instance ([`TestInstance`]) and a device with its queues ([`TestDevice`]),
//! on any [`Route`]. Both record every debug-utils message; dropping them destroys everything
//! they made and fails the test on a validation error it did not allow.

use std::ffi::{CStr, c_void};
use std::sync::{Arc, Mutex, MutexGuard};

use ash::vk;

use crate::harness::{DEVICE_ENV, Route, Target, VALIDATION_LAYER, environment, target};
use crate::kind::SyncKind;

/// A wait this long that has not completed shows the waited-for thing did not happen (20 ms).
pub const SHORT_NS: u64 = 20_000_000;
/// A wait that must complete: only a hang takes this long (10 s). Tests never assert on time.
pub const LONG_NS: u64 = 10_000_000_000;

/// The device's name.
pub const DEVICE_NAME: &CStr = c"tether CPU";

/// Held around every device creation (with the `vkGetDeviceProcAddr` calls that load its
/// commands) and every device destruction of the trials.
///
/// The Khronos loader adds and frees the nodes of its logical-device lists in `vkCreateDevice`
/// and `vkDestroyDevice` without a lock, while `vkGetDeviceProcAddr` walks those lists of every
/// instance under its own lock (Vulkan-Loader issue 2018, still so in 1.4.x). The trials are
/// threads of one process: without this lock a trial loading its device's commands while
/// another destroys its device reads freed memory (seen with 1.3.239: SIGSEGV in
/// `vkGetDeviceProcAddr`, in about one run in ten of a Win32 suite).
static DEVICE_LIST: Mutex<()> = Mutex::new(());

/// Takes the lock held around every device creation and destruction of the trials: the Khronos
/// loader changes its logical-device lists without a lock (Vulkan-Loader issue 2018).
pub fn device_list_lock() -> MutexGuard<'static, ()> {
    DEVICE_LIST.lock().unwrap_or_else(|e| e.into_inner())
}

/// One debug-utils message.
#[derive(Clone, Debug)]
pub struct Message {
    pub severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    pub types: vk::DebugUtilsMessageTypeFlagsEXT,
    pub id: String,
    pub text: String,
}

impl Message {
    pub fn is_error(&self) -> bool {
        self.severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR)
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{:?}] {}: {}", self.severity, self.id, self.text)
    }
}

/// Every message a messenger received.
#[derive(Default)]
pub struct MessageLog {
    messages: Mutex<Vec<Message>>,
}

impl MessageLog {
    fn lock(&self) -> MutexGuard<'_, Vec<Message>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, message: Message) {
        if std::env::var_os("TETHER_TEST_LOG").is_some() {
            eprintln!("debug-utils: {message}");
        }
        self.lock().push(message);
    }

    pub fn snapshot(&self) -> Vec<Message> {
        self.lock().clone()
    }

    /// Takes the messages so far.
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.lock())
    }

    pub fn errors(&self) -> Vec<Message> {
        self.lock().iter().filter(|m| m.is_error()).cloned().collect()
    }

    /// Whether a message whose id contains `id` was received.
    pub fn has(&self, id: &str) -> bool {
        self.lock().iter().any(|m| m.id.contains(id))
    }
}

/// The messenger callback: `user_data` is the `MessageLog` of the instance.
///
/// # Safety
/// `user_data` must point to a live `MessageLog`; `data` must be valid for the call.
pub unsafe extern "system" fn record_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user_data: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: per the function's contract.
    let (log, data) = unsafe { (user_data.cast::<MessageLog>().as_ref(), data.as_ref()) };
    if let Some(log) = log {
        let text = |s: Option<&CStr>| s.map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // SAFETY: the strings in `data` are NULL or NUL-terminated for the call.
        let (id, message) =
            unsafe { data.map_or((None, None), |d| (d.message_id_name_as_c_str(), d.message_as_c_str())) };
        log.push(Message {
            severity,
            types,
            id: text(id),
            text: text(message),
        });
    }
    vk::FALSE
}

/// How a context is made.
#[derive(Clone, Debug)]
pub struct Options {
    /// Enable `VK_LAYER_KHRONOS_validation` on the loader routes when it is installed.
    pub validation_layer: bool,
    /// Queues of family 0 to create (1 to 4).
    pub queue_count: u32,
    /// Enable the timelineSemaphore and synchronization2 features and the default extensions.
    pub features: bool,
    /// Device extensions to enable besides the default ones.
    pub extra_device_extensions: Vec<&'static CStr>,
    /// Error messages whose id contains one of these are tolerated.
    pub allowed_errors: Vec<&'static str>,
    /// Error messages are expected (bad-input tests): none fails the test at drop.
    pub expect_errors: bool,
    /// Turn on the validation layer's synchronization validation (hazards between commands).
    /// Only for single-threaded workloads: the 1.3.239 layer with it on reports
    /// `UNASSIGNED-VkSemaphore-state-timeout` / `-VkFence-state-timeout` ("most likely a validation
    /// bug") when host waits on several threads race with host signals.
    pub sync_validation: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            validation_layer: true,
            queue_count: 4,
            features: true,
            extra_device_extensions: Vec::new(),
            allowed_errors: Vec::new(),
            expect_errors: false,
            sync_validation: false,
        }
    }
}

impl Options {
    /// Without the validation layer (for work that breaks a valid-usage rule on purpose).
    pub fn without_validation_layer() -> Options {
        Options {
            validation_layer: false,
            ..Options::default()
        }
    }

    /// Errors are the point of the test.
    pub fn expecting_errors() -> Options {
        Options {
            validation_layer: false,
            expect_errors: true,
            ..Options::default()
        }
    }

    pub fn allow(mut self, id: &'static str) -> Options {
        self.allowed_errors.push(id);
        self
    }

    /// With the layer's synchronization validation (see [`Options::sync_validation`]).
    pub fn with_sync_validation(mut self) -> Options {
        self.sync_validation = true;
        self
    }

    pub fn queues(mut self, n: u32) -> Options {
        self.queue_count = n;
        self
    }
}

/// The instance extensions every context enables.
pub const INSTANCE_EXTENSIONS: &[&CStr] = &[
    ash::ext::debug_utils::NAME,
    ash::khr::get_physical_device_properties2::NAME,
    ash::khr::external_fence_capabilities::NAME,
    ash::khr::external_semaphore_capabilities::NAME,
];

/// The device extensions every context enables (with `Options::features`).
pub const DEVICE_EXTENSIONS: &[&CStr] = &[
    ash::khr::timeline_semaphore::NAME,
    ash::khr::synchronization2::NAME,
    ash::khr::external_fence::NAME,
    ash::khr::external_semaphore::NAME,
];

/// The `ash::Entry` for a route.
pub fn entry(route: Route) -> ash::Entry {
    match route {
        Route::Loader | Route::DirectDriverLoading => {
            crate::harness::load_loader().expect("loading the Vulkan loader (libvulkan.so.1)")
        }
        // SAFETY: the driver's `vk_icdGetInstanceProcAddr` answers global commands for a NULL
        // instance, as `vkGetInstanceProcAddr` does, and lives as long as the process.
        Route::InProcess => unsafe {
            ash::Entry::from_static_fn(ash::StaticFn {
                get_instance_proc_addr: tether_icd::vk_icdGetInstanceProcAddr,
            })
        },
    }
}

/// An instance on a route, its messenger, and the target's physical device (the tether device,
/// or on [`Target::LayerOverSystem`] a system driver's).
pub struct TestInstance {
    pub route: Route,
    pub entry: ash::Entry,
    pub instance: ash::Instance,
    pub debug_utils: ash::ext::debug_utils::Instance,
    messenger: vk::DebugUtilsMessengerEXT,
    pub physical_device: vk::PhysicalDevice,
    /// Whether `VK_LAYER_KHRONOS_validation` is enabled on this instance.
    pub validation_layer: bool,
    pub log: Arc<MessageLog>,
    options: Options,
}

/// A messenger create-info that records into `log`, for every severity from WARNING up.
pub fn messenger_info(log: &Arc<MessageLog>) -> vk::DebugUtilsMessengerCreateInfoEXT<'static> {
    vk::DebugUtilsMessengerCreateInfoEXT::default()
        .message_severity(vk::DebugUtilsMessageSeverityFlagsEXT::WARNING | vk::DebugUtilsMessageSeverityFlagsEXT::ERROR)
        .message_type(
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
        )
        .pfn_user_callback(Some(record_message))
        .user_data(Arc::as_ptr(log).cast_mut().cast())
}

impl TestInstance {
    pub fn new(route: Route) -> TestInstance {
        TestInstance::with_options(route, Options::default())
    }

    pub fn with_options(route: Route, options: Options) -> TestInstance {
        let entry = entry(route);
        let log = Arc::new(MessageLog::default());
        let validation_layer = route.uses_loader() && options.validation_layer && environment().validation_layer;
        let layers: Vec<*const std::ffi::c_char> = if validation_layer {
            vec![VALIDATION_LAYER.as_ptr()]
        } else {
            Vec::new()
        };
        let mut extensions: Vec<*const std::ffi::c_char> = INSTANCE_EXTENSIONS.iter().map(|e| e.as_ptr()).collect();
        if route == Route::DirectDriverLoading {
            extensions.push(ash::lunarg::direct_driver_loading::NAME.as_ptr());
        }
        let enables = [vk::ValidationFeatureEnableEXT::SYNCHRONIZATION_VALIDATION];
        let mut features = vk::ValidationFeaturesEXT::default().enabled_validation_features(&enables);
        if validation_layer && options.sync_validation {
            extensions.push(ash::ext::validation_features::NAME.as_ptr());
        }
        let app = vk::ApplicationInfo::default()
            .application_name(c"tether-conformance")
            .api_version(vk::API_VERSION_1_2);
        let drivers = [vk::DirectDriverLoadingInfoLUNARG::default()
            .pfn_get_instance_proc_addr(Some(tether_icd::vk_icdGetInstanceProcAddr))];
        let mut direct = vk::DirectDriverLoadingListLUNARG::default()
            .mode(vk::DirectDriverLoadingModeLUNARG::EXCLUSIVE)
            .drivers(&drivers);
        let mut create_messenger = messenger_info(&log);
        let mut info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layers)
            .enabled_extension_names(&extensions)
            .push_next(&mut create_messenger);
        if route == Route::DirectDriverLoading {
            info = info.push_next(&mut direct);
        }
        if validation_layer && options.sync_validation {
            info = info.push_next(&mut features);
        }
        // SAFETY: every pointer in `info` outlives the call; `log` outlives the instance.
        let instance = unsafe { entry.create_instance(&info, None) }
            .unwrap_or_else(|e| panic!("vkCreateInstance on route {route}: {e}; messages: {:?}", log.snapshot()));
        let debug_utils = ash::ext::debug_utils::Instance::new(&entry, &instance);
        // SAFETY: the instance enabled VK_EXT_debug_utils; `log` outlives the messenger.
        let messenger = unsafe { debug_utils.create_debug_utils_messenger(&messenger_info(&log), None) }
            .expect("vkCreateDebugUtilsMessengerEXT");
        let mut this = TestInstance {
            route,
            entry,
            instance,
            debug_utils,
            messenger,
            physical_device: vk::PhysicalDevice::null(),
            validation_layer,
            log,
            options,
        };
        this.physical_device = this.find_target_device();
        this
    }

    /// The physical device of the target: the tether device, or on
    /// [`Target::LayerOverSystem`] the first device whose name contains `TETHER_TEST_DEVICE`,
    /// else the first that is not a tether device.
    fn find_target_device(&self) -> vk::PhysicalDevice {
        // SAFETY: a live instance.
        let devices = unsafe { self.instance.enumerate_physical_devices() }.expect("vkEnumeratePhysicalDevices");
        let named: Vec<(vk::PhysicalDevice, String)> = devices
            .into_iter()
            .map(|pd| {
                // SAFETY: a physical device of this instance.
                let props = unsafe { self.instance.get_physical_device_properties(pd) };
                let name = props
                    .device_name_as_c_str()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (pd, name)
            })
            .collect();
        let tether = DEVICE_NAME.to_string_lossy();
        let found = match target() {
            Target::Icd | Target::LayerOverFdIcd => named.iter().find(|(_, n)| *n == tether),
            Target::LayerOverSystem => match std::env::var(DEVICE_ENV).ok().filter(|s| !s.is_empty()) {
                Some(part) => named.iter().find(|(_, n)| n.contains(&part)),
                None => named.iter().find(|(_, n)| *n != tether),
            },
        };
        let names: Vec<&str> = named.iter().map(|(_, n)| n.as_str()).collect();
        found.map(|(pd, _)| *pd).unwrap_or_else(|| {
            panic!(
                "no physical device for target {} on route {} among {names:?}",
                target(),
                self.route
            )
        })
    }

    /// The physical device's properties.
    pub fn properties(&self) -> vk::PhysicalDeviceProperties {
        // SAFETY: a physical device of this instance.
        unsafe { self.instance.get_physical_device_properties(self.physical_device) }
    }

    /// The names of the device extensions the physical device offers.
    pub fn device_extension_names(&self) -> Vec<String> {
        // SAFETY: a physical device of this instance.
        unsafe {
            self.instance
                .enumerate_device_extension_properties(self.physical_device)
        }
        .expect("vkEnumerateDeviceExtensionProperties")
        .iter()
        .map(|e| {
            e.extension_name_as_c_str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
    }

    /// The error messages the options do not allow.
    pub fn unexpected_errors(&self) -> Vec<Message> {
        self.log
            .errors()
            .into_iter()
            .filter(|m| !self.options.allowed_errors.iter().any(|a| m.id.contains(a)))
            .collect()
    }
}

impl Drop for TestInstance {
    fn drop(&mut self) {
        // SAFETY: the messenger and the instance were made here and are destroyed once, after
        // every child (the device, destroyed by `TestDevice::drop`).
        unsafe {
            self.debug_utils.destroy_debug_utils_messenger(self.messenger, None);
            self.instance.destroy_instance(None);
        }
        if std::thread::panicking() || self.options.expect_errors {
            return;
        }
        let errors = self.unexpected_errors();
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!(
                "{} unexpected validation error(s) on route {}{}:\n  {}",
                errors.len(),
                self.route,
                if self.validation_layer {
                    " (with VK_LAYER_KHRONOS_validation)"
                } else {
                    ""
                },
                list.join("\n  ")
            );
        }
    }
}

/// A buffer bound to its own host-visible memory, mapped for its whole life.
#[derive(Clone, Copy, Debug)]
pub struct HostBuffer {
    pub buffer: vk::Buffer,
    pub memory: vk::DeviceMemory,
    pub size: u64,
    /// The mapping's address (an integer so the struct can cross threads).
    address: usize,
}

impl HostBuffer {
    /// A copy of the buffer's bytes.
    ///
    /// Read only once the writes are known complete (after a fence or semaphore wait).
    pub fn read(&self) -> Vec<u8> {
        // SAFETY: the mapping covers `size` bytes and lives as long as the context; reads race
        // with no device write because callers wait for the writing batch first.
        unsafe { std::slice::from_raw_parts(self.address as *const u8, self.size as usize) }.to_vec()
    }

    /// The buffer as native-endian u32s.
    pub fn read_u32(&self) -> Vec<u32> {
        self.read()
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Writes bytes from the host at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.size as usize);
        // SAFETY: in range of the mapping (checked above); no batch touches the buffer now.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (self.address as *mut u8).add(offset), bytes.len()) };
    }
}

/// One batch of a submit: semaphore waits and signals with their values (ignored for binary
/// semaphores), and command buffers.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub waits: Vec<(vk::Semaphore, u64)>,
    pub command_buffers: Vec<vk::CommandBuffer>,
    pub signals: Vec<(vk::Semaphore, u64)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn wait(mut self, semaphore: vk::Semaphore, value: u64) -> Batch {
        self.waits.push((semaphore, value));
        self
    }
    pub fn signal(mut self, semaphore: vk::Semaphore, value: u64) -> Batch {
        self.signals.push((semaphore, value));
        self
    }
    pub fn commands(mut self, cb: vk::CommandBuffer) -> Batch {
        self.command_buffers.push(cb);
        self
    }
}

#[derive(Default)]
struct Tracked {
    fences: Vec<vk::Fence>,
    semaphores: Vec<vk::Semaphore>,
    events: Vec<vk::Event>,
    buffers: Vec<HostBuffer>,
}

/// An instance, a device with `Options::queue_count` queues of family 0 (timelineSemaphore and
/// synchronization2 enabled), a command pool, and every object made through it.
pub struct TestDevice {
    pub device: ash::Device,
    pub sync2: ash::khr::synchronization2::Device,
    queues: Vec<(vk::Queue, Mutex<()>)>,
    pool: Mutex<vk::CommandPool>,
    tracked: Mutex<Tracked>,
    /// Declared last: dropped after the device.
    pub inst: TestInstance,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Ok(())` or the error as a `vk::Result` (`SUCCESS` for `Ok`).
pub fn code(r: ash::prelude::VkResult<()>) -> vk::Result {
    r.err().unwrap_or(vk::Result::SUCCESS)
}

impl TestDevice {
    pub fn new(route: Route) -> TestDevice {
        TestDevice::with_options(route, Options::default())
    }

    pub fn with_options(route: Route, options: Options) -> TestDevice {
        let queue_count = options.queue_count;
        let features = options.features;
        let extra = options.extra_device_extensions.clone();
        let inst = TestInstance::with_options(route, options);
        let priorities = vec![1.0f32; queue_count as usize];
        let queue_infos = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let mut extensions: Vec<*const std::ffi::c_char> = Vec::new();
        if features {
            extensions.extend(DEVICE_EXTENSIONS.iter().map(|e| e.as_ptr()));
        }
        extensions.extend(extra.iter().map(|e| e.as_ptr()));
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
        let mut sync2 = vk::PhysicalDeviceSynchronization2Features::default().synchronization2(true);
        let mut info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_infos)
            .enabled_extension_names(&extensions);
        if features {
            info = info.push_next(&mut timeline).push_next(&mut sync2);
        }
        let held = device_list_lock();
        // SAFETY: `info` and everything it points to outlive the call.
        let created = unsafe { inst.instance.create_device(inst.physical_device, &info, None) };
        let device = match created {
            Ok(device) => device,
            Err(e) => {
                drop(held);
                panic!(
                    "vkCreateDevice on route {route}: {e}; messages: {:?}",
                    inst.log.snapshot()
                )
            }
        };
        let sync2 = ash::khr::synchronization2::Device::new(&inst.instance, &device);
        drop(held);
        let queues = (0..queue_count)
            // SAFETY: the device was created with `queue_count` queues of family 0.
            .map(|i| (unsafe { device.get_device_queue(0, i) }, Mutex::new(())))
            .collect();
        let pool_info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(0)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: a live device.
        let pool = unsafe { device.create_command_pool(&pool_info, None) }.expect("vkCreateCommandPool");
        TestDevice {
            device,
            sync2,
            queues,
            pool: Mutex::new(pool),
            tracked: Mutex::new(Tracked::default()),
            inst,
        }
    }

    pub fn route(&self) -> Route {
        self.inst.route
    }

    pub fn log(&self) -> &MessageLog {
        &self.inst.log
    }

    pub fn queue(&self, index: usize) -> vk::Queue {
        self.queues[index].0
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Whether the validation layer watches this device.
    pub fn validated(&self) -> bool {
        self.inst.validation_layer
    }

    // --- fences -------------------------------------------------------------------------

    pub fn try_fence(&self, signaled: bool) -> ash::prelude::VkResult<vk::Fence> {
        let flags = if signaled {
            vk::FenceCreateFlags::SIGNALED
        } else {
            vk::FenceCreateFlags::empty()
        };
        // SAFETY: a live device.
        let fence = unsafe {
            self.device
                .create_fence(&vk::FenceCreateInfo::default().flags(flags), None)
        }?;
        lock(&self.tracked).fences.push(fence);
        Ok(fence)
    }

    pub fn fence(&self, signaled: bool) -> vk::Fence {
        self.try_fence(signaled).expect("vkCreateFence")
    }

    pub fn destroy_fence(&self, fence: vk::Fence) {
        lock(&self.tracked).fences.retain(|f| *f != fence);
        // SAFETY: a fence of this device, destroyed once (its work is complete: the caller's job).
        unsafe { self.device.destroy_fence(fence, None) };
    }

    /// `vkGetFenceStatus` as a `vk::Result` (SUCCESS, NOT_READY or an error).
    pub fn fence_status(&self, fence: vk::Fence) -> vk::Result {
        // SAFETY: the raw command with a fence the caller made on this device.
        unsafe { (self.device.fp_v1_0().get_fence_status)(self.device.handle(), fence) }
    }

    /// `vkWaitForFences` as a `vk::Result`.
    pub fn wait_fences(&self, fences: &[vk::Fence], wait_all: bool, timeout: u64) -> vk::Result {
        // SAFETY: fences of this device.
        code(unsafe { self.device.wait_for_fences(fences, wait_all, timeout) })
    }

    /// Asserts the fence signals (within [`LONG_NS`], which only a hang exceeds).
    pub fn assert_signals(&self, fence: vk::Fence) {
        assert_eq!(
            self.wait_fences(&[fence], true, LONG_NS),
            vk::Result::SUCCESS,
            "the fence never signaled"
        );
    }

    /// Asserts the fence is not signaled, even after a short wait.
    pub fn assert_pending(&self, fence: vk::Fence) {
        assert_eq!(
            self.wait_fences(&[fence], true, SHORT_NS),
            vk::Result::TIMEOUT,
            "the fence signaled too early"
        );
        assert_eq!(self.fence_status(fence), vk::Result::NOT_READY);
    }

    pub fn reset_fences(&self, fences: &[vk::Fence]) {
        // SAFETY: fences of this device with no pending work.
        unsafe { self.device.reset_fences(fences) }.expect("vkResetFences");
    }

    // --- semaphores -----------------------------------------------------------------------

    fn create_semaphore(&self, info: &vk::SemaphoreCreateInfo<'_>) -> ash::prelude::VkResult<vk::Semaphore> {
        // SAFETY: a live device; `info`'s chain is valid.
        let semaphore = unsafe { self.device.create_semaphore(info, None) }?;
        lock(&self.tracked).semaphores.push(semaphore);
        Ok(semaphore)
    }

    pub fn binary_semaphore(&self) -> vk::Semaphore {
        self.create_semaphore(&vk::SemaphoreCreateInfo::default())
            .expect("vkCreateSemaphore")
    }

    pub fn timeline_semaphore(&self, initial: u64) -> vk::Semaphore {
        let mut ty = vk::SemaphoreTypeCreateInfo::default()
            .semaphore_type(vk::SemaphoreType::TIMELINE)
            .initial_value(initial);
        self.create_semaphore(&vk::SemaphoreCreateInfo::default().push_next(&mut ty))
            .expect("vkCreateSemaphore (timeline)")
    }

    pub fn destroy_semaphore(&self, semaphore: vk::Semaphore) {
        lock(&self.tracked).semaphores.retain(|s| *s != semaphore);
        // SAFETY: a semaphore of this device, destroyed once.
        unsafe { self.device.destroy_semaphore(semaphore, None) };
    }

    /// `vkSignalSemaphore`.
    pub fn signal(&self, semaphore: vk::Semaphore, value: u64) -> vk::Result {
        let info = vk::SemaphoreSignalInfo::default().semaphore(semaphore).value(value);
        // SAFETY: a timeline semaphore of this device.
        code(unsafe { self.device.signal_semaphore(&info) })
    }

    /// `vkGetSemaphoreCounterValue`.
    pub fn counter(&self, semaphore: vk::Semaphore) -> u64 {
        // SAFETY: a timeline semaphore of this device.
        unsafe { self.device.get_semaphore_counter_value(semaphore) }.expect("vkGetSemaphoreCounterValue")
    }

    /// `vkWaitSemaphores` for `(semaphore, value)` pairs, all or any.
    pub fn wait_semaphores(&self, waits: &[(vk::Semaphore, u64)], any: bool, timeout: u64) -> vk::Result {
        let semaphores: Vec<_> = waits.iter().map(|w| w.0).collect();
        let values: Vec<_> = waits.iter().map(|w| w.1).collect();
        let flags = if any {
            vk::SemaphoreWaitFlags::ANY
        } else {
            vk::SemaphoreWaitFlags::empty()
        };
        let info = vk::SemaphoreWaitInfo::default()
            .flags(flags)
            .semaphores(&semaphores)
            .values(&values);
        // SAFETY: timeline semaphores of this device.
        code(unsafe { self.device.wait_semaphores(&info, timeout) })
    }

    // --- events ---------------------------------------------------------------------------

    pub fn event(&self) -> vk::Event {
        // SAFETY: a live device.
        let event = unsafe { self.device.create_event(&vk::EventCreateInfo::default(), None) }.expect("vkCreateEvent");
        lock(&self.tracked).events.push(event);
        event
    }

    pub fn destroy_event(&self, event: vk::Event) {
        lock(&self.tracked).events.retain(|e| *e != event);
        // SAFETY: an event of this device, destroyed once.
        unsafe { self.device.destroy_event(event, None) };
    }

    /// `vkGetEventStatus` as a `vk::Result` (EVENT_SET, EVENT_RESET or an error).
    pub fn event_status(&self, event: vk::Event) -> vk::Result {
        // SAFETY: the raw command with an event of this device.
        unsafe { (self.device.fp_v1_0().get_event_status)(self.device.handle(), event) }
    }

    pub fn set_event(&self, event: vk::Event) {
        // SAFETY: an event of this device.
        unsafe { self.device.set_event(event) }.expect("vkSetEvent");
    }

    pub fn reset_event(&self, event: vk::Event) {
        // SAFETY: an event of this device.
        unsafe { self.device.reset_event(event) }.expect("vkResetEvent");
    }

    // --- memory ---------------------------------------------------------------------------

    /// A transfer source/destination buffer of `size` bytes in its own mapped, zeroed memory.
    pub fn host_buffer(&self, size: u64) -> HostBuffer {
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: a live device; the buffer is bound once to memory of a type it accepts and
        // the memory is mapped once for the buffer's life.
        unsafe {
            let buffer = self.device.create_buffer(&info, None).expect("vkCreateBuffer");
            let req = self.device.get_buffer_memory_requirements(buffer);
            let props = self
                .inst
                .instance
                .get_physical_device_memory_properties(self.inst.physical_device);
            let wanted = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
            let type_index = (0..props.memory_type_count)
                .find(|&i| {
                    req.memory_type_bits & (1 << i) != 0
                        && props.memory_types[i as usize].property_flags.contains(wanted)
                })
                .expect("a host-visible coherent memory type");
            let alloc = vk::MemoryAllocateInfo::default()
                .allocation_size(req.size)
                .memory_type_index(type_index);
            let memory = self.device.allocate_memory(&alloc, None).expect("vkAllocateMemory");
            self.device
                .bind_buffer_memory(buffer, memory, 0)
                .expect("vkBindBufferMemory");
            let ptr = self
                .device
                .map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
                .expect("vkMapMemory");
            let hb = HostBuffer {
                buffer,
                memory,
                size,
                address: ptr as usize,
            };
            lock(&self.tracked).buffers.push(hb);
            hb
        }
    }

    // --- command buffers ----------------------------------------------------------------

    /// Allocates a command buffer and records `f` into it (begin/end included). Recording holds
    /// the pool's lock, so threads may record at once.
    pub fn record(&self, f: impl FnOnce(&TestDevice, vk::CommandBuffer)) -> vk::CommandBuffer {
        let pool = lock(&self.pool);
        let info = vk::CommandBufferAllocateInfo::default()
            .command_pool(*pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: the pool is this device's and its lock is held while recording.
        let cb = unsafe {
            let cb = self
                .device
                .allocate_command_buffers(&info)
                .expect("vkAllocateCommandBuffers")[0];
            let begin = vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::SIMULTANEOUS_USE);
            self.device
                .begin_command_buffer(cb, &begin)
                .expect("vkBeginCommandBuffer");
            cb
        };
        f(self, cb);
        // SAFETY: recording started above.
        unsafe { self.device.end_command_buffer(cb) }.expect("vkEndCommandBuffer");
        cb
    }

    /// Records a fill of a whole buffer with `value`.
    pub fn fill(&self, buffer: &HostBuffer, value: u32) -> vk::CommandBuffer {
        self.record(|d, cb| {
            // SAFETY: recording a transfer command with a buffer of this device.
            unsafe { d.device.cmd_fill_buffer(cb, buffer.buffer, 0, vk::WHOLE_SIZE, value) }
        })
    }

    // --- submits ------------------------------------------------------------------------

    /// `vkQueueSubmit` of `batches` (and `fence`, may be null) to queue `queue`; timeline values
    /// go in a chained `VkTimelineSemaphoreSubmitInfo`. The queue's lock is held for the call.
    pub fn submit(&self, queue: usize, batches: &[Batch], fence: vk::Fence) -> vk::Result {
        struct Arrays {
            waits: Vec<vk::Semaphore>,
            wait_values: Vec<u64>,
            stages: Vec<vk::PipelineStageFlags>,
            signals: Vec<vk::Semaphore>,
            signal_values: Vec<u64>,
        }
        let arrays: Vec<Arrays> = batches
            .iter()
            .map(|b| Arrays {
                waits: b.waits.iter().map(|w| w.0).collect(),
                wait_values: b.waits.iter().map(|w| w.1).collect(),
                stages: vec![vk::PipelineStageFlags::ALL_COMMANDS; b.waits.len()],
                signals: b.signals.iter().map(|s| s.0).collect(),
                signal_values: b.signals.iter().map(|s| s.1).collect(),
            })
            .collect();
        let mut timeline: Vec<vk::TimelineSemaphoreSubmitInfo<'_>> = arrays
            .iter()
            .map(|a| {
                vk::TimelineSemaphoreSubmitInfo::default()
                    .wait_semaphore_values(&a.wait_values)
                    .signal_semaphore_values(&a.signal_values)
            })
            .collect();
        let infos: Vec<vk::SubmitInfo<'_>> = arrays
            .iter()
            .zip(batches)
            .zip(timeline.iter_mut())
            .map(|((a, b), t)| {
                let info = vk::SubmitInfo::default()
                    .wait_semaphores(&a.waits)
                    .wait_dst_stage_mask(&a.stages)
                    .command_buffers(&b.command_buffers)
                    .signal_semaphores(&a.signals);
                if a.waits.is_empty() && a.signals.is_empty() {
                    info
                } else {
                    info.push_next(t)
                }
            })
            .collect();
        let (q, guard) = &self.queues[queue];
        let _held = lock(guard);
        // SAFETY: handles of this device; the queue is externally synchronized by its lock.
        code(unsafe { self.device.queue_submit(*q, &infos, fence) })
    }

    /// `vkQueueSubmit2KHR` of `batches` (and `fence`, may be null) to queue `queue`.
    pub fn submit2(&self, queue: usize, batches: &[Batch], fence: vk::Fence) -> vk::Result {
        let semaphore_info = |&(s, v): &(vk::Semaphore, u64)| {
            vk::SemaphoreSubmitInfo::default()
                .semaphore(s)
                .value(v)
                .stage_mask(vk::PipelineStageFlags2::ALL_COMMANDS)
        };
        let arrays: Vec<_> = batches
            .iter()
            .map(|b| {
                (
                    b.waits.iter().map(semaphore_info).collect::<Vec<_>>(),
                    b.command_buffers
                        .iter()
                        .map(|&cb| vk::CommandBufferSubmitInfo::default().command_buffer(cb))
                        .collect::<Vec<_>>(),
                    b.signals.iter().map(semaphore_info).collect::<Vec<_>>(),
                )
            })
            .collect();
        let infos: Vec<_> = arrays
            .iter()
            .map(|(w, c, s)| {
                vk::SubmitInfo2::default()
                    .wait_semaphore_infos(w)
                    .command_buffer_infos(c)
                    .signal_semaphore_infos(s)
            })
            .collect();
        let (q, guard) = &self.queues[queue];
        let _held = lock(guard);
        // SAFETY: handles of this device; the queue is externally synchronized by its lock.
        code(unsafe { self.sync2.queue_submit2(*q, &infos, fence) })
    }

    /// `vkQueueWaitIdle`.
    pub fn queue_wait_idle(&self, queue: usize) -> vk::Result {
        let (q, guard) = &self.queues[queue];
        let _held = lock(guard);
        // SAFETY: a queue of this device, externally synchronized by its lock.
        code(unsafe { self.device.queue_wait_idle(*q) })
    }

    /// `vkDeviceWaitIdle` (holding every queue's lock, as the spec asks).
    pub fn device_wait_idle(&self) -> vk::Result {
        let _held: Vec<_> = self.queues.iter().map(|(_, g)| lock(g)).collect();
        // SAFETY: a live device whose queues are all held.
        code(unsafe { self.device.device_wait_idle() })
    }

    /// The messages so far, for assertion texts.
    pub fn messages(&self) -> String {
        let list: Vec<String> = self.log().snapshot().iter().map(ToString::to_string).collect();
        format!("[{}]", list.join("; "))
    }

    // --- the CTS's submits and waits -------------------------------------------------------

    /// Asserts a `vkQueueSubmit` the test needs succeeded.
    fn submitted(&self, result: vk::Result, what: &str) {
        assert_eq!(
            result,
            vk::Result::SUCCESS,
            "vkQueueSubmit {what}; messages: {}",
            self.messages()
        );
    }

    /// `submitEmptySignal` for a fence: an empty submit on queue 0 that signals it.
    pub fn submit_signal_fence(&self, fence: vk::Fence) {
        self.submitted(self.submit(0, &[], fence), "signaling a fence");
    }

    /// `submitEmptySignal` for a binary semaphore.
    pub fn submit_signal_semaphore(&self, semaphore: vk::Semaphore) {
        let result = self.submit(0, &[Batch::new().signal(semaphore, 0)], vk::Fence::null());
        self.submitted(result, "signaling a semaphore");
    }

    /// `submitEmptyWait`: an empty submit that waits on a binary semaphore at ALL_COMMANDS.
    pub fn submit_wait_semaphore(&self, semaphore: vk::Semaphore) {
        let result = self.submit(0, &[Batch::new().wait(semaphore, 0)], vk::Fence::null());
        self.submitted(result, "waiting on a semaphore");
    }

    /// `vkWaitForFences(fence)` that must succeed within [`LONG_NS`].
    pub fn wait_fence(&self, fence: vk::Fence) {
        let result = self.wait_fences(&[fence], true, LONG_NS);
        assert_eq!(
            result,
            vk::Result::SUCCESS,
            "vkWaitForFences: the fence never signaled; messages: {}",
            self.messages()
        );
    }

    /// `vkQueueWaitIdle(queue 0)`, bounded: a fence submitted after everything else must signal
    /// within [`LONG_NS`] first, so work that never completes fails the test instead of hanging.
    pub fn idle(&self) {
        let fence = self.fence(false);
        self.submit_signal_fence(fence);
        let finished = self.wait_fences(&[fence], true, LONG_NS);
        self.destroy_fence(fence);
        assert_eq!(
            finished,
            vk::Result::SUCCESS,
            "queue 0 never went idle (work blocked forever); messages: {}",
            self.messages()
        );
        assert_eq!(self.queue_wait_idle(0), vk::Result::SUCCESS, "vkQueueWaitIdle");
    }

    /// A private timeline semaphore at 0 that holds back work waiting on value 1 until
    /// [`TestDevice::open_gate`].
    pub fn gate(&self) -> vk::Semaphore {
        self.timeline_semaphore(0)
    }

    /// Lets the work held back by `gate` run (host signal of value 1).
    pub fn open_gate(&self, gate: vk::Semaphore) {
        assert_eq!(self.signal(gate, 1), vk::Result::SUCCESS, "vkSignalSemaphore (gate)");
    }

    /// The CTS's `submitAtomicCalculationsAndGet*Native` with a host-held gate instead of the
    /// timed compute job: submit [wait gate = 1] → signal `object`; run `export` while that
    /// signal is pending; open the gate; bounded `vkQueueWaitIdle`.
    pub fn while_signal_pending<K: SyncKind, T>(&self, object: K::Object, export: impl FnOnce() -> T) -> T {
        let gate = self.gate();
        let result = K::submit_gated_signal(self, gate, object);
        self.submitted(result, &format!("(gated {} signal)", K::NAME));
        let exported = export();
        self.open_gate(gate);
        self.idle();
        self.destroy_semaphore(gate);
        exported
    }

    /// Records a fence made outside this type (an exportable one), to be destroyed with it.
    pub(crate) fn track_fence(&self, fence: vk::Fence) -> vk::Fence {
        lock(&self.tracked).fences.push(fence);
        fence
    }

    /// Records a semaphore made outside this type, to be destroyed with it.
    pub(crate) fn track_semaphore(&self, semaphore: vk::Semaphore) -> vk::Semaphore {
        lock(&self.tracked).semaphores.push(semaphore);
        semaphore
    }

    /// A device-level command by name, through `vkGetDeviceProcAddr`.
    pub fn proc_addr(&self, name: &CStr) -> vk::PFN_vkVoidFunction {
        let _held = device_list_lock();
        // SAFETY: a live device and a NUL-terminated name.
        unsafe {
            self.inst
                .instance
                .get_device_proc_addr(self.device.handle(), name.as_ptr())
        }
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(self.device_wait_idle(), vk::Result::SUCCESS, "vkDeviceWaitIdle");
        }
        let tracked = std::mem::take(&mut *lock(&self.tracked));
        let pool = *lock(&self.pool);
        // SAFETY: every object was made on this device and is destroyed once; the device is idle
        // (or the test failed, and the driver must cope with destruction while work is blocked).
        unsafe {
            for f in tracked.fences {
                self.device.destroy_fence(f, None);
            }
            for s in tracked.semaphores {
                self.device.destroy_semaphore(s, None);
            }
            for e in tracked.events {
                self.device.destroy_event(e, None);
            }
            for b in tracked.buffers {
                self.device.destroy_buffer(b.buffer, None);
                self.device.unmap_memory(b.memory);
                self.device.free_memory(b.memory, None);
            }
            self.device.destroy_command_pool(pool, None);
            let _held = device_list_lock();
            self.device.destroy_device(None);
        }
    }
}

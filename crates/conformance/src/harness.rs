//! The test binaries' `main`: child-role dispatch, the driver manifest, routes, trials.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The name of the validation layer the loader routes enable when it is installed.
pub const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

/// The reason a loader trial is skipped on a machine without the loader.
pub const NO_LOADER: &str = "skipped: no Vulkan loader (libvulkan.so.1)";

/// How an application reaches the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// The Khronos loader with `VK_DRIVER_FILES` pointing at our manifest; the validation layer
    /// is enabled when installed.
    Loader,
    /// `tether_icd::vk_icdGetInstanceProcAddr` from the rlib, no loader.
    InProcess,
    /// The loader with `VK_LUNARG_direct_driver_loading` (exclusive) handed our
    /// `vk_icdGetInstanceProcAddr`.
    DirectDriverLoading,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Loader => "loader",
            Route::InProcess => "in_process",
            Route::DirectDriverLoading => "direct",
        }
    }

    /// Whether the route goes through the Khronos loader.
    pub fn uses_loader(self) -> bool {
        self != Route::InProcess
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the trials talk to: the tether ICD itself, or `VK_LAYER_TETHER_win32_sync` over a driver
/// that has only the fd handle types. Chosen once, in [`main`], before anything else runs:
/// `TETHER_TEST_TARGET` when set, else the test binary's default; then kept in the environment
/// so that child processes (re-executed test binaries) use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The tether ICD with every handle type (the Win32 ones its own).
    Icd,
    /// The loader with the layer over the tether ICD in fd-only mode (`TETHER_ICD_HANDLES=fd`):
    /// the layer provides both Win32 extensions, as it does on a real driver.
    LayerOverFdIcd,
    /// The loader with the layer over the system's drivers (no `VK_DRIVER_FILES` of ours): the
    /// first physical device that is not a tether device, or the first whose name contains
    /// `TETHER_TEST_DEVICE`.
    LayerOverSystem,
}

/// The variable that chooses the [`Target`].
pub const TARGET_ENV: &str = "TETHER_TEST_TARGET";

/// The variable that picks the physical device of [`Target::LayerOverSystem`] by a part of its name.
pub const DEVICE_ENV: &str = "TETHER_TEST_DEVICE";

impl Target {
    pub const ALL: [Target; 3] = [Target::Icd, Target::LayerOverFdIcd, Target::LayerOverSystem];

    pub fn name(self) -> &'static str {
        match self {
            Target::Icd => "icd",
            Target::LayerOverFdIcd => "layer-over-fd-icd",
            Target::LayerOverSystem => "layer-over-system",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the trials go through `VK_LAYER_TETHER_win32_sync`.
    pub fn through_layer(self) -> bool {
        self != Target::Icd
    }

    /// The routes a test that supports `routes` runs on here: all of them on the ICD; through
    /// the layer only the loader route (the in-process and direct routes hand the driver to the
    /// application without the loader's layer chain).
    pub fn routes(self, routes: &'static [Route]) -> Vec<Route> {
        if self.through_layer() {
            routes.iter().copied().filter(|&r| r == Route::Loader).collect()
        } else {
            routes.to_vec()
        }
    }

    /// The route a test that takes no route (one that starts its own processes) uses.
    pub fn default_route(self) -> Route {
        if self.through_layer() {
            Route::Loader
        } else {
            Route::InProcess
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

static TARGET: OnceLock<Target> = OnceLock::new();

/// The target of this process (the ICD when [`main`] did not choose one).
pub fn target() -> Target {
    *TARGET.get_or_init(|| {
        std::env::var(TARGET_ENV)
            .ok()
            .and_then(|name| Target::from_name(&name))
            .unwrap_or(Target::Icd)
    })
}

/// Every route: semantic tests run on each.
pub const ALL_ROUTES: &[Route] = &[Route::Loader, Route::InProcess, Route::DirectDriverLoading];
/// Only in-process: tests that pass pointers or handles no loader or layer would survive.
pub const IN_PROCESS: &[Route] = &[Route::InProcess];
/// The two routes through the loader.
pub const LOADER_ROUTES: &[Route] = &[Route::Loader, Route::DirectDriverLoading];
/// Loader and in-process (tests about the loader's view where direct loading adds nothing).
pub const LOADER_AND_IN_PROCESS: &[Route] = &[Route::Loader, Route::InProcess];
/// Routes that need no loader at all: tests that only read files.
pub const NO_ROUTE: &[Route] = &[];

/// One test; it runs once per route (or once, named without a route, when `routes` is empty).
/// It fails by panicking (`assert!`), as a `#[test]` would.
#[derive(Clone, Copy)]
pub struct Test {
    pub name: &'static str,
    pub routes: &'static [Route],
    pub run: fn(Route),
}

/// Builds a `Vec<Test>` from function names: `tests!(ALL_ROUTES => [a, b], IN_PROCESS => [c])`.
#[macro_export]
macro_rules! tests {
    ($($routes:expr => [$($f:ident),* $(,)?]),* $(,)?) => {
        vec![$($($crate::harness::Test { name: stringify!($f), routes: $routes, run: $f }),*),*]
    };
}

/// Prefixes the names of a module's tests with the module's name.
pub fn group(prefix: &'static str, tests: Vec<Test>) -> Vec<(String, Test)> {
    tests
        .into_iter()
        .map(|t| (format!("{prefix}::{}", t.name), t))
        .collect()
}

/// A child role: what a re-executed test binary does when started with `--child-role <name>`.
#[derive(Clone, Copy)]
pub struct Role {
    pub name: &'static str,
    /// Whether the child points `VK_DRIVER_FILES` at the generated manifest as the trials do
    /// (false: it keeps the environment its parent gave it).
    pub setup_environment: bool,
    /// Gets the arguments after the role name; returns the exit code.
    pub run: fn(&[String]) -> i32,
}

/// What this machine offers the trials, found once at start-up.
#[derive(Debug)]
pub struct Environment {
    /// `CI=true`: a route that cannot run fails instead of being skipped.
    pub ci: bool,
    /// What the trials talk to.
    pub target: Target,
    /// The driver library the loader routes load (absolute), or why it was not found.
    pub icd_library: Result<PathBuf, String>,
    /// The manifest `VK_DRIVER_FILES` points at, or why it could not be written.
    pub manifest: Result<PathBuf, String>,
    /// Through the layer: the layer library (absolute) and the directory of the generated layer
    /// manifest that `VK_ADD_LAYER_PATH` points at, or why there is none. `Ok(None)` on the ICD.
    pub layer: Result<Option<(PathBuf, PathBuf)>, String>,
    /// The loader could be loaded (else why not).
    pub loader: Result<(), String>,
    /// The loader offers `VK_LUNARG_direct_driver_loading` (else why not).
    pub direct_driver_loading: Result<(), String>,
    /// `VK_LAYER_KHRONOS_validation` is installed.
    pub validation_layer: bool,
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// The environment found at start-up (probed on first use when a binary did not go through
/// [`main`]).
pub fn environment() -> &'static Environment {
    ENVIRONMENT.get_or_init(|| Environment::probe(None))
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The manifest the project ships.
pub fn shipped_manifest() -> PathBuf {
    workspace_root().join("manifests/tether_icd.json")
}

/// Where the test binary runs from: `target/<profile>/deps`.
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(Path::to_path_buf)
}

/// A library cargo built for this profile: `$<variable>` if set; else next to the test binary
/// (`target/<profile>/deps`, where cargo puts a dependency's cdylib) or one level up
/// (`target/<profile>`, where `cargo build` puts it).
fn find_library(file: &str, variable: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return path
            .canonicalize()
            .map_err(|e| format!("{variable}={}: {e}", path.display()));
    }
    let dir = exe_dir().ok_or("cannot find the test binary's directory")?;
    let candidates = [dir.join(file), dir.join("..").join(file)];
    candidates
        .iter()
        .find_map(|c| c.canonicalize().ok())
        .ok_or_else(|| format!("{file} not found next to the test binary (looked at {candidates:?})"))
}

/// The `libtether_icd.so` of this build (`TETHER_ICD_LIB` overrides it).
fn find_icd_library() -> Result<PathBuf, String> {
    find_library("libtether_icd.so", "TETHER_ICD_LIB")
}

/// The `libtether_layer.so` of this build (`TETHER_LAYER_LIB` overrides it): this crate depends
/// on `tether-layer`, so cargo builds the layer's cdylib next to the test binaries.
fn find_layer_library() -> Result<PathBuf, String> {
    find_library("libtether_layer.so", "TETHER_LAYER_LIB")
}

/// The manifest the project ships for the layer.
pub fn shipped_layer_manifest() -> PathBuf {
    workspace_root().join("manifests/tether_layer.json")
}

/// The layer's name, as its manifest gives it.
pub const LAYER_NAME: &str = "VK_LAYER_TETHER_win32_sync";

/// `target/<profile>/tether-conformance/` (or a temporary directory), where the generated
/// manifests go.
fn generated_dir() -> Result<PathBuf, String> {
    let dir = exe_dir()
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("tether-conformance");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Writes `text` to `path`: aside first, then renamed over (several test binaries may start at
/// once).
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming {}: {e}", tmp.display()))
}

/// The shipped layer manifest, as this build saw it (built in, so a test binary copied to
/// another machine needs no checkout).
const SHIPPED_LAYER_MANIFEST: &str = include_str!("../../../manifests/tether_layer.json");

/// Writes the shipped layer manifest with `library_path` replaced by `library`, alone in
/// `target/<profile>/tether-conformance/layer/` (the directory `VK_ADD_LAYER_PATH` names).
fn write_layer_manifest(library: &Path) -> Result<PathBuf, String> {
    let shipped_path = shipped_layer_manifest();
    let shipped = SHIPPED_LAYER_MANIFEST;
    let parsed = crate::json::parse(shipped).map_err(|e| format!("{}: {e}", shipped_path.display()))?;
    let name = parsed.path(&["layer", "name"]).and_then(|v| v.as_str());
    if name != Some(LAYER_NAME) {
        return Err(format!(
            "{} names the layer {name:?}, not {LAYER_NAME}",
            shipped_path.display()
        ));
    }
    let old = parsed
        .path(&["layer", "library_path"])
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{} has no layer.library_path", shipped_path.display()))?;
    let text = shipped.replacen(&json_string(old), &json_string(&library.to_string_lossy()), 1);
    let dir = generated_dir()?.join("layer");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    write_atomically(&dir.join("tether_layer.json"), &text)?;
    Ok(dir)
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a manifest like the shipped one (same format and API versions) whose `library_path`
/// is `library`, into `target/<profile>/tether-conformance/`.
fn write_manifest(library: &Path) -> Result<PathBuf, String> {
    let shipped = std::fs::read_to_string(shipped_manifest())
        .ok()
        .and_then(|text| crate::json::parse(&text).ok());
    let field = |path: &[&str], default: &str| -> String {
        shipped
            .as_ref()
            .and_then(|v| v.path(path))
            .and_then(|v| v.as_str())
            .unwrap_or(default)
            .to_owned()
    };
    let text = format!(
        "{{\n    \"file_format_version\": {},\n    \"ICD\": {{\n        \"library_path\": {},\n        \"api_version\": {},\n        \"library_arch\": \"64\",\n        \"is_portability_driver\": false\n    }}\n}}\n",
        json_string(&field(&["file_format_version"], "1.0.1")),
        json_string(&library.to_string_lossy()),
        json_string(&field(&["ICD", "api_version"], "1.2.281")),
    );
    let path = generated_dir()?.join("tether_icd.json");
    write_atomically(&path, &text)?;
    Ok(path)
}

/// Points the loader at our driver only.
///
/// # Safety
/// The process must be single-threaded (no other thread reads or writes the environment).
unsafe fn set_driver_files(manifest: &Path) {
    // SAFETY: per the function's contract nothing else touches the environment now.
    unsafe {
        std::env::set_var("VK_DRIVER_FILES", manifest);
        std::env::remove_var("VK_ICD_FILENAMES");
        std::env::remove_var("VK_ADD_DRIVER_FILES");
    }
}

/// Enables our layer (the manifest in `layer_dir`) on every instance, ahead of any layer the
/// application enables, and nothing else from the environment.
///
/// # Safety
/// The process must be single-threaded.
unsafe fn set_layer(layer_dir: &Path) {
    // SAFETY: per the function's contract nothing else touches the environment now.
    unsafe {
        std::env::set_var("VK_ADD_LAYER_PATH", layer_dir);
        std::env::set_var("VK_INSTANCE_LAYERS", LAYER_NAME);
        std::env::remove_var("VK_LOADER_LAYERS_ENABLE");
        std::env::remove_var("VK_LOADER_LAYERS_DISABLE");
        std::env::remove_var("TETHER_WIN32_SYNC_DISABLE");
    }
}

/// Sets what the loader and the drivers read for `target` (see [`Target`]), and
/// `TETHER_TEST_TARGET` for child processes.
///
/// # Safety
/// The process must be single-threaded.
unsafe fn set_target_environment(target: Target, manifest: Option<&Path>, layer_dir: Option<&Path>) {
    // SAFETY: per the function's contract nothing else touches the environment now.
    unsafe {
        std::env::set_var(TARGET_ENV, target.name());
        match target {
            Target::Icd => std::env::remove_var("TETHER_ICD_HANDLES"),
            Target::LayerOverFdIcd => std::env::set_var("TETHER_ICD_HANDLES", "fd"),
            Target::LayerOverSystem => {}
        }
        if target != Target::LayerOverSystem
            && let Some(manifest) = manifest
        {
            set_driver_files(manifest);
        }
        if let Some(dir) = layer_dir {
            set_layer(dir);
        }
    }
}

impl Environment {
    /// Finds the driver, writes the manifest and (with `setup`) sets `VK_DRIVER_FILES`, then
    /// probes the loader.
    fn probe(setup: Option<SingleThreaded>) -> Environment {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let target = target();
        let icd_library = find_icd_library();
        let manifest = icd_library.clone().and_then(|lib| write_manifest(&lib));
        let layer = if target.through_layer() {
            find_layer_library().and_then(|lib| Ok(Some((lib.clone(), write_layer_manifest(&lib)?))))
        } else {
            Ok(None)
        };
        if let Some(SingleThreaded(())) = setup {
            let layer_dir = layer
                .as_ref()
                .ok()
                .and_then(|l| l.as_ref())
                .map(|(_, dir)| dir.as_path());
            // SAFETY: the token says the process is still single-threaded.
            unsafe { set_target_environment(target, manifest.as_deref().ok(), layer_dir) };
        }
        let mut env = Environment {
            ci,
            target,
            icd_library,
            manifest,
            layer,
            loader: Err(String::new()),
            direct_driver_loading: Err(String::new()),
            validation_layer: false,
        };
        match load_loader() {
            Err(e) => {
                env.loader = Err(format!("{NO_LOADER}: {e}"));
                env.direct_driver_loading = Err(format!("{NO_LOADER}: {e}"));
            }
            Ok(entry) => {
                env.loader = Ok(());
                // SAFETY: plain global queries through a loaded loader.
                let (extensions, layers) = unsafe {
                    (
                        entry.enumerate_instance_extension_properties(None).unwrap_or_default(),
                        entry.enumerate_instance_layer_properties().unwrap_or_default(),
                    )
                };
                env.direct_driver_loading = if target.through_layer() {
                    Err(format!(
                        "not used on target {target} (the layer is reached through the loader only)"
                    ))
                } else {
                    probe_direct_driver_loading(&entry, &extensions)
                };
                env.validation_layer = layers.iter().any(|l| l.layer_name_as_c_str() == Ok(VALIDATION_LAYER));
            }
        }
        env
    }

    /// Whether a route can run here: `Ok(None)` yes, `Ok(Some(reason))` skip, `Err` fail.
    ///
    /// A missing loader skips the loader routes, or fails them under `CI=true`. A loader without
    /// `VK_LUNARG_direct_driver_loading` (Debian 12's 1.3.239 rejects the extension) skips the
    /// direct route everywhere: that is the loader's version, not a broken setup.
    pub fn route_status(&self, route: Route) -> Result<Option<String>, String> {
        if route == Route::InProcess {
            return Ok(None);
        }
        if let Err(reason) = &self.loader {
            return if self.ci {
                Err(format!("{reason} (CI=true: the loader routes must run)"))
            } else {
                Ok(Some(reason.clone()))
            };
        }
        if let Err(reason) = &self.layer {
            return Err(format!("target {}: no layer to test: {reason}", self.target));
        }
        match route {
            Route::Loader if self.target == Target::LayerOverSystem => Ok(None),
            Route::Loader => self.manifest.as_ref().map(|_| None).map_err(Clone::clone),
            _ => Ok(self.direct_driver_loading.as_ref().err().cloned()),
        }
    }
}

/// The Khronos loader: `libvulkan.so.1`, or the library `TETHER_VULKAN_LOADER` names (a newer
/// loader build, or a path that does not exist to try the no-loader behaviour).
pub fn load_loader() -> Result<ash::Entry, ash::LoadingError> {
    match std::env::var_os("TETHER_VULKAN_LOADER") {
        // SAFETY: loading a Vulkan loader runs its initialisers, which expect nothing of us.
        Some(path) => unsafe { ash::Entry::load_from(path) },
        // SAFETY: as above.
        None => unsafe { ash::Entry::load() },
    }
}

/// Whether the loader accepts `VK_LUNARG_direct_driver_loading`: some loaders (Debian's 1.3.239)
/// implement it without listing it, so an exclusive instance is tried when the list lacks it.
fn probe_direct_driver_loading(entry: &ash::Entry, extensions: &[ash::vk::ExtensionProperties]) -> Result<(), String> {
    use ash::vk;
    let name = ash::lunarg::direct_driver_loading::NAME;
    if extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(name)) {
        return Ok(());
    }
    let drivers = [vk::DirectDriverLoadingInfoLUNARG::default()
        .pfn_get_instance_proc_addr(Some(tether_icd::vk_icdGetInstanceProcAddr))];
    let mut list = vk::DirectDriverLoadingListLUNARG::default()
        .mode(vk::DirectDriverLoadingModeLUNARG::EXCLUSIVE)
        .drivers(&drivers);
    let enabled = [name.as_ptr()];
    let info = vk::InstanceCreateInfo::default()
        .enabled_extension_names(&enabled)
        .push_next(&mut list);
    // SAFETY: a valid create info; the instance is destroyed right away.
    match unsafe { entry.create_instance(&info, None) } {
        Ok(instance) => {
            // SAFETY: the instance just made, with no children.
            let devices = unsafe { instance.enumerate_physical_devices() };
            // SAFETY: as above.
            unsafe { instance.destroy_instance(None) };
            match devices {
                Ok(d) if d.len() == 1 => Ok(()),
                other => Err(format!(
                    "skipped: the Vulkan loader accepted VK_LUNARG_direct_driver_loading but gave {other:?} devices"
                )),
            }
        }
        Err(e) => Err(format!(
            "skipped: the Vulkan loader lacks VK_LUNARG_direct_driver_loading ({e})"
        )),
    }
}

/// A token that says "no thread has been started yet" (only [`main`] makes one).
struct SingleThreaded(());

/// The trials now running, for the watchdog's report.
static RUNNING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

struct RunningGuard(String);

impl RunningGuard {
    fn new(name: &str) -> RunningGuard {
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
        RunningGuard(name.to_owned())
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

/// Ends the process if the trials take longer than `TETHER_TEST_WATCHDOG_S` (default 120 s):
/// a driver hang must fail the run, not stall it.
fn start_watchdog() {
    let seconds = std::env::var("TETHER_TEST_WATCHDOG_S")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(120);
    if seconds == 0 {
        return;
    }
    let _ = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        std::thread::sleep(Duration::from_secs(seconds));
        let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
        eprintln!("watchdog: the trials took longer than {seconds} s; still running: {running:?}");
        std::process::exit(124);
    });
}

fn trial(name: String, route: Option<Route>, test: Test) -> Trial {
    let status = route.map_or(Ok(None), |r| environment().route_status(r));
    Trial::ignorable_test(name.clone(), move || {
        match status {
            Ok(Some(reason)) => return Ok(Completion::ignored_with(reason)),
            Err(reason) => return Err(Failed::from(reason)),
            Ok(None) => {}
        }
        let _running = RunningGuard::new(&name);
        let run = std::panic::catch_unwind(|| (test.run)(route.unwrap_or_else(|| target().default_route())));
        match run {
            Ok(()) => Ok(Completion::Completed),
            Err(payload) => match payload.downcast::<Skip>() {
                Ok(skip) => Ok(Completion::ignored_with(skip.0)),
                Err(payload) => std::panic::resume_unwind(payload),
            },
        }
    })
}

/// The panic payload of [`skip`].
struct Skip(String);

/// Ends the running test as ignored with a reason (never counted as a pass).
pub fn skip(reason: impl Into<String>) -> ! {
    std::panic::panic_any(Skip(reason.into()))
}

/// Ends the running test as ignored because the target does not support what it checks (see
/// [`crate::limits`]): reported as `not supported on <target>: <reason>`, never as a pass.
pub fn not_supported(reason: impl std::fmt::Display) -> ! {
    skip(format!("not supported on {}: {reason}", target()))
}

/// Skips the test when the loader is missing (fails it instead under `CI=true`).
pub fn require_loader() {
    if let Err(reason) = &environment().loader {
        if environment().ci {
            panic!("{reason} (CI=true requires the loader)");
        }
        skip(reason.clone());
    }
}

/// Keeps the default panic message for real failures, and none for [`skip`].
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<Skip>() {
            default(info);
        }
    }));
}

/// The `Command` that re-executes this test binary in a child role; the child inherits the
/// environment (`VK_DRIVER_FILES` included).
pub fn child_command(role: &str) -> std::process::Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--child-role").arg(role);
    cmd
}

/// The test binaries' `main` on the ICD. Call it first thing: it sets `VK_DRIVER_FILES` while
/// the process is single-threaded.
pub fn main(roles: &[Role], tests: impl FnOnce() -> Vec<(String, Test)>) -> ExitCode {
    main_on(Target::Icd, roles, tests)
}

/// The target `TETHER_TEST_TARGET` names, else `default`; an unknown name is an error.
pub fn target_from_env(default: Target) -> Result<Target, String> {
    match std::env::var(TARGET_ENV) {
        Err(_) => Ok(default),
        Ok(name) if name.is_empty() => Ok(default),
        Ok(name) => Target::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
            format!("{TARGET_ENV}={name:?} is not a target (one of {known:?})")
        }),
    }
}

/// The trial name of a test on a route: `<route>::<test>` on the ICD, `<target>::<test>` through
/// the layer (where the route is always the loader).
fn trial_name(target: Target, route: Route, name: &str) -> String {
    if target.through_layer() {
        format!("{target}::{name}")
    } else {
        format!("{route}::{name}")
    }
}

/// [`main`] on `target`. Sets up the loader's environment for it while the process is
/// single-threaded (a child role takes the target its parent put in `TETHER_TEST_TARGET`).
pub fn main_on(target: Target, roles: &[Role], tests: impl FnOnce() -> Vec<(String, Test)>) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-role") {
        let Some(role) = args.get(2).and_then(|name| roles.iter().find(|r| r.name == name)) else {
            eprintln!("unknown child role {:?}", args.get(2));
            return ExitCode::from(2);
        };
        let target = match target_from_env(target) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let _ = TARGET.set(target);
        let setup = role.setup_environment.then_some(SingleThreaded(()));
        let _ = ENVIRONMENT.set(Environment::probe(setup));
        let code = (role.run)(&args[3..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let _ = TARGET.set(target);
    // Nothing has started a thread yet: this is the one moment the environment may change.
    let env = Environment::probe(Some(SingleThreaded(())));
    if target.through_layer() {
        let layer = match &env.layer {
            Ok(Some((lib, dir))) => format!("{} (manifest in {})", lib.display(), dir.display()),
            Ok(None) => "none".to_string(),
            Err(e) => format!("MISSING: {e}"),
        };
        eprintln!("note: target {target}: {LAYER_NAME} from {layer}, loader route only");
    }
    for (what, status) in [
        ("loader", &env.loader),
        ("direct driver loading", &env.direct_driver_loading),
    ] {
        if let Err(reason) = status {
            eprintln!("note: {what}: {reason}");
        }
    }
    if let Err(e) = &env.manifest {
        eprintln!("note: no driver manifest for the loader routes: {e}");
    }
    if env.loader.is_ok() && !env.validation_layer {
        eprintln!("note: VK_LAYER_KHRONOS_validation is not installed: loader trials run without it");
    }
    let _ = ENVIRONMENT.set(env);

    let arguments = Arguments::from_args();
    let mut trials = Vec::new();
    for (name, test) in tests() {
        if test.routes.is_empty() {
            let name = if target.through_layer() {
                format!("{target}::{name}")
            } else {
                name.clone()
            };
            trials.push(trial(name, None, test));
        }
        for route in target.routes(test.routes) {
            trials.push(trial(trial_name(target, route, &name), Some(route), test));
        }
    }
    install_panic_hook();
    start_watchdog();
    libtest_mimic::run(&arguments, trials).exit_code()
}

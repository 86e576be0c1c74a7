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
    /// The driver library the loader routes load (absolute), or why it was not found.
    pub icd_library: Result<PathBuf, String>,
    /// The manifest `VK_DRIVER_FILES` points at, or why it could not be written.
    pub manifest: Result<PathBuf, String>,
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

/// The `libtether_icd.so` cargo built for this profile: `TETHER_ICD_LIB` if set; else next to
/// the test binary (`target/<profile>/deps`, where cargo puts a dependency's cdylib) or one level
/// up (`target/<profile>`, where `cargo build` puts it).
fn find_icd_library() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TETHER_ICD_LIB") {
        let path = PathBuf::from(path);
        return path
            .canonicalize()
            .map_err(|e| format!("TETHER_ICD_LIB={}: {e}", path.display()));
    }
    let dir = exe_dir().ok_or("cannot find the test binary's directory")?;
    let candidates = [dir.join("libtether_icd.so"), dir.join("../libtether_icd.so")];
    candidates
        .iter()
        .find_map(|c| c.canonicalize().ok())
        .ok_or_else(|| format!("libtether_icd.so not found next to the test binary (looked at {candidates:?})"))
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
    let dir = exe_dir()
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("tether-conformance");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("tether_icd.json");
    // Several test binaries may start at once: write aside, then rename over.
    let tmp = dir.join(format!("tether_icd.json.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
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

impl Environment {
    /// Finds the driver, writes the manifest and (with `setup`) sets `VK_DRIVER_FILES`, then
    /// probes the loader.
    fn probe(setup: Option<SingleThreaded>) -> Environment {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let icd_library = find_icd_library();
        let manifest = icd_library.clone().and_then(|lib| write_manifest(&lib));
        if let (Some(SingleThreaded(())), Ok(path)) = (setup, &manifest) {
            // SAFETY: the token says the process is still single-threaded.
            unsafe { set_driver_files(path) };
        }
        let mut env = Environment {
            ci,
            icd_library,
            manifest,
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
                env.direct_driver_loading = probe_direct_driver_loading(&entry, &extensions);
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
        match route {
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
        let run = std::panic::catch_unwind(|| (test.run)(route.unwrap_or(Route::InProcess)));
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

/// The test binaries' `main`. Call it first thing: it sets `VK_DRIVER_FILES` while the process
/// is single-threaded.
pub fn main(roles: &[Role], tests: impl FnOnce() -> Vec<(String, Test)>) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-role") {
        let Some(role) = args.get(2).and_then(|name| roles.iter().find(|r| r.name == name)) else {
            eprintln!("unknown child role {:?}", args.get(2));
            return ExitCode::from(2);
        };
        let setup = role.setup_environment.then_some(SingleThreaded(()));
        let _ = ENVIRONMENT.set(Environment::probe(setup));
        let code = (role.run)(&args[3..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // Nothing has started a thread yet: this is the one moment the environment may change.
    let env = Environment::probe(Some(SingleThreaded(())));
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
            trials.push(trial(name.clone(), None, test));
        }
        for &route in test.routes {
            trials.push(trial(format!("{route}::{name}"), Some(route), test));
        }
    }
    install_panic_hook();
    start_watchdog();
    libtest_mimic::run(&arguments, trials).exit_code()
}

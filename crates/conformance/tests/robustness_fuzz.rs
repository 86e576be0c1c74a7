//! Property-based bad input through the C ABI (issue 6, "every entry point survives bad input").
//!
//! A case is a device plus a random sequence of calls ([`Op`]) whose arguments mix valid and
//! invalid values: random pNext chains (unknown sTypes, structures where others are expected,
//! repeats, loops), handles that are live, destroyed, NULL, of another kind or made up, fds
//! (owned ones of every sort: `/dev/null`, pipes, sockets, eventfds, directories, memfds that are
//! not payloads, forged payload pages, read-only pages, closed numbers), Win32 handle values, KMT
//! values and UTF-16 names (unpaired surrogates, too long, prefixed), NULL create/import/export
//! infos and NULL outputs, NULL arrays with non-zero counts, huge sizes and offsets, wrong
//! top-level sTypes, recorded commands on destroyed buffers and events (then submitted).
//!
//! Three targets, each in a child process of its own (so that a crash, an abort or a hang is
//! reported with the case that caused it instead of taking the test binary down):
//!
//! | trial | how the calls reach the code under test |
//! |---|---|
//! | `fuzz::icd_in_process` | `tether_icd::vk_icdGetInstanceProcAddr` → function pointers by name |
//! | `fuzz::icd_loader` | the Khronos loader with `VK_DRIVER_FILES` (no validation layer) |
//! | `fuzz::layer` | the loader with `VK_INSTANCE_LAYERS=VK_LAYER_TETHER_win32_sync` over the fd-only ICD |
//!
//! What is checked, for every call:
//!
//! * the process survives it (no crash, abort or hang: the child's watchdog ends a case that
//!   takes over [`CASE_LIMIT`] and prints it);
//! * no panic, caught or not: `VK_ERROR_UNKNOWN` (what the driver's and the layer's C boundary
//!   make of a panic) fails the case, and so does "panicked at" on the child's stderr (a panic
//!   in a command that returns nothing, or in the loader-loaded library with its own std);
//! * input that is certainly invalid (a destroyed, NULL or made-up handle where a live one is
//!   required, a NULL array with a non-zero count, a binary semaphore where a timeline is
//!   required, an unknown or misplaced structure or a loop in a chain the command validates) is
//!   refused: a negative `VkResult` or an error message to the debug-utils messenger.
//!
//! What is **not** fuzzed: dispatchable handles (`VkInstance`, `VkPhysicalDevice`, `VkDevice`,
//! `VkQueue`, `VkCommandBuffer`) are always live — the loader dereferences them before the driver
//! sees them, so a destroyed or made-up one cannot be validated by anyone; pointers are NULL or
//! valid, and arrays are as long as their counts say (a dangling pointer or a short array is
//! undefined behaviour no driver can detect); fds handed to an fd import are fds the caller owns
//! (the import takes ownership on success, so an fd owned by someone else would be closed
//! under them). Win32 NT handle values are any number at all: a Win32 import never takes
//! ownership. Instance-level queries run with looping output chains only in process (the loader's
//! own trampolines are not ours to fuzz).
//!
//! Every certainly-invalid call must be refused (an error result) or reported (a validation
//! message); the child counts any that is not ("invalid calls survived unreported", printed one by
//! one with `TETHER_FUZZ_SHOW_UNREPORTED=1`) and a non-zero count fails the trial. A recorded
//! command may also report at `vkEndCommandBuffer` (an error there counts as refusing every
//! invalid command before it).
//!
//! A regression trial, `regression::next_generation_handles`, makes deterministic a case the fuzz
//! found: a handle value of the next generation of a freed slot used to panic inside the driver.
//!
//! Environment: `TETHER_FUZZ_CASES` (cases per trial; default 300 in process, 100 through the
//! loader and the layer), `TETHER_FUZZ_SEED` (hex; default: from the clock, printed),
//! `TETHER_FUZZ_OPS` (most calls per case, default 24). A long run raises the harness watchdog
//! itself (three seconds per case). A failure prints the seed, the case (shrunk by proptest when
//! it is a refused-input failure) and, after a crash, the call the child was making.

// Raw structures are built field by field on purpose: their pointers and counts are the input.
#![allow(clippy::field_reassign_with_default)]

#[path = "robustness/common.rs"]
mod common;

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ash::vk;
use ash::vk::Handle;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use tether_conformance::context::MessageLog;
use tether_conformance::harness::{self, NO_ROUTE, Role, Route, Target};
use tether_conformance::win32::{SecurityAttributes, route_from_name, run_child};
use tether_conformance::{Options, TestInstance, tests};

use common::env_count;

/// How many calls [`Op::NullPointer`] chooses from.
const NULL_POINTER_CALLS: u8 = 19;

/// A case that takes longer than this hangs (every wait in a case is at most a few ms).
const CASE_LIMIT: Duration = Duration::from_secs(30);

const ROLES: &[Role] = &[Role {
    name: "fuzz",
    setup_environment: true,
    run: role_fuzz,
}];

/// Regression: a handle value of the *next* generation of a freed slot (never handed out) made
/// `Slab::get` panic inside the driver (sharded-slab 0.1.7 after `Slab::take`), which the C
/// boundary turned into `VK_ERROR_UNKNOWN`. The fuzz found it by chance; this makes it every time:
/// fence A is made and destroyed, fence B takes A's slot at the next generation and is destroyed
/// too, and `B + (B - A)` is the slot at the generation after that.
fn next_generation_handles(route: Route) {
    let dev = tether_conformance::TestDevice::with_options(route, Options::expecting_errors());
    let a = dev.fence(false);
    dev.destroy_fence(a);
    let b = dev.fence(false);
    dev.destroy_fence(b);
    let (a, b) = (a.as_raw(), b.as_raw());
    let step = b.wrapping_sub(a);
    if b <= a || !step.is_power_of_two() {
        harness::skip(format!(
            "skipped: the second fence did not reuse the first one's slot ({a:#x}, {b:#x})"
        ));
    }
    for value in [b + step, b + 2 * step, a, b] {
        let fence = vk::Fence::from_raw(value);
        let r = dev.fence_status(fence);
        assert!(
            r.as_raw() < 0 && r != vk::Result::ERROR_UNKNOWN,
            "vkGetFenceStatus({value:#x}): {r:?}"
        );
        let r = dev.wait_fences(&[fence], true, 0);
        assert!(
            r.as_raw() < 0 && r != vk::Result::ERROR_UNKNOWN,
            "vkWaitForFences({value:#x}): {r:?}"
        );
        // SAFETY: a made-up non-dispatchable handle: the driver looks it up.
        unsafe { dev.device.destroy_fence(fence, None) };
        assert!(
            dev.log().take().iter().any(|m| m.is_error()),
            "vkDestroyFence({value:#x}) reported nothing"
        );
    }
    // The slot still works for a new fence.
    let c = dev.fence(true);
    assert_eq!(dev.fence_status(c), vk::Result::SUCCESS);
}

fn main() -> ExitCode {
    let cases = env_count("TETHER_FUZZ_CASES", 300);
    // SAFETY: nothing has started a thread yet.
    unsafe { common::raise_watchdog(120 + cases.saturating_mul(3)) };
    tether_conformance::win32::main(ROLES, || {
        let mut all = harness::group("fuzz", tests!(NO_ROUTE => [icd_in_process, icd_loader, layer]));
        all.extend(harness::group(
            "regression",
            tests!(harness::LOADER_AND_IN_PROCESS => [next_generation_handles]),
        ));
        all
    })
}

// --- the parent side ----------------------------------------------------------------------------

fn icd_in_process(_route: Route) {
    run_fuzz_child(Route::InProcess, None, env_count("TETHER_FUZZ_CASES", 300));
}

fn icd_loader(_route: Route) {
    harness::require_loader();
    run_fuzz_child(Route::Loader, None, env_count("TETHER_FUZZ_CASES", 100));
}

fn layer(_route: Route) {
    harness::require_loader();
    run_fuzz_child(
        Route::Loader,
        Some(Target::LayerOverFdIcd),
        env_count("TETHER_FUZZ_CASES", 100),
    );
}

/// Runs `cases` cases in a child process (`fuzz <route> <cases> <seed> <case file>`) and fails
/// with the case the child was running if it did not exit cleanly.
fn run_fuzz_child(route: Route, target: Option<Target>, cases: u64) {
    let seed = std::env::var("TETHER_FUZZ_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| common::XorShift::seeded().next());
    let dir = tether_conformance::win32::make_private_dir("tether-fuzz").expect("a private directory");
    let case_file = dir.join("case");
    let mut cmd = harness::child_command("fuzz");
    cmd.arg(route.name())
        .arg(cases.to_string())
        .arg(format!("{seed:x}"))
        .arg(&case_file);
    if let Some(t) = target {
        cmd.env(harness::TARGET_ENV, t.name());
    }
    let limit = Duration::from_secs(60)
        .saturating_add(CASE_LIMIT.saturating_mul(u32::try_from(cases).unwrap_or(u32::MAX).min(1 << 20) / 8 + 1));
    let started = Instant::now();
    let output = run_child(&mut cmd, limit);
    let last_case = std::fs::read_to_string(&case_file).unwrap_or_default()
        + "\n--- the call it was making (or had made last) ---\n"
        + &std::fs::read_to_string(case_file.with_extension("call")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let what = format!(
        "fuzz on {}{} (TETHER_FUZZ_SEED={seed:x}, {cases} cases)",
        route.name(),
        target.map(|t| format!(", target {t}")).unwrap_or_default()
    );
    for line in output.stderr.lines().filter(|l| l.starts_with("unreported: ")) {
        println!("{what}: {line}");
    }
    let panics: Vec<&str> = output.stderr.lines().filter(|l| l.contains("panicked at")).collect();
    if !output.success() || !panics.is_empty() {
        panic!(
            "{what}: the child {}{}\n--- the case it was running ---\n{last_case}\n--- stdout ---\n{}\n--- stderr (last 8000 bytes) ---\n{}",
            match output.status {
                Some(s) => format!("exited with {s}"),
                None => "ran past its time limit and was killed".into(),
            },
            if panics.is_empty() {
                String::new()
            } else {
                format!(" and something panicked: {panics:?}")
            },
            output.stdout,
            tail(&output.stderr, 8000),
        );
    }
    eprintln!("{what}: {} in {:?}", output.stdout.trim(), started.elapsed());
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// --- the child side -----------------------------------------------------------------------------

/// What the child counts (printed at the end).
#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    calls: u64,
    /// Certainly-invalid calls, each refused (error or message).
    refused: u64,
    /// Invalid input the driver is not required to notice (see the module docs): survived.
    unreported: u64,
}

static STATS: Mutex<Stats> = Mutex::new(Stats {
    cases: 0,
    calls: 0,
    refused: 0,
    unreported: 0,
});

/// The case now running and when it started, for the watchdog.
static CURRENT: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// Where the child records the call it is about to make (read by the parent after a crash).
static CALL_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The call of the case now running (`usize::MAX`: creating or destroying the device).
static CALL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `fuzz <route> <cases> <seed hex> <case file>`.
fn role_fuzz(args: &[String]) -> i32 {
    let [route, cases, seed, case_file] = args else {
        eprintln!("fuzz <route> <cases> <seed> <case file>, got {args:?}");
        return 2;
    };
    let route = route_from_name(route);
    let cases: u32 = cases.parse().expect("a case count");
    let seed = u64::from_str_radix(seed, 16).expect("a hex seed");
    let case_file = PathBuf::from(case_file);
    let _ = CALL_FILE.set(case_file.with_extension("call"));
    let max_ops = env_count("TETHER_FUZZ_OPS", 24).clamp(1, 1000) as usize;

    // A case that hangs: print it and leave (the parent reads the case file too).
    {
        let case_file = case_file.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let current = *lock(&CURRENT);
                if let Some((start, n)) = current
                    && start.elapsed() > CASE_LIMIT
                {
                    let case = std::fs::read_to_string(&case_file).unwrap_or_default();
                    let call = CALL.load(std::sync::atomic::Ordering::Relaxed);
                    let call = if call == usize::MAX {
                        "device set-up or tear-down".to_owned()
                    } else {
                        format!("call {call}")
                    };
                    eprintln!("HANG: case {n} ran over {CASE_LIMIT:?} in {call}:\n{case}");
                    std::process::exit(3);
                }
            }
        });
    }

    let mut seed_bytes = [0u8; 32];
    for (i, b) in seed_bytes.iter_mut().enumerate() {
        *b = (seed.rotate_left(8 * (i as u32 % 8)) as u8) ^ (i as u8);
    }
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let layered = harness::target().through_layer();
    let strategy = proptest::collection::vec(op(route, layered), 1..=max_ops);
    let counter = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&strategy, |ops| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::write(
            &case_file,
            format!("case {n} on {route} ({} calls):\n{ops:#?}\n", ops.len()),
        );
        *lock(&CURRENT) = Some((Instant::now(), n));
        let outcome = run_case(route, &ops);
        *lock(&CURRENT) = None;
        outcome.map_err(TestCaseError::fail)
    });
    let stats = lock(&STATS);
    match result {
        Ok(()) => {
            println!(
                "{} cases, {} calls ({} runs with shrinking), {} invalid calls refused, {} invalid calls survived unreported",
                cases, stats.calls, stats.cases, stats.refused, stats.unreported
            );
            if stats.unreported > 0 {
                // Every certainly-invalid call must be refused or reported; the child printed each
                // one with TETHER_FUZZ_SHOW_UNREPORTED set.
                println!("FUZZ FAILURE: {} invalid calls survived unreported", stats.unreported);
                return 1;
            }
            0
        }
        Err(TestError::Fail(reason, ops)) => {
            println!("FUZZ FAILURE: {reason}\nminimal case ({} calls):\n{ops:#?}", ops.len());
            1
        }
        Err(TestError::Abort(reason)) => {
            println!("FUZZ ABORTED: {reason}");
            1
        }
    }
}

// --- what a case is made of -----------------------------------------------------------------------

/// A handle argument.
#[derive(Clone, Debug)]
enum H {
    /// A live object of the right kind (index into its pool).
    Live(u8),
    /// A destroyed one.
    Destroyed(u8),
    Null,
    /// A value the driver never returned.
    MadeUp(u64),
    /// A live object of another kind (its value may happen to name one of this kind).
    OtherKind(u8),
}

fn h() -> impl Strategy<Value = H> {
    prop_oneof![
        8 => any::<u8>().prop_map(H::Live),
        2 => any::<u8>().prop_map(H::Destroyed),
        1 => Just(H::Null),
        1 => prop_oneof![
            Just(0xdead_u64),
            Just(u64::MAX),
            Just(1u64 << 40),
            Just(0xdead_beef_0000),
            any::<u64>().prop_map(|v| v | (1 << 63)),
        ]
        .prop_map(H::MadeUp),
        1 => any::<u8>().prop_map(H::OtherKind),
    ]
}

/// An array passed by pointer and count.
#[derive(Clone, Debug)]
enum Arr {
    Values(Vec<u64>),
    /// NULL with this (non-zero) count.
    Null(u8),
}

fn arr() -> impl Strategy<Value = Arr> {
    prop_oneof![
        6 => proptest::collection::vec(value(), 0..4).prop_map(Arr::Values),
        1 => (1u8..5).prop_map(Arr::Null),
    ]
}

/// Timeline values and the like: small, around what the case signals, or extreme.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..12,
        1 => Just(u64::MAX),
        1 => Just(i64::MAX as u64 + 3),
        1 => any::<u64>(),
    ]
}

/// `SECURITY_ATTRIBUTES` behind `pAttributes`.
#[derive(Clone, Debug)]
enum Attributes {
    Null,
    Given { length: u32, inherit: i32 },
}

/// A name argument (`LPCWSTR`); always NUL-terminated.
#[derive(Clone, Debug)]
enum NameSpec {
    Null,
    /// A new unique name.
    Fresh,
    /// A name this case used before.
    Known(u8),
    /// Raw UTF-16 units (unpaired surrogates, embedded oddities).
    Units(Vec<u16>),
    /// `n` units of `a` (too long past 32767).
    Long(u32),
    Prefixed(&'static str),
}

fn name_spec() -> impl Strategy<Value = NameSpec> {
    prop_oneof![
        4 => Just(NameSpec::Null),
        3 => Just(NameSpec::Fresh),
        2 => any::<u8>().prop_map(NameSpec::Known),
        2 => proptest::collection::vec(any::<u16>().prop_map(|u| if u == 0 { 0xD800 } else { u }), 0..40).prop_map(NameSpec::Units),
        1 => prop_oneof![Just(0u32), Just(1), Just(255), Just(32_767), Just(32_768), Just(70_000)].prop_map(NameSpec::Long),
        1 => prop_oneof![Just("Local\\"), Just("Global\\"), Just("Session\\1\\x"), Just("Local\\\\"), Just("\\")].prop_map(NameSpec::Prefixed),
    ]
}

/// One structure of an input chain.
#[derive(Clone, Debug)]
enum Link {
    /// An sType nobody defines (a zeroed 2 KiB structure behind it).
    Unknown(i32),
    ExportFence(u32),
    ExportSemaphore(u32),
    ExportFenceWin32 {
        attributes: Attributes,
        access: u32,
        name: NameSpec,
    },
    ExportSemaphoreWin32 {
        attributes: Attributes,
        access: u32,
        name: NameSpec,
    },
    SemaphoreType {
        ty: i32,
        initial: u64,
    },
    TimelineSubmit(Arr, Arr),
    D3d12Submit(Arr, Arr),
    /// Structures that belong elsewhere.
    TimelineFeatures,
    Vulkan12Features,
    MemoryAllocateFlags(u32),
}

impl Link {
    fn s_type(&self) -> vk::StructureType {
        match self {
            Link::Unknown(t) => vk::StructureType::from_raw(*t),
            Link::ExportFence(_) => vk::StructureType::EXPORT_FENCE_CREATE_INFO,
            Link::ExportSemaphore(_) => vk::StructureType::EXPORT_SEMAPHORE_CREATE_INFO,
            Link::ExportFenceWin32 { .. } => vk::StructureType::EXPORT_FENCE_WIN32_HANDLE_INFO_KHR,
            Link::ExportSemaphoreWin32 { .. } => vk::StructureType::EXPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR,
            Link::SemaphoreType { .. } => vk::StructureType::SEMAPHORE_TYPE_CREATE_INFO,
            Link::TimelineSubmit(..) => vk::StructureType::TIMELINE_SEMAPHORE_SUBMIT_INFO,
            Link::D3d12Submit(..) => vk::StructureType::D3D12_FENCE_SUBMIT_INFO_KHR,
            Link::TimelineFeatures => vk::StructureType::PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES,
            Link::Vulkan12Features => vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
            Link::MemoryAllocateFlags(_) => vk::StructureType::MEMORY_ALLOCATE_FLAGS_INFO,
        }
    }
}

fn attributes() -> impl Strategy<Value = Attributes> {
    prop_oneof![
        2 => Just(Attributes::Null),
        1 => (prop_oneof![Just(24u32), Just(0), any::<u32>()], prop_oneof![Just(0), Just(1), any::<i32>()])
            .prop_map(|(length, inherit)| Attributes::Given { length, inherit }),
    ]
}

fn access() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(0x1000_0000),
        Just(0x0010_0000),
        Just(0x8000_0000),
        Just(1),
        Just(2),
        any::<u32>()
    ]
}

/// External handle type bits: single valid ones, none, several, anything.
fn handle_types() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop_oneof![Just(0x1u32), Just(0x2), Just(0x4), Just(0x8), Just(0x10), Just(0x20)],
        1 => Just(0u32),
        1 => any::<u32>().prop_map(|v| v & 0x3f),
        1 => any::<u32>(),
    ]
}

fn link() -> impl Strategy<Value = Link> {
    prop_oneof![
        3 => prop_oneof![
            Just(0x7a00_0000i32),
            Just(i32::MAX),
            Just(-1),
            any::<u16>().prop_map(|v| 0x7a00_0000 | i32::from(v)),
        ]
        .prop_map(Link::Unknown),
        2 => handle_types().prop_map(Link::ExportFence),
        2 => handle_types().prop_map(Link::ExportSemaphore),
        1 => (attributes(), access(), name_spec())
            .prop_map(|(attributes, access, name)| Link::ExportFenceWin32 { attributes, access, name }),
        1 => (attributes(), access(), name_spec())
            .prop_map(|(attributes, access, name)| Link::ExportSemaphoreWin32 { attributes, access, name }),
        2 => (prop_oneof![Just(0i32), Just(1), any::<i32>()], value())
            .prop_map(|(ty, initial)| Link::SemaphoreType { ty, initial }),
        2 => (arr(), arr()).prop_map(|(w, s)| Link::TimelineSubmit(w, s)),
        1 => (arr(), arr()).prop_map(|(w, s)| Link::D3d12Submit(w, s)),
        1 => Just(Link::TimelineFeatures),
        1 => Just(Link::Vulkan12Features),
        1 => any::<u32>().prop_map(Link::MemoryAllocateFlags),
    ]
}

/// An input pNext chain: its structures and, maybe, a loop from the last back to one of them.
#[derive(Clone, Debug, Default)]
struct Chain {
    links: Vec<Link>,
    loop_to: Option<u8>,
}

fn chain() -> impl Strategy<Value = Chain> {
    prop_oneof![
        3 => Just(Chain::default()),
        3 => (proptest::collection::vec(link(), 1..4), proptest::option::weighted(0.2, any::<u8>()))
            .prop_map(|(links, loop_to)| Chain { links, loop_to }),
    ]
}

/// An output pNext chain: zeroed 2 KiB structures with these sTypes, maybe looping.
#[derive(Clone, Debug, Default)]
struct OutChain {
    s_types: Vec<i32>,
    loop_to: Option<u8>,
}

fn out_chain() -> impl Strategy<Value = OutChain> {
    let s_type = prop_oneof![
        Just(vk::StructureType::PHYSICAL_DEVICE_ID_PROPERTIES.as_raw()),
        Just(vk::StructureType::PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_PROPERTIES.as_raw()),
        Just(vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES.as_raw()),
        Just(vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_2_PROPERTIES.as_raw()),
        Just(vk::StructureType::PHYSICAL_DEVICE_DRIVER_PROPERTIES.as_raw()),
        Just(vk::StructureType::PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES.as_raw()),
        Just(vk::StructureType::PHYSICAL_DEVICE_VULKAN_1_2_FEATURES.as_raw()),
        Just(vk::StructureType::PHYSICAL_DEVICE_SYNCHRONIZATION_2_FEATURES.as_raw()),
        Just(vk::StructureType::EXTERNAL_FENCE_PROPERTIES.as_raw()),
        Just(vk::StructureType::QUEUE_FAMILY_PROPERTIES_2.as_raw()),
        any::<u16>().prop_map(|v| 0x7a00_0000 | i32::from(v)),
    ];
    prop_oneof![
        2 => Just(OutChain::default()),
        3 => (proptest::collection::vec(s_type, 1..5), proptest::option::weighted(0.3, any::<u8>()))
            .prop_map(|(s_types, loop_to)| OutChain { s_types, loop_to }),
    ]
}

/// Sorts of fd the case owns and may hand to an fd import.
#[derive(Clone, Debug)]
enum MiscFd {
    DevNull,
    Pipe,
    Socket,
    EventFd,
    Directory,
    MemfdUnsealed,
    MemfdWrongSize,
    /// A sealed 4 KiB memfd full of these bytes (repeated).
    MemfdGarbage(Vec<u8>),
    /// A copy of a real payload page with the u32 at `offset * 4` (of the 80-byte header and
    /// state) replaced: a forged page.
    ForgedPage {
        offset: u8,
        value: u32,
    },
    /// A live payload page reopened read-only.
    ReadOnlyPage,
}

fn misc_fd() -> impl Strategy<Value = MiscFd> {
    prop_oneof![
        Just(MiscFd::DevNull),
        Just(MiscFd::Pipe),
        Just(MiscFd::Socket),
        Just(MiscFd::EventFd),
        Just(MiscFd::Directory),
        Just(MiscFd::MemfdUnsealed),
        Just(MiscFd::MemfdWrongSize),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(MiscFd::MemfdGarbage),
        (
            0u8..20,
            prop_oneof![Just(0u32), Just(1), Just(5), Just(u32::MAX), any::<u32>()]
        )
            .prop_map(|(offset, value)| MiscFd::ForgedPage { offset, value }),
        Just(MiscFd::ReadOnlyPage),
    ]
}

/// The fd of an fd import (ownership passes on success).
#[derive(Clone, Debug)]
enum FdSpec {
    MinusOne,
    /// An fd an export of this case returned.
    Exported(u8),
    Misc(MiscFd),
    /// A number that is not open.
    Closed,
    Weird(i32),
}

fn fd_spec() -> impl Strategy<Value = FdSpec> {
    prop_oneof![
        1 => Just(FdSpec::MinusOne),
        4 => any::<u8>().prop_map(FdSpec::Exported),
        3 => misc_fd().prop_map(FdSpec::Misc),
        1 => Just(FdSpec::Closed),
        1 => prop_oneof![Just(-2i32), Just(i32::MIN), Just(i32::MAX), Just(1 << 20)].prop_map(FdSpec::Weird),
    ]
}

/// The `HANDLE` of a Win32 import (never owned by the import).
#[derive(Clone, Debug)]
enum HandleSpec {
    Zero,
    /// An NT handle an export of this case returned.
    Nt(u8),
    /// A KMT value an export of this case returned.
    Kmt(u8),
    Misc(MiscFd),
    /// Any number below 4096 (open or not: the import only duplicates).
    Small(u16),
    Raw(u64),
}

fn handle_spec() -> impl Strategy<Value = HandleSpec> {
    prop_oneof![
        1 => Just(HandleSpec::Zero),
        3 => any::<u8>().prop_map(HandleSpec::Nt),
        2 => any::<u8>().prop_map(HandleSpec::Kmt),
        2 => misc_fd().prop_map(HandleSpec::Misc),
        1 => (0u16..4096).prop_map(HandleSpec::Small),
        1 => prop_oneof![
            Just(u64::MAX),
            Just(0x4000_0002u64),
            Just(0x4000_0000u64),
            Just(0xffff_ffffu64),
            any::<u64>()
        ]
        .prop_map(HandleSpec::Raw),
    ]
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..300,
        1 => Just(vk::WHOLE_SIZE),
        1 => Just(1u64 << 40),
        1 => Just(u64::MAX - 3),
        1 => any::<u64>(),
    ]
}

fn timeout() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1_000), Just(1_000_000)]
}

/// One recorded command.
#[derive(Clone, Debug)]
enum Cmd {
    Fill {
        buffer: H,
        offset: u64,
        size: u64,
        data: u32,
    },
    Copy {
        src: H,
        dst: H,
        regions: Vec<(u64, u64, u64)>,
        null_regions: bool,
    },
    Update {
        buffer: H,
        offset: u64,
        len: u16,
    },
    Barrier {
        memory_barriers: u8,
        null: bool,
        chain: Chain,
    },
    Barrier2 {
        chain: Chain,
        memory_barriers: u8,
        null: bool,
    },
    SetEvent {
        event: H,
        stage: u32,
    },
    ResetEvent {
        event: H,
        stage: u32,
    },
    WaitEvents {
        events: Vec<H>,
        null: bool,
    },
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        (h(), size(), size(), any::<u32>()).prop_map(|(buffer, offset, size, data)| Cmd::Fill {
            buffer,
            offset,
            size,
            data
        }),
        (
            h(),
            h(),
            proptest::collection::vec((size(), size(), size()), 0..3),
            any::<bool>()
        )
            .prop_map(|(src, dst, regions, null_regions)| Cmd::Copy {
                src,
                dst,
                regions,
                null_regions
            }),
        (h(), size(), prop_oneof![0u16..300, Just(65_535)]).prop_map(|(buffer, offset, len)| Cmd::Update {
            buffer,
            offset,
            len
        }),
        (0u8..3, any::<bool>(), chain()).prop_map(|(memory_barriers, null, chain)| Cmd::Barrier {
            memory_barriers,
            null,
            chain
        }),
        (chain(), 0u8..3, any::<bool>()).prop_map(|(chain, memory_barriers, null)| Cmd::Barrier2 {
            chain,
            memory_barriers,
            null
        }),
        (h(), prop_oneof![Just(1u32), Just(0), any::<u32>()]).prop_map(|(event, stage)| Cmd::SetEvent { event, stage }),
        (h(), prop_oneof![Just(1u32), Just(0), any::<u32>()])
            .prop_map(|(event, stage)| Cmd::ResetEvent { event, stage }),
        (proptest::collection::vec(h(), 0..3), any::<bool>())
            .prop_map(|(events, null)| Cmd::WaitEvents { events, null }),
    ]
}

/// One batch of a submit.
#[derive(Clone, Debug)]
struct BatchSpec {
    waits: Vec<(H, u64)>,
    /// `pWaitDstStageMask`: `None` is NULL.
    stages: Option<u32>,
    signals: Vec<(H, u64)>,
    /// Whether the case's command buffer is in it.
    command_buffer: bool,
    /// A `VkTimelineSemaphoreSubmitInfo` with the batch's own values (as a valid submit has).
    timeline_values: bool,
    chain: Chain,
}

fn batch() -> impl Strategy<Value = BatchSpec> {
    (
        proptest::collection::vec((h(), value()), 0..3),
        proptest::option::weighted(
            0.9,
            prop_oneof![
                Just(vk::PipelineStageFlags::ALL_COMMANDS.as_raw()),
                Just(0u32),
                any::<u32>()
            ],
        ),
        proptest::collection::vec((h(), value()), 0..3),
        any::<bool>(),
        proptest::bool::weighted(0.7),
        chain(),
    )
        .prop_map(
            |(waits, stages, signals, command_buffer, timeline_values, chain)| BatchSpec {
                waits,
                stages,
                signals,
                command_buffer,
                timeline_values,
                chain,
            },
        )
}

/// One call (or a short sequence: `Record`).
#[derive(Clone, Debug)]
enum Op {
    CreateFence {
        flags: u32,
        chain: Chain,
        wrong_s_type: bool,
    },
    CreateSemaphore {
        chain: Chain,
        wrong_s_type: bool,
    },
    CreateEvent {
        chain: Chain,
    },
    DestroyFence(H),
    DestroySemaphore(H),
    DestroyEvent(H),
    ResetFences {
        fences: Vec<H>,
        null: bool,
    },
    FenceStatus(H),
    WaitFences {
        fences: Vec<H>,
        null: bool,
        all: bool,
        timeout: u64,
    },
    Signal {
        semaphore: H,
        value: u64,
        chain: Chain,
    },
    WaitSemaphores {
        waits: Vec<(H, u64)>,
        null_values: bool,
        flags: u32,
        chain: Chain,
        timeout: u64,
    },
    Counter {
        semaphore: H,
        null_out: bool,
    },
    EventCall {
        event: H,
        op: u8,
    },
    Submit {
        queue: u8,
        batches: Vec<BatchSpec>,
        fence: H,
        null_batches: bool,
    },
    Submit2 {
        queue: u8,
        batches: Vec<BatchSpec>,
        fence: H,
        null_infos: bool,
    },
    Record {
        begin_chain: Chain,
        flags: u32,
        cmds: Vec<Cmd>,
    },
    AllocateMemory {
        size: u64,
        type_index: u32,
        chain: Chain,
    },
    FreeMemory(H),
    MapMemory {
        memory: H,
        offset: u64,
        size: u64,
    },
    UnmapMemory(H),
    CreateBuffer {
        size: u64,
        usage: u32,
        flags: u32,
        chain: Chain,
    },
    DestroyBuffer(H),
    BindBuffer {
        buffer: H,
        memory: H,
        offset: u64,
    },
    BufferRequirements(H),
    GetFenceFd {
        fence: H,
        handle_type: u32,
        chain: Chain,
    },
    ImportFenceFd {
        fence: H,
        handle_type: u32,
        flags: u32,
        fd: FdSpec,
        chain: Chain,
        wrong_s_type: bool,
    },
    GetSemaphoreFd {
        semaphore: H,
        handle_type: u32,
        chain: Chain,
    },
    ImportSemaphoreFd {
        semaphore: H,
        handle_type: u32,
        flags: u32,
        fd: FdSpec,
        chain: Chain,
        wrong_s_type: bool,
    },
    GetFenceWin32 {
        fence: H,
        handle_type: u32,
        chain: Chain,
    },
    ImportFenceWin32 {
        fence: H,
        handle_type: u32,
        flags: u32,
        handle: HandleSpec,
        name: NameSpec,
        chain: Chain,
    },
    GetSemaphoreWin32 {
        semaphore: H,
        handle_type: u32,
        chain: Chain,
    },
    ImportSemaphoreWin32 {
        semaphore: H,
        handle_type: u32,
        flags: u32,
        handle: HandleSpec,
        name: NameSpec,
        chain: Chain,
    },
    ExternalFenceProperties {
        handle_type: u32,
        chain: Chain,
        out: OutChain,
    },
    ExternalSemaphoreProperties {
        handle_type: u32,
        chain: Chain,
        out: OutChain,
    },
    Properties2(OutChain),
    Features2(OutChain),
    QueueFamilies2 {
        count: u8,
        out: OutChain,
    },
    MemoryProperties2(OutChain),
    /// A NULL where a structure or an output is required: which call (see `World::null_pointer`).
    NullPointer(u8),
    /// `VK_EXT_debug_utils` instance commands (in process only: the loader implements them
    /// itself): create a messenger (random filters, a callback or NULL), destroy one (live,
    /// destroyed or made up), submit a message (random or NULL data).
    Messenger {
        call: u8,
        messenger: H,
        severity: u32,
        types: u32,
        null_callback: bool,
    },
    /// A second device with random queue requests, extensions and chain (in process only: the
    /// loader walks `vkCreateDevice`'s chain itself), destroyed at once when made.
    CreateDevice {
        queues: Vec<QueueRequest>,
        extensions: Vec<u8>,
        chain: Chain,
    },
}

/// One `VkDeviceQueueCreateInfo`.
#[derive(Clone, Debug)]
struct QueueRequest {
    family: u32,
    count: u8,
    null_priorities: bool,
}

/// Extension names a device may ask for: real ones, one the driver lacks, and NULL (index 7).
const DEVICE_EXTENSION_CHOICES: [&std::ffi::CStr; 7] = [
    c"VK_KHR_timeline_semaphore",
    c"VK_KHR_external_semaphore_fd",
    c"VK_KHR_external_fence_win32",
    c"VK_KHR_synchronization2",
    c"VK_KHR_swapchain",
    c"VK_TETHER_no_such_extension",
    c"",
];

fn import_flags() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(0u32), 3 => Just(1u32), 1 => any::<u32>()]
}

fn op(route: Route, layered: bool) -> BoxedStrategy<Op> {
    let instance_level = route == Route::InProcess || layered;
    let out = move || {
        out_chain().prop_map(move |mut c| {
            // The loader's own trampolines walk some output chains: no loops through it.
            if route != Route::InProcess {
                c.loop_to = None;
            }
            c
        })
    };
    let device_ops = prop_oneof![
        3 => (prop_oneof![Just(0u32), Just(1), any::<u32>()], chain(), proptest::bool::weighted(0.05))
            .prop_map(|(flags, chain, wrong_s_type)| Op::CreateFence { flags, chain, wrong_s_type }),
        3 => (chain(), proptest::bool::weighted(0.05)).prop_map(|(chain, wrong_s_type)| Op::CreateSemaphore { chain, wrong_s_type }),
        1 => chain().prop_map(|chain| Op::CreateEvent { chain }),
        1 => h().prop_map(Op::DestroyFence),
        1 => h().prop_map(Op::DestroySemaphore),
        1 => h().prop_map(Op::DestroyEvent),
        2 => (proptest::collection::vec(h(), 0..3), proptest::bool::weighted(0.1)).prop_map(|(fences, null)| Op::ResetFences { fences, null }),
        2 => h().prop_map(Op::FenceStatus),
        2 => (proptest::collection::vec(h(), 0..3), proptest::bool::weighted(0.1), any::<bool>(), timeout())
            .prop_map(|(fences, null, all, timeout)| Op::WaitFences { fences, null, all, timeout }),
        3 => (h(), value(), chain()).prop_map(|(semaphore, value, chain)| Op::Signal { semaphore, value, chain }),
        2 => (proptest::collection::vec((h(), value()), 0..3), proptest::bool::weighted(0.1), prop_oneof![Just(0u32), Just(1), any::<u32>()], chain(), timeout())
            .prop_map(|(waits, null_values, flags, chain, timeout)| Op::WaitSemaphores { waits, null_values, flags, chain, timeout }),
        2 => (h(), proptest::bool::weighted(0.1)).prop_map(|(semaphore, null_out)| Op::Counter { semaphore, null_out }),
        2 => (h(), 0u8..3).prop_map(|(event, op)| Op::EventCall { event, op }),
        4 => (0u8..4, proptest::collection::vec(batch(), 0..3), h(), proptest::bool::weighted(0.05))
            .prop_map(|(queue, batches, fence, null_batches)| Op::Submit { queue, batches, fence, null_batches }),
        2 => (0u8..4, proptest::collection::vec(batch(), 0..3), h(), proptest::bool::weighted(0.05))
            .prop_map(|(queue, batches, fence, null_infos)| Op::Submit2 { queue, batches, fence, null_infos }),
        2 => (chain(), prop_oneof![Just(0u32), Just(4), any::<u32>()], proptest::collection::vec(cmd(), 0..5))
            .prop_map(|(begin_chain, flags, cmds)| Op::Record { begin_chain, flags, cmds }),
        1 => (size(), prop_oneof![Just(0u32), Just(1), any::<u32>()], chain())
            .prop_map(|(size, type_index, chain)| Op::AllocateMemory { size, type_index, chain }),
        1 => h().prop_map(Op::FreeMemory),
        1 => (h(), size(), size()).prop_map(|(memory, offset, size)| Op::MapMemory { memory, offset, size }),
        1 => h().prop_map(Op::UnmapMemory),
        1 => (size(), prop_oneof![Just(3u32), Just(0), any::<u32>()], prop_oneof![Just(0u32), any::<u32>()], chain())
            .prop_map(|(size, usage, flags, chain)| Op::CreateBuffer { size, usage, flags, chain }),
        1 => h().prop_map(Op::DestroyBuffer),
        1 => (h(), h(), size()).prop_map(|(buffer, memory, offset)| Op::BindBuffer { buffer, memory, offset }),
        1 => h().prop_map(Op::BufferRequirements),
        2 => (0u8..NULL_POINTER_CALLS).prop_map(Op::NullPointer),
        3 => (h(), handle_types(), chain()).prop_map(|(fence, handle_type, chain)| Op::GetFenceFd { fence, handle_type, chain }),
        3 => (h(), handle_types(), import_flags(), fd_spec(), chain(), proptest::bool::weighted(0.05))
            .prop_map(|(fence, handle_type, flags, fd, chain, wrong_s_type)| Op::ImportFenceFd { fence, handle_type, flags, fd, chain, wrong_s_type }),
        3 => (h(), handle_types(), chain()).prop_map(|(semaphore, handle_type, chain)| Op::GetSemaphoreFd { semaphore, handle_type, chain }),
        3 => (h(), handle_types(), import_flags(), fd_spec(), chain(), proptest::bool::weighted(0.05))
            .prop_map(|(semaphore, handle_type, flags, fd, chain, wrong_s_type)| Op::ImportSemaphoreFd { semaphore, handle_type, flags, fd, chain, wrong_s_type }),
        3 => (h(), handle_types(), chain()).prop_map(|(fence, handle_type, chain)| Op::GetFenceWin32 { fence, handle_type, chain }),
        3 => (h(), handle_types(), import_flags(), handle_spec(), name_spec(), chain())
            .prop_map(|(fence, handle_type, flags, handle, name, chain)| Op::ImportFenceWin32 { fence, handle_type, flags, handle, name, chain }),
        3 => (h(), handle_types(), chain()).prop_map(|(semaphore, handle_type, chain)| Op::GetSemaphoreWin32 { semaphore, handle_type, chain }),
        3 => (h(), handle_types(), import_flags(), handle_spec(), name_spec(), chain())
            .prop_map(|(semaphore, handle_type, flags, handle, name, chain)| Op::ImportSemaphoreWin32 { semaphore, handle_type, flags, handle, name, chain }),
    ];
    let device_ops = if route == Route::InProcess {
        let queue = (
            prop_oneof![4 => Just(0u32), 1 => any::<u32>()],
            0u8..7,
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(family, count, null_priorities)| QueueRequest {
                family,
                count,
                null_priorities,
            });
        let create_device = (
            proptest::collection::vec(queue, 0..3),
            proptest::collection::vec(0u8..8, 0..4),
            chain(),
        )
            .prop_map(|(queues, extensions, chain)| Op::CreateDevice {
                queues,
                extensions,
                chain,
            });
        let messenger = (0u8..3, h(), any::<u32>(), any::<u32>(), proptest::bool::weighted(0.2)).prop_map(
            |(call, messenger, severity, types, null_callback)| Op::Messenger {
                call,
                messenger,
                severity,
                types,
                null_callback,
            },
        );
        prop_oneof![40 => device_ops, 1 => create_device, 1 => messenger].boxed()
    } else {
        device_ops.boxed()
    };
    if !instance_level {
        return device_ops;
    }
    let instance_ops = prop_oneof![
        (handle_types(), chain(), out()).prop_map(|(handle_type, chain, out)| Op::ExternalFenceProperties {
            handle_type,
            chain,
            out
        }),
        (handle_types(), chain(), out()).prop_map(|(handle_type, chain, out)| Op::ExternalSemaphoreProperties {
            handle_type,
            chain,
            out
        }),
        out().prop_map(Op::Properties2),
        out().prop_map(Op::Features2),
        (0u8..3, out()).prop_map(|(count, out)| Op::QueueFamilies2 { count, out }),
        out().prop_map(Op::MemoryProperties2),
    ];
    prop_oneof![8 => device_ops, 1 => instance_ops].boxed()
}

// --- building the arguments -------------------------------------------------------------------------

/// Memory for one structure: 2 KiB, zeroed, 8-aligned (larger than any structure used here).
type Slot = Box<[u64; 256]>;

/// Everything a call's arguments point to, alive until it is dropped.
#[derive(Default)]
struct Storage {
    slots: Vec<Slot>,
    arrays: Vec<Vec<u64>>,
    names: Vec<Vec<u16>>,
    /// Boxed: pointers to earlier elements must survive later pushes.
    #[allow(clippy::vec_box)]
    attributes: Vec<Box<SecurityAttributes>>,
}

impl Storage {
    fn slot(&mut self) -> *mut u8 {
        self.slots.push(Box::new([0u64; 256]));
        self.slots
            .last_mut()
            .map_or(std::ptr::null_mut(), |s| s.as_mut_ptr().cast())
    }

    /// Places `value` in a new slot.
    fn place<T>(&mut self, value: T) -> *mut T {
        assert!(std::mem::size_of::<T>() <= 2048 && std::mem::align_of::<T>() <= 8);
        let p = self.slot().cast::<T>();
        // SAFETY: a fresh, zeroed, 8-aligned slot of 2 KiB, larger than `T` (checked above).
        unsafe { p.write(value) };
        p
    }

    /// An array of u64s, or NULL.
    fn array(&mut self, a: &Arr) -> (*const u64, u32) {
        match a {
            Arr::Null(n) => (std::ptr::null(), u32::from(*n)),
            Arr::Values(v) => {
                self.arrays.push(v.clone());
                let v = self.arrays.last().expect("just pushed");
                (v.as_ptr(), v.len() as u32)
            }
        }
    }

    fn name(&mut self, units: Vec<u16>) -> *const u16 {
        self.names.push(units);
        self.names.last().map_or(std::ptr::null(), |n| n.as_ptr())
    }
}

/// Links `slots` into a chain (each starts with sType and pNext); returns its head.
fn link_slots(slots: &[*mut u8], loop_to: Option<u8>) -> *mut c_void {
    for (i, &slot) in slots.iter().enumerate() {
        let next = if i + 1 < slots.len() {
            slots[i + 1]
        } else {
            loop_to.map_or(std::ptr::null_mut(), |j| slots[usize::from(j) % slots.len()])
        };
        // SAFETY: every slot is a live 2 KiB structure whose header is `VkBaseOutStructure`.
        unsafe { (*slot.cast::<vk::BaseOutStructure<'_>>()).p_next = next.cast() };
    }
    slots.first().map_or(std::ptr::null_mut(), |s| s.cast())
}

/// Whether a chain is certainly invalid where only `allowed` structures may appear.
fn chain_invalid(chain: &Chain, allowed: &[vk::StructureType]) -> bool {
    let mut seen = Vec::new();
    for l in &chain.links {
        let t = l.s_type();
        if !allowed.contains(&t) || seen.contains(&t) {
            return true;
        }
        seen.push(t);
        // (NULL value arrays are allowed: pWaitSemaphoreValues and the like are optional
        // pointers, and their counts only have to match when a timeline semaphore is involved.)
    }
    chain.loop_to.is_some()
}

/// [`chain_invalid`] for `vkCreateFence` and `vkCreateSemaphore`: through the layer, whose
/// business is to translate the Win32 export structures (it takes them out of the chain before
/// the driver sees it, and does not validate them further), a chain that is invalid only because
/// of a repeated or misplaced Win32 export structure need only be survived. Returns (must be
/// refused, may pass unreported).
fn create_chain_invalid(chain: &Chain, allowed: &[vk::StructureType]) -> (bool, bool) {
    let invalid = chain_invalid(chain, allowed);
    if !harness::target().through_layer() {
        return (invalid, false);
    }
    let stripped = Chain {
        links: chain
            .links
            .iter()
            .filter(|l| !matches!(l, Link::ExportFenceWin32 { .. } | Link::ExportSemaphoreWin32 { .. }))
            .cloned()
            .collect(),
        loop_to: chain.loop_to,
    };
    let strict = chain_invalid(&stripped, allowed) && !(stripped.links.is_empty() && chain.loop_to.is_some());
    (strict, invalid && !strict)
}

// --- a case --------------------------------------------------------------------------------------

/// The device of a case, its objects, and what the case holds.
struct World {
    route: Route,
    inst: TestInstance,
    device: ash::Device,
    sync2: ash::khr::synchronization2::Device,
    fence_fd: ash::khr::external_fence_fd::Device,
    semaphore_fd: ash::khr::external_semaphore_fd::Device,
    fence_win32: ash::khr::external_fence_win32::Device,
    semaphore_win32: ash::khr::external_semaphore_win32::Device,
    queues: Vec<vk::Queue>,
    pool: vk::CommandPool,
    command_buffer: vk::CommandBuffer,
    fences: Vec<vk::Fence>,
    semaphores: Vec<(vk::Semaphore, bool)>,
    events: Vec<vk::Event>,
    buffers: Vec<vk::Buffer>,
    memories: Vec<vk::DeviceMemory>,
    destroyed: Vec<u64>,
    /// fds exports returned (OPAQUE_FD, SYNC_FD), ours to close.
    exported: Vec<OwnedFd>,
    /// NT handles exports returned.
    nt: Vec<OwnedFd>,
    kmt: Vec<u64>,
    names: Vec<Vec<u16>>,
    /// The exportable timeline whose page forged pages copy.
    page_source: Option<vk::Semaphore>,
    /// While recording: invalid commands accepted silently, which `vkEndCommandBuffer` must
    /// then refuse.
    recording: std::cell::RefCell<Option<Vec<String>>>,
    /// Messengers the case made, and destroyed ones.
    messengers: Vec<vk::DebugUtilsMessengerEXT>,
    destroyed_messengers: Vec<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fence,
    Semaphore,
    Event,
    Buffer,
    Memory,
}

const FENCE_TYPES: u32 = 0x1 | 0x2 | 0x4 | 0x8;
const SEMAPHORE_TYPES: u32 = 0x1 | 0x2 | 0x4 | 0x10;
const TIMELINE_TYPES: u32 = 0x1 | 0x2 | 0x4;

impl World {
    fn new(route: Route) -> Result<World, String> {
        let inst = TestInstance::with_options(
            route,
            Options {
                validation_layer: false,
                expect_errors: true,
                ..Options::default()
            },
        );
        let priorities = [1.0f32; 4];
        let queue_infos = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let extensions = [
            ash::khr::timeline_semaphore::NAME.as_ptr(),
            ash::khr::synchronization2::NAME.as_ptr(),
            ash::khr::external_fence::NAME.as_ptr(),
            ash::khr::external_semaphore::NAME.as_ptr(),
            ash::khr::external_fence_fd::NAME.as_ptr(),
            ash::khr::external_semaphore_fd::NAME.as_ptr(),
            ash::khr::external_fence_win32::NAME.as_ptr(),
            ash::khr::external_semaphore_win32::NAME.as_ptr(),
        ];
        let mut timeline = vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true);
        let mut sync2 = vk::PhysicalDeviceSynchronization2Features::default().synchronization2(true);
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_infos)
            .enabled_extension_names(&extensions)
            .push_next(&mut timeline)
            .push_next(&mut sync2);
        let held = tether_conformance::context::device_list_lock();
        // SAFETY: `info` and what it points to outlive the call.
        let device = unsafe { inst.instance.create_device(inst.physical_device, &info, None) }
            .map_err(|e| format!("vkCreateDevice: {e}; messages {:?}", inst.log.snapshot()))?;
        let i = &inst.instance;
        // The commands of the enabled extensions must all be there (ash would call a stub that
        // panics across the C boundary, an abort, for a missing one).
        let missing: Vec<&str> = [
            c"vkGetFenceFdKHR",
            c"vkImportFenceFdKHR",
            c"vkGetSemaphoreFdKHR",
            c"vkImportSemaphoreFdKHR",
            c"vkGetFenceWin32HandleKHR",
            c"vkImportFenceWin32HandleKHR",
            c"vkGetSemaphoreWin32HandleKHR",
            c"vkImportSemaphoreWin32HandleKHR",
            c"vkQueueSubmit2KHR",
            c"vkSignalSemaphore",
        ]
        .into_iter()
        // SAFETY: a live device and NUL-terminated names.
        .filter(|name| unsafe { i.get_device_proc_addr(device.handle(), name.as_ptr()) }.is_none())
        .map(|name| name.to_str().unwrap_or("?"))
        .collect();
        if !missing.is_empty() {
            // SAFETY: the device was just made; nothing else uses it.
            unsafe { device.destroy_device(None) };
            return Err(format!(
                "vkGetDeviceProcAddr returned NULL for {missing:?} on a device that enabled their extensions; messages {:?}",
                inst.log.snapshot()
            ));
        }
        let w = World {
            route,
            sync2: ash::khr::synchronization2::Device::new(i, &device),
            fence_fd: ash::khr::external_fence_fd::Device::new(i, &device),
            semaphore_fd: ash::khr::external_semaphore_fd::Device::new(i, &device),
            fence_win32: ash::khr::external_fence_win32::Device::new(i, &device),
            semaphore_win32: ash::khr::external_semaphore_win32::Device::new(i, &device),
            // SAFETY: the device has 4 queues of family 0.
            queues: (0..4).map(|q| unsafe { device.get_device_queue(0, q) }).collect(),
            pool: vk::CommandPool::null(),
            command_buffer: vk::CommandBuffer::null(),
            fences: Vec::new(),
            semaphores: Vec::new(),
            events: Vec::new(),
            buffers: Vec::new(),
            memories: Vec::new(),
            destroyed: Vec::new(),
            exported: Vec::new(),
            nt: Vec::new(),
            kmt: Vec::new(),
            names: Vec::new(),
            page_source: None,
            recording: std::cell::RefCell::new(None),
            messengers: Vec::new(),
            destroyed_messengers: Vec::new(),
            device,
            inst,
        };
        drop(held);
        let mut w = w;
        w.populate()?;
        let _ = w.inst.log.take();
        Ok(w)
    }

    /// The starting objects: plain and exportable fences, binary and timeline semaphores (one
    /// D3D12), an event, a buffer bound to memory, a command buffer, and one destroyed of each.
    fn populate(&mut self) -> Result<(), String> {
        let d = &self.device;
        // SAFETY: every call below gets valid create infos on a live device.
        unsafe {
            let pool_info = vk::CommandPoolCreateInfo::default()
                .queue_family_index(0)
                .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
            self.pool = d
                .create_command_pool(&pool_info, None)
                .map_err(|e| format!("pool: {e}"))?;
            let alloc = vk::CommandBufferAllocateInfo::default()
                .command_pool(self.pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1);
            self.command_buffer = d.allocate_command_buffers(&alloc).map_err(|e| format!("cb: {e}"))?[0];
            for signaled in [false, true] {
                let flags = if signaled {
                    vk::FenceCreateFlags::SIGNALED
                } else {
                    vk::FenceCreateFlags::empty()
                };
                self.fences.push(
                    d.create_fence(&vk::FenceCreateInfo::default().flags(flags), None)
                        .map_err(|e| e.to_string())?,
                );
            }
            let mut export = vk::ExportFenceCreateInfo::default()
                .handle_types(vk::ExternalFenceHandleTypeFlags::from_raw(FENCE_TYPES));
            if let Ok(f) = d.create_fence(&vk::FenceCreateInfo::default().push_next(&mut export), None) {
                self.fences.push(f);
            }
            self.semaphores.push((
                d.create_semaphore(&vk::SemaphoreCreateInfo::default(), None)
                    .map_err(|e| e.to_string())?,
                false,
            ));
            let mut export = vk::ExportSemaphoreCreateInfo::default()
                .handle_types(vk::ExternalSemaphoreHandleTypeFlags::from_raw(SEMAPHORE_TYPES));
            if let Ok(s) = d.create_semaphore(&vk::SemaphoreCreateInfo::default().push_next(&mut export), None) {
                self.semaphores.push((s, false));
            }
            for (types, initial) in [(0u32, 0u64), (TIMELINE_TYPES, 5), (0x8, 1)] {
                let mut ty = vk::SemaphoreTypeCreateInfo::default()
                    .semaphore_type(vk::SemaphoreType::TIMELINE)
                    .initial_value(initial);
                let mut export = vk::ExportSemaphoreCreateInfo::default()
                    .handle_types(vk::ExternalSemaphoreHandleTypeFlags::from_raw(types));
                let mut info = vk::SemaphoreCreateInfo::default().push_next(&mut ty);
                if types != 0 {
                    info = info.push_next(&mut export);
                }
                if let Ok(s) = d.create_semaphore(&info, None) {
                    self.semaphores.push((s, true));
                    if types == TIMELINE_TYPES {
                        self.page_source = Some(s);
                    }
                }
            }
            self.events.push(
                d.create_event(&vk::EventCreateInfo::default(), None)
                    .map_err(|e| e.to_string())?,
            );
            let buffer_info = vk::BufferCreateInfo::default()
                .size(256)
                .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST);
            let buffer = d.create_buffer(&buffer_info, None).map_err(|e| e.to_string())?;
            let req = d.get_buffer_memory_requirements(buffer);
            let memory = d
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default()
                        .allocation_size(req.size)
                        .memory_type_index(req.memory_type_bits.trailing_zeros()),
                    None,
                )
                .map_err(|e| e.to_string())?;
            d.bind_buffer_memory(buffer, memory, 0).map_err(|e| e.to_string())?;
            self.buffers.push(buffer);
            self.memories.push(memory);
            // One destroyed object of each kind.
            let f = d
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .map_err(|e| e.to_string())?;
            d.destroy_fence(f, None);
            let s = d
                .create_semaphore(&vk::SemaphoreCreateInfo::default(), None)
                .map_err(|e| e.to_string())?;
            d.destroy_semaphore(s, None);
            let e = d
                .create_event(&vk::EventCreateInfo::default(), None)
                .map_err(|e| e.to_string())?;
            d.destroy_event(e, None);
            let b = d.create_buffer(&buffer_info, None).map_err(|e| e.to_string())?;
            d.destroy_buffer(b, None);
            let m = d
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default()
                        .allocation_size(64)
                        .memory_type_index(0),
                    None,
                )
                .map_err(|e| e.to_string())?;
            d.free_memory(m, None);
            self.destroyed
                .extend([f.as_raw(), s.as_raw(), e.as_raw(), b.as_raw(), m.as_raw()]);
        }
        Ok(())
    }

    fn live(&self, kind: Kind) -> Vec<u64> {
        match kind {
            Kind::Fence => self.fences.iter().map(|f| f.as_raw()).collect(),
            Kind::Semaphore => self.semaphores.iter().map(|s| s.0.as_raw()).collect(),
            Kind::Event => self.events.iter().map(|e| e.as_raw()).collect(),
            Kind::Buffer => self.buffers.iter().map(|b| b.as_raw()).collect(),
            Kind::Memory => self.memories.iter().map(|m| m.as_raw()).collect(),
        }
    }

    /// The value of a handle argument and whether it is certainly invalid (NULL counts as
    /// invalid unless `null_ok`).
    fn resolve(&self, kind: Kind, h: &H, null_ok: bool) -> (u64, bool) {
        match h {
            H::Live(i) => {
                let live = self.live(kind);
                if live.is_empty() {
                    (0, !null_ok)
                } else {
                    (live[usize::from(*i) % live.len()], false)
                }
            }
            H::Destroyed(i) => {
                if self.destroyed.is_empty() {
                    (0xdead, true)
                } else {
                    let v = self.destroyed[usize::from(*i) % self.destroyed.len()];
                    // A destroyed value can only be live again as an object of another kind.
                    (v, !(self.is_live_any(v) || null_ok && v == 0))
                }
            }
            H::Null => (0, !null_ok),
            H::MadeUp(v) => (*v, !self.is_live_any(*v)),
            H::OtherKind(i) => {
                let others: Vec<u64> = [Kind::Fence, Kind::Semaphore, Kind::Event, Kind::Buffer, Kind::Memory]
                    .into_iter()
                    .filter(|k| *k != kind)
                    .flat_map(|k| self.live(k))
                    .collect();
                if others.is_empty() {
                    (0, !null_ok)
                } else {
                    (others[usize::from(*i) % others.len()], false)
                }
            }
        }
    }

    fn is_live_any(&self, v: u64) -> bool {
        [Kind::Fence, Kind::Semaphore, Kind::Event, Kind::Buffer, Kind::Memory]
            .into_iter()
            .any(|k| self.live(k).contains(&v))
    }

    /// A semaphore argument that must be a timeline: invalid also when it is a live binary one.
    fn resolve_timeline(&self, h: &H) -> (u64, bool) {
        let (v, bad) = self.resolve(Kind::Semaphore, h, false);
        let binary = self.semaphores.iter().any(|(s, timeline)| s.as_raw() == v && !timeline);
        (v, bad || binary)
    }

    fn forget(&mut self, kind: Kind, v: u64) {
        if v == 0 {
            return;
        }
        let before = self.live(kind).len();
        match kind {
            Kind::Fence => self.fences.retain(|f| f.as_raw() != v),
            Kind::Semaphore => self.semaphores.retain(|s| s.0.as_raw() != v),
            Kind::Event => self.events.retain(|e| e.as_raw() != v),
            Kind::Buffer => self.buffers.retain(|b| b.as_raw() != v),
            Kind::Memory => self.memories.retain(|m| m.as_raw() != v),
        }
        if self.live(kind).len() != before {
            self.destroyed.push(v);
        }
    }

    fn log(&self) -> &MessageLog {
        &self.inst.log
    }

    /// Checks one call: no panic; certainly-invalid input refused. `validated`: whether the
    /// command is one that must notice this kind of invalid input (else it only has to survive
    /// it, and the call is counted as unreported).
    fn check(&self, what: &str, r: vk::Result, bad: bool, validated: bool) -> Result<(), String> {
        let messages = self.log().take();
        let mut stats = lock(&STATS);
        stats.calls += 1;
        if r == vk::Result::ERROR_UNKNOWN {
            return Err(format!(
                "{what}: VK_ERROR_UNKNOWN (a panic caught at the C boundary); messages {messages:?}"
            ));
        }
        if bad {
            let reported = r.as_raw() < 0 || messages.iter().any(|m| m.is_error());
            if reported {
                stats.refused += 1;
            } else if validated {
                if let Some(deferred) = self.recording.borrow_mut().as_mut() {
                    // A recorded command may report at vkEndCommandBuffer instead.
                    deferred.push(what.to_owned());
                    return Ok(());
                }
                return Err(format!(
                    "{what}: certainly invalid input accepted ({r:?}) without a validation message"
                ));
            } else {
                stats.unreported += 1;
                if std::env::var_os("TETHER_FUZZ_SHOW_UNREPORTED").is_some() {
                    eprintln!("unreported: {what} -> {r:?}");
                }
            }
        }
        Ok(())
    }

    // --- arguments ---------------------------------------------------------------------------

    fn name_units(&mut self, spec: &NameSpec) -> Option<Vec<u16>> {
        let with_nul = |mut v: Vec<u16>| {
            v.push(0);
            v
        };
        Some(match spec {
            NameSpec::Null => return None,
            NameSpec::Fresh => {
                let units: Vec<u16> = tether_conformance::win32::unique_name("fuzz").encode_utf16().collect();
                self.names.push(units.clone());
                with_nul(units)
            }
            NameSpec::Known(i) => {
                if self.names.is_empty() {
                    with_nul("tether-fuzz-none".encode_utf16().collect())
                } else {
                    with_nul(self.names[usize::from(*i) % self.names.len()].clone())
                }
            }
            NameSpec::Units(u) => with_nul(u.clone()),
            NameSpec::Long(n) => with_nul(vec![u16::from(b'a'); *n as usize]),
            NameSpec::Prefixed(p) => with_nul(p.encode_utf16().collect()),
        })
    }

    /// Builds an input chain in `storage`; returns its head.
    fn build_chain(&mut self, chain: &Chain, storage: &mut Storage) -> *const c_void {
        let mut slots = Vec::new();
        for l in &chain.links {
            let p: *mut u8 = match l {
                Link::Unknown(t) => {
                    let p = storage.slot();
                    // SAFETY: a fresh 2 KiB slot; its first field is the sType.
                    unsafe { p.cast::<i32>().write(*t) };
                    p
                }
                Link::ExportFence(t) => storage
                    .place(
                        vk::ExportFenceCreateInfo::default()
                            .handle_types(vk::ExternalFenceHandleTypeFlags::from_raw(*t)),
                    )
                    .cast(),
                Link::ExportSemaphore(t) => storage
                    .place(
                        vk::ExportSemaphoreCreateInfo::default()
                            .handle_types(vk::ExternalSemaphoreHandleTypeFlags::from_raw(*t)),
                    )
                    .cast(),
                Link::ExportFenceWin32 {
                    attributes,
                    access,
                    name,
                }
                | Link::ExportSemaphoreWin32 {
                    attributes,
                    access,
                    name,
                } => {
                    let attrs: *const c_void = match attributes {
                        Attributes::Null => std::ptr::null(),
                        Attributes::Given { length, inherit } => {
                            let mut a = SecurityAttributes::new(false);
                            a.length = *length;
                            a.inherit_handle = *inherit;
                            storage.attributes.push(Box::new(a));
                            let a: &SecurityAttributes = storage.attributes.last().expect("just pushed");
                            (a as *const SecurityAttributes).cast()
                        }
                    };
                    let name = self.name_units(name).map_or(std::ptr::null(), |n| storage.name(n));
                    if matches!(l, Link::ExportFenceWin32 { .. }) {
                        let mut s = vk::ExportFenceWin32HandleInfoKHR::default();
                        s.p_attributes = attrs.cast();
                        s.dw_access = (*access).into();
                        s.name = name;
                        storage.place(s).cast()
                    } else {
                        let mut s = vk::ExportSemaphoreWin32HandleInfoKHR::default();
                        s.p_attributes = attrs.cast();
                        s.dw_access = (*access).into();
                        s.name = name;
                        storage.place(s).cast()
                    }
                }
                Link::SemaphoreType { ty, initial } => storage
                    .place(
                        vk::SemaphoreTypeCreateInfo::default()
                            .semaphore_type(vk::SemaphoreType::from_raw(*ty))
                            .initial_value(*initial),
                    )
                    .cast(),
                Link::TimelineSubmit(w, s) => {
                    let (wp, wn) = storage.array(w);
                    let (sp, sn) = storage.array(s);
                    let mut t = vk::TimelineSemaphoreSubmitInfo::default();
                    t.wait_semaphore_value_count = wn;
                    t.p_wait_semaphore_values = wp;
                    t.signal_semaphore_value_count = sn;
                    t.p_signal_semaphore_values = sp;
                    storage.place(t).cast()
                }
                Link::D3d12Submit(w, s) => {
                    let (wp, wn) = storage.array(w);
                    let (sp, sn) = storage.array(s);
                    let mut t = vk::D3D12FenceSubmitInfoKHR::default();
                    t.wait_semaphore_values_count = wn;
                    t.p_wait_semaphore_values = wp;
                    t.signal_semaphore_values_count = sn;
                    t.p_signal_semaphore_values = sp;
                    storage.place(t).cast()
                }
                Link::TimelineFeatures => storage
                    .place(vk::PhysicalDeviceTimelineSemaphoreFeatures::default().timeline_semaphore(true))
                    .cast(),
                Link::Vulkan12Features => storage.place(vk::PhysicalDeviceVulkan12Features::default()).cast(),
                Link::MemoryAllocateFlags(f) => storage
                    .place(vk::MemoryAllocateFlagsInfo::default().flags(vk::MemoryAllocateFlags::from_raw(*f)))
                    .cast(),
            };
            slots.push(p);
        }
        link_slots(&slots, chain.loop_to).cast_const()
    }

    /// Builds an output chain in `storage`; returns its head.
    fn build_out_chain(&self, out: &OutChain, storage: &mut Storage) -> *mut c_void {
        let slots: Vec<*mut u8> = out
            .s_types
            .iter()
            .map(|t| {
                let p = storage.slot();
                // SAFETY: a fresh 2 KiB slot; its first field is the sType.
                unsafe { p.cast::<i32>().write(*t) };
                p
            })
            .collect();
        link_slots(&slots, out.loop_to)
    }

    /// A new fd of a sort, owned by the case (`None` when it cannot be made here).
    fn misc_fd(&self, sort: &MiscFd) -> Option<OwnedFd> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let sealed_memfd = |bytes: &[u8], size: u64| -> Option<OwnedFd> {
            let fd = rustix::fs::memfd_create("tether-fuzz", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).ok()?;
            rustix::fs::ftruncate(&fd, size).ok()?;
            if !bytes.is_empty() {
                let mut page = vec![0u8; size.min(4096) as usize];
                for (i, b) in page.iter_mut().enumerate() {
                    *b = bytes[i % bytes.len()];
                }
                rustix::io::pwrite(&fd, &page, 0).ok()?;
            }
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL).ok()?;
            Some(fd)
        };
        match sort {
            MiscFd::DevNull => std::fs::File::open("/dev/null").ok().map(OwnedFd::from),
            MiscFd::Pipe => rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .ok()
                .map(|(r, _w)| r),
            MiscFd::Socket => Some(tether_conformance::external::socket_pair().0),
            MiscFd::EventFd => rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).ok(),
            MiscFd::Directory => std::fs::File::open("/").ok().map(OwnedFd::from),
            MiscFd::MemfdUnsealed => {
                let fd = rustix::fs::memfd_create("tether-fuzz", MemfdFlags::CLOEXEC).ok()?;
                rustix::fs::ftruncate(&fd, 4096).ok()?;
                Some(fd)
            }
            MiscFd::MemfdWrongSize => sealed_memfd(b"TETHERPL", 8192),
            MiscFd::MemfdGarbage(bytes) => sealed_memfd(bytes, 4096),
            MiscFd::ForgedPage { offset, value } => {
                let page = self.page_fd()?;
                let mut bytes = vec![0u8; 4096];
                rustix::io::pread(&page, &mut bytes, 0).ok()?;
                let at = usize::from(*offset) * 4;
                bytes[at..at + 4].copy_from_slice(&value.to_ne_bytes());
                sealed_memfd(&bytes, 4096)
            }
            MiscFd::ReadOnlyPage => {
                let page = self.page_fd()?;
                rustix::fs::open(
                    format!("/proc/self/fd/{}", page.as_raw_fd()),
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .ok()
            }
        }
    }

    /// A new fd of the page of the case's exportable timeline (an OPAQUE_FD export).
    fn page_fd(&self) -> Option<OwnedFd> {
        let s = self.page_source?;
        if !self.semaphores.iter().any(|(x, _)| *x == s) {
            return None;
        }
        let info = vk::SemaphoreGetFdInfoKHR::default()
            .semaphore(s)
            .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_FD);
        // SAFETY: a live exportable semaphore of this device.
        let fd = unsafe { self.semaphore_fd.get_semaphore_fd(&info) }.ok()?;
        let _ = self.log().take();
        // SAFETY: a successful export returns a new fd the caller owns.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The raw fd of an fd import and, when the case owns it, the fd (given back on failure).
    /// `bool`: certainly invalid (no fd at all).
    fn fd_arg(&mut self, spec: &FdSpec) -> (RawFd, Option<OwnedFd>, bool) {
        match spec {
            FdSpec::MinusOne => (-1, None, false),
            FdSpec::Exported(i) => {
                if self.exported.is_empty() {
                    (-1, None, false)
                } else {
                    let fd = self.exported.remove(usize::from(*i) % self.exported.len());
                    (fd.as_raw_fd(), Some(fd), false)
                }
            }
            FdSpec::Misc(sort) => match self.misc_fd(sort) {
                Some(fd) => (fd.as_raw_fd(), Some(fd), false),
                None => (-1, None, false),
            },
            FdSpec::Closed => (closed_fd(), None, true),
            FdSpec::Weird(v) => (*v, None, true),
        }
    }

    /// The `HANDLE` of a Win32 import and what keeps it open during the call.
    fn handle_arg(&mut self, spec: &HandleSpec) -> (u64, Option<OwnedFd>) {
        match spec {
            HandleSpec::Zero => (0, None),
            HandleSpec::Nt(i) => match self.nt.get(usize::from(*i) % self.nt.len().max(1)) {
                Some(fd) => (fd.as_raw_fd() as u64, None),
                None => (0, None),
            },
            HandleSpec::Kmt(i) => (
                self.kmt
                    .get(usize::from(*i) % self.kmt.len().max(1))
                    .copied()
                    .unwrap_or(0x4000_0002),
                None,
            ),
            HandleSpec::Misc(sort) => match self.misc_fd(sort) {
                Some(fd) => (fd.as_raw_fd() as u64, Some(fd)),
                None => (0, None),
            },
            HandleSpec::Small(v) => (u64::from(*v), None),
            HandleSpec::Raw(v) => (*v, None),
        }
    }

    // --- running ops -----------------------------------------------------------------------------

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let mut st = Storage::default();
        let d = self.device.handle();
        let f10 = self.device.fp_v1_0().clone();
        let f12 = self.device.fp_v1_2().clone();
        const FENCE_CHAIN: &[vk::StructureType] = &[
            vk::StructureType::EXPORT_FENCE_CREATE_INFO,
            vk::StructureType::EXPORT_FENCE_WIN32_HANDLE_INFO_KHR,
        ];
        const SEMAPHORE_CHAIN: &[vk::StructureType] = &[
            vk::StructureType::EXPORT_SEMAPHORE_CREATE_INFO,
            vk::StructureType::EXPORT_SEMAPHORE_WIN32_HANDLE_INFO_KHR,
            vk::StructureType::SEMAPHORE_TYPE_CREATE_INFO,
        ];
        match op {
            Op::CreateFence {
                flags,
                chain,
                wrong_s_type,
            } => {
                let (bad, bad_stripped) = create_chain_invalid(chain, FENCE_CHAIN);
                let mut info = vk::FenceCreateInfo::default().flags(vk::FenceCreateFlags::from_raw(*flags));
                info.p_next = self.build_chain(chain, &mut st);
                if *wrong_s_type {
                    info.s_type = vk::StructureType::SEMAPHORE_CREATE_INFO;
                }
                let mut out = vk::Fence::null();
                // SAFETY: a live device; `info` and its chain live in `st` for the call.
                let r = unsafe { (f10.create_fence)(d, &info, std::ptr::null(), &mut out) };
                if r == vk::Result::SUCCESS && out != vk::Fence::null() {
                    self.fences.push(out);
                }
                // One check for every reason: the first check takes the messages.
                // One check for every reason (the first check takes the messages); through the
                // layer, a chain bad only in the Win32 structures it strips is the layer's to report.
                self.check("vkCreateFence", r, bad || bad_stripped || *wrong_s_type, true)
            }
            Op::CreateSemaphore { chain, wrong_s_type } => {
                let (bad, bad_stripped) = create_chain_invalid(chain, SEMAPHORE_CHAIN);
                let timeline = chain
                    .links
                    .iter()
                    .any(|l| matches!(l, Link::SemaphoreType { ty: 1, .. }));
                let mut info = vk::SemaphoreCreateInfo::default();
                info.p_next = self.build_chain(chain, &mut st);
                if *wrong_s_type {
                    info.s_type = vk::StructureType::FENCE_CREATE_INFO;
                }
                let mut out = vk::Semaphore::null();
                // SAFETY: as above.
                let r = unsafe { (f10.create_semaphore)(d, &info, std::ptr::null(), &mut out) };
                // One check for every reason: the first check takes the messages.
                let checked = self.check("vkCreateSemaphore", r, bad || bad_stripped || *wrong_s_type, true);
                if r == vk::Result::SUCCESS && out != vk::Semaphore::null() {
                    // With a looping or repeated chain the type is whatever the driver made of it:
                    // ask it.
                    let mut value = 0u64;
                    // SAFETY: a live semaphore; a binary one gives an error and a message.
                    let is_timeline = timeline
                        && unsafe { (f12.get_semaphore_counter_value)(d, out, &mut value) } == vk::Result::SUCCESS;
                    let _ = self.log().take();
                    self.semaphores.push((out, is_timeline));
                }
                checked
            }
            Op::CreateEvent { chain } => {
                let bad = chain_invalid(chain, &[]);
                let mut info = vk::EventCreateInfo::default();
                info.p_next = self.build_chain(chain, &mut st);
                let mut out = vk::Event::null();
                // SAFETY: as above.
                let r = unsafe { (f10.create_event)(d, &info, std::ptr::null(), &mut out) };
                if r == vk::Result::SUCCESS && out != vk::Event::null() {
                    self.events.push(out);
                }
                self.check("vkCreateEvent", r, bad, true)
            }
            Op::DestroyFence(h) => {
                let (v, bad) = self.resolve(Kind::Fence, h, true);
                // SAFETY: any handle value; the driver looks it up.
                unsafe { (f10.destroy_fence)(d, vk::Fence::from_raw(v), std::ptr::null()) };
                self.forget(Kind::Fence, v);
                self.check("vkDestroyFence", vk::Result::SUCCESS, bad, true)
            }
            Op::DestroySemaphore(h) => {
                let (v, bad) = self.resolve(Kind::Semaphore, h, true);
                // SAFETY: as above.
                unsafe { (f10.destroy_semaphore)(d, vk::Semaphore::from_raw(v), std::ptr::null()) };
                self.forget(Kind::Semaphore, v);
                self.check("vkDestroySemaphore", vk::Result::SUCCESS, bad, true)
            }
            Op::DestroyEvent(h) => {
                let (v, bad) = self.resolve(Kind::Event, h, true);
                // SAFETY: as above.
                unsafe { (f10.destroy_event)(d, vk::Event::from_raw(v), std::ptr::null()) };
                self.forget(Kind::Event, v);
                self.check("vkDestroyEvent", vk::Result::SUCCESS, bad, true)
            }
            Op::ResetFences { fences, null } => {
                let resolved: Vec<(u64, bool)> = fences.iter().map(|h| self.resolve(Kind::Fence, h, false)).collect();
                let values: Vec<vk::Fence> = resolved.iter().map(|r| vk::Fence::from_raw(r.0)).collect();
                let bad = resolved.iter().any(|r| r.1) || (*null && !values.is_empty());
                let ptr = if *null { std::ptr::null() } else { values.as_ptr() };
                // SAFETY: `values` holds the count given, or NULL.
                let r = unsafe { (f10.reset_fences)(d, values.len() as u32, ptr) };
                self.check("vkResetFences", r, bad, true)
            }
            Op::FenceStatus(h) => {
                let (v, bad) = self.resolve(Kind::Fence, h, false);
                // SAFETY: any handle value.
                let r = unsafe { (f10.get_fence_status)(d, vk::Fence::from_raw(v)) };
                self.check("vkGetFenceStatus", r, bad, true)
            }
            Op::WaitFences {
                fences,
                null,
                all,
                timeout,
            } => {
                let resolved: Vec<(u64, bool)> = fences.iter().map(|h| self.resolve(Kind::Fence, h, false)).collect();
                let values: Vec<vk::Fence> = resolved.iter().map(|r| vk::Fence::from_raw(r.0)).collect();
                let bad = resolved.iter().any(|r| r.1) || values.is_empty() || *null;
                let ptr = if *null { std::ptr::null() } else { values.as_ptr() };
                let count = if *null {
                    values.len().max(1) as u32
                } else {
                    values.len() as u32
                };
                // SAFETY: `values` holds the count given, or NULL.
                let r = common::returns_within("vkWaitForFences", Duration::from_nanos(*timeout), || unsafe {
                    (f10.wait_for_fences)(d, count, ptr, vk::Bool32::from(*all), *timeout)
                });
                self.check("vkWaitForFences", r, bad, true)
            }
            Op::Signal {
                semaphore,
                value,
                chain,
            } => {
                let (v, bad) = self.resolve_timeline(semaphore);
                let mut info = vk::SemaphoreSignalInfo::default()
                    .semaphore(vk::Semaphore::from_raw(v))
                    .value(*value);
                info.p_next = self.build_chain(chain, &mut st);
                // SAFETY: `info` and its chain live in `st` for the call.
                let r = unsafe { (f12.signal_semaphore)(d, &info) };
                self.check("vkSignalSemaphore", r, bad || chain_invalid(chain, &[]), true)
            }
            Op::WaitSemaphores {
                waits,
                null_values,
                flags,
                chain,
                timeout,
            } => {
                let resolved: Vec<(u64, bool)> = waits.iter().map(|(h, _)| self.resolve_timeline(h)).collect();
                let semaphores: Vec<vk::Semaphore> = resolved.iter().map(|r| vk::Semaphore::from_raw(r.0)).collect();
                let values: Vec<u64> = waits.iter().map(|w| w.1).collect();
                let bad = resolved.iter().any(|r| r.1) || (*null_values && !values.is_empty());
                let mut info = vk::SemaphoreWaitInfo::default().flags(vk::SemaphoreWaitFlags::from_raw(*flags));
                info.semaphore_count = semaphores.len() as u32;
                info.p_semaphores = semaphores.as_ptr();
                info.p_values = if *null_values {
                    std::ptr::null()
                } else {
                    values.as_ptr()
                };
                info.p_next = self.build_chain(chain, &mut st);
                // SAFETY: the arrays hold the count given (or `pValues` is NULL).
                let r = common::returns_within("vkWaitSemaphores", Duration::from_nanos(*timeout), || unsafe {
                    (f12.wait_semaphores)(d, &info, *timeout)
                });
                self.check("vkWaitSemaphores", r, bad || chain_invalid(chain, &[]), true)
            }
            Op::Counter { semaphore, null_out } => {
                let (v, bad) = self.resolve_timeline(semaphore);
                let mut value = 0u64;
                let out: *mut u64 = if *null_out { std::ptr::null_mut() } else { &mut value };
                // SAFETY: `out` is NULL or writable.
                let r = unsafe { (f12.get_semaphore_counter_value)(d, vk::Semaphore::from_raw(v), out) };
                self.check("vkGetSemaphoreCounterValue", r, bad || *null_out, true)
            }
            Op::EventCall { event, op } => {
                let (v, bad) = self.resolve(Kind::Event, event, false);
                let e = vk::Event::from_raw(v);
                // SAFETY: any handle value.
                let r = unsafe {
                    match op {
                        0 => (f10.set_event)(d, e),
                        1 => (f10.reset_event)(d, e),
                        _ => (f10.get_event_status)(d, e),
                    }
                };
                self.check("vkSetEvent/vkResetEvent/vkGetEventStatus", r, bad, true)
            }
            Op::Submit {
                queue,
                batches,
                fence,
                null_batches,
            } => self.submit(*queue, batches, fence, *null_batches, &mut st),
            Op::Submit2 {
                queue,
                batches,
                fence,
                null_infos,
            } => self.submit2(*queue, batches, fence, *null_infos),
            Op::Record {
                begin_chain,
                flags,
                cmds,
            } => self.record(begin_chain, *flags, cmds, &mut st),
            Op::AllocateMemory {
                size,
                type_index,
                chain,
            } => {
                let mut info = vk::MemoryAllocateInfo::default()
                    .allocation_size(*size)
                    .memory_type_index(*type_index);
                info.p_next = self.build_chain(chain, &mut st);
                let mut out = vk::DeviceMemory::null();
                // SAFETY: `info` and its chain live in `st` for the call.
                let r = unsafe { (f10.allocate_memory)(d, &info, std::ptr::null(), &mut out) };
                if r == vk::Result::SUCCESS && out != vk::DeviceMemory::null() {
                    self.memories.push(out);
                }
                self.check("vkAllocateMemory", r, *size == 0, true)
            }
            Op::FreeMemory(h) => {
                let (v, bad) = self.resolve(Kind::Memory, h, true);
                // Memory a buffer is bound to stays (the buffers here would dangle otherwise: not
                // a driver's business).
                if v == self.memories.first().map_or(0, |m| m.as_raw()) {
                    return Ok(());
                }
                // SAFETY: any handle value.
                unsafe { (f10.free_memory)(d, vk::DeviceMemory::from_raw(v), std::ptr::null()) };
                self.forget(Kind::Memory, v);
                self.check("vkFreeMemory", vk::Result::SUCCESS, bad, true)
            }
            Op::MapMemory { memory, offset, size } => {
                let (v, bad) = self.resolve(Kind::Memory, memory, false);
                let mut ptr: *mut c_void = std::ptr::null_mut();
                // SAFETY: `ptr` is writable; nothing is written through the mapping.
                let r = unsafe {
                    (f10.map_memory)(
                        d,
                        vk::DeviceMemory::from_raw(v),
                        *offset,
                        *size,
                        vk::MemoryMapFlags::empty(),
                        &mut ptr,
                    )
                };
                self.check("vkMapMemory", r, bad || *size == 0, true)?;
                if r == vk::Result::SUCCESS {
                    // SAFETY: mapped just now.
                    unsafe { (f10.unmap_memory)(d, vk::DeviceMemory::from_raw(v)) };
                    let _ = self.log().take();
                }
                Ok(())
            }
            Op::UnmapMemory(h) => {
                let (v, bad) = self.resolve(Kind::Memory, h, false);
                // SAFETY: any handle value (unmapping what is not mapped is reported).
                unsafe { (f10.unmap_memory)(d, vk::DeviceMemory::from_raw(v)) };
                self.check("vkUnmapMemory", vk::Result::SUCCESS, bad, false)
            }
            Op::CreateBuffer {
                size,
                usage,
                flags,
                chain,
            } => {
                let mut info = vk::BufferCreateInfo::default()
                    .size(*size)
                    .usage(vk::BufferUsageFlags::from_raw(*usage))
                    .flags(vk::BufferCreateFlags::from_raw(*flags));
                info.p_next = self.build_chain(chain, &mut st);
                let mut out = vk::Buffer::null();
                // SAFETY: `info` and its chain live in `st` for the call.
                let r = unsafe { (f10.create_buffer)(d, &info, std::ptr::null(), &mut out) };
                if r == vk::Result::SUCCESS && out != vk::Buffer::null() {
                    self.buffers.push(out);
                }
                self.check("vkCreateBuffer", r, *size == 0, true)
            }
            Op::DestroyBuffer(h) => {
                let (v, bad) = self.resolve(Kind::Buffer, h, true);
                // SAFETY: any handle value.
                unsafe { (f10.destroy_buffer)(d, vk::Buffer::from_raw(v), std::ptr::null()) };
                self.forget(Kind::Buffer, v);
                self.check("vkDestroyBuffer", vk::Result::SUCCESS, bad, true)
            }
            Op::BindBuffer { buffer, memory, offset } => {
                let (b, bad_b) = self.resolve(Kind::Buffer, buffer, false);
                let (m, bad_m) = self.resolve(Kind::Memory, memory, false);
                // SAFETY: any handle values.
                let r = unsafe {
                    (f10.bind_buffer_memory)(d, vk::Buffer::from_raw(b), vk::DeviceMemory::from_raw(m), *offset)
                };
                self.check("vkBindBufferMemory", r, bad_b || bad_m, true)
            }
            Op::BufferRequirements(h) => {
                let (v, bad) = self.resolve(Kind::Buffer, h, false);
                let mut req = vk::MemoryRequirements::default();
                // SAFETY: `req` is writable.
                unsafe { (f10.get_buffer_memory_requirements)(d, vk::Buffer::from_raw(v), &mut req) };
                self.check("vkGetBufferMemoryRequirements", vk::Result::SUCCESS, bad, true)
            }
            Op::GetFenceFd {
                fence,
                handle_type,
                chain,
            } => {
                let (v, bad) = self.resolve(Kind::Fence, fence, false);
                let mut info = vk::FenceGetFdInfoKHR::default()
                    .fence(vk::Fence::from_raw(v))
                    .handle_type(vk::ExternalFenceHandleTypeFlags::from_raw(*handle_type));
                info.p_next = self.build_chain(chain, &mut st);
                let mut fd: RawFd = -1;
                // SAFETY: `info` lives for the call; `fd` is writable.
                let r = unsafe { (self.fence_fd.fp().get_fence_fd_khr)(d, &info, &mut fd) };
                self.take_exported_fd(r, fd)?;
                self.check("vkGetFenceFdKHR", r, bad, true)
            }
            Op::GetSemaphoreFd {
                semaphore,
                handle_type,
                chain,
            } => {
                let (v, bad) = self.resolve(Kind::Semaphore, semaphore, false);
                let mut info = vk::SemaphoreGetFdInfoKHR::default()
                    .semaphore(vk::Semaphore::from_raw(v))
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::from_raw(*handle_type));
                info.p_next = self.build_chain(chain, &mut st);
                let mut fd: RawFd = -1;
                // SAFETY: as above.
                let r = unsafe { (self.semaphore_fd.fp().get_semaphore_fd_khr)(d, &info, &mut fd) };
                self.take_exported_fd(r, fd)?;
                self.check("vkGetSemaphoreFdKHR", r, bad, true)
            }
            Op::ImportFenceFd {
                fence,
                handle_type,
                flags,
                fd,
                chain,
                wrong_s_type,
            } => {
                let (v, bad) = self.resolve(Kind::Fence, fence, false);
                let (raw, owned, bad_fd) = self.fd_arg(fd);
                let mut info = vk::ImportFenceFdInfoKHR::default()
                    .fence(vk::Fence::from_raw(v))
                    .handle_type(vk::ExternalFenceHandleTypeFlags::from_raw(*handle_type))
                    .flags(vk::FenceImportFlags::from_raw(*flags))
                    .fd(raw);
                info.p_next = self.build_chain(chain, &mut st);
                if *wrong_s_type {
                    info.s_type = vk::StructureType::IMPORT_SEMAPHORE_FD_INFO_KHR;
                }
                // SAFETY: `info` lives for the call; the fd is ours to hand over.
                let r = unsafe { (self.fence_fd.fp().import_fence_fd_khr)(d, &info) };
                self.after_fd_import(r, owned);
                self.check("vkImportFenceFdKHR", r, bad || bad_fd, true)
            }
            Op::ImportSemaphoreFd {
                semaphore,
                handle_type,
                flags,
                fd,
                chain,
                wrong_s_type,
            } => {
                let (v, bad) = self.resolve(Kind::Semaphore, semaphore, false);
                let (raw, owned, bad_fd) = self.fd_arg(fd);
                let mut info = vk::ImportSemaphoreFdInfoKHR::default()
                    .semaphore(vk::Semaphore::from_raw(v))
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::from_raw(*handle_type))
                    .flags(vk::SemaphoreImportFlags::from_raw(*flags))
                    .fd(raw);
                info.p_next = self.build_chain(chain, &mut st);
                if *wrong_s_type {
                    info.s_type = vk::StructureType::IMPORT_FENCE_FD_INFO_KHR;
                }
                // SAFETY: as above.
                let r = unsafe { (self.semaphore_fd.fp().import_semaphore_fd_khr)(d, &info) };
                self.after_fd_import(r, owned);
                self.check("vkImportSemaphoreFdKHR", r, bad || bad_fd, true)
            }
            Op::GetFenceWin32 {
                fence,
                handle_type,
                chain,
            } => {
                let (v, bad) = self.resolve(Kind::Fence, fence, false);
                let mut info = vk::FenceGetWin32HandleInfoKHR::default()
                    .fence(vk::Fence::from_raw(v))
                    .handle_type(vk::ExternalFenceHandleTypeFlags::from_raw(*handle_type));
                info.p_next = self.build_chain(chain, &mut st);
                let mut handle: vk::HANDLE = 0;
                // SAFETY: `info` lives for the call; `handle` is writable.
                let r = unsafe { (self.fence_win32.fp().get_fence_win32_handle_khr)(d, &info, &mut handle) };
                self.take_win32(r, *handle_type, handle)?;
                self.check("vkGetFenceWin32HandleKHR", r, bad, true)
            }
            Op::GetSemaphoreWin32 {
                semaphore,
                handle_type,
                chain,
            } => {
                let (v, bad) = self.resolve(Kind::Semaphore, semaphore, false);
                let mut info = vk::SemaphoreGetWin32HandleInfoKHR::default()
                    .semaphore(vk::Semaphore::from_raw(v))
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::from_raw(*handle_type));
                info.p_next = self.build_chain(chain, &mut st);
                let mut handle: vk::HANDLE = 0;
                // SAFETY: as above.
                let r = unsafe { (self.semaphore_win32.fp().get_semaphore_win32_handle_khr)(d, &info, &mut handle) };
                self.take_win32(r, *handle_type, handle)?;
                self.check("vkGetSemaphoreWin32HandleKHR", r, bad, true)
            }
            Op::ImportFenceWin32 {
                fence,
                handle_type,
                flags,
                handle,
                name,
                chain,
            } => {
                let (v, bad) = self.resolve(Kind::Fence, fence, false);
                let (raw, _keep) = self.handle_arg(handle);
                let name = self.name_units(name).map_or(std::ptr::null(), |n| st.name(n));
                let mut info = vk::ImportFenceWin32HandleInfoKHR::default()
                    .fence(vk::Fence::from_raw(v))
                    .handle_type(vk::ExternalFenceHandleTypeFlags::from_raw(*handle_type))
                    .flags(vk::FenceImportFlags::from_raw(*flags))
                    .handle(raw as vk::HANDLE);
                info.name = name;
                info.p_next = self.build_chain(chain, &mut st);
                let bad = bad || (raw == 0 && name.is_null());
                // SAFETY: `info` and the name live for the call; the import never owns `raw`.
                let r = unsafe { (self.fence_win32.fp().import_fence_win32_handle_khr)(d, &info) };
                self.check("vkImportFenceWin32HandleKHR", r, bad, true)
            }
            Op::ImportSemaphoreWin32 {
                semaphore,
                handle_type,
                flags,
                handle,
                name,
                chain,
            } => {
                let (v, bad) = self.resolve(Kind::Semaphore, semaphore, false);
                let (raw, _keep) = self.handle_arg(handle);
                let name = self.name_units(name).map_or(std::ptr::null(), |n| st.name(n));
                let mut info = vk::ImportSemaphoreWin32HandleInfoKHR::default()
                    .semaphore(vk::Semaphore::from_raw(v))
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::from_raw(*handle_type))
                    .flags(vk::SemaphoreImportFlags::from_raw(*flags))
                    .handle(raw as vk::HANDLE);
                info.name = name;
                info.p_next = self.build_chain(chain, &mut st);
                let bad = bad || (raw == 0 && name.is_null());
                // SAFETY: as above.
                let r = unsafe { (self.semaphore_win32.fp().import_semaphore_win32_handle_khr)(d, &info) };
                self.check("vkImportSemaphoreWin32HandleKHR", r, bad, true)
            }
            Op::ExternalFenceProperties {
                handle_type,
                chain,
                out,
            } => {
                let mut info = vk::PhysicalDeviceExternalFenceInfo::default()
                    .handle_type(vk::ExternalFenceHandleTypeFlags::from_raw(*handle_type));
                info.p_next = self.build_chain(chain, &mut st);
                let mut props = vk::ExternalFenceProperties::default();
                props.p_next = self.build_out_chain(out, &mut st);
                let i = self.inst.instance.fp_v1_1();
                // SAFETY: `info`, `props` and their chains live in `st` for the call.
                unsafe {
                    (i.get_physical_device_external_fence_properties)(self.inst.physical_device, &info, &mut props)
                };
                self.check(
                    "vkGetPhysicalDeviceExternalFenceProperties",
                    vk::Result::SUCCESS,
                    false,
                    false,
                )
            }
            Op::ExternalSemaphoreProperties {
                handle_type,
                chain,
                out,
            } => {
                let mut info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
                    .handle_type(vk::ExternalSemaphoreHandleTypeFlags::from_raw(*handle_type));
                info.p_next = self.build_chain(chain, &mut st);
                let mut props = vk::ExternalSemaphoreProperties::default();
                props.p_next = self.build_out_chain(out, &mut st);
                let i = self.inst.instance.fp_v1_1();
                // SAFETY: as above.
                unsafe {
                    (i.get_physical_device_external_semaphore_properties)(self.inst.physical_device, &info, &mut props)
                };
                self.check(
                    "vkGetPhysicalDeviceExternalSemaphoreProperties",
                    vk::Result::SUCCESS,
                    false,
                    false,
                )
            }
            Op::Properties2(out) => {
                let mut props = vk::PhysicalDeviceProperties2::default();
                props.p_next = self.build_out_chain(out, &mut st);
                // SAFETY: `props` and its chain live in `st` for the call.
                unsafe {
                    (self.inst.instance.fp_v1_1().get_physical_device_properties2)(
                        self.inst.physical_device,
                        &mut props,
                    )
                };
                self.check("vkGetPhysicalDeviceProperties2", vk::Result::SUCCESS, false, false)
            }
            Op::Features2(out) => {
                let mut features = vk::PhysicalDeviceFeatures2::default();
                features.p_next = self.build_out_chain(out, &mut st);
                // SAFETY: as above.
                unsafe {
                    (self.inst.instance.fp_v1_1().get_physical_device_features2)(
                        self.inst.physical_device,
                        &mut features,
                    )
                };
                self.check("vkGetPhysicalDeviceFeatures2", vk::Result::SUCCESS, false, false)
            }
            Op::QueueFamilies2 { count, out } => {
                let mut families: Vec<vk::QueueFamilyProperties2<'_>> = (0..*count)
                    .map(|_| {
                        let mut f = vk::QueueFamilyProperties2::default();
                        f.p_next = self.build_out_chain(out, &mut st);
                        f
                    })
                    .collect();
                let mut n = u32::from(*count);
                let ptr = if *count == 0 {
                    std::ptr::null_mut()
                } else {
                    families.as_mut_ptr()
                };
                // SAFETY: `families` has room for `n` entries (or is NULL).
                unsafe {
                    (self
                        .inst
                        .instance
                        .fp_v1_1()
                        .get_physical_device_queue_family_properties2)(
                        self.inst.physical_device, &mut n, ptr
                    )
                };
                self.check(
                    "vkGetPhysicalDeviceQueueFamilyProperties2",
                    vk::Result::SUCCESS,
                    false,
                    false,
                )
            }
            Op::NullPointer(which) => self.null_pointer(*which),
            Op::CreateDevice {
                queues,
                extensions,
                chain,
            } => self.create_device(queues, extensions, chain, &mut st),
            Op::Messenger {
                call,
                messenger,
                severity,
                types,
                null_callback,
            } => self.messenger_call(*call, messenger, *severity, *types, *null_callback),
            Op::MemoryProperties2(out) => {
                let mut props = vk::PhysicalDeviceMemoryProperties2::default();
                props.p_next = self.build_out_chain(out, &mut st);
                // SAFETY: `props` and its chain live in `st` for the call.
                unsafe {
                    (self.inst.instance.fp_v1_1().get_physical_device_memory_properties2)(
                        self.inst.physical_device,
                        &mut props,
                    )
                };
                self.check(
                    "vkGetPhysicalDeviceMemoryProperties2",
                    vk::Result::SUCCESS,
                    false,
                    false,
                )
            }
        }
    }

    fn messenger_call(
        &mut self,
        call: u8,
        messenger: &H,
        severity: u32,
        types: u32,
        null_callback: bool,
    ) -> Result<(), String> {
        let f = self.inst.debug_utils.fp().clone();
        let instance = self.inst.instance.handle();
        match call {
            0 => {
                let mut info = tether_conformance::context::messenger_info(&self.inst.log)
                    .message_severity(vk::DebugUtilsMessageSeverityFlagsEXT::from_raw(severity))
                    .message_type(vk::DebugUtilsMessageTypeFlagsEXT::from_raw(types));
                if null_callback {
                    info.pfn_user_callback = None;
                }
                let mut out = vk::DebugUtilsMessengerEXT::null();
                // SAFETY: `info` is valid but for its random filters and maybe NULL callback; the
                // log it points to outlives the instance.
                let r = unsafe { (f.create_debug_utils_messenger_ext)(instance, &info, std::ptr::null(), &mut out) };
                if r == vk::Result::SUCCESS && out != vk::DebugUtilsMessengerEXT::null() {
                    self.messengers.push(out);
                }
                self.check("vkCreateDebugUtilsMessengerEXT", r, false, false)
            }
            1 => {
                let (v, bad) = match messenger {
                    H::Live(i) if !self.messengers.is_empty() => {
                        let m = self.messengers.remove(usize::from(*i) % self.messengers.len());
                        self.destroyed_messengers.push(m.as_raw());
                        (m.as_raw(), false)
                    }
                    H::Destroyed(i) if !self.destroyed_messengers.is_empty() => (
                        self.destroyed_messengers[usize::from(*i) % self.destroyed_messengers.len()],
                        true,
                    ),
                    H::Null => (0, false),
                    H::MadeUp(v) => (*v, true),
                    _ => (0xdead, true),
                };
                // SAFETY: any handle value: the driver looks it up.
                unsafe {
                    (f.destroy_debug_utils_messenger_ext)(
                        instance,
                        vk::DebugUtilsMessengerEXT::from_raw(v),
                        std::ptr::null(),
                    )
                };
                self.check("vkDestroyDebugUtilsMessengerEXT", vk::Result::SUCCESS, bad, false)
            }
            _ => {
                let data = vk::DebugUtilsMessengerCallbackDataEXT::default().message(c"tether-fuzz message");
                let ptr: *const vk::DebugUtilsMessengerCallbackDataEXT<'_> =
                    if null_callback { std::ptr::null() } else { &data };
                // SAFETY: `data` is NULL or valid; random severity and type bits.
                unsafe {
                    (f.submit_debug_utils_message_ext)(
                        instance,
                        vk::DebugUtilsMessageSeverityFlagsEXT::from_raw(severity),
                        vk::DebugUtilsMessageTypeFlagsEXT::from_raw(types),
                        ptr,
                    )
                };
                let _ = self.log().take();
                self.check("vkSubmitDebugUtilsMessageEXT", vk::Result::SUCCESS, false, false)
            }
        }
    }

    /// `vkCreateDevice` with random queue requests, extensions and chain; the device (if made)
    /// is destroyed at once.
    fn create_device(
        &mut self,
        queues: &[QueueRequest],
        extensions: &[u8],
        chain: &Chain,
        st: &mut Storage,
    ) -> Result<(), String> {
        let priorities = [1.0f32; 8];
        // (No queue at all is left to the driver: newer specs allow it.)
        let mut bad = false;
        let infos: Vec<vk::DeviceQueueCreateInfo<'_>> = queues
            .iter()
            .map(|q| {
                // (A NULL pQueuePriorities is never read: counted as unreported below.)
                bad |= q.family != 0 || q.count == 0 || q.count > 4;
                let mut info = vk::DeviceQueueCreateInfo::default().queue_family_index(q.family);
                info.queue_count = u32::from(q.count);
                info.p_queue_priorities = if q.null_priorities {
                    std::ptr::null()
                } else {
                    priorities.as_ptr()
                };
                info
            })
            .collect();
        bad |= queues.iter().filter(|q| q.family == 0).count() > 1;
        let names: Vec<*const std::ffi::c_char> = extensions
            .iter()
            .map(|&e| {
                let e = usize::from(e);
                if e >= DEVICE_EXTENSION_CHOICES.len() {
                    std::ptr::null()
                } else {
                    DEVICE_EXTENSION_CHOICES[e].as_ptr()
                }
            })
            .collect();
        bad |= extensions.iter().any(|&e| usize::from(e) >= 4);
        let mut info = vk::DeviceCreateInfo::default();
        info.queue_create_info_count = infos.len() as u32;
        info.p_queue_create_infos = infos.as_ptr();
        info.enabled_extension_count = names.len() as u32;
        info.pp_enabled_extension_names = names.as_ptr();
        info.p_next = self.build_chain(chain, st);
        let mut device = vk::Device::null();
        let i = &self.inst.instance;
        // SAFETY: every array holds the count given (or is NULL on purpose); in process, where
        // nothing but the driver reads them.
        let r = unsafe { (i.fp_v1_0().create_device)(self.inst.physical_device, &info, std::ptr::null(), &mut device) };
        if r == vk::Result::SUCCESS && device != vk::Device::null() {
            // SAFETY: the device just made; nothing else uses it.
            unsafe { ash::Device::load(i.fp_v1_0(), device).destroy_device(None) };
        }
        let loose = chain.loop_to.is_some() || queues.iter().any(|q| q.null_priorities);
        self.check("vkCreateDevice", r, bad || loose, true)
    }

    /// One call with a NULL where the spec requires a structure or an output (never read or
    /// written by a correct driver, so any answer but a crash or a success without a message).
    fn null_pointer(&mut self, which: u8) -> Result<(), String> {
        let d = self.device.handle();
        let f10 = self.device.fp_v1_0().clone();
        let f12 = self.device.fp_v1_2().clone();
        use std::ptr::{null, null_mut};
        let fence = self.fences.first().copied().unwrap_or_default();
        let semaphore = self.semaphores.first().map(|s| s.0).unwrap_or_default();
        let mut out_fd: RawFd = -1;
        let mut out_handle: vk::HANDLE = 0;
        let fd_info = vk::FenceGetFdInfoKHR::default()
            .fence(fence)
            .handle_type(vk::ExternalFenceHandleTypeFlags::OPAQUE_FD);
        let win32_info = vk::SemaphoreGetWin32HandleInfoKHR::default()
            .semaphore(semaphore)
            .handle_type(vk::ExternalSemaphoreHandleTypeFlags::OPAQUE_WIN32);
        // SAFETY: each call gets NULL for exactly one required pointer and valid values otherwise;
        // the driver must notice the NULL before dereferencing it.
        let (what, r) = unsafe {
            match which {
                0 => (
                    "vkCreateFence(pCreateInfo NULL)",
                    (f10.create_fence)(d, null(), null(), &mut vk::Fence::null()),
                ),
                1 => (
                    "vkCreateFence(pFence NULL)",
                    (f10.create_fence)(d, &vk::FenceCreateInfo::default(), null(), null_mut()),
                ),
                2 => (
                    "vkCreateSemaphore(pCreateInfo NULL)",
                    (f10.create_semaphore)(d, null(), null(), &mut vk::Semaphore::null()),
                ),
                3 => (
                    "vkCreateSemaphore(pSemaphore NULL)",
                    (f10.create_semaphore)(d, &vk::SemaphoreCreateInfo::default(), null(), null_mut()),
                ),
                4 => (
                    "vkGetFenceFdKHR(pGetFdInfo NULL)",
                    (self.fence_fd.fp().get_fence_fd_khr)(d, null(), &mut out_fd),
                ),
                5 => (
                    "vkGetFenceFdKHR(pFd NULL)",
                    (self.fence_fd.fp().get_fence_fd_khr)(d, &fd_info, null_mut()),
                ),
                6 => (
                    "vkImportFenceFdKHR(NULL)",
                    (self.fence_fd.fp().import_fence_fd_khr)(d, null()),
                ),
                7 => (
                    "vkImportSemaphoreFdKHR(NULL)",
                    (self.semaphore_fd.fp().import_semaphore_fd_khr)(d, null()),
                ),
                8 => (
                    "vkGetSemaphoreFdKHR(pGetFdInfo NULL)",
                    (self.semaphore_fd.fp().get_semaphore_fd_khr)(d, null(), &mut out_fd),
                ),
                9 => (
                    "vkGetSemaphoreWin32HandleKHR(pGetWin32HandleInfo NULL)",
                    (self.semaphore_win32.fp().get_semaphore_win32_handle_khr)(d, null(), &mut out_handle),
                ),
                10 => (
                    "vkGetSemaphoreWin32HandleKHR(pHandle NULL)",
                    (self.semaphore_win32.fp().get_semaphore_win32_handle_khr)(d, &win32_info, null_mut()),
                ),
                11 => (
                    "vkImportSemaphoreWin32HandleKHR(NULL)",
                    (self.semaphore_win32.fp().import_semaphore_win32_handle_khr)(d, null()),
                ),
                12 => (
                    "vkImportFenceWin32HandleKHR(NULL)",
                    (self.fence_win32.fp().import_fence_win32_handle_khr)(d, null()),
                ),
                13 => (
                    "vkGetFenceWin32HandleKHR(pGetWin32HandleInfo NULL)",
                    (self.fence_win32.fp().get_fence_win32_handle_khr)(d, null(), &mut out_handle),
                ),
                14 => ("vkSignalSemaphore(NULL)", (f12.signal_semaphore)(d, null())),
                15 => ("vkWaitSemaphores(NULL)", (f12.wait_semaphores)(d, null(), 0)),
                16 => (
                    "vkQueueSubmit2(pSubmits NULL, 1)",
                    (self.sync2.fp().queue_submit2_khr)(self.queues[0], 1, null(), vk::Fence::null()),
                ),
                17 => (
                    "vkCreateEvent(pCreateInfo NULL)",
                    (f10.create_event)(d, null(), null(), &mut vk::Event::null()),
                ),
                _ => (
                    "vkAllocateMemory(pAllocateInfo NULL)",
                    (f10.allocate_memory)(d, null(), null(), &mut vk::DeviceMemory::null()),
                ),
            }
        };
        if r == vk::Result::SUCCESS && out_fd >= 0 {
            // SAFETY: a (wrongly) successful export gave an fd; ours to close.
            drop(unsafe { OwnedFd::from_raw_fd(out_fd) });
        }
        self.check(what, r, true, true)
    }

    /// Keeps an fd an export returned (or fails on a nonsense success).
    fn take_exported_fd(&mut self, r: vk::Result, fd: RawFd) -> Result<(), String> {
        if r != vk::Result::SUCCESS {
            return Ok(());
        }
        if fd == -1 {
            return Ok(()); // SYNC_FD: already signaled
        }
        if !tether_conformance::external::is_open(fd) {
            return Err(format!("an fd export succeeded with fd {fd}, which is not open"));
        }
        // SAFETY: a successful export returns a new fd the application owns.
        self.exported.push(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(())
    }

    /// Keeps what a Win32 export returned: an NT handle (fd) or a KMT value.
    fn take_win32(&mut self, r: vk::Result, handle_type: u32, handle: vk::HANDLE) -> Result<(), String> {
        if r != vk::Result::SUCCESS {
            return Ok(());
        }
        if handle_type == 0x4 {
            self.kmt.push(handle as u64);
            return Ok(());
        }
        let Ok(fd) = RawFd::try_from(handle) else {
            return Err(format!("an NT export returned {handle:#x}, not an fd"));
        };
        if !tether_conformance::external::is_open(fd) {
            return Err(format!("an NT export returned fd {fd}, which is not open"));
        }
        // SAFETY: a successful NT export returns a new fd the application owns.
        self.nt.push(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(())
    }

    /// After an fd import: the driver owns the fd on success, the case keeps it otherwise.
    fn after_fd_import(&mut self, r: vk::Result, owned: Option<OwnedFd>) {
        match (r, owned) {
            (vk::Result::SUCCESS, Some(fd)) => {
                let _ = fd.into_raw_fd();
            }
            (_, Some(fd)) => self.exported.push(fd),
            _ => {}
        }
    }

    fn batch_arrays(&self, b: &BatchSpec) -> (Vec<vk::Semaphore>, Vec<u64>, Vec<vk::Semaphore>, Vec<u64>, bool) {
        let mut bad = false;
        let mut waits = Vec::new();
        let mut wait_values = Vec::new();
        for (h, v) in &b.waits {
            let (s, invalid) = self.resolve(Kind::Semaphore, h, false);
            bad |= invalid;
            waits.push(vk::Semaphore::from_raw(s));
            wait_values.push(*v);
        }
        let mut signals = Vec::new();
        let mut signal_values = Vec::new();
        for (h, v) in &b.signals {
            let (s, invalid) = self.resolve(Kind::Semaphore, h, false);
            bad |= invalid;
            signals.push(vk::Semaphore::from_raw(s));
            signal_values.push(*v);
        }
        (waits, wait_values, signals, signal_values, bad)
    }

    fn submit(
        &mut self,
        queue: u8,
        batches: &[BatchSpec],
        fence: &H,
        null_batches: bool,
        st: &mut Storage,
    ) -> Result<(), String> {
        let (f, mut bad) = self.resolve(Kind::Fence, fence, true);
        let mut loose = false;
        let mut keep = Vec::new();
        let mut infos = Vec::new();
        let cbs = [self.command_buffer];
        for b in batches {
            let (waits, wait_values, signals, signal_values, invalid) = self.batch_arrays(b);
            bad |= invalid
                || chain_invalid(
                    &b.chain,
                    &[
                        vk::StructureType::TIMELINE_SEMAPHORE_SUBMIT_INFO,
                        vk::StructureType::D3D12_FENCE_SUBMIT_INFO_KHR,
                    ],
                );
            let stages = vec![vk::PipelineStageFlags::from_raw(b.stages.unwrap_or(0)); waits.len()];
            // A NULL pWaitDstStageMask with waits: the driver never reads stage masks, so it
            // need only survive it (counted as unreported).
            loose |= b.stages.is_none() && !waits.is_empty();
            let mut info = vk::SubmitInfo::default();
            info.wait_semaphore_count = waits.len() as u32;
            info.p_wait_semaphores = waits.as_ptr();
            info.p_wait_dst_stage_mask = if b.stages.is_some() {
                stages.as_ptr()
            } else {
                std::ptr::null()
            };
            info.signal_semaphore_count = signals.len() as u32;
            info.p_signal_semaphores = signals.as_ptr();
            if b.command_buffer {
                info.command_buffer_count = 1;
                info.p_command_buffers = cbs.as_ptr();
            }
            let mut head = self.build_chain(&b.chain, st);
            if b.timeline_values && !b.chain.links.iter().any(|l| matches!(l, Link::TimelineSubmit(..))) {
                let (wp, wn) = st.array(&Arr::Values(wait_values.clone()));
                let (sp, sn) = st.array(&Arr::Values(signal_values.clone()));
                let mut t = vk::TimelineSemaphoreSubmitInfo::default();
                t.wait_semaphore_value_count = wn;
                t.p_wait_semaphore_values = wp;
                t.signal_semaphore_value_count = sn;
                t.p_signal_semaphore_values = sp;
                t.p_next = head;
                head = st.place(t).cast_const().cast();
            }
            info.p_next = head;
            infos.push(info);
            keep.push((waits, stages, signals));
        }
        let ptr = if null_batches { std::ptr::null() } else { infos.as_ptr() };
        let count = if null_batches {
            infos.len().max(1) as u32
        } else {
            infos.len() as u32
        };
        bad |= null_batches;
        // SAFETY: every array lives in `keep`/`st` for the call; the queue is this device's.
        let r = unsafe {
            (self.device.fp_v1_0().queue_submit)(
                self.queues[usize::from(queue % 4)],
                count,
                ptr,
                vk::Fence::from_raw(f),
            )
        };
        self.check("vkQueueSubmit", r, bad || loose, true)
    }

    fn submit2(&mut self, queue: u8, batches: &[BatchSpec], fence: &H, null_infos: bool) -> Result<(), String> {
        let (f, mut bad) = self.resolve(Kind::Fence, fence, true);
        let mut st = Storage::default();
        let mut keep = Vec::new();
        let mut infos = Vec::new();
        for b in batches {
            let (waits, wait_values, signals, signal_values, invalid) = self.batch_arrays(b);
            bad |= invalid || chain_invalid(&b.chain, &[]);
            let stage = vk::PipelineStageFlags2::from_raw(u64::from(b.stages.unwrap_or(0)));
            let w: Vec<vk::SemaphoreSubmitInfo<'_>> = waits
                .iter()
                .zip(&wait_values)
                .map(|(s, v)| {
                    vk::SemaphoreSubmitInfo::default()
                        .semaphore(*s)
                        .value(*v)
                        .stage_mask(stage)
                })
                .collect();
            let s: Vec<vk::SemaphoreSubmitInfo<'_>> = signals
                .iter()
                .zip(&signal_values)
                .map(|(s, v)| {
                    vk::SemaphoreSubmitInfo::default()
                        .semaphore(*s)
                        .value(*v)
                        .stage_mask(stage)
                })
                .collect();
            let c: Vec<vk::CommandBufferSubmitInfo<'_>> = if b.command_buffer {
                vec![vk::CommandBufferSubmitInfo::default().command_buffer(self.command_buffer)]
            } else {
                Vec::new()
            };
            let mut info = vk::SubmitInfo2::default();
            info.wait_semaphore_info_count = w.len() as u32;
            info.p_wait_semaphore_infos = w.as_ptr();
            info.signal_semaphore_info_count = s.len() as u32;
            info.p_signal_semaphore_infos = s.as_ptr();
            info.command_buffer_info_count = c.len() as u32;
            info.p_command_buffer_infos = c.as_ptr();
            info.p_next = self.build_chain(&b.chain, &mut st);
            infos.push(info);
            keep.push((w, s, c));
        }
        let ptr = if null_infos { std::ptr::null() } else { infos.as_ptr() };
        let count = if null_infos {
            infos.len().max(1) as u32
        } else {
            infos.len() as u32
        };
        bad |= null_infos;
        // SAFETY: every array lives in `keep`/`st` for the call; the queue is this device's.
        let r = unsafe {
            (self.sync2.fp().queue_submit2_khr)(self.queues[usize::from(queue % 4)], count, ptr, vk::Fence::from_raw(f))
        };
        self.check("vkQueueSubmit2", r, bad, true)
    }

    fn record(&mut self, begin_chain: &Chain, flags: u32, cmds: &[Cmd], st: &mut Storage) -> Result<(), String> {
        let cb = self.command_buffer;
        let f10 = self.device.fp_v1_0().clone();
        // SAFETY: the case's command buffer, from a pool with the reset flag. (It may be pending:
        // the driver reports that.)
        let r = unsafe { (f10.reset_command_buffer)(cb, vk::CommandBufferResetFlags::empty()) };
        self.check("vkResetCommandBuffer", r, false, false)?;
        let mut begin = vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::from_raw(flags));
        begin.p_next = self.build_chain(begin_chain, st);
        // SAFETY: `begin` and its chain live in `st`.
        let r = unsafe { (f10.begin_command_buffer)(cb, &begin) };
        self.check("vkBeginCommandBuffer", r, false, false)?;
        *self.recording.borrow_mut() = Some(Vec::new());
        for c in cmds {
            match c {
                Cmd::Fill {
                    buffer,
                    offset,
                    size,
                    data,
                } => {
                    let (b, bad) = self.resolve(Kind::Buffer, buffer, false);
                    // SAFETY: a command buffer of this device; any buffer value.
                    unsafe { (f10.cmd_fill_buffer)(cb, vk::Buffer::from_raw(b), *offset, *size, *data) };
                    self.check("vkCmdFillBuffer", vk::Result::SUCCESS, bad, true)?;
                }
                Cmd::Copy {
                    src,
                    dst,
                    regions,
                    null_regions,
                } => {
                    let (s, bad_s) = self.resolve(Kind::Buffer, src, false);
                    let (t, bad_t) = self.resolve(Kind::Buffer, dst, false);
                    let regions: Vec<vk::BufferCopy> = regions
                        .iter()
                        .map(|(a, b, n)| vk::BufferCopy {
                            src_offset: *a,
                            dst_offset: *b,
                            size: *n,
                        })
                        .collect();
                    let null = *null_regions && !regions.is_empty();
                    let ptr = if null { std::ptr::null() } else { regions.as_ptr() };
                    // SAFETY: `regions` holds the count given (or NULL).
                    unsafe {
                        (f10.cmd_copy_buffer)(
                            cb,
                            vk::Buffer::from_raw(s),
                            vk::Buffer::from_raw(t),
                            regions.len() as u32,
                            ptr,
                        )
                    };
                    // (regionCount 0 breaks VUID-vkCmdCopyBuffer-regionCount-arraylength.)
                    let bad = bad_s || bad_t || null || regions.is_empty();
                    self.check("vkCmdCopyBuffer", vk::Result::SUCCESS, bad, true)?;
                }
                Cmd::Update { buffer, offset, len } => {
                    let (b, bad) = self.resolve(Kind::Buffer, buffer, false);
                    let data = vec![0xa5u8; usize::from(*len)];
                    // SAFETY: `data` holds `len` bytes.
                    unsafe {
                        (f10.cmd_update_buffer)(
                            cb,
                            vk::Buffer::from_raw(b),
                            *offset,
                            u64::from(*len),
                            data.as_ptr().cast(),
                        )
                    };
                    self.check("vkCmdUpdateBuffer", vk::Result::SUCCESS, bad || *len == 0, true)?;
                }
                Cmd::Barrier {
                    memory_barriers,
                    null,
                    chain,
                } => {
                    let mut barriers: Vec<vk::MemoryBarrier<'_>> = Vec::new();
                    for _ in 0..*memory_barriers {
                        let mut m = vk::MemoryBarrier::default();
                        m.p_next = self.build_chain(chain, st);
                        barriers.push(m);
                    }
                    let null = *null && !barriers.is_empty();
                    let ptr = if null { std::ptr::null() } else { barriers.as_ptr() };
                    // SAFETY: `barriers` holds the count given (or NULL); the other arrays are empty.
                    unsafe {
                        (f10.cmd_pipeline_barrier)(
                            cb,
                            vk::PipelineStageFlags::ALL_COMMANDS,
                            vk::PipelineStageFlags::ALL_COMMANDS,
                            vk::DependencyFlags::empty(),
                            barriers.len() as u32,
                            ptr,
                            0,
                            std::ptr::null(),
                            0,
                            std::ptr::null(),
                        )
                    };
                    self.check("vkCmdPipelineBarrier", vk::Result::SUCCESS, null, true)?;
                }
                Cmd::Barrier2 {
                    chain,
                    memory_barriers,
                    null,
                } => {
                    let barriers: Vec<vk::MemoryBarrier2<'_>> =
                        (0..*memory_barriers).map(|_| vk::MemoryBarrier2::default()).collect();
                    let null = *null && !barriers.is_empty();
                    let mut dep = vk::DependencyInfo::default();
                    dep.memory_barrier_count = barriers.len() as u32;
                    dep.p_memory_barriers = if null { std::ptr::null() } else { barriers.as_ptr() };
                    dep.p_next = self.build_chain(chain, st);
                    // SAFETY: `dep` and its arrays live for the call.
                    unsafe { (self.sync2.fp().cmd_pipeline_barrier2_khr)(cb, &dep) };
                    self.check("vkCmdPipelineBarrier2", vk::Result::SUCCESS, null, true)?;
                }
                Cmd::SetEvent { event, stage } | Cmd::ResetEvent { event, stage } => {
                    let (e, bad) = self.resolve(Kind::Event, event, false);
                    let stage = vk::PipelineStageFlags::from_raw(*stage);
                    // SAFETY: any event value.
                    unsafe {
                        if matches!(c, Cmd::SetEvent { .. }) {
                            (f10.cmd_set_event)(cb, vk::Event::from_raw(e), stage)
                        } else {
                            (f10.cmd_reset_event)(cb, vk::Event::from_raw(e), stage)
                        }
                    };
                    self.check("vkCmdSetEvent/vkCmdResetEvent", vk::Result::SUCCESS, bad, true)?;
                }
                Cmd::WaitEvents { events, null } => {
                    let resolved: Vec<(u64, bool)> =
                        events.iter().map(|h| self.resolve(Kind::Event, h, false)).collect();
                    let values: Vec<vk::Event> = resolved.iter().map(|r| vk::Event::from_raw(r.0)).collect();
                    let null = *null && !values.is_empty();
                    let ptr = if null { std::ptr::null() } else { values.as_ptr() };
                    let bad = null || resolved.iter().any(|r| r.1) || values.is_empty();
                    // (An empty event list breaks VUID-vkCmdWaitEvents-eventCount-arraylength too,
                    // which the driver need not notice: survived, counted as unreported.)
                    // SAFETY: `values` holds the count given (or NULL).
                    unsafe {
                        (f10.cmd_wait_events)(
                            cb,
                            values.len() as u32,
                            ptr,
                            vk::PipelineStageFlags::ALL_COMMANDS,
                            vk::PipelineStageFlags::ALL_COMMANDS,
                            0,
                            std::ptr::null(),
                            0,
                            std::ptr::null(),
                            0,
                            std::ptr::null(),
                        )
                    };
                    self.check("vkCmdWaitEvents", vk::Result::SUCCESS, bad, true)?;
                }
            }
        }
        // SAFETY: recording began above (or the driver reports that it did not).
        let r = unsafe { (f10.end_command_buffer)(cb) };
        let deferred = self.recording.borrow_mut().take().unwrap_or_default();
        self.check("vkEndCommandBuffer", r, false, false)?;
        if r.as_raw() >= 0 && !deferred.is_empty() {
            return Err(format!(
                "{deferred:?}: certainly invalid commands recorded without a validation message, and vkEndCommandBuffer gave {r:?}"
            ));
        }
        Ok(())
    }

    /// The device still works after the case (a host-only check: queues may be blocked by
    /// waits that were never signaled, which is the application's business), then everything
    /// is destroyed — the device last, without waiting for blocked work (the driver drops it).
    fn finish(mut self) -> Result<(), String> {
        let d = &self.device;
        let ty = &mut vk::SemaphoreTypeCreateInfo::default().semaphore_type(vk::SemaphoreType::TIMELINE);
        // SAFETY: valid calls on a live device.
        let check = unsafe {
            let s = d.create_semaphore(&vk::SemaphoreCreateInfo::default().push_next(ty), None);
            match s {
                Ok(s) => {
                    let signaled = d.signal_semaphore(&vk::SemaphoreSignalInfo::default().semaphore(s).value(5));
                    let value = d.get_semaphore_counter_value(s);
                    d.destroy_semaphore(s, None);
                    match (signaled, value) {
                        (Ok(()), Ok(5)) => Ok(()),
                        other => Err(format!("after the case a new timeline semaphore misbehaves: {other:?}")),
                    }
                }
                Err(e) => Err(format!("after the case vkCreateSemaphore fails: {e}")),
            }
        };
        // SAFETY: every object is this device's and destroyed once; dispatchable ones last.
        unsafe {
            for f in self.fences.drain(..) {
                d.destroy_fence(f, None);
            }
            for (s, _) in self.semaphores.drain(..) {
                d.destroy_semaphore(s, None);
            }
            for e in self.events.drain(..) {
                d.destroy_event(e, None);
            }
            for b in self.buffers.drain(..) {
                d.destroy_buffer(b, None);
            }
            for m in self.memories.drain(..) {
                d.free_memory(m, None);
            }
            d.destroy_command_pool(self.pool, None);
            let _held = tether_conformance::context::device_list_lock();
            d.destroy_device(None);
            for m in self.messengers.drain(..) {
                self.inst.debug_utils.destroy_debug_utils_messenger(m, None);
            }
        }
        let _ = self.route;
        check
    }
}

/// A number that is certainly not an open fd: near the top of the fd table, where nothing
/// allocates (new fds take the lowest free number).
fn closed_fd() -> RawFd {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024)
        .min(1 << 20) as RawFd;
    let n = limit - 7;
    if tether_conformance::external::is_open(n) {
        -3
    } else {
        n
    }
}

fn run_case(route: Route, ops: &[Op]) -> Result<(), String> {
    lock(&STATS).cases += 1;
    let mut world = World::new(route)?;
    for (i, op) in ops.iter().enumerate() {
        CALL.store(i, std::sync::atomic::Ordering::Relaxed);
        if let Some(file) = CALL_FILE.get() {
            // For a crash: which call of the case was running.
            let _ = std::fs::write(file, format!("call {i}: {op:?}\n"));
        }
        let applied = world.apply(op);
        CALL.store(usize::MAX, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = applied {
            let _ = world.finish();
            return Err(format!("call {i}: {e}"));
        }
    }
    world.finish()
}

//! The conformance harness: tests of the tether driver through the public Vulkan API.
//!
//! Every test binary under `tests/` has `harness = false` and calls [`harness::main`], which
//!
//! 1. dispatches `--child-role <name> [args...]` to a child role (a test that needs a second
//!    process re-executes its own binary with a role; see [`harness::child_command`]);
//! 2. otherwise, while the process is still single-threaded, points `VK_DRIVER_FILES` at a
//!    manifest generated next to the test binaries whose `library_path` is the absolute path of the
//!    `libtether_icd.so` cargo built for this profile (see [`harness::Environment`]);
//! 3. runs each [`harness::Test`] once per [`harness::Route`] it supports, as libtest-mimic trials
//!    named `<route>::<test>`.
//!
//! The routes:
//!
//! | route | how the application reaches the driver |
//! |---|---|
//! | `loader` | the Khronos loader (`libvulkan.so.1`) with `VK_DRIVER_FILES`, plus `VK_LAYER_KHRONOS_validation` when installed |
//! | `in_process` | `tether_icd::vk_icdGetInstanceProcAddr` straight from the driver's rlib, no loader at all |
//! | `direct` | the loader with `VK_LUNARG_direct_driver_loading` (exclusive mode) handed our `vk_icdGetInstanceProcAddr` |
//!
//! A route that cannot run here (no loader) is reported as ignored with the reason, never as a
//! pass; with `CI=true` it fails instead.
//!
//! What the trials talk to is the [`harness::Target`], chosen in `main` before anything else
//! (`TETHER_TEST_TARGET`, else the binary's default):
//!
//! | target | what | routes |
//! |---|---|---|
//! | `icd` | the tether ICD with every handle type (every binary's default but `layer_win32`) | all |
//! | `layer-over-fd-icd` | `VK_LAYER_TETHER_win32_sync` over the tether ICD with `TETHER_ICD_HANDLES=fd` (`layer_win32`'s default) | loader |
//! | `layer-over-system` | the layer over the system's driver: the first non-tether device, or the first whose name contains `TETHER_TEST_DEVICE` | loader |
//!
//! Through the layer the harness writes a layer manifest whose `library_path` is the
//! `libtether_layer.so` cargo built next to the test binaries (this crate depends on
//! `tether-layer` for that) and sets `VK_ADD_LAYER_PATH` and `VK_INSTANCE_LAYERS`. The Win32
//! suites (`fence_win32`, `semaphore_win32`, `win32_sharing`) keep their tests in `tests/win32/`,
//! which `layer_win32` includes too: one source for each test. What a target does not support
//! is listed once, with its reason, in [`limits`]; such a case ends ignored with
//! `not supported on <target>: <reason>`, after checking what the target documents instead.
//!
//! The CTS ports of `dEQP-VK.api.external.{fence,semaphore}.*` are written once, in [`cts`],
//! generic over the object kind ([`kind::SyncKind`]: a fence, a binary semaphore) and the handle
//! family ([`cts::Family`]: fd, Win32); each of their binaries adds only its kind's own cases.
//!
//! [`context`] gives tests an instance and a device ([`context::TestDevice`]) that record every
//! debug-utils message and, when dropped, destroy everything and fail the test on any
//! validation error it did not expect. On the loader routes the validation layer runs with
//! synchronization validation on, so the workloads must be free of hazards too.
//!
//! Environment variables:
//!
//! | variable | effect |
//! |---|---|
//! | `CI=true` | a loader route that cannot run, or a missing validation layer, fails instead of skipping |
//! | `TETHER_TEST_TARGET` | `icd`, `layer-over-fd-icd` or `layer-over-system` (see above; the Win32 suites honour it) |
//! | `TETHER_TEST_DEVICE` | on `layer-over-system`: the first device whose name contains this |
//! | `TETHER_ICD_LIB` | the driver library the loader routes load (default: the one cargo built) |
//! | `TETHER_LAYER_LIB` | the layer library the layer targets load (default: the one cargo built) |
//! | `TETHER_TEST_BROKER` | the `tether-broker` the Win32 tests start (default: the one built next to the test binaries) |
//! | `TETHER_VULKAN_LOADER` | the loader library to use instead of `libvulkan.so.1` |
//! | `TETHER_TEST_LOG` | print every debug-utils message as it arrives |
//! | `TETHER_TEST_WATCHDOG_S` | end the binary after this many seconds (default 120; 0: never) |

pub mod context;
pub mod cts;
pub mod external;
pub mod harness;
pub mod json;
pub mod kind;
pub mod limits;
pub mod win32;

pub use context::{Batch, HostBuffer, LONG_NS, Message, MessageLog, Options, SHORT_NS, TestDevice, TestInstance};
pub use harness::{ALL_ROUTES, Environment, IN_PROCESS, LOADER_ROUTES, Route, Test, environment};

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
//! | `TETHER_ICD_LIB` | the driver library the loader routes load (default: the one cargo built) |
//! | `TETHER_VULKAN_LOADER` | the loader library to use instead of `libvulkan.so.1` |
//! | `TETHER_TEST_LOG` | print every debug-utils message as it arrives |
//! | `TETHER_TEST_WATCHDOG_S` | end the binary after this many seconds (default 120; 0: never) |

pub mod context;
pub mod external;
pub mod harness;
pub mod json;
pub mod win32;

pub use context::{Batch, HostBuffer, LONG_NS, Message, MessageLog, Options, SHORT_NS, TestDevice, TestInstance};
pub use harness::{ALL_ROUTES, Environment, IN_PROCESS, LOADER_ROUTES, Route, Test, environment};

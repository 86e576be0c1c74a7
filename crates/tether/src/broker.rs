//! The per-user broker that names and KMT values go through.
//!
//! Drivers start `tether-broker` on demand, finding it through `TETHER_BROKER`, next to
//! themselves or the executable, or on `PATH`. An application that ships as one binary can carry
//! the broker instead: call [`serve_if_requested`] first thing in `main`, and [`ensure`] before
//! the first name or KMT export; when no `tether-broker` binary can be found, [`ensure`] starts
//! the application itself as the broker.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     if let Some(exit) = tether::broker::serve_if_requested() {
//!         return exit; // this process was started as the broker, and has stopped serving
//!     }
//!     match tether::broker::ensure() {
//!         Ok(broker) => println!("broker pid {}: {}", broker.pid, broker.how),
//!         Err(e) => eprintln!("names and KMT values will not work: {e}"),
//!     }
//!     std::process::ExitCode::SUCCESS
//! }
//! ```

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tether_handles::Broker;
use tether_handles::client::{BROKER_ENV, default_socket_dir, find_broker};

use crate::error::{Error, Result};

/// Set in the environment of a process that [`ensure`] starts as the broker.
pub const RUN_AS_BROKER: &str = "TETHER_RUN_AS_BROKER";

/// How long starting the built-in broker may take.
const START_LIMIT: Duration = Duration::from_secs(5);

/// The broker this process talks to.
#[derive(Clone, Debug)]
pub struct BrokerInfo {
    pub pid: u32,
    /// Where it came from, for people.
    pub how: String,
}

/// Serves as the broker, if [`ensure`] started this process for that: returns the broker's exit
/// status once it stops (it detaches a serving copy and returns at once). `None` otherwise.
pub fn serve_if_requested() -> Option<ExitCode> {
    std::env::var_os(RUN_AS_BROKER).map(|_| tether_handles::broker::run())
}

fn broker_error(e: impl std::fmt::Display) -> Error {
    Error::Broker(e.to_string())
}

/// Connects to the running broker, or starts one: the `tether-broker` binary drivers would
/// find, else (unless `TETHER_BROKER` names one) this executable, which must call
/// [`serve_if_requested`] first thing in `main`.
pub fn ensure() -> Result<BrokerInfo> {
    let dir = default_socket_dir();
    if let Some(mut broker) = Broker::connect_existing_at(&dir).map_err(broker_error)? {
        let pid = broker.ping().map_err(broker_error)?;
        return Ok(BrokerInfo {
            pid,
            how: format!("already running, socket in {}", dir.display()),
        });
    }
    let exe = std::env::current_exe().ok();
    match find_broker(exe.as_deref()) {
        Ok(binary) => {
            let mut broker = Broker::connect_with(exe.as_deref()).map_err(broker_error)?;
            let pid = broker.ping().map_err(broker_error)?;
            Ok(BrokerInfo {
                pid,
                how: format!("started {}", binary.display()),
            })
        }
        // The user named a broker: that one or none.
        Err(e) if std::env::var_os(BROKER_ENV).is_some_and(|v| !v.is_empty()) => Err(broker_error(e)),
        Err(not_found) => {
            let exe = exe.ok_or_else(|| broker_error(format!("{not_found}; and this binary cannot find itself")))?;
            start_built_in(&exe, &dir)
                .map_err(|e| broker_error(format!("{not_found}; starting the built-in copy failed: {e}")))?;
            let mut broker = Broker::connect_existing_at(&dir)
                .map_err(broker_error)?
                .ok_or_else(|| broker_error("the built-in broker started but does not answer"))?;
            let pid = broker.ping().map_err(broker_error)?;
            Ok(BrokerInfo {
                pid,
                how: format!(
                    "started the copy built into {} (no tether-broker binary found)",
                    exe.display()
                ),
            })
        }
    }
}

/// Runs `exe --dir dir` as the broker: it detaches the serving broker and exits once it listens.
fn start_built_in(exe: &Path, dir: &Path) -> std::result::Result<(), String> {
    let mut child = Command::new(exe)
        .env(RUN_AS_BROKER, "1")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let deadline = Instant::now() + START_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("it exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("it did not come up within {START_LIMIT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

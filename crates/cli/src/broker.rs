//! Making sure the per-user `tether-broker` runs before the demo or the bench needs names or KMT
//! values, and saying which one it is.
//!
//! The libraries start the broker on demand, looking for the `tether-broker` binary through
//! `TETHER_BROKER`, next to themselves or the executable, then on `PATH`. `cargo build --release`
//! puts it next to `target/release/tether`, but `cargo run --bin tether` builds only the `tether`
//! binary. So this binary carries the broker too (the same code,
//! `tether_handles::broker`): when no `tether-broker` binary can be found, the
//! demo and the bench start `tether` itself as the broker ([`RUN_AS_BROKER`] set in its
//! environment), which then serves exactly as `tether-broker` would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tether_handles::Broker;
use tether_handles::client::{BROKER_ENV, default_socket_dir, find_broker};

/// Set in the environment of a `tether` process that must run as `tether-broker` (with the
/// broker's own arguments). Only the demo and the bench set it, on the process they start.
pub const RUN_AS_BROKER: &str = "TETHER_CLI_RUN_AS_BROKER";

/// How long starting the built-in broker may take.
const START_LIMIT: Duration = Duration::from_secs(5);

/// The broker this run talks to.
pub struct BrokerInfo {
    pub pid: u32,
    /// Where it came from, for people.
    pub how: String,
}

fn exe() -> Option<PathBuf> {
    std::env::current_exe().ok()
}

/// Connects to the running broker, or starts one: the `tether-broker` binary the libraries
/// would find, else (unless `TETHER_BROKER` names one) the copy built into this binary. `Err`
/// says why none could be reached.
pub fn ensure() -> Result<BrokerInfo, String> {
    let dir = default_socket_dir();
    let running = Broker::connect_existing_at(&dir).map_err(|e| e.to_string())?;
    if let Some(mut broker) = running {
        let pid = broker.ping().map_err(|e| e.to_string())?;
        return Ok(BrokerInfo {
            pid,
            how: format!("already running, socket in {}", dir.display()),
        });
    }
    let exe = exe();
    match find_broker(exe.as_deref()) {
        Ok(binary) => {
            let mut broker = Broker::connect_with(exe.as_deref()).map_err(|e| e.to_string())?;
            let pid = broker.ping().map_err(|e| e.to_string())?;
            Ok(BrokerInfo {
                pid,
                how: format!("started {}", binary.display()),
            })
        }
        // The user named a broker: use that one or none.
        Err(e) if std::env::var_os(BROKER_ENV).is_some_and(|v| !v.is_empty()) => Err(e.to_string()),
        Err(not_found) => {
            let exe = exe.ok_or_else(|| format!("{not_found}; and this binary cannot find itself"))?;
            start_built_in(&exe, &dir).map_err(|e| format!("{not_found}; starting the built-in copy failed: {e}"))?;
            let mut broker = Broker::connect_existing_at(&dir)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the built-in broker started but does not answer".to_string())?;
            let pid = broker.ping().map_err(|e| e.to_string())?;
            Ok(BrokerInfo {
                pid,
                how: format!(
                    "started the copy built into {} (no tether-broker binary found; `cargo build --release` builds one)",
                    exe.display()
                ),
            })
        }
    }
}

/// Runs `exe --dir dir` as the broker: it detaches the serving broker and exits once it listens.
fn start_built_in(exe: &Path, dir: &Path) -> Result<(), String> {
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

/// Runs the broker ([`tether_handles::broker`]) with this process's arguments (the broker's
/// own), when [`RUN_AS_BROKER`] is set.
pub fn run_built_in() -> std::process::ExitCode {
    tether_handles::broker::run()
}

//! `tether`: what every Vulkan driver can share (`caps`), two processes sharing a fence and
//! semaphores through Win32 handles (`demo`), and the latency benchmark (`bench`).
//!
//! | module | what lives there |
//! |---|---|
//! | [`vulkan`] | choosing the Vulkan entry: the system loader, or the tether ICD linked in; the device |
//! | [`external`] | exportable fences and semaphores; fd and Win32 (NT, KMT, name) export and import |
//! | [`caps`] | the external fence/semaphore capability queries and their table |
//! | [`demo`] | the two-process demo (parent and `demo-child`) |
//! | [`bench`] | the benchmark: one entry per measurement, each compared to a baseline of the same run |
//! | [`peer`] | child `tether` processes (hidden subcommands) and the pipes to them |
//! | [`stats`] | percentiles |

/// `println!` that does not panic when stdout is closed (`tether caps | head`): the rest of the
/// output is dropped and the command still finishes, so its exit status still reports the work.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod bench;
mod caps;
mod demo;
mod external;
mod peer;
mod stats;
mod vulkan;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Vulkan external fences and semaphores, on any machine"
)]
struct Cli {
    #[command(flatten)]
    entry: EntryArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct EntryArgs {
    /// Use the tether ICD linked into this binary, even when a Vulkan loader is installed.
    #[arg(long, global = true, conflicts_with = "loader")]
    embedded: bool,
    /// Use the system Vulkan loader (libvulkan.so.1); fail if there is none.
    #[arg(long, global = true)]
    loader: bool,
    /// Work on the first physical device whose name contains NAME (e.g. NVIDIA, with
    /// VK_LAYER_TETHER_win32_sync enabled) instead of the tether device.
    #[arg(long, global = true, value_name = "NAME")]
    device: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Print, for every physical device, which external fence and semaphore handle types it can
    /// export and import.
    Caps,
    /// Share a fence, a binary and a timeline semaphore with a child process through Win32
    /// handles (inherited NT handles, names, KMT values), ping-pong through them and check every
    /// value.
    Demo(demo::DemoArgs),
    /// Measure wake-up, export and import latencies, each next to a baseline of the same run.
    Bench(bench::BenchArgs),
    /// The demo's child process (started by `tether demo`).
    #[command(hide = true)]
    DemoChild(demo::ChildArgs),
    /// A benchmark's child process (started by `tether bench`).
    #[command(hide = true)]
    BenchChild(bench::ChildArgs),
}

fn main() -> ExitCode {
    // Started as the broker: `cargo run --bin tether` builds no tether-broker binary, so when
    // none can be found the demo and the bench start this binary as one (tether::broker).
    if let Some(exit) = tether::broker::serve_if_requested() {
        return exit;
    }
    // Before anything else, while this is the only thread: make the tether ICD of this checkout
    // visible to the loader.
    vulkan::expose_tether_icd();
    let cli = Cli::parse();
    if let Some(name) = &cli.entry.device {
        // SAFETY: still the only thread (see above); child processes inherit the choice.
        unsafe { std::env::set_var(vulkan::DEVICE_ENV, name) };
    }
    let choice = match (cli.entry.embedded, cli.entry.loader) {
        (true, _) => vulkan::Choice::Embedded,
        (_, true) => vulkan::Choice::Loader,
        _ => vulkan::Choice::Auto,
    };
    let result = match cli.command {
        Command::Caps => caps::run(choice),
        Command::Demo(args) => demo::run(choice, &args),
        Command::Bench(args) => bench::run(choice, &args),
        Command::DemoChild(args) => demo::run_child(choice, &args),
        Command::BenchChild(args) => bench::run_child(choice, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}

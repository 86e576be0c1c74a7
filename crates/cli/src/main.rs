//! `tether`: what every Vulkan driver can share (`caps`), a producer/consumer run on the tether
//! device (`demo`), and the latency benchmark (`bench`).
//!
//! | module | what lives there |
//! |---|---|
//! | [`vulkan`] | choosing the Vulkan entry: the system loader, or the tether ICD linked in |
//! | [`caps`] | the external fence/semaphore capability queries and their table |
//! | [`demo`] | the producer/consumer demo |
//! | [`bench`] | the benchmark: one entry per measurement, compared to a raw futex baseline |
//! | [`stats`] | percentiles |
//! | [`table`] | plain-text tables |

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
mod stats;
mod table;
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
}

#[derive(Subcommand)]
enum Command {
    /// Print, for every physical device, which external fence and semaphore handle types it can
    /// export and import.
    Caps,
    /// Run a producer/consumer exchange between two queues of the tether device and check every
    /// value.
    Demo(demo::DemoArgs),
    /// Measure wake-up latencies and compare them with a raw futex ping-pong.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    // Before anything else, while this is the only thread: make the tether ICD of this checkout
    // visible to the loader.
    vulkan::expose_tether_icd();
    let cli = Cli::parse();
    let choice = match (cli.entry.embedded, cli.entry.loader) {
        (true, _) => vulkan::Choice::Embedded,
        (_, true) => vulkan::Choice::Loader,
        _ => vulkan::Choice::Auto,
    };
    let result = match cli.command {
        Command::Caps => caps::run(choice),
        Command::Demo(args) => demo::run(choice, &args),
        Command::Bench(args) => bench::run(choice, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}

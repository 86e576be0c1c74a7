//! `tether-broker`: the per-user daemon for names and KMT values; see [`tether_handles::broker`].

fn main() -> std::process::ExitCode {
    tether_handles::broker::run()
}

//! `tether demo` and `tether bench` end to end, with their child processes, on the tether ICD
//! linked into the binary (no loader needed).

use std::process::Command;

fn tether(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("--embedded")
        .args(args)
        .output()
        .expect("running tether");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_shares_with_a_child_process() {
    let (ok, stdout, stderr) = tether(&["demo", "--rounds", "50"]);
    assert!(ok, "tether demo failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("1. NT handles, inherited"), "{stdout}");
    assert!(stdout.contains("OK: "), "{stdout}");
    assert!(
        !stdout.contains("MISMATCH") && !stderr.contains("MISMATCH"),
        "{stdout}\n{stderr}"
    );
    if stdout.contains("SKIPPED") {
        // No broker could start here: that is said, not silently passed.
        assert!(stdout.contains("(NT handles only)"), "{stdout}");
    } else {
        assert!(stdout.contains("2. names: Local\\tether-demo-"), "{stdout}");
        assert!(stdout.contains("3. KMT values: timeline 0x"), "{stdout}");
    }
}

#[test]
fn demo_child_refuses_bad_handles() {
    // A child given a handle that is not open fails (and says so) instead of hanging.
    let (ok, _, stderr) = tether(&["demo-child", "--rounds", "1", "--nt", "1000,1001,1002"]);
    assert!(!ok);
    assert!(stderr.contains("importing by nt"), "{stderr}");
}

#[test]
fn bench_json_lines() {
    // `--quick`: every measurement, at smoke-test scale.
    let (ok, stdout, stderr) = tether(&["bench", "--quick", "--json"]);
    assert!(ok, "tether bench failed\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 26, "{stdout}");
    for line in &lines {
        assert!(line.starts_with("{\"name\":\"") && line.ends_with('}'), "{line}");
        for key in ["\"p50_ns\":", "\"p99_ns\":", "\"baseline\":\"", "\"ratio\":"] {
            assert!(line.contains(key), "{line} lacks {key}");
        }
    }
    let line_of = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{{\"name\":\"{name}\"")))
            .unwrap_or_else(|| panic!("{name} missing:\n{stdout}"))
    };
    for name in [
        "futex_pingpong_xproc",
        "timeline_xproc_nt",
        "timeline_xproc_fd",
        "binary_xproc_submit",
        "fence_submit_wait_worker",
        "fence_wait_any_1024",
        "fence_wait_any_1024_private",
        "export_semaphore_win32_nt",
        "import_opaque_fd_first",
        "import_win32_nt_repeat",
    ] {
        line_of(name);
    }
    // The measurements that report values beside their latencies.
    for (name, keys) in [
        (
            "fence_wait_any_1024_blocked",
            &["\"cpu_percent_blocked\":", "\"cpu_percent_call\":"][..],
        ),
        (
            "timeline_10000_xproc",
            &[
                "\"semaphores\":1000,",
                "\"shared_b\":",
                "\"private_b\":",
                "\"child_private_b\":",
            ][..],
        ),
        ("wake_256_waiters", &["\"woken\":64,", "\"of\":64,", "\"p99_ms\":"][..]),
    ] {
        let line = line_of(name);
        for key in keys {
            assert!(line.contains(key), "{line} lacks {key}");
        }
    }
}

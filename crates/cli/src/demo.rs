//! `tether demo`: two processes share a fence, a binary semaphore and a timeline semaphore of the
//! tether device through Win32 handles, three ways, and ping-pong through them.
//!
//! The parent creates the three objects exportable, once per sharing method:
//!
//! 1. **NT handles, inherited**: exported with `SECURITY_ATTRIBUTES::bInheritHandle = TRUE`, so
//!    the fds have no close-on-exec; the child (a re-exec of this binary, `tether demo-child`)
//!    gets their numbers on its command line, imports them and closes them.
//! 2. **Names**: created with `VkExport*Win32HandleInfoKHR::name` (`Local\tether-demo-<pid>-…`),
//!    registered with the broker by their first NT export; the child imports them by name.
//! 3. **KMT values**: exported as `OPAQUE_WIN32_KMT`; the child imports the numbers.
//!
//! Names and KMT values need `tether-broker`; when it cannot start, the demo still runs the NT
//! handles and says why the rest was skipped (exit status 1 only with `--require-broker`).
//!
//! Each round `n` works on timeline values `v = 5n + 1 ..= 5n + 5`:
//!
//! | step | parent | child |
//! |---|---|---|
//! | 1 | `vkSignalSemaphore(v+1)` | |
//! | 2 | | waits for `v+1`; submits: wait binary (not in round 0), signal binary and `v+2` |
//! | 3 | waits for `v+2`; submits: wait binary, signal binary (not in the last round), `v+3` and the fence | `vkWaitForFences` |
//! | 4 | `vkWaitForFences`, `vkSignalSemaphore(v+4)` | |
//! | 5 | | waits for `v+4`; `vkResetFences`; `vkSignalSemaphore(v+5)` |
//! | 6 | waits for `v+5`; the fence reads unsignaled again | |
//!
//! Every counter value (`vkGetSemaphoreCounterValue`) and fence status is checked on both sides;
//! any mismatch makes the demo exit non-zero.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use clap::Args;
use tether::{
    ExportOptions, ExternalFence, ExternalSemaphore, HandleType, Import, KmtHandle, NtHandle, Shareable, Submission,
};

use crate::peer::{ParentLink, Peer, parse_numbers, pin_to};
use crate::stats::{Summary, human, nanos};
use crate::vulkan::{self, Choice, TetherDevice};

#[derive(Args)]
pub struct DemoArgs {
    /// Ping-pong rounds per sharing method.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Exit non-zero when names and KMT values are skipped because tether-broker cannot start.
    #[arg(long)]
    require_broker: bool,
    /// Run both processes, their queue workers included, on this one CPU: on a virtual machine
    /// a wake-up of an idle CPU can cost tens of µs, which then dominates the latencies.
    #[arg(long, value_name = "CPU")]
    pin: Option<usize>,
}

/// The child's arguments (`tether demo-child`, started by the demo).
#[derive(Args)]
pub struct ChildArgs {
    #[arg(long)]
    rounds: u32,
    /// Inherited NT handles: TIMELINE,BINARY,FENCE.
    #[arg(long)]
    nt: Option<String>,
    /// Object names: PREFIX-timeline, PREFIX-binary, PREFIX-fence.
    #[arg(long, value_name = "PREFIX")]
    name: Option<String>,
    /// KMT values: TIMELINE,BINARY,FENCE.
    #[arg(long)]
    kmt: Option<String>,
}

/// How long any single wait may take before the demo calls it a failure.
const WAIT_LIMIT: Duration = Duration::from_secs(5);
/// The parent's waits return this often to check the child is still alive.
const WAIT_SLICE: Duration = Duration::from_millis(200);
/// Timeline values per round.
const STRIDE: u64 = 5;

/// The three ways of sharing, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Nt,
    Name,
    Kmt,
}

impl Method {
    fn key(self) -> &'static str {
        match self {
            Method::Nt => "nt",
            Method::Name => "name",
            Method::Kmt => "kmt",
        }
    }

    fn handle_type(self) -> HandleType {
        match self {
            Method::Nt | Method::Name => HandleType::OpaqueWin32,
            Method::Kmt => HandleType::OpaqueWin32Kmt,
        }
    }
}

/// A `tether` error as the demo's error text.
fn text(e: tether::Error) -> String {
    e.to_string()
}

/// The object names for a prefix.
fn names(prefix: &str) -> [String; 3] {
    [
        format!("{prefix}-timeline"),
        format!("{prefix}-binary"),
        format!("{prefix}-fence"),
    ]
}

/// One process's timeline, binary semaphore and fence for one method (destroyed on drop).
struct Objects {
    timeline: ExternalSemaphore,
    binary: ExternalSemaphore,
    fence: ExternalFence,
}

/// Checks and their failures, in one process.
#[derive(Default)]
struct Report {
    checked: u64,
    mismatches: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            let what = what();
            if self.mismatches.len() < 10 {
                eprintln!("MISMATCH: {what}");
            }
            self.mismatches.push(what);
        }
    }
}

fn latency_line(samples: &mut [u64]) -> String {
    match Summary::of(samples) {
        Some(s) => format!("p50 {}, p90 {}, p99 {}", human(s.p50), human(s.p90), human(s.p99)),
        None => "no samples".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// What the parent created and exported for one method.
struct Prepared {
    method: Method,
    objects: Objects,
    /// The child's argument for it.
    arg: String,
    /// One line about what was passed.
    passed: String,
    /// Inherited NT handles, closed once the child runs.
    handles: Vec<NtHandle>,
}

/// Creates the three objects exportable for `method` and exports them for the child.
fn prepare(td: &TetherDevice, method: Method) -> Result<Prepared, String> {
    let prefix = format!("Local\\tether-demo-{}", std::process::id());
    let t = method.handle_type();
    let object_names = names(&prefix);
    let options = |i: usize| -> Result<ExportOptions, String> {
        let options = ExportOptions::new(t);
        Ok(match method {
            Method::Nt => options.inheritable(true),
            Method::Name => options.name(object_names[i].parse().map_err(|e| format!("{e}"))?),
            Method::Kmt => options,
        })
    };
    let objects = Objects {
        timeline: ExternalSemaphore::timeline(&td.shared, 0, &options(0)?).map_err(text)?,
        binary: ExternalSemaphore::binary(&td.shared, &options(1)?).map_err(text)?,
        fence: ExternalFence::new(&td.shared, &options(2)?).map_err(text)?,
    };
    let (arg, passed, handles) = match method {
        Method::Nt => {
            let handles = vec![
                objects.timeline.export_nt_handle(t).map_err(text)?,
                objects.binary.export_nt_handle(t).map_err(text)?,
                objects.fence.export_nt_handle(t).map_err(text)?,
            ];
            for h in &handles {
                if !h.is_inheritable().map_err(|e| format!("F_GETFD: {e}"))? {
                    return Err(format!(
                        "NT handle {} was exported with bInheritHandle=TRUE but has close-on-exec",
                        h.as_raw_handle()
                    ));
                }
            }
            let [t, b, f] = [0, 1, 2].map(|i| handles[i].as_raw_handle());
            let passed = format!(
                "exported with bInheritHandle=TRUE (no close-on-exec): timeline fd {t}, binary fd {b}, fence fd {f}, \
                 numbers passed on the child's command line"
            );
            (format!("{t},{b},{f}"), passed, handles)
        }
        Method::Name => {
            // The first NT export registers the name; the handle itself is not needed.
            drop(objects.timeline.export_nt_handle(t).map_err(text)?);
            drop(objects.binary.export_nt_handle(t).map_err(text)?);
            drop(objects.fence.export_nt_handle(t).map_err(text)?);
            let [t, b, f] = object_names;
            let passed = format!("{t}, {b}, {f} (UTF-16, registered with the broker by the first NT export)");
            (prefix.clone(), passed, Vec::new())
        }
        Method::Kmt => {
            let t = objects.timeline.export_kmt().map_err(text)?;
            let b = objects.binary.export_kmt().map_err(text)?;
            let f = objects.fence.export_kmt().map_err(text)?;
            let passed = format!("timeline {t}, binary {b}, fence {f} (global values: nothing to inherit or close)");
            (format!("{t},{b},{f}"), passed, Vec::new())
        }
    };
    Ok(Prepared {
        method,
        objects,
        arg,
        passed,
        handles,
    })
}

/// Waits in slices, checking between them that the child is still alive.
fn wait_alive(
    peer: &mut Peer,
    what: &str,
    mut attempt: impl FnMut(Duration) -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if attempt(WAIT_SLICE)? {
            return Ok(());
        }
        if let Some(status) = peer.exited() {
            return Err(format!("{what}: the child process exited ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not reached within {WAIT_LIMIT:?}"));
        }
    }
}

/// Latencies of one method's rounds, measured in the parent.
struct Latencies {
    /// Host signal of `v+1` until the child's queue signal of `v+2` is seen.
    answer: Vec<u64>,
    /// The whole round, `v+1` to `v+5`.
    round: Vec<u64>,
}

/// The parent's side of one method's rounds.
fn parent_rounds(
    td: &TetherDevice,
    o: &Objects,
    rounds: u64,
    peer: &mut Peer,
    report: &mut Report,
) -> Result<Latencies, String> {
    let mut lat = Latencies {
        answer: Vec::with_capacity(rounds as usize),
        round: Vec::with_capacity(rounds as usize),
    };
    for n in 0..rounds {
        let v = STRIDE * n;
        let start = Instant::now();
        o.timeline.signal(v + 1).map_err(text)?;
        wait_alive(peer, &format!("round {n}: timeline value {}", v + 2), |t| {
            o.timeline.wait(v + 2, t).map_err(text)
        })?;
        lat.answer.push(nanos(start.elapsed()));
        let value = o.timeline.value().map_err(text)?;
        report.check(value == v + 2, || {
            format!("round {n}: parent reads {value}, expected {}", v + 2)
        });

        let mut signals = vec![(&o.timeline, v + 3)];
        if n + 1 < rounds {
            signals.push((&o.binary, 0));
        }
        let batch = Submission {
            waits: &[(&o.binary, 0)],
            signals: &signals,
            fence: Some(&o.fence),
        };
        // SAFETY: the child signaled the binary semaphore in its batch of this round (whose v+2
        // was seen) and waits on it before signaling it again; v+3 is above every value signaled
        // so far; the child reset the fence last round (v+5 was seen); the objects live until
        // the rounds end, and the parent waits for the fence and v+5, so nothing is pending then.
        unsafe { td.shared.submit(0, &batch) }.map_err(text)?;
        wait_alive(peer, &format!("round {n}: the fence"), |t| {
            o.fence.wait(t).map_err(text)
        })?;
        let signaled = o.fence.is_signaled().map_err(text)?;
        report.check(signaled, || {
            format!("round {n}: vkGetFenceStatus in the parent says unsignaled after the wait")
        });
        wait_alive(peer, &format!("round {n}: timeline value {}", v + 3), |t| {
            o.timeline.wait(v + 3, t).map_err(text)
        })?;
        let value = o.timeline.value().map_err(text)?;
        report.check(value == v + 3, || {
            format!("round {n}: parent reads {value}, expected {}", v + 3)
        });

        o.timeline.signal(v + 4).map_err(text)?;
        wait_alive(peer, &format!("round {n}: timeline value {}", v + 5), |t| {
            o.timeline.wait(v + 5, t).map_err(text)
        })?;
        lat.round.push(nanos(start.elapsed()));
        let value = o.timeline.value().map_err(text)?;
        report.check(value == v + 5, || {
            format!("round {n}: parent reads {value}, expected {}", v + 5)
        });
        let signaled = o.fence.is_signaled().map_err(text)?;
        report.check(!signaled, || {
            format!("round {n}: the fence still reads signaled in the parent after the child reset it")
        });
    }
    Ok(lat)
}

pub fn run(choice: Choice, args: &DemoArgs) -> Result<(), String> {
    if let Some(cpu) = args.pin {
        // Before the device and the child exist, so its queue workers and the child inherit it.
        pin_to(cpu)?;
    }
    let td = TetherDevice::open(choice)?;
    say!(
        "tether demo: Vulkan from {}; {}",
        td.vulkan.describe(),
        args.pin
            .map_or("unpinned".to_string(), |c| format!("both processes on CPU {c}"))
    );
    if !td.has_win32() {
        return Err("the tether device offers no Win32 handle types here (is TETHER_ICD_HANDLES=fd set?)".to_string());
    }
    say!(
        "two processes share a fence, a binary semaphore and a timeline semaphore of the device \"{}\" through \
         Win32 handles, three ways",
        td.name
    );
    let broker = tether::broker::ensure();
    let mut methods = vec![Method::Nt];
    match &broker {
        Ok(b) => {
            say!("broker: tether-broker pid {}, {}", b.pid, b.how);
            methods.extend([Method::Name, Method::Kmt]);
        }
        Err(why) => say!("broker: SKIPPING names and KMT values (only NT handles are shared): {why}"),
    }

    let mut prepared = Vec::new();
    for &m in &methods {
        match prepare(&td, m) {
            Ok(p) => prepared.push(p),
            Err(e) => return Err(format!("{m:?}: {e}")),
        }
    }
    let rounds = u64::from(args.rounds);
    let mut child_args: Vec<OsString> = vec!["demo-child".into(), "--rounds".into(), rounds.to_string().into()];
    for p in &prepared {
        child_args.push(format!("--{}", p.method.key()).into());
        child_args.push(p.arg.clone().into());
    }
    let spawned = Peer::spawn(td.vulkan.source, &child_args);
    // The child has its inherited copies now (or never will): close ours.
    for p in &mut prepared {
        p.handles.clear();
    }
    let mut peer = spawned?;
    say!("child process: pid {}, `{}`", peer.pid(), peer.command_line());
    say!(
        "each round n, on timeline values v+1..=v+5 (v = 5n):\n\
         \x20 parent: vkSignalSemaphore(v+1)\n\
         \x20 child:  waits for v+1; vkQueueSubmit: wait binary (from the last round), signal binary and v+2\n\
         \x20 parent: waits for v+2; vkQueueSubmit: wait binary, signal binary, v+3 and the fence\n\
         \x20 both:   vkWaitForFences on the fence\n\
         \x20 parent: vkSignalSemaphore(v+4)\n\
         \x20 child:  waits for v+4; vkResetFences; vkSignalSemaphore(v+5)\n\
         \x20 parent: waits for v+5; the fence reads unsignaled again\n\
         \x20 every counter value and fence status is checked in both processes"
    );

    let mut report = Report::default();
    for (i, p) in prepared.iter().enumerate() {
        let title = match p.method {
            Method::Nt => "NT handles, inherited",
            Method::Name => "names",
            Method::Kmt => "KMT values",
        };
        say!("\n{}. {title}: {}", i + 1, p.passed);
        let started = Instant::now();
        match parent_rounds(&td, &p.objects, rounds, &mut peer, &mut report) {
            Ok(mut lat) => {
                say!(
                    "   {rounds} rounds in {:.2} s: timeline values 1..={}, {rounds} binary hand-offs, {rounds} fence \
                     signal/wait/reset",
                    started.elapsed().as_secs_f64(),
                    STRIDE * rounds
                );
                say!(
                    "   parent signals v+1 -> child's queue signals v+2: {}",
                    latency_line(&mut lat.answer)
                );
                say!(
                    "   whole round (5 hand-offs):                     {}",
                    latency_line(&mut lat.round)
                );
            }
            Err(e) => {
                // Work may be pending on values that will never come: leave without tearing
                // the device down (the child is killed with `peer`).
                eprintln!("tether: {:?}: {e}", p.method);
                drop(peer);
                std::process::exit(1);
            }
        }
    }

    let child_said = peer.finish();
    drop(prepared);
    drop(td);
    let child_said = child_said?;
    let mut child_checks = 0u64;
    let mut child_mismatches = 0u64;
    for line in child_said.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("checked") {
            child_checks += words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            child_mismatches += words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        }
    }

    say!();
    let skipped = broker.as_ref().err();
    if let Some(why) = skipped {
        say!("SKIPPED: names and KMT values (no broker: {why})");
    }
    if !report.mismatches.is_empty() || child_mismatches > 0 {
        return Err(format!(
            "{} of {} checks failed in the parent, {child_mismatches} of {child_checks} in the child{}",
            report.mismatches.len(),
            report.checked,
            report
                .mismatches
                .first()
                .map_or(String::new(), |m| format!(" (first in the parent: {m})"))
        ));
    }
    say!(
        "OK: {} checks in the parent, {child_checks} in the child, no mismatch{}",
        report.checked,
        if skipped.is_some() { " (NT handles only)" } else { "" }
    );
    if skipped.is_some() && args.require_broker {
        return Err("--require-broker: names and KMT values were skipped".to_string());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The child.

/// Imports one method's objects into new objects of this process.
fn import(td: &TetherDevice, method: Method, arg: &str) -> Result<Objects, String> {
    let none = ExportOptions::default();
    let mut o = Objects {
        timeline: ExternalSemaphore::timeline(&td.shared, 0, &none).map_err(text)?,
        binary: ExternalSemaphore::binary(&td.shared, &none).map_err(text)?,
        fence: ExternalFence::new(&td.shared, &none).map_err(text)?,
    };
    let t = method.handle_type();
    let permanent = Import::Permanent;
    match method {
        Method::Nt => {
            let owned = |v: i64| -> Result<NtHandle, String> {
                let raw = v as isize;
                // SAFETY: only checked here, not kept: whether the number is an open fd.
                let open = unsafe { tether::BorrowedHandle::borrow_raw(raw) }.is_some_and(|h| h.is_open());
                if !open {
                    return Err(format!("handle {raw} is not open in this process"));
                }
                // SAFETY: an open fd inherited from the parent for this process to own; nothing
                // else uses the number. The imports keep their own duplicates; this closes on drop.
                Ok(unsafe { NtHandle::from_raw_handle(raw) })
            };
            let [tl, b, f] = parse_numbers::<3>(arg)?;
            let [tl, b, f] = [owned(tl)?, owned(b)?, owned(f)?];
            o.timeline
                .import_nt_handle(t, tl.as_handle(), permanent)
                .map_err(text)?;
            o.binary.import_nt_handle(t, b.as_handle(), permanent).map_err(text)?;
            o.fence.import_nt_handle(t, f.as_handle(), permanent).map_err(text)?;
        }
        Method::Kmt => {
            let [tl, b, f] = parse_numbers::<3>(arg)?.map(|v| KmtHandle::new(v as u32));
            let kmt = |k: Option<KmtHandle>| k.ok_or_else(|| format!("{arg}: a KMT value is zero"));
            o.timeline.import_kmt(kmt(tl)?, permanent).map_err(text)?;
            o.binary.import_kmt(kmt(b)?, permanent).map_err(text)?;
            o.fence.import_kmt(kmt(f)?, permanent).map_err(text)?;
        }
        Method::Name => {
            let [tl, b, f] = names(arg).map(|n| n.parse::<tether::ObjectName>().map_err(|e| format!("{n}: {e}")));
            o.timeline.import_name(t, &tl?, permanent).map_err(text)?;
            o.binary.import_name(t, &b?, permanent).map_err(text)?;
            o.fence.import_name(t, &f?, permanent).map_err(text)?;
        }
    }
    Ok(o)
}

fn child_wait(n: u64, value: u64, o: &Objects) -> Result<(), String> {
    if o.timeline.wait(value, WAIT_LIMIT).map_err(text)? {
        Ok(())
    } else {
        Err(format!(
            "round {n}: timeline value {value} not reached within {WAIT_LIMIT:?}"
        ))
    }
}

/// The child's side of one method's rounds.
fn child_rounds(td: &TetherDevice, o: &mut Objects, rounds: u64, report: &mut Report) -> Result<(), String> {
    let queue = td.shared.queue_count() - 1;
    for n in 0..rounds {
        let v = STRIDE * n;
        child_wait(n, v + 1, o)?;
        let value = o.timeline.value().map_err(text)?;
        report.check(value == v + 1, || {
            format!("round {n}: child reads {value}, expected {}", v + 1)
        });
        let waits = [(&o.binary, 0)];
        let batch = Submission {
            waits: if n == 0 { &[] } else { &waits },
            signals: &[(&o.binary, 0), (&o.timeline, v + 2)],
            fence: None,
        };
        // SAFETY: the binary semaphore was signaled by the parent's batch of the last round
        // (whose fence was seen) and is unsignaled once this batch waits on it; v+2 is above
        // every value signaled so far; the parent waits for v+2 before going on, and this
        // process waits for the fence (signaled after v+2) before the next round or the end.
        unsafe { td.shared.submit(queue, &batch) }.map_err(text)?;
        if !o.fence.wait(WAIT_LIMIT).map_err(text)? {
            return Err(format!("round {n}: the fence was not signaled within {WAIT_LIMIT:?}"));
        }
        let signaled = o.fence.is_signaled().map_err(text)?;
        report.check(signaled, || {
            format!("round {n}: vkGetFenceStatus in the child says unsignaled after the wait")
        });
        child_wait(n, v + 4, o)?;
        let value = o.timeline.value().map_err(text)?;
        report.check(value == v + 4, || {
            format!("round {n}: child reads {value}, expected {}", v + 4)
        });
        o.fence.reset().map_err(text)?;
        let signaled = o.fence.is_signaled().map_err(text)?;
        report.check(!signaled, || {
            format!("round {n}: the fence reads signaled in the child right after vkResetFences")
        });
        o.timeline.signal(v + 5).map_err(text)?;
        // The parent may already have signaled the next round's first value.
        let value = o.timeline.value().map_err(text)?;
        report.check(value == v + 5 || value == v + 6, || {
            format!("round {n}: child reads {value} after signaling {}", v + 5)
        });
    }
    Ok(())
}

/// `tether demo-child`: imports what the parent shared and plays its side of every method.
/// Reports `checked <checks> <mismatches>` per method on stdout.
pub fn run_child(choice: Choice, args: &ChildArgs) -> Result<(), String> {
    vulkan::set_notices_to_stderr();
    let td = TetherDevice::open(choice)?;
    let given = [
        (Method::Nt, &args.nt),
        (Method::Name, &args.name),
        (Method::Kmt, &args.kmt),
    ];
    let mut imported = Vec::new();
    for (method, arg) in given {
        if let Some(arg) = arg {
            match import(&td, method, arg) {
                Ok(o) => imported.push((method, o)),
                Err(e) => return Err(format!("child: importing by {}: {e}", method.key())),
            }
        }
    }
    let mut link = ParentLink::new();
    let mut failed = false;
    for (method, o) in &mut imported {
        let mut report = Report::default();
        if let Err(e) = child_rounds(&td, o, u64::from(args.rounds), &mut report) {
            eprintln!("tether demo-child: {}: {e}", method.key());
            std::process::exit(1);
        }
        failed |= !report.mismatches.is_empty();
        link.line(&format!(
            "checked {} {} {}",
            report.checked,
            report.mismatches.len(),
            method.key()
        ))?;
    }
    drop(imported);
    if failed {
        return Err("child: mismatches (see above)".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_valid() {
        for n in names("Local\\tether-demo-123") {
            assert!(tether_handles::ObjectName::from_utf16(&n.encode_utf16().collect::<Vec<_>>()).is_ok());
        }
    }
}

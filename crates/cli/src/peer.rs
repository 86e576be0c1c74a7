//! Child `tether` processes for the demo and the bench: re-execs of this binary with a hidden
//! subcommand, the same Vulkan source as the parent, stdin and stdout piped to the parent (a
//! control channel), stderr shared. Every fd without close-on-exec is inherited, which is how
//! NT handles exported with `bInheritHandle = TRUE` reach the child.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

use crate::vulkan::Source;

/// A running child process.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// How it was started, for messages.
    command_line: String,
}

impl Peer {
    /// Starts `tether <source flag> <args>`.
    pub fn spawn(source: Source, args: &[OsString]) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary to start a child: {e}"))?;
        let mut command = Command::new(&exe);
        command
            .arg(source.flag())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let command_line = std::iter::once(OsString::from("tether"))
            .chain(std::iter::once(OsString::from(source.flag())))
            .chain(args.iter().cloned())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("the child has no stdout pipe")?);
        Ok(Peer {
            child,
            stdin,
            stdout,
            command_line,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Why the child stopped answering: its exit status once it has one.
    fn gone(&mut self, what: &str) -> String {
        // Give a dying child a moment to be reaped, so the message says how it ended.
        for _ in 0..50 {
            if let Some(status) = self.exited() {
                return format!("{what}: the child process (pid {}) exited ({status})", self.pid());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        format!("{what}: the child process (pid {}) closed its pipe", self.pid())
    }

    /// The next line the child writes (without its newline).
    pub fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(self.gone("reading from the child")),
            Ok(_) => Ok(line.trim_end_matches('\n').to_string()),
            Err(e) => Err(format!("reading from the child: {e}")),
        }
    }

    /// Reads a line and checks it is `expected`.
    pub fn expect_line(&mut self, expected: &str) -> Result<(), String> {
        let line = self.read_line()?;
        if line == expected {
            Ok(())
        } else {
            Err(format!("the child said {line:?}, expected {expected:?}"))
        }
    }

    /// Sends one byte to the child's stdin.
    pub fn send(&mut self, byte: u8) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the child's stdin is closed")?;
        match stdin.write_all(&[byte]) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.gone("writing to the child")),
        }
    }

    /// Receives one byte from the child's stdout.
    pub fn recv(&mut self) -> Result<u8, String> {
        let mut byte = [0u8];
        match self.stdout.read_exact(&mut byte) {
            Ok(()) => Ok(byte[0]),
            Err(_) => Err(self.gone("reading from the child")),
        }
    }

    /// Closes the child's stdin, reads the rest of its stdout, waits for it and checks it
    /// succeeded. Returns what it wrote.
    pub fn finish(mut self) -> Result<String, String> {
        drop(self.stdin.take());
        let mut rest = String::new();
        let read = self.stdout.read_to_string(&mut rest);
        let status = self.child.wait().map_err(|e| format!("waiting for the child: {e}"))?;
        read.map_err(|e| format!("reading from the child: {e}"))?;
        if status.success() {
            Ok(rest)
        } else {
            Err(format!(
                "the child process (pid {}) failed ({status}); it said:\n{}",
                self.child.id(),
                rest.trim_end()
            ))
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // Our own child, by its handle: it is stuck or the parent gave up on it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The child's side of the control channel: stdin from the parent, stdout to it.
pub struct ParentLink {
    stdin: std::io::StdinLock<'static>,
    stdout: std::io::StdoutLock<'static>,
}

impl ParentLink {
    pub fn new() -> ParentLink {
        ParentLink {
            stdin: std::io::stdin().lock(),
            stdout: std::io::stdout().lock(),
        }
    }

    /// Writes a line to the parent, now.
    pub fn line(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.stdout, "{line}")
            .and_then(|()| self.stdout.flush())
            .map_err(|e| format!("writing to the parent: {e}"))
    }

    /// Sends one byte to the parent, now.
    pub fn send(&mut self, byte: u8) -> Result<(), String> {
        self.stdout
            .write_all(&[byte])
            .and_then(|()| self.stdout.flush())
            .map_err(|e| format!("writing to the parent: {e}"))
    }

    /// Receives one byte from the parent; `None` when the parent closed the pipe.
    pub fn recv(&mut self) -> Result<Option<u8>, String> {
        let mut byte = [0u8];
        match self.stdin.read(&mut byte) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(byte[0])),
            Err(e) => Err(format!("reading from the parent: {e}")),
        }
    }
}

/// Pins the calling thread, and so every thread and child process it creates later, to one CPU
/// (`--pin`).
pub fn pin_to(cpu: usize) -> Result<(), String> {
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return Err(format!("--pin {cpu}: no such CPU"));
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("--pin {cpu}: {e}"))
}

/// Makes an fd survive `exec` into a child (clears close-on-exec).
pub fn inheritable(fd: impl AsFd) -> Result<(), String> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(|e| format!("fcntl(F_SETFD): {e}"))
}

/// Parses `a,b,…` into numbers (decimal or `0x` hex).
pub fn parse_list(s: &str) -> Result<Vec<i64>, String> {
    s.split(',')
        .map(|part| {
            let part = part.trim();
            match part.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16),
                None => part.parse(),
            }
            .map_err(|e| format!("{part:?}: {e}"))
        })
        .collect()
}

/// Parses exactly `N` comma-separated numbers.
pub fn parse_numbers<const N: usize>(s: &str) -> Result<[i64; N], String> {
    let list = parse_list(s)?;
    <[i64; N]>::try_from(list).map_err(|l| format!("expected {N} comma-separated numbers, got {}", l.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_numbers::<3>("5,6,0x40000002"), Ok([5, 6, 0x4000_0002]));
        assert!(parse_numbers::<3>("5,6").is_err());
        assert!(parse_numbers::<2>("5,x").is_err());
        assert_eq!(parse_list("7"), Ok(vec![7]));
    }
}

//! Child processes of the tests: run to their end within a deadline, or held and killed on
//! drop, so that no test can hang on one or leave one behind.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a helper command (ssh-keygen, kill, pkill, id) may take.
const HELPER: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Killed {
    pub fn spawn(cmd: &mut Command) -> Killed {
        Killed(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Whether the process still runs. Until it is reaped its id cannot be reused, so while
    /// this holds the id names this process and no other.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Waits for the process to end by itself; `None` once `timeout` has passed.
    pub fn wait_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a command run to its end ended.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to its end with stdin closed; kills it and panics if it takes over `timeout`.
pub fn run_within(cmd: &mut Command, timeout: Duration) -> Outcome {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Killed::spawn(cmd);
    let stdout = read_all(child.0.stdout.take().unwrap());
    let stderr = read_all(child.0.stderr.take().unwrap());
    let Some(status) = child.wait_within(timeout) else {
        child.kill();
        panic!(
            "{cmd:?} did not end within {timeout:?}; stderr:\n{}",
            stderr.join().unwrap()
        );
    };
    Outcome {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn read_all(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs a helper command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run_within(cmd, HELPER);
    assert_eq!(out.code, Some(0), "{cmd:?} failed: {}", out.stderr);
    out.stdout
}

/// Runs a helper command whose exit status does not matter (pkill finding nothing).
pub fn run_quietly(cmd: &mut Command) {
    run_within(cmd, HELPER);
}

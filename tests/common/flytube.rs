//! The flytube binary run as a child process, isolated from the host's settings: its log
//! lines collected for the tests to wait for and assert on; killed on drop.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::process::{Killed, Outcome, run_ok, run_within};
use super::relay::Relay;
use super::targets::{Target, free_port};

/// A running flytube whose stderr lines are collected; killed on drop.
pub struct Flytube {
    process: Killed,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    reader: Option<JoinHandle<()>>,
}

pub fn flytube_bin() -> &'static str {
    env!("CARGO_BIN_EXE_flytube")
}

/// The settings file every flytube of the tests is given: an explicit empty mapping, so
/// that flytube takes its settings from the command line and `-c FILE` alone and never
/// reads the default /etc/flytube/flytube.yaml of the machine the tests run on.
pub fn no_settings() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join("no-settings.yaml");
        // Written aside and renamed: test binaries running at once each write it, and a
        // flytube of another one may be reading it.
        let aside = dir.join(format!("no-settings.yaml.{}", std::process::id()));
        std::fs::write(
            &aside,
            "# flytube's tests give every setting on the command line.\n{}\n",
        )
        .unwrap();
        std::fs::rename(&aside, &path).unwrap();
        path
    })
}

/// A flytube command isolated from the host: no inherited environment but `PATH` (no
/// `FLYTUBE_*`, `SOURCE_PORT`, `TARGET_*` or `RUST_LOG` of whoever runs the tests), and
/// `FLYTUBE_CONFIG` naming [`no_settings`]. A `-c FILE` argument still wins over it.
pub fn flytube_command() -> Command {
    let mut cmd = Command::new(flytube_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FLYTUBE_CONFIG", no_settings());
    cmd
}

/// How long a flytube may take to serve its forwards.
pub const READY: Duration = Duration::from_secs(20);

/// How long a flytube expected to end by itself (`config`, `check`, a refusal) may take.
pub const ONE_SHOT: Duration = Duration::from_secs(60);

/// Runs flytube to its end (at most [`ONE_SHOT`]) with the isolated environment plus `env`.
pub fn run_flytube<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = flytube_command();
    cmd.args(args).envs(env.iter().copied());
    run_within(&mut cmd, ONE_SHOT)
}

impl Flytube {
    pub fn start(args: &[String]) -> Flytube {
        Flytube::start_env(args, &[])
    }

    /// Starts flytube with the isolated environment plus `env`.
    pub fn start_env(args: &[String], env: &[(&str, &str)]) -> Flytube {
        let mut cmd = flytube_command();
        cmd.args(args).envs(env.iter().copied());
        if std::env::var_os("FLYTUBE_TEST_VERBOSE").is_some() {
            cmd.arg("-vv");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Killed::spawn(&mut cmd);
        let stderr = process.0.stderr.take().unwrap();
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = lines.clone();
        // Ends at the end of stderr, that is when flytube has exited.
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("FLYTUBE_TEST_ECHO").is_some() {
                    eprintln!("[flytube] {line}");
                }
                let (lock, cv) = &*sink;
                lock.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        Flytube {
            process,
            lines,
            reader: Some(reader),
        }
    }

    /// How many log lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        let (lock, _) = &*self.lines;
        lock.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.process.0.try_wait(), Ok(None))
    }

    /// Starts flytube and waits until it serves every forward (`-R`) of `args`.
    pub fn serving(args: &[String]) -> Flytube {
        let flytube = Flytube::start(args);
        let forwards = args.iter().filter(|a| *a == "-R").count();
        flytube.wait_for_n("serving", forwards.max(1), READY);
        flytube
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// A way to read the log later without holding the `Flytube` (for another helper's
    /// failure message).
    pub fn output_reader(&self) -> impl Fn() -> String + use<> {
        let lines = self.lines.clone();
        move || lines.0.lock().unwrap().join("\n")
    }

    /// Asserts that the log so far contains `needle`, showing the log when it does not.
    pub fn assert_logged(&self, needle: &str) {
        let out = self.output();
        assert!(out.contains(needle), "log lacks {needle:?}:\n{out}");
    }

    /// Waits until `n` lines contain `needle`; panics with the log after `timeout`.
    pub fn wait_for_n(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.lines;
        let mut lines = lock.lock().unwrap();
        loop {
            if lines.iter().filter(|l| l.contains(needle)).count() >= n {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out waiting for {n} x {needle:?}; log:\n{}",
                    lines.join("\n")
                );
            }
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        self.wait_for_n(needle, 1, timeout)
    }

    /// Waits for the process to exit by itself, and for its last log lines; kills it and
    /// panics with the log after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let Some(status) = self.process.wait_within(timeout) else {
            self.process.kill();
            panic!(
                "flytube did not exit within {timeout:?}; log:\n{}",
                self.output()
            );
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    /// Waits for the process to exit by itself and asserts its exit code.
    pub fn assert_exit(&mut self, code: i32, within: Duration) {
        let status = self.wait_exit(within);
        assert_eq!(status.code(), Some(code), "{}", self.output());
    }

    /// Sends `signal` (TERM, INT, ...) to the running flytube.
    pub fn signal(&mut self, signal: &str) {
        assert!(self.process.running(), "flytube has already exited");
        run_ok(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string()),
        );
    }
}

/// Arguments forwarding relay port `source` to 127.0.0.1:`target`.
pub fn forward(source: u16, target: u16) -> Vec<String> {
    vec![
        "-R".into(),
        format!("127.0.0.1:{source}:127.0.0.1:{target}"),
    ]
}

/// `args` with the value after `flag` replaced by `value`.
pub fn set_arg(args: &mut [String], flag: &str, value: impl ToString) {
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value.to_string();
}

/// `args` without `flag` and its value.
pub fn remove_arg(args: &mut Vec<String>, flag: &str) {
    let i = args.iter().position(|a| a == flag).unwrap();
    args.drain(i..i + 2);
}

/// flytube forwarding a fresh relay port to a new echo target, serving. `extra` goes on the
/// command line. The echo target lives as long as the returned value.
pub fn echo_tunnel(relay: &Relay, extra: &[&str]) -> (Target, u16, Flytube) {
    let mut args = relay.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    echo_tunnel_with(args)
}

/// Like [`echo_tunnel`], with the whole command line but the forward given.
pub fn echo_tunnel_with(mut args: Vec<String>) -> (Target, u16, Flytube) {
    let echo = Target::echo();
    let source = free_port();
    args.extend(forward(source, echo.port));
    let flytube = Flytube::serving(&args);
    (echo, source, flytube)
}

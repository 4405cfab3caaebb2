//! The flytube binary run as a child process, isolated from the host's settings: its log
//! lines collected for the tests to wait for and assert on; killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::relay::Relay;
use super::scratch::run_ok;
use super::targets::{Echo, free_port};

/// A running flytube whose stderr lines are collected.
pub struct Flytube {
    pub child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
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

impl Flytube {
    pub fn start(args: &[String]) -> Flytube {
        Flytube::start_env(args, &[])
    }

    pub fn start_env(args: &[String], env: &[(&str, &str)]) -> Flytube {
        let mut cmd = flytube_command();
        cmd.args(args);
        if std::env::var_os("FLYTUBE_TEST_VERBOSE").is_some() {
            cmd.arg("-vv");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start flytube");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("FLYTUBE_TEST_ECHO").is_some() {
                    eprintln!("[flytube] {line}");
                }
                let (lock, cv) = &*sink;
                lock.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        Flytube { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// Asserts that the log so far contains `needle`, showing the log when it does not.
    pub fn assert_logged(&self, needle: &str) {
        let out = self.output();
        assert!(out.contains(needle), "log lacks {needle:?}:\n{out}");
    }

    /// Number of log lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
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

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "flytube did not exit within {timeout:?}; log:\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        run_ok(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string()),
        );
    }
}

impl Drop for Flytube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arguments forwarding relay port `source` to 127.0.0.1:`target`.
pub fn forward(source: u16, target: u16) -> Vec<String> {
    vec![
        "-R".into(),
        format!("127.0.0.1:{source}:127.0.0.1:{target}"),
    ]
}

/// flytube forwarding a fresh relay port to a new echo target, serving. `extra` goes on the
/// command line. The echo target lives as long as the returned value.
pub fn echo_tunnel(relay: &Relay, extra: &[&str]) -> (Echo, u16, Flytube) {
    let echo = Echo::start();
    let source = free_port();
    let mut args = relay.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(forward(source, echo.port));
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", Duration::from_secs(20));
    (echo, source, flytube)
}

//! Real proxies on loopback, from Debian's packages: tinyproxy (HTTP CONNECT, `BasicAuth`)
//! and microsocks (SOCKS5 with RFC 1929 user/password). Each runs in the foreground on a
//! free port with its config and log in a temp dir, and is killed on drop.
//!
//! Included with `#[path]` by the tests that use it, so the fixture in `common/mod.rs`
//! needs no change.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{TempDir, free_port};

/// A proxy process: its port, log file and child.
pub struct ProxyProcess {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Config and log live here; removed on drop, after the process is killed.
    _dir: TempDir,
    log: PathBuf,
    program: &'static str,
    args: Vec<String>,
    child: Option<Child>,
}

impl ProxyProcess {
    /// The proxy's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the proxy's log contains `needle`.
    pub fn wait_logged(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if Instant::now() >= deadline {
                panic!(
                    "{} log lacks {needle:?} after {timeout:?}:\n{}",
                    self.program,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the proxy and every connection it carries.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} (apt-get install it): {e}", self.program));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "{} exited with {status} on port {}:\n{}",
                    self.program,
                    self.port,
                    self.log()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return Err(format!("{} did not listen on {}", self.program, self.port));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `make(port, dir)` on a free port, trying another when a parallel test takes
    /// the port first.
    fn start_on_free_port(
        program: &'static str,
        make: impl Fn(u16, &Path) -> (Vec<String>, PathBuf),
    ) -> ProxyProcess {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match ProxyProcess::start_on(program, port, &make) {
                Ok(proxy) => return proxy,
                Err(e) => last = e,
            }
        }
        panic!("cannot start {program}: {last}");
    }

    fn start_on(
        program: &'static str,
        port: u16,
        make: &impl Fn(u16, &Path) -> (Vec<String>, PathBuf),
    ) -> Result<ProxyProcess, String> {
        let dir = TempDir::new(program);
        let (args, log) = make(port, &dir.0);
        let mut proxy = ProxyProcess {
            port,
            _dir: dir,
            log,
            program,
            args,
            child: None,
        };
        proxy.spawn()?;
        Ok(proxy)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// tinyproxy's config: CONNECT allowed to `connect_ports` only, Basic auth when given, each
/// CONNECT logged with its target (`LogLevel Connect`).
fn tinyproxy_config(
    port: u16,
    dir: &Path,
    auth: Option<(&str, &str)>,
    connect_ports: &[u16],
) -> (Vec<String>, PathBuf) {
    let log = dir.join("tinyproxy.log");
    let mut config = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nLogFile \"{}\"\nLogLevel Connect\n\
         PidFile \"{}\"\nMaxClients 50\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
        log.display(),
        dir.join("tinyproxy.pid").display()
    );
    if let Some((user, password)) = auth {
        config.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    for p in connect_ports {
        config.push_str(&format!("ConnectPort {p}\n"));
    }
    let path = dir.join("tinyproxy.conf");
    std::fs::write(&path, config).unwrap();
    (
        vec!["-d".into(), "-c".into(), path.display().to_string()],
        log,
    )
}

/// tinyproxy in the foreground (`-d`) on a free port. Its log shows
/// `Request (file descriptor N): CONNECT HOST:PORT HTTP/1.1` for each tunnel.
pub fn tinyproxy(auth: Option<(&str, &str)>, connect_ports: &[u16]) -> ProxyProcess {
    ProxyProcess::start_on_free_port("/usr/bin/tinyproxy", |port, dir| {
        tinyproxy_config(port, dir, auth, connect_ports)
    })
}

/// tinyproxy on a given port (a proxy that "comes back").
pub fn tinyproxy_on(
    port: u16,
    auth: Option<(&str, &str)>,
    connect_ports: &[u16],
) -> Result<ProxyProcess, String> {
    ProxyProcess::start_on("/usr/bin/tinyproxy", port, &|port, dir: &Path| {
        tinyproxy_config(port, dir, auth, connect_ports)
    })
}

/// microsocks on a free port, with user/password when given. Its log (stderr) shows
/// `client[N] 127.0.0.1: connected to HOST:PORT` for each tunnel.
pub fn microsocks(auth: Option<(&str, &str)>) -> ProxyProcess {
    ProxyProcess::start_on_free_port("/usr/bin/microsocks", |port, dir| {
        let mut args = vec![
            "-i".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        if let Some((user, password)) = auth {
            args.extend(["-u".into(), user.into(), "-P".into(), password.into()]);
        }
        (args, dir.join("microsocks.log"))
    })
}

//! Test fixture: a real OpenSSH sshd on 127.0.0.1 with a generated host key, a throwaway
//! user CA and a signed client certificate; real TCP targets on port 0; and the flytube
//! binary run as a child process whose log lines the tests can wait for.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("flytube-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ssh-keygen a passphrase-less key.
pub fn keygen(path: &Path, kind: &str) {
    let _ = std::fs::remove_file(path);
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "flytube-test", "-f"])
            .arg(path),
    );
}

/// Signs `key.pub` with `ca` for `principal`, valid in `validity` (ssh-keygen -V syntax).
pub fn sign(ca: &Path, key: &Path, principal: &str, validity: &str) {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(ca)
            .args(["-I", "flytube-test", "-n", principal, "-V", validity])
            .arg(format!("{}.pub", key.display())),
    );
}

/// The SHA256 fingerprint ssh-keygen prints for a public key file.
pub fn fingerprint(pubkey: &Path) -> String {
    let out = run_ok(Command::new("ssh-keygen").arg("-lf").arg(pubkey));
    out.split_whitespace().nth(1).unwrap().to_string()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| run_ok(Command::new("id").arg("-un")).trim().to_string())
}

/// A throwaway OpenSSH relay.
pub struct Relay {
    pub dir: TempDir,
    pub port: u16,
    pub user: String,
    child: Child,
}

impl Relay {
    pub fn start() -> Relay {
        Relay::start_with("")
    }

    /// Starts sshd with extra sshd_config lines.
    pub fn start_with(extra: &str) -> Relay {
        let dir = TempDir::new("relay");
        keygen(&dir.join("host_ed25519"), "ed25519");
        keygen(&dir.join("ca"), "ed25519");
        keygen(&dir.join("id_ed25519"), "ed25519");
        let user = user();
        sign(&dir.join("ca"), &dir.join("id_ed25519"), &user, "-5m:+52w");
        std::fs::write(dir.join("authorized_keys"), "").unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        // `extra` comes first: sshd takes the first value of each keyword, so a test can
        // override any default below (AllowTcpForwarding yes, LogLevel DEBUG1, ...).
        let config = format!(
            "{extra}\n\
             ListenAddress 127.0.0.1:{port}\n\
             HostKey {dir}/host_ed25519\n\
             PidFile {dir}/sshd.pid\n\
             TrustedUserCAKeys {dir}/ca.pub\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             StrictModes no\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             AllowTcpForwarding remote\n\
             GatewayPorts no\n\
             MaxStartups 100:30:200\n\
             LogLevel {level}\n",
            dir = dir.0.display(),
            level =
                std::env::var("FLYTUBE_TEST_SSHD_LOGLEVEL").unwrap_or_else(|_| "VERBOSE".into())
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd not installed (apt-get install openssh-server)");
        let child = Command::new(sshd)
            .args(["-D", "-f"])
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        let relay = Relay {
            dir,
            port,
            user,
            child,
        };
        relay.wait_listening();
        relay
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("sshd did not listen: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    pub fn identity(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn host_pub(&self) -> PathBuf {
        self.dir.join("host_ed25519.pub")
    }

    /// A known_hosts file trusting this relay's host key.
    pub fn known_hosts(&self) -> PathBuf {
        let key = std::fs::read_to_string(self.host_pub()).unwrap();
        let mut fields = key.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        let path = self.dir.join("known_hosts");
        std::fs::write(&path, line).unwrap();
        path
    }

    /// Base arguments: `run` against this relay with certificate auth and known_hosts.
    pub fn args(&self) -> Vec<String> {
        vec![
            "run".into(),
            "--relay".into(),
            format!("127.0.0.1:{}", self.port),
            "--user".into(),
            self.user.clone(),
            "-i".into(),
            self.identity().display().to_string(),
            "--known-hosts".into(),
            self.known_hosts().display().to_string(),
        ]
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills sshd and every session it serves, as a crash or reboot of the relay would.
    pub fn kill_all(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
        self.stop();
    }

    /// Starts sshd again with the same keys, config and port.
    pub fn restart(&mut self) -> &mut Relay {
        self.stop();
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        self.child = Command::new(sshd)
            .args(["-D", "-f"])
            .arg(self.dir.join("sshd_config"))
            .arg("-E")
            .arg(self.dir.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("restart sshd");
        self.wait_listening();
        self
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running flytube whose stderr lines are collected.
pub struct Flytube {
    pub child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

pub fn flytube_bin() -> &'static str {
    env!("CARGO_BIN_EXE_flytube")
}

impl Flytube {
    pub fn start(args: &[String]) -> Flytube {
        Flytube::start_env(args, &[])
    }

    pub fn start_env(args: &[String], env: &[(&str, &str)]) -> Flytube {
        let mut cmd = Command::new(flytube_bin());
        cmd.args(args);
        if std::env::var_os("FLYTUBE_TEST_VERBOSE").is_some() {
            cmd.arg("-vv");
        }
        cmd.env_remove("RUST_LOG")
            .env_remove("FLYTUBE_CONFIG")
            .stdin(Stdio::null())
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

/// An echo server on 127.0.0.1:0: echoes until EOF, then half-closes. Stops on drop.
pub struct Echo {
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Echo {
    pub fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        thread::spawn(move || echo(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Echo { port, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Connects to the relay's forwarded port (retrying briefly while it comes up).
pub fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                return s;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect to relay port {port}: {e}"),
        }
    }
}

/// Sends `data` through the tunnel to an echo target and returns what came back.
pub fn echo_round_trip(port: u16, data: &[u8]) -> Vec<u8> {
    let stream = connect(port);
    let mut writer = stream.try_clone().unwrap();
    let payload = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let mut reader = stream;
    reader.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

/// Arguments forwarding relay port `source` to 127.0.0.1:`target`.
pub fn forward(source: u16, target: u16) -> Vec<String> {
    vec![
        "-R".into(),
        format!("127.0.0.1:{source}:127.0.0.1:{target}"),
    ]
}

/// A TCP proxy between flytube and sshd that can black-hole its connections (bytes
/// vanish, sockets stay open) or reset them. New connections after a freeze pass normally.
pub struct FaultyProxy {
    pub port: u16,
    frozen_before: Arc<Mutex<Option<usize>>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyProxy {
    pub fn start(upstream: u16) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let frozen_before: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, c, s) = (frozen_before.clone(), conns.clone(), stop.clone());
        thread::spawn(move || {
            let mut index = 0usize;
            while !s.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                let me = index;
                index += 1;
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let frozen = f.clone();
                    thread::spawn(move || pipe(from, to, me, frozen));
                }
            }
        });
        FaultyProxy {
            port,
            frozen_before,
            conns,
            stop,
        }
    }

    /// Every connection open now becomes a black hole.
    pub fn freeze_existing(&self) {
        let open = self.conns.lock().unwrap().len() / 2;
        *self.frozen_before.lock().unwrap() = Some(open);
    }

    /// Resets every connection open now.
    pub fn reset_all(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.reset_all();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, index: usize, frozen: Arc<Mutex<Option<usize>>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let is_frozen = frozen.lock().unwrap().is_some_and(|before| index < before);
                if is_frozen {
                    continue; // the bytes vanish; the socket stays open
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Open file descriptors and threads of a process.
pub fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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

/// A target on 127.0.0.1:0 that serves its first connection with `serve` on a thread of its
/// own; the receiver gets what `serve` returns.
pub fn one_shot_target<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (u16, std::sync::mpsc::Receiver<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = tx.send(serve(stream));
        }
    });
    (port, rx)
}

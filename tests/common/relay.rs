//! The relay: a throwaway OpenSSH sshd on 127.0.0.1 with a generated host key, a user CA
//! and a client certificate signed by it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{Killed, run_ok, run_quietly};
use super::scratch::TempDir;
use super::targets::free_port;

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

/// A known_hosts line listing the public key in `pubkey` for `host` (a name, or
/// `[host]:port`).
pub fn known_hosts_line(host: &str, pubkey: &Path) -> String {
    let key = std::fs::read_to_string(pubkey).unwrap();
    let mut fields = key.split_whitespace();
    let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
    format!("{host} {kind} {blob}\n")
}

pub fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| run_ok(Command::new("id").arg("-un")).trim().to_string())
}

/// A throwaway OpenSSH relay; sshd and every session it serves are killed on drop.
pub struct Relay {
    pub dir: TempDir,
    pub port: u16,
    pub user: String,
    sshd: Killed,
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
        // A port free a moment ago can be taken before sshd binds it (by another test's
        // listener on port 0): then sshd fails to bind and the port answers with someone
        // else's server. Only the relay's own host key proves the port is its own.
        let port = free_port();
        write_config(&dir, port, extra);
        let sshd = spawn_sshd(&dir);
        let mut relay = Relay {
            dir,
            port,
            user,
            sshd,
        };
        for _ in 0..5 {
            if relay.wait_listening(0) {
                return relay;
            }
            relay.stop();
            relay.port = free_port();
            write_config(&relay.dir, relay.port, extra);
            relay.sshd = spawn_sshd(&relay.dir);
        }
        panic!("sshd could not get a port of its own: {}", relay.log());
    }

    /// How many times sshd has said it listens on the relay's port (the log is kept
    /// across restarts).
    fn times_listening(&self) -> usize {
        let said = format!("Server listening on 127.0.0.1 port {}.", self.port);
        self.log().matches(&said).count()
    }

    /// Waits until this relay's sshd says it listens on its port (once more than `before`
    /// times): true then, false if it exited first (the port was taken). A connection to
    /// the port proves nothing: another server may hold it. sshd says so at LogLevel
    /// VERBOSE and above (the fixture's).
    fn wait_listening(&mut self, before: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.times_listening() > before {
                return true;
            }
            if !self.sshd.running() {
                return false;
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

    /// A known_hosts file trusting this relay's host key (written afresh on every call).
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.join("known_hosts");
        let host = format!("[127.0.0.1]:{}", self.port);
        std::fs::write(&path, known_hosts_line(&host, &self.host_pub())).unwrap();
        path
    }

    /// A new key pair `name` in the relay's directory, which the relay does not trust.
    pub fn new_key(&self, name: &str) -> PathBuf {
        let key = self.dir.join(name);
        keygen(&key, "ed25519");
        key
    }

    /// A new key pair `name` with a certificate for the relay's user from the relay's user
    /// CA, valid in `validity` (ssh-keygen -V syntax).
    pub fn certified_key(&self, name: &str, validity: &str) -> PathBuf {
        let key = self.new_key(name);
        sign(&self.dir.join("ca"), &key, &self.user, validity);
        key
    }

    /// Writes `text` to the file `name` in the relay's directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
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

    /// Stops the listening sshd; sessions it serves stay, as on a graceful restart.
    pub fn stop(&mut self) {
        self.sshd.kill();
    }

    /// Kills sshd and every session it serves, as a crash or reboot of the relay would.
    pub fn kill_all(&mut self) {
        // Sessions are sshd's children (in sessions of their own, so not in its process
        // group); after sshd is reaped its id may name some other process.
        if self.sshd.running() {
            let pid = self.sshd.id().to_string();
            run_quietly(Command::new("pkill").args(["-KILL", "-P", &pid]));
        }
        self.stop();
    }

    /// Starts sshd again with the same keys, config and port.
    pub fn restart(&mut self) -> &mut Relay {
        self.stop();
        let before = self.times_listening();
        self.sshd = spawn_sshd(&self.dir);
        assert!(
            self.wait_listening(before),
            "port {} was taken while the relay was down",
            self.port
        );
        self
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Writes the relay's sshd_config for `port`, with `extra` lines first.
fn write_config(dir: &TempDir, port: u16, extra: &str) {
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
        level = std::env::var("FLYTUBE_TEST_SSHD_LOGLEVEL").unwrap_or_else(|_| "VERBOSE".into())
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
}

/// sshd in the foreground on the config in `dir`, logging to `dir`/sshd.log.
fn spawn_sshd(dir: &TempDir) -> Killed {
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("sshd not installed (apt-get install openssh-server)");
    Killed::spawn(
        Command::new(sshd)
            .args(["-D", "-f"])
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null()),
    )
}

//! Verifying the relay's host key against a pinned SHA256 fingerprint and/or known_hosts,
//! before anything is sent that depends on trusting it.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::base64;
use crate::forward::join_host_port;

/// How the relay's host key is trusted: a known_hosts file, a pinned fingerprint, or both
/// (then both must pass).
#[derive(Debug, Clone, PartialEq)]
pub struct HostKeyPolicy {
    /// known_hosts file with the relay's key.
    pub known_hosts: Option<PathBuf>,
    /// Pinned SHA256 fingerprint.
    pub fingerprint: Option<Fingerprint>,
}

/// A SHA256 host key fingerprint, as `ssh-keygen -lf` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a raw key blob.
    pub fn of(blob: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(blob).into())
    }

    /// Parses `SHA256:<43 base64 characters>`; the error says what is allowed.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let bad = || {
            format!(
                "host key fingerprint {text:?} is not allowed (use the SHA256:... form \
                 that `ssh-keygen -lf KEY.pub` prints)"
            )
        };
        let encoded = text.trim().strip_prefix("SHA256:").ok_or_else(bad)?;
        let bytes = base64::decode(encoded).ok_or_else(bad)?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Fingerprint(hash))
    }

    /// Compares in constant time, so a timing side channel reveals nothing about the pin.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", base64::encode_unpadded(&self.0))
    }
}

/// The key the relay presented.
#[derive(Debug, Clone)]
pub struct PresentedKey {
    /// Raw public key blob.
    pub blob: Vec<u8>,
    /// Key type name from the blob (e.g. `ssh-ed25519`).
    pub key_type: String,
}

impl PresentedKey {
    /// Takes the negotiated host key off a handshaken session.
    pub fn from_session(session: &ssh2::Session) -> Option<PresentedKey> {
        let (blob, _) = session.host_key()?;
        Some(PresentedKey {
            blob: blob.to_vec(),
            key_type: blob_key_type(blob).unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Its SHA256 fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.blob)
    }

    /// The line that would trust this key in a known_hosts file.
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        let name = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        format!("{name} {} {}", self.key_type, base64::encode(&self.blob))
    }
}

/// The first string of an SSH key blob: its type.
pub fn blob_key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    String::from_utf8(name.to_vec()).ok()
}

/// One usable line of a known_hosts file.
struct KnownLine {
    number: usize,
    revoked: bool,
    key_type: String,
    blob: Vec<u8>,
    /// The line without its marker, for libssh2's host-pattern matching (plain and hashed).
    entry: String,
}

/// The entries of a known_hosts file that apply to one relay.
#[derive(Debug, Default)]
pub struct KnownEntries {
    /// Keys listed for the relay, with their key types.
    pub keys: Vec<(String, Vec<u8>)>,
    /// Keys marked `@revoked` for the relay.
    pub revoked: Vec<Vec<u8>>,
    /// Problems with lines that were skipped (line number and reason).
    pub skipped: Vec<String>,
}

/// Reads the entries of `path` that apply to `host:port`. Host patterns, hashed names and
/// the `[host]:port` form are matched by libssh2. Unparsable lines are skipped and reported,
/// not fatal (libssh2's own reader stops at the first one). `@cert-authority` lines are
/// reported as unsupported: libssh2 cannot validate host certificates.
pub fn read_known_hosts(
    session: &ssh2::Session,
    path: &Path,
    host: &str,
    port: u16,
) -> Result<KnownEntries, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut entries = KnownEntries::default();
    for line in parse_known_hosts(&text, &mut entries.skipped) {
        let mut single = session
            .known_hosts()
            .map_err(|e| format!("cannot create known_hosts matcher: {e}"))?;
        if let Err(e) = single.read_str(&line.entry, ssh2::KnownHostFileKind::OpenSSH) {
            entries.skipped.push(format!(
                "line {}: not understood ({})",
                line.number,
                e.message()
            ));
            continue;
        }
        if let ssh2::CheckResult::Match = single.check_port(host, port, &line.blob) {
            if line.revoked {
                entries.revoked.push(line.blob);
            } else {
                entries.keys.push((line.key_type, line.blob));
            }
        }
    }
    Ok(entries)
}

fn parse_known_hosts(text: &str, skipped: &mut Vec<String>) -> Vec<KnownLine> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        let mut revoked = false;
        if let Some(marker) = fields.first().filter(|f| f.starts_with('@')) {
            match *marker {
                "@revoked" => revoked = true,
                "@cert-authority" => {
                    skipped.push(format!(
                        "line {number}: @cert-authority is not supported (pin the relay's \
                         own host key instead)"
                    ));
                    continue;
                }
                other => {
                    skipped.push(format!("line {number}: unknown marker {other}"));
                    continue;
                }
            }
            fields.remove(0);
        }
        if fields.len() < 3 {
            skipped.push(format!("line {number}: expected HOSTS KEYTYPE KEY"));
            continue;
        }
        let Some(blob) = base64::decode(fields[2]) else {
            skipped.push(format!("line {number}: key is not base64"));
            continue;
        };
        if line.len() > 4000 {
            skipped.push(format!(
                "line {number}: longer than libssh2's 4 KiB line limit"
            ));
            continue;
        }
        lines.push(KnownLine {
            number,
            revoked,
            key_type: fields[1].to_string(),
            blob,
            entry: fields[..3].join(" "),
        });
    }
    lines
}

/// Host key algorithms to ask for, most preferred first. Plain key types only: with a
/// `*-cert-v01` host key libssh2 would hand us the certificate's hash, which changes on every
/// re-issue, and it does not validate host certificates anyway. Types listed in known_hosts
/// for this relay go first, as OpenSSH does, so the relay presents a key we can check.
pub fn host_key_preference(known_types: &[String]) -> String {
    const ALL: &[&str] = &[
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ];
    let mut order: Vec<&str> = Vec::new();
    for key_type in known_types {
        let algorithms: &[&str] = match key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256"],
            other => match ALL.iter().find(|a| **a == other) {
                Some(a) => std::slice::from_ref(a),
                None => &[],
            },
        };
        for a in algorithms {
            if !order.contains(a) {
                order.push(a);
            }
        }
    }
    for a in ALL {
        if !order.contains(a) {
            order.push(a);
        }
    }
    order.join(",")
}

/// Checks the presented key against every configured check; all of them must pass.
/// The error names the presented fingerprint, what was expected and how to fix it.
pub fn verify(
    presented: &PresentedKey,
    policy: &HostKeyPolicy,
    known: Option<&KnownEntries>,
    host: &str,
    port: u16,
) -> Result<(), String> {
    let got = presented.fingerprint();
    if let Some(pin) = &policy.fingerprint
        && !pin.matches(&got)
    {
        return Err(format!(
            "the relay presented {} {got}, but the pinned fingerprint is {pin}; if the relay's \
                 key was really changed, pin the new one after checking it out of band",
            presented.key_type
        ));
    }
    if let (Some(path), Some(known)) = (&policy.known_hosts, known) {
        if known.revoked.contains(&presented.blob) {
            return Err(format!(
                "the relay presented {} {got}, which {} marks @revoked",
                presented.key_type,
                path.display()
            ));
        }
        if known.keys.iter().any(|(_, k)| *k == presented.blob) {
            return Ok(());
        }
        let name = join_host_port(host, port);
        if known.keys.is_empty() {
            return Err(format!(
                "{} has no entry for {name}; the relay presented {} {got}; after checking that \
                 fingerprint out of band, add this line: {}",
                path.display(),
                presented.key_type,
                presented.known_hosts_line(host, port)
            ));
        }
        let expected: Vec<String> = known
            .keys
            .iter()
            .map(|(t, k)| format!("{t} {}", Fingerprint::of(k)))
            .collect();
        return Err(format!(
            "the relay presented {} {got}, but {} lists {} for {name}; if the relay's key was \
             really changed, replace that entry after checking the new fingerprint out of band",
            presented.key_type,
            path.display(),
            expected.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trip_and_constant_time_match() {
        let fp = Fingerprint::of(b"key");
        let text = fp.to_string();
        assert!(
            text.starts_with("SHA256:") && text.len() == 7 + 43,
            "{text}"
        );
        assert!(Fingerprint::parse(&text).unwrap().matches(&fp));
        assert!(!Fingerprint::of(b"other").matches(&fp));
        let err = Fingerprint::parse("MD5:aa:bb").unwrap_err();
        assert!(
            err.contains("\"MD5:aa:bb\"") && err.contains("ssh-keygen -lf"),
            "{err}"
        );
        assert!(Fingerprint::parse("SHA256:abc").is_err());
    }

    #[test]
    fn known_hosts_types_go_first() {
        assert_eq!(
            host_key_preference(&["ssh-rsa".into()]),
            "rsa-sha2-512,rsa-sha2-256,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521"
        );
        assert!(host_key_preference(&[]).starts_with("ssh-ed25519,"));
    }

    #[test]
    fn bad_lines_are_skipped_and_reported() {
        let mut skipped = Vec::new();
        let lines = parse_known_hosts(
            "# comment\n\n@cert-authority *.x ssh-ed25519 AAAA\nhost ssh-ed25519\nhost ssh-ed25519 !!\n\
             @revoked host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\nhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 c\n",
            &mut skipped,
        );
        assert_eq!(lines.len(), 2);
        assert!(lines[0].revoked && !lines[1].revoked);
        assert_eq!(lines[1].entry, "host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[0].starts_with("line 3: @cert-authority"));
    }
}

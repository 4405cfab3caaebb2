//! Verifying the relay's host key against a pinned SHA256 fingerprint and/or known_hosts,
//! before anything is sent that depends on trusting it.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use ssh_key::{HashAlg, PublicKey};

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
pub struct Fingerprint(ssh_key::Fingerprint);

impl Fingerprint {
    /// The SHA256 fingerprint of a public key.
    pub fn of(key: &PublicKey) -> Fingerprint {
        Fingerprint(key.fingerprint(HashAlg::Sha256))
    }

    /// Parses `SHA256:<43 base64 characters>` (trailing `=` padding allowed); the error
    /// says what is allowed. SHA512 fingerprints, which `ssh-key` also reads, are refused:
    /// `ssh-keygen -lf` prints SHA256 and only that is ever compared.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        match text
            .trim()
            .trim_end_matches('=')
            .parse::<ssh_key::Fingerprint>()
        {
            Ok(fp) if fp.is_sha256() => Ok(Fingerprint(fp)),
            _ => Err(format!(
                "host key fingerprint {text:?} is not allowed (use the SHA256:... form \
                 that `ssh-keygen -lf KEY.pub` prints)"
            )),
        }
    }

    /// Compares in constant time, so a timing side channel reveals nothing about the pin.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The key the relay presented.
#[derive(Debug, Clone)]
pub struct PresentedKey {
    key: PublicKey,
    /// Key type name from the key (e.g. `ssh-ed25519`).
    pub key_type: String,
}

impl PresentedKey {
    /// Takes the negotiated host key off a handshaken session. An error means the key
    /// cannot be checked, so the relay must not be trusted.
    pub fn from_session(session: &ssh2::Session) -> Result<PresentedKey, String> {
        let (blob, _) = session
            .host_key()
            .ok_or("the relay presented no host key")?;
        PresentedKey::from_blob(blob)
    }

    /// Reads a key in the SSH wire format (RFC 4253 section 6.6).
    pub fn from_blob(blob: &[u8]) -> Result<PresentedKey, String> {
        // Only reachable with a broken relay or libssh2: the handshake offers only key types
        // that ssh-key reads, and libssh2 has already checked the relay's signature with it.
        let key = PublicKey::from_bytes(blob).map_err(|e| {
            format!(
                "the relay's host key cannot be read (expected an SSH public key for one of the \
                 offered algorithms {}): {e}",
                ALGORITHMS.join(", ")
            )
        })?;
        Ok(PresentedKey {
            key_type: key.algorithm().as_str().to_string(),
            key,
        })
    }

    /// Its SHA256 fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.key)
    }

    /// The line that would trust this key in a known_hosts file.
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        let name = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        // Encoding a key that was just decoded cannot fail; say so rather than panic.
        match self.key.to_openssh() {
            Ok(key) => format!("{name} {key}"),
            Err(e) => format!("{name} {} (cannot be encoded: {e})", self.key_type),
        }
    }

    fn is(&self, key: &PublicKey) -> bool {
        // Key data only: known_hosts comments must not make a listed key differ.
        self.key.key_data() == key.key_data()
    }
}

/// The entries of a known_hosts file that apply to one relay.
#[derive(Debug, Default)]
pub struct KnownEntries {
    /// Keys listed for the relay.
    pub keys: Vec<PublicKey>,
    /// Keys marked `@revoked` for the relay.
    pub revoked: Vec<PublicKey>,
    /// Problems with lines that were skipped (line number and reason).
    pub skipped: Vec<String>,
}

impl KnownEntries {
    /// The key types listed for the relay, in file order.
    pub fn key_types(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.algorithm().as_str().to_string())
            .collect()
    }
}

/// One usable line of a known_hosts file.
struct KnownLine {
    number: usize,
    revoked: bool,
    key: PublicKey,
    hosts: HostPatterns,
}

/// Reads the entries of `path` that apply to `host:port`, with OpenSSH's semantics
/// (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT): comma-separated patterns with `*` and `?`,
/// `!pattern` negation (a negated match rules the line out), hashed `|1|salt|hash` names,
/// and `[host]:port` for any port but 22 (a bare `host` entry vouches for port 22 only).
/// `ssh-key` reads each line; unparsable lines are skipped and reported, not fatal.
/// `@cert-authority` lines are reported as unsupported: flytube pins plain host keys.
pub fn read_known_hosts(path: &Path, host: &str, port: u16) -> Result<KnownEntries, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read known_hosts file {}: {e}", path.display()))?;
    Ok(known_entries_for(&text, host, port))
}

/// The entries of known_hosts `text` that apply to `host:port` (pure, for tests and fuzzing).
pub fn known_entries_for(text: &str, host: &str, port: u16) -> KnownEntries {
    let mut entries = KnownEntries::default();
    let lookup = lookup_name(host, port);
    for line in parse_known_hosts(text, &mut entries.skipped) {
        if !hosts_match(&line.hosts, &lookup) {
            continue;
        }
        if line.revoked {
            entries.revoked.push(line.key);
        } else {
            entries.keys.push(line.key);
        }
        let _ = line.number;
    }
    entries
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` on any other.
fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// OpenSSH's `match_hostname`: true when some pattern matches and no negated one does.
fn hosts_match(hosts: &HostPatterns, lookup: &str) -> bool {
    match hosts {
        HostPatterns::HashedName { salt, hash } => hashed_name_matches(salt, hash, lookup),
        HostPatterns::Patterns(patterns) => {
            let mut matched = false;
            for pattern in patterns {
                let pattern = pattern.to_ascii_lowercase();
                match pattern.strip_prefix('!') {
                    Some(negated) if glob_match(negated.as_bytes(), lookup.as_bytes()) => {
                        return false;
                    }
                    Some(_) => {}
                    None => matched |= glob_match(pattern.as_bytes(), lookup.as_bytes()),
                }
            }
            matched
        }
    }
}

/// `|1|salt|hash`: the hash is HMAC-SHA1 of the looked-up name keyed with the salt.
fn hashed_name_matches(salt: &[u8], hash: &[u8; 20], lookup: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.update(lookup.as_bytes());
    mac.verify_slice(hash).is_ok()
}

/// Shell-style `*` (any run) and `?` (any one byte) matching, iterative so that no
/// pattern can make it recurse or take more than pattern x text steps.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

fn parse_known_hosts(text: &str, skipped: &mut Vec<String>) -> Vec<KnownLine> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_known_line(number, line) {
            Ok(known) => lines.push(known),
            Err(why) => skipped.push(format!("line {number}: {why}")),
        }
    }
    lines
}

/// One non-comment line; the error says what was expected.
fn parse_known_line(number: usize, line: &str) -> Result<KnownLine, String> {
    // ssh-key splits fields on single spaces; OpenSSH accepts any run of blanks.
    let fields: Vec<&str> = line.split_whitespace().collect();
    let first = fields.first().copied().unwrap_or_default();
    if first.starts_with('@') && first.parse::<Marker>().is_err() {
        return Err(format!(
            "unknown marker {first} (expected @revoked or @cert-authority)"
        ));
    }
    if line.len() > 8192 {
        return Err("longer than 8 KiB".into());
    }
    let entry: Entry = fields.join(" ").parse().map_err(|e| {
        format!("expected [@revoked] HOSTS KEYTYPE BASE64-KEY [COMMENT] (ssh-key: {e})")
    })?;
    if entry.marker() == Some(&Marker::CertAuthority) {
        let why = "@cert-authority is not supported (pin the relay's own host key instead)";
        return Err(why.into());
    }
    Ok(KnownLine {
        number,
        revoked: entry.marker() == Some(&Marker::Revoked),
        key: entry.public_key().clone(),
        hosts: entry.host_patterns().clone(),
    })
}

/// Host key algorithms flytube asks for, most preferred first.
const ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// Host key algorithms to ask for, most preferred first. Plain key types only: with a
/// `*-cert-v01` host key libssh2 would hand us the certificate's hash, which changes on every
/// re-issue, and it does not validate host certificates anyway. Types listed in known_hosts
/// for this relay go first, as OpenSSH does, so the relay presents a key we can check.
pub fn host_key_preference(known_types: &[String]) -> String {
    let mut order: Vec<&str> = Vec::new();
    for key_type in known_types {
        let algorithms: &[&str] = match key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256"],
            other => match ALGORITHMS.iter().find(|a| **a == other) {
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
    for a in ALGORITHMS {
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
        if known.revoked.iter().any(|k| presented.is(k)) {
            return Err(format!(
                "the relay presented {} {got}, which {} marks @revoked",
                presented.key_type,
                path.display()
            ));
        }
        if known.keys.iter().any(|k| presented.is(k)) {
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
            .map(|k| format!("{} {}", k.algorithm().as_str(), Fingerprint::of(k)))
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

    // Made with ssh-keygen; HASHED is `[relay.example]:2222` with ED25519's key, hashed by
    // `ssh-keygen -H`.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZodWNdEGeIAzkbrxNlaWwD3xA4xIeXHk+9MNcYanEo";
    const ED25519_FP: &str = "SHA256:VLkMiO7c+YKOsS3RYcRV3tzsEcsl533qzBZDRUbRSe8";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFF9wtknaczta04y9aMwvsBRMRZOI99J6q4UcHMiCmX+";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ7baZcSfSwlzfNftBRAZXYDui6TMy/LojVlpRELpKBzNOOHKljk76bC1Ghxvjz68BPTLDVGCHnTGGXUm0X7gQY=";
    const ECDSA_FP: &str = "SHA256:gnEOCv0OC6EExjnN4rQc87vNvCzMTQPFPdhIZKd+smo";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC2o7OcBASQL4Jf2Yw+RCTcoztaPOWpeC2CsyDaC9/BuBZZiJjSEjFN5cCt5kHCJ5kvrg5A5ijU2vZdxDRYtAghl0Gh1j8tR1jisTFSx/PeBuVvExxxNcCN/dciNshy+Gyponfmn4TbSRkkCPNfKuvKSTubwDg1jLlgC0aI5wRzQQ==";
    const RSA_FP: &str = "SHA256:1F30+mvb0caJJOMv7GHyNaSbWsZ65vkwQy3WV2Pmyhw";
    const HASHED: &str = "|1|9O1T7AHr42vCckCCP7/NbqxmFiE=|JhlqVvLenv3VNmG4iOAoW/zKJn8=";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).unwrap()
    }

    fn presented(line: &str) -> PresentedKey {
        PresentedKey::from_blob(&key(line).to_bytes().unwrap()).unwrap()
    }

    /// A known_hosts file in a fresh directory, read for `relay.example:2222`.
    fn read(text: &str) -> KnownEntries {
        let dir = std::env::temp_dir().join(format!(
            "flytube-hostkey-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("known_hosts");
        fs::write(&path, text).unwrap();
        let entries = read_known_hosts(&path, "relay.example", 2222).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        entries
    }

    fn policy(known_hosts: bool, pin: Option<&str>) -> HostKeyPolicy {
        HostKeyPolicy {
            known_hosts: known_hosts.then(|| "/etc/kh".into()),
            fingerprint: pin.map(|p| Fingerprint::parse(p).unwrap()),
        }
    }

    #[test]
    fn fingerprints_are_what_ssh_keygen_prints() {
        for (line, fp) in [(ED25519, ED25519_FP), (ECDSA, ECDSA_FP), (RSA, RSA_FP)] {
            let p = presented(line);
            assert_eq!(p.fingerprint().to_string(), fp);
            assert!(Fingerprint::parse(fp).unwrap().matches(&p.fingerprint()));
            assert!(
                Fingerprint::parse(&format!(" {fp}=\n"))
                    .unwrap()
                    .matches(&p.fingerprint())
            );
        }
        assert!(
            !presented(OTHER)
                .fingerprint()
                .matches(&presented(ED25519).fingerprint())
        );
        assert_eq!(presented(RSA).key_type, "ssh-rsa");
        assert_eq!(presented(ECDSA).key_type, "ecdsa-sha2-nistp256");
    }

    #[test]
    fn malformed_fingerprints_are_refused_with_the_expected_form() {
        let sha512 = key(ED25519).fingerprint(HashAlg::Sha512).to_string();
        for text in [
            "MD5:aa:bb",
            "",
            "SHA256:",
            "SHA256:abc",
            "SHA256:VLkMiO7c+YKOsS3RYcRV3tzsEcsl533qzBZDRUbRSe",
            "SHA256:VLkMiO7c+YKOsS3RYcRV3tzsEcsl533qzBZDRUbRSe8A",
            "SHA256:VLkMiO7c+YKOsS3RYcRV3tzsEcsl533qzBZDRUbRS!8",
            "sha256:VLkMiO7c+YKOsS3RYcRV3tzsEcsl533qzBZDRUbRSe8",
            "VLkMiO7c+YKOsS3RYcRV3tzsEcsl533qzBZDRUbRSe8",
            &sha512,
        ] {
            let err = Fingerprint::parse(text).unwrap_err();
            assert!(
                err.contains(&format!("{text:?}")) && err.contains("ssh-keygen -lf"),
                "{err}"
            );
        }
    }

    #[test]
    fn unreadable_host_keys_are_errors_not_panics() {
        let good = key(ED25519).to_bytes().unwrap();
        let mut bad: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        bad.push([good.as_slice(), b"x"].concat());
        bad.push(b"\0\0\0\x0bssh-unknown\0\0\0\0".to_vec());
        bad.push(vec![0xff; 64]);
        for blob in bad {
            let err = PresentedKey::from_blob(&blob).unwrap_err();
            assert!(err.contains("offered algorithms ssh-ed25519, "), "{err}");
        }
    }

    #[test]
    fn known_hosts_line_round_trips() {
        let p = presented(ED25519);
        assert_eq!(p.known_hosts_line("relay", 22), format!("relay {ED25519}"));
        assert_eq!(
            p.known_hosts_line("10.0.0.1", 2222),
            format!("[10.0.0.1]:2222 {ED25519}")
        );
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
            &format!(
                "# comment\n\n@cert-authority *.x {ED25519}\nhost ssh-ed25519\n\
                 host ssh-ed25519 !!\nhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n\
                 @revoked  host\t{ED25519}\nhost {ED25519} a comment\n@bogus host {ED25519}\n\
                 host {}\nhost ssh-rsa {}\ngarbage\n@revoked\n\x00\x7f é\n",
                RSA.replace("ssh-rsa", "ssh-ed25519"),
                ED25519.split_once(' ').unwrap().1,
            ),
            &mut skipped,
        );
        assert_eq!(lines.len(), 2);
        assert!(lines[0].revoked && !lines[1].revoked);
        assert_eq!(lines[0].number, 7);
        assert_eq!(lines[1].key.key_data(), key(ED25519).key_data());
        assert_eq!(skipped.len(), 10, "{skipped:?}");
        assert!(skipped[0].starts_with("line 3: @cert-authority"));
        assert!(skipped[1].starts_with("line 4: expected [@revoked] HOSTS KEYTYPE"));
        assert!(skipped[4].starts_with("line 9: unknown marker @bogus"));
        // The declared type must match the key inside.
        assert!(skipped[5].starts_with("line 10: expected"), "{skipped:?}");
        assert!(skipped[6].starts_with("line 11: expected"), "{skipped:?}");
    }

    #[test]
    fn patterns_follow_openssh() {
        let lookup = |host, port| lookup_name(host, port);
        let m = |patterns: &str, host, port| {
            let list = patterns.split(',').map(str::to_string).collect();
            hosts_match(&HostPatterns::Patterns(list), &lookup(host, port))
        };
        assert!(m("relay.example", "relay.example", 22));
        assert!(
            !m("relay.example", "relay.example", 2222),
            "port 22 entries only"
        );
        assert!(m("[relay.example]:2222", "relay.example", 2222));
        assert!(m("*.example", "Relay.Example", 22));
        assert!(m("relay?.example", "relay1.example", 22));
        assert!(!m("relay?.example", "relay12.example", 22));
        assert!(m("*", "[relay.example]:2222", 22) || m("*", "relay.example", 2222));
        assert!(
            !m("*.example,!relay.example", "relay.example", 22),
            "negation wins"
        );
        assert!(m("*.example,!relay.example", "other.example", 22));
        assert!(
            !m("!relay.example", "other.example", 22),
            "negation alone never matches"
        );
        assert!(glob_match(b"a*b*c", b"aXbYc") && !glob_match(b"a*b*c", b"aXbY"));
        assert!(glob_match(&[b'*'; 64], &[b'a'; 64]));
    }

    #[test]
    fn long_lines_are_left_to_nobody() {
        let mut skipped = Vec::new();
        let hosts = vec!["h"; 5000].join(",");
        let lines = parse_known_hosts(&format!("{hosts} {ED25519}\n"), &mut skipped);
        assert!(lines.is_empty());
        assert!(skipped[0].contains("8 KiB"), "{skipped:?}");
    }

    #[test]
    fn known_hosts_match_plain_hashed_and_revoked_entries() {
        let entries = read(&format!(
            "other.example {OTHER}\n[relay.example]:2222 {ECDSA}\n{HASHED} {ED25519}\n\
             @revoked relay.example,[relay.example]:2222 {OTHER}\nbroken line\n"
        ));
        assert_eq!(entries.key_types(), ["ecdsa-sha2-nistp256", "ssh-ed25519"]);
        assert_eq!(entries.revoked, [key(OTHER)]);
        assert_eq!(entries.skipped.len(), 1, "{:?}", entries.skipped);

        let err = read_known_hosts(Path::new("/nonexistent/kh"), "h", 22).unwrap_err();
        assert!(err.contains("known_hosts file /nonexistent/kh"), "{err}");
    }

    #[test]
    fn verification_needs_every_configured_check() {
        let entries = read(&format!(
            "[relay.example]:2222 {ED25519} comment\n@revoked [relay.example]:2222 {OTHER}\n"
        ));
        let check = |key: &str, policy: &HostKeyPolicy| {
            verify(
                &presented(key),
                policy,
                Some(&entries),
                "relay.example",
                2222,
            )
        };
        assert!(check(ED25519, &policy(true, None)).is_ok());
        assert!(check(ED25519, &policy(true, Some(ED25519_FP))).is_ok());
        assert!(check(ED25519, &policy(false, Some(ED25519_FP))).is_ok());

        let err = check(ED25519, &policy(true, Some(RSA_FP))).unwrap_err();
        assert!(
            err.contains(&format!("the pinned fingerprint is {RSA_FP}")),
            "{err}"
        );
        let err = check(OTHER, &policy(true, None)).unwrap_err();
        assert!(err.contains("/etc/kh marks @revoked"), "{err}");
        let err = check(ECDSA, &policy(true, None)).unwrap_err();
        assert!(
            err.contains(&format!("presented ecdsa-sha2-nistp256 {ECDSA_FP}"))
                && err.contains(&format!(
                    "lists ssh-ed25519 {ED25519_FP} for relay.example:2222"
                )),
            "{err}"
        );

        let none = KnownEntries::default();
        let err = verify(
            &presented(ECDSA),
            &policy(true, None),
            Some(&none),
            "relay.example",
            2222,
        )
        .unwrap_err();
        assert!(
            err.contains("has no entry for relay.example:2222")
                && err.contains(&format!("add this line: [relay.example]:2222 {ECDSA}")),
            "{err}"
        );
    }
}

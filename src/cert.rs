//! OpenSSH certificates as an operator sees them: type, serial, key id, principals and
//! validity (decoded by the `ssh-key` crate), and the one notice about a certificate's
//! validity that both the daemon and `check` give.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A certificate closer than this to its end gets a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// What a `*-cert.pub` file must hold, for error messages.
const EXPECTED_CERTIFICATE: &str = "expected one OpenSSH certificate line \
    (TYPE-cert-v01@openssh.com BASE64 [COMMENT]) as `ssh-keygen -s CA ... KEY.pub` writes \
    it to KEY-cert.pub";

/// The parts of an OpenSSH certificate that matter to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Certificate type, e.g. `ssh-ed25519-cert-v01@openssh.com`.
    pub cert_type: String,
    /// Serial number.
    pub serial: u64,
    /// Key id chosen by the CA.
    pub key_id: String,
    /// Principals the certificate is valid for (empty: any).
    pub principals: Vec<String>,
    /// Valid from (seconds since the epoch).
    pub valid_after: u64,
    /// Valid until (seconds since the epoch; `u64::MAX`: forever).
    pub valid_before: u64,
}

/// Where a certificate stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid, with this many seconds left.
    Valid(u64),
    /// Not valid yet.
    NotYet,
    /// Expired.
    Expired,
}

/// How much a certificate's validity needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Still accepted, but not for long.
    Warn,
    /// The relay refuses it now.
    Fail,
}

/// What to tell an operator about a certificate's validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// How urgent it is.
    pub severity: Severity,
    /// A short state for a status line (`EXPIRED`, `NOT YET VALID`, `EXPIRES SOON`).
    pub state: &'static str,
    /// What is wrong and what to do, as a sentence that starts with "the certificate".
    pub advice: String,
}

impl Certificate {
    /// Parses the text of a `*-cert.pub` file. The error says what was expected; callers
    /// add the file name.
    pub fn parse(text: &str) -> Result<Certificate, String> {
        let line = openssh_line(text)
            .ok_or_else(|| format!("the file is empty; {EXPECTED_CERTIFICATE}"))?;
        let cert = ssh_key::Certificate::from_openssh(&line).map_err(|e| {
            // A plain public key is the most likely mix-up (KEY.pub for KEY-cert.pub).
            match ssh_key::PublicKey::from_openssh(&line) {
                Ok(key) => format!(
                    "this is a plain {} public key, not an OpenSSH certificate; {EXPECTED_CERTIFICATE}",
                    key.algorithm().as_str()
                ),
                Err(_) => format!("{EXPECTED_CERTIFICATE} (it does not decode: {e})"),
            }
        })?;
        Ok(Certificate {
            cert_type: cert.algorithm().to_certificate_type(),
            serial: cert.serial(),
            key_id: cert.key_id().to_string(),
            principals: cert.valid_principals().to_vec(),
            valid_after: cert.valid_after(),
            valid_before: cert.valid_before(),
        })
    }

    /// Validity at `now` (seconds since the epoch).
    pub fn validity_at(&self, now: u64) -> Validity {
        if now < self.valid_after {
            Validity::NotYet
        } else if now >= self.valid_before {
            Validity::Expired
        } else {
            Validity::Valid(self.valid_before - now)
        }
    }

    /// Validity now.
    pub fn validity(&self) -> Validity {
        self.validity_at(now_secs())
    }

    /// What an operator must hear about this certificate at `now`, if anything: expired,
    /// not valid yet, or closer than [`EXPIRY_WARNING`] to its end.
    pub fn notice_at(&self, now: u64) -> Option<Notice> {
        let (severity, state, advice) = match self.validity_at(now) {
            Validity::Expired => (
                Severity::Fail,
                "EXPIRED",
                format!(
                    "the certificate expired at {}: renew it",
                    format_utc(self.valid_before)
                ),
            ),
            Validity::NotYet => (
                Severity::Fail,
                "NOT YET VALID",
                format!(
                    "the certificate is valid only from {}: check this machine's clock or \
                     re-sign it",
                    format_utc(self.valid_after)
                ),
            ),
            Validity::Valid(left) if Duration::from_secs(left) < EXPIRY_WARNING => (
                Severity::Warn,
                "EXPIRES SOON",
                format!(
                    "the certificate expires in {:.1} days, at {}: renew it soon",
                    left as f64 / 86_400.0,
                    format_utc(self.valid_before)
                ),
            ),
            Validity::Valid(_) => return None,
        };
        Some(Notice {
            severity,
            state,
            advice,
        })
    }

    /// [`Certificate::notice_at`] now.
    pub fn notice(&self) -> Option<Notice> {
        self.notice_at(now_secs())
    }

    /// `from .. to` in UTC.
    pub fn window(&self) -> String {
        format!(
            "{} .. {}",
            format_utc(self.valid_after),
            format_utc(self.valid_before)
        )
    }
}

/// The key type of an OpenSSH public key line (the text of a `KEY.pub` file), e.g.
/// `ssh-ed25519`, as decoded from the key itself. The error says what was expected.
pub fn public_key_type(text: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected one OpenSSH public key line (TYPE BASE64 [COMMENT]) as \
                            `ssh-keygen` writes it to KEY.pub";
    let line = openssh_line(text).ok_or_else(|| format!("the file is empty; {EXPECTED}"))?;
    let key = ssh_key::PublicKey::from_openssh(&line)
        .map_err(|e| format!("{EXPECTED} (it does not decode: {e})"))?;
    Ok(key.algorithm().as_str().to_string())
}

/// The type and base64 fields of the first line with any, joined by one space: `ssh-key`
/// splits on single spaces, while OpenSSH accepts any run of blanks (and a trailing
/// comment, which nothing here needs).
fn openssh_line(text: &str) -> Option<String> {
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    (!fields.is_empty()).then(|| fields.join(" "))
}

/// Seconds since the epoch now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SSZ`, or `forever` / `always` for the open ends.
pub fn format_utc(secs: u64) -> String {
    if secs == u64::MAX {
        return "forever".into();
    }
    if secs == 0 {
        return "always".into();
    }
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with ssh-keygen: an ed25519 CA signed an ed25519 key without -V (valid forever,
    // serial 7) and an ECDSA key for alice and bob, valid 2020-01-01 .. 2020-01-02 (serial
    // 42).
    const FOREVER: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIC4OGHP8Q5AobfJ0QqoCkQ6jZPAjrnWKOE748zfmJ8aKAAAAIGZodWNdEGeIAzkbrxNlaWwD3xA4xIeXHk+9MNcYanEoAAAAAAAAAAcAAAABAAAAC2ZvcmV2ZXIta2V5AAAAAAAAAAAAAAAA//////////8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA3Fo5O/Cldyyo8l5xKteIRr4xZIurW/3/uouYHglNViAAAAFMAAAALc3NoLWVkMjU1MTkAAABAYi9Yz2WSv6SZUqBbeBqwxmorCY0pMMpG1YkzjrRJagVNRRYcIqOwsK0ZZLCyCReEI7i7T9vEvB6Jj2+2ajQ8Bg== forever.pub";
    const ECDSA_2020: &str = "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgkzrsOxhBn/i18pMAbE6r/E/tAvv2ilE8ty3QQovsge0AAAAIbmlzdHAyNTYAAABBBJ7baZcSfSwlzfNftBRAZXYDui6TMy/LojVlpRELpKBzNOOHKljk76bC1Ghxvjz68BPTLDVGCHnTGGXUm0X7gQYAAAAAAAAAKgAAAAEAAAAGZWMta2V5AAAAEAAAAAVhbGljZQAAAANib2IAAAAAXgvhAAAAAABeDTKAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgNxaOTvwpXcsqPJecSrXiEa+MWSLq1v9/7qLmB4JTVYgAAABTAAAAC3NzaC1lZDI1NTE5AAAAQCGcuIfGzTnNI6LF0rURO/R0yyAtCSe8LBfAvzthydduTaSRVHJB8KX6PzxpGP4ovSmvTrO7Fa2J4fhN9F8g8QU= ec.pub";
    const PLAIN_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZodWNdEGeIAzkbrxNlaWwD3xA4xIeXHk+9MNcYanEo";

    fn cert(valid_after: u64, valid_before: u64) -> Certificate {
        Certificate {
            cert_type: "ssh-ed25519-cert-v01@openssh.com".into(),
            serial: 1,
            key_id: "k".into(),
            principals: vec![],
            valid_after,
            valid_before,
        }
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_utc(1), "1970-01-01 00:00:01Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(format_utc(1_795_564_800), "2026-11-25 00:00:00Z");
        assert_eq!(format_utc(u64::MAX), "forever");
    }

    #[test]
    fn validity_edges() {
        let c = cert(100, 200);
        assert_eq!(c.validity_at(99), Validity::NotYet);
        assert_eq!(c.validity_at(150), Validity::Valid(50));
        assert_eq!(c.validity_at(200), Validity::Expired);
    }

    #[test]
    fn reads_the_fields_of_real_certificates() {
        let c = Certificate::parse(ECDSA_2020).unwrap();
        assert_eq!(c.cert_type, "ecdsa-sha2-nistp256-cert-v01@openssh.com");
        assert_eq!((c.serial, c.key_id.as_str()), (42, "ec-key"));
        assert_eq!(c.principals, ["alice", "bob"]);
        assert_eq!(c.window(), "2020-01-01 00:00:00Z .. 2020-01-02 00:00:00Z");
        assert_eq!(c.validity(), Validity::Expired);

        // OpenSSH's "forever" is valid_before = 2^64-1; ssh-key 0.6 rejected it.
        let f = Certificate::parse(&format!("  {FOREVER}\n")).unwrap();
        assert_eq!((f.serial, f.key_id.as_str()), (7, "forever-key"));
        assert!(f.principals.is_empty());
        assert_eq!(f.window(), "always .. forever");
        assert!(matches!(f.validity(), Validity::Valid(_)));
        assert_eq!(f.notice(), None);

        // Tabs between the fields, as OpenSSH accepts them.
        assert!(Certificate::parse(&FOREVER.replacen(' ', "\t", 1)).is_ok());
    }

    #[test]
    fn notices_name_the_state_and_the_fix() {
        let day = 86_400;
        let c = cert(10 * day, 30 * day);
        assert_eq!(c.notice_at(11 * day), None);
        let soon = c.notice_at(27 * day).unwrap();
        assert_eq!(soon.severity, Severity::Warn);
        assert_eq!(
            soon.advice,
            "the certificate expires in 3.0 days, at 1970-01-31 00:00:00Z: renew it soon"
        );
        let expired = c.notice_at(30 * day).unwrap();
        assert_eq!(
            (expired.severity, expired.state),
            (Severity::Fail, "EXPIRED")
        );
        assert!(
            expired
                .advice
                .starts_with("the certificate expired at 1970-01-31")
        );
        let early = c.notice_at(day).unwrap();
        assert_eq!(
            (early.severity, early.state),
            (Severity::Fail, "NOT YET VALID")
        );
        assert!(early.advice.contains("valid only from 1970-01-11"));
    }

    #[test]
    fn malformed_certificates_are_errors_that_say_what_was_expected() {
        let (kind, blob) = FOREVER.split_once(' ').unwrap();
        let blob = blob
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('=');
        let mut bad: Vec<String> = vec![
            String::new(),
            " \n\t".into(),
            "garbage".into(),
            "ssh-ed25519-cert-v01@openssh.com".into(),
            "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
            "ssh-ed25519-cert-v01@openssh.com !!!!".into(),
            format!("ssh-rsa-cert-v01@openssh.com {blob}"),
            format!("{kind} {}", blob.replace('A', "é")),
            "\u{0}\u{1}\u{2}".into(),
        ];
        // Truncated at every length, with and without padding.
        for n in 1..blob.len() {
            bad.push(format!("{kind} {}", &blob[..n]));
            bad.push(format!("{kind} {}==", &blob[..n]));
        }
        for text in &bad {
            let err = Certificate::parse(text).unwrap_err();
            assert!(
                err.contains("expected one OpenSSH certificate"),
                "{text:?}: {err}"
            );
        }
        let err = Certificate::parse(PLAIN_KEY).unwrap_err();
        assert!(
            err.contains("plain ssh-ed25519 public key, not an OpenSSH certificate"),
            "{err}"
        );
    }

    #[test]
    fn public_key_types_come_from_the_key() {
        assert_eq!(
            public_key_type(&format!("{PLAIN_KEY} me@host\n")).unwrap(),
            "ssh-ed25519"
        );
        // The declared type must match the key inside.
        let lying = PLAIN_KEY.replace("ssh-ed25519", "ssh-rsa");
        for text in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 AAAAC3Nz",
            lying.as_str(),
            FOREVER,
        ] {
            let err = public_key_type(text).unwrap_err();
            assert!(
                err.contains("expected one OpenSSH public key line"),
                "{text:?}: {err}"
            );
        }
    }
}

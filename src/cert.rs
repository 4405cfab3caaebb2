//! Reading an OpenSSH certificate file: type, serial, key id, principals and validity,
//! so flytube can warn before a certificate expires and `check` can explain a rejection;
//! and the one notice about a certificate's validity that both the daemon and `check` give.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::base64;

/// A certificate closer than this to its end gets a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

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
    /// Parses the text of a `*-cert.pub` file.
    pub fn parse(text: &str) -> Result<Certificate, String> {
        let mut fields = text.split_whitespace();
        let declared = fields.next().ok_or("the file is empty")?;
        if !declared.contains("-cert-v01@openssh.com") {
            return Err(format!("{declared:?} is not an OpenSSH certificate type"));
        }
        let blob = fields
            .next()
            .and_then(base64::decode)
            .ok_or("the certificate is not base64")?;
        let mut r = Reader(&blob);
        let cert_type = r.string_utf8()?;
        r.string()?; // nonce
        // The public key fields differ per key type.
        let key_fields = match cert_type.as_str() {
            t if t.starts_with("ssh-ed25519") => 1,
            t if t.starts_with("ssh-rsa") => 2,
            t if t.starts_with("ecdsa-sha2-") => 2,
            t if t.starts_with("sk-ssh-ed25519") => 2,
            t if t.starts_with("sk-ecdsa-sha2-") => 3,
            other => return Err(format!("unsupported certificate type {other:?}")),
        };
        for _ in 0..key_fields {
            r.string()?;
        }
        let serial = r.u64()?;
        let _kind = r.u32()?;
        let key_id = r.string_utf8()?;
        let mut packed = Reader(r.string()?);
        let mut principals = Vec::new();
        while !packed.0.is_empty() {
            principals.push(packed.string_utf8()?);
        }
        let valid_after = r.u64()?;
        let valid_before = r.u64()?;
        Ok(Certificate {
            cert_type,
            serial,
            key_id,
            principals,
            valid_after,
            valid_before,
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

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the certificate is truncated".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn string(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn string_utf8(&mut self) -> Result<String, String> {
        String::from_utf8(self.string()?.to_vec())
            .map_err(|_| "a certificate field is not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(format_utc(1), "1970-01-01 00:00:01Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(format_utc(1_795_564_800), "2026-11-25 00:00:00Z");
        assert_eq!(format_utc(u64::MAX), "forever");
    }

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
    fn validity_edges() {
        let c = cert(100, 200);
        assert_eq!(c.validity_at(99), Validity::NotYet);
        assert_eq!(c.validity_at(150), Validity::Valid(50));
        assert_eq!(c.validity_at(200), Validity::Expired);
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
    fn rejects_non_certificates() {
        assert!(
            Certificate::parse("ssh-ed25519 AAAA x")
                .unwrap_err()
                .contains("not an OpenSSH certificate")
        );
        assert!(Certificate::parse("").is_err());
        assert!(
            Certificate::parse("ssh-ed25519-cert-v01@openssh.com AAAA")
                .unwrap_err()
                .contains("truncated")
        );
    }
}

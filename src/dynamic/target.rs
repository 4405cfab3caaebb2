//! The destination a proxy client asks for: a DNS name or an address, and a port.

use std::fmt;
use std::net::IpAddr;

/// Longest name a request may carry: the SOCKS5 length byte's limit (a DNS name in text
/// form is at most 253 characters, so nothing valid is lost).
pub const MAX_NAME_LEN: usize = 255;
/// Longest DNS name in text form without the trailing dot (RFC 1035 §2.3.4: 255 octets on
/// the wire).
const MAX_DNS_NAME: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// A host as asked for: a name to resolve inside the network, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// An IP address literal.
    Addr(IpAddr),
}

impl Host {
    /// Reads host text from a request or a rule: an IP literal becomes `Addr`, anything else
    /// must be a DNS name. The error says what is wrong, without repeating the text.
    pub fn parse(text: &str) -> Result<Host, String> {
        match text.parse::<IpAddr>() {
            Ok(addr) => Ok(Host::Addr(addr)),
            Err(_) => normalize_name(text).map(Host::Name),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// A host and a port: what a client asked to reach.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Name or address asked for.
    pub host: Host,
    /// Port asked for, 1-65535.
    pub port: u16,
}

impl Target {
    /// A name target (the name is taken as given: use `Host::parse` to validate text).
    pub fn name(name: &str, port: u16) -> Target {
        Target {
            host: Host::Name(name.to_string()),
            port,
        }
    }

    /// An address target.
    pub fn addr(addr: IpAddr, port: u16) -> Target {
        Target {
            host: Host::Addr(addr),
            port,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Addr(IpAddr::V6(addr)) => write!(f, "[{addr}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// Checks a DNS name and returns it lower-case without its trailing dot, so `Db.Corp.` and
/// `db.corp` compare equal. Letters, digits, `-` and `_` only (underscores appear in real
/// internal names); anything else could not resolve and would only pollute the log.
pub fn normalize_name(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_DNS_NAME {
        return Err(format!("the name is longer than {MAX_DNS_NAME} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("the name has an empty label".into());
        }
        if label.len() > MAX_LABEL {
            return Err(format!("a label is longer than {MAX_LABEL} characters"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("the name contains {bad:?}"));
        }
    }
    if looks_numeric(name) {
        // getaddrinfo reads `127.1`, `0x7f.1` or `017.0.0.1` as addresses (inet_aton), so
        // a "name" like that would dodge the address checks a real literal gets.
        return Err("the name looks like a numeric address; write the address itself".into());
    }
    Ok(name.to_ascii_lowercase())
}

/// True when the last label is all digits or `0x` + hex: never a host name (RFC 3696 §2:
/// top-level domains are not all-numeric), always something inet_aton would take.
fn looks_numeric(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_hexdigit()));
    hex || last.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_without_the_trailing_dot() {
        assert_eq!(
            Host::parse("Db.Corp.Example."),
            Ok(Host::Name("db.corp.example".into()))
        );
        assert_eq!(Host::parse("_srv.x-y"), Ok(Host::Name("_srv.x-y".into())));
    }

    #[test]
    fn literals_are_addresses() {
        assert_eq!(
            Host::parse("10.0.0.1"),
            Ok(Host::Addr("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            Host::parse("::ffff:127.0.0.1"),
            Ok(Host::Addr("::ffff:127.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "a/b",
            "a\nb",
            "é.example",
            "127.1",
            "0x7f.1",
            "017.0.0.1",
            "0x7f000001",
            "2130706433",
            "[::1]",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Host::parse(&"a".repeat(64)).is_err());
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(Host::parse(&long).is_err(), "{} chars accepted", long.len());
        let fits = vec!["a".repeat(63); 4].join(".")[..253].to_string();
        assert!(Host::parse(&fits).is_ok());
    }

    #[test]
    fn targets_print_ipv6_in_brackets() {
        assert_eq!(
            Target::addr("fd00::1".parse().unwrap(), 443).to_string(),
            "[fd00::1]:443"
        );
        assert_eq!(Target::name("db", 5432).to_string(), "db:5432");
    }
}

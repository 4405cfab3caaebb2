//! One allow-list rule: `HOST[:PORT]` or `HOST:LOW-HIGH`, where HOST is a DNS name,
//! `*.domain`, `*`, an IP address or a CIDR block, and what it matches. The policy that
//! combines rules lives in `allow`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::target::normalize_name;

/// What a rule may be, for error messages.
const RULE_SYNTAX: &str = "a rule is HOST[:PORT] or HOST:LOW-HIGH, where HOST is a DNS name, \
     *.domain, *, an IP address or a CIDR (IPv6 in brackets when a port follows, \
     e.g. [fd00::/8]:443)";

/// An address block: `addr/prefix` with no host bits set, IPv4-mapped blocks as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub(super) const fn v4(addr: Ipv4Addr, prefix: u8) -> Net {
        Net {
            addr: IpAddr::V4(addr),
            prefix,
        }
    }

    pub(super) const fn v6(addr: Ipv6Addr, prefix: u8) -> Net {
        Net {
            addr: IpAddr::V6(addr),
            prefix,
        }
    }

    /// `addr` or `addr/prefix`.
    fn parse(text: &str) -> Result<Net, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{addr_text:?} is not an IP address"))?;
        let bits = bits_of(addr);
        let prefix = match prefix_text {
            None => bits,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(prefix) if prefix <= bits => prefix,
                    _ => return Err(format!("prefix /{p} is outside 0-{bits}")),
                }
            }
            Some(p) => return Err(format!("prefix /{p} is not a number")),
        };
        let net = Net { addr, prefix };
        if net.network() != addr {
            return Err(format!(
                "{text} has bits set after the prefix; the block is {}/{prefix}",
                net.network()
            ));
        }
        Ok(net.canonical())
    }

    /// The address with every bit after the prefix cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask128(self.prefix))),
        }
    }

    /// `::ffff:a.b.c.d/96+n` is the IPv4 block `a.b.c.d/n`: addresses are compared in
    /// their IPv4 form, so rules must be too.
    fn canonical(self) -> Net {
        match self.addr {
            IpAddr::V6(a) if self.prefix >= 96 => match a.to_ipv4_mapped() {
                Some(v4) => Net::v4(v4, self.prefix - 96),
                None => self,
            },
            _ => self,
        }
    }

    /// True when `addr` (canonical) is in the block.
    pub(super) fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => a.to_bits() & mask32(self.prefix) == net.to_bits(),
            (IpAddr::V6(net), IpAddr::V6(a)) => a.to_bits() & mask128(self.prefix) == net.to_bits(),
            _ => false,
        }
    }

    /// True when the whole block lies inside `outer`.
    fn within(&self, outer: &Net) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.addr)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits_of(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// What a rule's HOST part matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: any name.
    AnyName,
    /// `*.domain`: any name ending in `.domain`.
    Subdomains(String),
    /// An exact name.
    Name(String),
    /// An address or a CIDR block.
    Net(Net),
}

/// One allow or deny rule: `HOST[:PORT]` or `HOST:LOW-HIGH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(super) text: String,
    pattern: Pattern,
    low: u16,
    high: u16,
}

impl Rule {
    /// Parses one rule. The error names the rule, what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        Rule::parse_inner(text).map_err(|e| format!("rule {text:?}: {e}; {RULE_SYNTAX}"))
    }

    fn parse_inner(text: &str) -> Result<Rule, String> {
        if text.is_empty() {
            return Err("the rule is empty".into());
        }
        let (host, ports, bracketed) = split_rule(text)?;
        let pattern = if bracketed {
            if !host
                .split('/')
                .next()
                .is_some_and(|addr| addr.contains(':'))
            {
                return Err("brackets are for IPv6 addresses only".into());
            }
            Pattern::Net(Net::parse(host)?)
        } else if host == "*" {
            Pattern::AnyName
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                return Err("a wildcard may only be `*` or a leading `*.`".into());
            }
            Pattern::Subdomains(normalize_name(domain)?)
        } else if host.contains('*') {
            return Err("a wildcard may only be `*` or a leading `*.`".into());
        } else if host.contains('/') || host.parse::<IpAddr>().is_ok() {
            Pattern::Net(Net::parse(host)?)
        } else {
            Pattern::Name(normalize_name(host)?)
        };
        let (low, high) = match ports {
            None => (1, u16::MAX),
            Some(spec) => parse_ports(spec)?,
        };
        Ok(Rule {
            text: text.to_string(),
            pattern,
            low,
            high,
        })
    }

    /// The rule as written (trimmed), for logs.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The DNS name or domain of a name rule (`db.corp` for `db.corp` and `*.db.corp`).
    pub fn name(&self) -> Option<&str> {
        match &self.pattern {
            Pattern::Name(name) | Pattern::Subdomains(name) => Some(name),
            Pattern::AnyName | Pattern::Net(_) => None,
        }
    }

    /// True for address and CIDR rules, the only ones that can open guarded ranges.
    pub fn is_address(&self) -> bool {
        matches!(self.pattern, Pattern::Net(_))
    }

    pub(super) fn has_port(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    /// A name rule that matches `name` (normalized) and `port`.
    pub(super) fn matches_name(&self, name: &str, port: u16) -> bool {
        self.has_port(port)
            && match &self.pattern {
                Pattern::AnyName => true,
                Pattern::Subdomains(domain) => name
                    .strip_suffix(domain.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                Pattern::Name(exact) => exact == name,
                Pattern::Net(_) => false,
            }
    }

    /// An address rule that covers `addr` (canonical) and `port`.
    pub(super) fn covers(&self, addr: IpAddr, port: u16) -> bool {
        self.has_port(port) && matches!(&self.pattern, Pattern::Net(net) if net.contains(addr))
    }

    /// An address rule lying wholly inside `range`: it names guarded addresses explicitly.
    pub(super) fn inside(&self, range: &Net) -> bool {
        matches!(&self.pattern, Pattern::Net(net) if net.within(range))
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Rule, String> {
        Rule::parse(text)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits HOST from the port part: `[v6 or v6/len]:PORT`, bare IPv6 (two colons or more,
/// no port), or `host:PORT`. Returns whether the host was bracketed.
fn split_rule(text: &str) -> Result<(&str, Option<&str>, bool), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("'[' without ']'")?;
        return match after {
            "" => Ok((host, None, true)),
            _ => match after.strip_prefix(':') {
                Some(ports) => Ok((host, Some(ports), true)),
                None => Err(format!("unexpected {after:?} after ']'")),
            },
        };
    }
    if text.contains(['[', ']']) {
        return Err("brackets must enclose the whole IPv6 address".into());
    }
    if text.matches(':').count() >= 2 {
        return Ok((text, None, false));
    }
    match text.split_once(':') {
        Some((host, ports)) => Ok((host, Some(ports), false)),
        None => Ok((text, None, false)),
    }
}

/// `PORT` or `LOW-HIGH`, each in 1-65535.
fn parse_ports(spec: &str) -> Result<(u16, u16), String> {
    let port = |text: &str| -> Result<u16, String> {
        if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {text:?} is not a number in 1-65535"));
        }
        match text.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("port {text} is outside 1-65535")),
        }
    };
    match spec.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (port(low)?, port(high)?);
            if low > high {
                return Err(format!("port range {spec} runs backwards"));
            }
            Ok((low, high))
        }
        None => port(spec).map(|p| (p, p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- parsing ----

    #[test]
    fn rules_that_parse() {
        let good = [
            "db.corp.example",
            "DB.Corp.Example.:5432",
            "*.corp.example:443",
            "*:8000-8999",
            "*",
            "10.0.0.7",
            "10.0.0.0/8:22",
            "0.0.0.0/0",
            "fd00::1",
            "fd00::/8",
            "[fd00::1]:443",
            "[fd00::/8]:1-1024",
            "[::ffff:10.0.0.0/104]",
            " git.corp:22 ",
        ];
        for text in good {
            let rule = Rule::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rule.as_str(), text.trim());
            assert_eq!(rule.to_string(), text.trim());
        }
        assert!("*.corp:80".parse::<Rule>().is_ok());
    }

    #[test]
    fn bad_rules_name_the_rule_and_the_syntax() {
        let bad = [
            "",
            "db.corp:",
            "db.corp:0",
            "db.corp:65536",
            "db.corp:http",
            "db.corp:+80",
            "db.corp:90-80",
            "db.corp:80-",
            "db.corp:1:2",
            "db corp",
            "*.*.corp",
            "db.*.corp",
            "*corp",
            "**",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/x",
            "10.0.0.0/",
            "10.0.0",
            "fd00::1/129",
            "[fd00::1",
            "[fd00::1]443",
            "[db.corp]:80",
            "[10.0.0.1]:80",
            "fd00::[1]",
            "0x7f000001",
        ];
        for text in bad {
            let err = Rule::parse(text).expect_err(text);
            assert!(
                err.starts_with(&format!("rule {:?}: ", text.trim())),
                "{err}"
            );
            assert!(err.contains("HOST[:PORT] or HOST:LOW-HIGH"), "{err}");
        }
        let err = Rule::parse("10.0.0.1/8").unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
    }
}

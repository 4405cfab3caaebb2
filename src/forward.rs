//! One remote forward: a port on the relay and the target it leads to inside the network.

use std::fmt;

/// The address the relay binds when a forward names none: loopback, as `ssh -R` asks for.
pub const DEFAULT_BIND: &str = "localhost";
/// How a forward bound to every interface of the relay (`*` or an empty bind address) is
/// written; the relay is sent an empty address for it, exactly as `ssh -R` does (OpenSSH
/// `channel_rfwd_bind_host`), and its `GatewayPorts` decides.
pub const ALL_INTERFACES: &str = "*";

/// A validated `[BIND:]SOURCE_PORT:TARGET_HOST:TARGET_PORT` forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Address the relay listens on: `None` for loopback (`localhost`, like `ssh -R`),
    /// `Some("")` for every interface (written `*`), else the address.
    pub bind: Option<String>,
    /// Port the relay listens on.
    pub source_port: u16,
    /// Host flytube dials inside the network.
    pub target_host: String,
    /// Port flytube dials inside the network.
    pub target_port: u16,
}

impl ForwardSpec {
    /// The bind address sent to the relay.
    pub fn bind_address(&self) -> &str {
        self.bind.as_deref().unwrap_or(DEFAULT_BIND)
    }

    /// The bind address as people write it: `*` for every interface.
    pub fn bind_display(&self) -> &str {
        match self.bind.as_deref() {
            Some("") => ALL_INTERFACES,
            other => other.unwrap_or(DEFAULT_BIND),
        }
    }

    /// `host:port` of the target, with IPv6 literals in brackets.
    pub fn target(&self) -> String {
        join_host_port(&self.target_host, self.target_port)
    }

    /// Parses the `ssh -R` syntax. The error names the spec and says what is allowed.
    pub fn parse(spec: &str) -> Result<ForwardSpec, String> {
        let fields = split_fields(spec).ok_or_else(|| {
            format!("forward {spec:?}: unbalanced '[' ']' (write IPv6 addresses as [2001:db8::1])")
        })?;
        let (bind, source, host, target) = match fields.as_slice() {
            [source, host, target] => (None, source, host, target),
            [bind, source, host, target] => (Some(bind), source, host, target),
            _ => {
                return Err(format!(
                    "forward {spec:?}: expected [BIND:]SOURCE_PORT:TARGET_HOST:TARGET_PORT"
                ));
            }
        };
        let bind = bind.map(|b| normalize_bind(b));
        let forward = ForwardSpec {
            bind,
            source_port: parse_port(source)
                .map_err(|e| format!("forward {spec:?}: source port {e}"))?,
            target_host: host.to_string(),
            target_port: parse_port(target)
                .map_err(|e| format!("forward {spec:?}: target port {e}"))?,
        };
        forward
            .validate()
            .map_err(|e| format!("forward {spec:?}: {e}"))?;
        Ok(forward)
    }

    /// Checks the fields of a forward built from separate values (YAML, environment).
    pub fn validate(&self) -> Result<(), String> {
        if self.source_port == 0 {
            return Err("source port 0 is not allowed (use 1-65535)".into());
        }
        if self.target_port == 0 {
            return Err("target port 0 is not allowed (use 1-65535)".into());
        }
        validate_host("target host", &self.target_host)?;
        if let Some(bind) = self.bind.as_deref().filter(|b| !b.is_empty()) {
            validate_host("bind address", bind)?;
        }
        Ok(())
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}",
            join_host_port(self.bind_display(), self.source_port),
            self.target()
        )
    }
}

/// A bind address as written (`-R`, YAML): `*` and the empty string both mean every
/// interface and are sent to the relay as the empty address.
pub fn normalize_bind(text: &str) -> String {
    match text {
        ALL_INTERFACES => String::new(),
        other => other.to_string(),
    }
}

/// Parses a TCP port in 1-65535; the error says what was wrong with the text.
pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        Ok(port) => Err(format!("{port} is outside 1-65535")),
        Err(_) => Err(format!("{text:?} is not a number in 1-65535")),
    }
}

/// `host:port`, with brackets around IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn validate_host(what: &str, host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if host.len() > 253 {
        return Err(format!("{what} is longer than 253 characters"));
    }
    if let Some(bad) = host.chars().find(|c| {
        c.is_whitespace() || crate::text::is_unsafe_char(*c) || matches!(c, '/' | '@' | '[' | ']')
    }) {
        return Err(format!("{what} {host:?} contains {bad:?}"));
    }
    Ok(())
}

/// Splits on ':' outside brackets and strips the brackets; `None` when they do not balance.
fn split_fields(spec: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut in_brackets = false;
    let mut bracketed = false;
    for c in spec.chars() {
        match c {
            '[' if !in_brackets && current.is_empty() && !bracketed => {
                in_brackets = true;
                bracketed = true;
            }
            ']' if in_brackets => in_brackets = false,
            '[' | ']' => return None,
            ':' if !in_brackets => {
                fields.push(std::mem::take(&mut current));
                bracketed = false;
            }
            c if bracketed && !in_brackets => {
                // Text after a closing bracket and before the next ':' is not an address.
                let _ = c;
                return None;
            }
            c => current.push(c),
        }
    }
    if in_brackets {
        return None;
    }
    fields.push(current);
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_three_and_four_fields() {
        let f = ForwardSpec::parse("8443:gitlab.internal:443").unwrap();
        assert_eq!(f.bind, None);
        assert_eq!(f.source_port, 8443);
        assert_eq!(f.target(), "gitlab.internal:443");
        assert_eq!(f.to_string(), "localhost:8443 -> gitlab.internal:443");
        let f = ForwardSpec::parse("0.0.0.0:80:10.0.0.5:8080").unwrap();
        assert_eq!(f.bind.as_deref(), Some("0.0.0.0"));
        assert_eq!(f.target_port, 8080);
    }

    #[test]
    fn parses_ipv6_in_brackets() {
        let f = ForwardSpec::parse("[::1]:9000:[2001:db8::7]:6443").unwrap();
        assert_eq!(f.bind.as_deref(), Some("::1"));
        assert_eq!(f.target_host, "2001:db8::7");
        assert_eq!(f.target(), "[2001:db8::7]:6443");
    }

    #[test]
    fn star_or_empty_bind_means_every_interface() {
        for spec in ["*:1:h:2", ":1:h:2"] {
            let f = ForwardSpec::parse(spec).unwrap();
            assert_eq!(f.bind.as_deref(), Some(""), "{spec}");
            assert_eq!(f.bind_address(), "");
            assert_eq!(f.to_string(), "*:1 -> h:2");
        }
        let f = ForwardSpec::parse("1:h:2").unwrap();
        assert_eq!(
            (f.bind_address(), f.bind_display()),
            ("localhost", "localhost")
        );
    }

    #[test]
    fn rejects_bad_specs_with_the_value_named() {
        for (spec, needle) in [
            ("8443:gitlab", "expected [BIND:]SOURCE_PORT"),
            ("70000:h:1", "70000 is outside 1-65535"),
            ("0:h:1", "0 is outside 1-65535"),
            ("1:h:x", "\"x\" is not a number"),
            ("1::2", "target host is empty"),
            ("1:[::1:2", "unbalanced"),
            ("1:a b:2", "contains ' '"),
            ("1:gitlab\u{202e}lab:2", "contains '\\u{202e}'"),
            ("1:a\u{1b}b:2", "contains '\\u{1b}'"),
            ("a:b:c:d:e", "expected"),
        ] {
            let err = ForwardSpec::parse(spec).unwrap_err();
            assert!(err.contains(needle), "{spec}: {err}");
            assert!(err.contains(&format!("{spec:?}")), "{spec}: {err}");
        }
    }
}

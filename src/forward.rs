//! One remote forward: a port on the relay and the target it leads to inside the network.

use std::fmt;

/// The address the relay binds when a forward names none: loopback, as `ssh -R` asks for.
pub const DEFAULT_BIND: &str = "localhost";
/// How a forward bound to every interface of the relay (`*` or an empty bind address) is
/// written; the relay is sent an empty address for it, exactly as `ssh -R` does (OpenSSH
/// `channel_rfwd_bind_host`), and its `GatewayPorts` decides.
pub const ALL_INTERFACES: &str = "*";

/// Where flytube dials the target of a fixed forward from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// A TCP connection from this machine (the default).
    #[default]
    Direct,
    /// A `direct-tcpip` channel over the same SSH session: the relay connects, so the
    /// customer needs no second egress rule.
    Relay,
}

impl Via {
    /// Parses `direct` or `relay`; the error names the value.
    pub fn parse(text: &str) -> Result<Via, String> {
        match text {
            "direct" => Ok(Via::Direct),
            "relay" => Ok(Via::Relay),
            other => Err(format!(
                "target via {other:?} is not allowed (use direct or relay)"
            )),
        }
    }

    /// The name used in settings.
    pub fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Relay => "relay",
        }
    }
}

/// The fixed destination of a forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host flytube dials (or asks the relay to dial).
    pub host: String,
    /// Port flytube dials.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join_host_port(&self.host, self.port))
    }
}

/// A validated forward: `[BIND:]SOURCE_PORT:TARGET_HOST:TARGET_PORT`, or
/// `[BIND:]SOURCE_PORT` for a dynamic forward (each connection names its destination in a
/// SOCKS or HTTP CONNECT handshake, checked against the allow-list), as `ssh -R` means it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Address the relay listens on: `None` for loopback (`localhost`, like `ssh -R`),
    /// `Some("")` for every interface (written `*`), else the address.
    pub bind: Option<String>,
    /// Port the relay listens on.
    pub source_port: u16,
    /// The fixed target; `None` for a dynamic forward.
    pub target: Option<Target>,
    /// Where the target is dialed from.
    pub via: Via,
}

impl ForwardSpec {
    /// A fixed forward dialed directly.
    pub fn fixed(bind: Option<String>, source_port: u16, host: &str, port: u16) -> ForwardSpec {
        ForwardSpec {
            bind,
            source_port,
            target: Some(Target {
                host: host.to_string(),
                port,
            }),
            via: Via::Direct,
        }
    }

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

    /// The relay side as people write it, e.g. `localhost:8443` (the metrics label).
    pub fn source(&self) -> String {
        join_host_port(self.bind_display(), self.source_port)
    }

    /// `host:port` of the target (IPv6 literals in brackets), or `dynamic`.
    pub fn target_display(&self) -> String {
        match &self.target {
            Some(target) => target.to_string(),
            None => "dynamic".into(),
        }
    }

    /// True for a dynamic forward.
    pub fn is_dynamic(&self) -> bool {
        self.target.is_none()
    }

    /// Parses the `ssh -R` syntax. The error names the spec and says what is allowed.
    pub fn parse(spec: &str) -> Result<ForwardSpec, String> {
        let fields = split_fields(spec).ok_or_else(|| {
            format!("forward {spec:?}: unbalanced '[' ']' (write IPv6 addresses as [2001:db8::1])")
        })?;
        let (bind, source, target) = match fields.as_slice() {
            [source] => (None, source, None),
            [bind, source] => (Some(bind), source, None),
            [source, host, port] => (None, source, Some((host, port))),
            [bind, source, host, port] => (Some(bind), source, Some((host, port))),
            _ => {
                return Err(format!(
                    "forward {spec:?}: expected [BIND:]SOURCE_PORT:TARGET_HOST:TARGET_PORT, or \
                     [BIND:]SOURCE_PORT for a dynamic forward"
                ));
            }
        };
        let target = match target {
            Some((host, port)) => Some(Target {
                host: host.to_string(),
                port: parse_port(port).map_err(|e| format!("forward {spec:?}: target port {e}"))?,
            }),
            None => None,
        };
        let source_port = parse_port(source).map_err(|e| match (&target, bind) {
            // "8443:gitlab": a target without its port, more likely than a bind address.
            (None, Some(_)) => format!(
                "forward {spec:?}: expected [BIND:]SOURCE_PORT:TARGET_HOST:TARGET_PORT, or \
                 [BIND:]SOURCE_PORT for a dynamic forward ({source:?} is not a port)"
            ),
            _ => format!("forward {spec:?}: source port {e}"),
        })?;
        let forward = ForwardSpec {
            bind: bind.map(|b| normalize_bind(b)),
            source_port,
            target,
            via: Via::Direct,
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
        match &self.target {
            Some(target) => {
                if target.port == 0 {
                    return Err("target port 0 is not allowed (use 1-65535)".into());
                }
                validate_host("target host", &target.host)?;
            }
            None if self.via == Via::Relay => {
                return Err(
                    "a dynamic forward dials from inside the network; target via relay is \
                     for forwards with a fixed target"
                        .into(),
                );
            }
            None => {}
        }
        if let Some(bind) = self.bind.as_deref().filter(|b| !b.is_empty()) {
            validate_host("bind address", bind)?;
        }
        Ok(())
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.source(), self.target_display())?;
        if self.via == Via::Relay {
            f.write_str(" via relay")?;
        }
        Ok(())
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
        assert_eq!(f.target_display(), "gitlab.internal:443");
        assert_eq!(f.to_string(), "localhost:8443 -> gitlab.internal:443");
        let f = ForwardSpec::parse("0.0.0.0:80:10.0.0.5:8080").unwrap();
        assert_eq!(f.bind.as_deref(), Some("0.0.0.0"));
        assert_eq!(f.target.unwrap().port, 8080);
    }

    #[test]
    fn parses_ipv6_in_brackets() {
        let f = ForwardSpec::parse("[::1]:9000:[2001:db8::7]:6443").unwrap();
        assert_eq!(f.bind.as_deref(), Some("::1"));
        assert_eq!(f.target.as_ref().unwrap().host, "2001:db8::7");
        assert_eq!(f.target_display(), "[2001:db8::7]:6443");
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
    fn port_alone_is_a_dynamic_forward() {
        let f = ForwardSpec::parse("1080").unwrap();
        assert!(f.is_dynamic());
        assert_eq!(f.to_string(), "localhost:1080 -> dynamic");
        let f = ForwardSpec::parse("0.0.0.0:1080").unwrap();
        assert_eq!((f.bind.as_deref(), f.source_port), (Some("0.0.0.0"), 1080));
        let f = ForwardSpec::parse("[::1]:1080").unwrap();
        assert_eq!(f.bind.as_deref(), Some("::1"));
    }

    #[test]
    fn rejects_bad_specs_with_the_value_named() {
        for (spec, needle) in [
            ("8443:gitlab", "expected [BIND:]SOURCE_PORT:TARGET_HOST"),
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

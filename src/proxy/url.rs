//! Proxy URLs: `http://[USER[:PASSWORD]@]HOST[:PORT]`, `socks5://...`, `socks5h://...`,
//! credentials percent-decoded and the password held as a `Secret`.

use std::fmt;

use crate::forward::join_host_port;
use crate::secret::Secret;

/// The port of a proxy URL without one, as curl assumes for every proxy type.
pub const DEFAULT_PROXY_PORT: u16 = 1080;

/// The protocol spoken to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HTTP CONNECT (RFC 9110 9.3.6), Basic authentication.
    Http,
    /// SOCKS5 (RFC 1928), the relay's name resolved here.
    Socks5,
    /// SOCKS5, the relay's name resolved by the proxy.
    Socks5h,
}

impl Scheme {
    /// The URL scheme.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Socks5 => "socks5",
            Scheme::Socks5h => "socks5h",
        }
    }

    /// How the handshake is called in logs and `flytube check`.
    pub fn handshake_name(self) -> &'static str {
        match self {
            Scheme::Http => "CONNECT",
            Scheme::Socks5 | Scheme::Socks5h => "SOCKS5",
        }
    }
}

/// A parsed proxy URL. Display and Debug never show the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The protocol.
    pub scheme: Scheme,
    /// Proxy host name or address (IPv6 without brackets).
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// User name, percent-decoded.
    pub user: Option<String>,
    /// Password, percent-decoded.
    pub password: Option<Secret>,
}

impl ProxyUrl {
    /// Parses a proxy URL. A URL without a scheme is `http://`, as in curl. Errors never
    /// repeat the password.
    pub fn parse(text: &str) -> Result<ProxyUrl, String> {
        let bad = |why: &str| format!("proxy URL {:?}: {why}", mask_url_text(text));
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_string(), text),
        };
        let scheme = match scheme.as_str() {
            "http" => Scheme::Http,
            "socks5" => Scheme::Socks5,
            "socks5h" => Scheme::Socks5h,
            "https" => {
                return Err(bad(
                    "https:// proxies (TLS to the proxy) are not supported; an HTTP proxy \
                     tunnels SSH with CONNECT over http://",
                ));
            }
            "socks4" | "socks4a" | "socks" => {
                return Err(bad(
                    "SOCKS4 is not supported; use socks5:// or socks5h:// (SOCKS5)",
                ));
            }
            _ => return Err(bad("the scheme must be http://, socks5:// or socks5h://")),
        };
        // Only a lone trailing slash may follow the authority.
        let authority = match rest.find(['/', '?', '#']) {
            Some(i) if &rest[i..] == "/" => &rest[..i],
            Some(_) => return Err(bad("a proxy URL has no path, query or fragment")),
            None => rest,
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = percent_decode(user)
                    .ok_or_else(|| bad("bad percent-encoding in the user name"))?;
                if user.is_empty() {
                    return Err(bad("the user name before '@' is empty"));
                }
                let password = match password {
                    Some(p) => Some(Secret::new(percent_decode(p).ok_or_else(|| {
                        bad("bad percent-encoding in the password (write % as %25)")
                    })?)),
                    None => None,
                };
                (Some(user), password)
            }
        };
        let (host, port) = split_host_port(hostport).map_err(|why| bad(&why))?;
        let url = ProxyUrl {
            scheme,
            host,
            port,
            user,
            password,
        };
        if url.scheme != Scheme::Http {
            // RFC 1929 carries each in one length byte.
            if url.user.as_ref().is_some_and(|u| u.len() > 255)
                || url
                    .password
                    .as_ref()
                    .is_some_and(|p| p.expose().len() > 255)
            {
                return Err(bad(
                    "SOCKS5 allows at most 255 bytes of user name and of password",
                ));
            }
        }
        Ok(url)
    }

    /// `host:port` of the proxy (IPv6 in brackets).
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// The user name and password to send, if any (an absent password is empty).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.user
            .as_deref()
            .map(|u| (u, self.password.as_ref().map_or("", |p| p.expose())))
    }

    /// True when the relay's name is resolved on this machine (socks5://).
    pub fn resolves_locally(&self) -> bool {
        self.scheme == Scheme::Socks5
    }
}

impl fmt::Display for ProxyUrl {
    /// `scheme://[user[:MASKED]@]host:port`, the user percent-encoded again.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.name())?;
        if let Some(user) = &self.user {
            f.write_str(&percent_encode(user))?;
            if self.password.is_some() {
                f.write_str(":MASKED")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.address())
    }
}

/// `HOST[:PORT]` or `[IPV6][:PORT]`.
fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing ']' after the IPv6 address")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} in brackets is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("only :PORT may follow ']'")?),
            ),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write an IPv6 proxy address in brackets: [ADDR]:PORT".into());
            }
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("no proxy host".into());
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "@/\\%".contains(c))
    {
        return Err(format!("{host:?} is not a host name"));
    }
    let port = match port {
        None => DEFAULT_PROXY_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("port {p:?} is not 1-65535")),
            Ok(port) => port,
        },
    };
    Ok((host.to_string(), port))
}

/// `%XX` to bytes; `None` on a broken escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but RFC 3986 unreserved characters, for showing a user name.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A proxy URL as written, with any password replaced by MASKED: for messages about a URL
/// that did not parse.
pub fn mask_url_text(text: &str) -> String {
    // The last '@' ends the user part even when the password holds an unencoded '/'.
    let start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[start..];
    match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:MASKED{}", &text[..start], &rest[at..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_with_credentials_is_decoded_and_masked() {
        let url = ProxyUrl::parse("http://bob%40corp:p%40ss%3Aw%2Frd@proxy.corp:3128/").unwrap();
        assert_eq!(url.scheme, Scheme::Http);
        assert_eq!(url.host, "proxy.corp");
        assert_eq!(url.port, 3128);
        assert_eq!(url.user.as_deref(), Some("bob@corp"));
        assert_eq!(url.password.as_ref().unwrap().expose(), "p@ss:w/rd");
        assert_eq!(url.credentials(), Some(("bob@corp", "p@ss:w/rd")));
        let shown = url.to_string();
        assert_eq!(shown, "http://bob%40corp:MASKED@proxy.corp:3128");
        let debug = format!("{url:?}");
        assert!(
            !debug.contains("p@ss") && debug.contains("MASKED"),
            "{debug}"
        );
    }

    #[test]
    fn schemes_ports_and_hosts() {
        let url = ProxyUrl::parse("SOCKS5H://[::1]:1081").unwrap();
        assert_eq!(
            (url.scheme, url.host.as_str(), url.port),
            (Scheme::Socks5h, "::1", 1081)
        );
        assert_eq!(url.address(), "[::1]:1081");
        let url = ProxyUrl::parse("socks5://10.0.0.1").unwrap();
        assert_eq!((url.scheme, url.port), (Scheme::Socks5, DEFAULT_PROXY_PORT));
        assert!(url.resolves_locally());
        // No scheme: HTTP, as curl does.
        let url = ProxyUrl::parse("proxy:8080").unwrap();
        assert_eq!((url.scheme, url.port), (Scheme::Http, 8080));
        // A user without a password sends an empty one.
        let url = ProxyUrl::parse("http://alice@proxy:8080").unwrap();
        assert_eq!(url.credentials(), Some(("alice", "")));
        assert_eq!(url.to_string(), "http://alice@proxy:8080");
        // An '@' in the password without encoding: the last '@' ends the user part.
        let url = ProxyUrl::parse("http://u:a@b@proxy:1").unwrap();
        assert_eq!(url.password.unwrap().expose(), "a@b");
    }

    #[test]
    fn refusals_say_why_and_never_show_the_password() {
        for (text, needle) in [
            ("https://u:hunter2@p:1", "not supported"),
            ("socks4://u:hunter2@p:1", "SOCKS4"),
            ("ftp://u:hunter2@p:1", "scheme must be"),
            ("http://u:hunter2@p:0", "not 1-65535"),
            ("http://u:hunter2@p:x", "not 1-65535"),
            ("http://u:hunter2@p:1/path", "no path"),
            ("http://u:hunter2@:1", "no proxy host"),
            ("http://u:hunter2%zz@p:1", "percent-encoding"),
            ("http://:hunter2@p:1", "user name before '@' is empty"),
            ("http://u:hunter2@::1:8080", "in brackets"),
            ("http://u:hunter2@[zz]:8080", "not an IPv6"),
            ("http://u:hunter2@p q:1", "not a host name"),
        ] {
            let err = ProxyUrl::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{text}: {err}");
            assert!(err.contains(":MASKED@"), "{text}: {err}");
        }
        let long = "x".repeat(256);
        let err = ProxyUrl::parse(&format!("socks5://u:{long}@p:1")).unwrap_err();
        assert!(err.contains("255 bytes"), "{err}");
        // HTTP Basic has no such limit.
        assert!(ProxyUrl::parse(&format!("http://u:{long}@p:1")).is_ok());
    }

    #[test]
    fn masking_unparsed_text() {
        assert_eq!(mask_url_text("http://u:pw@h:1/x"), "http://u:MASKED@h:1/x");
        assert_eq!(mask_url_text("u:pw@h:1"), "u:MASKED@h:1");
        assert_eq!(mask_url_text("http://h:1"), "http://h:1");
        assert_eq!(mask_url_text("http://u@h:1"), "http://u@h:1");
        assert_eq!(mask_url_text("http://u:a/b@h:1"), "http://u:MASKED@h:1");
        let err = ProxyUrl::parse("http://u:a/hunter2@h:1").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}

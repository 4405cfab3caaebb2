//! Which proxy applies, and why: `--proxy` / `FLYTUBE_PROXY` / `relay.proxy` first; when
//! none is set, the environment the way curl reads it (`https_proxy`, `HTTPS_PROXY`,
//! `all_proxy`, `ALL_PROXY`, with `no_proxy` / `NO_PROXY` exempting the relay).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use super::url::ProxyUrl;

/// Environment variables naming a proxy, in the order curl reads them (lower case first).
pub const PROXY_VARIABLES: &[&str] = &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// Environment variables listing hosts reached without the proxy (lower case first).
pub const NO_PROXY_VARIABLES: &[&str] = &["no_proxy", "NO_PROXY"];
/// The word that turns every proxy off.
pub const NONE: &str = "none";

/// Where an explicit proxy setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySource {
    /// The `--proxy` option.
    Flag,
    /// An environment variable (`FLYTUBE_PROXY`, `HTTPS_PROXY`, ...).
    Env(String),
    /// `relay.proxy` in the settings file.
    File,
}

impl fmt::Display for ProxySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySource::Flag => f.write_str("--proxy"),
            ProxySource::Env(name) => f.write_str(name),
            ProxySource::File => f.write_str("relay.proxy in the settings file"),
        }
    }
}

/// The proxy flytube uses to reach the relay, with the reason, for logs and `flytube config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    /// No proxy is configured anywhere: a direct connection.
    Direct,
    /// `none` was given: a direct connection, whatever the environment says.
    Off {
        /// Where `none` was set.
        source: ProxySource,
    },
    /// A proxy from the environment that NO_PROXY exempts the relay from.
    Exempt {
        /// The variable that named the proxy.
        proxy_variable: String,
        /// The variable that exempts the relay.
        no_proxy_variable: String,
        /// The entry of that list that matched.
        entry: String,
    },
    /// Through this proxy.
    Via {
        /// The proxy.
        proxy: ProxyUrl,
        /// Where it was set.
        source: ProxySource,
    },
}

impl ProxyChoice {
    /// The proxy to go through, if any.
    pub fn proxy(&self) -> Option<&ProxyUrl> {
        match self {
            ProxyChoice::Via { proxy, .. } => Some(proxy),
            _ => None,
        }
    }

    /// The proxy, for changing it (the password from a file).
    pub fn proxy_mut(&mut self) -> Option<&mut ProxyUrl> {
        match self {
            ProxyChoice::Via { proxy, .. } => Some(proxy),
            _ => None,
        }
    }

    /// Why this choice was made, in words.
    pub fn why(&self) -> String {
        match self {
            ProxyChoice::Direct => "no proxy is configured".into(),
            ProxyChoice::Off { source } => format!("turned off by {source}"),
            ProxyChoice::Exempt {
                proxy_variable,
                no_proxy_variable,
                entry,
            } => format!(
                "{no_proxy_variable} entry {entry:?} matches the relay, so {proxy_variable} is \
                 not used"
            ),
            ProxyChoice::Via { source, .. } => format!("from {source}"),
        }
    }

    /// The value of `relay.proxy` that has the same effect (password masked).
    pub fn file_value(&self) -> String {
        match self.proxy() {
            Some(proxy) => proxy.to_string(),
            None => NONE.into(),
        }
    }
}

impl fmt::Display for ProxyChoice {
    /// `http://proxy:3128 (from HTTPS_PROXY)` or `none (no proxy is configured)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.file_value(), self.why())
    }
}

/// Chooses the proxy for `relay_host`. `explicit` is the value of `--proxy`,
/// `FLYTUBE_PROXY` or `relay.proxy` (in that precedence) with its source; an explicit
/// proxy is used whatever NO_PROXY says. Without one, the environment is read as curl
/// reads it. An empty value counts as unset, `none` (or an empty explicit value) turns
/// proxies off.
pub fn choose(
    explicit: Option<(&str, ProxySource)>,
    env: &HashMap<String, String>,
    relay_host: &str,
) -> Result<ProxyChoice, String> {
    if let Some((text, source)) = explicit {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case(NONE) {
            return Ok(ProxyChoice::Off { source });
        }
        let proxy = ProxyUrl::parse(text).map_err(|e| format!("{source}: {e}"))?;
        return Ok(ProxyChoice::Via { proxy, source });
    }
    let Some((variable, text)) = first_set(env, PROXY_VARIABLES) else {
        return Ok(ProxyChoice::Direct);
    };
    if let Some((no_proxy_variable, list)) = first_set(env, NO_PROXY_VARIABLES) {
        if let Some(entry) = no_proxy_match(list, relay_host) {
            return Ok(ProxyChoice::Exempt {
                proxy_variable: variable.into(),
                no_proxy_variable: no_proxy_variable.into(),
                entry,
            });
        }
    }
    if text.trim().eq_ignore_ascii_case(NONE) {
        return Ok(ProxyChoice::Off {
            source: ProxySource::Env(variable.into()),
        });
    }
    let proxy = ProxyUrl::parse(text).map_err(|e| {
        format!("environment variable {variable}: {e} (use --proxy none to ignore it)")
    })?;
    Ok(ProxyChoice::Via {
        proxy,
        source: ProxySource::Env(variable.into()),
    })
}

/// The first of `names` set to something other than blanks.
fn first_set<'a>(
    env: &'a HashMap<String, String>,
    names: &[&'static str],
) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|&name| {
        env.get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    })
}

/// The entry of a NO_PROXY list that exempts `host`, as curl 7.86+ matches it: entries are
/// separated by commas or blanks; `*` matches everything; a name matches itself and its
/// subdomains, with or without a leading dot, case-insensitively; an IP address or CIDR
/// range matches a host written as an address in it. Ports are not part of it.
pub fn no_proxy_match(list: &str, host: &str) -> Option<String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ip = host.parse::<IpAddr>().ok();
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    list.split([',', ' ', '\t'])
        .filter(|e| !e.is_empty())
        .find(|&entry| match host_ip {
            _ if entry == "*" => true,
            Some(ip) => ip_matches(entry, ip),
            None => name_matches(entry, &name),
        })
        .map(str::to_string)
}

fn name_matches(entry: &str, name: &str) -> bool {
    let entry = entry.trim_start_matches('.').trim_end_matches('.');
    if entry.is_empty() {
        return false;
    }
    let entry = entry.to_ascii_lowercase();
    name == entry
        || name
            .strip_suffix(entry.as_str())
            .is_some_and(|before| before.ends_with('.'))
}

fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (addr, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            prefix_equal(&net.octets(), &ip.octets(), bits.unwrap_or(32))
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            prefix_equal(&net.octets(), &ip.octets(), bits.unwrap_or(128))
        }
        _ => false,
    }
}

/// The first `bits` bits of `a` and `b` are equal (`bits` beyond the length: never).
fn prefix_equal(a: &[u8], b: &[u8], bits: u32) -> bool {
    let bits = bits as usize;
    if bits > a.len() * 8 {
        return false;
    }
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_proxy_names_suffixes_and_wildcard() {
        let list = "localhost, .corp.example,other.example ,,";
        assert_eq!(
            no_proxy_match(list, "relay.corp.example").as_deref(),
            Some(".corp.example")
        );
        assert_eq!(
            no_proxy_match(list, "CORP.example").as_deref(),
            Some(".corp.example")
        );
        assert_eq!(
            no_proxy_match(list, "a.b.other.example.").as_deref(),
            Some("other.example")
        );
        assert_eq!(no_proxy_match(list, "notother.example"), None);
        assert_eq!(no_proxy_match(list, "corp.example.net"), None);
        assert_eq!(
            no_proxy_match(list, "localhost").as_deref(),
            Some("localhost")
        );
        assert_eq!(no_proxy_match("*", "anything").as_deref(), Some("*"));
        assert_eq!(no_proxy_match("a.example *", "b").as_deref(), Some("*"));
        assert_eq!(no_proxy_match("", "b"), None);
        assert_eq!(no_proxy_match(".", "b"), None);
    }

    #[test]
    fn no_proxy_addresses_and_ranges() {
        let list = "10.0.0.0/8,192.168.1.7,fd00::/8,[::1]";
        assert_eq!(
            no_proxy_match(list, "10.20.30.40").as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(
            no_proxy_match(list, "192.168.1.7").as_deref(),
            Some("192.168.1.7")
        );
        assert_eq!(no_proxy_match(list, "192.168.1.8"), None);
        assert_eq!(no_proxy_match(list, "fd12::1").as_deref(), Some("fd00::/8"));
        assert_eq!(no_proxy_match(list, "[::1]").as_deref(), Some("[::1]"));
        assert_eq!(no_proxy_match(list, "::2"), None);
        assert_eq!(
            no_proxy_match("0.0.0.0/0", "8.8.8.8").as_deref(),
            Some("0.0.0.0/0")
        );
        assert_eq!(no_proxy_match("10.0.0.0/33", "10.0.0.1"), None);
        assert_eq!(no_proxy_match("127.0.0.1/x", "127.0.0.1"), None);
        // An address entry never matches a name, nor a name entry an address.
        assert_eq!(no_proxy_match("127.0.0.1", "localhost"), None);
        assert_eq!(no_proxy_match("localhost", "127.0.0.1"), None);
        // Partial last octet.
        assert!(no_proxy_match("172.16.0.0/12", "172.31.255.1").is_some());
        assert_eq!(no_proxy_match("172.16.0.0/12", "172.32.0.1"), None);
    }

    #[test]
    fn explicit_setting_wins_and_ignores_no_proxy() {
        let e = env(&[("HTTPS_PROXY", "http://env:1"), ("NO_PROXY", "*")]);
        let choice = choose(Some(("socks5h://p:2", ProxySource::Flag)), &e, "relay").unwrap();
        assert_eq!(choice.proxy().unwrap().to_string(), "socks5h://p:2");
        assert_eq!(choice.to_string(), "socks5h://p:2 (from --proxy)");
        let off = choose(Some(("NONE", ProxySource::File)), &e, "relay").unwrap();
        assert_eq!(off.proxy(), None);
        assert_eq!(
            off.to_string(),
            "none (turned off by relay.proxy in the settings file)"
        );
        assert_eq!(
            choose(
                Some(("", ProxySource::Env("FLYTUBE_PROXY".into()))),
                &e,
                "r"
            )
            .unwrap(),
            ProxyChoice::Off {
                source: ProxySource::Env("FLYTUBE_PROXY".into())
            }
        );
    }

    #[test]
    fn environment_order_is_curls() {
        let e = env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
            ("ALL_PROXY", "socks5://all:1"),
        ]);
        let choice = choose(None, &e, "relay").unwrap();
        assert_eq!(choice.to_string(), "http://lower:1 (from https_proxy)");
        let e = env(&[("https_proxy", " "), ("ALL_PROXY", "socks5://all:1")]);
        assert_eq!(
            choose(None, &e, "relay").unwrap().to_string(),
            "socks5://all:1 (from ALL_PROXY)"
        );
        assert_eq!(
            choose(None, &env(&[]), "relay").unwrap(),
            ProxyChoice::Direct
        );
        // http_proxy is for plain HTTP, not a tunnel: curl ignores it for this too.
        let e = env(&[("http_proxy", "http://p:1")]);
        assert_eq!(choose(None, &e, "relay").unwrap(), ProxyChoice::Direct);
    }

    #[test]
    fn no_proxy_exempts_with_a_reason() {
        let e = env(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("NO_PROXY", ".example"),
            ("no_proxy", "relay.example"),
        ]);
        let choice = choose(None, &e, "relay.example").unwrap();
        assert_eq!(choice.proxy(), None);
        assert_eq!(
            choice.why(),
            "no_proxy entry \"relay.example\" matches the relay, so HTTPS_PROXY is not used"
        );
        // Lower case wins: NO_PROXY's .example is not consulted.
        let choice = choose(None, &e, "other.example").unwrap();
        assert_eq!(choice.proxy().unwrap().host, "p");
    }

    #[test]
    fn a_bad_environment_value_names_the_variable_and_hides_the_password() {
        let e = env(&[("ALL_PROXY", "socks4://u:hunter2@p:1")]);
        let err = choose(None, &e, "relay").unwrap_err();
        assert!(err.contains("ALL_PROXY"), "{err}");
        assert!(err.contains("--proxy none"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = choose(Some(("http://u:hunter2@p:0", ProxySource::Flag)), &e, "r").unwrap_err();
        assert!(err.starts_with("--proxy: "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

//! The customer's allow-list for the dynamic forward: `allow` and `deny` rules, and the
//! decision for one request made on the very addresses that will be dialed.
//!
//! Semantics (issue 10):
//! - A name rule (`db.corp`, `*.corp`, `*`) is checked against the name the client asked
//!   for; an address or CIDR rule against the address asked for, or against each address
//!   the name resolved to. `*.corp` is any subdomain of `corp`, not `corp` itself; `*` is
//!   any name and never an address (allow every address with `0.0.0.0/0` and `::/0`).
//! - `deny` wins over `allow`.
//! - Loopback (127/8, ::1, the name `localhost` and its subdomains, RFC 6761 §6.3),
//!   link-local (169.254/16 with cloud metadata, fe80::/10) and unspecified addresses
//!   (0.0.0.0/8, ::) are refused unless an address or CIDR rule inside that range allows
//!   them: `127.0.0.1` or `169.254.169.254/32` do, `*`, `*.corp` and `0.0.0.0/0` do not
//!   (an allow rule naming `localhost` is a configuration error, since it could never match). IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the
//!   IPv4 address they carry, in requests, resolutions and rules alike.
//! - A name that resolves to allowed and forbidden addresses is served on the allowed ones
//!   only. The guarantee that matters is that nothing forbidden is ever dialed, and it
//!   holds either way; refusing the whole name would also break every dual-stack name
//!   whose rule covers one family only. The caller resolves once, decides, and dials
//!   exactly `Decision::addrs` (or what `dialable` returns), so no second lookup can swap
//!   the addresses between check and dial (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::rule::{Net, Rule};
use super::target::{Host, Target};

/// Address ranges a name rule never opens, with the word the log uses for them.
const GUARDED: [(Net, &str); 6] = [
    (Net::v4(Ipv4Addr::new(127, 0, 0, 0), 8), "loopback"),
    (Net::v6(Ipv6Addr::LOCALHOST, 128), "loopback"),
    (Net::v4(Ipv4Addr::new(169, 254, 0, 0), 16), "link-local"),
    (
        Net::v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        "link-local",
    ),
    // Linux dials 0.0.0.0 as the local host; the rest of 0/8 ("this network", RFC 1122)
    // cannot be dialed at all, so the whole block is guarded alike.
    (Net::v4(Ipv4Addr::UNSPECIFIED, 8), "unspecified"),
    (Net::v6(Ipv6Addr::UNSPECIFIED, 128), "unspecified"),
];

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// True when at least one address may be dialed.
    pub allowed: bool,
    /// The rule that decided: the allow rule of the first address to dial, or the deny
    /// rule that refused. `None` when no rule matched.
    pub rule: Option<String>,
    /// One line for the log: which rule, and any address left out and why.
    pub reason: String,
    /// The addresses that may be dialed, in the order given; empty when refused.
    pub addrs: Vec<IpAddr>,
}

impl Decision {
    fn refused(rule: Option<&Rule>, reason: String) -> Decision {
        Decision {
            allowed: false,
            rule: rule.map(|r| r.text.clone()),
            reason,
            addrs: Vec::new(),
        }
    }
}

/// The allow and deny lists of the dynamic forward.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// A destination must match one of these...
    pub allow: Vec<Rule>,
    /// ...and none of these.
    pub deny: Vec<Rule>,
}

impl Policy {
    /// Parses both lists; the error names the list (`allow` or `deny`) and the bad rule.
    pub fn parse<A: AsRef<str>, D: AsRef<str>>(allow: &[A], deny: &[D]) -> Result<Policy, String> {
        let list = |name: &str, rules: Vec<&str>| -> Result<Vec<Rule>, String> {
            rules
                .into_iter()
                .map(|text| Rule::parse(text).map_err(|e| format!("{name} {e}")))
                .collect()
        };
        let allow = list("allow", allow.iter().map(AsRef::as_ref).collect())?;
        // An allow rule that can never match is a mistake worth stopping for.
        if let Some(rule) = allow.iter().find(|r| r.name().is_some_and(is_localhost)) {
            return Err(format!(
                "allow rule {:?}: localhost is loopback, which only an address rule opens: \
                 write 127.0.0.1 or [::1] instead",
                rule.as_str()
            ));
        }
        Ok(Policy {
            allow,
            deny: list("deny", deny.iter().map(AsRef::as_ref).collect())?,
        })
    }

    /// The decision when it does not depend on what a name resolves to: always for an
    /// address; for a name refused by a deny name rule, or matched by no allow name rule
    /// while no allow address rule exists. `None`: resolve, then call `decide`. Skipping
    /// the lookup keeps refused names out of the network's DNS.
    pub fn decide_unresolved(&self, requested: &Target) -> Option<Decision> {
        let Some(name) = judged_name(requested) else {
            return Some(self.decide(requested, &[]));
        };
        let port = requested.port;
        if let Some(rule) = self.deny.iter().find(|r| r.matches_name(&name, port)) {
            return Some(Decision::refused(
                Some(rule),
                format!("matches deny rule {rule}"),
            ));
        }
        let name_allowed = self.name_rule(&name, port).is_some();
        if !name_allowed && !self.allow.iter().any(Rule::is_address) {
            return Some(Decision::refused(None, no_rule_reason(&name, port)));
        }
        None
    }

    /// Decides `requested` given the addresses its name resolved to (ignored for an
    /// address). The addresses to dial are in `Decision::addrs`.
    pub fn decide(&self, requested: &Target, resolved: &[IpAddr]) -> Decision {
        let port = requested.port;
        let name = judged_name(requested);
        let candidates = match (&name, &requested.host) {
            (Some(_), _) => resolved.to_vec(),
            (None, Host::Addr(addr)) => vec![*addr],
            (None, Host::Name(text)) => text.parse().into_iter().collect(),
        };
        if let Some(name) = &name {
            if let Some(rule) = self.deny.iter().find(|r| r.matches_name(name, port)) {
                return Decision::refused(Some(rule), format!("matches deny rule {rule}"));
            }
            if candidates.is_empty() {
                return Decision::refused(None, format!("{name} resolved to no address"));
            }
        }
        let name_rule = name.as_deref().and_then(|n| self.name_rule(n, port));
        let mut addrs = Vec::new();
        let mut first_rule = None;
        let mut deny_rule = None;
        let mut left_out = Vec::new();
        for &addr in &candidates {
            match self.judge(addr, port, name_rule) {
                Ok(rule) => {
                    first_rule.get_or_insert(rule);
                    addrs.push(addr);
                }
                Err((rule, why)) => {
                    if deny_rule.is_none() {
                        deny_rule = rule;
                    }
                    left_out.push(why);
                }
            }
        }
        match first_rule {
            Some(rule) => {
                let mut reason = format!("allowed by rule {rule}");
                if !left_out.is_empty() {
                    reason.push_str(&format!("; not dialing {}", left_out.join(", ")));
                }
                Decision {
                    allowed: true,
                    rule: Some(rule.text.clone()),
                    reason,
                    addrs,
                }
            }
            None if left_out.is_empty() => Decision::refused(None, no_rule_reason("", port)),
            None => Decision::refused(deny_rule, left_out.join(", ")),
        }
    }

    /// `decide` on resolver output: the addresses to dial keep their order and form
    /// (IPv6 scope ids included), and an address target dials just itself.
    pub fn dialable(
        &self,
        requested: &Target,
        resolved: &[SocketAddr],
    ) -> (Decision, Vec<SocketAddr>) {
        let ips: Vec<IpAddr> = resolved.iter().map(SocketAddr::ip).collect();
        let decision = self.decide(requested, &ips);
        let addrs = match judged_name(requested) {
            Some(_) => resolved
                .iter()
                .filter(|a| decision.addrs.contains(&a.ip()))
                .copied()
                .collect(),
            None => decision
                .addrs
                .iter()
                .map(|&ip| SocketAddr::new(ip, requested.port))
                .collect(),
        };
        (decision, addrs)
    }

    /// The allow name rule for `name`, unless the name is `localhost`, which only an
    /// address rule may open.
    fn name_rule(&self, name: &str, port: u16) -> Option<&Rule> {
        if is_localhost(name) {
            return None;
        }
        self.allow.iter().find(|r| r.matches_name(name, port))
    }

    /// The allow rule for one address, or the deny rule (if any) and why it is left out.
    fn judge<'a>(
        &'a self,
        addr: IpAddr,
        port: u16,
        name_rule: Option<&'a Rule>,
    ) -> Result<&'a Rule, (Option<&'a Rule>, String)> {
        let ip = addr.to_canonical();
        if let Some(rule) = self.deny.iter().find(|r| r.covers(ip, port)) {
            return Err((Some(rule), format!("{ip} (deny rule {rule})")));
        }
        if let Some((range, kind)) = GUARDED.iter().find(|(range, _)| range.contains(ip)) {
            return self
                .allow
                .iter()
                .find(|r| r.covers(ip, port) && r.inside(range))
                .ok_or_else(|| {
                    (
                        None,
                        format!("{ip} ({kind}: only an address rule inside {range} allows it)"),
                    )
                });
        }
        name_rule
            .or_else(|| self.allow.iter().find(|r| r.covers(ip, port)))
            .ok_or_else(|| {
                (
                    None,
                    format!("{ip} (no allow rule matches it on port {port})"),
                )
            })
    }
}

/// The name to judge by name rules: `None` for an address, including a name that is an
/// address literal (the parser already turns those into addresses; this is the backstop).
fn judged_name(target: &Target) -> Option<String> {
    match &target.host {
        Host::Addr(_) => None,
        Host::Name(name) if name.parse::<IpAddr>().is_ok() => None,
        Host::Name(name) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            Some(name.to_ascii_lowercase())
        }
    }
}

fn is_localhost(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

fn no_rule_reason(name: &str, port: u16) -> String {
    if is_localhost(name) {
        format!("{name} is loopback: only an address rule inside 127.0.0.0/8 or ::1 allows it")
    } else if name.is_empty() {
        format!("no allow rule matches on port {port}")
    } else {
        format!("no allow rule matches {name} on port {port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        Policy::parse(allow, deny).unwrap()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn name(host: &str, port: u16) -> Target {
        Target::name(host, port)
    }

    fn addr(host: &str, port: u16) -> Target {
        Target::addr(host.parse().unwrap(), port)
    }

    #[track_caller]
    fn assert_allowed(decision: &Decision, rule: &str, addrs: &[&str]) {
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(decision.rule.as_deref(), Some(rule), "{decision:?}");
        assert_eq!(decision.addrs, ips(addrs), "{decision:?}");
    }

    #[track_caller]
    fn assert_refused(decision: &Decision, rule: Option<&str>, why: &str) {
        assert!(!decision.allowed, "{decision:?}");
        assert!(decision.addrs.is_empty(), "{decision:?}");
        assert_eq!(decision.rule.as_deref(), rule, "{decision:?}");
        assert!(decision.reason.contains(why), "{decision:?}");
    }

    #[test]
    fn policy_errors_name_the_list() {
        let err = Policy::parse(&["db:1"], &["bad rule"]).unwrap_err();
        assert!(err.starts_with("deny rule \"bad rule\": "), "{err}");
        let err = Policy::parse(&["LocalHost.:22"], &[] as &[&str]).unwrap_err();
        assert!(err.contains("write 127.0.0.1 or [::1]"), "{err}");
        assert!(Policy::parse(&["*.localhost"], &[] as &[&str]).is_err());
        assert!(Policy::parse(&["*"], &["localhost"]).is_ok());
        let err = Policy::parse(&["*:0"], &[] as &[&str]).unwrap_err();
        assert!(err.starts_with("allow rule \"*:0\": "), "{err}");
    }

    // ---- names ----

    #[test]
    fn exact_names_ignore_case_and_the_trailing_dot() {
        let p = policy(&["Git.Corp.Example."], &[]);
        let resolved = ips(&["10.0.0.5"]);
        assert_allowed(
            &p.decide(&name("git.corp.example", 22), &resolved),
            "Git.Corp.Example.",
            &["10.0.0.5"],
        );
        assert_allowed(
            &p.decide(&name("GIT.corp.example.", 22), &resolved),
            "Git.Corp.Example.",
            &["10.0.0.5"],
        );
        assert_refused(
            &p.decide(&name("corp.example", 22), &resolved),
            None,
            "no allow rule",
        );
    }

    #[test]
    fn wildcard_is_subdomains_only() {
        let p = policy(&["*.corp.example"], &[]);
        let resolved = ips(&["10.0.0.5"]);
        for host in ["a.corp.example", "a.b.corp.example"] {
            assert!(p.decide(&name(host, 443), &resolved).allowed, "{host}");
        }
        for host in [
            "corp.example",
            "xcorp.example",
            "corp.example.evil",
            "evil.example",
        ] {
            assert_refused(
                &p.decide(&name(host, 443), &resolved),
                None,
                "no allow rule",
            );
        }
    }

    #[test]
    fn star_is_any_name_but_no_address() {
        let p = policy(&["*"], &[]);
        assert!(
            p.decide(&name("anything.example", 1), &ips(&["192.0.2.1"]))
                .allowed
        );
        assert_refused(&p.decide(&addr("192.0.2.1", 1), &[]), None, "no allow rule");
    }

    #[test]
    fn ports_and_ranges() {
        let p = policy(
            &["db.corp:5432", "*.web.corp:8000-8999", "[fd00::/8]:443"],
            &[],
        );
        let v4 = ips(&["10.0.0.5"]);
        assert!(p.decide(&name("db.corp", 5432), &v4).allowed);
        assert_refused(&p.decide(&name("db.corp", 22), &v4), None, "no allow rule");
        assert!(p.decide(&name("a.web.corp", 8000), &v4).allowed);
        assert!(p.decide(&name("a.web.corp", 8999), &v4).allowed);
        assert!(!p.decide(&name("a.web.corp", 9000), &v4).allowed);
        assert!(!p.decide(&name("a.web.corp", 7999), &v4).allowed);
        assert!(p.decide(&addr("fd12::1", 443), &[]).allowed);
        assert!(!p.decide(&addr("fd12::1", 80), &[]).allowed);
        assert!(!p.decide(&addr("fe12::1", 443), &[]).allowed);
    }

    // ---- addresses ----

    #[test]
    fn address_rules_check_what_a_name_resolves_to() {
        let p = policy(&["10.0.0.0/8"], &[]);
        assert_allowed(
            &p.decide(&name("db.corp", 5432), &ips(&["10.1.2.3"])),
            "10.0.0.0/8",
            &["10.1.2.3"],
        );
        assert_refused(
            &p.decide(&name("db.corp", 5432), &ips(&["192.0.2.1"])),
            None,
            "192.0.2.1 (no allow rule",
        );
        assert_allowed(
            &p.decide(&addr("10.9.9.9", 1), &[]),
            "10.0.0.0/8",
            &["10.9.9.9"],
        );
    }

    #[test]
    fn mixed_resolution_dials_only_allowed_addresses() {
        let p = policy(&["*.corp.example"], &[]);
        let decision = p.decide(
            &name("app.corp.example", 443),
            &ips(&["10.0.0.1", "169.254.169.254", "10.0.0.2", "127.0.0.1"]),
        );
        assert_allowed(&decision, "*.corp.example", &["10.0.0.1", "10.0.0.2"]);
        assert!(
            decision
                .reason
                .contains("not dialing 169.254.169.254 (link-local"),
            "{decision:?}"
        );
        assert!(
            decision.reason.contains("127.0.0.1 (loopback"),
            "{decision:?}"
        );
        // Dual stack with a rule for one family: dial that family.
        let p = policy(&["10.0.0.0/8"], &[]);
        let decision = p.decide(&name("db.corp", 1), &ips(&["fd00::5", "10.0.0.5"]));
        assert_allowed(&decision, "10.0.0.0/8", &["10.0.0.5"]);
    }

    #[test]
    fn resolving_to_nothing_is_refused() {
        let p = policy(&["*"], &[]);
        assert_refused(
            &p.decide(&name("db.corp", 1), &[]),
            None,
            "resolved to no address",
        );
    }

    // ---- deny ----

    #[test]
    fn deny_wins() {
        let p = policy(
            &["*", "10.0.0.0/8"],
            &["secret.corp", "*.vault.corp:8200", "10.0.0.5"],
        );
        let v4 = ips(&["10.0.0.9"]);
        assert_refused(
            &p.decide(&name("secret.corp", 443), &v4),
            Some("secret.corp"),
            "matches deny rule secret.corp",
        );
        assert_refused(
            &p.decide(&name("a.vault.corp", 8200), &v4),
            Some("*.vault.corp:8200"),
            "deny rule",
        );
        assert!(p.decide(&name("a.vault.corp", 443), &v4).allowed);
        assert_refused(
            &p.decide(&addr("10.0.0.5", 22), &[]),
            Some("10.0.0.5"),
            "(deny rule 10.0.0.5)",
        );
        assert_refused(
            &p.decide(&name("db.corp", 22), &ips(&["10.0.0.5"])),
            Some("10.0.0.5"),
            "10.0.0.5 (deny rule 10.0.0.5)",
        );
        let decision = p.decide(&name("db.corp", 22), &ips(&["10.0.0.5", "10.0.0.6"]));
        assert_allowed(&decision, "*", &["10.0.0.6"]);
    }

    #[test]
    fn deny_is_checked_on_the_mapped_form_too() {
        let p = policy(&["0.0.0.0/0"], &["10.0.0.5"]);
        assert_refused(
            &p.decide(&addr("::ffff:10.0.0.5", 22), &[]),
            Some("10.0.0.5"),
            "deny rule",
        );
    }

    // ---- guarded ranges ----

    #[test]
    fn star_asked_for_localhost_is_refused() {
        let p = policy(&["*"], &[]);
        let decision = p.decide(&name("localhost", 22), &ips(&["127.0.0.1", "::1"]));
        assert_refused(&decision, None, "127.0.0.1 (loopback");
        assert!(decision.reason.contains("::1 (loopback"), "{decision:?}");
        // Even an exact name rule does not open it (Policy::parse refuses to build one).
        let p = Policy {
            allow: vec![Rule::parse("localhost").unwrap()],
            deny: Vec::new(),
        };
        assert!(
            !p.decide(&name("localhost", 22), &ips(&["127.0.0.1"]))
                .allowed
        );
        assert_refused(
            &p.decide_unresolved(&name("localhost", 22)).unwrap(),
            None,
            "loopback",
        );
        // localhost is loopback whatever /etc/hosts says.
        let p = policy(&["*", "0.0.0.0/0"], &[]);
        let decision = p.decide(&name("app.localhost", 22), &ips(&["192.0.2.1"]));
        assert_allowed(&decision, "0.0.0.0/0", &["192.0.2.1"]);
    }

    #[test]
    fn wildcard_name_resolving_to_guarded_addresses_is_refused() {
        let p = policy(&["*.corp.example"], &[]);
        for guarded in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let decision = p.decide(&name("x.corp.example", 80), &ips(&[guarded]));
            assert!(!decision.allowed, "{guarded}: {decision:?}");
        }
    }

    #[test]
    fn guarded_addresses_need_a_rule_inside_their_range() {
        let metadata = addr("169.254.169.254", 80);
        for allow in [
            &["*"][..],
            &["0.0.0.0/0"],
            &["169.0.0.0/8"],
            &["*", "0.0.0.0/0", "::/0"],
        ] {
            assert_refused(
                &policy(allow, &[]).decide(&metadata, &[]),
                None,
                "link-local",
            );
        }
        for allow in [
            "169.254.169.254",
            "169.254.169.254:80",
            "169.254.0.0/16",
            "169.254.169.0/24",
        ] {
            assert_allowed(
                &policy(&[allow], &[]).decide(&metadata, &[]),
                allow,
                &["169.254.169.254"],
            );
        }
        assert!(
            !policy(&["169.254.169.254:443"], &[])
                .decide(&metadata, &[])
                .allowed
        );
        let cases = [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.0/8", true),
            ("127.0.0.1", "0.0.0.0/0", false),
            ("::1", "::1", true),
            ("::1", "::/0", false),
            ("::1", "::/127", false),
            ("fe80::1", "fe80::/10", true),
            ("fe80::1", "fe80::/64", true),
            ("fe80::1", "fe00::/7", false),
            ("0.0.0.0", "0.0.0.0/0", false),
            ("0.0.0.0", "0.0.0.0", true),
            ("0.1.2.3", "0.0.0.0/8", true),
            ("::", "::/0", false),
            ("::", "::/128", true),
            ("::ffff:127.0.0.1", "0.0.0.0/0", false),
            ("::ffff:127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", "10.0.0.0/8", true),
            ("10.0.0.1", "[::ffff:10.0.0.0/104]", true),
        ];
        for (target, allow, allowed) in cases {
            let decision = policy(&[allow], &[]).decide(&addr(target, 80), &[]);
            assert_eq!(
                decision.allowed, allowed,
                "{target} with allow {allow}: {decision:?}"
            );
        }
    }

    #[test]
    fn localhost_by_name_with_an_address_rule() {
        let p = policy(&["127.0.0.1:8080"], &[]);
        let decision = p.decide(&name("localhost", 8080), &ips(&["::1", "127.0.0.1"]));
        assert_allowed(&decision, "127.0.0.1:8080", &["127.0.0.1"]);
    }

    #[test]
    fn names_holding_literals_are_judged_as_addresses() {
        let p = policy(&["*"], &[]);
        assert!(
            !p.decide(&name("127.0.0.1", 80), &ips(&["10.0.0.1"]))
                .allowed
        );
        assert!(!p.decide(&name("10.0.0.1", 80), &[]).allowed);
        let p = policy(&["10.0.0.0/8"], &[]);
        assert_allowed(
            &p.decide(&name("10.0.0.1", 80), &[]),
            "10.0.0.0/8",
            &["10.0.0.1"],
        );
    }

    // ---- before resolving, and dialing ----

    #[test]
    fn decide_unresolved_skips_the_lookup_when_it_can() {
        let names_only = policy(&["*.corp"], &["bad.corp"]);
        assert_refused(
            &names_only.decide_unresolved(&name("x.other", 1)).unwrap(),
            None,
            "no allow rule matches x.other",
        );
        assert_refused(
            &names_only.decide_unresolved(&name("bad.corp", 1)).unwrap(),
            Some("bad.corp"),
            "matches deny rule",
        );
        assert_eq!(names_only.decide_unresolved(&name("x.corp", 1)), None);
        assert!(
            !names_only
                .decide_unresolved(&addr("10.0.0.1", 1))
                .unwrap()
                .allowed
        );
        // With an address rule any name may resolve into it: resolve first.
        let with_cidr = policy(&["10.0.0.0/8"], &[]);
        assert_eq!(with_cidr.decide_unresolved(&name("x.other", 1)), None);
        assert!(
            with_cidr
                .decide_unresolved(&addr("10.0.0.1", 1))
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn dialable_keeps_resolver_order_and_form() {
        let p = policy(&["*.corp", "[fe80::/10]"], &[]);
        let resolved: Vec<SocketAddr> = vec![
            "[::ffff:127.0.0.1]:80".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            "[fe80::1%2]:80".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        ];
        let (decision, addrs) = p.dialable(&name("x.corp", 80), &resolved);
        assert!(decision.allowed);
        assert_eq!(addrs, [resolved[1], resolved[2], resolved[3]]);
        let (decision, addrs) = p.dialable(&addr("fe80::9", 80), &resolved);
        assert!(decision.allowed);
        assert_eq!(addrs, ["[fe80::9]:80".parse::<SocketAddr>().unwrap()]);
        let (decision, addrs) = p.dialable(&addr("10.0.0.1", 80), &resolved);
        assert!(!decision.allowed);
        assert!(addrs.is_empty());
    }
}

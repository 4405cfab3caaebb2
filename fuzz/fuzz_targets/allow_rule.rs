//! Fuzzes the allow-list rule parser: no text may panic, and a rule that parses decides
//! without panicking on any address.
#![no_main]

use std::net::IpAddr;

use flytube::dynamic::{Host, Policy, Rule, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let (addr, text) = data.split_at(17);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(rule) = Rule::parse(text) else {
        return;
    };
    let ip = if addr[0] % 2 == 0 {
        IpAddr::from([addr[1], addr[2], addr[3], addr[4]])
    } else {
        IpAddr::from(<[u8; 16]>::try_from(&addr[1..17]).unwrap_or_default())
    };
    let policy = Policy {
        allow: vec![rule.clone()],
        deny: vec![rule],
    };
    let port = u16::from_be_bytes([addr[1], addr[2]]).max(1);
    let decision = policy.decide(&Target::addr(ip, port), &[]);
    assert!(!decision.allowed, "a deny rule equal to the allow rule must win");
    let _ = policy.decide(
        &Target {
            host: Host::Name("x.example".into()),
            port,
        },
        &[ip],
    );
});

//! The settings file's man page, man/flytube.yaml.5, cannot drift from the code: every key of
//! `FileConfig` (read from the text of src/config.rs) and every key of flytube.yaml.example
//! must have a `.B <dotted.key>` tag line there, every such tag must be a real key, and the
//! YAML examples in the page must parse. Both packages (Cargo.toml for the .deb,
//! packaging/rpm/flytube.spec for the .rpm) must install both man pages.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `struct name -> [(field, type)]` for every `pub struct` in the source text.
fn structs(source: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    for line in source.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            current = Some((name, Vec::new()));
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                out.insert(name, fields);
            }
        } else if let (Some((_, fields)), Some(rest)) =
            (current.as_mut(), line.strip_prefix("pub "))
            && let Some((field, ty)) = rest.split_once(':')
        {
            fields.push((
                field.trim().to_string(),
                ty.trim_end_matches(',').trim().to_string(),
            ));
        }
    }
    out
}

/// Dotted keys of the settings file as the man page writes them: `relay.host`,
/// `forwards[].source_port`, `ciphers`.
fn keys_from_config_rs() -> BTreeSet<String> {
    let structs = structs(&read("src/config.rs"));
    let top = structs
        .get("FileConfig")
        .expect("src/config.rs has no `pub struct FileConfig`");
    let mut keys = BTreeSet::new();
    for (field, ty) in top {
        let nested = structs
            .keys()
            .filter(|name| name.as_str() != "FileConfig")
            .find(|name| ty.contains(&format!("<{name}>")));
        match nested {
            Some(name) => {
                let prefix = if ty.contains("Vec<") {
                    format!("{field}[]")
                } else {
                    field.clone()
                };
                for (sub, _) in &structs[name] {
                    keys.insert(format!("{prefix}.{sub}"));
                }
            }
            None => {
                keys.insert(field.clone());
            }
        }
    }
    assert!(
        keys.len() > 20,
        "parsed too few keys from src/config.rs: {keys:?}"
    );
    keys
}

/// The example with its commented-out keys (`# passphrase_file: ...`) switched on.
fn example_uncommented() -> String {
    read("flytube.yaml.example")
        .lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            let rest = line.trim_start();
            match rest.strip_prefix("# ") {
                Some(body)
                    if body.split_once(": ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    format!("{}{body}", " ".repeat(indent))
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn walk(value: &serde_yaml::Value, prefix: &str, keys: &mut BTreeSet<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                let k = k.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_mapping()
                    || v.as_sequence()
                        .is_some_and(|s| s.iter().any(|i| i.is_mapping()))
                {
                    walk(v, &path, keys);
                } else {
                    keys.insert(path);
                }
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                walk(item, &format!("{prefix}[]"), keys);
            }
        }
        _ => {
            keys.insert(prefix.to_string());
        }
    }
}

fn keys_from_example() -> BTreeSet<String> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(&example_uncommented()).expect("flytube.yaml.example parses");
    let mut keys = BTreeSet::new();
    walk(&value, "", &mut keys);
    keys
}

/// Keys the page documents: `.B key` tag lines right after `.TP`.
fn documented_keys(page: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = page.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| w[1].strip_prefix(".B "))
        .map(|k| k.trim().to_string())
        .filter(|k| {
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.' || c == '[' || c == ']')
        })
        .collect()
}

/// The text of the page's `.EX` ... `.EE` blocks, roff escapes undone.
fn examples(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in page.lines() {
        match (line, current.as_mut()) {
            (".EX", _) => current = Some(Vec::new()),
            (".EE", Some(_)) => out.push(current.take().unwrap().join("\n")),
            (_, Some(block)) => block.push(line.replace("\\-", "-").replace("\\e", "\\")),
            _ => {}
        }
    }
    out
}

#[test]
fn the_source_parser_sees_nested_and_list_fields() {
    let source = "pub struct FileConfig {\n    /// doc\n    #[serde(default)]\n    \
                  pub relay: Option<RelayConfig>,\n    pub forwards: Option<Vec<ForwardConfig>>,\n    \
                  pub ciphers: Option<Vec<String>>,\n}\n\npub struct RelayConfig {\n    \
                  pub host: Option<String>,\n    pub new_key: Option<u64>,\n}\n\n\
                  pub struct ForwardConfig {\n    pub source_port: u32,\n}\n";
    let parsed = structs(source);
    assert_eq!(
        parsed["RelayConfig"],
        vec![
            ("host".to_string(), "Option<String>".to_string()),
            ("new_key".to_string(), "Option<u64>".to_string())
        ]
    );
    assert_eq!(parsed["FileConfig"].len(), 3);
    assert_eq!(parsed["ForwardConfig"][0].0, "source_port");
}

#[test]
fn every_config_rs_key_is_in_the_man_page() {
    let documented = documented_keys(&read("man/flytube.yaml.5"));
    let missing: Vec<_> = keys_from_config_rs()
        .into_iter()
        .filter(|k| !documented.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of src/config.rs without a `.TP` / `.B KEY` entry in man/flytube.yaml.5: {missing:?}"
    );
}

#[test]
fn every_example_key_is_in_the_man_page() {
    let documented = documented_keys(&read("man/flytube.yaml.5"));
    let missing: Vec<_> = keys_from_example()
        .into_iter()
        .filter(|k| !documented.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of flytube.yaml.example without a `.TP` / `.B KEY` entry in man/flytube.yaml.5: {missing:?}"
    );
}

#[test]
fn the_man_page_documents_no_key_that_does_not_exist() {
    let known = keys_from_config_rs();
    let stale: Vec<_> = documented_keys(&read("man/flytube.yaml.5"))
        .into_iter()
        .filter(|k| !known.contains(k))
        .collect();
    assert!(
        stale.is_empty(),
        "man/flytube.yaml.5 documents keys src/config.rs does not have: {stale:?}"
    );
}

#[test]
fn the_example_file_with_every_key_switched_on_is_valid() {
    flytube::config::parse_yaml(&example_uncommented(), "flytube.yaml.example")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_yaml_examples_in_the_man_page_are_valid() {
    let page = read("man/flytube.yaml.5");
    let yaml: Vec<String> = examples(&page)
        .into_iter()
        .filter(|e| e.starts_with("relay:"))
        .collect();
    assert!(yaml.len() >= 2, "expected the two YAML examples");
    let all_keys = keys_from_config_rs();
    for (i, text) in yaml.iter().enumerate() {
        flytube::config::parse_yaml(text, &format!("man/flytube.yaml.5 example {}", i + 1))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // The last example is the complete one: it shows every key.
    let value: serde_yaml::Value = serde_yaml::from_str(yaml.last().unwrap()).unwrap();
    let mut shown = BTreeSet::new();
    walk(&value, "", &mut shown);
    let missing: Vec<_> = all_keys.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "the complete example in man/flytube.yaml.5 lacks {missing:?}"
    );
}

#[test]
fn both_packages_install_both_man_pages() {
    let manifest = read("Cargo.toml");
    let deb = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("[package.metadata.deb]");
    let spec = read("packaging/rpm/flytube.spec");
    for (page, section) in [("flytube.8", "man8"), ("flytube.yaml.5", "man5")] {
        assert!(
            deb.contains(&format!("[\"man/{page}\", \"usr/share/man/{section}/\"")),
            "the .deb does not install man/{page}"
        );
        assert!(
            spec.contains(&format!(
                "\"$src/man/{page}\" %{{buildroot}}%{{_mandir}}/{section}/{page}"
            )) && spec.contains(&format!("\n%{{_mandir}}/{section}/{page}*\n")),
            "the .rpm does not install and list man/{page}"
        );
    }
}

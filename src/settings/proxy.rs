//! `relay.proxy` and `relay.proxy_password_file`: the proxy that reaches the relay, chosen
//! from `--proxy` / `FLYTUBE_PROXY` / the file, else the environment as curl reads it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Secret, config_error, read_file};
use crate::cli::Options;
use crate::error::Result;
use crate::proxy::{self, ProxyChoice, ProxySource, Scheme};

/// The environment variable behind `--proxy`.
pub const PROXY_ENV: &str = "FLYTUBE_PROXY";

/// Chooses the proxy for `relay_host` and reads its password file, if any.
pub(super) fn build(
    options: &Options,
    env: &HashMap<String, String>,
    file_proxy: Option<&str>,
    file_password: Option<&Path>,
    relay_host: &str,
) -> Result<(ProxyChoice, Option<PathBuf>)> {
    // An empty FLYTUBE_PROXY counts as unset, as an empty HTTPS_PROXY does; an empty
    // --proxy turns proxies off, as curl's -x "" does.
    let blank = |v: &str| v.trim().is_empty();
    let flag = options
        .proxy
        .as_deref()
        .filter(|text| !(blank(text) && env.get(PROXY_ENV).is_some_and(|v| blank(v))));
    let explicit = match (flag, file_proxy) {
        // clap fills --proxy from FLYTUBE_PROXY; the same value there means it came from it.
        (Some(text), _) if env.get(PROXY_ENV).map(String::as_str) == Some(text) => {
            Some((text, ProxySource::Env(PROXY_ENV.into())))
        }
        (Some(text), _) => Some((text, ProxySource::Flag)),
        (None, Some(text)) => Some((text, ProxySource::File)),
        (None, None) => None,
    };
    let mut choice = proxy::choose(explicit, env, relay_host).map_err(config_error)?;
    let password_file = options
        .proxy_password_file
        .clone()
        .or_else(|| file_password.map(Path::to_path_buf));
    if let Some(path) = &password_file {
        let text = read_file("proxy password", path)?;
        let password = text.lines().next().unwrap_or("").to_string();
        let why = choice.why();
        if let Some(url) = choice.proxy_mut() {
            if url.user.is_none() {
                return Err(config_error(format!(
                    "{} holds a proxy password, but the proxy {url} ({why}) names no user: \
                     write it as {}://USER@{}",
                    path.display(),
                    url.scheme.name(),
                    url.address()
                )));
            }
            if url.password.is_some() {
                return Err(config_error(format!(
                    "the proxy password is given twice, in the URL ({why}) and in {}: keep one",
                    path.display()
                )));
            }
            if url.scheme != Scheme::Http && password.len() > 255 {
                return Err(config_error(format!(
                    "the proxy password in {} is longer than SOCKS5's 255 bytes",
                    path.display()
                )));
            }
            url.password = Some(Secret::new(password));
        }
    }
    Ok((choice, password_file))
}

/// Comment lines for `flytube config`: the proxy, why, and where its password came from.
pub(super) fn comment(choice: &ProxyChoice, password_file: Option<&Path>) -> String {
    let mut out = format!("# proxy: {choice}\n");
    if let Some(url) = choice.proxy() {
        match (&url.password, password_file) {
            (Some(_), Some(path)) => out.push_str(&format!(
                "# proxy password: MASKED (from file {})\n",
                path.display()
            )),
            (Some(_), None) => out.push_str("# proxy password: MASKED (from the URL)\n"),
            (None, _) if url.user.is_some() => {
                out.push_str("# proxy password: none (an empty one is sent)\n")
            }
            (None, _) => {}
        }
    }
    out
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

    fn options(proxy: Option<&str>, password_file: Option<&Path>) -> Options {
        Options {
            proxy: proxy.map(str::to_string),
            proxy_password_file: password_file.map(Path::to_path_buf),
            ..Options::default()
        }
    }

    #[test]
    fn precedence_flag_env_file_then_environment() {
        let e = env(&[("HTTPS_PROXY", "http://env:1")]);
        let (choice, _) = build(
            &options(Some("http://flag:1"), None),
            &e,
            Some("http://file:1"),
            None,
            "r",
        )
        .unwrap();
        assert_eq!(choice.to_string(), "http://flag:1 (from --proxy)");
        let e2 = env(&[(PROXY_ENV, "http://fly:1")]);
        let (choice, _) = build(
            &options(Some("http://fly:1"), None),
            &e2,
            Some("http://file:1"),
            None,
            "r",
        )
        .unwrap();
        assert_eq!(choice.to_string(), "http://fly:1 (from FLYTUBE_PROXY)");
        let (choice, _) = build(&options(None, None), &e, Some("none"), None, "r").unwrap();
        assert_eq!(
            choice.to_string(),
            "none (turned off by relay.proxy in the settings file)"
        );
        let (choice, _) = build(&options(None, None), &e, None, None, "r").unwrap();
        assert_eq!(choice.to_string(), "http://env:1 (from HTTPS_PROXY)");
        // An empty FLYTUBE_PROXY is unset; an empty --proxy is off.
        let e3 = env(&[(PROXY_ENV, ""), ("HTTPS_PROXY", "http://env:1")]);
        let (choice, _) = build(&options(Some(""), None), &e3, None, None, "r").unwrap();
        assert_eq!(choice.to_string(), "http://env:1 (from HTTPS_PROXY)");
        let (choice, _) = build(&options(Some(""), None), &e, None, None, "r").unwrap();
        assert_eq!(choice.to_string(), "none (turned off by --proxy)");
    }

    #[test]
    fn password_file_completes_a_url_with_a_user() {
        let dir = std::env::temp_dir().join(format!("flytube-proxy-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "hunter2\nignored\n").unwrap();
        let (choice, path) = build(
            &options(None, None),
            &env(&[]),
            Some("socks5://bob@p:1"),
            Some(&file),
            "r",
        )
        .unwrap();
        assert_eq!(path.as_deref(), Some(file.as_path()));
        let url = choice.proxy().unwrap();
        assert_eq!(url.credentials(), Some(("bob", "hunter2")));
        let shown = comment(&choice, Some(&file));
        assert!(shown.contains("socks5://bob:MASKED@p:1"), "{shown}");
        assert!(shown.contains("MASKED (from file"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let err = build(
            &options(Some("http://p:1"), Some(&file)),
            &env(&[]),
            None,
            None,
            "r",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("names no user"), "{err}");
        let err = build(
            &options(Some("http://u:x@p:1"), Some(&file)),
            &env(&[]),
            None,
            None,
            "r",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("given twice"), "{err}");
        // No proxy in use: the file is read, and unused.
        let (choice, _) = build(
            &options(Some("none"), Some(&file)),
            &env(&[]),
            None,
            None,
            "r",
        )
        .unwrap();
        assert_eq!(choice.proxy(), None);
        let err = build(
            &options(None, Some(&dir.join("missing"))),
            &env(&[]),
            None,
            None,
            "r",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("proxy password"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

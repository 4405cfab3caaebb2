//! `forwards:` the list of remote forwards, from `-R`, the onboarding variables or the file
//! (the first source that has any wins; they are not merged).

use std::collections::HashMap;

use super::config_error;
use crate::config::ForwardConfig;
use crate::error::Result;
use crate::forward::{ForwardSpec, Target, Via, normalize_bind, parse_port};

/// The onboarding variables of a container, all or none.
pub const ONBOARDING_VARIABLES: [&str; 3] = ["SOURCE_PORT", "TARGET_HOST", "TARGET_PORT"];

/// Builds and checks the forward list: at least one, no relay port used twice. Anything
/// ignored on the way is said in `notes`. `via` (from `--target-via`) applies to the
/// forwards of the command line and the environment; file forwards carry their own.
pub(super) fn build(
    cli: &[String],
    env: &HashMap<String, String>,
    file: Option<Vec<ForwardConfig>>,
    via: Option<Via>,
    notes: &mut Vec<String>,
) -> Result<Vec<ForwardSpec>> {
    let file_has_forwards = file.as_ref().is_some_and(|f| !f.is_empty());
    let env_forward = if !cli.is_empty() {
        if let Some(set) = set_variables(env) {
            notes.push(format!("{set} ignored: -R/--forward is given"));
        }
        None
    } else {
        match from_env(env) {
            Ok(forward) => forward,
            // Kubernetes injects TARGET_PORT=tcp://10.96.0.5:443 for a Service named
            // `target`: when the file defines the forwards, such values are not an
            // onboarding triple and must not stop the daemon.
            Err(e) if file_has_forwards => {
                let set = set_variables(env).unwrap_or_default();
                notes.push(format!(
                    "{set} ignored in favour of the forwards in the settings file: {e} (in \
                     Kubernetes, service links inject such variables: set \
                     enableServiceLinks: false in the pod spec)"
                ));
                None
            }
            Err(e) => return Err(e),
        }
    };
    let with_via = |mut forward: ForwardSpec| -> Result<ForwardSpec> {
        if let Some(via) = via {
            forward.via = via;
            forward
                .validate()
                .map_err(|e| config_error(format!("forward {forward}: {e}")))?;
        }
        Ok(forward)
    };
    let forwards = if !cli.is_empty() {
        cli.iter()
            .map(|spec| {
                ForwardSpec::parse(spec)
                    .map_err(config_error)
                    .and_then(with_via)
            })
            .collect::<Result<Vec<_>>>()?
    } else if let Some(forward) = env_forward {
        vec![with_via(forward)?]
    } else {
        file.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, f)| from_file(i, f))
            .collect::<Result<Vec<_>>>()?
    };
    if forwards.is_empty() {
        return Err(config_error(
            "no forward: give -R SOURCE_PORT:TARGET_HOST:TARGET_PORT, set SOURCE_PORT, \
             TARGET_HOST and TARGET_PORT, or list forwards in the file",
        ));
    }
    for (i, a) in forwards.iter().enumerate() {
        if let Some(b) = forwards[..i]
            .iter()
            .find(|b| b.source_port == a.source_port && b.bind_address() == a.bind_address())
        {
            return Err(config_error(format!(
                "forwards {b} and {a} use the same relay port"
            )));
        }
    }
    Ok(forwards)
}

/// The forwards in the file's own shape, for `flytube config`.
pub(super) fn to_file(forwards: &[ForwardSpec]) -> Vec<ForwardConfig> {
    forwards
        .iter()
        .map(|f| ForwardConfig {
            bind: f.bind.as_ref().map(|_| f.bind_display().to_string()),
            source_port: f.source_port.into(),
            target_host: f.target.as_ref().map(|t| t.host.clone()),
            target_port: f.target.as_ref().map(|t| t.port.into()),
            via: (f.via != Via::Direct).then(|| f.via.name().to_string()),
        })
        .collect()
}

/// `NAME=value` of each onboarding variable that is set, or `None`.
fn set_variables(env: &HashMap<String, String>) -> Option<String> {
    let set: Vec<String> = ONBOARDING_VARIABLES
        .iter()
        .filter_map(|name| env.get(*name).map(|value| format!("{name}={value:?}")))
        .collect();
    (!set.is_empty()).then(|| set.join(", "))
}

/// The onboarding variables `SOURCE_PORT`, `TARGET_HOST`, `TARGET_PORT`: all or none.
fn from_env(env: &HashMap<String, String>) -> Result<Option<ForwardSpec>> {
    let [source, host, target] = ONBOARDING_VARIABLES.map(|name| env.get(name));
    let (source, host, target) = match (source, host, target) {
        (None, None, None) => return Ok(None),
        (Some(source), Some(host), Some(target)) => (source, host, target),
        _ => {
            let missing: Vec<&str> = ONBOARDING_VARIABLES
                .into_iter()
                .filter(|name| !env.contains_key(*name))
                .collect();
            return Err(config_error(format!(
                "SOURCE_PORT, TARGET_HOST and TARGET_PORT go together; {} not set",
                missing.join(", ")
            )));
        }
    };
    let forward = ForwardSpec::fixed(
        None,
        parse_port(source).map_err(|e| config_error(format!("SOURCE_PORT {e}")))?,
        host.trim().trim_start_matches('[').trim_end_matches(']'),
        parse_port(target).map_err(|e| config_error(format!("TARGET_PORT {e}")))?,
    );
    forward
        .validate()
        .map_err(|e| config_error(format!("TARGET_HOST: {e}")))?;
    Ok(Some(forward))
}

fn from_file(index: usize, f: ForwardConfig) -> Result<ForwardSpec> {
    let at = format!("forwards[{index}]");
    let port = |what: &str, value: u32| -> Result<u16> {
        match value {
            1..=65535 => Ok(value as u16),
            _ => Err(config_error(format!(
                "{at}.{what} {value} is outside 1-65535"
            ))),
        }
    };
    let target = match (f.target_host, f.target_port) {
        (Some(host), Some(target_port)) => Some(Target {
            host,
            port: port("target_port", target_port)?,
        }),
        (None, None) => None,
        _ => {
            return Err(config_error(format!(
                "{at}: target_host and target_port go together (leave both out for a dynamic \
                 forward)"
            )));
        }
    };
    let via = match f.via.as_deref() {
        None => Via::Direct,
        Some(text) => Via::parse(text).map_err(|e| config_error(format!("{at}.via: {e}")))?,
    };
    let forward = ForwardSpec {
        bind: f.bind.as_deref().map(normalize_bind),
        source_port: port("source_port", f.source_port)?,
        target,
        via,
    };
    forward
        .validate()
        .map_err(|e| config_error(format!("{at}: {e}")))?;
    Ok(forward)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_triple_must_be_complete() {
        let mut env = HashMap::new();
        env.insert("SOURCE_PORT".to_string(), "8443".to_string());
        let err = from_env(&env).unwrap_err().to_string();
        assert!(err.contains("TARGET_HOST, TARGET_PORT not set"), "{err}");
        env.insert("TARGET_HOST".into(), "gitlab".into());
        env.insert("TARGET_PORT".into(), "443".into());
        let f = from_env(&env).unwrap().unwrap();
        assert_eq!(f.to_string(), "localhost:8443 -> gitlab:443");
    }

    #[test]
    fn service_link_variables_yield_to_the_file() {
        let env: HashMap<String, String> = [("TARGET_PORT", "tcp://10.96.0.5:443")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = vec![ForwardConfig {
            bind: None,
            source_port: 8443,
            target_host: Some("gitlab".into()),
            target_port: Some(443),
            via: None,
        }];
        let mut notes = Vec::new();
        let forwards = build(&[], &env, Some(file), None, &mut notes).unwrap();
        assert_eq!(forwards.len(), 1);
        assert!(
            notes[0].contains("TARGET_PORT=\"tcp://10.96.0.5:443\" ignored"),
            "{notes:?}"
        );
        assert!(notes[0].contains("enableServiceLinks"), "{notes:?}");
        // Without forwards in the file the same variables stay an error.
        let err = build(&[], &env, None, None, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }
}

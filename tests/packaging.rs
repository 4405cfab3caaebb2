//! The packaging files agree with the code and with each other: the unit's start condition
//! is the daemon's default settings path, the documented RestartPreventExitStatus= is the
//! unit's, and the Kubernetes kit holds together (its settings parse, its paths meet, the
//! Secret and the probe are as documented). packaging/check.sh checks the built packages.

use std::path::Path;

use serde_yaml::Value;

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Values of `Key=` lines of a unit file (comments excluded).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
        .collect()
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `value[a][b]...`, where a number indexes a sequence.
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| {
        let next = match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(*key),
        };
        next.unwrap_or_else(|| panic!("no {key} in {path:?}"))
    })
}

#[test]
fn the_unit_waits_for_the_default_settings_file() {
    let unit = read("packaging/systemd/flytube.service");
    assert_eq!(
        unit_values(&unit, "ConditionPathExists"),
        vec![flytube::settings::DEFAULT_CONFIG_PATH.to_string()]
    );
    assert_eq!(
        unit_values(&unit, "ExecStart"),
        vec!["/usr/bin/flytube run"]
    );
    assert_eq!(unit_values(&unit, "MemoryMax").len(), 1, "MemoryMax=");
}

#[test]
fn restart_prevent_exit_status_is_documented_as_the_unit_has_it() {
    let unit = read("packaging/systemd/flytube.service");
    let values = unit_values(&unit, "RestartPreventExitStatus");
    assert_eq!(values.len(), 1, "one RestartPreventExitStatus= line");
    let expected = format!("RestartPreventExitStatus={}", values[0]);
    for doc in ["README.md", "packaging/README.md", "man/flytube.8"] {
        let text = read(doc);
        let mentions: Vec<&str> = text
            .match_indices("RestartPreventExitStatus=")
            .map(|(i, _)| {
                let rest = &text[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '=' || c == ' '))
                    .unwrap_or(rest.len());
                rest[..end].trim_end()
            })
            .collect();
        assert!(
            !mentions.is_empty(),
            "{doc} does not mention RestartPreventExitStatus="
        );
        for mention in mentions {
            assert_eq!(mention, expected, "{doc} disagrees with the unit");
        }
    }
}

#[test]
fn the_kubernetes_settings_parse_and_point_at_the_mounts() {
    let configmap = yaml("packaging/kubernetes/configmap.yaml");
    let settings_text = at(&configmap, &["data", "flytube.yaml"]).as_str().unwrap();
    let settings = flytube::config::parse_yaml(settings_text, "configmap.yaml flytube.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    at(&configmap, &["data", "known_hosts"]);

    let deployment = yaml("packaging/kubernetes/deployment.yaml");
    let pod = at(&deployment, &["spec", "template", "spec"]);
    let container = at(pod, &["containers", "0"]);
    let mount = |name: &str| -> String {
        container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volumeMount {name}"))["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The ConfigMap is the default settings path's directory; the key is in the Secret.
    assert_eq!(
        Path::new(flytube::settings::DEFAULT_CONFIG_PATH).parent(),
        Some(Path::new(&mount("config")))
    );
    let identity = settings.auth.unwrap().identity.unwrap();
    assert!(
        identity.starts_with(mount("key")),
        "auth.identity {} is not in the Secret's mount {}",
        identity.display(),
        mount("key")
    );
    let known_hosts = settings.host_key.unwrap().known_hosts.unwrap();
    assert!(known_hosts.starts_with(mount("config")));
    // The status file directory is the writable emptyDir.
    let env = container["env"].as_sequence().unwrap();
    let runtime = env
        .iter()
        .find(|e| e["name"].as_str() == Some("RUNTIME_DIRECTORY"))
        .expect("RUNTIME_DIRECTORY");
    assert_eq!(runtime["value"].as_str().unwrap(), mount("run"));
}

#[test]
fn the_deployment_is_what_the_packaging_notes_promise() {
    let deployment = yaml("packaging/kubernetes/deployment.yaml");
    assert_eq!(at(&deployment, &["spec", "replicas"]).as_u64(), Some(2));
    let pod = at(&deployment, &["spec", "template", "spec"]);
    assert_eq!(pod["enableServiceLinks"].as_bool(), Some(false));
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert_eq!(
        at(pod, &["securityContext", "fsGroup"]).as_u64(),
        Some(10001)
    );
    assert_eq!(
        at(pod, &["securityContext", "runAsNonRoot"]).as_bool(),
        Some(true)
    );
    let container = at(pod, &["containers", "0"]);
    assert_eq!(
        at(container, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
        Some(true)
    );
    let probe: Vec<&str> = at(container, &["readinessProbe", "exec", "command"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(probe, ["/usr/bin/flytube", "health"]);
    // YAML 1.1 (kubectl) reads 0440 as octal; serde_yaml (YAML 1.2) would not, so the
    // text is checked.
    assert!(
        read("packaging/kubernetes/deployment.yaml").contains("\n            defaultMode: 0440\n")
    );
    let pdb = yaml("packaging/kubernetes/poddisruptionbudget.yaml");
    assert_eq!(at(&pdb, &["spec", "minAvailable"]).as_u64(), Some(1));
    assert_eq!(
        at(&pdb, &["spec", "selector", "matchLabels"]),
        at(&deployment, &["spec", "selector", "matchLabels"])
    );
}

#[test]
fn the_image_runs_the_same_health_check_with_the_same_status_directory() {
    let dockerfile = read("packaging/container/Dockerfile");
    assert!(dockerfile.contains("CMD [\"/usr/bin/flytube\", \"health\"]"));
    assert!(dockerfile.contains("ENV RUNTIME_DIRECTORY=/run/flytube\n"));
    assert!(dockerfile.contains("install -d -o flytube -g flytube -m 0700 /run/flytube"));
    let deployment = read("packaging/kubernetes/deployment.yaml");
    assert!(deployment.contains("mountPath: /run/flytube\n"));
}

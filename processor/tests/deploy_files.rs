//! `docker-compose.yml`, the `Dockerfile` and the compose Prometheus configuration agree
//! with the code, so they cannot drift while no Docker engine runs them here: every
//! `weir` service's environment is a configuration `weir` accepts (and names only
//! variables it reads), the instances are exactly `LHS_INSTANCE_ID` 0 to count − 1 with
//! a state volume each and advertise the host port they publish, every program a service runs is a binary the image holds, and
//! Prometheus scrapes each instance on its `LHS_METRICS_PORT`; the `.dockerignore` keeps
//! build output, history, logs and the scripts' run directories out of the image's build
//! context, and nothing the build needs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use weir_processor::config::WeirConfig;
use yaml_serde::Value;

fn read(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    let mut value: Value =
        yaml_serde::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.apply_merge().expect("merge keys");
    value
}

/// The services built from this repository's image, by name, with their environment.
fn weir_services(compose: &Value) -> BTreeMap<String, (Value, BTreeMap<String, String>)> {
    let services = compose["services"].as_mapping().expect("services");
    services
        .iter()
        .filter(|(_, service)| service["image"].as_str() == Some("weir:latest"))
        .map(|(name, service)| {
            let mut service = service.clone();
            // Merge keys nested in `environment` are merged by apply_merge too.
            service.apply_merge().expect("merge keys");
            let env = service["environment"]
                .as_mapping()
                .map(|env| {
                    env.iter()
                        .map(|(k, v)| {
                            let value = match v {
                                Value::String(s) => s.clone(),
                                other => yaml_serde::to_string(other).expect("scalar"),
                            };
                            (
                                k.as_str().expect("a name").to_owned(),
                                value.trim().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (name.as_str().expect("a name").to_owned(), (service, env))
        })
        .collect()
}

/// The configuration of `env`, and the variables the configuration read.
fn config_of(env: &BTreeMap<String, String>) -> (Result<WeirConfig, String>, BTreeSet<String>) {
    let read = RefCell::new(BTreeSet::new());
    let config = WeirConfig::from_lookup(|name| {
        read.borrow_mut().insert(name.to_owned());
        env.get(name).cloned()
    })
    .map_err(|e| e.to_string());
    (config, read.into_inner())
}

#[test]
fn every_weir_service_is_a_configuration_weir_accepts() {
    let compose = yaml("docker-compose.yml");
    let services = weir_services(&compose);
    assert!(services.len() >= 3, "{:?}", services.keys());
    for (name, (_, env)) in &services {
        let (config, read) = config_of(env);
        let config = config.unwrap_or_else(|e| panic!("service {name}: {e}"));
        for variable in env.keys().filter(|k| k.starts_with("LHS_")) {
            assert!(
                read.contains(variable),
                "service {name} sets {variable}, which weir does not read"
            );
        }
        assert_eq!(config.bootstrap_servers, "redpanda:9092", "service {name}");
    }
}

#[test]
fn the_instances_are_ids_zero_to_count_each_with_its_own_state() {
    let compose = yaml("docker-compose.yml");
    let mut ids = BTreeMap::new();
    let mut volumes = BTreeSet::new();
    let mut count = None;
    for (name, (service, env)) in weir_services(&compose) {
        let command: Vec<&str> = service["command"]
            .as_sequence()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let entrypoint = service["entrypoint"].as_sequence().map(|e| e.len());
        if entrypoint.is_some() || command != ["server"] {
            continue;
        }
        let (config, _) = config_of(&env);
        let config = config.expect("valid");
        assert!(
            count
                .replace(config.instance_count)
                .is_none_or(|c| c == config.instance_count),
            "{name}: every instance has the same LHS_INSTANCE_COUNT"
        );
        assert!(
            ids.insert(config.instance_id, name.clone()).is_none(),
            "{name}: id taken"
        );
        let volume = service["volumes"][0]
            .as_str()
            .expect("a state volume")
            .to_owned();
        assert!(
            volume.ends_with(":/var/lib/weir"),
            "{name}: the state directory's volume, not {volume}"
        );
        assert!(
            volumes.insert(volume.clone()),
            "{name} shares the volume {volume}"
        );
        let port = config
            .metrics_port
            .expect("every instance serves /metrics and queries");
        // Redirects name a URL the host reaches: the host port published for this one.
        let published = service["ports"][0].as_str().expect("a published port");
        let host_port = published
            .strip_suffix(&format!(":{port}"))
            .unwrap_or_else(|| panic!("{name} publishes {published}, not its port {port}"));
        assert_eq!(
            config.advertised_http(port),
            format!("http://localhost:{host_port}"),
            "{name}"
        );
    }
    let count = count.expect("weir server services");
    assert_eq!(
        ids.keys().copied().collect::<Vec<_>>(),
        (0..count).collect::<Vec<_>>(),
        "instance ids: {ids:?}"
    );

    // Prometheus scrapes exactly those instances, on their metrics port.
    let prometheus = yaml("deploy/prometheus/prometheus-compose.yml");
    let targets: BTreeSet<String> = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_sequence()
        .expect("targets")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = ids.values().map(|name| format!("{name}:9100")).collect();
    assert_eq!(targets, expected);
}

#[test]
fn every_program_a_service_runs_is_in_the_image() {
    let dockerfile = read("Dockerfile");
    let compose = yaml("docker-compose.yml");
    for (name, (service, _)) in weir_services(&compose) {
        let program = service["entrypoint"][0].as_str().unwrap_or("weir");
        let binary = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(if program == "weir" {
                "processor/src/main.rs".to_owned()
            } else {
                format!("examples/src/bin/{program}.rs")
            });
        assert!(
            binary.exists(),
            "service {name} runs {program}, which is not built"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{program}")),
            "service {name} runs {program}, which the Dockerfile does not copy"
        );
    }
}

/// The names the scripts and the Makefile create under `WEIR_CACHE_DIR`:
/// `$WEIR_CACHE_DIR/run`, `${WEIR_CACHE_DIR:?}/run-flows`, `$(WEIR_CACHE_DIR)/target`…
fn cache_dir_entries(text: &str) -> BTreeSet<String> {
    text.split("WEIR_CACHE_DIR")
        .skip(1)
        .filter_map(|rest| {
            rest.trim_start_matches([':', '?', '}', ')'])
                .strip_prefix('/')
        })
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .collect::<String>()
                .trim_end_matches('.')
                .to_owned()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn the_build_context_leaves_out_builds_history_logs_and_run_directories() {
    let ignored: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for pattern in ["target", ".git", "**/*.log"] {
        assert!(ignored.contains(pattern), "{pattern} is not ignored");
    }
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let mut created = cache_dir_entries(&read("Makefile"));
    for entry in std::fs::read_dir(&scripts).expect("scripts/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        created.extend(cache_dir_entries(&read(&format!("scripts/{name}"))));
    }
    for name in ["run", "run-flows", "run-analytics", "postgres", "broker"] {
        assert!(created.contains(name), "{name} not found in {created:?}");
    }
    let missing: Vec<&String> = created.difference(&ignored).collect();
    assert!(missing.is_empty(), "created but not ignored: {missing:?}");
    // Nothing the build needs: the workspace and what the Dockerfile copies by name.
    let dockerfile = read("Dockerfile");
    let copied = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .filter(|args| !args.starts_with("--from"))
        .filter_map(|args| args.split_whitespace().next())
        .filter_map(|source| source.split('/').next());
    let cargo = read("Cargo.toml");
    let members = cargo
        .lines()
        .find_map(|line| line.strip_prefix("members = "))
        .expect("the workspace's members");
    let members = members.split('"').skip(1).step_by(2);
    for needed in copied.chain(members).chain(["Cargo.toml", "Cargo.lock"]) {
        assert!(!ignored.contains(needed), "{needed} is needed by the build");
    }
}

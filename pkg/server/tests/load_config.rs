//! Loads the shipped `config/ember.example.yaml` the way the binary does, so the example
//! can neither go stale nor drift from the defaults it claims to state.

use std::path::PathBuf;

use ember_server::config::{Config, Loaded, load};
use ember_server::target::Target;
use serde_yaml::Value;

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/ember.example.yaml")
}

fn load_example(extra: &[&str]) -> Config {
    let mut args = vec![format!("-config.file={}", example_path().display())];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    match load(&args, &[]).expect("example configuration loads") {
        Loaded::Run(config) => config,
        other => panic!("expected a configuration, got {other:?}"),
    }
}

/// Returns the dotted paths of every leaf under `value`.
fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (name, child) in map {
                let name = name.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                };
                leaf_paths(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn example_states_the_defaults() {
    assert_eq!(load_example(&[]), Config::default());
}

#[test]
fn example_covers_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let example: Value = serde_yaml::from_str(&text).unwrap();
    let defaults = serde_yaml::to_value(Config::default()).unwrap();
    let (mut in_example, mut in_config) = (Vec::new(), Vec::new());
    leaf_paths(&example, "", &mut in_example);
    leaf_paths(&defaults, "", &mut in_config);
    in_example.sort();
    in_config.sort();
    assert_eq!(in_example, in_config);
}

#[test]
fn commented_overrides_example_is_valid() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let commented: String = text
        .lines()
        .skip_while(|line| *line != "# overrides:")
        .map(|line| line.strip_prefix("# ").unwrap_or(line).to_string() + "\n")
        .collect();
    assert!(commented.starts_with("overrides:\n"), "{commented}");
    let config = Config::from_yaml(&commented).unwrap();
    let tenant = config.limits_for("tenant-a");
    assert_eq!(tenant.max_active_series, 20_000);
    assert_eq!(tenant.ingestion_rate_mb, 16.0);
    assert_eq!(tenant.max_stack_depth, config.limits.max_stack_depth);
}

#[test]
fn commented_scrape_configs_example_is_valid() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let commented: String = text
        .lines()
        .skip_while(|line| *line != "# scrape_configs:")
        .take_while(|line| !line.is_empty())
        .map(|line| line.strip_prefix("# ").unwrap_or(line).to_string() + "\n")
        .collect();
    assert!(commented.starts_with("scrape_configs:\n"), "{commented}");
    let config = Config::from_yaml(&commented).unwrap();
    let job = &config.scrape_configs[0];
    assert_eq!(job.job_name, "default");
    assert_eq!(job.static_configs[0].targets, vec!["127.0.0.1:6060"]);
    assert_eq!(
        job.kubernetes_sd_configs[0].namespaces.names,
        vec!["default"]
    );
}

#[test]
fn flags_override_the_example() {
    let config = load_example(&[
        "-target=distributor,ingester",
        "--server.http-listen-port",
        "0",
    ]);
    assert_eq!(config.target, vec![Target::Distributor, Target::Ingester]);
    assert_eq!(config.server.http_listen_port, 0);
    assert_eq!(config.storage, Config::default().storage);
}

#[test]
fn wal_dir_defaults_under_the_filesystem_dir() {
    let config = load_example(&["-storage.filesystem.dir=/var/lib/ember"]);
    assert_eq!(config.wal_dir(), PathBuf::from("/var/lib/ember/wal"));
    let config = load_example(&["-ingester.wal-dir=/fast/wal"]);
    assert_eq!(config.wal_dir(), PathBuf::from("/fast/wal"));
}

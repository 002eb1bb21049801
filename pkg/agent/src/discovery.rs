//! Finding targets: `static_configs` and Kubernetes pods by annotation.
//!
//! Discovery sends [`Update`]s: the complete set of targets of one group (a static
//! config, or one pod), an empty set when the group is gone. Pods are listed and
//! watched through the Kubernetes API with `kube`'s watcher, which relists after a
//! lost watch, so targets follow pods and their annotations.
//!
//! Both annotation schemes of DESIGN.md §5 are read:
//! - `profiles.grafana.com/<type>.scrape: "true"` with `.port`, `.port_name`, `.path`,
//!   `.scheme` per type, and `profiles.grafana.com/service_name`;
//! - Phlare's `phlare.grafana.com/scrape: "true"` with `phlare.grafana.com/port`, which
//!   scrapes every type the job enables.
//!
//! Only running pods with an IP are scraped. Labels are `namespace`, `pod`,
//! `container` (the one declaring the port, else the first), `node` and
//! `service_name` (the annotation, else `namespace/container`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{KubernetesSdConfig, ScrapeConfig};
use crate::{ProfileKind, Target};

/// The targets of one group, replacing what it had before.
#[derive(Debug, Clone)]
pub struct Update {
    /// Names the group, e.g. `job/static/0` or `job/k8s/0/namespace/pod`.
    pub group: String,
    /// Its targets; empty when the group is gone.
    pub targets: Vec<Target>,
}

const GRAFANA: &str = "profiles.grafana.com/";
const PHLARE_SCRAPE: &str = "phlare.grafana.com/scrape";
const PHLARE_PORT: &str = "phlare.grafana.com/port";
const PHLARE_SCHEME: &str = "phlare.grafana.com/scheme";

/// Starts discovery for every job; updates go to `tx`.
pub fn spawn(jobs: &[ScrapeConfig], tx: mpsc::Sender<Update>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for job in jobs {
        for (i, s) in job.static_configs.iter().enumerate() {
            let targets = static_targets(job, &s.targets, &s.labels);
            let update = Update {
                group: format!("{}/static/{i}", job.job_name),
                targets,
            };
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = tx.send(update).await;
            }));
        }
        for (i, sd) in job.kubernetes_sd_configs.iter().enumerate() {
            let namespaces: Vec<Option<String>> = if sd.namespaces.names.is_empty() {
                vec![None]
            } else {
                sd.namespaces.names.iter().cloned().map(Some).collect()
            };
            for ns in namespaces {
                tasks.push(tokio::spawn(watch_pods(
                    job.clone(),
                    sd.clone(),
                    format!("{}/k8s/{i}", job.job_name),
                    ns,
                    tx.clone(),
                )));
            }
        }
    }
    tasks
}

/// Returns the targets of static addresses: every enabled type of the job.
pub fn static_targets(
    job: &ScrapeConfig,
    addresses: &[String],
    labels: &BTreeMap<String, String>,
) -> Vec<Target> {
    let mut out = Vec::new();
    for address in addresses {
        for t in job.profiling_config.enabled_types() {
            out.push(Target {
                job: job.job_name.clone(),
                kind: t.kind,
                scheme: job.scheme.clone(),
                address: address.trim().to_string(),
                path: t.path,
                delta: t.delta,
                interval: job.scrape_interval,
                timeout: job.scrape_timeout,
                body_size_limit: job.body_size_limit,
                labels: labels.clone(),
            });
        }
    }
    out
}

/// Returns the targets a pod asks for through its annotations; none unless it is
/// running and has an IP.
pub fn pod_targets(job: &ScrapeConfig, pod: &Pod) -> Vec<Target> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let ip = status.pod_ip.as_deref().unwrap_or_default();
    if status.phase.as_deref() != Some("Running") || ip.is_empty() {
        return Vec::new();
    }
    let empty = BTreeMap::new();
    let ann = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();

    // Resolves a port annotation (number) or port name to (port, container name).
    let find_port = |port: Option<&String>, port_name: Option<&String>| -> Option<(i32, String)> {
        let declared = containers.iter().flat_map(|c| {
            c.ports
                .iter()
                .flatten()
                .map(move |p| (c.name.clone(), p.container_port, p.name.clone()))
        });
        if let Some(wanted) = port_name {
            return declared
                .into_iter()
                .find(|(_, _, n)| n.as_ref() == Some(wanted))
                .map(|(c, p, _)| (p, c));
        }
        let first_container = containers
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        match port.and_then(|p| p.trim().parse::<i32>().ok()) {
            Some(port) => {
                let container = declared
                    .into_iter()
                    .find(|(_, p, _)| *p == port)
                    .map(|(c, _, _)| c)
                    .unwrap_or(first_container);
                Some((port, container))
            }
            None if port.is_some() => None,
            None => declared.into_iter().next().map(|(c, p, _)| (p, c)),
        }
    };
    let make = |kind: ProfileKind,
                port: i32,
                container: String,
                path: Option<&String>,
                scheme: Option<&String>| {
        let resolved = job.profiling_config.resolve(kind);
        let service = ann
            .get(&format!("{GRAFANA}service_name"))
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("{namespace}/{container}"));
        let labels = BTreeMap::from([
            ("namespace".to_string(), namespace.clone()),
            ("pod".to_string(), name.clone()),
            ("container".to_string(), container),
            ("node".to_string(), node.clone()),
            ("service_name".to_string(), service),
        ]);
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        Target {
            job: job.job_name.clone(),
            kind,
            scheme: scheme.cloned().unwrap_or_else(|| job.scheme.clone()),
            address: format!("{host}:{port}"),
            path: path.cloned().unwrap_or(resolved.path),
            delta: resolved.delta,
            interval: job.scrape_interval,
            timeout: job.scrape_timeout,
            body_size_limit: job.body_size_limit,
            labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        }
    };

    let mut out: Vec<Target> = Vec::new();
    for kind in ProfileKind::ALL {
        let key = |suffix: &str| format!("{GRAFANA}{}.{suffix}", kind.annotation());
        if ann.get(&key("scrape")).map(String::as_str) != Some("true") {
            continue;
        }
        let Some((port, container)) = find_port(ann.get(&key("port")), ann.get(&key("port_name")))
        else {
            warn!(namespace, pod = name, kind = %kind, "annotated pod has no usable port");
            continue;
        };
        out.push(make(
            kind,
            port,
            container,
            ann.get(&key("path")),
            ann.get(&key("scheme")),
        ));
    }
    if ann.get(PHLARE_SCRAPE).map(String::as_str) == Some("true") {
        match find_port(ann.get(PHLARE_PORT), None) {
            Some((port, container)) => {
                for t in job.profiling_config.enabled_types() {
                    out.push(make(
                        t.kind,
                        port,
                        container.clone(),
                        None,
                        ann.get(PHLARE_SCHEME),
                    ));
                }
            }
            None => warn!(namespace, pod = name, "annotated pod has no usable port"),
        }
    }
    let mut seen = HashSet::new();
    out.retain(|t| seen.insert(t.key()));
    out
}

async fn kube_client(sd: &KubernetesSdConfig) -> Result<Client, String> {
    let config = if sd.kubeconfig_file.is_empty() {
        kube::Config::infer().await.map_err(|e| e.to_string())?
    } else {
        let kubeconfig = kube::config::Kubeconfig::read_from(&sd.kubeconfig_file)
            .map_err(|e| format!("kubeconfig {}: {e}", sd.kubeconfig_file))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| format!("kubeconfig {}: {e}", sd.kubeconfig_file))?
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

fn selectors(sd: &KubernetesSdConfig) -> watcher::Config {
    let join = |f: fn(&crate::config::Selector) -> &str| {
        sd.selectors
            .iter()
            .map(f)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut config = watcher::Config::default();
    let labels = join(|s| &s.label);
    if !labels.is_empty() {
        config = config.labels(&labels);
    }
    let fields = join(|s| &s.field);
    if !fields.is_empty() {
        config = config.fields(&fields);
    }
    config
}

async fn watch_pods(
    job: ScrapeConfig,
    sd: KubernetesSdConfig,
    prefix: String,
    namespace: Option<String>,
    tx: mpsc::Sender<Update>,
) {
    let client = loop {
        match kube_client(&sd).await {
            Ok(client) => break client,
            Err(e) => {
                warn!(job = job.job_name, error = %e, "cannot reach Kubernetes, retrying in 10s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    };
    let api: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    info!(
        job = job.job_name,
        namespace = namespace.as_deref().unwrap_or("*"),
        "watching pods"
    );
    let group = |pod: &Pod| {
        format!(
            "{prefix}/{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        )
    };
    let mut known: HashSet<String> = HashSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    let stream = watcher::watcher(api, selectors(&sd)).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let updates = match event {
            Ok(Event::Init) => {
                listed.clear();
                Vec::new()
            }
            Ok(Event::InitApply(pod)) => {
                let g = group(&pod);
                listed.insert(g.clone());
                known.insert(g.clone());
                vec![Update {
                    group: g,
                    targets: pod_targets(&job, &pod),
                }]
            }
            Ok(Event::InitDone) => {
                let gone: Vec<String> = known.difference(&listed).cloned().collect();
                known = std::mem::take(&mut listed);
                gone.into_iter()
                    .map(|group| Update {
                        group,
                        targets: Vec::new(),
                    })
                    .collect()
            }
            Ok(Event::Apply(pod)) => {
                let g = group(&pod);
                known.insert(g.clone());
                vec![Update {
                    group: g,
                    targets: pod_targets(&job, &pod),
                }]
            }
            Ok(Event::Delete(pod)) => {
                let g = group(&pod);
                known.remove(&g);
                vec![Update {
                    group: g,
                    targets: Vec::new(),
                }]
            }
            Err(e) => {
                warn!(job = job.job_name, error = %e, "watching pods failed, retrying");
                Vec::new()
            }
        };
        for update in updates {
            if tx.send(update).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: serde_json::Value, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "annotations": annotations},
            "spec": {"nodeName": "node-a", "containers": [
                {"name": "sidecar", "ports": [{"containerPort": 9000, "name": "metrics"}]},
                {"name": "app", "ports": [{"containerPort": 6060, "name": "pprof"}]}
            ]},
            "status": {"phase": phase, "podIP": "10.1.2.3"}
        }))
        .unwrap()
    }

    fn job() -> ScrapeConfig {
        ScrapeConfig {
            job_name: "k8s".into(),
            ..Default::default()
        }
    }

    #[test]
    fn grafana_annotations() {
        let p = pod(
            serde_json::json!({
                "profiles.grafana.com/cpu.scrape": "true",
                "profiles.grafana.com/cpu.port_name": "pprof",
                "profiles.grafana.com/memory.scrape": "true",
                "profiles.grafana.com/memory.port": "6060",
                "profiles.grafana.com/memory.path": "/custom/heap",
                "profiles.grafana.com/block.scrape": "false",
                "profiles.grafana.com/service_name": "checkout"
            }),
            "Running",
        );
        let targets = pod_targets(&job(), &p);
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets[0].url(),
            "http://10.1.2.3:6060/debug/pprof/profile?seconds=14"
        );
        assert_eq!(targets[1].url(), "http://10.1.2.3:6060/custom/heap");
        let labels = &targets[0].labels;
        assert_eq!(labels["service_name"], "checkout");
        assert_eq!(labels["container"], "app");
        assert_eq!(labels["namespace"], "shop");
        assert_eq!(labels["pod"], "web-1");
        assert_eq!(labels["node"], "node-a");
    }

    #[test]
    fn phlare_annotations_scrape_every_enabled_type() {
        let p = pod(
            serde_json::json!({"phlare.grafana.com/scrape": "true", "phlare.grafana.com/port": "9000"}),
            "Running",
        );
        let targets = pod_targets(&job(), &p);
        assert_eq!(targets.len(), 5);
        assert!(targets.iter().all(|t| t.address == "10.1.2.3:9000"));
        assert_eq!(targets[0].labels["service_name"], "shop/sidecar");
    }

    #[test]
    fn unannotated_and_pending_pods_are_ignored() {
        assert!(pod_targets(&job(), &pod(serde_json::json!({}), "Running")).is_empty());
        let annotated = serde_json::json!({"phlare.grafana.com/scrape": "true"});
        assert!(pod_targets(&job(), &pod(annotated.clone(), "Pending")).is_empty());
        assert_eq!(pod_targets(&job(), &pod(annotated, "Running")).len(), 5);
    }
}

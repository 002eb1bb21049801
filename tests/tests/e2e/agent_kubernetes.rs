//! Acceptance: Kubernetes pod discovery against a fake API server that serves the pods
//! list and a `watch=true` stream of real Pod JSON events, reached through a
//! kubeconfig. Annotated running pods become targets with the right address, path
//! and labels (both annotation schemes); un-annotated and non-running pods are
//! ignored; removing the annotation or deleting the pod removes the targets.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::agent_support::{FakeServer, respond, start_with_config, targets};
use ember_tests::{eventually, process::free_port};
use serde_json::{Value, json};

#[derive(Default)]
struct Cluster {
    version: u64,
    pods: Vec<Value>,
    /// (resourceVersion, type, object)
    events: Vec<(u64, String, Value)>,
}

#[derive(Default)]
struct Api {
    cluster: Mutex<Cluster>,
    changed: Condvar,
}

impl Api {
    fn apply(&self, mut pod: Value) {
        let mut c = self.cluster.lock().unwrap();
        c.version += 1;
        let version = c.version;
        pod["metadata"]["resourceVersion"] = json!(version.to_string());
        let name = pod["metadata"]["name"].clone();
        let kind = match c.pods.iter().position(|p| p["metadata"]["name"] == name) {
            Some(i) => {
                c.pods[i] = pod.clone();
                "MODIFIED"
            }
            None => {
                c.pods.push(pod.clone());
                "ADDED"
            }
        };
        c.events.push((version, kind.into(), pod));
        self.changed.notify_all();
    }

    fn delete(&self, name: &str) {
        let mut c = self.cluster.lock().unwrap();
        c.version += 1;
        let version = c.version;
        let i = c
            .pods
            .iter()
            .position(|p| p["metadata"]["name"] == name)
            .unwrap();
        let mut pod = c.pods.remove(i);
        pod["metadata"]["resourceVersion"] = json!(version.to_string());
        c.events.push((version, "DELETED".into(), pod));
        self.changed.notify_all();
    }

    fn serve(
        self: &Arc<Self>,
        req: crate::agent_support::Request,
        stream: &mut std::net::TcpStream,
    ) {
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        if path != "/api/v1/pods" && path != "/api/v1/namespaces/shop/pods" {
            respond(
                stream,
                "404 Not Found",
                "application/json",
                br#"{"kind":"Status","code":404}"#,
            );
            return;
        }
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        if param("watch").as_deref() != Some("true") {
            let c = self.cluster.lock().unwrap();
            let list = json!({
                "kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": c.version.to_string()},
                "items": c.pods,
            });
            respond(
                stream,
                "200 OK",
                "application/json",
                list.to_string().as_bytes(),
            );
            return;
        }
        let mut from: u64 = param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut c = self.cluster.lock().unwrap();
        loop {
            let new: Vec<(u64, String, Value)> =
                c.events.iter().filter(|e| e.0 > from).cloned().collect();
            for (version, kind, object) in new {
                let line = format!("{}\n", json!({"type": kind, "object": object}));
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                if stream
                    .write_all(chunk.as_bytes())
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                from = version;
            }
            c = self
                .changed
                .wait_timeout(c, Duration::from_secs(1))
                .unwrap()
                .0;
        }
    }
}

fn pod(name: &str, phase: &str, ip: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "annotations": annotations},
        "spec": {"nodeName": "node-1", "containers": [
            {"name": "app", "image": "app", "ports": [{"containerPort": 6060, "name": "pprof"}]},
            {"name": "admin", "image": "admin", "ports": [{"containerPort": 7070, "name": "http"}]}
        ]},
        "status": {"phase": phase, "podIP": ip}
    })
}

fn of_pod<'a>(all: &'a [Value], pod: &str) -> Vec<&'a Value> {
    all.iter().filter(|t| t["labels"]["pod"] == pod).collect()
}

#[test]
fn pods_are_discovered_by_annotation() {
    let api = Arc::new(Api::default());
    api.apply(pod(
        "grafana",
        "Running",
        "10.0.0.1",
        json!({
            "profiles.grafana.com/cpu.scrape": "true",
            "profiles.grafana.com/cpu.port_name": "pprof",
            "profiles.grafana.com/memory.scrape": "true",
            "profiles.grafana.com/memory.port": "7070",
            "profiles.grafana.com/memory.path": "/custom/heap",
            "profiles.grafana.com/memory.scheme": "https",
            "profiles.grafana.com/service_name": "checkout",
        }),
    ));
    api.apply(pod(
        "phlare",
        "Running",
        "10.0.0.2",
        json!({"phlare.grafana.com/scrape": "true", "phlare.grafana.com/port": "6060"}),
    ));
    api.apply(pod("plain", "Running", "10.0.0.3", json!({})));
    api.apply(pod(
        "pending",
        "Pending",
        "",
        json!({"phlare.grafana.com/scrape": "true", "phlare.grafana.com/port": "6060"}),
    ));
    let served = api.clone();
    let server = FakeServer::start(Arc::new(move |req, stream| served.serve(req, stream)));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{}'}}}}]
users: [{{name: fake, user: {{}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]
current-context: fake
",
            server.port
        ),
    )
    .unwrap();
    let config = format!(
        "scrape_configs:
  - job_name: pods
    scrape_interval: 3s
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {}
client:
  url: http://127.0.0.1:{}
",
        kubeconfig.display(),
        free_port()
    );
    let agent = start_with_config(&config, &["-target=agent"]);
    let client = agent.client();

    let all = eventually(
        "annotated pods become targets",
        Duration::from_secs(30),
        || {
            let all = targets(&client);
            if of_pod(&all, "grafana").len() == 2 && of_pod(&all, "phlare").len() == 5 {
                Ok(all)
            } else {
                Err(format!("{all:#?}"))
            }
        },
    );
    assert_eq!(
        all.len(),
        7,
        "un-annotated and pending pods are ignored: {all:#?}"
    );
    let grafana = of_pod(&all, "grafana");
    let cpu = grafana.iter().find(|t| t["type"] == "cpu").unwrap();
    assert_eq!(
        cpu["url"],
        "http://10.0.0.1:6060/debug/pprof/profile?seconds=2"
    );
    assert_eq!(
        cpu["labels"],
        json!({"namespace": "shop", "pod": "grafana", "container": "app",
               "node": "node-1", "service_name": "checkout"})
    );
    let memory = grafana.iter().find(|t| t["type"] == "memory").unwrap();
    assert_eq!(memory["url"], "https://10.0.0.1:7070/custom/heap");
    assert_eq!(memory["labels"]["container"], "admin");
    let phlare = of_pod(&all, "phlare");
    let mut urls: Vec<&str> = phlare.iter().map(|t| t["url"].as_str().unwrap()).collect();
    urls.sort();
    assert_eq!(
        urls,
        vec![
            "http://10.0.0.2:6060/debug/pprof/allocs",
            "http://10.0.0.2:6060/debug/pprof/block",
            "http://10.0.0.2:6060/debug/pprof/goroutine",
            "http://10.0.0.2:6060/debug/pprof/mutex",
            "http://10.0.0.2:6060/debug/pprof/profile?seconds=2",
        ]
    );
    assert!(
        phlare
            .iter()
            .all(|t| t["labels"]["service_name"] == "shop/app")
    );

    // The annotation goes away, the other pod is deleted, the pending pod starts.
    api.apply(pod("grafana", "Running", "10.0.0.1", json!({})));
    api.delete("phlare");
    api.apply(pod(
        "pending",
        "Running",
        "10.0.0.4",
        json!({"phlare.grafana.com/scrape": "true", "phlare.grafana.com/port": "6060"}),
    ));
    eventually("targets follow the pods", Duration::from_secs(30), || {
        let all = targets(&client);
        let pods: std::collections::BTreeSet<&str> = all
            .iter()
            .map(|t| t["labels"]["pod"].as_str().unwrap())
            .collect();
        if pods.len() == 1 && pods.contains("pending") && all.len() == 5 {
            Ok(())
        } else {
            Err(format!("{all:#?}"))
        }
    });
    assert_eq!(
        crate::agent_support::metric(&client, "ember_agent_targets", &["job=\"pods\""]),
        5.0
    );
}

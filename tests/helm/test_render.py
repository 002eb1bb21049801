"""The chart renders, lints and validates against Kubernetes' OpenAPI schemas for
each supported combination of values, and refuses inconsistent values with a
message naming the value to set."""

import json
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kv

from chart import MICRO, S3_SETS, by_kind, lint, render, render_error

KUBERNETES = kv.latest_version()


def zones(*names, **per_zone):
    """Sets zone-aware replication over the zones `names`, each with the
    `per_zone[key]` format of its letter; one --set string, since the list it
    sets replaces the values' list whole."""
    sets = []
    for i, name in enumerate(names):
        sets.append(f"zoneAwareReplication.zones[{i}].name={name}")
        for key, value in per_zone.items():
            sets.append(f"zoneAwareReplication.zones[{i}].{key}={value.format(letter='abcdefgh'[i])}")
    return ("zoneAwareReplication.enabled=true", ",".join(sets))


# Three zones of two ingesters, each pinned to its zone's nodes.
ZONES = zones(
    "zone-a", "zone-b", "zone-c",
    **{"nodeSelector.topology\\.kubernetes\\.io/zone": "eu-west-1{letter}"},
) + ("microservices.ingester.replicas=6", "microservices.ingester.nodeSelector.pool=ingest")

COMBINATIONS = {
    "single binary (defaults)": ((), ()),
    "single binary, S3 with an existing Secret": ((), S3_SETS),
    "single binary, agent off": ((), ("agent.enabled=false",)),
    "microservices, S3 with an existing Secret": (MICRO, S3_SETS),
    "microservices, agent off": (MICRO, S3_SETS + ("agent.enabled=false",)),
    "microservices, ServiceMonitor and datasource on": (
        MICRO,
        S3_SETS + ("serviceMonitor.enabled=true", "grafanaDatasource.enabled=true"),
    ),
    "microservices, monitoring on: ServiceMonitor, dashboards, PrometheusRule": (
        MICRO,
        S3_SETS + ("serviceMonitor.enabled=true", "dashboards.enabled=true", "prometheusRule.enabled=true"),
    ),
    "single binary, dashboards and PrometheusRule on": (
        (), ("dashboards.enabled=true", "prometheusRule.enabled=true"),
    ),
    "microservices, zone-aware, 3 zones of 2 ingesters pinned to their zones": (MICRO, S3_SETS + ZONES),
    "microservices, GCS": (MICRO, ("storage.backend=gcs", "storage.gcs.bucket_name=b", "storage.gcs.existingSecret=gcs")),
    "microservices, Azure": (
        MICRO,
        (
            "storage.backend=azure",
            "storage.azure.account_name=a",
            "storage.azure.container_name=c",
            "storage.azure.existingSecret=az",
        ),
    ),
}

# Custom resources: not in Kubernetes' own schemas; checked by hand below.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


@pytest.mark.parametrize("name", COMBINATIONS)
def test_lints_and_validates(name):
    files, sets = COMBINATIONS[name]
    report = lint(files, sets)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert not problems, f"helm lint --strict: {problems}"
    objects = render(files, sets)
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue
        try:
            kv.validate(obj, KUBERNETES, strict=True)
        except kv.ValidationError as e:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} is invalid for Kubernetes {KUBERNETES}: {e}")
    check_references(objects)
    check_config_keys(objects)


EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "ember.example.yaml"


def check_config_keys(objects):
    """Every key the chart writes is one of Ember's (config/ember.example.yaml has them
    all, and Ember refuses unknown keys); scrape jobs are the agent's own shape."""
    known = yaml.safe_load(EXAMPLE_CONFIG.read_text())

    def walk(written, reference, path):
        for key, value in written.items():
            assert key in reference, f"config.yaml key {'.'.join(path + [key])} is not in {EXAMPLE_CONFIG.name}"
            if isinstance(value, dict) and isinstance(reference[key], dict):
                walk(value, reference[key], path + [key])

    for cm in by_kind(objects, "ConfigMap").values():
        if "config.yaml" in cm["data"]:
            walk(yaml.safe_load(cm["data"]["config.yaml"]), known, [])


def check_references(objects):
    """What no schema checks: names the objects give each other resolve."""
    services = by_kind(objects, "Service")
    config_maps = by_kind(objects, "ConfigMap")
    accounts = by_kind(objects, "ServiceAccount")
    for kind in ("Deployment", "StatefulSet"):
        for name, w in by_kind(objects, kind).items():
            pod = w["spec"]["template"]
            labels = pod["metadata"]["labels"]
            assert all(labels.get(k) == v for k, v in w["spec"]["selector"]["matchLabels"].items()), name
            if kind == "StatefulSet":
                assert w["spec"]["serviceName"] in services, f"{name}: governing Service missing"
            assert pod["spec"]["serviceAccountName"] in accounts, name
            for vol in pod["spec"]["volumes"]:
                if "configMap" in vol:
                    assert vol["configMap"]["name"] in config_maps, f"{name}: {vol}"
            # The config file parses and is what -config.file names.
            args = pod["spec"]["containers"][0]["args"]
            assert "-config.file=/etc/ember/config.yaml" in args
            for cm in config_maps.values():
                if "config.yaml" in cm["data"]:
                    assert isinstance(yaml.safe_load(cm["data"]["config.yaml"]), dict)
    for name, svc in services.items():
        selector = svc["spec"]["selector"]
        pods = [
            w["spec"]["template"]
            for kind in ("Deployment", "StatefulSet")
            for w in by_kind(objects, kind).values()
            if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
        ]
        assert pods, f"Service {name} selects no pod"
        for port in svc["spec"]["ports"]:
            for pod in pods:
                named = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
                assert port["targetPort"] in named, f"Service {name}: no container port {port['targetPort']}"
    for sm in by_kind(objects, "ServiceMonitor").values():
        sel = sm["spec"]["selector"]
        picked = [
            s for s in services.values()
            if all(s["metadata"]["labels"].get(k) == v for k, v in sel["matchLabels"].items())
            and all(matches(e, s["metadata"]["labels"]) for e in sel.get("matchExpressions", []))
        ]
        components = {w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                      for kind in ("Deployment", "StatefulSet") for w in by_kind(objects, kind).values()}
        # One Service per component, so each pod is scraped once.
        assert sorted(s["metadata"]["labels"]["app.kubernetes.io/component"] for s in picked) == sorted(components)
        for s in picked:
            assert {p["name"] for p in s["spec"]["ports"]} >= {e["port"] for e in sm["spec"]["endpoints"]}


def matches(expr, labels):
    op, key = expr["operator"], expr["key"]
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op == "In":
        return labels.get(key) in expr["values"]
    if op == "NotIn":
        return labels.get(key) not in expr["values"]
    raise AssertionError(op)


def container(objects, kind, name):
    return by_kind(objects, kind)[name]["spec"]["template"]["spec"]["containers"][0]


def test_single_binary_shape():
    objects = render()
    sts = by_kind(objects, "StatefulSet")
    assert list(sts) == ["ember"]
    assert not by_kind(objects, "Deployment")
    c = container(objects, "StatefulSet", "ember")
    assert c["args"][0] == "-target=all"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert sts["ember"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert by_kind(objects, "Service")["ember"]["spec"]["ports"][0]["port"] == 4040
    # The agent runs in-process and discovers pods through the API.
    assert "ClusterRole" in {o["kind"] for o in objects}
    config = yaml.safe_load(by_kind(objects, "ConfigMap")["ember-config"]["data"]["config.yaml"])
    assert config["scrape_configs"][0]["kubernetes_sd_configs"] == [{"role": "pod"}]
    assert "client" not in config, "the single binary's agent pushes in-process"


def test_microservices_shape():
    objects = render(MICRO, S3_SETS)
    deployments = by_kind(objects, "Deployment")
    assert sorted(deployments) == ["ember-agent", "ember-compactor", "ember-distributor", "ember-querier"]
    ingester = by_kind(objects, "StatefulSet")["ember-ingester"]
    assert ingester["spec"]["podManagementPolicy"] == "Parallel"
    assert ingester["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 300
    assert deployments["ember-compactor"]["spec"]["strategy"]["type"] == "Recreate"
    pdbs = by_kind(objects, "PodDisruptionBudget")
    assert pdbs["ember-ingester"]["spec"]["maxUnavailable"] == 1
    memberlist = by_kind(objects, "Service")["ember-memberlist"]
    assert memberlist["spec"]["clusterIP"] == "None" and memberlist["spec"]["publishNotReadyAddresses"]
    c = container(objects, "StatefulSet", "ember-ingester")
    assert "-memberlist.join=dns+ember-memberlist.ember.svc.cluster.local:7946" in c["args"]
    # Credentials come from the Secret, never from the ConfigMap.
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {
        "EMBER_STORAGE_S3_ACCESS_KEY_ID": {"name": "ember-s3", "key": "access_key_id"},
        "EMBER_STORAGE_S3_SECRET_ACCESS_KEY": {"name": "ember-s3", "key": "secret_access_key"},
    }
    config = yaml.safe_load(by_kind(objects, "ConfigMap")["ember-config"]["data"]["config.yaml"])
    assert config["storage"] == {
        "backend": "s3",
        "s3": {"bucket_name": "ember-profiles", "endpoint": "s3.example.com:9000", "region": "",
               "insecure": False, "force_path_style": False},
    }
    assert config["client"]["url"] == "http://ember-distributor.ember.svc.cluster.local:4040"
    # Only the agent gets an API token.
    tokens = {n: d["spec"]["template"]["spec"]["automountServiceAccountToken"] for n, d in deployments.items()}
    assert tokens == {"ember-agent": True, "ember-compactor": False, "ember-distributor": False, "ember-querier": False}


def test_agent_off_drops_its_objects():
    objects = render(MICRO, S3_SETS + ("agent.enabled=false",))
    assert "ember-agent" not in by_kind(objects, "Deployment")
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    config = yaml.safe_load(by_kind(objects, "ConfigMap")["ember-config"]["data"]["config.yaml"])
    assert "scrape_configs" not in config and "client" not in config


def test_component_values_override_shared_ones():
    objects = render(MICRO, S3_SETS + (
        "ember.extraArgs.log\\.level=debug",
        "microservices.ingester.extraArgs.ingester\\.max-block-duration=30m",
        "ember.nodeSelector.pool=general",
        "microservices.querier.nodeSelector.pool=query",
    ))
    ingester = container(objects, "StatefulSet", "ember-ingester")
    assert "-log.level=debug" in ingester["args"] and "-ingester.max-block-duration=30m" in ingester["args"]
    querier = by_kind(objects, "Deployment")["ember-querier"]["spec"]["template"]["spec"]
    assert querier["nodeSelector"] == {"pool": "query"}
    assert by_kind(objects, "Deployment")["ember-distributor"]["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "general"}


def test_grafana_datasource_points_at_the_querier():
    objects = render(MICRO, S3_SETS + ("grafanaDatasource.enabled=true",))
    cm = by_kind(objects, "ConfigMap")["ember-grafana-datasource"]
    assert cm["metadata"]["labels"]["grafana_datasource"] == "1"
    ds = yaml.safe_load(cm["data"]["ember-datasource.yaml"])["datasources"][0]
    assert ds["type"] == "grafana-pyroscope-datasource"
    assert ds["url"] == "http://ember-querier.ember.svc.cluster.local:4040"


def test_zone_aware_replication_runs_a_statefulset_per_zone():
    objects = render(MICRO, S3_SETS + ZONES)
    sts = by_kind(objects, "StatefulSet")
    assert sorted(sts) == ["ember-ingester-zone-a", "ember-ingester-zone-b", "ember-ingester-zone-c"]
    selectors = set()
    for zone, letter in zip(("zone-a", "zone-b", "zone-c"), "abc"):
        s = sts[f"ember-ingester-{zone}"]
        assert s["spec"]["replicas"] == 2
        assert s["spec"]["podManagementPolicy"] == "Parallel" and s["spec"]["minReadySeconds"] == 5
        assert s["spec"]["serviceName"] == "ember-ingester-headless"
        assert s["metadata"]["labels"]["zone"] == zone
        assert s["spec"]["selector"]["matchLabels"]["zone"] == zone
        assert s["spec"]["template"]["metadata"]["labels"]["zone"] == zone
        selectors.add(tuple(sorted(s["spec"]["selector"]["matchLabels"].items())))
        pod = s["spec"]["template"]["spec"]
        # The zone's own node selector goes over the ingester's.
        assert pod["nodeSelector"] == {"pool": "ingest", "topology.kubernetes.io/zone": f"eu-west-1{letter}"}
        args = pod["containers"][0]["args"]
        assert f"-ingester.availability-zone={zone}" in args and "-target=ingester" in args
        assert "-memberlist.node-name=$(POD_NAME)" in args
        assert s["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert len(selectors) == 3, "each StatefulSet owns only its zone's pods"
    # A budget per zone, each over that zone's pods only.
    pdbs = by_kind(objects, "PodDisruptionBudget")
    assert "ember-ingester" not in pdbs
    for zone in ("zone-a", "zone-b", "zone-c"):
        pdb = pdbs[f"ember-ingester-{zone}"]["spec"]
        assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"]["zone"] == zone
    # One Service for every zone's ingesters; only ingesters name a zone.
    selector = by_kind(objects, "Service")["ember-ingester"]["spec"]["selector"]
    assert "zone" not in selector
    for name, d in by_kind(objects, "Deployment").items():
        assert not any(a.startswith("-ingester.availability-zone") for a in d["spec"]["template"]["spec"]["containers"][0]["args"]), name
    # Distributors, queriers and ingesters all read zone awareness from the file.
    config = yaml.safe_load(by_kind(objects, "ConfigMap")["ember-config"]["data"]["config.yaml"])
    assert config["distributor"] == {"zone_awareness_enabled": True}


def test_zone_replicas_split_the_ingesters_or_are_given_per_zone():
    def replicas(*sets):
        objects = render(MICRO, S3_SETS + sets)
        return {n: s["spec"]["replicas"] for n, s in by_kind(objects, "StatefulSet").items()}

    # The values' three zones share the 3 ingesters of values-micro-services.yaml.
    assert replicas("zoneAwareReplication.enabled=true") == {
        "ember-ingester-zone-a": 1, "ember-ingester-zone-b": 1, "ember-ingester-zone-c": 1}
    # 4 over three zones rounds up to 2 each.
    assert set(replicas("zoneAwareReplication.enabled=true", "microservices.ingester.replicas=4").values()) == {2}
    # Two zones are enough for replication factor 3: the third replica fills in.
    assert replicas(*zones("east", "west"), "microservices.ingester.replicas=3") == {
        "ember-ingester-east": 2, "ember-ingester-west": 2}
    # A zone's own count wins.
    own = "zoneAwareReplication.zones[0].name=east,zoneAwareReplication.zones[0].replicas=3," \
          "zoneAwareReplication.zones[1].name=west"
    assert replicas("zoneAwareReplication.enabled=true", own) == {"ember-ingester-east": 3, "ember-ingester-west": 2}


BAD_VALUES = {
    "microservices without object storage": (MICRO, (), "set storage.backend to s3, gcs or azure"),
    "ingester replicas below the replication factor": (
        MICRO, S3_SETS + ("microservices.ingester.replicas=2",), "set microservices.ingester.replicas to at least 3"),
    "replication factor above the ingesters": (
        MICRO, S3_SETS + ("config.distributor.replication_factor=5",), "set microservices.ingester.replicas to at least 5"),
    "s3 without a bucket": ((), ("storage.backend=s3",), "set storage.s3.bucket_name"),
    "an unknown backend": ((), ("storage.backend=ftp",), "storage.backend is \"ftp\": set it to one of"),
    "a secret inlined in values": ((), S3_SETS + ("storage.s3.secret_access_key=x",), "set storage.s3.existingSecret"),
    "storage under config": ((), ("config.storage.backend=s3",), "set storage.* instead"),
    "two single binaries on one volume": ((), ("singleBinary.replicas=2",), "set singleBinary.replicas=1"),
    "two compactors": (MICRO, S3_SETS + ("microservices.compactor.replicas=2",), "microservices.compactor.replicas is 2: set it to 1"),
    "zone-aware replication of the single binary": (
        (), ("zoneAwareReplication.enabled=true",), "set microservices.enabled=true"),
    "a zone named twice": (
        MICRO, S3_SETS + zones("zone-a", "zone-b", "zone-a"), "zoneAwareReplication.zones names \"zone-a\" twice"),
    "a zone name that is no DNS label": (
        MICRO, S3_SETS + zones("zone-a", "Zone_B"), "a zone named \"Zone_B\": give each zone a name of lowercase letters"),
    "a zone without a name": (
        MICRO, S3_SETS + ("zoneAwareReplication.enabled=true", "zoneAwareReplication.zones[1].name=b"),
        "a zone named \"\": give each zone a name"),
    "one zone for replication factor 3": (
        MICRO, S3_SETS + zones("only"),
        "zoneAwareReplication.zones has 1 zones, but with replication factor 3 a write must reach 2"),
    "a zone without ingesters": (
        MICRO, S3_SETS + ("zoneAwareReplication.enabled=true", "microservices.ingester.replicas=0"),
        "zone zone-a has 0 ingesters: give it at least 1"),
    "zones with fewer ingesters than the replication factor": (
        MICRO, S3_SETS + zones("a", "b", replicas="1"), "below the replication factor 3"),
    "azure without a container": (
        MICRO, ("storage.backend=azure", "storage.azure.account_name=a"), "set storage.azure.container_name"),
}


@pytest.mark.parametrize("name", BAD_VALUES)
def test_bad_values_name_the_value_to_set(name):
    files, sets, expected = BAD_VALUES[name]
    message = render_error(files, sets)
    assert expected in message, message


OPERATIONS = Path(__file__).resolve().parents[2] / "operations"
CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "ember"
DASHBOARDS = sorted((OPERATIONS / "dashboards").glob("*.json"))
RULES = OPERATIONS / "alerts" / "ember.rules.yaml"


def test_the_chart_carries_the_same_dashboards_and_rules_as_operations():
    """Helm reads only inside the chart: its copies are build.py's, byte for byte."""
    assert len(DASHBOARDS) == 6
    copies = sorted((CHART_DIR / "dashboards").glob("*.json"))
    assert [c.name for c in copies] == [d.name for d in DASHBOARDS]
    for original, copy in zip(DASHBOARDS, copies):
        assert copy.read_bytes() == original.read_bytes(), f"{copy} differs: run operations/dashboards/build.py"
    assert (CHART_DIR / "alerts" / "ember.rules.yaml").read_bytes() == RULES.read_bytes()


def test_monitoring_is_off_by_default():
    objects = render(MICRO, S3_SETS)
    assert not by_kind(objects, "PrometheusRule")
    assert not [n for n in by_kind(objects, "ConfigMap") if "-dashboard-" in n]


def test_dashboards_are_config_maps_for_the_grafana_sidecar():
    objects = render(MICRO, S3_SETS + ("dashboards.enabled=true", "dashboards.annotations.grafana_folder=Ember"))
    maps = {n: cm for n, cm in by_kind(objects, "ConfigMap").items() if "-dashboard-" in n}
    assert sorted(maps) == sorted(f"ember-dashboard-{d.stem.removeprefix('ember-')}" for d in DASHBOARDS)
    for d in DASHBOARDS:
        cm = maps[f"ember-dashboard-{d.stem.removeprefix('ember-')}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Ember"}
        assert cm["metadata"]["namespace"] == "ember"
        assert list(cm["data"]) == [d.name]
        # Grafana's legend templates ({{instance}}) pass through Helm untouched.
        assert json.loads(cm["data"][d.name]) == json.loads(d.read_text())
        # A ConfigMap holds at most 1 MiB.
        assert len(cm["data"][d.name].encode()) < 1 << 20
    other = render(MICRO, S3_SETS + ("dashboards.enabled=true", "dashboards.namespace=grafana"))
    assert {cm["metadata"]["namespace"] for n, cm in by_kind(other, "ConfigMap").items() if "-dashboard-" in n} == {
        "grafana"
    }


def test_prometheus_rule_carries_the_alerts():
    objects = render(MICRO, S3_SETS + ("prometheusRule.enabled=true", "prometheusRule.labels.release=kube-prometheus"))
    rule = by_kind(objects, "PrometheusRule")["ember"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) == 10
    for alert in alerts:
        assert alert["labels"]["severity"] in ("critical", "warning")
        # Prometheus's own templates ({{ $labels.instance }}) pass through Helm untouched.
        assert "{{ $labels." in alert["annotations"]["summary"] or "{{ $value" in alert["annotations"]["summary"]
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{alert['alert'].lower()}"


def test_prometheus_rule_runbook_urls_point_where_the_runbook_is_served():
    base = "https://git.example.com/ember/blob/main/docs/operations.md"
    objects = render(MICRO, S3_SETS + ("prometheusRule.enabled=true", f"prometheusRule.runbookUrl={base}"))
    alerts = [r for g in by_kind(objects, "PrometheusRule")["ember"]["spec"]["groups"] for r in g["rules"]]
    assert {a["annotations"]["runbook_url"] for a in alerts} == {f"{base}#{a['alert'].lower()}" for a in alerts}

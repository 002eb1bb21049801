"""What the chart renders is what runs: the rendered pods, started as processes
on a stand-in node (cluster.py), form a ring, answer their probes, take pushes
through the distributor Service and answer queries through the querier
Service, and lose no acknowledged profile while the ingester StatefulSet is
restarted one pod at a time, or, with zone-aware replication, while a whole
zone is killed."""

import contextlib
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from chart import MICRO, by_kind, render
from cluster import Node, Pod
from image import build_rootfs

NAMESPACE = "ember"
SECRETS = {"ember-s3": {"access_key_id": "ember-helm-test", "secret_access_key": "ember-helm-secret"}}
MOTO_PORT = 5000
BUCKET = "ember-helm"
CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
SERVICE = "helm-load"
# A folded sample of 1 at the default sampleRate of 100 Hz is 10 ms of CPU.
VALUE = 10_000_000
START_TIMEOUT = 120
# moto checks no signature but lists a bucket only for a request that carries a
# well-formed one.
MOTO_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=ember-helm-test/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=00"
)


def http(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def push(node, service, i, now_s):
    """One /ingest push whose only stack is push_<i>, through a ready pod of `service`."""
    url = node.service_url(service)
    return http(
        "POST",
        f"{url}/ingest?name={SERVICE}&format=folded&from={now_s}&until={now_s + 10}",
        f"push_{i} 1\n".encode(),
    )[0]


def counted(node, start_ms, end_ms):
    """push id -> value, from a flame graph through the querier Service."""
    url = node.service_url("ember-querier" if "ember-querier" in names(node) else "ember")
    status, body = http(
        "POST",
        f"{url}/querier.v1.QuerierService/SelectMergeStacktraces",
        json.dumps({
            "profileTypeID": CPU,
            "labelSelector": f'{{service_name="{SERVICE}"}}',
            "start": str(start_ms),
            "end": str(end_ms),
            "maxNodes": "100000",
        }).encode(),
        {"content-type": "application/json"},
        timeout=30,
    )
    assert status == 200, f"SelectMergeStacktraces answered {status}: {body[:500]!r}"
    fg = json.loads(body)["flamegraph"]
    out = {}
    if len(fg.get("levels", [])) > 1:
        values = [int(v) for v in fg["levels"][1].get("values", [])]
        for k in range(0, len(values), 4):
            name = fg["names"][values[k + 3]]
            assert name.startswith("push_"), name
            out[int(name[5:])] = values[k + 1]
    return out


def names(node):
    return {s["metadata"]["name"] for s in node.services}


def pods_of(node, objects, config_maps):
    """The pods the workloads ask for: StatefulSet ordinals, Deployment hashes."""
    pods = []
    for kind in ("StatefulSet", "Deployment"):
        for name, w in by_kind(objects, kind).items():
            template = w["spec"]["template"]
            digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
            for i in range(w["spec"]["replicas"]):
                pod_name = f"{name}-{i}" if kind == "StatefulSet" else f"{name}-{digest}-{i:05d}"
                pods.append(Pod(node, pod_name, template, config_maps, SECRETS, kind == "StatefulSet"))
    return pods


@pytest.fixture
def rootfs(ember_binary, tmp_path):
    path = tmp_path / "rootfs"
    stage = build_rootfs(ember_binary, path)
    return str(path), {"entrypoint": stage["entrypoint"], "workdir": stage["workdir"]}


def start_cluster(tmp_path, rootfs, objects):
    root, image = rootfs
    node = Node(tmp_path / "node", root, image, NAMESPACE)
    node.add_services(list(by_kind(objects, "Service").values()))
    config_maps = {n: cm["data"] for n, cm in by_kind(objects, "ConfigMap").items()}
    pods = pods_of(node, objects, config_maps)
    return node, pods


def dump_logs(node):
    for pod in node.pods.values():
        print(f"===== {pod.name} (started {pod.starts} times)\n{pod.log()[-3000:]}")


# Microservices storing in moto, with the credentials of a Secret.
S3 = (
    "storage.backend=s3",
    f"storage.s3.bucket_name={BUCKET}",
    f"storage.s3.endpoint=s3.storage.svc.cluster.local:{MOTO_PORT}",
    "storage.s3.region=us-east-1",
    "storage.s3.insecure=true",
    "storage.s3.force_path_style=true",
    "storage.s3.existingSecret=ember-s3",
)


@contextlib.contextmanager
def running(tmp_path, rootfs, moto_server, objects):
    """Runs every rendered pod, ready and probed, with moto as S3; yields the
    node (entered) and the pods, and prints every log if the body fails."""
    node, pods = start_cluster(tmp_path, rootfs, objects)
    moto = None
    try:
        with node.entered():
            # Object storage, as an S3-compatible server in another namespace would be
            # (moto reads a bucket from the path for *.svc.cluster.local hosts).
            node.extra_hosts["s3.storage.svc.cluster.local"] = node.gateway
            moto = node.popen_in_node([moto_server, "-H", node.gateway, "-p", str(MOTO_PORT)],
                                      open(tmp_path / "moto.log", "w"))
            wait_for(lambda: http("PUT", f"http://{node.gateway}:{MOTO_PORT}/{BUCKET}")[0] == 200, "moto")
            for pod in pods:
                pod.start()
            for pod in pods:
                pod.wait_ready(START_TIMEOUT)
            check_probes(pods)
            yield node, pods
    except BaseException:
        dump_logs(node)
        raise
    finally:
        if moto is not None:
            moto.kill()
            moto.wait()
        node.close()


def gossiping_pods(pods):
    return [p for p in pods if p.labels.get("app.kubernetes.io/part-of") == "memberlist"]


def check_exactly_once(node, acked, sent, start_ms, end_ms, when):
    got = counted(node, start_ms, end_ms)
    lost = sorted(i for i in acked if got.get(i) != VALUE)
    assert not lost, f"{when}: acknowledged pushes not counted exactly once: {lost[:20]} ({len(lost)} of {len(acked)})"
    assert all(v == VALUE for v in got.values()), f"{when}: a push counted twice"
    assert set(got) <= set(range(sent + 1)), f"{when}: a push that was never sent"


def test_microservices_render_runs(netns_capable, moto_server, rootfs, tmp_path):
    objects = render(MICRO, S3, namespace=NAMESPACE)
    with running(tmp_path, rootfs, moto_server, objects) as (node, pods):
        gossiping = gossiping_pods(pods)
        assert {p.labels["app.kubernetes.io/component"] for p in gossiping} == {"distributor", "ingester", "querier"}
        # The join name is one name for every gossiping pod's address.
        join = next(a for a in gossiping[0].container["args"] if a.startswith("-memberlist.join="))
        name = join.removeprefix("-memberlist.join=dns+").rsplit(":", 1)[0]
        assert gossiping[0].resolve(name) == {p.ip for p in gossiping}, f"{name} in a pod's resolver"
        ring_complete(gossiping)

        # One push through the distributor Service, read through the querier Service.
        now = int(time.time())
        start_ms, end_ms = (now - 3600) * 1000, (now + 3600) * 1000
        assert push(node, "ember-distributor", 0, now) == 200
        wait_for(lambda: counted(node, start_ms, end_ms) == {0: VALUE}, "the first push to be queryable")

        # Rolling restart of the ingesters under load, as `kubectl rollout restart`
        # does it: highest ordinal first, each deleted (SIGTERM, grace period) and
        # back ready (+ minReadySeconds) before the next.
        sts = by_kind(objects, "StatefulSet")["ember-ingester"]
        grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        min_ready = sts["spec"].get("minReadySeconds", 0)
        load = Load(node, first_id=1, now_s=now)
        ingesters = sorted((p for p in pods if p.name.startswith("ember-ingester-")), key=lambda p: p.name)
        time.sleep(1)
        exits = {}
        for pod in reversed(ingesters):
            exits[pod.name] = pod.terminate(grace)
            pod.start()
            pod.wait_ready(START_TIMEOUT)
            time.sleep(min_ready)
        time.sleep(1)
        acked, sent, refused = load.stop()
        assert exits == {p.name: 0 for p in ingesters}, f"ingester exit codes on SIGTERM: {exits}"
        ring_complete(gossiping)
        print(f"rolling restart: {sent} pushes sent, {len(acked)} acknowledged, refused: {refused}")
        assert len(acked) >= 20, f"too few pushes acknowledged to prove anything: {len(acked)} of {sent}"
        check_exactly_once(node, acked, sent, start_ms, end_ms, "after the rolling restart")
        # The restarted ingesters flushed to the shared bucket on SIGTERM.
        status, listing = http("GET", f"http://{node.gateway}:{MOTO_PORT}/{BUCKET}?list-type=2",
                               headers={"Authorization": MOTO_AUTHORIZATION})
        assert status == 200 and b"meta.json" in listing, f"no block in the bucket: {listing[:300]!r}"


def test_zone_aware_render_runs(netns_capable, moto_server, rootfs, tmp_path):
    # values-micro-services.yaml's 3 ingesters, one in each of the three zones.
    objects = render(MICRO, S3 + ("zoneAwareReplication.enabled=true",), namespace=NAMESPACE)
    zones = {name: s["spec"]["template"]["metadata"]["labels"]["zone"]
             for name, s in by_kind(objects, "StatefulSet").items()}
    assert sorted(zones.values()) == ["zone-a", "zone-b", "zone-c"]
    with running(tmp_path, rootfs, moto_server, objects) as (node, pods):
        gossiping = gossiping_pods(pods)
        ring_complete(gossiping)
        # Each ingester gossips the zone of its StatefulSet.
        querier = next(p for p in gossiping if p.name.startswith("ember-querier-"))
        status, body = http("GET", f"http://{querier.ip}:{querier.container_port('http')}/ring?format=json")
        assert status == 200
        seen = {m["name"]: m["zone"] for m in json.loads(body)["members"] if m["roles"]["ingester"]}
        assert seen == {f"{sts}-0": zone for sts, zone in zones.items()}

        now = int(time.time())
        start_ms, end_ms = (now - 3600) * 1000, (now + 3600) * 1000
        load = Load(node, first_id=1, now_s=now)
        wait_for(lambda: len(load.acked) >= 10, "pushes acknowledged")
        # Zone b goes down at once, SIGKILLed; zones a and c acknowledge on.
        (zone_b,) = [p for p in pods if p.name == "ember-ingester-zone-b-0"]
        zone_b.kill()
        at_kill = len(load.acked)
        wait_for(lambda: len(load.acked) >= at_kill + 20, "pushes acknowledged with zone b down")
        with load.lock:
            acked, sent = set(load.acked), load.next_id - 1
        check_exactly_once(node, acked, sent, start_ms, end_ms, "with zone b down")
        zone_b.start()
        zone_b.wait_ready(START_TIMEOUT)
        ring_complete(gossiping)
        at_back = len(load.acked)
        wait_for(lambda: len(load.acked) >= at_back + 10, "pushes acknowledged with zone b back")
        acked, sent, refused = load.stop()
        print(f"zone b killed: {sent} pushes sent, {len(acked)} acknowledged, refused: {refused}")
        check_exactly_once(node, acked, sent, start_ms, end_ms, "with zone b back")


def test_single_binary_render_runs(netns_capable, rootfs, tmp_path):
    objects = render(namespace=NAMESPACE)
    node, pods = start_cluster(tmp_path, rootfs, objects)
    try:
        with node.entered():
            assert [p.name for p in pods] == ["ember-0"]
            pods[0].start()
            pods[0].wait_ready(START_TIMEOUT)
            check_probes(pods)
            url = node.service_url("ember")
            status, page = http("GET", f"{url}/")
            assert status == 200 and b"<html" in page.lower(), f"the UI answered {status}: {page[:200]!r}"
            now = int(time.time())
            assert push(node, "ember", 7, now) == 200
            wait_for(lambda: counted(node, (now - 60) * 1000, (now + 60) * 1000) == {7: VALUE}, "the push")
            # SIGTERM flushes the head onto the pod's volume, under storage.filesystem.dir.
            assert pods[0].terminate(60) == 0
            blocks = list((node.workdir / "claims" / "data-ember-0").glob("blocks/*/blocks/*/meta.json"))
            assert blocks, "no block on the volume after SIGTERM"
    except BaseException:
        dump_logs(node)
        raise
    finally:
        node.close()


def check_probes(pods):
    for pod in pods:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            ok, what = pod.probe(kind)
            assert ok, f"{pod.name} {kind}: {what}"


def ring_complete(gossiping):
    """Every gossiping pod lists every other, ingesters ACTIVE, at its current address."""
    expected = {p.name: p.ip for p in gossiping}

    def check():
        for pod in gossiping:
            status, body = http("GET", f"http://{pod.ip}:{pod.container_port('http')}/ring?format=json")
            if status != 200:
                return False
            members = json.loads(body)
            members = members.get("members", members) if isinstance(members, dict) else members
            seen = {m["name"]: m for m in members}
            if set(seen) != set(expected):
                return False
            for name, m in seen.items():
                if not m["addr"].startswith(expected[name] + ":"):
                    return False
                if name.startswith("ember-ingester-") and m["state"].upper() != "ACTIVE":
                    return False
        return True

    wait_for(check, f"every member's ring to list {sorted(expected)}", timeout=60)


def wait_for(check, what, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, AssertionError, KeyError, ValueError) as e:
            last = e
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


class Load:
    """Two pusher threads sending push_<id> through the distributor Service."""

    def __init__(self, node, first_id, now_s):
        self.node = node
        self.next_id = first_id
        self.now_s = now_s
        self.acked = set()
        self.refused = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(2)]
        for t in self.threads:
            t.start()

    def run(self):
        with self.node.entered():
            while not self.stopping.is_set():
                with self.lock:
                    i = self.next_id
                    self.next_id += 1
                try:
                    status = push(self.node, "ember-distributor", i, self.now_s)
                except (OSError, RuntimeError) as e:
                    status = type(e).__name__
                with self.lock:
                    if status == 200:
                        self.acked.add(i)
                    else:
                        self.refused[status] = self.refused.get(status, 0) + 1
                time.sleep(0.05)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
        # Ids 1.. were sent: next_id is one past the last.
        return self.acked, self.next_id - 1, self.refused

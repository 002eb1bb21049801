"""A stand-in for a Kubernetes node, so rendered manifests run as they are.

What a cluster would do with the chart's objects is done here by hand, and
only that: each pod is a network namespace with its own address on a bridge
(`ip netns`, a veth pair), its `ember` container a process started by
run_container.py with exactly the rendered `args` (after Kubernetes' `$(VAR)`
expansion), `env` (fieldRef and secretKeyRef resolved, as the kubelet does),
volume mounts, user and read-only root. Services are names in every pod's
/etc/hosts (`/etc/netns/<ns>/hosts`, which `ip netns exec` mounts) resolving
to the addresses of the pods their selector picks; probes are run as written.

Everything lives in namespaces this module makes: the bridge itself sits in a
"node" namespace with no route out, and the test talks to pods from threads
that entered it (`Node.entered`). `Node.close` removes every namespace and
kills every process, whatever state a failed test left them in.
"""

import contextlib
import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

CLONE_NEWNET = 0x40000000
SUBNET = "10.42.0"  # inside the node namespace only; nothing routes it elsewhere
RUN_CONTAINER = Path(__file__).with_name("run_container.py")
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def remove_stale_namespaces():
    """Deletes the namespaces of earlier runs whose process is gone (killed by a timeout)."""
    for line in ip("netns", "list").stdout.splitlines():
        m = re.match(r"emh(\d+)-\S+", line)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            ip("netns", "del", m.group(0), check=False)
            shutil.rmtree(Path("/etc/netns") / m.group(0), ignore_errors=True)


def dns_names(name, namespace, domain):
    """The names a pod's resolver finds a Service by, short to fully qualified."""
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{domain}"]


class Node:
    """The bridge, the pods on it, and the names they resolve."""

    def __init__(self, workdir, rootfs, image, namespace, domain="cluster.local"):
        self.prefix = f"emh{os.getpid()}"
        self.name = f"{self.prefix}-node"
        self.workdir = Path(workdir)
        self.rootfs = rootfs
        self.image = image  # {"entrypoint": [...], "workdir": "/", "env": {...}}
        self.namespace = namespace
        self.domain = domain
        self.pods = {}
        self.services = []
        self.extra_hosts = {}  # name -> ip, for machines outside the cluster
        self.next_ip = 10
        self.lock = threading.Lock()
        remove_stale_namespaces()
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        ip("-n", self.name, "link", "add", "br0", "type", "bridge")
        ip("-n", self.name, "addr", "add", f"{self.gateway}/24", "dev", "br0")
        ip("-n", self.name, "link", "set", "br0", "up")

    gateway = f"{SUBNET}.1"

    @contextlib.contextmanager
    def entered(self):
        """Runs the calling thread in the node namespace; its sockets stay there."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        node = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(node)
            yield
        finally:
            _setns(own)
            os.close(own)
            os.close(node)

    def popen_in_node(self, argv, log):
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def allocate_ip(self):
        with self.lock:
            self.next_ip += 1
            if self.next_ip > 250:
                raise RuntimeError("the node's /24 is out of pod addresses")
            return f"{SUBNET}.{self.next_ip}"

    def add_services(self, services):
        self.services.extend(services)

    def service_ips(self, service, ready_only=None):
        """Addresses of the pods a Service selects (ready ones unless it publishes all)."""
        spec = service["spec"]
        selector = spec.get("selector") or {}
        publish_all = spec.get("publishNotReadyAddresses", False) if ready_only is None else not ready_only
        out = []
        for pod in self.pods.values():
            if pod.ip and pod.running() and all(pod.labels.get(k) == v for k, v in selector.items()):
                if publish_all or pod.ready_cached:
                    out.append(pod)
        return out

    def service_url(self, name, port_name="http"):
        """http://<pod ip>:<target port> of a ready pod behind Service `name`."""
        service = next(s for s in self.services if s["metadata"]["name"] == name)
        pods = self.service_ips(service, ready_only=True)
        if not pods:
            raise RuntimeError(f"service {name} has no ready pod")
        port = next(p for p in service["spec"]["ports"] if p["name"] == port_name)
        # Any ready endpoint, as kube-proxy picks one per connection.
        pod = random.choice(pods)
        return f"http://{pod.ip}:{pod.container_port(port.get('targetPort', port['port']))}"

    def write_hosts(self):
        """Every pod's /etc/hosts: localhost, itself, the Services and outside names."""
        with self.lock:
            lines = []
            for service in self.services:
                name = service["metadata"]["name"]
                for pod in self.service_ips(service):
                    lines.append(f"{pod.ip}\t{' '.join(dns_names(name, self.namespace, self.domain))}")
                    if service["spec"].get("clusterIP") == "None" and pod.stateful:
                        fq = f"{pod.name}.{name}.{self.namespace}.svc.{self.domain}"
                        lines.append(f"{pod.ip}\t{fq} {pod.name}.{name}")
            for name, addr in self.extra_hosts.items():
                lines.append(f"{addr}\t{name}")
            for pod in self.pods.values():
                if pod.netns is None:
                    continue
                own = ["127.0.0.1\tlocalhost", f"{pod.ip}\t{pod.name}"]
                path = Path("/etc/netns") / pod.netns / "hosts"
                path.parent.mkdir(parents=True, exist_ok=True)
                # Rewritten in place: running containers see it through a bind mount.
                with open(path, "a+") as f:
                    f.seek(0)
                    f.truncate()
                    f.write("\n".join(own + lines) + "\n")

    def close(self):
        for pod in list(self.pods.values()):
            pod.kill()
        ip("netns", "del", self.name, check=False)


def expand(value, env):
    """Kubernetes' $(VAR) expansion of args: known names only, $$ escapes."""
    def sub(m):
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


class Pod:
    """One replica of a workload: a namespace, an address, a container process."""

    def __init__(self, node, name, template, config_maps, secrets, stateful):
        self.node = node
        self.name = name
        self.template = template
        self.labels = template["metadata"].get("labels", {})
        self.spec = template["spec"]
        containers = self.spec["containers"]
        assert len(containers) == 1, f"{name}: one container expected, got {len(containers)}"
        self.container = containers[0]
        self.config_maps = config_maps
        self.secrets = secrets
        self.stateful = stateful
        self.dir = node.workdir / "pods" / name
        self.proc = None
        self.netns = None
        self.ip = None
        self.veth = None
        self.ready_cached = False
        self.starts = 0
        self.index = len(node.pods)
        node.pods[name] = self

    # -- what the kubelet works out before starting the container
    def container_port(self, port):
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in self.container.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
        raise KeyError(f"{self.name}: no container port named {port}")

    def env(self):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **self.node.image.get("env", {})}
        env["HOSTNAME"] = self.name
        for source in self.container.get("envFrom", []):
            raise NotImplementedError(f"{self.name}: envFrom {source} is not emulated")
        for var in self.container.get("env", []):
            if "value" in var:
                env[var["name"]] = expand(var["value"], env)
                continue
            ref = var["valueFrom"]
            if "fieldRef" in ref:
                field = ref["fieldRef"]["fieldPath"]
                env[var["name"]] = {
                    "metadata.name": self.name,
                    "metadata.namespace": self.node.namespace,
                    "status.podIP": self.ip,
                    "spec.nodeName": self.node.name,
                }[field]
            elif "secretKeyRef" in ref:
                key = ref["secretKeyRef"]
                secret = self.secrets.get(key["name"])
                if secret is None or key["key"] not in secret:
                    # What the kubelet reports as CreateContainerConfigError.
                    raise RuntimeError(f"{self.name}: secret {key['name']} has no key {key['key']}")
                env[var["name"]] = secret[key["key"]]
            else:
                raise NotImplementedError(f"{self.name}: env source {ref} is not emulated")
        return env

    def volume_source(self, volume_name):
        for vol in self.spec.get("volumes", []):
            if vol["name"] != volume_name:
                continue
            if "configMap" in vol:
                data = self.config_maps[vol["configMap"]["name"]]
                path = self.dir / f"configmap-{volume_name}-{self.starts}"
                path.mkdir(parents=True)
                for key, text in data.items():
                    (path / key).write_text(text)
                return path
            if "emptyDir" in vol:
                path = self.dir / f"emptydir-{volume_name}-{self.starts}"
                path.mkdir(parents=True)
                return path
            raise NotImplementedError(f"{self.name}: volume {vol} is not emulated")
        if self.stateful:
            # volumeClaimTemplates: one claim per pod name, kept across restarts.
            path = self.node.workdir / "claims" / f"{volume_name}-{self.name}"
            path.mkdir(parents=True, exist_ok=True)
            return path
        raise KeyError(f"{self.name}: no volume {volume_name}")

    # -- life cycle
    def start(self):
        self.starts += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        self.netns = f"{self.node.prefix}-pod{self.index}-{self.starts}"
        self.ip = self.node.allocate_ip()
        self.veth = f"v{self.node.next_ip}"
        ip("netns", "add", self.netns)
        ip("-n", self.node.name, "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        ip("-n", self.node.name, "link", "set", self.veth, "master", "br0", "up")
        ip("-n", self.netns, "addr", "add", f"{self.ip}/24", "dev", "eth0")
        ip("-n", self.netns, "link", "set", "eth0", "up")
        ip("-n", self.netns, "link", "set", "lo", "up")
        self.node.write_hosts()

        pod_sc = self.spec.get("securityContext", {})
        sc = {**pod_sc, **self.container.get("securityContext", {})}
        uid = sc.get("runAsUser", 0)
        if sc.get("runAsNonRoot") and uid == 0:
            raise RuntimeError(f"{self.name}: runAsNonRoot with user 0 would not start")
        gid = sc.get("runAsGroup", 0)
        fs_group = pod_sc.get("fsGroup")
        mounts = []
        for m in self.container.get("volumeMounts", []):
            source = self.volume_source(m["name"])
            if fs_group is not None:
                # The kubelet gives the pod's group ownership of its volumes.
                for p in [source, *source.rglob("*")]:
                    os.chown(p, -1, fs_group)
                    os.chmod(p, os.stat(p).st_mode | 0o070 | (0o2000 if p.is_dir() else 0))
            target = Path(self.node.rootfs + m["mountPath"])
            target.mkdir(parents=True, exist_ok=True)
            mounts.append({"path": m["mountPath"], "source": str(source), "read_only": m.get("readOnly", False)})
        mounts.append({"path": "/etc/hosts", "source": "/etc/hosts", "read_only": True})
        env = self.env()
        spec = {
            "rootfs": self.node.rootfs,
            "read_only_root": sc.get("readOnlyRootFilesystem", False),
            "mounts": mounts,
            "workdir": self.node.image.get("workdir", "/"),
            "uid": uid,
            "gid": gid,
            "groups": [g for g in [fs_group] if g is not None],
            "no_new_privs": sc.get("allowPrivilegeEscalation") is False,
            "command": self.container.get("command") or self.node.image["entrypoint"],
            "args": [expand(a, env) for a in self.container.get("args", [])],
            "env": env,
        }
        spec_path = self.dir / f"spec-{self.starts}.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        self.log_path = self.dir / f"log-{self.starts}.txt"
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, str(RUN_CONTAINER), str(spec_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.ready_cached = False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, grace):
        """SIGTERM, then SIGKILL after the pod's grace period, as on deletion."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._remove_netns()
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._remove_netns()

    def _remove_netns(self):
        self.ready_cached = False
        if self.netns is not None:
            ip("netns", "del", self.netns, check=False)
            shutil.rmtree(Path("/etc/netns") / self.netns, ignore_errors=True)
            self.netns = None
            self.node.write_hosts()

    def resolve(self, name):
        """The IPv4 addresses `name` resolves to inside this pod (its /etc/hosts)."""
        out = subprocess.run(["ip", "netns", "exec", self.netns, "getent", "ahostsv4", name],
                             capture_output=True, text=True)
        return {line.split()[0] for line in out.stdout.splitlines()}

    def log(self):
        return self.log_path.read_text(errors="replace") if getattr(self, "log_path", None) else ""

    # -- probes, as the kubelet runs them (from the node)
    def probe(self, kind):
        """Runs the rendered `kind` probe once; returns (ok, what happened)."""
        probe = self.container[kind]
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            url = f"{get.get('scheme', 'HTTP').lower()}://{self.ip}:{self.container_port(get['port'])}{get.get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    return 200 <= resp.status < 400, f"GET {url}: {resp.status}"
            except urllib.error.HTTPError as e:
                return False, f"GET {url}: {e.code}"
            except OSError as e:
                return False, f"GET {url}: {e}"
        if "tcpSocket" in probe:
            port = self.container_port(probe["tcpSocket"]["port"])
            try:
                socket.create_connection((self.ip, port), timeout=timeout).close()
                return True, f"tcp {self.ip}:{port} open"
            except OSError as e:
                return False, f"tcp {self.ip}:{port}: {e}"
        raise NotImplementedError(f"{self.name}: probe {probe} is not emulated")

    def wait_ready(self, timeout):
        """Startup probe first, then readiness, as the kubelet orders them."""
        deadline = time.monotonic() + timeout
        for kind in ("startupProbe", "readinessProbe"):
            if kind not in self.container:
                continue
            period = self.container[kind].get("periodSeconds", 10)
            while True:
                if not self.running():
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
                ok, what = self.probe(kind)
                if ok:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: {kind} still failing after {timeout}s ({what}):\n{self.log()[-4000:]}")
                # Faster than the rendered period: the test waits for the first success only.
                time.sleep(min(period, 0.25))
        self.ready_cached = True
        self.node.write_hosts()

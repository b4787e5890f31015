"""The full stack in the cluster lab (e2e/lab/cluster.sh): the standalone
controller in PREFIX-ctl serving a directory of Kubernetes YAML, a
flowlb-agent on each of PREFIX-lb1 and PREFIX-lb2 connected to it over gRPC,
HTTP backends in PREFIX-b1..b4, and the client in PREFIX-client. Used by
test_cluster.py, the demo (e2e/lab/demo.py) and bench/e2e_bench.py.
Everything it starts is stopped by name and pid, and the namespaces are
deleted by prefix.

Agents log one `event=desired_state_applied generation=G ...` line per state
they apply; tests wait on those lines (after a mark taken before the change),
never on time.
"""
import json
import os
import re
import shutil
import signal
import tempfile

from e2e.lib import prom
from e2e.lib.paths import LAB, agent_binary, controller_binary
from e2e.lib.proc import CommandFailed, Processes, in_ns, lab_prefix, module, run
from e2e.lib.wait import wait_until

LAB_SH = os.path.join(LAB, "cluster.sh")
CONTROLLER_ADDR = "10.10.2.5:9443"
CONTROLLER_METRICS, AGENT_METRICS = 9465, 9464  # on 127.0.0.1 inside the namespaces
VIP_POOL = "10.10.1.100-10.10.1.119"
DSR_VIP = "10.10.1.120"
BACKENDS = {f"b{i}": f"10.10.2.1{i}" for i in range(1, 5)}
NODES = ("lb1", "lb2")

NODES_YAML = """apiVersion: v1
kind: Node
metadata: {name: lb1}
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Node
metadata: {name: lb2}
status: {conditions: [{type: Ready, status: "True"}]}
---
apiVersion: flowlb.io/v1alpha1
kind: IPPool
metadata: {name: lan}
spec: {addresses: ["%s", "%s"]}
""" % (VIP_POOL, DSR_VIP)

_APPLIED = re.compile(r"event=desired_state_applied ([^\n]*)")
_FIELD = re.compile(r"(\w+)=(\d+)")


def service_yaml(name, backends, mode="nat", ip=None, draining=(), drain_timeout="60s",
                 annotations=None):
    ann = {"flowlb.io/drain-timeout": drain_timeout, **(annotations or {})}
    if mode == "dsr":
        ann["flowlb.io/forwarding-mode"] = "dsr"
    if ip:
        ann["flowlb.io/ips"] = ip
    eps = []
    for b in backends:
        cond = ({"ready": False, "serving": True, "terminating": True} if b in draining
                else {"ready": True})
        eps.append({"addresses": [BACKENDS[b]], "conditions": cond, "nodeName": b})
    return json.dumps({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "demo", "annotations": ann,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "flowlb.io/lb",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}) + "\n---\n" + \
        json.dumps({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name + "-1", "namespace": "demo",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": eps}) + "\n"


class Applied:
    """One desired_state_applied line of an agent: its numeric fields
    (generation, services, refused, backends, announced) as attributes."""

    def __init__(self, m):
        self.fields = {k: int(v) for k, v in _FIELD.findall(m.group(1))}
        for k in ("generation", "services", "backends", "announced"):
            if k not in self.fields:
                raise ValueError(f"desired_state_applied without {k}: {m.group(0)!r}")
        self.refused = self.fields.get("refused", 0)
        self.__dict__.update(self.fields)

    def __repr__(self):
        return f"Applied({self.fields})"


def applied_states(log):
    return [Applied(m) for m in _APPLIED.finditer(log)]


def samples(text):
    """The attempts `client.py loop` printed: [[start, end, backend or None], ...]."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("[")]


def failover_gap_ms(samples, t_fail):
    """Longest time without a successful connection, from t_fail on: from the
    last success completed before t_fail (or t_fail) to the next success."""
    oks = sorted(x[1] for x in samples if x[2])
    before = [t for t in oks if t <= t_fail]
    prev = before[-1] if before else t_fail
    worst = 0.0
    for t in oks:
        if t <= t_fail:
            continue
        worst = max(worst, t - prev)
        prev = t
    return worst * 1000


class Cluster:
    def __init__(self, prefix=None, manifests=None, agent_args=()):
        self.manifests = manifests  # a directory of YAML to start from (default: NODES_YAML)
        self.agent_args = list(agent_args)  # added to every agent's command line
        self.p = prefix or lab_prefix("flcl")
        self.tmp = tempfile.mkdtemp(prefix="flowlb-cluster-")
        self.dir = os.path.join(self.tmp, "cluster")
        os.makedirs(self.dir)
        self.status_file = os.path.join(self.tmp, "status.yaml")
        self.procs = Processes(self.tmp)

    # -- lifecycle -----------------------------------------------------------
    def ns(self, name, *cmd, timeout=60, check=True):
        return run(in_ns(f"{self.p}-{name}", *cmd), timeout=timeout, check=check)

    def up(self):
        run([LAB_SH, "up", self.p], timeout=120)
        for name in BACKENDS:
            self.start_backend(name)
        if self.manifests:
            for name in sorted(os.listdir(self.manifests)):
                with open(os.path.join(self.manifests, name)) as f:
                    self.write(name, f.read())
        else:
            self.write("nodes.yaml", NODES_YAML)
        for name, addr in BACKENDS.items():
            wait_until(lambda: self.ns(name, "curl", "-s", "-m", "1", f"http://{addr}/id",
                                       check=False) == name, 15, f"backend {name} serving",
                       context=lambda: self.log(name))
        self.start_controller()
        for n in NODES:
            self.start_agent(n)
        self.wait_connected(2)

    def down(self):
        self.procs.stop_all()
        run([LAB_SH, "down", self.p], timeout=60, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_backend(self, name):
        """The HTTP server of backend NAME (b1..b4), in its namespace, under its name."""
        addr = BACKENDS[name]
        return self.spawn(name, name, module("e2e.lab.backend_server", name, "80",
                                             f"{addr},{DSR_VIP}"))

    def spawn(self, name, ns, cmd):
        return self.procs.start(name, in_ns(f"{self.p}-{ns}", *cmd))

    def running(self, name):
        return self.procs.running(name)

    def kill(self, name, sig=signal.SIGKILL):
        self.procs.stop(name, sig)

    def log(self, name):
        return self.procs.log(name)

    def mark(self, name):
        """Where NAME's log ends now; the wait_* methods look only after a mark."""
        return self.procs.mark(name)

    def start_controller(self):
        self.spawn("controller", "ctl", [
            controller_binary(), "--source", "dir:" + self.dir, "--status-file", self.status_file,
            "--plaintext", "--grpc-address", CONTROLLER_ADDR,
            "--metrics-address", f"127.0.0.1:{CONTROLLER_METRICS}"])

    def start_agent(self, node):
        """Starts the node's agent; returns the log mark from before its start."""
        mark = self.mark(node)
        i = node[-1]
        self.spawn(node, node, [
            agent_binary(), "--controller-address", CONTROLLER_ADDR, "--plaintext",
            "--node-name", node, "--interface", "l0", "--interface", "l1",
            "--snat-ipv4", f"10.10.2.10{i}", "--announce-interface", "l0",
            "--metrics-address", f"127.0.0.1:{AGENT_METRICS}", "--conntrack-entries", "65536",
            *self.agent_args])
        return mark

    # -- configuration -------------------------------------------------------
    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        try:
            with open(self.path(name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, name, text):
        path = self.path(name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)  # one inotify event, a whole file

    def remove(self, name):
        os.remove(self.path(name))

    def change(self, name, text, predicate=lambda a: True, timeout=10):
        """Writes (or, with text None, removes) a manifest, then waits until both
        agents have applied a state, newer than the ones they ran, that satisfies
        predicate(Applied); returns {node: Applied}."""
        before = {n: self.applied_generation(n) for n in NODES}
        marks = {n: self.mark(n) for n in NODES}
        if text is None:
            self.remove(name)
        else:
            self.write(name, text)
        return {n: self.wait_applied(n, lambda a, n=n: a.generation > before[n] and predicate(a),
                                     since=marks[n], timeout=timeout) for n in NODES}

    def status(self, key):
        """The ingress addresses the controller wrote for "namespace/name"."""
        try:
            with open(self.status_file) as f:
                m = re.search(re.escape(key) + r":\s*\n\s*ingress: \[([^\]]*)\]", f.read())
        except OSError:
            return []
        return [a.strip() for a in m.group(1).split(",") if a.strip()] if m else []

    def vip_of(self, key, timeout=10):
        return wait_until(lambda: self.status(key), timeout, f"{key}'s address",
                          context=lambda: self.log("controller")[-2000:])[0]

    # -- observation ---------------------------------------------------------
    def metrics(self, ns, port):
        return self.ns(ns, "curl", "-sf", "--max-time", "2", f"http://127.0.0.1:{port}/metrics",
                       timeout=10)

    def metric(self, ns, port, name, **labels):
        """A metric's value (`default=` for a counter that may not exist yet)."""
        return prom.value(self.metrics(ns, port), name, **labels)

    def agents_connected(self):
        return self.metric("ctl", CONTROLLER_METRICS, "flowlb_controller_agents_connected")

    def wait_connected(self, n, timeout=15):
        wait_until(lambda: self.agents_connected() == n, timeout, f"{n} agents connected",
                   ignore=(CommandFailed, prom.MetricAbsent),
                   context=lambda: self.log("controller")[-2000:])

    def applied(self, node, since=0):
        return applied_states(self.procs.log_since(node, since))

    def applied_generation(self, node):
        states = self.applied(node)
        return states[-1].generation if states else 0

    def wait_applied(self, node, predicate, since=0, timeout=10):
        """Waits until the node's last applied state after `since` (a log mark)
        satisfies predicate(Applied); returns it."""
        def check():
            states = self.applied(node, since)
            return states[-1] if states and predicate(states[-1]) else None
        return wait_until(check, timeout, f"{node} applying a matching desired state",
                          context=lambda: self.log(node)[-1500:])

    def wait_log(self, node, pattern, since=0, timeout=10):
        """Waits until the node's log after `since` matches the regex; returns the match."""
        return wait_until(lambda: re.search(pattern, self.procs.log_since(node, since)), timeout,
                          f"{pattern!r} in {node}'s log", context=lambda: self.log(node)[-1500:])

    def announcers(self, exclude=()):
        """The running nodes whose last applied state announces a VIP."""
        return [n for n in NODES
                if n not in exclude and self.running(n)
                and re.findall(r"announced=(\d+)", self.log(n))[-1:] not in ([], ["0"])]

    def announcer(self, timeout=10, exclude=()):
        """The node whose last applied state announces a VIP (exactly one must)."""
        return wait_until(lambda: (lambda who: len(who) == 1 and who[0])(self.announcers(exclude)),
                          timeout, "exactly one announcer",
                          context=lambda: f"announcers: {self.announcers(exclude)}")

    def mac(self, node):
        return self.ns(node, "cat", "/sys/class/net/l0/address").strip()

    def client(self, *args, timeout=120):
        return self.ns("client", *module("e2e.lab.client", *args), timeout=timeout)

    def spread(self, vip, n):
        return json.loads(self.client("spread", f"http://{vip}/id", str(n)))

    def start_client(self, name, *args):
        """client.py in the background; its output goes to NAME.log (see client_output)."""
        try:
            os.remove(self.procs.log_path(name))
        except FileNotFoundError:
            pass
        return self.spawn(name, "client", module("e2e.lab.client", *args))

    def client_output(self, name, timeout=120):
        """Waits for a background client to end; returns (exit code, output)."""
        rc = self.procs.wait(name, timeout)
        return rc, self.log(name)

    def download_path(self, name):
        return os.path.join(self.tmp, name + ".bin")

    def start_download(self, name, url):
        """A background `client.py fetch`; returns the backend serving it, once the
        response has started (its header names the backend before the body)."""
        self.start_client(name, "fetch", url, self.download_path(name))
        return wait_until(lambda: self.log(name).strip().splitlines()[:1], 10,
                          f"download {name} started",
                          context=lambda: self.log(name))[0]

    def wait_downloading(self, name, size=1):
        """Waits until at least `size` bytes of a download have arrived."""
        wait_until(lambda: os.path.exists(self.download_path(name))
                   and os.path.getsize(self.download_path(name)) >= size, 10,
                   f"{size} bytes of download {name}", context=lambda: self.log(name))

    def downloaded(self, name):
        with open(self.download_path(name), "rb") as f:
            return f.read()

    def loop_successes(self, name):
        return sum(1 for s in samples(self.log(name)) if s[2])

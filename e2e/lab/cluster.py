"""The full stack in the cluster lab (cluster.sh): the standalone controller
in PREFIX-ctl serving a directory of Kubernetes YAML, a flowlb-agent on each of
PREFIX-lb1 and PREFIX-lb2 connected to it over gRPC, HTTP backends in
PREFIX-b1..b4, and the client in PREFIX-client. Used by test_cluster.py, the
demo and bench/run.sh e2e. Everything it starts is stopped by pid, and the
namespaces are deleted by prefix.
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.join(HERE, "cluster.sh")
CLIENT = os.path.join(HERE, "client.py")
SERVER = os.path.join(HERE, "backend_server.py")
CONTROLLER_ADDR = "10.10.2.5:9443"
VIP_POOL = "10.10.1.100-10.10.1.119"
DSR_VIP = "10.10.1.120"
BACKENDS = {f"b{i}": f"10.10.2.1{i}" for i in range(1, 5)}

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


def service_yaml(name, backends, mode="nat", ip=None, draining=(), drain_timeout="60s"):
    ann = {"flowlb.io/drain-timeout": drain_timeout}
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


class Cluster:
    def __init__(self, build, prefix="flcl", manifests=None):
        self.build = build
        self.manifests = manifests  # a directory of YAML to start from (default: NODES_YAML)
        self.p = prefix
        self.tmp = tempfile.mkdtemp(prefix="flowlb-cluster-")
        self.dir = os.path.join(self.tmp, "cluster")
        os.makedirs(self.dir)
        self.status_file = os.path.join(self.tmp, "status.yaml")
        self.procs = {}  # name -> Popen

    # -- lifecycle -----------------------------------------------------------
    def ns(self, name, *cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", f"{self.p}-{name}", *cmd], **kw)

    def up(self):
        subprocess.run([LAB, "up", self.p], check=True, timeout=60)
        for name, addr in BACKENDS.items():
            self.spawn(name, name, ["python3", SERVER, name, "80", f"{addr},{DSR_VIP}"])
        if self.manifests:
            for name in sorted(os.listdir(self.manifests)):
                with open(os.path.join(self.manifests, name)) as f:
                    self.write(name, f.read())
        else:
            self.write("nodes.yaml", NODES_YAML)
        self.start_controller()
        for n in ("lb1", "lb2"):
            self.start_agent(n)
        self.wait_connected(2)

    def down(self):
        for name in list(self.procs):
            self.kill(name)
        subprocess.run([LAB, "down", self.p], timeout=60)

    def spawn(self, name, ns, cmd):
        log = open(os.path.join(self.tmp, name + ".log"), "a")
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", f"{self.p}-{ns}", *cmd], stdout=log, stderr=subprocess.STDOUT)
        return self.procs[name]

    def kill(self, name, sig=signal.SIGKILL):
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log(self, name):
        try:
            with open(os.path.join(self.tmp, name + ".log")) as f:
                return f.read()
        except OSError:
            return ""

    def start_controller(self):
        self.spawn("controller", "ctl", [
            os.path.join(self.build, "controller", "flowlb-controller"), "--source",
            "dir:" + self.dir, "--status-file", self.status_file, "--plaintext",
            "--grpc-address", CONTROLLER_ADDR, "--metrics-address", "127.0.0.1:9465"])

    def start_agent(self, node):
        i = node[-1]
        self.spawn(node, node, [
            os.path.join(self.build, "agent", "flowlb-agent"), "--controller-address",
            CONTROLLER_ADDR, "--plaintext", "--node-name", node, "--interface", "l0",
            "--interface", "l1", "--snat-ipv4", f"10.10.2.10{i}", "--announce-interface", "l0",
            "--metrics-address", "127.0.0.1:9464", "--conntrack-entries", "65536"])

    # -- configuration -------------------------------------------------------
    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)  # one inotify event, a whole file

    def vip_of(self, key, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(self.status_file) as f:
                    m = re.search(re.escape(key) + r":\s*\n\s*ingress: \[([^\]]*)\]", f.read())
                if m and m.group(1).strip():
                    return m.group(1).split(",")[0].strip()
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{key} got no address: {self.log('controller')[-2000:]}")

    # -- observation ---------------------------------------------------------
    def metrics(self, ns, port):
        r = self.ns(ns, "curl", "-s", "--max-time", "2", f"http://127.0.0.1:{port}/metrics",
                    capture_output=True, text=True)
        return r.stdout

    def metric(self, ns, port, name):
        total = 0.0
        for line in self.metrics(ns, port).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_connected(self, n, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric("ctl", 9465, "flowlb_controller_agents_connected") == n:
                return
            time.sleep(0.1)
        raise AssertionError(f"{n} agents not connected: {self.log('controller')[-2000:]}")

    def wait_applied(self, node, predicate, timeout=10):
        """Waits until the node's agent log has a desired_state_applied line matching."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            lines = re.findall(r"event=desired_state_applied .*", self.log(node))
            if lines and predicate(lines[-1]):
                return lines[-1]
            time.sleep(0.05)
        raise AssertionError(f"{node}: no matching desired state: {self.log(node)[-1500:]}")

    def announcer(self, timeout=10, exclude=()):
        """The node whose last applied state announces a VIP (exactly one must)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            who = [n for n in ("lb1", "lb2")
                   if n not in exclude and n in self.procs and self.procs[n].poll() is None
                   and re.findall(r"announced=(\d+)", self.log(n))[-1:] not in ([], ["0"])]
            if len(who) == 1:
                return who[0]
            time.sleep(0.05)
        raise AssertionError("not exactly one announcer: " + str(who))

    def mac(self, node):
        r = self.ns(node, "cat", "/sys/class/net/l0/address", capture_output=True, text=True)
        return r.stdout.strip()

    def client(self, *args, timeout=120):
        r = self.ns("client", "python3", CLIENT, *args, capture_output=True, text=True,
                    timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"client {args} failed: {r.stderr[-1500:]}")
        return r.stdout

    def spread(self, vip, n):
        return json.loads(self.client("spread", f"http://{vip}/id", str(n)))

    def start_client(self, name, *args):
        log = open(os.path.join(self.tmp, name + ".out"), "w")
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", f"{self.p}-client", "python3", CLIENT, *args],
            stdout=log, stderr=subprocess.STDOUT)
        return self.procs[name]

    def client_output(self, name, timeout=120):
        proc = self.procs.pop(name)
        proc.wait(timeout=timeout)
        with open(os.path.join(self.tmp, name + ".out")) as f:
            return proc.returncode, f.read()


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


def expected_bytes(n):
    return bytes((i * 7 + 3) % 256 for i in range(n))

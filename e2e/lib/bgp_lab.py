"""The BGP lab (e2e/lab/bgp.sh): a client, a router running one of BIRD,
FRR or GoBGP (bgp_routers.py), three LB nodes running flowlb-agent on a
standalone file with a `bgp:` section, and three backends. The router
learns the VIPs from every LB node and spreads flows over them by ECMP.

Agents are configured through agent_config(**kw); start_agent(i, **kw) and
apply(i, **kw) write the node's file and wait until the agent reports that
generation. next_hops(prefix) reads the router's kernel route.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile

from e2e.lib import prom
from e2e.lib.bgp_routers import LB_AS, ROUTER_AS, ROUTERS
from e2e.lib.paths import LAB, agent_binary
from e2e.lib.proc import CommandFailed, Processes, in_ns, lab_prefix, module, nsenter, run
from e2e.lib.wait import wait_until

BGP_SH = os.path.join(LAB, "bgp.sh")
METRICS = "127.0.0.1:19490"  # inside each LB namespace
NAT_VIP, DSR_VIP, LOCAL_VIP = "10.30.100.10", "10.30.100.20", "10.30.100.30"
NAT_VIP6 = "fd30:100::10"
BACKENDS = ["10.30.2.11", "10.30.2.12", "10.30.2.13"]
BACKENDS6 = ["fd30:2::11", "fd30:2::12", "fd30:2::13"]
ROUTER, ROUTER6 = "10.30.1.1", "fd30:1::1"
GARBAGE_PEER = "10.30.0.2"  # a fake peer (in the client namespace) that sends junk


def node_addr(i, v6=False):
    return f"fd30:1::1{i}" if v6 else f"10.30.1.1{i}"


def agent_config(i, generation, *, bfd=True, gr=False, hold=9, peer_as=ROUTER_AS,
                 password=None, ipv6_session=True, local_backends=("b1", "b2"),
                 garbage_peer=False):
    """Node i's file: NAT, DSR and IPv6 NAT services over b1-b3, a Local
    service over `local_backends` (bN runs on node lbN), and the router as
    BGP peer (IPv4 session; IPv6 session for the IPv6 VIP)."""
    def svc(name, vip, mode, addrs, extra=()):
        lines = [f"  - name: {name}", f"    vip: \"{vip}\"", "    port: 80", "    protocol: tcp",
                 f"    mode: {mode}", *extra, "    backends:"]
        lines += [f"      - {{address: \"{a}\", port: 80, node: {n}}}" for a, n in addrs]
        return lines
    nodes = [(a, f"lb{k}") for k, a in enumerate(BACKENDS, 1)]
    peer = {"name": "rt", "peerAddress": ROUTER, "peerASN": peer_as, "families": ["ipv4"],
            "holdTimeSeconds": hold, "connectRetrySeconds": 2, "enableGracefulRestart": gr,
            "gracefulRestartTimeSeconds": 60}
    if bfd:
        peer["bfdProfile"] = "fast"
    if password:
        peer["password"] = password
    peers = [peer]
    if ipv6_session:
        p6 = dict(peer, name="rt6", peerAddress=ROUTER6, families=["ipv6"])
        peers.append(p6)
    if garbage_peer:
        peers.append({"name": "junk", "peerAddress": GARBAGE_PEER, "peerASN": ROUTER_AS,
                      "families": ["ipv4"], "connectRetrySeconds": 1})
    lines = [
        f"generation: {generation}",
        f"snat: {{ipv4: 10.30.2.10{i}, ipv6: \"fd30:2::10{i}\", portMin: 40000, portMax: 59999}}",
        "bgp:",
        f"  myASN: {LB_AS}",
        "  bfdProfiles: [{name: fast, receiveIntervalMs: 100, transmitIntervalMs: 100, "
        "detectMultiplier: 3}]",
        "  peers:",
        *[f"    - {json.dumps(p)}" for p in peers],
        "services:",
        *svc("lab/nat", NAT_VIP, "nat", nodes),
        *svc("lab/dsr", DSR_VIP, "dsr", nodes),
        *svc("lab/nat6", NAT_VIP6, "nat", [(a, f"lb{k}") for k, a in enumerate(BACKENDS6, 1)]),
        *svc("lab/local", LOCAL_VIP, "nat",
             [(BACKENDS[int(b[1]) - 1], f"lb{b[1]}") for b in local_backends],
             extra=["    externalTrafficPolicy: Local"]),
    ]
    return "\n".join(lines) + "\n"


class BgpLab:
    def __init__(self, prefix=None):
        self.p = prefix or lab_prefix("flbgp")
        self.tmp = tempfile.mkdtemp(prefix="flowlb-bgp-")
        os.chmod(self.tmp, 0o755)  # FRR's daemons run as user frr and write below it
        self.procs = Processes(self.tmp)
        self.generation = {1: 0, 2: 0, 3: 0}
        self.current = {}  # node -> config kwargs of its file
        self.router = None

    # -- namespaces ----------------------------------------------------------
    def ns_name(self, name):
        return f"{self.p}-{name}"

    def ns(self, name, *cmd, timeout=60, check=True):
        return run(in_ns(self.ns_name(name), *cmd), timeout=timeout, check=check)

    def client(self, *args, timeout=120):
        return self.ns("client", *module("e2e.lab.client", *args), timeout=timeout).strip()

    def start_client(self, name, *args):
        return self.procs.start(name, in_ns(self.ns_name("client"),
                                            *module("e2e.lab.client", *args)),
                                stdout=subprocess.PIPE)

    # -- lifecycle -----------------------------------------------------------
    def up(self):
        run([BGP_SH, "up", self.p], timeout=120)
        for i, (a, a6) in enumerate(zip(BACKENDS, BACKENDS6), 1):
            self.procs.start(f"server-b{i}", in_ns(self.ns_name(f"b{i}"), *module(
                "e2e.lab.backend_server", f"b{i}", "80", f"{a},{DSR_VIP},{a6}")))
        for i, a in enumerate(BACKENDS, 1):
            wait_until(lambda: self.ns(f"b{i}", "curl", "-s", "-m", "1", f"http://{a}/id",
                                       check=False) == f"b{i}", 15, f"backend b{i} serving",
                       context=lambda: self.procs.log(f"server-b{i}"))

    def down(self):
        if self.router:
            self.router.stop()
        for i in (1, 2, 3):
            self.stop_agent(i)
        self.procs.stop_all()
        run([BGP_SH, "down", self.p], timeout=60, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the router ------------------------------------------------------------
    def start_router(self, kind, *, bfd=True, gr=True, passwords=None):
        """Starts `kind` with every LB node as neighbour over IPv4 and IPv6."""
        self.stop_router()
        passwords = passwords or {}
        neighbours = {}
        for i in (1, 2, 3):
            for v6 in (False, True):
                neighbours[node_addr(i, v6)] = {"password": passwords.get(i)}
        self.router = ROUTERS[kind](self.ns_name("rt"), self.tmp, self.procs)
        self.router.start(neighbours, bfd=bfd, gr=gr)
        self.router_kw = dict(kind=kind, bfd=bfd, gr=gr, passwords=passwords)

    def stop_router(self):
        if self.router:
            self.router.stop()
            self.router = None
        # Routes the daemon installed go with it (GoBGP's installer does not
        # clean up): start from an empty table.
        for v in ("-4", "-6"):
            self.ns("rt", "ip", v, "route", "flush", "proto", "bgp", check=False)
            self.ns("rt", "ip", v, "route", "flush", "proto", "bird", check=False)

    def established(self, i, v6=False):
        return self.router.established(node_addr(i, v6))

    def wait_established(self, nodes, v6=False, timeout=30):
        for i in nodes:
            wait_until(lambda: self.established(i, v6), timeout,
                       f"{self.router.kind}: session with lb{i} Established (router CLI)",
                       context=lambda: self.router.describe(node_addr(i, v6)) + "\n" +
                       self.procs.log(f"agent{i}")[-2000:])

    def next_hops(self, prefix):
        """The router's kernel next hops for `prefix` (a set of addresses)."""
        v = "-6" if ":" in prefix else "-4"
        out = self.ns("rt", "ip", "-j", v, "route", "show", prefix, check=False)
        hops = set()
        for r in json.loads(out or "[]"):
            if r.get("gateway"):
                hops.add(r["gateway"])
            for nh in r.get("nexthops", []):
                hops.add(nh["gateway"])
        return hops

    def wait_next_hops(self, prefix, nodes, timeout=30, v6=False):
        want = {node_addr(i, v6) for i in nodes}
        wait_until(lambda: self.next_hops(prefix) == want, timeout,
                   f"{self.router.kind}: {prefix} via {sorted(want)} in the kernel",
                   context=lambda: f"now via {sorted(self.next_hops(prefix))}")

    # -- agents --------------------------------------------------------------
    def config_path(self, i):
        return os.path.join(self.tmp, f"lb{i}.yaml")

    def write_config(self, i, **kw):
        self.generation[i] += 1
        tmp = self.config_path(i) + ".new"
        with open(tmp, "w") as f:
            f.write(agent_config(i, self.generation[i], **kw))
        os.replace(tmp, self.config_path(i))
        self.current[i] = kw
        return self.generation[i]

    def running(self, i):
        return self.procs.running(f"agent{i}")

    def start_agent(self, i, **kw):
        """Starts node i's agent on config(**kw) and waits until it has applied it."""
        self.write_config(i, **kw)
        mark = self.procs.mark(f"agent{i}")
        self.procs.start(f"agent{i}", nsenter(
            self.ns_name(f"lb{i}"), agent_binary(), "--interface", "l0", "--interface", "l1",
            "--config", self.config_path(i), "--metrics-address", METRICS,
            "--node-name", f"lb{i}", "--conntrack-entries", "65536"))

        def applied():
            if not self.running(i):
                self.procs.stop(f"agent{i}")
                raise RuntimeError(f"agent{i} exited: " +
                                   self.procs.log_since(f"agent{i}", mark)[-3000:])
            return self.metric(i, "flowlb_agent_config_generation") == self.generation[i]
        wait_until(applied, 20, f"agent{i} up with generation {self.generation[i]}",
                   ignore=(CommandFailed, prom.MetricAbsent),
                   context=lambda: self.procs.log_since(f"agent{i}", mark)[-3000:])
        return mark

    def stop_agent(self, i, sig=signal.SIGTERM):
        return self.procs.stop(f"agent{i}", sig)

    def apply(self, i, **kw):
        gen = self.write_config(i, **kw)
        self.procs.send(f"agent{i}", signal.SIGHUP)
        wait_until(lambda: self.metric(i, "flowlb_agent_config_generation") == gen, 15,
                   f"agent{i} applied generation {gen}", ignore=(CommandFailed, prom.MetricAbsent))

    def ensure_agents(self, nodes, **kw):
        """Exactly `nodes` running, each on config(**kw)."""
        for i in (1, 2, 3):
            if i not in nodes:
                self.stop_agent(i)
            elif not self.running(i):
                self.stop_agent(i)
                self.start_agent(i, **kw)
            elif self.current.get(i) != kw:
                self.apply(i, **kw)

    def log(self, i):
        return self.procs.log(f"agent{i}")

    # -- metrics -------------------------------------------------------------
    def metrics_text(self, i):
        return self.ns(f"lb{i}", "curl", "-sf", "-m", "2", f"http://{METRICS}/metrics", timeout=10)

    def metric(self, i, name, **labels):
        return prom.value(self.metrics_text(i), name, **labels)

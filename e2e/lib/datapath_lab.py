"""The datapath lab (e2e/lab/lab.sh): a client, one LB node running
flowlb-agent on a standalone configuration file, and three backends. Used by
test_datapath.py; bench/datapath_bench.py uses the topology alone.

The lab keeps the agent's configuration as keyword arguments of config():
apply(**kw) writes the next generation and waits until the agent reports it
applied (flowlb_agent_config_generation), ensure(**kw) brings a lab that a
test left in another state back to config(**kw) with the agent running.
"""
import os
import shutil
import signal
import subprocess
import tempfile

from e2e.lib import prom
from e2e.lib.paths import LAB, agent_binary
from e2e.lib.proc import CommandFailed, Processes, in_ns, lab_prefix, module, nsenter, run
from e2e.lib.wait import wait_until

LAB_SH = os.path.join(LAB, "lab.sh")
METRICS = "127.0.0.1:19470"  # inside the LB namespace
NAT_VIP, DSR_VIP = "10.10.100.10", "10.10.100.20"
NAT_VIP6 = "fd10:100::10"
# VIPs on the client's own subnet: reachable only if the LB answers ARP/NDP.
L2_VIP, L2_VIP6 = "10.10.1.100", "fd10:1::100"
BACKENDS = ["10.10.2.11", "10.10.2.12", "10.10.2.13"]
BACKENDS6 = ["fd10:2::11", "fd10:2::12", "fd10:2::13"]


def topology_up(prefix, queues=1):
    env = dict(os.environ, FLOWLB_LAB_QUEUES=str(queues))
    r = subprocess.run([LAB_SH, "up", prefix], capture_output=True, text=True, timeout=60, env=env)
    if r.returncode != 0:
        raise CommandFailed(r.returncode, [LAB_SH, "up", prefix], r.stdout, r.stderr)


def topology_down(prefix):
    run([LAB_SH, "down", prefix], timeout=60, check=False)


def config(generation, backends=BACKENDS, draining=()):
    """The agent's file: NAT and DSR services over IPv4, NAT over IPv6, and two
    VIPs on the client's subnet (announced); `backends` of the IPv4 services,
    those in `draining` marked draining."""
    def svc(name, vip, port, proto, mode, addrs=None):
        lines = [f"  - name: {name}", f"    vip: \"{vip}\"", f"    port: {port}",
                 f"    protocol: {proto}", f"    mode: {mode}", "    drainTimeoutSeconds: 60",
                 "    backends:"]
        lines += [f"      - {{address: \"{b}\", port: {port}"
                  + (", state: draining" if b in draining else "") + "}"
                  for b in (addrs or backends)]
        return "\n".join(lines)
    return "\n".join([
        f"generation: {generation}",
        "announce: [l0]",
        "snat: {ipv4: 10.10.2.1, ipv6: \"fd10:2::1\", portMin: 40000, portMax: 59999}",
        "services:",
        svc("lab/nat-http", NAT_VIP, 80, "tcp", "nat"),
        svc("lab/nat-dns", NAT_VIP, 53, "udp", "nat"),
        svc("lab/dsr-http", DSR_VIP, 80, "tcp", "dsr"),
        svc("lab/dsr-dns", DSR_VIP, 53, "udp", "dsr"),
        svc("lab/nat-http6", NAT_VIP6, 80, "tcp", "nat", BACKENDS6),
        svc("lab/nat-dns6", NAT_VIP6, 53, "udp", "nat", BACKENDS6),
        svc("lab/l2-http", L2_VIP, 80, "tcp", "nat"),
        svc("lab/l2-http6", L2_VIP6, 80, "tcp", "nat", BACKENDS6),
    ]) + "\n"


def _frozen(kw):
    return tuple(sorted((k, tuple(sorted(v)) if isinstance(v, (list, tuple, set, frozenset)) else v)
                        for k, v in kw.items()))


class DatapathLab:
    """`make_config(generation, **kw)` writes the agent's file (config() by
    default); `agent_args` are added to the agent's command line; a subclass
    may add to the topology in before_agent(); `queues` is every veth's
    number of receive and transmit queues."""

    def __init__(self, prefix=None, make_config=None, agent_args=(), queues=1):
        self.p = prefix or lab_prefix("flbe2e")
        self.queues = queues
        self.make_config = make_config or config
        self.agent_args = list(agent_args)
        self.tmp = tempfile.mkdtemp(prefix="flowlb-e2e-")
        self.config_path = os.path.join(self.tmp, "agent.yaml")
        self.procs = Processes(self.tmp)
        self.generation = 0   # of the file last written
        self.current = None   # config() arguments of that file

    # -- namespaces and commands ---------------------------------------------
    def ns_name(self, name):
        return f"{self.p}-{name}"

    def ns(self, name, *cmd, timeout=60, check=True):
        return run(in_ns(self.ns_name(name), *cmd), timeout=timeout, check=check)

    def client(self, *args, timeout=60):
        """Runs e2e/lab/client.py in the client namespace; returns its output."""
        return self.ns("client", *module("e2e.lab.client", *args), timeout=timeout).strip()

    def start_client(self, name, *args):
        """Starts client.py in the background; its stdout is a pipe (fetch prints the
        backend's name first, before the body arrives)."""
        return self.procs.start(name, in_ns(self.ns_name("client"), *module("e2e.lab.client", *args)),
                                stdout=subprocess.PIPE)

    def header(self, name, timeout=10):
        """The backend a background `fetch` reached: its first line, printed once the
        response has started (so the flow is established)."""
        return self.procs.first_line(name, timeout)

    def finish(self, name, timeout=90):
        """Waits for a background client; returns (exit code, rest of its output)."""
        return self.procs.communicate(name, timeout)

    def stop_clients(self):
        """Stops whatever a test started beside the agent and the backends."""
        for name in self.procs.names():
            if name != "agent" and not name.startswith("server-"):
                self.procs.kill(name)

    def lb_mac(self):
        return self.ns("lb", "cat", "/sys/class/net/l0/address").strip()

    # -- lifecycle -----------------------------------------------------------
    def up(self):
        topology_up(self.p, self.queues)
        for i, (addr, addr6) in enumerate(zip(BACKENDS, BACKENDS6), 1):
            self.procs.start(f"server-b{i}", in_ns(self.ns_name(f"b{i}"), *module(
                "e2e.lab.backend_server", f"b{i}", "80", f"{addr},{DSR_VIP},{addr6}")))
        for i, addr in enumerate(BACKENDS, 1):
            wait_until(lambda: self.ns(f"b{i}", "curl", "-s", "-m", "1", f"http://{addr}/id",
                                       check=False) == f"b{i}", 15, f"backend b{i} serving",
                       context=lambda: self.procs.log(f"server-b{i}"))
        self.before_agent()
        self.write_config()
        self.start_agent()

    def before_agent(self):
        """Called once the topology and the backends are up, before the agent starts."""

    def start_server(self, name, ns, udp_addrs, port=80):
        """A lab backend server (e2e/lab/backend_server.py) named `name` in namespace `ns`."""
        self.procs.start(f"server-{name}", in_ns(self.ns_name(ns), *module(
            "e2e.lab.backend_server", name, str(port), udp_addrs)))
        first = udp_addrs.split(",")[0]
        url = f"http://[{first}]:{port}/id" if ":" in first else f"http://{first}:{port}/id"
        wait_until(lambda: self.ns(ns, "curl", "-s", "-m", "1", url, check=False) == name, 15,
                   f"backend {name} serving", context=lambda: self.procs.log(f"server-{name}"))

    def down(self):
        if os.environ.get("FLOWLB_E2E_KEEP") and self.running():
            # What a post-mortem wants beside the logs: the agent's counters
            # and the LB node's neighbours, routes and rules as they were.
            for name, cmd in (("metrics.txt", ["curl", "-sf", "-m", "2", f"http://{METRICS}/metrics"]),
                              ("lb-state.txt", ["sh", "-c", "ip neigh; ip route show table all; "
                                                "ip -6 route show table all; ip rule; nft list ruleset"])):
                with open(os.path.join(self.tmp, name), "w") as f:
                    f.write(self.ns("lb", *cmd, check=False))
        self.stop_agent()
        self.procs.stop_all()
        topology_down(self.p)
        if os.environ.get("FLOWLB_E2E_KEEP"):  # logs and files for a post-mortem
            print(f"kept {self.tmp}", flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the agent -----------------------------------------------------------
    def running(self):
        return self.procs.running("agent")

    def log(self):
        return self.procs.log("agent")

    def write_config(self, **kw):
        """Writes config(**kw) as the next generation (atomically); returns it."""
        self.generation += 1
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(self.make_config(self.generation, **kw))
        os.replace(tmp, self.config_path)
        self.current = _frozen(kw)
        return self.generation

    def start_agent(self):
        """Starts the agent on the file as it is and returns, with the log mark
        from before the start, once the agent reports the file's generation
        applied. RuntimeError (with what the agent logged) if it exits instead."""
        mark = self.procs.mark("agent")
        self.procs.start("agent", nsenter(
            self.ns_name("lb"), agent_binary(), "--interface", "l0", "--interface", "l1",
            "--config", self.config_path, "--metrics-address", METRICS,
            "--conntrack-entries", "65536", *self.agent_args))

        def applied():
            if not self.running():
                self.procs.stop("agent")
                raise RuntimeError("agent exited: " + self.procs.log_since("agent", mark)[-3000:])
            return self.metric("flowlb_agent_config_generation") == self.generation
        wait_until(applied, 15, f"the agent up with generation {self.generation}",
                   ignore=(CommandFailed, prom.MetricAbsent),
                   context=lambda: self.procs.log_since("agent", mark)[-3000:])
        return mark

    def stop_agent(self, sig=signal.SIGTERM):
        return self.procs.stop("agent", sig)

    def apply(self, **kw):
        """Writes config(**kw) as a new generation, signals the agent and waits
        until it reports that generation applied; returns the generation."""
        gen = self.write_config(**kw)
        self.procs.send("agent", signal.SIGHUP)
        self.wait_metric("flowlb_agent_config_generation", lambda v: v == gen, timeout=10,
                         what=f"generation {gen} applied")
        return gen

    def ensure(self, **kw):
        """The agent running with config(**kw) applied, whatever a test left behind."""
        if not self.running():
            self.procs.stop("agent")
            if self.current != _frozen(kw):
                self.write_config(**kw)
            self.start_agent()
        elif self.current != _frozen(kw):
            self.apply(**kw)

    # -- metrics -------------------------------------------------------------
    def metrics_text(self):
        return self.ns("lb", "curl", "-sf", "-m", "2", f"http://{METRICS}/metrics", timeout=10)

    def metric(self, name, **labels):
        return prom.value(self.metrics_text(), name, **labels)

    def wait_metric(self, name, predicate, timeout=5, what=None, **labels):
        """Waits until predicate(metric value) holds; returns that value."""
        seen = []

        def check():
            seen.append(self.metric(name, **labels))
            return predicate(seen[-1])
        wait_until(check, timeout, what or f"{name}{labels or ''}",
                   ignore=(CommandFailed, prom.MetricAbsent),
                   context=lambda: f"last value: {seen[-1] if seen else 'none'}")
        return seen[-1]

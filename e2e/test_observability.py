"""flowlb's dashboard and alerts against a real Prometheus (Debian's
`prometheus` package) scraping the cluster lab (e2e.lib.cluster_lab): the
controller in PREFIX-ctl, the agents on PREFIX-lb1 and PREFIX-lb2, traffic
from PREFIX-client through the web Service's VIP. Needs root.

Prometheus runs on the host, on a port chosen at start, and reaches each
binary's /metrics (127.0.0.1 inside its namespace) through a socat bridge on
another free host port; agent targets carry `node` and the job
`flowlb-agent`, as the chart's PodMonitor gives them. It loads the shipped
rules file, so an alert's state is read from /api/v1/alerts (pending: the
expression holds, its `for:` has not run out; the lab cannot wait minutes).

Checked: the metric names the binaries export are the ones docs/metrics.md
lists; every dashboard query, with its variables set as Grafana would from
their own queries, returns data; the alerts are quiet in the healthy lab and
fire in a scenario made for each (agent killed, pool exhausted, a Service
unsatisfied, a Service refused, drops, no leader); series of a removed backend and of a deleted pool go away; the
announcing node exports the VIP it announces. The API panel, which the lab's
directory-reading controller cannot feed, is checked against the controller on
the Kubernetes API test server (KubernetesSourceTest, no root). Every query
and its result are printed as FIGURE lines.
"""
import json
import os
import re
import shutil
import signal
import sys
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from e2e.k8s import chart_rbac
from e2e.k8s.apiserver import ApiServer
from e2e.lib import observability as obs
from e2e.lib import prom
from e2e.lib.cluster_lab import (AGENT_METRICS, CONTROLLER_METRICS, NODES, Cluster,
                                 service_yaml)
from e2e.lib.proc import Processes, free_port, lab_prefix, run
from e2e.lib.wait import wait_until
from e2e.test_controller_k8s import Controller, node, pool, service, slice_

FIGURES = []
# With a health check, so its panel and FlowlbBackendDown have data.
WEB = service_yaml("web", ["b1", "b2", "b3"], drain_timeout="2s", annotations={
    "flowlb.io/health-check": "tcp", "flowlb.io/health-check-interval": "1s",
    "flowlb.io/health-check-timeout": "500ms"})
WEB_KEY = "demo/web/http/ipv4"
# Queries the lab cannot feed: its controller reads a directory of YAML, not the
# Kubernetes API, so it makes no API request and runs no watch.
NO_DATA_IN_LAB = {"flowlb_controller_api_requests_total", "flowlb_controller_watch_restarts_total"}
TINY_POOL = """apiVersion: flowlb.io/v1alpha1
kind: IPPool
metadata: {name: tiny}
spec: {addresses: ["10.10.1.121/32"], autoAssign: false}
"""


def tearDownModule():
    for f in FIGURES:
        print(f, file=sys.stderr)


def picture(url, out, seconds):
    """docs/dashboard.png: e2e.lab.dashboard_picture with a Python that has matplotlib."""
    for py in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            run([py, "-m", "e2e.lab.dashboard_picture", url, out, str(int(seconds))], timeout=120)
            return
    raise unittest.SkipTest("no matplotlib (python3-matplotlib) for the picture")


def default_state(a):
    return a.services == 1 and a.backends == 3


def bridge(cluster, name, ns, port):
    """A host port forwarding to 127.0.0.1:port inside the lab's namespace ns
    (socat, one nsenter'd socat per connection)."""
    script = os.path.join(cluster.tmp, f"bridge-{name}.sh")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\nexec nsenter --net=/run/netns/{cluster.p}-{ns} "
                f"socat STDIO TCP:127.0.0.1:{port}\n")
    os.chmod(script, 0o755)
    host = free_port()
    cluster.procs.start(f"bridge-{name}", [
        "socat", f"TCP-LISTEN:{host},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{script}"])
    return f"127.0.0.1:{host}"


def lab_prometheus(cluster):
    """Prometheus scraping the lab's controller and agents as the chart's
    ServiceMonitor and PodMonitor would (agents: job flowlb-agent, label node)."""
    return Prometheus(cluster.procs, cluster.tmp, {
        "flowlb-controller": [(bridge(cluster, "ctl", "ctl", CONTROLLER_METRICS), {})],
        "flowlb-agent": [(bridge(cluster, n, n, AGENT_METRICS), {"node": n}) for n in NODES],
    }).start()


class PrometheusApi:
    """Prometheus' HTTP API."""

    def ready(self):
        with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
            return r.status == 200

    def api(self, path, **params):
        q = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{q}", timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr):
        """[(labels, float value)] of an instant query."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def label_values(self, selector, label):
        return self.api(f"label/{label}/values", **{"match[]": selector})

    def alerts(self, name):
        """[(labels, state)] of the alert `name` (pending or firing)."""
        return [(a["labels"], a["state"]) for a in self.api("alerts")["alerts"]
                if a["labels"].get("alertname") == name]


class Prometheus(PrometheusApi):
    """A Prometheus on the host (a free port) loading the shipped rules;
    `targets` is {job: [(host:port, {label: value})]}."""

    def __init__(self, procs, tmp, targets):
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = os.path.join(tmp, "prometheus")
        self.targets = targets
        os.makedirs(os.path.join(self.dir, "data"))

    def start(self):
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": [obs.RULES],
            "scrape_configs": [
                {"job_name": job, "static_configs": [
                    {"targets": [addr], "labels": labels} for addr, labels in targets]}
                for job, targets in self.targets.items()]}
        path = os.path.join(self.dir, "prometheus.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        self.procs.start("prometheus", [
            "prometheus", f"--config.file={path}", f"--storage.tsdb.path={self.dir}/data",
            f"--web.listen-address=127.0.0.1:{self.port}"])
        wait_until(self.ready, 30, "Prometheus ready", ignore=(OSError,),
                   context=lambda: self.procs.log("prometheus")[-2000:])
        n = sum(len(t) for t in self.targets.values())
        wait_until(lambda: self.query("sum(up)") == [({}, float(n))], 30,
                   f"Prometheus scraping all {n} targets",
                   context=lambda: self.procs.log("prometheus")[-2000:])
        return self


def variable_values(p, dash):
    """The values Grafana would offer for each query variable, in order (later
    variables' queries use earlier ones, set to All)."""
    chosen, offered = {}, {}
    for name, v in obs.variables(dash).items():
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v["query"]["query"])
        selector = obs.substitute(m.group(1), {k: v2 for k, v2 in chosen.items()})
        values = p.label_values(selector, m.group(2))
        if v.get("regex"):
            rx = re.compile(v["regex"][1:-1])  # Grafana's /regex/
            values = sorted({(rx.search(x).group(1) if rx.search(x).groups() else x)
                             for x in values if rx.search(x)})
        offered[name] = values
        chosen[name] = v.get("allValue") or "(" + "|".join(re.escape(x) for x in values) + ")"
    return offered


class ObservabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, XDP)")
        for tool in ("prometheus", "socat"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} missing (scripts/install-deps.sh)")
        cls.started = time.time()
        cls.c = Cluster(prefix=lab_prefix("flob"))
        try:
            cls.c.up()
            cls.c.write("web.yaml", WEB)
            cls.vip = cls.c.vip_of("demo/web")
            for n in NODES:
                cls.c.wait_applied(n, default_state)
            cls.p = lab_prometheus(cls.c)
            # The alert expressions in the healthy lab, before any scenario (their
            # windows reach 10 minutes back): under traffic, over a few scrapes.
            cls.c.spread(cls.vip, 60)
            wait_until(lambda: cls.p.query(
                "count(count_over_time(flowlb_agent_config_generation[1m]) >= 5)") == [({}, 2.0)],
                30, "five scrapes of both agents")
            cls.healthy = {r["alert"]: cls.p.query(r["expr"]) for r in obs.alert_rules()}
        except Exception:
            cls.c.down()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            out = os.environ.get("FLOWLB_DASHBOARD_PNG")  # the README's picture
            if out:
                picture(cls.p.url, out, time.time() - cls.started)
        finally:
            cls.c.down()

    def setUp(self):
        """The lab as setUpClass left it: every process running, web on b1-b3."""
        c = self.c
        if not c.running("controller"):
            c.kill("controller")
            c.start_controller()
        restarted = {}
        for n in NODES:
            if not c.running(n):
                c.kill(n)
                restarted[n] = c.start_agent(n)
        c.wait_connected(2)
        for n, mark in restarted.items():
            c.wait_applied(n, lambda a: a.services >= 1, since=mark)
        for b in ("b1", "b2", "b3", "b4"):
            if not c.running(b):
                c.kill(b)
                c.start_backend(b)
        for name in ("tiny.yaml", "drop.yaml"):
            if c.read(name) is not None:
                c.change(name, None, default_state)
        if c.read("web.yaml") != WEB:
            c.change("web.yaml", WEB, default_state)
        wait_until(lambda: self.p.query("sum(up)")[0][1] == 3, 30, "every target scraped again")
        wait_until(lambda: c.metric("ctl", CONTROLLER_METRICS, "flowlb_controller_backends_unhealthy",
                                    service=WEB_KEY) == 0, 30, "every backend of web healthy",
                   ignore=(prom.MetricAbsent,))

    def traffic(self, n=60):
        got = self.c.spread(self.vip, n)
        self.assertEqual(sum(got.values()), n)
        return got

    def wait_alert(self, name, timeout=30, expr_context="", **labels):
        """Waits until alert `name` is pending or firing with `labels`; returns its state."""
        def active():
            for got, state in self.p.alerts(name):
                if all(got.get(k) == v for k, v in labels.items()):
                    return state
            return None
        return wait_until(active, timeout, f"alert {name} {labels}",
                          context=lambda: json.dumps(self.p.api("alerts"))[-2000:] + "\n" +
                          (f"{expr_context}: {self.p.query(expr_context)}" if expr_context else ""))

    def wait_quiet(self, name):
        """Waits until alert `name` is neither pending nor firing (an earlier
        scenario may have left it so until the next scrapes)."""
        wait_until(lambda: not self.p.alerts(name), 30, f"alert {name} quiet",
                   context=lambda: self.p.alerts(name))

    def expr_of(self, name):
        return [r["expr"] for r in obs.alert_rules() if r["alert"] == name][0]

    # -- the metric list -------------------------------------------------------
    def test_exported_metrics_are_the_documented_ones(self):
        self.traffic()
        docs = obs.documented()
        ctl = obs.exported(self.c.metrics("ctl", CONTROLLER_METRICS))
        agents = set()
        for n in NODES:
            agents |= obs.exported(self.c.metrics(n, AGENT_METRICS))
        self.assertEqual(sorted(ctl - set(docs)), [], "controller exports undocumented metrics")
        self.assertEqual(sorted(agents - set(docs)), [], "agent exports undocumented metrics")
        self.assertTrue(all(n.startswith(("flowlb_controller_", "flowlb_build_info")) for n in ctl))
        self.assertTrue(all(n.startswith(("flowlb_agent_", "flowlb_build_info")) for n in agents))
        always = {n for n, (_, when) in docs.items() if not when.startswith("event")}
        self.assertEqual(sorted(always - ctl - agents), [],
                         "documented as always there, not exported by the lab")
        FIGURES.append(f"FIGURE metrics exported: controller {len(ctl)}, agents {len(agents)}, "
                       f"documented {len(docs)}")

    # -- the dashboard ---------------------------------------------------------
    def test_every_dashboard_query_returns_data(self):
        self.traffic(100)
        dash = obs.dashboard()
        offered = variable_values(self.p, dash)
        self.assertEqual(offered["node"], sorted(NODES))
        self.assertIn("demo", offered["namespace"])
        self.assertIn("demo/web/http/ipv4", offered["service"])
        # As a user picks them: every node, namespace demo, every service of it.
        values = {"node": "(lb1|lb2)", "namespace": "demo",
                  "service": "(" + "|".join(re.escape(s) for s in offered["service"]
                                            if s.startswith("demo/")) + ")"}
        FIGURES.append(f"FIGURE dashboard variables offered: {offered}")
        empty = []
        for title, expr in obs.panel_queries(dash):
            q = obs.substitute(expr, values)
            if obs.metric_names(expr) <= NO_DATA_IN_LAB:
                FIGURES.append(f"FIGURE panel {title!r}: {q} -> not fed in the lab (no API)")
                continue
            try:
                result = wait_until(lambda q=q: self.p.query(q), 20, f"data for {q}")
            except AssertionError:
                empty.append((title, q))
                FIGURES.append(f"FIGURE panel {title!r}: {q} -> NO DATA")
                continue
            shown = ", ".join(f"{json.dumps(m, sort_keys=True)}={v:.4g}" for m, v in result[:6])
            more = f" (+{len(result) - 6} more)" if len(result) > 6 else ""
            FIGURES.append(f"FIGURE panel {title!r}: {q} -> {len(result)} series: {shown}{more}")
        self.assertEqual(empty, [], "dashboard queries without data")
        # Not only present: the traffic just sent is on the service and backend panels.
        svc = self.p.query(obs.substitute(obs.panel_queries(dash)[0][1], values))
        self.assertTrue(any(v > 0 for _, v in svc), svc)

    # -- the alerts --------------------------------------------------------------
    def test_alerts_quiet_in_the_healthy_lab(self):
        loud = {name: got for name, got in self.healthy.items() if got}
        self.assertEqual(loud, {}, "alert expressions true in the healthy lab")
        self.assertEqual(len(self.healthy), len(obs.alert_rules()))

    def test_alert_agent_killed(self):
        self.wait_quiet("FlowlbAgentNotConnected")
        self.c.kill("lb2")
        state = self.wait_alert("FlowlbAgentNotConnected", node="lb2")
        got = self.p.query(self.expr_of("FlowlbAgentNotConnected"))
        self.assertEqual([m.get("node") for m, _ in got], ["lb2"], got)
        FIGURES.append(f"FIGURE alert FlowlbAgentNotConnected after killing lb2's agent: {state}")

    def test_alert_backend_down(self):
        self.wait_quiet("FlowlbBackendDown")
        self.c.kill("b2")  # its server stops; its endpoint stays ready
        state = self.wait_alert("FlowlbBackendDown", service=WEB_KEY,
                                expr_context=self.expr_of("FlowlbBackendDown"))
        got = self.p.query(self.expr_of("FlowlbBackendDown"))
        self.assertEqual(got, [({"service": WEB_KEY}, 1.0)], got)
        FIGURES.append(f"FIGURE alert FlowlbBackendDown after stopping b2's server: {state}")

    def test_alert_pool_exhausted(self):
        self.wait_quiet("FlowlbPoolNearlyExhausted")
        svc = service_yaml("pinned", ["b4"]).replace(
            '"annotations": {', '"annotations": {"flowlb.io/pool": "tiny", ', 1)
        self.c.change("tiny.yaml", TINY_POOL + "---\n" + svc, lambda a: a.services == 2)
        self.assertEqual(self.c.vip_of("demo/pinned"), "10.10.1.121")
        state = self.wait_alert("FlowlbPoolNearlyExhausted", pool="tiny",
                                expr_context="flowlb_controller_pool_addresses")
        got = self.p.query(self.expr_of("FlowlbPoolNearlyExhausted"))
        self.assertEqual([m.get("pool") for m, _ in got], ["tiny"], got)
        FIGURES.append(f"FIGURE alert FlowlbPoolNearlyExhausted with pool tiny full: {state}")
        # One Service more asking for the full pool is unsatisfied.
        self.wait_quiet("FlowlbServicesUnsatisfied")
        more = service_yaml("pinned2", ["b4"]).replace(
            '"annotations": {', '"annotations": {"flowlb.io/pool": "tiny", ', 1)
        self.c.write("tiny.yaml", TINY_POOL + "---\n" + svc + "---\n" + more)
        state = self.wait_alert("FlowlbServicesUnsatisfied")
        FIGURES.append(f"FIGURE alert FlowlbServicesUnsatisfied with a second Service on pool "
                       f"tiny: {state}")
        # The pool deleted, its series go (and the alert with them).
        self.c.change("tiny.yaml", None, default_state)
        wait_until(lambda: not prom.select(self.c.metrics("ctl", CONTROLLER_METRICS),
                                           "flowlb_controller_pool_addresses", pool="tiny"),
                   10, "pool tiny's series removed")
        self.wait_quiet("FlowlbPoolNearlyExhausted")

    def test_alert_drops_rising(self):
        """A Service whose only endpoint is not ready has no backend: every SYN
        to it is dropped (no_backend) on the announcing node."""
        svc = service_yaml("empty", ["b4"], draining=("b4",))
        self.c.change("drop.yaml", svc, lambda a: a.services == 2)
        vip = self.c.vip_of("demo/empty")
        self.c.ns("client", sys.executable, "-c", SYN_BURST, vip, "600", timeout=60)
        state = self.wait_alert("FlowlbDropsRising", reason="no_backend",
                                expr_context="sum by (node, reason) (increase("
                                "flowlb_agent_datapath_drops_total[1m])) > 0")
        got = self.p.query(self.expr_of("FlowlbDropsRising"))
        FIGURES.append(f"FIGURE alert FlowlbDropsRising after 600 SYNs to {vip}: {state} {got}")

    def test_alert_services_refused(self):
        """DSR cannot rewrite ports: a DSR Service whose endpoints listen on
        another port is refused by the agents, alone."""
        self.wait_quiet("FlowlbServicesRefused")
        svc = service_yaml("broken", ["b4"], mode="dsr")
        at = svc.rindex('"port": 80')
        svc = svc[:at] + '"port": 8080' + svc[at + len('"port": 80'):]  # the EndpointSlice's
        self.c.change("drop.yaml", svc, lambda a: a.refused == 1)
        for n in NODES:
            self.assertEqual(self.c.metric(n, AGENT_METRICS, "flowlb_agent_service_refused",
                                           service="demo/broken/http/ipv4"), 1)
            state = self.wait_alert("FlowlbServicesRefused", node=n)
        FIGURES.append(f"FIGURE alert FlowlbServicesRefused with a DSR Service on another "
                       f"port: {state}")

    def test_alert_no_leader(self):
        self.wait_quiet("FlowlbNoLeader")
        self.c.kill("controller")
        state = self.wait_alert("FlowlbNoLeader")
        FIGURES.append(f"FIGURE alert FlowlbNoLeader after killing the controller: {state}")

    # -- metric hygiene ------------------------------------------------------------
    def test_removed_backend_series_go_away(self):
        gone = "10.10.2.13:80"
        wait_until(lambda: self.traffic(30).get("b3"), 30, "b3 serving")
        has = lambda n: prom.select(self.c.metrics(n, AGENT_METRICS),  # noqa: E731
                                    "flowlb_agent_backend_packets_total", backend=gone)
        counted = [n for n in NODES if has(n)]
        self.assertTrue(counted, "no node counted b3's traffic")
        self.c.change("web.yaml", service_yaml("web", ["b1", "b2"], drain_timeout="2s"),
                      lambda a: a.backends == 2)
        for n in counted:
            wait_until(lambda n=n: not has(n), 30, f"{n} dropping {gone}'s series")
        remaining = prom.select(self.c.metrics(counted[0], AGENT_METRICS),
                                "flowlb_agent_backend_packets_total")
        self.assertTrue(remaining, "every backend series went, not only b3's")

    def test_announcing_node_exports_its_vip(self):
        node = self.c.announcer()
        other = [n for n in NODES if n != node][0]
        self.assertEqual(self.c.metric(node, AGENT_METRICS, "flowlb_agent_announced_vip_info",
                                       vip=self.vip), 1)
        self.assertEqual(prom.select(self.c.metrics(other, AGENT_METRICS),
                                     "flowlb_agent_announced_vip_info", vip=self.vip), [])


class KubernetesSourceTest(unittest.TestCase):
    """The dashboard queries the cluster lab cannot feed (its controller reads a
    directory: no API request, no watch): flowlb-controller against the Kubernetes API test server
    (e2e/k8s/apiserver.py, the chart's RBAC), which fails some requests and
    drops the watches, scraped by Prometheus. No root needed."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("prometheus"):
            raise unittest.SkipTest("prometheus missing (scripts/install-deps.sh)")
        cls.tmp = tempfile.mkdtemp(prefix="flowlb-obs-k8s-")
        cls.procs = Processes(cls.tmp)
        cls.server = ApiServer(bookmark_interval=0.5, tokens=("tok-a",)).start()
        cls.ctl = None
        try:
            chart_rbac.load(cls.server)
            token = cls.server.issue_token(chart_rbac.NAMESPACE, chart_rbac.CONTROLLER_SA)
            for n in ("node-a", "node-b"):
                cls.server.create("nodes", node(n))
            cls.server.create("ippools", pool("public", ["192.0.2.0/26"]))
            cls.server.create("services", service("web"))
            cls.server.create("endpointslices", slice_("web"))
            cls.ctl = Controller(cls.server, cls.tmp, token=token)
            cls.p = Prometheus(cls.procs, cls.tmp, {"flowlb-controller": [
                (f"127.0.0.1:{cls.ctl.metrics_port}", {})]}).start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.procs.stop_all()
        if cls.ctl:
            cls.ctl.stop(signal.SIGKILL)
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_controller_panels_return_data(self):
        # API errors and restarted watches, as a troubled cluster gives them.
        self.server.fail_next(3, 500, path_contains="/api/v1/services")
        self.server.drop_watches()
        self.server.create("services", service("after"))
        dash = obs.dashboard()
        checked = 0
        for title, expr in obs.panel_queries(dash):
            if not obs.metric_names(expr) <= NO_DATA_IN_LAB:
                continue  # fed in the cluster lab (ObservabilityTest)
            checked += 1
            q = obs.substitute(expr, {"node": ".*", "namespace": ".*", "service": ".*"})
            result = wait_until(lambda q=q: self.p.query(q), 30, f"data for {q}",
                                context=lambda: self.ctl.output()[-2000:])
            shown = ", ".join(f"{json.dumps(m, sort_keys=True)}={v:.4g}" for m, v in result[:6])
            FIGURES.append(f"FIGURE k8s-source panel {title!r}: {q} -> {len(result)} series: "
                           f"{shown}{' (+more)' if len(result) > 6 else ''}")
        self.assertEqual(checked, 2)
        errors = wait_until(lambda: self.p.query(
            # The series is born at the first 500, so rate() may not see that one yet.
            'sum by (code) (flowlb_controller_api_requests_total{code="500"}) >= 1'),
            30, "the 500s counted")
        self.assertTrue(errors)
        self.assertTrue(self.p.query("max(flowlb_controller_leader) == 1"))


# Non-blocking connects: one SYN each, never answered (the socket is closed at once).
SYN_BURST = """
import socket, sys
vip, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect((vip, 80))
    except BlockingIOError:
        pass
    s.close()
"""

if __name__ == "__main__":
    unittest.main()

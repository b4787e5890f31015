"""Active health checks with one verdict for the cluster (issue 14), in the
cluster lab: the controller, two LB-node agents that both probe the web
Service's backends (fewer nodes than probers per backend), and real
traffic through the VIP. A backend whose server stops while its endpoint
stays ready is taken out of every node's table; it comes back when its
server does; one node that cannot reach a backend does not take it down for
everyone; when every backend is down the service fails open; both agents
build the same tables. Tests wait on what the agents apply and on metrics,
never on time. Needs root.

  python3 -m unittest e2e.test_health_cluster        (from the repository root)
"""
import sys
import time
import unittest

from e2e.lib.cluster_lab import (AGENT_METRICS, BACKENDS, CONTROLLER_METRICS, NODES, Cluster,
                                 service_yaml)
from e2e.lib import prom
from e2e.lib.labtest import LabTest
from e2e.lib.outcome import test_failed
from e2e.lib.proc import lab_prefix
from e2e.lib.wait import wait_until

FIGURES = []
CHECK = {
    "flowlb.io/health-check": "http:/id",
    "flowlb.io/health-check-interval": "500ms",
    "flowlb.io/health-check-timeout": "200ms",
    "flowlb.io/health-check-unhealthy-threshold": "2",
    "flowlb.io/health-check-healthy-threshold": "2",
}
WEB = service_yaml("web", ["b1", "b2", "b3"], annotations=CHECK)
SERVERS = ("b1", "b2", "b3")
WEB_KEY = "demo/web/http/ipv4"
NFT_TABLE = "flowlb_e2e_block"


def unhealthy(n):
    return lambda a: a.services == 1 and a.backends == 3 and a.fields.get("unhealthy") == n


class HealthClusterTest(LabTest):
    figures = FIGURES

    @classmethod
    def make_lab(cls):
        return Cluster(prefix=lab_prefix("flhc"))

    @classmethod
    def prepare(cls):
        cls.c = cls.lab
        cls.c.write("web.yaml", WEB)
        cls.vip = cls.c.vip_of("demo/web")
        for n in NODES:
            cls.c.wait_applied(n, unhealthy(0))

    def setUp(self):
        """Every backend serving and reachable, and both nodes agreeing on it."""
        c = self.c
        for n in NODES:
            c.ns(n, "nft", "delete", "table", "inet", NFT_TABLE, check=False)
        for b in SERVERS:
            if not c.running(b):
                c.kill(b)
                c.start_backend(b)
        self.wait_health(lambda v: v == 0, "no backend of web unhealthy")

    def tearDown(self):
        if test_failed(self):
            for n in ("controller", "lb1", "lb2"):
                print(f"--- {n} (tail) ---\n{self.c.log(n)[-3000:]}", file=sys.stderr)

    def controller_metric(self, name, **labels):
        return self.c.metric("ctl", CONTROLLER_METRICS, name, **labels)

    def agent_metric(self, node, name, **labels):
        return self.c.metric(node, AGENT_METRICS, name, **labels)

    def wait_health(self, predicate, what, timeout=20):
        """Until the controller's count of web's unhealthy backends satisfies
        predicate and both agents run a state with that many."""
        def count():
            v = self.controller_metric("flowlb_controller_backends_unhealthy", service=WEB_KEY)
            return [v] if predicate(v) else None  # a list: 0 is an answer too
        n = wait_until(count, timeout, what, ignore=(prom.MetricAbsent,),
                       context=lambda: self.c.log("controller")[-1500:])[0]
        for node in NODES:
            self.c.wait_applied(node, unhealthy(int(n)), timeout=timeout)
        return int(n)

    def wait_event(self, reason, since, text=""):
        """The Event (logged by the directory controller) after a mark."""
        def seen():
            return [line for line in self.c.log("controller")[since:].splitlines()
                    if "event=service_event" in line and "service=demo/web" in line
                    and f"reason={reason}" in line and text in line]
        return wait_until(seen, 20, f"a {reason} Event on demo/web",
                          context=lambda: self.c.log("controller")[since:][-1500:])

    def test_a_backend_whose_server_stops_takes_no_new_flows_and_comes_back(self):
        c = self.c
        mark = len(c.log("controller"))
        t0 = time.time()
        c.kill("b2")  # its endpoint stays ready in the EndpointSlice
        self.wait_health(lambda v: v == 1, "b2 found unhealthy")
        detect_ms = (time.time() - t0) * 1000
        FIGURES.append(f"FIGURE health_detect_ms={detect_ms:.0f} (interval 500 ms, timeout "
                       f"200 ms, 2 failures: target <= 3 x 500 + 200 = 1700)")
        # After detection: no failed request, none on b2, on either node.
        counts = c.spread(self.vip, 60)
        self.assertEqual(set(counts), {"b1", "b3"}, counts)
        # What `kubectl describe svc web` shows.
        event = self.wait_event("BackendUnhealthy", mark, BACKENDS["b2"])[0]
        self.assertIn("type=Warning", event)
        self.assertIn("2 of 2 probing nodes", event)
        mark = len(c.log("controller"))
        c.start_backend("b2")
        self.wait_health(lambda v: v == 0, "b2 healthy again")
        self.wait_event("BackendHealthy", mark, BACKENDS["b2"])
        counts = c.spread(self.vip, 60)
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)

    def test_one_node_that_cannot_reach_a_backend_does_not_take_it_down(self):
        c = self.c
        # lb1's own traffic to b3 (its probes) is dropped; forwarded traffic
        # leaves through AF_XDP and never meets the node's output hook.
        c.ns("lb1", "nft", "add", "table", "inet", NFT_TABLE)
        c.ns("lb1", "nft", "add", "chain", "inet", NFT_TABLE, "out",
             "{ type filter hook output priority 0; }")
        c.ns("lb1", "nft", "add", "rule", "inet", NFT_TABLE, "out", "ip", "daddr", BACKENDS["b3"],
             "tcp", "dport", "80", "drop")
        wait_until(lambda: self.agent_metric("lb1", "flowlb_agent_backend_health",
                                             service=WEB_KEY,
                                             backend=f"{BACKENDS['b3']}:80") == 0,
                   20, "lb1 reports b3 unhealthy", ignore=(prom.MetricAbsent,),
                   context=lambda: c.log("lb1")[-1500:])
        # The controller's verdict has seen lb1's report: 1 of 2 probers
        # says down, no majority, so b3 stays in every table.
        wait_until(lambda: self.controller_metric("flowlb_controller_health_reports",
                                                  status="unhealthy") == 1,
                   20, "the controller decided on lb1's report")
        self.assertEqual(self.controller_metric("flowlb_controller_backends_unhealthy",
                                                service=WEB_KEY), 0)
        self.assertEqual(self.agent_metric("lb2", "flowlb_agent_backend_health", service=WEB_KEY,
                                           backend=f"{BACKENDS['b3']}:80"), 1)
        counts = c.spread(self.vip, 60)
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)

    def test_when_every_backend_is_down_the_service_fails_open(self):
        c = self.c
        mark = len(c.log("controller"))
        for b in SERVERS:
            c.kill(b)
        self.wait_health(lambda v: v == 3, "every backend unhealthy")
        self.assertIn("type=Warning", self.wait_event("AllBackendsUnhealthy", mark)[0])
        for n in NODES:
            self.assertIn("failing open", c.log(n))
        # Forwarded, not dropped: the backend's kernel answers with a RST.
        self.assertEqual(c.client("connect", self.vip, "80").strip(), "refused")
        c.start_backend("b1")
        self.wait_health(lambda v: v == 2, "b1 back")
        self.assertEqual(set(c.spread(self.vip, 20)), {"b1"})

    def test_both_agents_build_the_same_tables(self):
        # Both agents ack the fingerprint of every table they build; the
        # controller compares those built from the same state.
        wait_until(lambda: self.controller_metric(
            "flowlb_controller_maglev_fingerprints_agreeing") >= 1, 20,
            "the controller compared both agents' tables of web", ignore=(prom.MetricAbsent,))
        self.assertEqual(self.controller_metric("flowlb_controller_maglev_fingerprint_mismatches"), 0)

if __name__ == "__main__":
    unittest.main(verbosity=2)

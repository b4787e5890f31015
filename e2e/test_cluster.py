"""The whole system in the cluster lab: the standalone controller, two LB
nodes running flowlb-agent with AF_XDP, four HTTP backends and a client
(e2e/lab/cluster.sh, driven by e2e.lib.cluster_lab). Services are created by
writing Kubernetes YAML into the controller's directory; every check is on
real traffic through the VIP. Needs root.

ClusterTest shares one lab; setUp brings it back to the web Service on b1-b3
with every process running, so each scenario runs alone and in any order.
Tests wait on what the agents log (desired_state_applied after a mark), on
metrics and on the client's own output, never on time. The failover gaps are
printed as FIGURE lines; bench/e2e_bench.py measures them repeatedly.
"""
import json
import os
import signal
import sys
import time
import unittest

from e2e.lib.cluster_lab import (AGENT_METRICS, DSR_VIP, NODES, Cluster, failover_gap_ms,
                                 samples, service_yaml)
from e2e.lib.content import md5, pattern
from e2e.lib.labtest import LabTest
from e2e.lib.outcome import test_failed
from e2e.lib.proc import lab_prefix, module
from e2e.lib.paths import controller_binary
from e2e.lib.wait import wait_until

FIGURES = []
WEB = service_yaml("web", ["b1", "b2", "b3"], drain_timeout="4s")


def default_state(a):
    return a.services == 1 and a.backends == 3


class ClusterTest(LabTest):
    """Scenarios 1-6 of issue 6 on one lab."""
    figures = FIGURES

    @classmethod
    def make_lab(cls):
        return Cluster()

    @classmethod
    def prepare(cls):
        cls.c = cls.lab
        cls.c.write("web.yaml", WEB)
        cls.vip = cls.c.vip_of("demo/web")
        for n in NODES:
            cls.c.wait_applied(n, default_state)

    def setUp(self):
        """The lab as setUpClass left it, whatever an earlier test did to it."""
        c = self.c
        for n in NODES:
            c.ns(n, "ip", "link", "set", "l0", "up")  # a cut link
        c.ns("client", "ip", "neigh", "del", DSR_VIP, "dev", "c0", check=False)  # a pinned path
        if not c.running("controller"):
            c.kill("controller")
            c.start_controller()
        restarted = {}
        for n in NODES:
            if not c.running(n):
                c.kill(n)  # forget an agent that died
                restarted[n] = c.start_agent(n)
        c.wait_connected(2)
        for n, mark in restarted.items():
            c.wait_applied(n, lambda a: a.services >= 1, since=mark)
        if c.read("dsr.yaml") is not None:
            c.change("dsr.yaml", None, lambda a: a.services == 1)
        if c.read("web.yaml") != WEB:
            c.change("web.yaml", WEB, default_state)
        for n in NODES:
            c.wait_applied(n, default_state)

    def tearDown(self):
        for name in self.c.procs.names():
            if name.startswith("client-"):
                self.c.kill(name)
        if test_failed(self):
            for n in ("controller", "lb1", "lb2"):
                print(f"--- {n} (tail) ---\n{self.c.log(n)[-3000:]}", file=sys.stderr)

    def download(self, name, n, ms):
        """A background download through the VIP; returns its backend once it started."""
        return self.c.start_download(name, f"http://{self.vip}/slow/{n}/{ms}")

    def assertDownloaded(self, name, n):
        rc, out = self.c.client_output(name)
        self.assertEqual(rc, 0, out)
        self.assertEqual(md5(self.c.downloaded(name)), md5(pattern(n)))

    def test_service_gets_a_vip_one_node_announces_all_backends_answer(self):
        self.assertTrue(self.vip.startswith("10.10.1.1"), self.vip)
        announcer = self.c.announcer()
        counts = self.c.spread(self.vip, 90)
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)
        for b, n in counts.items():
            self.assertGreater(n, 10, counts)
        # The client reached the VIP through the announcer's MAC.
        neigh = self.c.ns("client", "ip", "neigh", "show", self.vip)
        self.assertIn(self.c.mac(announcer), neigh)

    def test_scale_out_reaches_the_new_backend_and_keeps_established_flows(self):
        self.download("client-scale", 1 << 20, 40)  # 64 pieces, ~2.6 s
        self.c.change("web.yaml", service_yaml("web", ["b1", "b2", "b3", "b4"], drain_timeout="4s"),
                      lambda a: a.services == 1 and a.backends == 4)
        counts = self.c.spread(self.vip, 120)
        self.assertIn("b4", counts, counts)
        self.assertDownloaded("client-scale", 1 << 20)

    def test_rolling_update_drains_without_breaking_the_download(self):
        four = ["b1", "b2", "b3", "b4"]
        self.c.change("web.yaml", service_yaml("web", four, drain_timeout="4s"),
                      lambda a: a.backends == 4)
        backend = self.download("client-drain", 1 << 20, 40)
        self.assertIn(backend, four)
        marks = {n: self.c.mark(n) for n in NODES}
        self.c.change("web.yaml", service_yaml("web", four, draining=(backend,), drain_timeout="4s"),
                      lambda a: a.backends == 4)
        counts = self.c.spread(self.vip, 60)
        self.assertNotIn(backend, counts, f"new connections reached draining {backend}: {counts}")
        self.assertDownloaded("client-drain", 1 << 20)
        # After the drain timeout (4 s) the agents drop it.
        for n in NODES:
            self.c.wait_log(n, r"event=drained", since=marks[n], timeout=10)

    def failover(self, how):
        c = self.c
        announcer = c.announcer()
        other = "lb2" if announcer == "lb1" else "lb1"
        c.start_client("client-loop", "loop", f"http://{self.vip}/id", "4")
        # Fail only once the client is getting through.
        wait_until(lambda: c.loop_successes("client-loop") >= 20, 5, "20 successful connections",
                   context=lambda: c.log("client-loop")[-500:])
        t_fail = time.time()
        try:
            if how == "kill":
                c.kill(announcer)
            elif how == "frozen":
                # No FIN, no RST: only the keepalives can tell the controller.
                c.procs.send(announcer, signal.SIGSTOP)
            else:
                c.ns(announcer, "ip", "link", "set", "l0", "down")
            rc, out = c.client_output("client-loop")
            self.assertEqual(rc, 0, out)
            got = samples(out)
            gap = failover_gap_ms(got, t_fail)
            fails = sum(1 for s in got if s[2] is None and s[0] >= t_fail - 0.2)
            self.assertEqual(c.announcer(exclude=(announcer,)), other)
            FIGURES.append(f"FIGURE l2_failover_ms_{how} {gap:.0f} ms (failed attempts {fails})")
            self.assertLess(gap, 1000, f"failover took {gap:.0f} ms")
            self.assertGreater(len([s for s in got if s[2] and s[0] > t_fail + 0.5]), 20)
        finally:
            if how == "link":
                c.ns(announcer, "ip", "link", "set", "l0", "up")
            if how == "frozen":
                c.procs.send(announcer, signal.SIGCONT)
                c.kill(announcer)
        return gap

    def test_lb_node_failure_agent_killed(self):
        self.failover("kill")

    def test_lb_node_failure_link_cut(self):
        self.failover("link")

    def test_lb_node_failure_agent_frozen(self):
        self.failover("frozen")

    def test_a_flow_moved_to_the_other_lb_node_survives(self):
        # DSR: replies bypass the LB, and both nodes pick the same backend.
        c = self.c
        c.change("dsr.yaml", service_yaml("dsr", ["b1", "b2", "b3", "b4"], mode="dsr", ip=DSR_VIP),
                 lambda a: a.services == 2)
        self.assertEqual(c.vip_of("demo/dsr"), DSR_VIP)
        # The client's path is pinned to lb1 first, whoever announces.
        first, other = "lb1", "lb2"
        c.ns("client", "ip", "neigh", "replace", DSR_VIP, "lladdr", c.mac(first), "dev", "c0",
             "nud", "permanent")
        try:
            c.start_download("client-move", f"http://{DSR_VIP}/slow/{1 << 20}/40")
            c.wait_downloading("client-move")  # established through lb1, mid-flow
            # (No series yet if that node has forwarded nothing so far.)
            before = c.metric(other, AGENT_METRICS, "flowlb_agent_service_packets_total",
                              default=0)
            # The client's path changes (as ECMP or an announcer change would do).
            c.ns("client", "ip", "neigh", "replace", DSR_VIP, "lladdr", c.mac(other), "dev", "c0",
                 "nud", "permanent")
            self.assertDownloaded("client-move", 1 << 20)
            after = wait_until(
                lambda: (lambda v: v - before > 20 and v)(
                    c.metric(other, AGENT_METRICS, "flowlb_agent_service_packets_total",
                             default=0)),
                5, f"{other} counting the moved flow's packets")
            self.assertGreater(after - before, 20, "the second node did not carry the flow")
        finally:
            c.ns("client", "ip", "neigh", "del", DSR_VIP, "dev", "c0", check=False)
            c.change("dsr.yaml", None, lambda a: a.services == 1)  # one VIP again

    def test_controller_restart_and_outage(self):
        c = self.c
        before = c.vip_of("demo/web")
        marks = {n: c.mark(n) for n in NODES}
        c.kill("controller")
        for n in NODES:
            c.wait_log(n, r"event=controller_disconnected", since=marks[n])
        # Fail static: both agents keep forwarding with their last state.
        counts = c.spread(self.vip, 40)
        self.assertEqual(sum(counts.values()), 40)
        marks = {n: c.mark(n) for n in NODES}
        c.start_controller()
        c.wait_connected(2)
        self.assertEqual(c.vip_of("demo/web"), before)
        for n in NODES:  # the restarted controller's state, applied
            c.wait_applied(n, default_state, since=marks[n])
        counts = c.spread(self.vip, 40)
        self.assertEqual(sum(counts.values()), 40)
        c.announcer()


class KubernetesSourceTest(unittest.TestCase):
    """The same lab with the controller on the Kubernetes API (the project's
    test server, in the controller's namespace) instead of a directory."""

    def test_kubernetes_source_serves_agents(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (network namespaces, XDP)")
        c = Cluster(prefix=lab_prefix("flk8"))
        try:
            c.up()  # the directory controller first; replaced below
            c.kill("controller")
            objs = [{"resource": "nodes", "object": {
                        "metadata": {"name": n},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}}
                    for n in NODES]
            objs.append({"resource": "ippools", "object": {
                "apiVersion": "flowlb.io/v1alpha1", "kind": "IPPool", "metadata": {"name": "lan"},
                "spec": {"addresses": ["10.10.1.110-10.10.1.115"]}}})
            docs = service_yaml("web", ["b1", "b2", "b3"]).split("\n---\n")
            objs.append({"resource": "services", "object": json.loads(docs[0])})
            objs.append({"resource": "endpointslices", "object": json.loads(docs[1])})
            # A Service every agent refuses (issue 11.4): DSR cannot rewrite
            # ports, and its endpoints listen on 8080 behind port 80.
            broken = service_yaml("broken", ["b1"], mode="dsr").split("\n---\n")
            broken_slice = json.loads(broken[1])
            broken_slice["ports"][0]["port"] = 8080
            objs.append({"resource": "services", "object": json.loads(broken[0])})
            objs.append({"resource": "endpointslices", "object": broken_slice})
            load = os.path.join(c.tmp, "objects.json")
            with open(load, "w") as f:
                json.dump(objs, f)
            with open(os.path.join(c.tmp, "kubeconfig"), "w") as f:
                f.write('current-context: t\ncontexts: [{name: t, context: {cluster: c, user: u}}]\n'
                        'clusters: [{name: c, cluster: {server: "http://127.0.0.1:6443"}}]\n'
                        'users: [{name: u, user: {token: t0k}}]\n')
            c.spawn("apiserver", "ctl", module("e2e.k8s.apiserver", "--port", "6443", "--token",
                                               "t0k", "--load", load))
            # It prints its URL once it listens.
            wait_until(lambda: "http://127.0.0.1:6443" in c.log("apiserver"), 15,
                       "the API test server listening", context=lambda: c.log("apiserver"))
            marks = {n: c.mark(n) for n in NODES}
            c.spawn("controller", "ctl", [
                controller_binary(), "--source", "kubernetes",
                "--kubeconfig", os.path.join(c.tmp, "kubeconfig"), "--plaintext",
                "--grpc-address", "10.10.2.5:9443", "--metrics-address", "127.0.0.1:9465",
                "--identity", "ctl-1"])
            c.wait_connected(2, timeout=30)

            def status_ip():
                out = c.ns("ctl", "curl", "-s", "-H", "Authorization: Bearer t0k",
                           "http://127.0.0.1:6443/api/v1/namespaces/demo/services/web", check=False)
                try:
                    return json.loads(out)["status"]["loadBalancer"]["ingress"][0]["ip"]
                except (ValueError, KeyError, IndexError, TypeError):
                    return None
            vip = wait_until(status_ip, 20, "web's address in its status",
                             context=lambda: c.log("controller")[-2000:])
            self.assertIsNotNone(vip)
            self.assertTrue(vip.startswith("10.10.1.11"), vip)
            for n in NODES:
                c.wait_applied(n, lambda a: a.services == 2 and a.refused == 1 and a.backends == 4,
                               since=marks[n])
            counts = c.spread(vip, 60)
            self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)

            # What `kubectl describe svc broken` shows: a condition saying no
            # node programmed it and why, and a Warning Event with the reason.
            def api(path):
                out = c.ns("ctl", "curl", "-s", "-H", "Authorization: Bearer t0k",
                           "http://127.0.0.1:6443" + path, check=False)
                try:
                    return json.loads(out)
                except ValueError:
                    return {}

            def programmed():
                conds = api("/api/v1/namespaces/demo/services/broken").get("status", {}).get(
                    "conditions") or []
                return next((x for x in conds if x.get("type") == "flowlb.io/Programmed"), None)
            cond = wait_until(programmed, 20, "broken's flowlb.io/Programmed condition",
                              context=lambda: c.log("controller")[-2000:])
            self.assertEqual(cond["status"], "False", cond)
            self.assertIn("8080", cond.get("message", ""), cond)

            def refusal():
                return [e for e in api("/api/v1/namespaces/demo/events").get("items", [])
                        if e.get("involvedObject", {}).get("name") == "broken"
                        and e.get("type") == "Warning" and e.get("reason", "").startswith("AgentRefused")]
            events = wait_until(refusal, 20, "a Warning Event on broken naming the refusal",
                                context=lambda: c.log("controller")[-2000:])
            self.assertIn("8080", events[0].get("message", ""), events)
            web = api("/api/v1/namespaces/demo/services/web").get("status", {})
            web_cond = next((x for x in web.get("conditions") or []
                             if x.get("type") == "flowlb.io/Programmed"), {})
            self.assertEqual(web_cond.get("status"), "True", web)
        except Exception:
            for n in ("apiserver", "controller", "lb1", "lb2"):
                print(f"--- {n} (tail) ---\n{c.log(n)[-2000:]}", file=sys.stderr)
            raise
        finally:
            c.down()


if __name__ == "__main__":
    unittest.main(verbosity=2)

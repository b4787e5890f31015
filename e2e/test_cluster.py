#!/usr/bin/env python3
"""The whole system in the cluster lab: the standalone controller, two LB
nodes running flowlb-agent with AF_XDP, four HTTP backends and a client
(e2e/lab/cluster.sh). Services are created by writing Kubernetes YAML into the
controller's directory; every check is on real traffic through the VIP.
Needs root. Usage: test_cluster.py BUILD_DIR
"""
import hashlib
import json
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lab"))
from cluster import Cluster, DSR_VIP, expected_bytes, failover_gap_ms, service_yaml  # noqa: E402

BUILD = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
FIGURES = []


def md5(data):
    return hashlib.md5(data).hexdigest()


class ClusterTest(unittest.TestCase):
    """Scenarios 1-6 of issue 6, in order, on one lab."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BUILD)
        try:
            cls.c.up()
            cls.c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3"], drain_timeout="4s"))
            cls.vip = cls.c.vip_of("demo/web")
            for n in ("lb1", "lb2"):
                cls.c.wait_applied(n, lambda line: "services=1" in line)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.down()
        for f in FIGURES:
            print(f, file=sys.stderr)

    def setUp(self):
        # A scenario that killed something restores it at its end; make sure.
        for n in ("lb1", "lb2"):
            if n not in self.c.procs:
                self.c.start_agent(n)
        if "controller" not in self.c.procs:
            self.c.start_controller()
        self.c.wait_connected(2)

    def tearDown(self):
        if not getattr(self._outcome, "success", True):
            for n in ("controller", "lb1", "lb2"):
                print(f"--- {n} (tail) ---\n{self.c.log(n)[-3000:]}", file=sys.stderr)

    def download(self, name, n, ms):
        return self.c.start_client(name, "fetch", f"http://{self.vip}/slow/{n}/{ms}",
                                   os.path.join(self.c.tmp, name + ".bin"))

    def downloaded(self, name):
        with open(os.path.join(self.c.tmp, name + ".bin"), "rb") as f:
            return f.read()

    def test_1_service_gets_a_vip_one_node_announces_all_backends_answer(self):
        self.assertTrue(self.vip.startswith("10.10.1.1"), self.vip)
        announcer = self.c.announcer()
        counts = self.c.spread(self.vip, 90)
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)
        for b, n in counts.items():
            self.assertGreater(n, 10, counts)
        # The client reached the VIP through the announcer's MAC.
        neigh = self.c.ns("client", "ip", "neigh", "show", self.vip, capture_output=True,
                          text=True).stdout
        self.assertIn(self.c.mac(announcer), neigh)

    def test_2_scale_out_reaches_the_new_backend_and_keeps_established_flows(self):
        self.download("scale", 1 << 20, 40)  # 64 pieces, ~2.6 s
        time.sleep(0.5)
        self.c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3", "b4"], drain_timeout="4s"))
        for n in ("lb1", "lb2"):
            self.c.wait_applied(n, lambda line: "services=1" in line and "generation" in line)
        time.sleep(0.3)
        counts = self.c.spread(self.vip, 120)
        self.assertIn("b4", counts, counts)
        rc, out = self.c.client_output("scale")
        self.assertEqual(rc, 0, out)
        self.assertEqual(md5(self.downloaded("scale")), md5(expected_bytes(1 << 20)))

    def test_3_rolling_update_drains_without_breaking_the_download(self):
        self.download("drain", 1 << 20, 40)
        deadline = time.time() + 5
        backend = ""
        while time.time() < deadline and not backend:
            backend = open(os.path.join(self.c.tmp, "drain.out")).read().strip()
            time.sleep(0.05)
        self.assertIn(backend, ("b1", "b2", "b3", "b4"))
        t_mark = time.time()
        self.c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3", "b4"], draining=(backend,),
                                              drain_timeout="4s"))
        time.sleep(0.5)
        counts = self.c.spread(self.vip, 60)
        self.assertNotIn(backend, counts, f"new connections reached draining {backend}: {counts}")
        rc, out = self.c.client_output("drain")
        self.assertEqual(rc, 0, out)
        self.assertEqual(md5(self.downloaded("drain")), md5(expected_bytes(1 << 20)))
        # After the drain timeout the agents drop it.
        deadline = t_mark + 10
        while time.time() < deadline and "event=drained" not in self.c.log(self.c.announcer()):
            time.sleep(0.2)
        self.assertIn("event=drained", self.c.log(self.c.announcer()))
        self.c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3", "b4"], drain_timeout="4s"))

    def failover(self, how):
        announcer = self.c.announcer()
        other = "lb2" if announcer == "lb1" else "lb1"
        self.c.start_client("loop", "loop", f"http://{self.vip}/id", "4")
        time.sleep(1.5)
        t_fail = time.time()
        if how == "kill":
            self.c.kill(announcer)
        elif how == "frozen":
            # No FIN, no RST: only the keepalives can tell the controller.
            self.c.procs[announcer].send_signal(signal.SIGSTOP)
        else:
            self.c.ns(announcer, "ip", "link", "set", "l0", "down", check=True)
        rc, out = self.c.client_output("loop")
        self.assertEqual(rc, 0, out)
        samples = json.loads(out)
        gap = failover_gap_ms(samples, t_fail)
        fails = sum(1 for s in samples if s[2] is None and s[0] >= t_fail - 0.2)
        self.assertEqual(self.c.announcer(exclude=(announcer,)), other)
        FIGURES.append(f"FIGURE l2_failover_ms_{how} {gap:.0f} ms (failed attempts {fails})")
        self.assertLess(gap, 1000, f"failover took {gap:.0f} ms")
        self.assertGreater(len([s for s in samples if s[2] and s[0] > t_fail + 0.5]), 20)
        if how == "link":
            self.c.ns(announcer, "ip", "link", "set", "l0", "up", check=True)
        if how == "frozen":
            self.c.procs[announcer].send_signal(signal.SIGCONT)
            self.c.kill(announcer)
        return gap

    def test_4a_lb_node_failure_agent_killed(self):
        self.failover("kill")

    def test_4b_lb_node_failure_link_cut(self):
        self.failover("link")

    def test_4c_lb_node_failure_agent_frozen(self):
        self.failover("frozen")

    def test_5_a_flow_moved_to_the_other_lb_node_survives(self):
        # DSR: replies bypass the LB, and both nodes pick the same backend.
        self.c.write("dsr.yaml", service_yaml("dsr", ["b1", "b2", "b3", "b4"], mode="dsr",
                                              ip=DSR_VIP))
        self.assertEqual(self.c.vip_of("demo/dsr"), DSR_VIP)
        for n in ("lb1", "lb2"):
            self.c.wait_applied(n, lambda line: "services=2" in line)
        # The client's path is pinned to lb1 first, whoever announces.
        first, other = "lb1", "lb2"
        self.c.ns("client", "ip", "neigh", "replace", DSR_VIP, "lladdr", self.c.mac(first), "dev",
                  "c0", "nud", "permanent", check=True)
        try:
            self.c.start_client("move", "fetch", f"http://{DSR_VIP}/slow/{1 << 20}/40",
                                os.path.join(self.c.tmp, "move.bin"))
            time.sleep(1.2)
            before = self.c.metric(other, 9464, "flowlb_agent_service_packets_total")
            # The client's path changes (as ECMP or an announcer change would do).
            self.c.ns("client", "ip", "neigh", "replace", DSR_VIP, "lladdr", self.c.mac(other),
                      "dev", "c0", "nud", "permanent", check=True)
            rc, out = self.c.client_output("move")
            self.assertEqual(rc, 0, out)
            self.assertEqual(md5(self.downloaded("move")), md5(expected_bytes(1 << 20)))
            after = self.c.metric(other, 9464, "flowlb_agent_service_packets_total")
            self.assertGreater(after - before, 20, "the second node did not carry the flow")
        finally:
            self.c.ns("client", "ip", "neigh", "del", DSR_VIP, "dev", "c0")
            os.remove(os.path.join(self.c.dir, "dsr.yaml"))  # one VIP again for the next ones
            for n in ("lb1", "lb2"):
                self.c.wait_applied(n, lambda line: "services=1" in line)

    def test_6_controller_restart_and_outage(self):
        before = self.c.vip_of("demo/web")
        self.c.kill("controller")
        time.sleep(1.0)
        # Fail static: both agents keep forwarding with their last state.
        counts = self.c.spread(self.vip, 40)
        self.assertEqual(sum(counts.values()), 40)
        for n in ("lb1", "lb2"):
            self.assertIn("event=controller_disconnected", self.c.log(n))
        self.c.start_controller()
        self.c.wait_connected(2)
        self.assertEqual(self.c.vip_of("demo/web"), before)
        time.sleep(0.5)
        counts = self.c.spread(self.vip, 40)
        self.assertEqual(sum(counts.values()), 40)
        self.c.announcer()


class KubernetesSourceTest(unittest.TestCase):
    """The same lab with the controller on the Kubernetes API (the project's
    test server, in the controller's namespace) instead of a directory."""

    def test_7_kubernetes_source_serves_agents(self):
        c = Cluster(BUILD, prefix="flk8")
        try:
            c.up()  # the directory controller first; replaced below
            c.kill("controller")
            objs = [{"resource": "nodes", "object": {
                        "metadata": {"name": n},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}}
                    for n in ("lb1", "lb2")]
            objs.append({"resource": "ippools", "object": {
                "apiVersion": "flowlb.io/v1alpha1", "kind": "IPPool", "metadata": {"name": "lan"},
                "spec": {"addresses": ["10.10.1.110-10.10.1.115"]}}})
            docs = service_yaml("web", ["b1", "b2", "b3"]).split("\n---\n")
            objs.append({"resource": "services", "object": json.loads(docs[0])})
            objs.append({"resource": "endpointslices",
                         "object": json.loads(docs[1])})
            load = os.path.join(c.tmp, "objects.json")
            with open(load, "w") as f:
                json.dump(objs, f)
            with open(os.path.join(c.tmp, "kubeconfig"), "w") as f:
                f.write('current-context: t\ncontexts: [{name: t, context: {cluster: c, user: u}}]\n'
                        'clusters: [{name: c, cluster: {server: "http://127.0.0.1:6443"}}]\n'
                        'users: [{name: u, user: {token: t0k}}]\n')
            c.spawn("apiserver", "ctl", ["python3", os.path.join(HERE, "k8s", "apiserver.py"),
                                         "--port", "6443", "--token", "t0k", "--load", load])
            time.sleep(1.0)
            c.spawn("controller", "ctl", [
                os.path.join(BUILD, "controller", "flowlb-controller"), "--source", "kubernetes",
                "--kubeconfig", os.path.join(c.tmp, "kubeconfig"), "--plaintext",
                "--grpc-address", "10.10.2.5:9443", "--metrics-address", "127.0.0.1:9465",
                "--identity", "ctl-1"])
            c.wait_connected(2, timeout=30)

            def status_ip():
                r = c.ns("ctl", "curl", "-s", "-H", "Authorization: Bearer t0k",
                         "http://127.0.0.1:6443/api/v1/namespaces/demo/services/web",
                         capture_output=True, text=True)
                try:
                    ing = json.loads(r.stdout)["status"]["loadBalancer"]["ingress"]
                    return ing[0]["ip"]
                except (ValueError, KeyError, IndexError, TypeError):
                    return None
            deadline = time.time() + 20
            vip = None
            while not vip and time.time() < deadline:
                vip = status_ip()
                time.sleep(0.2)
            self.assertIsNotNone(vip, c.log("controller")[-2000:])
            self.assertTrue(vip.startswith("10.10.1.11"), vip)
            for n in ("lb1", "lb2"):
                c.wait_applied(n, lambda line: "services=1" in line and "backends=3" in line)
            counts = c.spread(vip, 60)
            self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)
        except Exception:
            for n in ("apiserver", "controller", "lb1", "lb2"):
                print(f"--- {n} (tail) ---\n{c.log(n)[-2000:]}", file=sys.stderr)
            raise
        finally:
            c.down()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    unittest.main(verbosity=2)

"""BGP configured through the Kubernetes API (BGPPeer and BGPAdvertisement),
against BIRD, FRR and GoBGP in turn, in the BGP lab (e2e/lib/bgp_lab.py).

The controller runs as a user runs it, on the Kubernetes API test server
(e2e/k8s/apiserver.py) under the chart's RBAC; the agents run with
--controller-address and no file, and reach the controller through the
router's namespace (a socat relay to the controller's loopback port). For
each router:
  - the sessions use the TCP-MD5 password of a Secret the BGPPeer's
    passwordSecretRef names (the router refuses them otherwise);
  - the router learns the VIP of the pool a BGPAdvertisement selects from
    every node the BGPPeer's nodeSelector picks, with the advertisement's
    community, and not the VIP of a pool no advertisement selects;
  - the BGPPeer's status shows each node's session Established with its
    route, and a Normal SessionEstablished Event per node;
  - the router stops: the status shows every node's session down, with a
    Warning SessionDown Event per node; it returns and they are Established
    again;
  - a nodeSelector change withdraws two nodes, and the status lists one.
Needs root.

    python3 -m unittest e2e.test_bgp_crd
"""
import base64
import os
import signal
import unittest

from e2e.k8s import chart_rbac
from e2e.k8s.apiserver import ApiServer
from e2e.lib import prom
from e2e.lib.bgp_lab import BACKENDS, METRICS, ROUTER, BgpLab, node_addr
from e2e.lib.bgp_routers import LB_AS, ROUTER_AS
from e2e.lib.paths import agent_binary, build_dir
from e2e.lib.proc import CommandFailed, free_port, in_ns, lab_prefix, nsenter
from e2e.lib.wait import wait_until
from e2e.test_controller_k8s import Controller, node, pool, service, slice_

BGP_VIP, L2_VIP = "10.30.100.10", "10.30.101.10"
GRPC_PORT = 19443


PASSWORD = "crd-md5-secret"  # TCP-MD5, from a Secret through passwordSecretRef


def peer(racks=None):
    return {"apiVersion": "flowlb.io/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "rt"},
            "spec": {"peerAddress": ROUTER, "peerASN": ROUTER_AS, "myASN": LB_AS,
                     "holdTimeSeconds": 9, "passwordSecretRef": {"name": "rt-md5"},
                     "nodeSelector": {"matchLabels": {"rack": racks} if racks else {}}}}


@unittest.skipIf(os.geteuid() != 0, "the BGP lab needs root")
class BgpFromCrdsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = BgpLab(lab_prefix("flbcr"))  # its own prefix: runs beside e2e_bgp
        cls.lab.up()
        cls.addClassCleanup(cls.lab.down)
        cls.server = ApiServer(bookmark_interval=0.5, tokens=("tok-a",)).start()
        cls.addClassCleanup(cls.server.stop)
        chart_rbac.load(cls.server, "default", None)
        token = cls.server.issue_token(chart_rbac.NAMESPACE, chart_rbac.CONTROLLER_SA)
        cls.addClassCleanup(chart_rbac.record_usage, cls.server, build_dir(), "bgp_crd")
        s = cls.server
        for i in (1, 2, 3):
            n = node(f"lb{i}")
            n["metadata"]["labels"] = {"rack": f"r{i}"}
            s.create("nodes", n)
        s.create("ippools", pool("bgp", ["10.30.100.0/24"]))
        s.create("ippools", pool("l2", ["10.30.101.0/24"]))
        eps = [(a, f"lb{k}", True, True, False) for k, a in enumerate(BACKENDS, 1)]
        for name, vip, p in (("web", BGP_VIP, "bgp"), ("lan", L2_VIP, "l2")):
            s.create("services", service(name, ns="lab", lb_ip=vip,
                                         annotations={"flowlb.io/pool": p}))
            s.create("endpointslices", slice_(name, ns="lab", endpoints=eps, port=80))
        s.create("secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": "rt-md5", "namespace": chart_rbac.NAMESPACE},
            "data": {"password": base64.b64encode(PASSWORD.encode()).decode()}})
        s.create("bgppeers", peer())
        s.create("bgpadvertisements", {
            "apiVersion": "flowlb.io/v1alpha1", "kind": "BGPAdvertisement",
            "metadata": {"name": "web"},
            "spec": {"ipPools": ["bgp"], "communities": [f"{ROUTER_AS}:77"]}})
        grpc = free_port()
        cls.controller = Controller(s, cls.lab.tmp, token=token, grpc=f"127.0.0.1:{grpc}")
        cls.addClassCleanup(cls.controller.stop, signal.SIGKILL)
        # The agents reach the controller at the router's address: each
        # connection is relayed into this namespace's loopback.
        cls.lab.procs.start("relay", in_ns(
            cls.lab.ns_name("rt"), "socat", f"TCP-LISTEN:{GRPC_PORT},bind={ROUTER},fork,reuseaddr",
            # (socat's address syntax: the inner colons escaped)
            f"EXEC:nsenter --net=/proc/{os.getpid()}/ns/net socat STDIO TCP\\:127.0.0.1\\:{grpc}"))
        for i in (1, 2, 3):
            cls.lab.procs.start(f"agent{i}", nsenter(
                cls.lab.ns_name(f"lb{i}"), agent_binary(), "--interface", "l0", "--interface",
                "l1", "--controller-address", f"{ROUTER}:{GRPC_PORT}", "--plaintext",
                "--metrics-address", METRICS, "--node-name", f"lb{i}", "--node-ip", node_addr(i),
                "--conntrack-entries", "65536"))

    def context(self):
        return "\n".join(f"--- agent{i}\n" + self.lab.log(i)[-1500:] for i in (1, 2, 3)) + \
            "\n--- controller\n" + self.controller.output()[-3000:] + \
            f"\n--- BGPPeer status\n{self.status()}"

    def status(self):
        return (self.server.get("bgppeers", None, "rt") or {}).get("status", {})

    def states(self):
        return {n["name"]: n["sessionState"] for n in self.status().get("nodes") or []}

    def events(self, reason):
        return [e for e in self.server.list("events")
                if e["involvedObject"].get("kind") == "BGPPeer"
                and e["involvedObject"]["name"] == "rt" and e["reason"] == reason]

    def counts(self, reason):
        """node -> how often the Event for it was posted (its count)."""
        return {e["message"].split(":")[0].removeprefix("node "): e.get("count", 1)
                for e in self.events(reason)}

    def set_racks(self, racks):
        obj = self.server.get("bgppeers", None, "rt")
        obj["spec"] = peer(racks)["spec"]
        self.server.update("bgppeers", obj)

    def scenario(self, kind):
        lab, all3 = self.lab, {f"lb{i}" for i in (1, 2, 3)}
        self.set_racks(None)
        before_up = self.counts("SessionEstablished")
        before_down = self.counts("SessionDown")
        md5 = {i: PASSWORD for i in (1, 2, 3)}  # the router insists on it
        lab.start_router(kind, bfd=False, gr=False, passwords=md5)
        self.addCleanup(lab.stop_router)
        wait_until(lambda: lab.next_hops(BGP_VIP) == {node_addr(i) for i in (1, 2, 3)}, 60,
                   f"{kind}: {BGP_VIP} via all three nodes (BGPPeer for every node)",
                   ignore=(CommandFailed,), context=self.context)
        if kind == "bird":
            routes = lab.router.run("birdc", "-s", lab.router.ctl, "show", "route", "all",
                                    f"{BGP_VIP}/32", check=False)
            self.assertIn(f"({ROUTER_AS},77)", routes, "the BGPAdvertisement's community")
        self.assertEqual(lab.next_hops(L2_VIP), set(), "a pool no BGPAdvertisement selects")

        # The status: every node Established, with its one route.
        wait_until(lambda: self.states() == {n: "Established" for n in all3}
                   and self.status().get("establishedNodes") == 3, 30,
                   "BGPPeer status: three nodes Established", context=self.context)
        for n in self.status()["nodes"]:
            self.assertEqual(n["routesAdvertised"], 1, n)
            self.assertNotIn("bfdState", n, "no BFD profile on this peer")
        wait_until(lambda: all(self.counts("SessionEstablished").get(n, 0) > before_up.get(n, 0)
                               for n in all3), 30,
                   "a SessionEstablished Event per node", context=self.context)
        wait_until(lambda: prom.value(self.controller.metrics(), "flowlb_controller_bgp_sessions",
                                      state="Established") == 3, 30,
                   "flowlb_controller_bgp_sessions{state=Established} 3",
                   ignore=(prom.MetricAbsent,), context=self.context)

        # The router goes away: every session is down, one Warning per node.
        lab.stop_router()
        wait_until(lambda: self.states() and all(s != "Established"
                                                  for s in self.states().values())
                   and self.status().get("establishedNodes") == 0, 30,
                   "BGPPeer status: no node Established", context=self.context)
        wait_until(lambda: all(self.counts("SessionDown").get(n, 0) > before_down.get(n, 0)
                               for n in all3), 30,
                   "a SessionDown Warning per node", context=self.context)
        for e in self.events("SessionDown"):
            self.assertEqual(e["type"], "Warning")
            self.assertEqual(e["metadata"]["namespace"], "default")
        self.assertTrue(any(n.get("lastError") for n in self.status()["nodes"]),
                        f"the status says why: {self.status()}")
        lab.start_router(kind, bfd=False, gr=False, passwords=md5)
        wait_until(lambda: self.states() == {n: "Established" for n in all3}, 60,
                   f"{kind} back: three nodes Established", context=self.context)

        # The peer now selects rack r1 only: lb2 and lb3 close their sessions.
        self.set_racks("r1")
        wait_until(lambda: lab.next_hops(BGP_VIP) == {node_addr(1)}, 60,
                   f"{kind}: {BGP_VIP} via lb1 only", ignore=(CommandFailed,),
                   context=self.context)
        wait_until(lambda: self.states() == {"lb1": "Established"}, 30,
                   "BGPPeer status: lb1 only", context=self.context)

    def test_bird(self):
        self.scenario("bird")

    def test_frr(self):
        self.scenario("frr")

    def test_gobgp(self):
        self.scenario("gobgp")


if __name__ == "__main__":
    unittest.main()

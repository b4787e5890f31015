"""BGP configured through the controller (BGPPeer and BGPAdvertisement),
against BIRD, in the BGP lab (e2e/lib/bgp_lab.py).

The controller runs on the standalone directory source (the same decoder
as the Kubernetes API's) in the router's namespace, where every LB node
reaches it; the agents run with --controller-address and no file. The
router must learn the VIP of the pool a BGPAdvertisement selects from
every node the BGPPeer's nodeSelector picks, with the advertisement's
community, and must not learn the VIP of a pool no advertisement selects.
A nodeSelector change withdraws a node. Needs root.

    python3 -m unittest e2e.test_bgp_crd
"""
import os
import unittest

from e2e.lib.bgp_lab import BACKENDS, METRICS, ROUTER, BgpLab, node_addr
from e2e.lib.bgp_routers import LB_AS, ROUTER_AS
from e2e.lib.paths import agent_binary, controller_binary
from e2e.lib.proc import CommandFailed, in_ns, lab_prefix, nsenter
from e2e.lib.wait import wait_until

BGP_VIP, L2_VIP = "10.30.100.10", "10.30.101.10"
GRPC = f"{ROUTER}:19443"


def objects(selector_racks):
    nodes = "\n".join(f"""---
apiVersion: v1
kind: Node
metadata: {{name: lb{i}, labels: {{rack: r{i}}}}}""" for i in (1, 2, 3))
    eps = "\n".join(f"""    - {{addresses: ["{a}"], nodeName: lb{k}, conditions: {{ready: true}}}}"""
                    for k, a in enumerate(BACKENDS, 1))

    def service(name, vip, pool):
        return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: lab, annotations: {{flowlb.io/pool: {pool}}}}}
spec:
  type: LoadBalancer
  loadBalancerClass: flowlb.io/lb
  loadBalancerIP: {vip}
  ports: [{{name: http, port: 80, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: lab, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: 80, protocol: TCP}}]
endpoints:
{eps}"""
    return f"""{nodes}
---
apiVersion: flowlb.io/v1alpha1
kind: IPPool
metadata: {{name: bgp}}
spec: {{addresses: [10.30.100.0/24]}}
---
apiVersion: flowlb.io/v1alpha1
kind: IPPool
metadata: {{name: l2}}
spec: {{addresses: [10.30.101.0/24]}}
{service("web", BGP_VIP, "bgp")}
{service("lan", L2_VIP, "l2")}
---
apiVersion: flowlb.io/v1alpha1
kind: BGPPeer
metadata: {{name: rt}}
spec:
  peerAddress: {ROUTER}
  peerASN: {ROUTER_AS}
  myASN: {LB_AS}
  holdTimeSeconds: 9
  nodeSelector:
    matchExpressions: []
---
apiVersion: flowlb.io/v1alpha1
kind: BGPAdvertisement
metadata: {{name: web}}
spec:
  ipPools: [bgp]
  communities: ["{ROUTER_AS}:77"]
""".replace("    matchExpressions: []", "    matchLabels: {rack: " + selector_racks + "}"
            if selector_racks else "    matchLabels: {}")


@unittest.skipIf(os.geteuid() != 0, "the BGP lab needs root")
class BgpFromCrdsBirdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = BgpLab(lab_prefix("flbcr"))  # its own prefix: runs beside e2e_bgp
        cls.lab.up()
        cls.addClassCleanup(cls.lab.down)
        cls.dir = os.path.join(cls.lab.tmp, "objects")
        os.makedirs(cls.dir)
        cls.write(None)
        cls.lab.start_router("bird", bfd=False, gr=False)
        cls.lab.procs.start("controller", in_ns(
            cls.lab.ns_name("rt"), controller_binary(), "--source", f"dir:{cls.dir}",
            "--status-file", os.path.join(cls.lab.tmp, "status.yaml"), "--plaintext",
            "--grpc-address", GRPC, "--metrics-address", "127.0.0.1:19491", "--dump-state"))
        for i in (1, 2, 3):
            cls.lab.procs.start(f"agent{i}", nsenter(
                cls.lab.ns_name(f"lb{i}"), agent_binary(), "--interface", "l0", "--interface",
                "l1", "--controller-address", GRPC, "--plaintext", "--metrics-address", METRICS,
                "--node-name", f"lb{i}", "--node-ip", node_addr(i), "--conntrack-entries",
                "65536"))

    @classmethod
    def write(cls, racks):
        tmp = os.path.join(cls.lab.tmp, "cluster.yaml.new")
        with open(tmp, "w") as f:
            f.write(objects(racks))
        os.replace(tmp, os.path.join(cls.dir, "cluster.yaml"))

    def context(self):
        return "\n".join(f"--- agent{i}\n" + self.lab.log(i)[-1500:] for i in (1, 2, 3)) + \
            "\n--- controller\n" + self.lab.procs.log("controller")[-3000:]

    def test_the_advertised_pool_is_learned_from_the_selected_nodes_only(self):
        lab = self.lab
        wait_until(lambda: lab.next_hops(BGP_VIP) == {node_addr(i) for i in (1, 2, 3)}, 60,
                   f"bird: {BGP_VIP} via all three nodes (BGPPeer for every node)",
                   ignore=(CommandFailed,), context=self.context)
        routes = lab.router.run("birdc", "-s", lab.router.ctl, "show", "route", "all",
                                f"{BGP_VIP}/32", check=False)
        self.assertIn(f"({ROUTER_AS},77)", routes, "the BGPAdvertisement's community")
        self.assertEqual(lab.next_hops(L2_VIP), set(), "a pool no BGPAdvertisement selects")
        # The peer now selects rack r1 only: lb2 and lb3 close their sessions.
        self.write("r1")
        wait_until(lambda: lab.next_hops(BGP_VIP) == {node_addr(1)}, 60,
                   f"bird: {BGP_VIP} via lb1 only", ignore=(CommandFailed,),
                   context=self.context)


if __name__ == "__main__":
    unittest.main()

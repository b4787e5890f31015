"""BGP announcement against real routers (issue 12), in the BGP lab
(e2e/lib/bgp_lab.py): BIRD 2, FRR and GoBGP from Debian, one after another,
each the peer of two or three LB nodes running flowlb-agent.

Each class runs the scenarios against one router. The state every test
starts from (setUp): the router up with BFD (where it has BFD) and its
graceful-restart helper; agents lb1 and lb2 up on the default file (BFD,
no graceful restart), both sessions Established in the router's CLI and
the VIPs in its kernel via both nodes; lb3 stopped.

Run one router: python3 -m unittest e2e.test_bgp.BirdTest
"""
import os
import signal
import threading
import time
import unittest

from e2e.lib.bgp_lab import (BgpLab, DSR_VIP, GARBAGE_PEER, LOCAL_VIP, NAT_VIP, NAT_VIP6,
                             node_addr)
from e2e.lib import prom
from e2e.lib.content import expected_md5, md5_file
from e2e.lib.proc import in_ns, module
from e2e.lib.wait import wait_until

DOWNLOAD = 3_000_000  # bytes, sent in 16 KiB pieces 40 ms apart: about 7 s


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest("the BGP lab needs root")


class BgpScenarios:
    KIND = None
    lab = None

    @classmethod
    def setUpClass(cls):
        cls.lab = BgpLab()
        try:
            cls.lab.up()
            cls.lab.start_router(cls.KIND)
        except Exception:
            cls.lab.down()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.down()

    def setUp(self):
        lab = self.lab
        lab.ns("swl", "ip", "link", "set", "lb2-l0", "up", check=False)
        if lab.router_kw != dict(kind=self.KIND, bfd=True, gr=True, passwords={}):
            lab.start_router(self.KIND)
        lab.ensure_agents([1, 2])
        lab.wait_established([1, 2])
        lab.wait_next_hops(NAT_VIP, [1, 2])

    def tearDown(self):
        self.lab.procs.stop("junk-peer")
        for name in self.lab.procs.names():
            if name.startswith("client"):
                self.lab.procs.kill(name)

    # -- helpers -----------------------------------------------------------
    def flows(self, i, service):
        """Flows node i balanced for `service` so far (0 before the first)."""
        try:
            return self.lab.metric(i, "flowlb_agent_service_new_flows_total", service=service)
        except prom.MetricAbsent:
            return 0

    def shares(self, service, before, total):
        """New flows per node since `before`, once the agents' metrics (updated
        every second) account for 90 % of `total` connections (a client port
        reused within the conntrack timeout is not a new flow)."""
        share = {}

        def counted():
            share.update({i: self.flows(i, service) - before[i] for i in before})
            return sum(share.values()) >= 0.9 * total
        wait_until(counted, 10, f"{total} flows of {service} counted",
                   context=lambda: f"per node: {share}")
        return share

    def start_downloads(self, vip, n, tag):
        names = []
        for k in range(n):
            name = f"client-{tag}{k}"
            out = os.path.join(self.lab.tmp, name + ".out")
            self.lab.start_client(name, "fetch", f"http://{vip}/slow/{DOWNLOAD}/40", out)
            names.append((name, out))
        for name, _ in names:  # each flow established: its backend printed
            self.assertTrue(self.lab.procs.first_line(name, 15), f"{name} reached no backend")
        return names

    def finish_downloads(self, names):
        ok = 0
        for name, out in names:
            code, _ = self.lab.procs.communicate(name, 90)
            if code == 0 and os.path.exists(out) and md5_file(out) == expected_md5(DOWNLOAD):
                ok += 1
        return ok

    # -- scenario 1 --------------------------------------------------------
    def test_1_vip_learned_from_every_node_and_connections_spread(self):
        lab = self.lab
        for vip in (NAT_VIP, DSR_VIP):
            lab.wait_next_hops(vip, [1, 2])
        before = {i: self.flows(i, "lab/nat") for i in (1, 2)}
        counts = eval(lab.client("spread", f"http://{NAT_VIP}/id", "300"))  # {"b1": n, ...}
        self.assertEqual(sum(counts.values()), 300)
        for b in ("b1", "b2", "b3"):
            self.assertGreater(counts.get(b, 0), 50, f"backend {b}: {counts}")
        share = self.shares("lab/nat", before, 300)
        for i in (1, 2):
            self.assertGreater(share[i], 60, f"LB node lb{i} carried {share}")

    # -- scenario 2 --------------------------------------------------------
    def test_2_ipv6_vip_over_an_ipv6_session(self):
        lab = self.lab
        lab.wait_established([1, 2], v6=True)
        lab.wait_next_hops(NAT_VIP6, [1, 2], v6=True)
        before = {i: self.flows(i, "lab/nat6") for i in (1, 2)}
        counts = eval(lab.client("spread", f"http://[{NAT_VIP6}]/id", "100"))
        self.assertEqual(sum(counts.values()), 100)
        self.assertEqual(set(counts), {"b1", "b2", "b3"})
        share = self.shares("lab/nat6", before, 100)
        for i in (1, 2):
            self.assertGreater(share[i], 10, f"LB node lb{i} carried {share}")

    # -- scenario 3 --------------------------------------------------------
    def test_3_ecmp_moves_keep_dsr_flows_on_their_backend(self):
        lab = self.lab
        before = {i: self.flows(i, "lab/dsr") for i in (1, 2)}
        dsr = self.start_downloads(DSR_VIP, 10, "dsr")
        nat = self.start_downloads(NAT_VIP, 6, "nat")
        # The agents' counters are refreshed about once a second: wait until
        # they have counted every download before reading where each went.
        spread = wait_until(lambda: (lambda s: s if sum(s.values()) >= len(dsr) else None)(
            {i: self.flows(i, "lab/dsr") - before[i] for i in (1, 2)}), 10,
            "both LB nodes' counters to include every DSR download")
        self.assertTrue(all(v > 0 for v in spread.values()), f"DSR flows per node: {spread}")
        # The router's next-hop set changes under the flows: lb2 withdrawn,
        # lb3 added (which rehashes some of lb1's flows too).
        lab.stop_agent(2)
        lab.wait_next_hops(DSR_VIP, [1], timeout=10)
        lab.start_agent(3)
        lab.wait_established([3])
        lab.wait_next_hops(DSR_VIP, [1, 3], timeout=15)
        dsr_ok = self.finish_downloads(dsr)
        nat_ok = self.finish_downloads(nat)
        print(f"\n  {self.KIND}: DSR {dsr_ok}/{len(dsr)} byte-identical, "
              f"NAT {nat_ok}/{len(nat)} (NAT flows moved to another node lose their SNAT state)")
        self.assertEqual(dsr_ok, len(dsr), "a DSR download broke when ECMP moved it")

    # -- scenario 4 --------------------------------------------------------
    def test_4_node_failure_is_withdrawn_fast(self):
        lab = self.lab
        if lab.router.has_bfd:
            wait_until(lambda: lab.metric(2, "flowlb_agent_bfd_session_up", peer="rt") == 1, 20,
                       "BFD up on lb2", ignore=(Exception,))
            # ... and on the router: a cut before it saw the session Up is
            # left to the hold time (FRR's bgpd reacts to Up -> Down only).
            wait_until(lambda: lab.router.bfd_up(node_addr(2)), 20, "BFD up on the router for lb2",
                       context=lambda: lab.router.describe(node_addr(2))[-1500:])
            ceiling = 1.5  # BFD 100 ms x 3: the figure is in bench (bgp_failover_ms)
        else:
            for i in (1, 2):  # no BFD: the hold time decides (3 s)
                lab.apply(i, hold=3)
            lab.wait_established([1, 2])
            lab.wait_next_hops(NAT_VIP, [1, 2])
            ceiling = 6.0
        # Cut lb2's link at the switch: nothing tells the router but BFD/hold.
        t0 = time.monotonic()
        lab.ns("swl", "ip", "link", "set", "lb2-l0", "down")
        lab.wait_next_hops(NAT_VIP, [1], timeout=ceiling + 30)
        gap = time.monotonic() - t0
        print(f"\n  {self.KIND}: link cut withdrawn after {gap * 1000:.0f} ms "
              f"({'BFD' if lab.router.has_bfd else 'hold time 3 s'})")
        self.assertLessEqual(gap, ceiling)
        lab.ns("swl", "ip", "link", "set", "lb2-l0", "up")
        lab.wait_established([2], timeout=40)
        lab.wait_next_hops(NAT_VIP, [1, 2])
        # A killed agent: its TCP connection closes, the router withdraws at once.
        t0 = time.monotonic()
        lab.stop_agent(2, signal.SIGKILL)
        lab.wait_next_hops(NAT_VIP, [1], timeout=ceiling + 5)
        print(f"  {self.KIND}: killed agent withdrawn after {(time.monotonic() - t0) * 1000:.0f} ms")

    # -- scenario 5 --------------------------------------------------------
    def test_5_graceful_restart_keeps_routes_and_connections(self):
        lab = self.lab
        # BFD would see the agent go and withdraw: graceful restart without it.
        lab.start_router(self.KIND, bfd=False, gr=True)
        lab.ensure_agents([1, 2], gr=True)
        lab.wait_established([1, 2])
        lab.wait_next_hops(DSR_VIP, [1, 2])
        downloads = self.start_downloads(DSR_VIP, 6, "gr")
        left = []
        stop = threading.Event()

        def watch():  # the router must keep lb1's route through the restart
            while not stop.is_set():
                hops = lab.next_hops(DSR_VIP)
                if node_addr(1) not in hops:
                    left.append(hops)
                stop.wait(0.02)
        watcher = threading.Thread(target=watch)
        watcher.start()
        # New connections all along (TCP retransmits a SYN that meets the
        # restarting node; none may fail).
        conns = lab.procs.start("client-spread", in_ns(lab.ns_name("client"), *module(
            "e2e.lab.bgp_client", f"http://{DSR_VIP}/id", "150", "20")))
        try:
            mark = lab.procs.mark("agent1")
            t0 = time.monotonic()
            lab.stop_agent(1)
            self.assertIn("mode=graceful_restart", lab.procs.log_since("agent1", mark))
            lab.start_agent(1, gr=True)
            print(f"\n  {self.KIND}: agent restarted in {(time.monotonic() - t0) * 1000:.0f} ms")
            lab.wait_established([1])
            self.assertEqual(lab.procs.wait("client-spread", 60), 0,
                             "a connection failed: " + lab.procs.log("client-spread")[-1500:])
        finally:
            stop.set()
            watcher.join()
        self.assertEqual(left, [], "the router dropped lb1's route during the restart")
        self.assertEqual(self.finish_downloads(downloads), len(downloads))
        del conns

    # -- scenario 6 --------------------------------------------------------
    def test_6_wrong_asn_and_md5_mismatch_are_clear_errors_others_unaffected(self):
        lab = self.lab
        mark = lab.start_agent(3, peer_as=65099)
        wait_until(lambda: 'msg="OPEN Message Error / Bad Peer AS"' in
                   lab.procs.log_since("agent3", mark), 20, "lb3 refusing the router's AS",
                   context=lambda: lab.procs.log_since("agent3", mark)[-2000:])
        self.assertIn("peer AS 65000, configured 65099", lab.procs.log_since("agent3", mark))
        wait_until(lambda: lab.metric(3, "flowlb_agent_bgp_notifications_total", peer="rt",
                                      direction="sent") > 0, 10, "the NOTIFICATION counted",
                   ignore=(prom.MetricAbsent,))
        self.assertFalse(lab.established(3))
        self.assertTrue(lab.established(1) and lab.established(2))
        self.assertEqual(lab.next_hops(NAT_VIP), {node_addr(1), node_addr(2)})
        lab.stop_agent(3)
        # TCP-MD5: the router wants a password from lb3.
        lab.start_router(self.KIND, passwords={3: "s3cret"})
        lab.wait_established([1, 2])
        mark = lab.start_agent(3, password="wrong")
        wait_until(lambda: "event=bgp_connect_failed peer=rt" in lab.procs.log_since("agent3", mark),
                   20, "lb3 reporting its failed connection",
                   context=lambda: lab.procs.log_since("agent3", mark)[-2000:])
        self.assertFalse(lab.established(3))
        lab.apply(3, password="s3cret")
        lab.wait_established([3])
        lab.wait_next_hops(NAT_VIP, [1, 2, 3])
        self.assertTrue(lab.established(1) and lab.established(2))

    # -- scenario 7 --------------------------------------------------------
    def test_7_local_policy_only_nodes_with_a_local_endpoint_advertise(self):
        lab = self.lab
        lab.ensure_agents([1, 2, 3])
        lab.wait_established([3])
        lab.wait_next_hops(NAT_VIP, [1, 2, 3])
        lab.wait_next_hops(LOCAL_VIP, [1, 2])  # b1 runs on lb1, b2 on lb2, none on lb3
        for i in (1, 2, 3):  # b2 goes: lb2's last local endpoint
            lab.apply(i, local_backends=("b1",))
        lab.wait_next_hops(LOCAL_VIP, [1])
        self.assertEqual(lab.next_hops(NAT_VIP), {node_addr(i) for i in (1, 2, 3)})
        self.assertEqual(lab.client("spread", f"http://{LOCAL_VIP}/id", "20"), '{"b1": 20}')


class BirdTest(BgpScenarios, unittest.TestCase):
    KIND = "bird"

    def test_6b_a_peer_that_sends_garbage(self):
        """Router-independent: a second peer of lb1 that answers with junk."""
        lab = self.lab
        lab.procs.start("junk-peer", in_ns(lab.ns_name("client"), *module("e2e.lab.junk_peer",
                                                                          GARBAGE_PEER)))
        mark = lab.procs.mark("agent1")
        lab.apply(1, garbage_peer=True)
        wait_until(lambda: 'peer=junk msg="Message Header Error / Connection Not Synchronized"' in
                   lab.procs.log_since("agent1", mark), 20, "lb1 refusing the junk",
                   context=lambda: lab.procs.log_since("agent1", mark)[-2000:])
        self.assertTrue(lab.established(1))
        self.assertEqual(lab.metric(1, "flowlb_agent_bgp_session_up", peer="rt"), 1)
        self.assertEqual(lab.next_hops(NAT_VIP), {node_addr(1), node_addr(2)})


class FrrTest(BgpScenarios, unittest.TestCase):
    KIND = "frr"


class GobgpTest(BgpScenarios, unittest.TestCase):
    KIND = "gobgp"


if __name__ == "__main__":
    unittest.main()

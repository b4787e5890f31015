"""End-to-end tests of the agent's AF_XDP datapath in the namespace lab.

A client, one LB node running flowlb-agent on both of its interfaces, and
three backends (e2e/lab/lab.sh, driven by e2e.lib.datapath_lab). Real TCP and
UDP through the VIPs, in NAT and DSR mode. Needs root.

The lab is shared by the class; every test starts from the agent running the
full configuration (setUp brings it back if a test changed or stopped it), so
each test runs alone and in any order:

    python3 -m unittest e2e.test_datapath.DatapathTest.test_udp_request_response_nat_and_dsr
"""
import json
import os
import re
import signal
import subprocess
import unittest

from e2e.lib.content import expected_md5, md5_file
from e2e.lib.datapath_lab import (BACKENDS, DSR_VIP, L2_VIP, L2_VIP6, NAT_VIP, NAT_VIP6,
                                  DatapathLab)
from e2e.lib.labtest import LabTest
from e2e.lib.outcome import test_failed
from e2e.lib.proc import CommandFailed, in_ns, run
from e2e.lib.wait import wait_until

DROP_REASONS = ["bad_ip_total_length", "truncated_l4", "truncated_l3", "bad_ip_header_length"]


class DatapathTest(LabTest):
    @classmethod
    def make_lab(cls):
        return DatapathLab()

    def setUp(self):
        self.lab.ensure()  # the agent running, with the full configuration applied

    def tearDown(self):
        self.lab.stop_clients()
        if test_failed(self):
            print(f"--- agent log (tail) ---\n{self.lab.log()[-3000:]}")

    def out(self, name):
        return os.path.join(self.lab.tmp, name)

    def test_http_1mb_through_nat_vip_is_byte_identical(self):
        self.lab.client("fetch", f"http://{NAT_VIP}/bytes/1048576", self.out("nat.bin"))
        self.assertEqual(md5_file(self.out("nat.bin")), expected_md5(1048576))

    def test_http_1mb_through_dsr_vip_is_byte_identical(self):
        self.lab.client("fetch", f"http://{DSR_VIP}/bytes/1048576", self.out("dsr.bin"))
        self.assertEqual(md5_file(self.out("dsr.bin")), expected_md5(1048576))

    def test_udp_request_response_nat_and_dsr(self):
        for vip in (NAT_VIP, DSR_VIP):
            reply = self.lab.client("udp", vip, "53", "hello-" + vip)
            self.assertRegex(reply, r"^b[123] hello-" + re.escape(vip) + "$")

    def test_ipv6_tcp_and_udp_through_a_nat_vip(self):
        self.lab.client("fetch", f"http://[{NAT_VIP6}]/bytes/1048576", self.out("nat6.bin"))
        self.assertEqual(md5_file(self.out("nat6.bin")), expected_md5(1048576))
        counts = json.loads(self.lab.client("spread", f"http://[{NAT_VIP6}]/id", "30"))
        self.assertEqual(sum(counts.values()), 30)
        self.assertGreater(len(counts), 1, counts)
        self.assertRegex(self.lab.client("udp", NAT_VIP6, "53", "hello6"), r"^b[123] hello6$")

    def test_vips_on_the_client_subnet_are_announced_with_arp_and_ndp(self):
        lb_mac = self.lab.lb_mac()
        for vip, url in ((L2_VIP, f"http://{L2_VIP}/id"), (L2_VIP6, f"http://[{L2_VIP6}]/id")):
            self.assertRegex(self.lab.client("spread", url, "3"), r"b[123]", vip)
            neigh = self.lab.ns("client", "ip", "neigh", "show", vip)
            self.assertIn(lb_mac, neigh, f"{vip} should resolve to the LB's MAC: {neigh}")
        for kind in ("arp_reply", "na_reply", "gratuitous"):
            self.assertGreater(self.lab.wait_metric("flowlb_agent_l2_announcements_total",
                                                    lambda v: v > 0, kind=kind), 0, kind)

    def test_300_connections_spread_over_three_backends(self):
        counts = json.loads(self.lab.client("spread", f"http://{NAT_VIP}/id", "300", timeout=120))
        self.assertEqual(sum(counts.values()), 300)
        self.assertEqual(set(counts), {"b1", "b2", "b3"})
        for b, n in counts.items():
            self.assertLessEqual(abs(n - 100), 30, f"{b} got {n} of 300: {counts}")
        dsr = json.loads(self.lab.client("spread", f"http://{DSR_VIP}/id", "60", timeout=120))
        self.assertEqual(set(dsr), {"b1", "b2", "b3"})

    def test_traffic_not_for_a_vip_is_untouched(self):
        self.lab.ns("client", "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.10.1.1")
        self.lab.procs.start("http-on-lb", in_ns(self.lab.ns_name("lb"), "python3", "-m",
                                                 "http.server", "8081", "--bind", "10.10.1.1"))

        def status():
            return run(in_ns(self.lab.ns_name("client"), "curl", "-s", "-o", "/dev/null", "-w",
                             "%{http_code}", "-m", "2", "http://10.10.1.1:8081/"), check=False)
        self.assertEqual(wait_until(lambda: status() == "200" and "200", 10,
                                    "the LB node's own HTTP server answering the client"), "200")

    def test_removing_a_backend_keeps_the_others_flows_and_avoids_it(self):
        # Long downloads over different client ports, via NAT; each has started
        # (its header names the backend) before the backend set changes.
        who = {}
        for i in range(6):
            name = f"slow{i}"
            self.lab.start_client(name, "fetch", f"http://{NAT_VIP}/slow/1048576/40", self.out(name))
            who[name] = self.lab.header(name)
        self.lab.apply(backends=BACKENDS[1:])
        counts = json.loads(self.lab.client("spread", f"http://{NAT_VIP}/id", "30"))
        self.assertNotIn("b1", counts, counts)
        survivors = 0
        for name, backend in who.items():
            rc, _ = self.lab.finish(name)
            if backend != "b1":  # flows of the removed backend cannot be kept
                self.assertEqual(rc, 0, f"download from {backend} broke")
                self.assertEqual(md5_file(self.out(name)), expected_md5(1048576))
                survivors += 1
        self.assertGreater(survivors, 0)

    def test_a_draining_backend_keeps_its_flows_and_gets_no_new_ones(self):
        # Long downloads until at least one runs through b1 (the header names
        # the backend before the body starts).
        who = {}
        for i in range(30):
            name = f"drain{i}"
            self.lab.start_client(name, "fetch", f"http://{NAT_VIP}/slow/1048576/40", self.out(name))
            who[name] = self.lab.header(name)
            if "b1" in who.values() and len(who) >= 3:
                break
        self.assertIn("b1", who.values())
        self.lab.apply(draining={BACKENDS[0]})
        counts = json.loads(self.lab.client("spread", f"http://{NAT_VIP}/id", "30"))
        self.assertNotIn("b1", counts, counts)
        for name, backend in who.items():
            rc, _ = self.lab.finish(name)
            self.assertEqual(rc, 0, f"download from {backend} broke while draining")
            self.assertEqual(md5_file(self.out(name)), expected_md5(1048576),
                             f"download from {backend}")

    def test_agent_restart_keeps_a_dsr_download_because_maglev_picks_the_same_backend(self):
        out = self.out("restart.bin")
        self.lab.start_client("restart", "fetch", f"http://{DSR_VIP}/slow/2097152/25", out)
        self.lab.header("restart")
        wait_until(lambda: os.path.exists(out) and os.path.getsize(out) > 0, 10,
                   "the first bytes of the download")
        self.lab.stop_agent()
        self.lab.start_agent()  # a new process: empty conntrack, same tables
        self.assertLess(os.path.getsize(out), 2097152,
                        "the download ended before the agent was back: nothing crossed the restart")
        rc, _ = self.lab.finish("restart", timeout=120)
        self.assertEqual(rc, 0)
        self.assertEqual(md5_file(out), expected_md5(2097152))

    def test_malformed_frames_are_dropped_and_counted_and_forwarding_goes_on(self):
        def drops():
            return sum(self.lab.metric("flowlb_agent_datapath_drops_total", reason=r)
                       for r in DROP_REASONS)
        before = drops()
        sent = int(self.lab.client("raw", "c0", self.lab.lb_mac()))
        wait_until(lambda: drops() >= before + sent, 5, f"{sent} malformed frames counted",
                   ignore=(CommandFailed,))
        self.assertEqual(drops() - before, sent)
        self.assertRegex(self.lab.client("spread", f"http://{NAT_VIP}/id", "3"), r"b[123]")

    def test_frames_are_recycled_without_leaks(self):
        self.lab.client("spread", f"http://{NAT_VIP}/id", "20")
        # The workers' UMEM as the metrics report it (refreshed every second).
        total = self.lab.wait_metric("flowlb_agent_xsk_frames", lambda v: v > 0, state="total")
        free = self.lab.wait_metric("flowlb_agent_xsk_frames", lambda v: v == total, timeout=5,
                                    state="free")
        self.assertGreater(total, 0)
        self.assertEqual(free, total)
        self.assertGreater(self.lab.wait_metric("flowlb_agent_service_packets_total",
                                                lambda v: v > 0, service="lab/nat-http"), 0)

    def test_a_stale_program_left_by_a_crash_is_replaced(self):
        self.lab.stop_agent(signal.SIGKILL)  # no chance to detach
        self.assertIn("xdp", self.lab.ns("lb", "ip", "link", "show", "l0"))  # still attached
        mark = self.lab.start_agent()
        self.assertIn("replaced_stale=true", self.lab.procs.log_since("agent", mark))
        self.assertRegex(self.lab.client("spread", f"http://{NAT_VIP}/id", "3"), r"b[123]")

    def test_a_foreign_xdp_program_is_refused_not_overwritten(self):
        self.lab.stop_agent()
        src, obj = self.out("pass.c"), self.out("pass.o")
        with open(src, "w") as f:
            f.write('__attribute__((section("xdp"), used)) int other_pass(void *ctx) { return 2; }\n'
                    'char _license[] __attribute__((section("license"), used)) = "GPL";\n')
        subprocess.run(["clang", "-O2", "-target", "bpf", "-c", src, "-o", obj], check=True)
        self.lab.ns("lb", "ip", "link", "set", "dev", "l0", "xdp", "obj", obj, "sec", "xdp")
        try:
            with self.assertRaises(RuntimeError) as err:
                self.lab.start_agent()
            self.assertIn("not flowlb's", str(err.exception))
            self.assertIn("xdp", self.lab.ns("lb", "ip", "link", "show", "l0"))  # left in place
        finally:
            self.lab.ns("lb", "ip", "link", "set", "dev", "l0", "xdp", "off")


if __name__ == "__main__":
    unittest.main(verbosity=2)

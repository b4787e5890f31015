"""Backends as a real cluster has them (issue 11): one Service whose backends
are a natively routed host, a pod on the LB node behind its veth, and a pod on
a second node behind a VXLAN overlay; only the LB node's kernel reaches the
two pods, through the agent's exception path. Also: externalTrafficPolicy
Local keeps the client's address, frames no service claims reach the kernel,
one broken service among good ones, DSR over IPv6, and an agent restart that
leaves no rules, routes or tables behind. Needs root.

  python3 -m unittest e2e.test_pod_network        (from the repository root)
"""
import json
import os
import signal
import sys
import time
import unittest

from e2e.lib import content
from e2e.lib.datapath_lab import BACKENDS, BACKENDS6, DatapathLab
from e2e.lib.labtest import LabTest
from e2e.lib.outcome import test_failed
from e2e.lib.paths import LAB
from e2e.lib.proc import in_ns, lab_prefix, run
from e2e.lib.wait import wait_until

PODS_SH = os.path.join(LAB, "pods.sh")
MIXED, MIXED6 = "10.10.100.30", "fd10:100::30"
LOCAL, LOCAL6 = "10.10.100.31", "fd10:100::31"
BROKEN = "10.10.100.32"
DSR6 = "fd10:100::20"
POD1, POD2 = "10.244.1.5", "10.244.2.5"
POD1_6, POD2_6 = "fd10:244:1::5", "fd10:244:2::5"
KINDS = {"b1": "native", "pod1": "pod on the LB node", "pod2": "pod behind VXLAN"}


def svc(name, vip, port, proto, backends, mode="nat", extra=()):
    lines = [f"  - name: {name}", f'    vip: "{vip}"', f"    port: {port}",
             f"    protocol: {proto}", f"    mode: {mode}", "    drainTimeoutSeconds: 60", *extra,
             "    backends:"]
    lines += [f'      - {{address: "{b}", port: {p}' + (", state: draining" if d else "") + "}"
              for b, p, d in backends]
    return "\n".join(lines)


def pod_config(generation, removed=(), draining=(), extra_backend=False):
    """NAT over every kind of backend (IPv4 and IPv6), Local services on the
    pod of the LB node, DSR over IPv6, and a service this node must refuse."""
    def mixed(port, addrs):
        return [(a, port, a in draining) for a in addrs if a not in removed]
    v4 = [BACKENDS[0], POD1, POD2] + ([BACKENDS[1]] if extra_backend else [])
    return "\n".join([
        f"generation: {generation}",
        'snat: {ipv4: 10.10.2.1, ipv6: "fd10:2::1", portMin: 40000, portMax: 59999}',
        "services:",
        svc("pods/mixed-http", MIXED, 80, "tcp", mixed(80, v4)),
        svc("pods/mixed-dns", MIXED, 53, "udp", mixed(53, v4)),
        svc("pods/mixed-http6", MIXED6, 80, "tcp", mixed(80, [BACKENDS6[0], POD1_6, POD2_6])),
        svc("pods/mixed-dns6", MIXED6, 53, "udp", mixed(53, [BACKENDS6[0], POD1_6, POD2_6])),
        svc("pods/local-http", LOCAL, 80, "tcp", [(POD1, 80, False)],
            extra=["    externalTrafficPolicy: Local"]),
        svc("pods/local-http6", LOCAL6, 80, "tcp", [(POD1_6, 80, False)],
            extra=["    externalTrafficPolicy: Local"]),
        svc("pods/dsr-http6", DSR6, 80, "tcp", [(b, 80, False) for b in BACKENDS6], mode="dsr"),
        # DSR cannot rewrite ports: refused alone, with that reason.
        svc("pods/broken", BROKEN, 80, "tcp", [(BACKENDS[0], 8080, False)], mode="dsr"),
    ]) + "\n"


class PodLab(DatapathLab):
    def __init__(self, prefix=None, agent_args=(), queues=1):
        super().__init__(prefix=prefix or lab_prefix("flbpod"), make_config=pod_config,
                         agent_args=agent_args, queues=queues)

    def before_agent(self):
        run([PODS_SH, "up", self.p], timeout=60)
        for pod, addrs in (("pod1", f"{POD1},{POD1_6}"), ("pod2", f"{POD2},{POD2_6}")):
            self.start_server(pod, pod, addrs)


class PodNetworkTest(LabTest):
    @classmethod
    def make_lab(cls):
        return PodLab()

    def setUp(self):
        self.lab.ensure()

    def tearDown(self):
        self.lab.stop_clients()
        if test_failed(self):  # for the intermittent connect timeout (issue 11's note)
            print(f"--- agent log (tail) ---\n{self.lab.log()[-3000:]}", file=sys.stderr)
            try:
                drops = [line for line in self.lab.metrics_text().splitlines()
                         if "drop" in line and not line.startswith("#") and not line.endswith(" 0")]
                print("--- agent drop counters ---\n" + "\n".join(drops), file=sys.stderr)
                print("--- LB node neighbours ---\n" + self.lab.ns("lb", "ip", "neigh", check=False),
                      file=sys.stderr)
            except Exception as e:  # the dump is best effort
                print(f"(metrics unavailable: {e})", file=sys.stderr)

    def downloads_until_every_kind(self, vip, size=1048576, attempts=24):
        """Parallel downloads through the VIP until each kind of backend served
        one; returns {backend: (exit code, md5)}."""
        seen = {}
        for i in range(attempts):
            name = f"dl{i}"
            self.lab.start_client(name, "fetch", f"http://{vip}/bytes/{size}",
                                  os.path.join(self.lab.tmp, name + ".bin"))
            who = self.lab.header(name, timeout=15)
            code, _ = self.lab.finish(name, timeout=120)
            if who not in seen:
                seen[who] = (code, content.md5_file(os.path.join(self.lab.tmp, name + ".bin")))
            if set(KINDS) <= set(seen):
                break
        return seen

    def test_tcp_1mib_is_byte_identical_from_each_kind_of_backend(self):
        for vip in (MIXED, f"[{MIXED6}]"):
            seen = self.downloads_until_every_kind(vip)
            self.assertEqual(set(seen), set(KINDS), f"{vip}: backends reached: {seen}")
            for who, (code, digest) in seen.items():
                self.assertEqual(code, 0, f"{vip}: download from {KINDS[who]} failed")
                self.assertEqual(digest, content.expected_md5(1048576),
                                 f"{vip}: download from {KINDS[who]} differs")
        # (counters reach /metrics within about 1.25 s of the packets)
        self.lab.wait_metric("flowlb_agent_kernel_path_packets_total", lambda v: v > 0,
                             direction="to_kernel", reason="flow_snat")
        self.lab.wait_metric("flowlb_agent_kernel_path_packets_total", lambda v: v > 0,
                             direction="from_kernel")

    def test_udp_request_response_through_each_kind_of_backend(self):
        for vip in (MIXED, MIXED6):
            answered = set()
            for i in range(40):
                reply = self.lab.client("udp", vip, "53", f"hello-{i}")
                who, _, echoed = reply.partition(" ")
                self.assertEqual(echoed, f"hello-{i}")
                answered.add(who)
                if set(KINDS) <= answered:
                    break
            self.assertEqual(answered, set(KINDS), vip)

    def test_new_connections_spread_within_the_maglev_shares(self):
        counts = json.loads(self.lab.client("spread", f"http://{MIXED}/id", "300", timeout=120))
        self.assertEqual(set(counts), set(KINDS), counts)
        for who, n in counts.items():  # a third each, within +-30 %
            self.assertTrue(70 <= n <= 130, f"{who}: {n} of 300 ({counts})")

    def test_removal_and_drain_behave_as_for_native_backends(self):
        # A download from each kind; pod2 drains, b1 is removed.
        downloads = {}
        for i in range(30):
            name = f"slow{i}"
            self.lab.start_client(name, "fetch", f"http://{MIXED}/slow/1048576/20",
                                  os.path.join(self.lab.tmp, name + ".bin"))
            who = self.lab.header(name, timeout=15)
            if who in downloads:
                self.lab.procs.kill(name)
            else:
                downloads[who] = name
            if set(KINDS) <= set(downloads):
                break
        self.assertEqual(set(downloads), set(KINDS))
        self.lab.apply(draining={POD2}, removed={BACKENDS[0]})
        counts = json.loads(self.lab.client("spread", f"http://{MIXED}/id", "40", timeout=120))
        self.assertEqual(set(counts), {"pod1"}, counts)
        for who in ("pod1", "pod2"):  # draining keeps its flows; the others are untouched
            code, _ = self.lab.finish(downloads[who], timeout=120)
            self.assertEqual(code, 0, f"download from {KINDS[who]} broke")
            self.assertEqual(content.md5_file(os.path.join(self.lab.tmp, downloads[who] + ".bin")),
                             content.expected_md5(1048576), who)

    def test_local_keeps_the_client_address_cluster_does_not(self):
        self.assertEqual(self.lab.client("get", f"http://{LOCAL}/client"), "10.10.1.2")
        self.assertEqual(self.lab.client("get", f"http://[{LOCAL6}]/client"), "fd10:1::2")
        seen = set()
        for _ in range(30):
            seen.add(self.lab.client("get", f"http://{MIXED}/client"))
        self.assertNotIn("10.10.1.2", seen, "Cluster must source-NAT")

    def test_a_client_port_that_just_closed_via_one_vip_opens_via_another(self):
        # MIXED and LOCAL share pod1:80, and Local keeps the client's address:
        # a client whose kernel reuses a port for LOCAL right after a closed
        # MIXED connection to pod1 must connect, not wait out the old flow.
        for port in range(41000, 41060):
            if self.lab.client("via", str(port), f"http://{MIXED}/id") == "pod1":
                break
        else:
            self.fail("no client port in 41000-41059 reached pod1 through MIXED")
        self.assertEqual(self.lab.client("via", str(port), f"http://{LOCAL}/id"), "pod1")

    def syn_retransmissions(self):
        out = self.lab.ns("client", "nstat", "-asz", "TcpExtTCPSynRetrans")
        return sum(int(line.split()[1]) for line in out.splitlines()
                   if line.startswith("TcpExtTCPSynRetrans"))

    def wait_ipv6_addresses_usable(self):
        """No IPv6 address of the lab still in duplicate address detection.
        Until it ends an address is not used, so a neighbour solicitation
        towards it goes unanswered and the SYN behind it is retransmitted:
        CI saw one, over IPv6 only, when this test ran first after set-up."""
        names = [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines()
                 if line.startswith(self.lab.p + "-")]
        wait_until(lambda: not any(run(in_ns(n, "ip", "-6", "addr", "show", "tentative")).strip()
                                   for n in names),
                   10, "IPv6 duplicate address detection finished in every namespace of the lab")

    def test_first_contact_with_unknown_neighbours_costs_no_retransmission(self):
        # Every neighbour the LB node knew is forgotten (a backend never
        # contacted, or entries expired): the first frames towards each one
        # must not be dropped while it is resolved; a dropped SYN costs the
        # client one second or more (issue 11's intermittent timeout).
        self.wait_ipv6_addresses_usable()
        routed = self.lab.metric("flowlb_agent_kernel_path_packets_total",
                                 direction="to_kernel", reason="routed")
        for vip in (MIXED, f"[{MIXED6}]"):
            self.lab.ns("lb", "ip", "neigh", "flush", "all")
            before = self.syn_retransmissions()
            seen = json.loads(self.lab.client("spread", f"http://{vip}/id", "30"))
            self.assertEqual(self.syn_retransmissions() - before, 0, f"{vip}: {seen}")
            self.assertIn("b1", seen, vip)  # a native backend, whose neighbour was flushed
        self.lab.wait_metric("flowlb_agent_kernel_path_packets_total", lambda v: v > routed,
                             what="the first frames went to the kernel while it resolved",
                             direction="to_kernel", reason="routed")
        self.assertEqual(self.lab.metric("flowlb_agent_datapath_drops_total",
                                         reason="neighbor_unresolved"), 0)

    def test_a_syn_to_a_vip_port_no_service_uses_gets_the_kernels_rst(self):
        out = self.lab.client("connect", MIXED, "8081")
        self.assertEqual(out, "refused")  # a RST, not silence (a timeout)
        out = self.lab.client("connect", MIXED6, "8081")
        self.assertEqual(out, "refused")

    def test_a_frame_no_service_claims_reaches_the_kernel(self):
        # The node's own connection from a port in the SNAT range: its replies
        # are steered to a worker, which has no flow for them.
        before = self.lab.metric("flowlb_agent_kernel_path_packets_total",
                                 direction="to_kernel", reason="unclaimed")
        out = self.lab.ns("lb", "curl", "-s", "-m", "5", "--local-port", "45000",
                          f"http://{BACKENDS[1]}/id")
        self.assertEqual(out, "b2")
        self.lab.wait_metric("flowlb_agent_kernel_path_packets_total", lambda v: v > before,
                             direction="to_kernel", reason="unclaimed")

    def test_one_broken_service_is_refused_alone_and_the_others_take_updates(self):
        self.assertEqual(self.lab.metric("flowlb_agent_service_refused", service="pods/broken",
                                         reason="unsupported"), 1)
        self.assertIn("event=service_refused service=\"pods/broken\"", self.lab.log())
        # While it is refused, other services' endpoint changes still apply.
        self.lab.apply(extra_backend=True)
        wait_until(lambda: "b2" in json.loads(self.lab.client("spread", f"http://{MIXED}/id", "40")),
                   30, "the added backend b2 reached")

    def test_dsr_over_ipv6_is_byte_identical(self):
        out = os.path.join(self.lab.tmp, "dsr6.bin")
        self.lab.start_client("dsr6", "fetch", f"http://[{DSR6}]/bytes/1048576", out)
        self.lab.header("dsr6", timeout=15)
        code, _ = self.lab.finish("dsr6", timeout=120)
        self.assertEqual(code, 0)
        self.assertEqual(content.md5_file(out), content.expected_md5(1048576))

    def kernel_state(self):
        """Policy rules, routes of every table, the nftables ruleset and the
        names of the devices (not their indexes, which a new device changes).
        Taken once no IPv6 address is still in duplicate address detection:
        the kernel adds a link's fe80:: routes only when that ends, which
        for a device the lab has just made can be after the first look."""
        wait_until(lambda: not self.lab.ns("lb", "ip", "-6", "addr", "show", "tentative").strip(),
                   10, "IPv6 duplicate address detection finished in the LB namespace")
        text = self.lab.ns("lb", "sh", "-c",
                           "ip rule; ip -6 rule; ip route show table all; "
                           "ip -6 route show table all; nft list ruleset; "
                           "ip -o link show | cut -d: -f2")
        return sorted(line.strip() for line in text.splitlines() if line.strip())

    def test_restarting_the_agent_leaves_no_rules_routes_or_devices_behind(self):
        running = self.kernel_state()
        self.assertTrue(any("lookup 61707" in line for line in running), running)
        self.lab.stop_agent()
        stopped = self.kernel_state()
        self.assertFalse([line for line in stopped if "flowlb" in line or "61707" in line], stopped)
        self.lab.start_agent()
        self.assertEqual(self.kernel_state(), running)
        # A crash leaves its rules and tables; the next agent replaces them, once.
        self.lab.stop_agent(signal.SIGKILL)
        self.lab.start_agent()
        self.assertEqual(self.kernel_state(), running)
        self.lab.stop_agent()
        self.assertEqual(self.kernel_state(), stopped)

    def test_a_file_rewritten_in_place_is_never_applied_half_written(self):
        # New connections run while the file is rewritten in place, in two
        # halves with a pause between: the first half alone has only the
        # first services, which would cut the rest (issue 17.8).
        self.lab.start_client("loop", "loop", f"http://{LOCAL}/id", "4")
        self.lab.header("loop", timeout=15)  # the first attempt has ended: it runs
        text = pod_config(self.lab.generation + 1)
        cut = text.index("pods/local-http") - len("  - name: ")
        with open(self.lab.config_path, "w") as f:  # truncated, not renamed
            f.write(text[:cut])
            f.flush()
            # A slow writer (this pause is the scenario, not a synchronisation):
            # the first half alone has no pods/local-http, so applying it would
            # make the loop's connections fail.
            time.sleep(1.5)
            f.write(text[cut:])
        self.lab.generation += 1
        self.lab.current = None  # written by hand: the next ensure() rewrites it
        self.lab.wait_metric("flowlb_agent_config_generation", lambda v: v == self.lab.generation,
                             timeout=10)
        code, out = self.lab.finish("loop", timeout=60)
        self.assertEqual(code, 0, out)
        attempts = [json.loads(line) for line in out.splitlines() if line.startswith("[")]
        failed = [a for a in attempts if a[2] is None]
        self.assertGreater(len(attempts), 50)
        self.assertEqual(failed, [], f"{len(failed)} of {len(attempts)} connections failed")


if __name__ == "__main__":
    unittest.main()

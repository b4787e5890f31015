#!/usr/bin/env python3
"""End-to-end tests of the agent's AF_XDP datapath in the namespace lab.

A client, one LB node running flowlb-agent on both of its interfaces, and
three backends (e2e/lab/lab.sh). Real TCP and UDP through the VIPs, in NAT
and DSR mode. Needs root. Usage: test_datapath.py BUILD_DIR
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else os.path.join(HERE, "..", "build")
AGENT = os.path.join(BUILD, "agent", "flowlb-agent")
LAB = os.path.join(HERE, "lab", "lab.sh")
CLIENT = os.path.join(HERE, "lab", "client.py")
SERVER = os.path.join(HERE, "lab", "backend_server.py")
P = "flbe2e"  # namespace prefix of this test's lab
METRICS = "127.0.0.1:19470"
NAT_VIP, DSR_VIP = "10.10.100.10", "10.10.100.20"
NAT_VIP6 = "fd10:100::10"
# VIPs on the client's own subnet: reachable only if the LB answers ARP/NDP.
L2_VIP, L2_VIP6 = "10.10.1.100", "fd10:1::100"
BACKENDS = ["10.10.2.11", "10.10.2.12", "10.10.2.13"]
BACKENDS6 = ["fd10:2::11", "fd10:2::12", "fd10:2::13"]


def config(backends=BACKENDS, generation=1, draining=()):
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


def ns(name, *cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", f"{P}-{name}", *cmd], check=True,
                          capture_output=True, text=True, timeout=kw.get("timeout", 60)).stdout


def client(*args, timeout=60):
    return ns("client", "python3", CLIENT, *args, timeout=timeout).strip()


def read(path):
    with open(path) as f:
        return f.read()


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def expected(n):
    return hashlib.md5(bytes((i * 7 + 3) % 256 for i in range(n))).hexdigest()


class Lab:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="flowlb-e2e-")
        self.config = os.path.join(self.tmp, "agent.yaml")
        self.servers = []
        self.agent = None

    def up(self):
        subprocess.run([LAB, "up", P], check=True, timeout=60)
        for i, (addr, addr6) in enumerate(zip(BACKENDS, BACKENDS6), 1):
            self.servers.append(subprocess.Popen(
                ["ip", "netns", "exec", f"{P}-b{i}", "python3", SERVER, f"b{i}", "80",
                 f"{addr},{DSR_VIP},{addr6}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.write_config(config())
        self.start_agent()

    def write_config(self, text):
        tmp = self.config + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config)

    def start_agent(self):
        log = os.path.join(self.tmp, "agent.log")
        with open(log, "a") as out:
            self.agent = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{P}-lb", AGENT, "--interface", "l0", "--interface",
                 "l1", "--config", self.config, "--metrics-address", METRICS,
                 "--conntrack-entries", "65536"], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.agent.poll() is not None:
                raise RuntimeError("agent exited: " + read(log))
            try:
                if "flowlb_agent_config_generation" in self.metrics_text():
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.2)
        raise RuntimeError("agent did not come up: " + read(log))

    def stop_agent(self):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent = None

    def metrics_text(self):
        return ns("lb", "curl", "-s", "-m", "2", f"http://{METRICS}/metrics", timeout=10)

    def metric(self, name, **labels):
        total = 0.0
        for line in self.metrics_text().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_metric(self, name, predicate, timeout=5, **labels):
        deadline = time.time() + timeout
        while True:
            v = self.metric(name, **labels)
            if predicate(v) or time.time() > deadline:
                return v
            time.sleep(0.2)

    def down(self):
        self.stop_agent()
        for s in self.servers:
            s.kill()
            s.wait()
        subprocess.run([LAB, "down", P], timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)


class DatapathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, XDP)")
        cls.lab = Lab()
        try:
            cls.lab.up()
        except Exception:
            cls.lab.down()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.down()

    def tearDown(self):
        # Every test leaves the agent running with the full configuration.
        if self.lab.agent is None or self.lab.agent.poll() is not None:
            self.lab.start_agent()

    def test_01_http_1mb_through_nat_vip_is_byte_identical(self):
        out = os.path.join(self.lab.tmp, "nat.bin")
        client("fetch", f"http://{NAT_VIP}/bytes/1048576", out)
        self.assertEqual(md5(out), expected(1048576))

    def test_02_http_1mb_through_dsr_vip_is_byte_identical(self):
        out = os.path.join(self.lab.tmp, "dsr.bin")
        client("fetch", f"http://{DSR_VIP}/bytes/1048576", out)
        self.assertEqual(md5(out), expected(1048576))

    def test_03_udp_request_response_nat_and_dsr(self):
        for vip in (NAT_VIP, DSR_VIP):
            reply = client("udp", vip, "53", "hello-" + vip)
            self.assertRegex(reply, r"^b[123] hello-" + re.escape(vip) + "$")

    def test_03b_ipv6_tcp_and_udp_through_a_nat_vip(self):
        out = os.path.join(self.lab.tmp, "nat6.bin")
        client("fetch", f"http://[{NAT_VIP6}]/bytes/1048576", out)
        self.assertEqual(md5(out), expected(1048576))
        counts = json.loads(client("spread", f"http://[{NAT_VIP6}]/id", "30", timeout=60))
        self.assertEqual(sum(counts.values()), 30)
        self.assertGreater(len(counts), 1, counts)
        self.assertRegex(client("udp", NAT_VIP6, "53", "hello6"), r"^b[123] hello6$")

    def test_03c_vips_on_the_client_subnet_are_announced_with_arp_and_ndp(self):
        lb_mac = ns("lb", "cat", "/sys/class/net/l0/address").strip()
        for vip, url in ((L2_VIP, f"http://{L2_VIP}/id"), (L2_VIP6, f"http://[{L2_VIP6}]/id")):
            self.assertRegex(client("spread", url, "3"), r"b[123]", vip)
            neigh = ns("client", "ip", "neigh", "show", vip)
            self.assertIn(lb_mac, neigh, f"{vip} should resolve to the LB's MAC: {neigh}")
        self.assertGreater(self.lab.wait_metric("flowlb_agent_l2_announcements_total", lambda v: v > 0,
                                                kind="arp_reply"), 0)
        self.assertGreater(self.lab.wait_metric("flowlb_agent_l2_announcements_total", lambda v: v > 0,
                                                kind="na_reply"), 0)
        self.assertGreater(self.lab.metric("flowlb_agent_l2_announcements_total", kind="gratuitous"), 0)

    def test_04_300_connections_spread_over_three_backends(self):
        counts = json.loads(client("spread", f"http://{NAT_VIP}/id", "300", timeout=120))
        self.assertEqual(sum(counts.values()), 300)
        self.assertEqual(set(counts), {"b1", "b2", "b3"})
        for b, n in counts.items():
            self.assertLessEqual(abs(n - 100), 30, f"{b} got {n} of 300: {counts}")
        dsr = json.loads(client("spread", f"http://{DSR_VIP}/id", "60", timeout=120))
        self.assertEqual(set(dsr), {"b1", "b2", "b3"})

    def test_05_traffic_not_for_a_vip_is_untouched(self):
        ns("client", "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.10.1.1")
        server = subprocess.Popen(["ip", "netns", "exec", f"{P}-lb", "python3", "-m", "http.server",
                                   "8081", "--bind", "10.10.1.1"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            for _ in range(50):
                r = subprocess.run(["ip", "netns", "exec", f"{P}-client", "curl", "-s", "-o", "/dev/null",
                                    "-w", "%{http_code}", "-m", "2", "http://10.10.1.1:8081/"],
                                   capture_output=True, text=True)
                if r.stdout == "200":
                    break
                time.sleep(0.1)
            self.assertEqual(r.stdout, "200")
        finally:
            server.kill()
            server.wait()

    def test_06_removing_a_backend_keeps_the_others_flows_and_avoids_it(self):
        # Long downloads, one per backend over different client ports, via NAT.
        outs, procs = [], []
        for i in range(6):
            out = os.path.join(self.lab.tmp, f"slow{i}.bin")
            outs.append(out)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", f"{P}-client", "python3", CLIENT, "fetch",
                 f"http://{NAT_VIP}/slow/1048576/40", out], stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True))
        time.sleep(1.0)
        self.lab.write_config(config(backends=BACKENDS[1:], generation=2))
        os.kill(self.lab.agent.pid, signal.SIGHUP)
        self.lab.wait_metric("flowlb_agent_config_generation", lambda v: v == 2)
        counts = json.loads(client("spread", f"http://{NAT_VIP}/id", "30", timeout=60))
        self.assertNotIn("b1", counts, counts)
        survivors = 0
        for p, out in zip(procs, outs):
            who = (p.communicate(timeout=90)[0].strip().splitlines() or [""])[0]
            if who != "b1":  # flows of the removed backend cannot be kept
                self.assertEqual(p.returncode, 0, f"download from {who} broke")
                self.assertEqual(md5(out), expected(1048576))
                survivors += 1
        self.assertGreater(survivors, 0)
        self.lab.write_config(config(generation=3))
        os.kill(self.lab.agent.pid, signal.SIGHUP)
        self.lab.wait_metric("flowlb_agent_config_generation", lambda v: v == 3)

    def test_06b_a_draining_backend_keeps_its_flows_and_gets_no_new_ones(self):
        # Long downloads until at least one runs through b1 (the header
        # names the backend before the body starts).
        outs, procs, who = [], [], []
        for i in range(30):
            out = os.path.join(self.lab.tmp, f"drain{i}.bin")
            p = subprocess.Popen(["ip", "netns", "exec", f"{P}-client", "python3", CLIENT, "fetch",
                                  f"http://{NAT_VIP}/slow/1048576/40", out],
                                 stdout=subprocess.PIPE, text=True)
            outs.append(out)
            procs.append(p)
            who.append(p.stdout.readline().strip())
            if "b1" in who and len(who) >= 3:
                break
        self.assertIn("b1", who)
        self.lab.write_config(config(generation=4, draining={BACKENDS[0]}))
        os.kill(self.lab.agent.pid, signal.SIGHUP)
        self.lab.wait_metric("flowlb_agent_config_generation", lambda v: v == 4)
        counts = json.loads(client("spread", f"http://{NAT_VIP}/id", "30", timeout=60))
        self.assertNotIn("b1", counts, counts)
        for p, out, backend in zip(procs, outs, who):
            p.communicate(timeout=90)
            self.assertEqual(p.returncode, 0, f"download from {backend} broke while draining")
            self.assertEqual(md5(out), expected(1048576), f"download from {backend}")
        self.lab.write_config(config(generation=5))
        os.kill(self.lab.agent.pid, signal.SIGHUP)
        self.lab.wait_metric("flowlb_agent_config_generation", lambda v: v == 5)

    def test_07_agent_restart_keeps_a_dsr_download_because_maglev_picks_the_same_backend(self):
        out = os.path.join(self.lab.tmp, "restart.bin")
        p = subprocess.Popen(["ip", "netns", "exec", f"{P}-client", "python3", CLIENT, "fetch",
                              f"http://{DSR_VIP}/slow/2097152/25", out], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        self.lab.stop_agent()
        self.lab.start_agent()  # a new process: empty conntrack, same tables
        p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(md5(out), expected(2097152))

    def test_08_malformed_frames_are_dropped_and_counted_and_forwarding_goes_on(self):
        reasons = ["bad_ip_total_length", "truncated_l4", "truncated_l3", "bad_ip_header_length"]
        before = sum(self.lab.metric("flowlb_agent_datapath_drops_total", reason=r) for r in reasons)
        lb_mac = ns("lb", "cat", "/sys/class/net/l0/address").strip()
        sent = int(client("raw", "c0", lb_mac))
        after = self.lab.wait_metric("flowlb_agent_datapath_drops_total",
                                     lambda v: v >= before + sent, timeout=5)
        after = sum(self.lab.metric("flowlb_agent_datapath_drops_total", reason=r) for r in reasons)
        self.assertEqual(after - before, sent)
        self.assertRegex(client("spread", f"http://{NAT_VIP}/id", "3"), r"b[123]")

    def test_09_frames_are_recycled_without_leaks(self):
        client("spread", f"http://{NAT_VIP}/id", "20")
        total = self.lab.metric("flowlb_agent_xsk_frames", state="total")
        free = self.lab.wait_metric("flowlb_agent_xsk_frames", lambda v: v == total, timeout=5,
                                    state="free")
        self.assertGreater(total, 0)
        self.assertEqual(free, total)
        self.assertGreater(self.lab.wait_metric("flowlb_agent_service_packets_total", lambda v: v > 0,
                                                service="lab/nat-http"), 0)

    def test_10_a_stale_program_left_by_a_crash_is_replaced(self):
        self.lab.agent.kill()  # SIGKILL: no chance to detach
        self.lab.agent.wait()
        self.lab.agent = None
        self.assertIn("xdp", ns("lb", "ip", "link", "show", "l0"))  # still attached
        self.lab.start_agent()
        self.assertIn("replaced_stale=true", read(os.path.join(self.lab.tmp, "agent.log")))
        self.assertRegex(client("spread", f"http://{NAT_VIP}/id", "3"), r"b[123]")

    def test_11_a_foreign_xdp_program_is_refused_not_overwritten(self):
        self.lab.stop_agent()
        src = os.path.join(self.lab.tmp, "pass.c")
        obj = os.path.join(self.lab.tmp, "pass.o")
        with open(src, "w") as f:
            f.write('__attribute__((section("xdp"), used)) int other_pass(void *ctx) { return 2; }\n'
                    'char _license[] __attribute__((section("license"), used)) = "GPL";\n')
        subprocess.run(["clang", "-O2", "-target", "bpf", "-c", src, "-o", obj], check=True)
        ns("lb", "ip", "link", "set", "dev", "l0", "xdp", "obj", obj, "sec", "xdp")
        try:
            with self.assertRaises(RuntimeError) as err:
                self.lab.start_agent()
            self.assertIn("not flowlb's", str(err.exception))
            self.assertIn("xdp", ns("lb", "ip", "link", "show", "l0"))  # left in place
        finally:
            self.lab.agent = None
            ns("lb", "ip", "link", "set", "dev", "l0", "xdp", "off")


if __name__ == "__main__":
    unittest.main(verbosity=2)

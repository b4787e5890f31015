"""Connections survive what users do to them (issue 15), in the datapath lab:
an agent restart in NAT mode (the backend speaking first, and the client
speaking first), a SYN flood from random sources beside established
downloads, and the PROXY protocol v2 through a real consumer (nginx) with
packet loss, over IPv4 and IPv6. Needs root.

  python3 -m unittest e2e.test_flow_survival      (from the repository root)
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from e2e.lib import content
from e2e.lib.datapath_lab import BACKENDS, BACKENDS6, DatapathLab
from e2e.lib.labtest import LabTest
from e2e.lib.paths import build_dir
from e2e.lib.proc import in_ns, lab_prefix, run
from e2e.lib.wait import WaitTimeout, wait_until

NAT, NAT6 = "10.10.100.10", "fd10:100::10"
PROXY, PROXY6 = "10.10.100.40", "fd10:100::40"
NGINX_PORT = 8080


def survival_config(generation):
    def svc(name, vip, port, backends, extra=()):
        addrs = ", ".join(f'{{address: "{b}", port: {p}}}' for b, p in backends)
        lines = [f"  - name: {name}", f'    vip: "{vip}"', f"    port: {port}",
                 "    protocol: tcp", *extra, f"    backends: [{addrs}]"]
        return "\n".join(lines)
    return "\n".join([
        f"generation: {generation}",
        'snat: {ipv4: 10.10.2.1, ipv6: "fd10:2::1", portMin: 61000, portMax: 65535}',
        "services:",
        svc("survive/http", NAT, 80, [(b, 80) for b in BACKENDS]),
        svc("survive/http6", NAT6, 80, [(b, 80) for b in BACKENDS6]),
        svc("survive/proxy", PROXY, 80, [(BACKENDS[0], NGINX_PORT)], ["    proxyProtocol: v2"]),
        svc("survive/proxy6", PROXY6, 80, [(BACKENDS6[0], NGINX_PORT)],
            ["    proxyProtocol: v2"]),
    ]) + "\n"


NGINX_CONF = """user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
  log_format proxied '$proxy_protocol_addr $proxy_protocol_port $remote_addr $status $bytes_sent';
  access_log {dir}/access.log proxied;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen {port} proxy_protocol;
    listen [::]:{port} proxy_protocol;
    root {dir}/www;
  }}
}}
"""


class SurvivalLab(DatapathLab):
    def __init__(self):
        self.state = tempfile.mkdtemp(prefix="flowlb-state-")
        super().__init__(prefix=lab_prefix("flbsurv"), make_config=survival_config,
                         agent_args=["--state-dir", self.state])
        self.nginx = os.path.join(self.tmp, "nginx")

    def before_agent(self):
        # nginx with the PROXY protocol on b1, serving the lab's byte pattern.
        os.makedirs(os.path.join(self.nginx, "www"))
        with open(os.path.join(self.nginx, "www", "1m.bin"), "wb") as f:
            f.write(content.pattern(1048576))
        conf = os.path.join(self.nginx, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.nginx, port=NGINX_PORT))
        self.ns("b1", "nginx", "-c", conf)

    def down(self):
        self.ns("b1", "nginx", "-c", os.path.join(self.nginx, "nginx.conf"), "-s", "stop",
                check=False)
        super().down()
        shutil.rmtree(self.state, ignore_errors=True)

    def nginx_log(self, name):
        try:
            with open(os.path.join(self.nginx, name)) as f:
                return f.read()
        except OSError:
            return ""

    def rss_kib(self):
        with open(f"/proc/{self.procs.get('agent').pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class FlowSurvivalTest(LabTest):
    @classmethod
    def make_lab(cls):
        return SurvivalLab()

    def setUp(self):
        self.lab.ensure()

    def tearDown(self):
        self.lab.stop_clients()
        for ns in ("client", "b1"):
            self.lab.ns(ns, "nft", "delete", "table", "inet", "loss", check=False)

    def start_downloads(self, vip, n, size=2097152, pace_ms=20):
        """n slow downloads through the VIP (the backend keeps sending), each
        established (its first byte arrived) when this returns."""
        names = []
        for i in range(n):
            name = f"dl-{vip}-{i}"
            url = f"http://[{vip}]/slow/{size}/{pace_ms}" if ":" in vip else \
                f"http://{vip}/slow/{size}/{pace_ms}"
            self.lab.start_client(name, "fetch", url, os.path.join(self.lab.tmp, name + ".bin"))
            names.append(name)
        for name in names:
            self.lab.header(name, timeout=15)
        return names

    def assert_complete(self, names, size=2097152):
        lost = []
        for name in names:
            code, _ = self.lab.finish(name, timeout=180)
            digest = content.md5_file(os.path.join(self.lab.tmp, name + ".bin"))
            if code != 0 or digest != content.expected_md5(size):
                lost.append(name)
        self.assertEqual(lost, [], f"{len(lost)} of {len(names)} flows lost")

    def test_an_agent_restart_keeps_nat_flows_when_the_backend_speaks_first(self):
        names = self.start_downloads(NAT, 3) + self.start_downloads(NAT6, 2)
        self.lab.stop_agent()
        self.assertIn("event=kernel_path_kept", self.lab.log())
        mark = self.lab.start_agent()
        self.assertRegex(self.lab.procs.log_since("agent", mark),
                         r"event=state_adopted what=conntrack worker=0 entries=[1-9]")
        self.assert_complete(names)

    def test_an_agent_restart_keeps_nat_flows_when_the_client_speaks_first(self):
        # One connection, a request every 100 ms for 6 s: after the restart
        # the first packet of the flow is the client's next request.
        self.lab.start_client("session", "keepalive", f"http://{NAT}/id", "60", "100")
        self.lab.header("session", timeout=15)  # the first answer came back
        self.lab.stop_agent()
        self.lab.start_agent()
        code, out = self.lab.finish("session", timeout=60)
        self.assertEqual(code, 0, out)
        answers = [line for line in out.splitlines() if line.strip()]
        self.assertEqual(len(answers), 59, out)  # the first was read above
        self.assertEqual(len(set(answers)), 1, "the connection kept its backend")

    def test_a_syn_flood_never_evicts_established_flows(self):
        # 19 s each: alive through every flood below.
        names = self.start_downloads(NAT, 3, size=1048576, pace_ms=300)
        rss_before = self.lab.rss_kib()
        new_before = self.lab.wait_metric("flowlb_agent_service_new_flows_total", lambda v: v >= 3,
                                          service="survive/http")
        # New flows from ever new sources at the generator's full rate; the
        # agent's 65,536 conntrack entries fill in about a second on a quiet
        # machine. On a loaded one the agent takes fewer of the frames, so
        # the flood goes on (4 s at a time) until conntrack has overflowed.
        def flooded():
            return self.lab.metric("flowlb_agent_service_new_flows_total",
                                   service="survive/http") - new_before > 65536

        for _ in range(6):
            flood = run(in_ns(self.lab.ns_name("client"),
                              os.path.join(build_dir(), "bench", "xdp_traffic"), "gen", "c0",
                              self.lab.lb_mac(), "10.10.1.2", NAT, "80", "4", "0", "syn"),
                        timeout=60)
            sent = int(flood.split()[1])
            self.assertGreater(sent, 100_000, flood)
            # The agent refreshes its counters about once a second: wait for
            # the flood to show rather than read them the moment it ends.
            try:
                wait_until(flooded, 3, "the flood filled conntrack")
                break
            except WaitTimeout:
                pass
        self.lab.wait_metric("flowlb_agent_service_new_flows_total", lambda v: v - new_before > 65536,
                             timeout=3, what="the flood filled conntrack", service="survive/http")
        evicted = self.lab.metric("flowlb_agent_conntrack_evictions_total", reason="unanswered")
        self.assertGreater(evicted, 0)
        self.assertEqual(self.lab.metric("flowlb_agent_conntrack_evictions_total", reason="oldest"), 0)
        self.assert_complete(names, size=1048576)
        # Memory stays flat: conntrack is allocated once.
        self.assertLess(self.lab.rss_kib() - rss_before, 16 * 1024)

    def test_proxy_protocol_v2_through_nginx_with_loss(self):
        # 3 % of the TCP segments the client and the backend send are lost.
        for ns in ("client", "b1"):
            script = ("table inet loss {\n chain out {\n  type filter hook output priority 0;\n"
                      "  meta l4proto tcp numgen random mod 100 < 3 counter drop\n }\n}\n")
            subprocess.run(in_ns(self.lab.ns_name(ns), "nft", "-f", "-"), input=script, text=True,
                           check=True)
        for vip, client in ((PROXY, "10.10.1.2"), (PROXY6, "fd10:1::2")):
            url = f"http://[{vip}]/1m.bin" if ":" in vip else f"http://{vip}/1m.bin"
            out = os.path.join(self.lab.tmp, "proxied.bin")
            status = self.lab.ns("client", "curl", "-s", "-m", "60", "-o", out, "-w",
                                 "%{http_code}", url, timeout=90, check=False)
            self.assertEqual(status, "200", self.lab.nginx_log("error.log"))
            self.assertEqual(content.md5_file(out), content.expected_md5(1048576), vip)
            log = self.lab.nginx_log("access.log").splitlines()
            # nginx's own parser took our header: it names the client, not the LB.
            self.assertTrue(log and log[-1].startswith(client + " "), log[-1:])
            self.assertIn(" 200 ", log[-1])
        dropped = sum(int(m) for ns in ("client", "b1") for m in re.findall(
            r"packets (\d+)", self.lab.ns(ns, "nft", "list", "table", "inet", "loss")))
        self.assertGreater(dropped, 0, "the loss rules dropped nothing: retransmissions untested")


if __name__ == "__main__":
    unittest.main()

"""Active health checks of a standalone agent in the datapath lab.

The datapath lab (e2e/lib/datapath_lab.py: a client, one LB node running
flowlb-agent on a standalone file, three backends) with its own namespace
prefix (flbhc) and one NAT service checked over HTTP (GET /id every 500 ms,
timeout 200 ms, 2 failures down, 2 passes up). The agent's own verdict is
applied (docs/health-checks.md). Tests wait on the agent's metric and log
lines, never on sleeps, and each brings the lab back to three serving
backends first, so they run alone and in any order:

    python3 -m e2e.run --shuffle random e2e.test_health
"""
import json
import re
import unittest

from e2e.lib import prom
from e2e.lib.datapath_lab import BACKENDS, NAT_VIP, DatapathLab
from e2e.lib.labtest import LabTest
from e2e.lib.outcome import test_failed
from e2e.lib.proc import in_ns, lab_prefix, module
from e2e.lib.wait import wait_until

SERVICE = "lab/web"
CHECK = ("{type: http, path: /id, interval: 500ms, timeout: 200ms, unhealthyThreshold: 2, "
         "healthyThreshold: 2}")


def health_config(generation, bad_check=False):
    """One NAT service over the three backends with an HTTP health check; with
    `bad_check`, a second service whose healthCheck is invalid."""
    lines = [
        f"generation: {generation}",
        "snat: {ipv4: 10.10.2.1, ipv6: \"fd10:2::1\", portMin: 40000, portMax: 59999}",
        "services:",
        f"  - name: {SERVICE}",
        f"    vip: \"{NAT_VIP}\"",
        "    port: 80",
        "    protocol: tcp",
        "    mode: nat",
        f"    healthCheck: {CHECK}",
        "    backends:",
    ] + [f"      - {{address: \"{b}\", port: 80}}" for b in BACKENDS]
    if bad_check:
        lines += [
            "  - name: lab/bad",
            "    vip: \"10.10.100.30\"",
            "    port: 80",
            "    healthCheck: {type: http, interval: 2}",
            "    backends:",
        ] + [f"      - {{address: \"{b}\", port: 80}}" for b in BACKENDS]
    return "\n".join(lines) + "\n"


def key(addr):
    return f"{addr}:80"


class HealthTest(LabTest):
    @classmethod
    def make_lab(cls):
        return DatapathLab(prefix=lab_prefix("flbhc"), make_config=health_config)

    def setUp(self):
        for i in (1, 2, 3):
            self.start_server(i)
        self.lab.ensure()
        self.wait_statuses({b: 1 for b in BACKENDS})
        self.wait_verdicts(0)

    def tearDown(self):
        self.lab.stop_clients()
        if test_failed(self):
            print(f"--- agent log (tail) ---\n{self.lab.log()[-4000:]}")

    # -- helpers -------------------------------------------------------------
    def start_server(self, i):
        if self.lab.procs.running(f"server-b{i}"):
            return
        self.lab.procs.stop(f"server-b{i}")  # forget an exited one
        self.lab.start_server(f"b{i}", f"b{i}", BACKENDS[i - 1])

    def stop_server(self, i):
        self.lab.procs.stop(f"server-b{i}")

    def wait_statuses(self, want, timeout=15):
        """Waits until flowlb_agent_backend_health of each backend in `want` has
        its value (1 healthy, 0 unhealthy)."""
        def check():
            text = self.lab.metrics_text()
            return all(prom.value(text, "flowlb_agent_backend_health", service=SERVICE,
                                  backend=key(b)) == v for b, v in want.items())
        wait_until(check, timeout, f"backend health {want}", ignore=(prom.MetricAbsent,),
                   context=lambda: self.lab.log()[-2000:])

    def wait_verdicts(self, unhealthy, mark=0, timeout=15):
        """Waits until the agent applied its verdicts with `unhealthy` backends
        marked (its last event=health_verdicts_applied line after `mark`;
        none at all counts as 0 when `unhealthy` is 0)."""
        def check():
            lines = re.findall(r"event=health_verdicts_applied generation=\d+ unhealthy=(\d+)",
                               self.lab.procs.log_since("agent", mark))
            if not lines:
                return unhealthy == 0 and mark == 0
            return int(lines[-1]) == unhealthy
        wait_until(check, timeout, f"verdicts applied with {unhealthy} unhealthy",
                   context=lambda: self.lab.log()[-2000:])

    def spread(self, n):
        """N sequential connections through the VIP; fails if any fails."""
        return json.loads(self.lab.client("spread", f"http://{NAT_VIP}/id", str(n), timeout=120))

    def new_flows(self, addr):
        return prom.value(self.lab.metrics_text(), "flowlb_agent_backend_new_flows_total",
                          backend=key(addr), default=0)

    # -- tests ---------------------------------------------------------------
    def test_a_stopped_server_takes_no_new_flows(self):
        mark = self.lab.procs.mark("agent")
        self.stop_server(1)  # the backend stays in the file
        self.wait_statuses({BACKENDS[0]: 0, BACKENDS[1]: 1, BACKENDS[2]: 1})
        self.wait_verdicts(1, mark)
        log = self.lab.procs.log_since("agent", mark)
        self.assertRegex(log, r"event=backend_health service=\"lab/web\" backend=10\.10\.2\.11:80 "
                              r"status=unhealthy detail=\"connect: Connection refused\"")
        counts = self.spread(60)  # raises on any failed request
        self.assertEqual(sum(counts.values()), 60)
        self.assertNotIn("b1", counts, counts)
        self.assertEqual(set(counts), {"b2", "b3"}, counts)

    def test_b_a_server_that_comes_back_gets_new_flows_again(self):
        mark = self.lab.procs.mark("agent")
        self.stop_server(1)
        self.wait_verdicts(1, mark)
        mark = self.lab.procs.mark("agent")
        self.start_server(1)
        self.wait_statuses({b: 1 for b in BACKENDS})
        self.wait_verdicts(0, mark)
        counts = self.spread(60)
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)

    def test_c_all_servers_down_fails_open(self):
        mark = self.lab.procs.mark("agent")
        for i in (1, 2, 3):
            self.stop_server(i)
        self.wait_verdicts(3, mark)
        self.assertIn("every backend is unhealthy; failing open to them",
                      self.lab.procs.log_since("agent", mark))
        # Fail open: new connections still go to every backend (and fail: no server).
        before = {b: self.new_flows(b) for b in BACKENDS}
        self.lab.procs.start("loop", in_ns(self.lab.ns_name("client"), *module(
            "e2e.lab.client", "loop", f"http://{NAT_VIP}/id", "60")))
        wait_until(lambda: all(self.new_flows(b) > before[b] for b in BACKENDS), 20,
                   "new flows to all three backends while all are unhealthy")
        self.lab.procs.kill("loop")
        # One server back: once it is healthy again, it takes every request.
        mark = self.lab.procs.mark("agent")
        self.start_server(2)
        self.wait_statuses({BACKENDS[1]: 1})
        self.wait_verdicts(2, mark)
        self.assertEqual(self.spread(20), {"b2": 20})

    def test_d_a_bad_health_check_is_refused_and_the_rest_applies(self):
        mark = self.lab.procs.mark("agent")
        try:
            self.lab.apply(bad_check=True)
            log = self.lab.procs.log_since("agent", mark)
            self.assertRegex(log, r"event=service_refused service=\"lab/bad\" reason=invalid_argument "
                                  r"msg=\"service 'lab/bad': line \d+: services\[1\]\.healthCheck\."
                                  r"interval: '2' is not a duration such as 500ms or 2s\"")
            self.assertEqual(self.lab.metric("flowlb_agent_service_refused", service="lab/bad"), 1)
            self.assertEqual(set(self.spread(30)), {"b1", "b2", "b3"})
            self.assertEqual(self.lab.metric("flowlb_agent_health_targets"), 3)
        finally:
            self.lab.apply()


if __name__ == "__main__":
    unittest.main()

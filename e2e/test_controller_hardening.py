"""flowlb-controller against the Kubernetes API test server when the cluster misbehaves.

Regression tests for issues 17 (10, 11, 12, 13) and 13 (5): an API server restored
from a backup (resourceVersions go back), a Service that leaves our class while
its status shows our address, names that are not URL-safe, API warnings, and a
missing Lease namespace. Each test failed before its fix. Same harness as
e2e/test_controller_k8s.py (the chart's RBAC held by the test server):

    python3 -m unittest e2e.test_controller_hardening
"""
import re
import signal
import unittest
import urllib.error
import urllib.request

from e2e import test_controller_k8s as base
from e2e.lib.wait import wait_until
from e2e.test_controller_k8s import ingress, node, pool, service


def readyz(c):
    """(status code, body) of the controller's /readyz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(what, predicate, timeout=15):
    return wait_until(predicate, timeout, what)


OURS = ("flowlb.io/AddressAllocated", "flowlb.io/Programmed", "flowlb.io/Announced")


def our_conditions(svc):
    return [c for c in (svc or {}).get("status", {}).get("conditions", []) or []
            if c["type"] in OURS]


class HardeningTest(unittest.TestCase):
    RBAC_RECORD = "controller_hardening"
    setUp = base.ControllerTest.setUp
    new_server = base.ControllerTest.new_server
    tearDown = base.ControllerTest.tearDown
    start = base.ControllerTest.start
    svc = base.ControllerTest.svc
    events = base.ControllerTest.events

    # Issue 17.11: etcd restored from a backup. The controller resumed its
    # watches from versions the server no longer had, was answered "Too large
    # resource version" forever and never re-listed: deleted Services kept
    # their VIPs, and new ones never got a status.
    def test_api_server_restored_from_backup_is_relisted(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("kept"))
        c = self.start()
        kept_ip = wait_for("kept's address", lambda: ingress(self.svc("kept")))
        wait_for("pool status", lambda: (self.server.get("ippools", None, "public")
                                         .get("status") or {}).get("used") == 1)
        backup = self.server.snapshot()
        self.server.create("services", service("lost"))  # after the backup: lost in the restore
        wait_for("lost's address", lambda: ingress(self.svc("lost")))
        for i in range(3):  # versions move on past the backup's
            self.server.create("services", service(f"later{i}"))
            wait_for(f"later{i}", lambda i=i: ingress(self.svc(f"later{i}")))
        self.server.restore(backup)
        self.assertIsNone(self.svc("lost"))
        self.server.create("services", service("fresh"))  # at a lower version than we saw
        wait_for("fresh served after the restore", lambda: ingress(self.svc("fresh")), timeout=20)
        self.assertEqual(ingress(self.svc("kept")), kept_ip)
        # Only kept and fresh hold addresses now: the pool says so.
        wait_for("pool usage after the restore", lambda: (
            self.server.get("ippools", None, "public").get("status") or {}).get("used") == 2,
            timeout=20)
        self.assertRegex(c.output(), r"event=(watch_resource_version_too_large|"
                                     r"resource_version_regression)")
        self.assertGreaterEqual(c.metric("flowlb_controller_watch_restarts_total",
                                         reason="too_large_resource_version"), 1)

    # Issue 17.12: a Service whose class changed kept flowlb's address and
    # annotation; the address went to a newer Service and two showed it.
    def test_service_that_leaves_us_is_cleared_before_its_address_is_reused(self):
        self.server.create("ippools", pool("one", ["192.0.2.1/32"]))
        self.server.create("services", service("first"))
        self.start()
        ip = wait_for("first's address", lambda: ingress(self.svc("first")))
        wait_for("pool annotation", lambda: self.svc("first")["metadata"]["annotations"]
                 .get("flowlb.io/ip-allocated-from-pool") == "one")
        self.server.create("services", service("second"))
        wait_for("second waits", lambda: (base.condition(self.svc("second")) or {})
                 .get("reason") == "PoolExhausted")
        moved = self.svc("first")
        moved["spec"]["loadBalancerClass"] = "example.com/other"
        self.server.update("services", moved)
        wait_for("second gets the address", lambda: ingress(self.svc("second")) == ip)
        first = self.svc("first")
        self.assertEqual(ingress(first), [])
        self.assertEqual(our_conditions(first), [])
        self.assertNotIn("flowlb.io/ip-allocated-from-pool", first["metadata"]["annotations"])
        # Never two at once: first's clearing writes (status, then annotation)
        # all come before the write that gives second the address, its last.
        log = [r["path"] for r in self.server.request_log() if r["method"] == "PATCH"
               and r["code"] == 200]
        last_first = max(i for i, p in enumerate(log) if "/services/first" in p)
        last_second = max(i for i, p in enumerate(log) if p.endswith("/services/second/status"))
        self.assertLess(last_first, last_second, log)
        # And the type change to ClusterIP is treated the same way.
        back = self.svc("second")
        back["spec"]["type"] = "ClusterIP"
        self.server.update("services", back)
        wait_for("second cleared", lambda: not ingress(self.svc("second"))
                 and not our_conditions(self.svc("second")))

    # Issue 17.13: a name "q?x=1" made the controller PATCH /services/q with
    # the query "x=1/status".
    def test_names_are_url_encoded_in_request_paths(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("q?x=1"))
        self.start()
        wait_for("q?x=1 served", lambda: ingress(self.server.get("services", "default", "q?x=1")))
        writes = [r for r in self.server.request_log() if r["method"] in base.WRITES
                  and "/services/" in r["path"]]
        self.assertTrue(writes)
        self.assertTrue(all(r["query"] == "" for r in writes), writes)

    # Issue 17.10: the client's pool had 4 threads and each of the 4 watches
    # blocked one while reading a long event. Four large events at once left
    # every pool thread waiting for data only a pool thread could deliver: the
    # controller hung silently, still serving metrics and gRPC.
    def test_four_simultaneous_large_watch_events_do_not_hang_the_controller(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/28"]))
        self.server.create("services", service("first"))
        self.server.create("endpointslices", base.slice_("first"))
        c = self.start()
        wait_for("first served", lambda: ingress(self.svc("first")))
        big = "x" * (64 * 1024)
        objs = [("services", self.svc("first")),
                ("endpointslices", self.server.get("endpointslices", "default", "first-x")),
                ("nodes", self.server.get("nodes", None, "node-a")),
                ("ippools", self.server.get("ippools", None, "public"))]
        for round_ in range(3):
            for kind, obj in objs:
                obj["metadata"].setdefault("annotations", {})["example.com/big"] = big + str(round_)
            # The four events arrive together on the four watches.
            for kind, obj in objs:
                obj = self.server.update(kind, obj)
        self.server.create("services", service("after"))
        wait_for("a new Service served after four large events", lambda: ingress(self.svc("after")),
                 timeout=20)
        self.assertIsNone(c.proc.poll())

    # Issue 13.5: "Warning: 299 ... unknown field ipMode" (Kubernetes before
    # 1.29) was ignored. Each distinct warning is logged once and counted.
    def test_api_warnings_are_logged_once_and_counted(self):
        self.server.stop()
        self.new_server(drop_ip_mode=True)
        self.server.create("nodes", node("node-a"))
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        for i in range(3):
            self.server.create("services", service(f"s{i}"))
        c = self.start()
        for i in range(3):
            wait_for(f"s{i}", lambda i=i: ingress(self.svc(f"s{i}")))
        lines = re.findall(r".*event=api_warning.*", c.output())
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("[warning]", lines[0])
        self.assertIn("ipMode", lines[0])
        self.assertEqual(c.metric("flowlb_controller_api_warnings_total"), 1)

    # Issue 13.5: a missing Lease namespace left the controller silent: it
    # never led, and said so only at debug level.
    def test_missing_lease_namespace_is_an_error_the_operator_sees(self):
        self.server.fail_next(1000, 404, method="POST", path_contains="/leases")
        c = self.start()
        line = wait_for("error logged", lambda: re.search(
            r"\[error\] event=leader_election_failed .*namespace flowlb-system does not exist",
            c.output()))
        self.assertTrue(line)
        self.assertEqual(c.metric("flowlb_controller_leader"), 0)
        self.assertEqual(c.metric("flowlb_controller_leader_election_problem"), 1)
        self.assertIn("leader=false", re.findall(r"event=desired_state .*", c.output())[-1])
        # ... and readiness says what the operator must fix.
        code, body = readyz(c)
        self.assertEqual(code, 503, body)
        self.assertRegex(body, r"\[-\]leader-election failed: .*flowlb-system")
        c.stop(signal.SIGTERM)


if __name__ == "__main__":
    unittest.main(verbosity=2)

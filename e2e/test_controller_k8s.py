"""End-to-end tests of flowlb-controller against the Kubernetes API test server.

The controller binary runs as a user runs it (--source=kubernetes with a
kubeconfig); the test server (e2e/k8s/apiserver.py) speaks the real API
protocol and injects faults. Every assertion is on what a cluster user would
see: Service status, annotations, Events, IPPool status, which instance wrote.
Each test starts its own server and controllers (metrics on free ports), so
tests run alone, in any order, and beside another run of the suite:

    python3 -m unittest e2e.test_controller_k8s.ControllerTest.test_bad_token_is_reported

The controller runs as the chart's ServiceAccount, held to the chart's RBAC
(rendered with helm) by the test server: a call the rules do not allow fails
the test, and every rule used is recorded for e2e/rbac_minimal_test.py.
"""
import base64
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
import urllib.request

from e2e.k8s import chart_rbac
from e2e.k8s.apiserver import ApiServer
from e2e.lib import prom
from e2e.lib.outcome import test_failed
from e2e.lib.paths import build_dir, controller_binary
from e2e.lib.proc import free_port
from e2e.lib.wait import wait_until

CLASS = "flowlb.io/lb"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
IGNORE = (prom.MetricAbsent,)  # a metrics endpoint not up yet, a series not created yet


def service(name, ns="default", cls=CLASS, ports=((80, "TCP"),), annotations=None, labels=None,
            lb_ip=None, families=None, policy=None, etp=None, status_ips=None):
    spec = {"type": "LoadBalancer",
            "ports": [{"name": f"p{p}", "port": p, "protocol": proto} for p, proto in ports]}
    if cls:
        spec["loadBalancerClass"] = cls
    if lb_ip:
        spec["loadBalancerIP"] = lb_ip
    if families:
        spec["ipFamilies"] = families
    if policy:
        spec["ipFamilyPolicy"] = policy
    if etp:
        spec["externalTrafficPolicy"] = etp
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations or {},
                        "labels": labels or {}},
           "spec": spec}
    if status_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in status_ips]}}
    return obj


def slice_(svc, ns="default", endpoints=(("10.1.0.1", "node-a", True, True, False),), port=8080):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": svc + "-x", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "p80", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "nodeName": n,
                           "conditions": {"ready": r, "serving": s, "terminating": t}}
                          for a, n, r, s, t in endpoints]}


def pool(name, addresses, **spec):
    return {"apiVersion": "flowlb.io/v1alpha1", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"addresses": addresses, **spec}}


def node(name, ready=True):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class Controller:
    """One flowlb-controller process, stopped by pid.

    Watches last the product's default (300 s): a test then fails if an event
    is handed over only when its watch ends, which short test watches hid."""

    def __init__(self, server, tmp, token="tok-a", identity="ctl-a", extra=(), ca_pem=None,
                 client_cert=None, plaintext=True, grpc="127.0.0.1:0", watch_timeout=300):
        self.metrics_port = free_port()
        self.identity = identity
        cfg = os.path.join(tmp, f"kubeconfig-{identity}")
        cluster = {"server": server.url}
        if ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
        user = {"token": token} if token else {}
        if client_cert:
            user["client-certificate-data"] = base64.b64encode(client_cert[0]).decode()
            user["client-key-data"] = base64.b64encode(client_cert[1]).decode()
        with open(cfg, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "t",
                       "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
                       "clusters": [{"name": "c", "cluster": cluster}],
                       "users": [{"name": "u", "user": user}]}, f)
        self.log_path = os.path.join(tmp, f"controller-{identity}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [controller_binary(), "--source", "kubernetes", "--kubeconfig", cfg,
             *(["--plaintext"] if plaintext else []),
             "--identity", identity, "--metrics-address", f"127.0.0.1:{self.metrics_port}",
             "--grpc-address", grpc,
             "--lease-namespace", "flowlb-system", "--lease-duration", "3s",
             "--lease-renew-deadline", "2s", "--lease-retry-period", "1s",
             "--watch-timeout-seconds", str(watch_timeout), "--kube-api-qps", "500", "--kube-api-burst", "500",
             *extra],
            stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    def metric(self, name, **labels):
        return prom.value(self.metrics(), name, **labels)

    def reconciled(self, version, timeout=15):
        """Waits until the controller has computed a desired state from a cache
        at `version` or later (its event=desired_state line)."""
        return wait_until(lambda: any(int(v) >= int(version) for v in re.findall(
            r"event=desired_state version=(\d+)", self.output())), timeout,
            f"{self.identity} reconciling version {version}",
            context=lambda: self.output()[-2000:])

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def ingress(svc):
    return [i.get("ip") for i in (svc or {}).get("status", {}).get("loadBalancer", {})
            .get("ingress", []) or []]


def condition(svc):
    for c in (svc or {}).get("status", {}).get("conditions", []) or []:
        if c["type"] == "flowlb.io/AddressAllocated":
            return c
    return None


def setUpModule():
    # This run's RBAC usage only (e2e/rbac_minimal_test.py reads it).
    try:
        os.remove(os.path.join(build_dir(), "e2e-rbac", "controller_k8s.json"))
    except FileNotFoundError:
        pass


class ControllerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="flowlb-k8s-e2e-")
        self.controllers = []
        self.new_server()
        for n in ("node-a", "node-b"):
            self.server.create("nodes", node(n))

    def new_server(self, mode="default", drop=None, **kw):
        """An API server holding the chart's RBAC; the controller's ServiceAccount tokens (one per
        instance, so the request log tells them apart) stay the same across restarts."""
        kw.setdefault("tokens", ("tok-a", "tok-b"))
        self.server = ApiServer(bookmark_interval=0.5, **kw).start()
        chart_rbac.load(self.server, mode, drop)
        if not hasattr(self, "sa_tokens"):
            self.sa_tokens = {}
        for who in ("a", "b"):
            self.sa_tokens[who] = self.server.issue_token(
                chart_rbac.NAMESPACE, chart_rbac.CONTROLLER_SA, token=self.sa_tokens.get(who))

    def tearDown(self):
        for c in self.controllers:
            c.stop(signal.SIGKILL)
        chart_rbac.record_usage(self.server, build_dir(),
                                getattr(self, "RBAC_RECORD", "controller_k8s"))
        forbidden = [r for r in self.server.request_log() if r["code"] == 403]
        self.server.stop()
        if test_failed(self):
            for c in self.controllers:
                print(f"--- {c.identity} log (tail) ---\n" + c.output()[-4000:], file=sys.stderr)
            print("--- API requests (last 40) ---", file=sys.stderr)
            for r in self.server.request_log()[-40:]:
                print(f"{r['t']:.3f} {r['method']} {r['path']}?{r.get('query', '')} {r.get('code')}",
                      file=sys.stderr)
        shutil.rmtree(self.tmp, ignore_errors=True)
        # The chart's RBAC must allow every call the controller makes.
        if not getattr(self, "expect_forbidden", False):
            self.assertEqual([(r["method"], r["path"]) for r in forbidden], [],
                             "the chart's RBAC refused calls of the controller")

    def start(self, **kw):
        kw.setdefault("token", self.sa_tokens["a"])
        c = Controller(self.server, self.tmp, **kw)
        self.controllers.append(c)
        return c

    def svc(self, name, ns="default"):
        return self.server.get("services", ns, name)

    def events(self, name, reason=None):
        return [e for e in self.server.list("events")
                if e["involvedObject"]["name"] == name and (reason is None or e["reason"] == reason)]

    # -- the main job ------------------------------------------------------

    def test_allocates_writes_status_and_leaves_other_classes_alone(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("web"))
        self.server.create("endpointslices", slice_("web"))
        self.server.create("services", service("theirs", cls="example.com/other-lb"))
        self.server.create("services", service("classless", cls=None))
        c = self.start()
        web = wait_until(lambda: ingress(self.svc("web")) and self.svc("web"), 15, "web's address")
        ip = ingress(web)[0]
        self.assertTrue(ip.startswith("192.0.2."), ip)
        self.assertEqual(web["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP")
        cond = condition(web)
        wait_until(lambda: self.svc("web")["metadata"]["annotations"]
                   .get("flowlb.io/ip-allocated-from-pool") == "public", 15, "pool annotation")
        self.assertEqual((cond["status"], cond["reason"]), ("True", "Allocated"))
        self.assertIn(ip, cond["message"])
        ev = wait_until(lambda: self.events("web", "IPAllocated"), 15, "IPAllocated event")
        self.assertEqual(ev[0]["type"], "Normal")
        self.assertEqual(ev[0]["involvedObject"]["uid"], web["metadata"]["uid"])
        wait_until(lambda: (self.server.get("ippools", None, "public")
                            .get("status", {}).get("used")) == 1, 15, "IPPool status")
        self.assertEqual(self.server.get("ippools", None, "public")["status"]["free"], 7)
        self.assertEqual(c.metric("flowlb_controller_leader"), 1)
        self.assertGreaterEqual(c.metric("flowlb_controller_services", state="satisfied"), 1)
        # A new Service is served as soon as it appears; a deleted one frees its address.
        web2 = self.server.create("services", service("web2"))
        ip2 = wait_until(lambda: ingress(self.svc("web2")), 15, "web2's address")[0]
        self.assertNotEqual(ip2, ip)
        # Services of other classes (and without one, no --default-class) are
        # never touched: not by the reconcile that served web2, created after them.
        c.reconciled(web2["metadata"]["resourceVersion"])
        for other in ("theirs", "classless"):
            self.assertEqual(ingress(self.svc(other)), [])
            self.assertFalse([r for r in self.server.request_log()
                              if r["method"] in WRITES and f"/services/{other}" in r["path"]])
        self.assertEqual(self.events("theirs"), [])
        self.server.delete("services", "default", "web")
        wait_until(lambda: self.server.get("ippools", None, "public")["status"]["used"] == 1
                   and self.server.get("ippools", None, "public")["status"]["free"] == 7, 15,
                   "pool usage drops")

    def test_default_class_serves_classless_services(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("classless", cls=None))
        self.server.create("services", service("theirs", cls="example.com/other-lb"))
        c = self.start(extra=("--default-class",))
        wait_until(lambda: ingress(self.svc("classless")), 15, "classless gets an address")
        # Another classless Service, served once a reconcile after theirs ran.
        later = self.server.create("services", service("later", cls=None))
        wait_until(lambda: ingress(self.svc("later")), 15, "a later classless Service served")
        c.reconciled(later["metadata"]["resourceVersion"])
        self.assertEqual(ingress(self.svc("theirs")), [])
        self.assertFalse([r for r in self.server.request_log()
                          if r["method"] in WRITES and "/services/theirs" in r["path"]])

    def test_problems_become_warning_events_and_false_conditions(self):
        self.server.create("ippools", pool("tiny", ["192.0.2.8/31"]))  # two addresses
        self.server.create("services", service("outside", lb_ip="198.51.100.7"))
        self.server.create("services", service("badmode", annotations={
            "flowlb.io/forwarding-mode": "teleport"}))
        self.server.create("services", service("nopool", annotations={"flowlb.io/pool": "gold"}))
        self.server.create("services", service("a"))
        self.server.create("services", service("b"))
        c = self.start()

        def check(name, reason):
            cond = condition(self.svc(name))
            return cond and cond["status"] == "False" and cond["reason"] == reason and cond
        cond = wait_until(lambda: check("outside", "RequestedIPNotInPool"), 15, "outside's condition")
        self.assertIn("198.51.100.7", cond["message"])
        wait_until(lambda: check("nopool", "UnknownPool"), 15, "nopool's condition")
        wait_until(lambda: self.events("badmode", "InvalidAnnotation"), 15, "InvalidAnnotation event")
        ev = wait_until(lambda: self.events("outside", "RequestedIPNotInPool"), 15, "warning")
        self.assertEqual(ev[0]["type"], "Warning")
        self.assertIn("198.51.100.7", ev[0]["message"])
        # Everything else is still served: the pool has two addresses for
        # a, b and badmode (bad annotation: reported, rest of it served).
        served = wait_until(lambda: (lambda got: len(got) == 2 and got)(
            [n for n in ("a", "b", "badmode") if ingress(self.svc(n))]), 15,
            "two of a/b/badmode served")
        starved = ({"a", "b", "badmode"} - set(served)).pop()
        wait_until(lambda: check(starved, "PoolExhausted"), 15, "exhausted condition")
        # Deduplicated: reconciles triggered by unrelated changes post no new Events.
        before = len(self.server.list("events"))
        for i in range(5):
            self.server.create("endpointslices", slice_(f"unrelated{i}"))
        # A sentinel problem, reported by a reconcile that saw those changes:
        # Events are posted in order, so once its Event is in, any Event the
        # unrelated changes caused is in too.
        sentinel = self.server.create("services", service("sentinel", annotations={
            "flowlb.io/pool": "gold"}))
        c.reconciled(sentinel["metadata"]["resourceVersion"])
        wait_until(lambda: self.events("sentinel", "UnknownPool"), 15, "the sentinel's Event")
        self.assertEqual(len([e for e in self.server.list("events")
                              if e["involvedObject"]["name"] != "sentinel"]), before)
        self.assertEqual(self.events("outside", "RequestedIPNotInPool")[0].get("count", 1), 1)
        # Fixing the problem clears it.
        fixed = self.svc("outside")
        fixed["spec"].pop("loadBalancerIP")
        # (a freed address goes to the oldest waiting Service, so free two)
        self.server.delete("services", "default", served[0])
        self.server.delete("services", "default", starved)
        self.server.update("services", fixed)
        wait_until(lambda: ingress(self.svc("outside")), 15, "outside served after the fix")
        self.assertEqual(condition(self.svc("outside"))["status"], "True")
        self.assertGreater(c.metric("flowlb_controller_events_total", type="Warning"), 0)
        # A problem that goes away and comes back: the same Event counts it (a PATCH).
        for name in ("tiny", "gold"):
            svc = self.svc("nopool")
            svc["metadata"]["annotations"]["flowlb.io/pool"] = name
            c.reconciled(self.server.update("services", svc)["metadata"]["resourceVersion"])
        wait_until(lambda: self.events("nopool", "UnknownPool")[0].get("count", 1) >= 2, 15,
                   "the same Event counted twice")
        self.assertEqual(len(self.events("nopool", "UnknownPool")), 1)

    def test_an_invalid_pool_says_why_and_so_does_the_service(self):
        """Issue 10: a server without the CRD's validation accepted [not-an-ip, 10.0.0.0/33] and the
        Service naming the pool was told it "does not exist". The pool's condition names each bad
        entry, and the Service's Event and condition name the reason."""
        self.server.create("ippools", pool("bad", ["not-an-ip", "10.0.0.0/33"]))
        self.server.create("ippools", pool("mixed", ["192.0.2.0/30", "192.0.2.9-192.0.2.1"]))
        self.server.create("services", service("web", annotations={"flowlb.io/pool": "bad"}))
        self.start()

        def valid(name):
            st = (self.server.get("ippools", None, name) or {}).get("status") or {}
            return next((c for c in st.get("conditions") or () if c["type"] == "flowlb.io/Valid"), None)
        cond = wait_until(lambda: valid("bad"), 15, "bad's condition")
        self.assertEqual((cond["status"], cond["reason"]), ("False", "InvalidAddresses"))
        self.assertIn("'not-an-ip'", cond["message"])
        self.assertIn("'10.0.0.0/33'", cond["message"])
        mixed = wait_until(lambda: valid("mixed"), 15, "mixed's condition")
        self.assertEqual(mixed["status"], "False")
        self.assertIn("'192.0.2.9-192.0.2.1'", mixed["message"])
        self.assertEqual(self.server.get("ippools", None, "mixed")["status"]["free"], 4)
        ev = wait_until(lambda: self.events("web", "InvalidPool"), 15, "the Service's Event")
        self.assertEqual(ev[0]["type"], "Warning")
        self.assertIn("'not-an-ip'", ev[0]["message"])
        self.assertNotIn("does not exist", ev[0]["message"])
        self.assertEqual(condition(self.svc("web"))["reason"], "InvalidPool")
        # Fixed: the condition turns True and the Service is served.
        fixed = self.server.get("ippools", None, "bad")
        fixed["spec"]["addresses"] = ["192.0.2.16/30"]
        self.server.update("ippools", fixed)
        wait_until(lambda: (valid("bad") or {}).get("status") == "True", 15, "bad valid")
        wait_until(lambda: ingress(self.svc("web")), 15, "web served")

    def test_restart_keeps_every_allocation_and_never_steals(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/28"]))
        for i in range(6):
            self.server.create("services", service(f"s{i}"))
        c = self.start()
        before = {f"s{i}": wait_until(lambda i=i: ingress(self.svc(f"s{i}")), 15, f"s{i}")
                  for i in range(6)}
        self.assertEqual(len({tuple(v) for v in before.values()}), 6, before)
        c.stop()
        # While it is down: a Service that claims s0's address in its status
        # (as if another tool wrote it) and new Services.
        taken = before["s0"][0]
        self.server.create("services", service("squatter", status_ips=[taken]))
        for i in range(6, 9):
            self.server.create("services", service(f"s{i}"))
        self.start(identity="ctl-a2")
        for i in range(6, 9):
            wait_until(lambda i=i: ingress(self.svc(f"s{i}")), 15, f"s{i} after restart")
        # The squatter's claim is reported, not honoured at s0's expense: it
        # gets an address of its own (both decided from the whole cache).
        ev = wait_until(lambda: self.events("squatter", "AddressConflict"), 15, "conflict reported")
        own = wait_until(lambda: [
            ip for ip in ingress(self.svc("squatter")) if ip != taken], 15, "squatter's own address")
        after = {f"s{i}": ingress(self.svc(f"s{i}")) for i in range(9)}
        for k, v in before.items():
            self.assertEqual(after[k], v, f"{k} changed its address across the restart")
        all_ips = [ip for v in after.values() for ip in v]
        self.assertEqual(len(all_ips), len(set(all_ips)), after)
        self.assertNotIn(taken, after["s6"] + after["s7"] + after["s8"])
        self.assertEqual(ev[0]["type"], "Warning")
        self.assertIn(taken, ev[0]["message"])
        self.assertNotIn(own[0], [v[0] for v in after.values()])

    def test_desired_state_follows_endpoints(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("web", etp="Local"))
        self.server.create("endpointslices", slice_("web", endpoints=[
            ("10.1.0.1", "node-a", True, True, False),
            ("10.1.0.2", "node-b", False, True, True),     # terminating, serving: drain
            ("10.1.0.3", "node-b", False, False, True)]))  # not serving: no traffic
        c = self.start(extra=("--dump-state",))
        out = wait_until(lambda: "backend 10.1.0.1:8080" in c.output() and c.output(), 15,
                         "dump with backends")
        self.assertIn("backend 10.1.0.1:8080 ACTIVE node=node-a", out)
        self.assertIn("backend 10.1.0.2:8080 DRAINING node=node-b", out)
        self.assertNotIn("10.1.0.3", out)
        # externalTrafficPolicy: Local: only node-a has a ready endpoint.
        self.assertRegex(out, r"announcer=node-a \(this node announces\)")
        self.assertNotIn("announcer=node-b", out)
        # An endpoint change reaches the desired state.
        s = self.server.get("endpointslices", "default", "web-x")
        s["endpoints"][0]["conditions"] = {"ready": False, "serving": True, "terminating": True}
        s["endpoints"].append({"addresses": ["10.1.0.4"], "nodeName": "node-b",
                               "conditions": {"ready": True}})
        self.server.update("endpointslices", s)
        wait_until(lambda: "backend 10.1.0.4:8080 ACTIVE node=node-b" in c.output(), 15,
                   "new desired state")
        self.assertIn("backend 10.1.0.1:8080 DRAINING node=node-a", c.output())

    def test_bgp_peers_and_advertisements_reach_the_nodes_they_select(self):
        """BGPPeer and BGPAdvertisement objects, read through the API and the
        chart's RBAC, become each node's peers (by nodeSelector) and the
        advertisements of the VIPs whose pool is selected (--dump-state shows
        what a BGP-capable agent is sent; controller/grpc/sync_link_test.cc
        shows an agent receiving it). A bad object is refused with its
        reason, and the others keep working."""
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("ippools", pool("l2only", ["198.51.100.0/29"]))
        for n, rack in (("node-a", "a"), ("node-b", "b")):  # the fixture's nodes, labelled
            obj = self.server.get("nodes", None, n) or node(n)
            obj["metadata"]["labels"] = {"rack": rack}
            (self.server.update if "resourceVersion" in obj["metadata"] else self.server.create)(
                "nodes", obj)
        self.server.create("services", service("web", lb_ip="192.0.2.1"))
        self.server.create("services", service("lan", lb_ip="198.51.100.1"))
        self.server.create("bgppeers", {
            "apiVersion": "flowlb.io/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "tor-a"},
            "spec": {"peerAddress": "10.0.0.1", "peerASN": 65000, "myASN": 65001,
                     "bfdProfile": {"transmitIntervalMs": 100, "receiveIntervalMs": 100},
                     "nodeSelector": {"matchLabels": {"rack": "a"}}}})
        self.server.create("bgppeers", {
            "apiVersion": "flowlb.io/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "broken"},
            "spec": {"peerAddress": "10.0.0.2", "peerASN": 0, "myASN": 65001}})
        self.server.create("bgpadvertisements", {
            "apiVersion": "flowlb.io/v1alpha1", "kind": "BGPAdvertisement",
            "metadata": {"name": "external"},
            "spec": {"ipPools": ["public"], "communities": ["65000:100"], "localPref": 200}})
        c = self.start(extra=("--dump-state",))
        out = wait_until(lambda: "bgp peer" in c.output() and c.output(), 15, "BGP in the dump")
        dump = out[out.rfind("services:"):]
        node_a = dump[dump.index("  node-a:"):dump.index("  node-b:")]
        node_b = dump[dump.index("  node-b:"):]
        self.assertIn("bgp peer tor-a 10.0.0.1 port=179 asn=65000 my_asn=65001 bfd=on", node_a)
        self.assertNotIn("bgp peer", node_b, "node-b is not in rack a")
        self.assertRegex(node_a, r"192\.0\.2\.1:80/tcp.*\n\s+bgp advertisements=external")
        self.assertNotRegex(node_a, r"198\.51\.100\.1:80/tcp.*\n\s+bgp advertisements",
                            "a pool no BGPAdvertisement selects stays L2")
        self.assertRegex(c.output(), r"event=object_rejected resource=bgppeers "
                                     r"msg=\"BGPPeer broken: spec\.peerASN must be in 1\.\.4294967295\"")
        # ... and on the object itself: a Warning Event kubectl describe shows.
        ev = wait_until(lambda: self.events("broken", "InvalidSpec"), 15,
                        "a Warning InvalidSpec Event on the refused BGPPeer")[0]
        self.assertEqual((ev["type"], ev["involvedObject"]["kind"], ev["metadata"]["namespace"]),
                         ("Warning", "BGPPeer", "default"))
        self.assertIn("spec.peerASN must be in 1..4294967295", ev["message"])
        wait_until(lambda: c.metric("flowlb_controller_bgp_vips") == 1
                   and c.metric("flowlb_controller_bgp_peered_nodes") == 1, 15,
                   "BGP gauges: one BGP VIP, one peered node", ignore=IGNORE)
        # A change: the peer now selects rack b, and node-b gets it.
        peer = self.server.get("bgppeers", None, "tor-a")
        peer["spec"]["nodeSelector"] = {"matchLabels": {"rack": "b"}}
        self.server.update("bgppeers", peer)

        def moved():
            o = c.output()
            d = o[o.rfind("services:"):]
            return "bgp peer tor-a" in d[d.index("  node-b:"):] and d
        d = wait_until(moved, 15, "the peer on node-b")
        self.assertNotIn("bgp peer", d[d.index("  node-a:"):d.index("  node-b:")])

    # -- faults --------------------------------------------------------------

    def test_watch_faults_recover_and_caches_converge(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/26"]))
        c = self.start()
        wait_until(lambda: c.metric("flowlb_controller_leader") == 1, 15, "leader", ignore=IGNORE)
        n = 0

        def new_service_is_served(what):
            nonlocal n
            n += 1
            name = f"after-{n}"
            self.server.create("services", service(name))
            wait_until(lambda: ingress(self.svc(name)), 20, f"{name} served after {what}")

        self.server.drop_watches()
        new_service_is_served("dropped watches")
        # Events that happen while nobody watches are replayed from the version.
        self.server.drop_watches()
        self.server.create("services", service("while-dropped"))
        wait_until(lambda: ingress(self.svc("while-dropped")), 15, "while-dropped served")
        # Compaction: resuming gets 410 Gone; the informers re-list.
        self.server.expire_resource_versions()
        self.server.create("services", service("during-compaction"))
        self.server.drop_watches()
        wait_until(lambda: c.metric("flowlb_controller_watch_restarts_total", reason="gone") >= 1,
                   15, "re-list after 410", ignore=IGNORE)
        wait_until(lambda: ingress(self.svc("during-compaction")), 15, "during-compaction served")
        new_service_is_served("410 Gone")
        # Server errors and throttling on lists and watches: backoff, then recovery.
        self.server.fail_next(4, 500, path_contains="/api/v1/services")
        self.server.fail_next(2, 429, path_contains="/apis/discovery.k8s.io", retry_after=1)
        self.server.drop_watches()
        new_service_is_served("500 and 429")
        # A garbage line in the stream: reported, resumed from the last good version.
        self.server.inject_garbage()
        new_service_is_served("garbage line")
        wait_until(lambda: c.metric("flowlb_controller_watch_restarts_total", reason="garbage") >= 1,
                   15, "garbage counted", ignore=IGNORE)
        # A slow API server.
        self.server.set_delay(0.3)
        new_service_is_served("slow responses")
        self.server.set_delay(0)
        # A deletion missed during an outage (history compacted meanwhile) is
        # noticed by the re-list, after the list's own failures.
        self.server.fail_next(5, 503, path_contains="/api/v1/services")
        self.server.delete("services", "default", "after-1")
        self.server.expire_resource_versions()
        self.server.drop_watches()
        wait_until(lambda: (self.server.get("ippools", None, "public").get("status") or {})
                   .get("used") == len([s for s in self.server.list("services") if ingress(s)]),
                   25, "pool usage reflects the deletion")
        # Conflicting writes: 409 on status -> re-read and retry.
        self.server.fail_next(2, 409, method="PATCH", path_contains="/status")
        new_service_is_served("409 conflicts")
        self.assertGreaterEqual(c.metric("flowlb_controller_status_writes_total",
                                         result="conflict"), 1)
        self.assertEqual(c.proc.poll(), None, "controller died")

    def test_unreachable_api_server_is_retried_not_fatal(self):
        port = self.server.port
        self.server.stop()
        c = self.start()

        def retried():  # one resource's list failed at least twice
            failed = re.findall(r"event=list_failed resource=(\w+) code=0", c.output())
            return any(failed.count(r) >= 2 for r in failed)
        wait_until(retried, 15, "a failed list retried", context=lambda: c.output()[-2000:])
        self.assertIsNone(c.proc.poll(), "controller exited while the API was down")
        self.assertRegex(c.output(), r"event=list_failed resource=\w+ code=0")
        self.new_server(port=port)
        self.server.create("nodes", node("node-a"))
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("web"))
        wait_until(lambda: ingress(self.svc("web")), 40, "served once the API is back")

    def test_bad_token_is_reported(self):
        c = self.start(token="wrong")
        wait_until(lambda: re.search(r"event=list_failed .*code=401", c.output()), 15, "401 logged")
        self.assertIsNone(c.proc.poll())

    # -- leader election -----------------------------------------------------

    def test_leader_election_only_the_leader_writes_and_handover(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/27"]))
        self.server.create("services", service("one"))
        a = self.start(token=self.sa_tokens["a"], identity="ctl-a")
        wait_until(lambda: a.metric("flowlb_controller_leader") == 1, 15, "a leads", ignore=IGNORE)
        b = self.start(token=self.sa_tokens["b"], identity="ctl-b")
        wait_until(lambda: ingress(self.svc("one")), 15, "one served")
        wait_until(lambda: "event=listed" in b.output(), 15, "b is up")
        self.server.create("services", service("two"))
        wait_until(lambda: ingress(self.svc("two")), 15, "two served")
        # b has found the lease held twice (its retry period is 1 s) and stays a follower.
        wait_until(lambda: len([r for r in self.server.request_log() if r["credential"] == self.sa_tokens["b"]
                                and "/leases" in r["path"]]) >= 2, 15, "b trying the lease twice")
        self.assertEqual(b.metric("flowlb_controller_leader"), 0)
        # Kill the leader without a goodbye: b takes over after the lease expires.
        t_kill = time.monotonic()
        a.stop(signal.SIGKILL)
        wait_until(lambda: b.metric("flowlb_controller_leader") == 1, 10, "b leads", ignore=IGNORE)
        took = time.monotonic() - t_kill
        self.assertLess(took, 6.0)
        self.server.create("services", service("three"))
        wait_until(lambda: ingress(self.svc("three")), 15, "three served by b")
        log = [r for r in self.server.request_log() if r["method"] in WRITES
               and "/leases" not in r["path"] and r["code"] < 400]
        by_a = [r for r in log if r["credential"] == self.sa_tokens["a"]]
        by_b = [r for r in log if r["credential"] == self.sa_tokens["b"]]
        self.assertTrue(by_a and by_b, "both instances should have led at some point")
        # Never both: every write of b comes after a's last one, and after a died.
        self.assertLess(max(r["t"] for r in by_a), min(r["t"] for r in by_b))
        self.assertGreater(min(r["t"] for r in by_b), t_kill)
        # b kept one's and two's addresses.
        self.assertEqual(len({ingress(self.svc(n))[0] for n in ("one", "two", "three")}), 3)

    def test_graceful_stop_hands_over_at_once(self):
        self.server.create("ippools", pool("public", ["192.0.2.0/27"]))
        a = self.start(token=self.sa_tokens["a"], identity="ctl-a")
        wait_until(lambda: a.metric("flowlb_controller_leader") == 1, 15, "a leads", ignore=IGNORE)
        b = self.start(token=self.sa_tokens["b"], identity="ctl-b")
        wait_until(lambda: "event=listed" in b.output(), 15, "b is up")
        t = time.monotonic()
        a.stop(signal.SIGTERM)  # releases the Lease
        wait_until(lambda: b.metric("flowlb_controller_leader") == 1, 10, "b leads", ignore=IGNORE)
        self.assertLess(time.monotonic() - t, 3.0)
        lease = self.server.get("leases", "flowlb-system", "flowlb-controller")
        self.assertEqual(lease["spec"]["holderIdentity"], "ctl-b")

    # -- RBAC ------------------------------------------------------------------

    def test_a_missing_rbac_rule_is_a_403_and_the_service_waits(self):
        """Without `patch services/status` the status write is refused (403, logged, counted) and
        the Service gets no address: the e2e suite fails when the chart lacks a rule."""
        self.server.stop()
        self.new_server(drop=lambda res, r: "services/status" in r.get("resources", ()))
        self.server.create("nodes", node("node-a"))
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("web"))
        c = self.start()
        wait_until(lambda: any(r["code"] == 403 and r["path"].endswith("/services/web/status")
                               for r in self.server.request_log()), 15, "the refused status write")
        wait_until(lambda: c.metric("flowlb_controller_status_writes_total", result="failed") >= 1,
                   15, "the failure counted", ignore=IGNORE)
        self.assertEqual(ingress(self.svc("web")), [])
        self.expect_forbidden = True

    def test_the_ca_is_generated_into_the_charts_secret_once_and_published(self):
        """tls.generate=controller (manifests/install.yaml): the chart renders an empty Secret and
        ConfigMap; the controller generates the CA into the Secret at first start, publishes its
        certificate for the agents, and a restarted controller keeps it."""
        self.server.stop()
        self.new_server(mode="ca-in-secret")
        for resource, obj in chart_rbac.objects("ca-in-secret", "templates/tls.yaml"):
            self.server.create(resource, obj)
        args = ("--ca-secret", "flowlb-ca", "--ca-bundle-configmap", "flowlb-ca-bundle",
                "--tls-server-name", "flowlb-controller.flowlb-system.svc")
        a = self.start(plaintext=False, extra=args)
        wait_until(lambda: "event=ca_generated" in a.output(), 15, "the CA generated",
                   context=lambda: a.output()[-2000:])

        def ca():
            secret = self.server.get("secrets", "flowlb-system", "flowlb-ca")
            bundle = self.server.get("configmaps", "flowlb-system", "flowlb-ca-bundle")
            return (base64.b64decode((secret.get("data") or {}).get("tls.crt", "")).decode(),
                    (bundle.get("data") or {}).get("ca.crt"))
        wait_until(lambda: ca()[1], 15, "the bundle published")
        crt, bundle = ca()
        self.assertIn("BEGIN CERTIFICATE", crt)
        self.assertEqual(bundle, crt)
        self.assertNotIn("PRIVATE KEY", bundle)
        a.stop()
        b = self.start(plaintext=False, extra=args, identity="ctl-b")
        wait_until(lambda: "event=ca_loaded" in b.output() and "event=grpc_listening" in b.output(),
                   15, "the CA loaded", context=lambda: b.output()[-2000:])
        self.assertEqual(ca(), (crt, crt), "a restart must keep the CA")

    # -- TLS -------------------------------------------------------------------

    def test_tls_with_ca_and_client_certificate(self):
        d = self.tmp

        def run(*cmd):
            subprocess.run(cmd, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt", "-subj", "/CN=flowlb-test-ca")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/srv.key",
            "-out", f"{d}/srv.csr", "-subj", "/CN=127.0.0.1")
        with open(f"{d}/san.ext", "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        run("openssl", "x509", "-req", "-in", f"{d}/srv.csr", "-CA", f"{d}/ca.crt", "-CAkey",
            f"{d}/ca.key", "-CAcreateserial", "-days", "1", "-out", f"{d}/srv.crt",
            "-extfile", f"{d}/san.ext")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/cli.key",
            "-out", f"{d}/cli.csr", "-subj", "/CN=flowlb-controller")
        run("openssl", "x509", "-req", "-in", f"{d}/cli.csr", "-CA", f"{d}/ca.crt", "-CAkey",
            f"{d}/ca.key", "-CAcreateserial", "-days", "1", "-out", f"{d}/cli.crt")
        self.server.stop()
        self.new_server(tokens=("tok-a",), tls_cert=f"{d}/srv.crt", tls_key=f"{d}/srv.key",
                        client_ca=f"{d}/ca.crt")
        self.assertTrue(self.server.url.startswith("https://"))
        self.server.create("nodes", node("node-a"))
        self.server.create("ippools", pool("public", ["192.0.2.0/29"]))
        self.server.create("services", service("web"))
        ca = open(f"{d}/ca.crt", "rb").read()
        cert = (open(f"{d}/cli.crt", "rb").read(), open(f"{d}/cli.key", "rb").read())
        self.start(token=None, ca_pem=ca, client_cert=cert, identity="tls")
        wait_until(lambda: ingress(self.svc("web")), 15, "served over TLS")
        writes = [r for r in self.server.request_log() if r["method"] in WRITES]
        self.assertTrue(writes and all(r["identity"] == "flowlb-controller" for r in writes))
        # A server certificate that the configured CA did not sign is refused.
        other_ca = self.tmp + "/other"
        os.makedirs(other_ca)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", f"{other_ca}/ca.key", "-out", f"{other_ca}/ca.crt", "-subj", "/CN=evil")
        bad = self.start(token="tok-a", ca_pem=open(f"{other_ca}/ca.crt", "rb").read(),
                         identity="badca")
        wait_until(lambda: re.search(
            r"event=list_failed .*code=0", bad.output()), 15, "TLS failure logged")
        self.assertFalse([r for r in self.server.request_log() if r["identity"] == "tok-a"])


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""Self-test of the Kubernetes API test server (apiserver.py).

Drives a started server over real HTTP with http.client, the way the
controller's client does: keep-alive connections, chunked watch streams read
line by line. Each test gets a fresh server. The TLS test needs the openssl
command. Its speed is a figure of bench/run.sh apiserver, not a test.
Usage (from the repository root): python3 -m unittest e2e.k8s.apiserver_test
"""
import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from e2e.k8s.apiserver import ApiServer
from e2e.lib.wait import wait_until

SVCS = "/api/v1/namespaces/default/services"
NODES = "/api/v1/nodes"
TOKEN = "test-token"


def svc(name, ns="default", labels=None, port=80, status=None):
    obj = {"metadata": {"name": name, "namespace": ns, "labels": labels or {}},
           "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]}}
    if status is not None:
        obj["status"] = status
    return obj


def node(name):
    return {"metadata": {"name": name}, "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}}


class Client:
    """One keep-alive connection; returns (code, parsed body, response)."""
    opened = []  # closed by tearDown

    def __init__(self, srv, token=TOKEN, context=None):
        if context:
            self.conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=10, context=context)
        else:
            self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        self.token = token
        Client.opened.append(self.conn)

    def __call__(self, method, path, body=None, ctype="application/json"):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None:
            body = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = ctype
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None, resp


class Watch:
    """A watch stream read chunk by chunk, checking the framing: one JSON line per chunk."""

    def __init__(self, srv, path, token=TOKEN, context=None):
        self.client = Client(srv, token, context)
        self.client.conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        self.resp = self.client.conn.getresponse()

    def line(self):
        """The next chunk; None at the terminating chunk; ConnectionError if the stream is cut."""
        size = self.resp.fp.readline()
        if not size:
            raise ConnectionError("stream cut without the terminating chunk")
        n = int(size, 16)
        data = self.resp.fp.read(n + 2)
        if n == 0:
            self.resp.close()  # the connection itself stays open for the next request
            return None
        assert data.endswith(b"\n\r\n") and data.count(b"\n") == 2, data
        return data[:-2]

    def next(self):
        line = self.line()
        return None if line is None else json.loads(line)

    def close(self):
        self.client.conn.close()


class ApiServerTest(unittest.TestCase):
    def setUp(self):
        self.srv = ApiServer(tokens=(TOKEN, "other-token"), bookmark_interval=0.2).start()
        self.c = Client(self.srv)

    def tearDown(self):
        self.srv.stop()
        for conn in Client.opened:
            conn.close()
        Client.opened.clear()

    def assertStatus(self, result, code, reason):
        got, body, _ = result
        self.assertEqual(got, code, body)
        self.assertEqual((body["kind"], body["apiVersion"], body["status"], body["code"], body["reason"]),
                         ("Status", "v1", "Failure", code, reason))
        return body

    def test_auth_identity_and_keepalive(self):
        self.assertStatus(Client(self.srv, token=None)("GET", SVCS), 401, "Unauthorized")
        self.assertStatus(Client(self.srv, token="wrong")("GET", SVCS), 401, "Unauthorized")
        self.assertEqual(Client(self.srv, token=None)("GET", "/version")[0], 200)
        self.assertEqual(Client(self.srv, token="other-token")("POST", SVCS, svc("a"))[0], 201)
        self.assertEqual(self.c("GET", SVCS + "/a")[0], 200)
        sock = self.c.conn.sock
        for _ in range(5):
            self.c("GET", SVCS)
        self.assertIs(self.c.conn.sock, sock, "the connection was not kept alive")
        log = self.srv.request_log()
        post = next(e for e in log if e["method"] == "POST")
        self.assertEqual((post["path"], post["code"], post["identity"]), (SVCS, 201, "other-token"))
        self.assertEqual([e["identity"] for e in log if e["code"] == 401], [None, None])
        self.assertEqual(log[-1]["identity"], TOKEN)
        self.assertTrue(all(a["t"] <= b["t"] for a, b in zip(log, log[1:])))

    def test_crud(self):
        code, obj, resp = self.c("POST", SVCS, svc("web"))
        self.assertEqual(code, 201)
        self.assertEqual(resp.getheader("Content-Type"), "application/json")
        meta = obj["metadata"]
        self.assertEqual((obj["kind"], obj["apiVersion"], meta["namespace"], meta["generation"]),
                         ("Service", "v1", "default", 1))
        self.assertRegex(meta["creationTimestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertRegex(meta["uid"], r"^[0-9a-f-]{36}$")
        self.assertEqual(int(meta["resourceVersion"]), self.srv.resource_version())
        self.assertEqual(self.c("GET", SVCS + "/web")[1], obj)

        self.assertStatus(self.c("POST", SVCS, svc("web")), 409, "AlreadyExists")
        self.assertStatus(self.c("POST", SVCS, b"{nope"), 400, "BadRequest")
        self.assertStatus(self.c("POST", SVCS, {"metadata": {}}), 400, "BadRequest")
        self.assertStatus(self.c("POST", "/api/v1/services", svc("x")), 405, "MethodNotAllowed")
        code, gen, _ = self.c("POST", SVCS, {"metadata": {"generateName": "gen-"}, "spec": {}})
        self.assertEqual(code, 201)
        self.assertRegex(gen["metadata"]["name"], r"^gen-[a-z0-9]{5}$")

        stale = dict(obj, spec={"type": "ClusterIP"})
        code, obj2, _ = self.c("PUT", SVCS + "/web", stale)
        self.assertEqual((code, obj2["spec"], obj2["metadata"]["generation"]), (200, {"type": "ClusterIP"}, 2))
        self.assertEqual(obj2["metadata"]["uid"], meta["uid"])
        body = self.assertStatus(self.c("PUT", SVCS + "/web", stale), 409, "Conflict")
        self.assertEqual(body["message"], 'Operation cannot be fulfilled on services "web": the object has been '
                         "modified; please apply your changes to the latest version and try again")
        unconditional = svc("web", port=81)
        unconditional["metadata"]["resourceVersion"] = ""
        self.assertEqual(self.c("PUT", SVCS + "/web", unconditional)[0], 200)
        self.assertStatus(self.c("PUT", SVCS + "/missing", svc("missing")), 404, "NotFound")

        patch = {"metadata": {"labels": {"team": "a"}}, "spec": {"ports": None, "externalTrafficPolicy": "Local"}}
        code, obj3, _ = self.c("PATCH", SVCS + "/web", patch, "application/merge-patch+json")
        self.assertEqual(code, 200)
        self.assertEqual(obj3["metadata"]["labels"], {"team": "a"})
        self.assertEqual(obj3["spec"], {"type": "LoadBalancer", "externalTrafficPolicy": "Local"})
        code, obj4, _ = self.c("PATCH", SVCS + "/web", {"metadata": {"annotations": {"k": "v"}}},
                               "application/strategic-merge-patch+json")
        self.assertEqual((code, obj4["metadata"]["generation"]), (200, obj3["metadata"]["generation"]))
        self.assertStatus(self.c("PATCH", SVCS + "/web", {"metadata": {"resourceVersion": "1"}},
                                 "application/merge-patch+json"), 409, "Conflict")
        self.assertStatus(self.c("PATCH", SVCS + "/web", [], "application/json-patch+json"),
                          415, "UnsupportedMediaType")

        code, body, _ = self.c("DELETE", SVCS + "/web")
        self.assertEqual((code, body["status"]), (200, "Success"))
        self.assertStatus(self.c("GET", SVCS + "/web"), 404, "NotFound")
        self.assertStatus(self.c("DELETE", SVCS + "/web"), 404, "NotFound")
        self.assertStatus(self.c("GET", "/api/v1/namespaces/default/replicationcontrollers"), 404,
                          "NotFound")
        self.assertStatus(self.c("GET", "/apis/flowlb.io/v1alpha1/namespaces/x/ippools"), 404, "NotFound")

    def test_status_subresource(self):
        self.srv.create("services", svc("lb", status={"loadBalancer": {}}))
        cur = self.c("GET", SVCS + "/lb")[1]
        ingress = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
        code, new, _ = self.c("PUT", SVCS + "/lb/status", dict(cur, spec={"type": "ClusterIP"}, status=ingress))
        self.assertEqual((code, new["status"], new["spec"], new["metadata"]["generation"]),
                         (200, ingress, cur["spec"], 1))
        code, new, _ = self.c("PUT", SVCS + "/lb", dict(new, spec={"type": "ClusterIP"}, status={}))
        self.assertEqual((new["status"], new["spec"], new["metadata"]["generation"]),
                         (ingress, {"type": "ClusterIP"}, 2))
        code, new, _ = self.c("PATCH", SVCS + "/lb/status", {"status": {"loadBalancer": {"ingress": None}},
                                                             "spec": {"type": "NodePort"}},
                              "application/merge-patch+json")
        self.assertEqual((code, new["status"], new["spec"]["type"]), (200, {"loadBalancer": {}}, "ClusterIP"))
        self.srv.create("nodes", node("n1"))
        code, n, _ = self.c("PATCH", NODES + "/n1/status", {"status": {"phase": "Running"}},
                            "application/merge-patch+json")
        self.assertEqual((code, n["status"]["phase"], n["kind"]), (200, "Running", "Node"))
        self.assertStatus(self.c("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l/status"),
                          404, "NotFound")

    def test_resource_paths(self):
        cases = [  # collection path, kind, apiVersion, namespaced, all-namespaces list path
            (SVCS, "Service", "v1", True, "/api/v1/services"),
            ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", "EndpointSlice",
             "discovery.k8s.io/v1", True, "/apis/discovery.k8s.io/v1/endpointslices"),
            ("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", "Lease",
             "coordination.k8s.io/v1", True, "/apis/coordination.k8s.io/v1/leases"),
            ("/api/v1/namespaces/default/events", "Event", "v1", True, "/api/v1/events"),
            (NODES, "Node", "v1", False, NODES),
            ("/apis/flowlb.io/v1alpha1/ippools", "IPPool", "flowlb.io/v1alpha1", False,
             "/apis/flowlb.io/v1alpha1/ippools"),
        ]
        for path, kind, api_version, namespaced, all_path in cases:
            with self.subTest(kind=kind):
                code, obj, _ = self.c("POST", path, {"metadata": {"name": "o"}, "spec": {}})
                self.assertEqual((code, obj["kind"], obj["apiVersion"]), (201, kind, api_version))
                self.assertEqual("namespace" in obj["metadata"], namespaced)
                self.assertEqual(self.c("GET", path + "/o")[1], obj)
                code, lst, _ = self.c("GET", all_path)
                self.assertEqual((code, lst["kind"], lst["apiVersion"]), (200, kind + "List", api_version))
                self.assertEqual(lst["items"], [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}])
                self.assertEqual(lst["metadata"]["resourceVersion"], str(self.srv.resource_version()))
        self.assertStatus(self.c("GET", "/api/v1/namespaces/default/nodes"), 404, "NotFound")
        self.assertStatus(self.c("GET", "/api/v1/endpointslices"), 404, "NotFound")

    def test_python_api(self):
        created = self.srv.create("services", svc("b", ns="ns1"))
        self.srv.create("services", svc("a", ns="ns2"))
        self.srv.create("services", svc("a", ns="ns1"))
        self.assertEqual(created["kind"], "Service")
        self.assertEqual([(o["metadata"]["namespace"], o["metadata"]["name"]) for o in self.srv.list("services")],
                         [("ns1", "a"), ("ns1", "b"), ("ns2", "a")])
        got = self.srv.get("services", "ns1", "b")
        got["spec"]["type"] = "mutated"
        self.assertEqual(self.srv.get("services", "ns1", "b")["spec"]["type"], "LoadBalancer")
        rv = self.srv.resource_version()
        w = Watch(self.srv, f"/api/v1/namespaces/ns1/services?watch=1&resourceVersion={rv}")
        wait_until(lambda: self.srv.open_watches() == 1, 3, "1 open watch(es)", interval=0.01)
        stale = dict(created, spec={"type": "ClusterIP"}, status={"x": 1})
        updated = self.srv.update("services", stale)  # the stale resourceVersion is ignored
        self.assertEqual((updated["metadata"]["uid"], updated["metadata"]["creationTimestamp"]),
                         (created["metadata"]["uid"], created["metadata"]["creationTimestamp"]))
        self.assertEqual(updated["status"], {"x": 1})
        self.srv.delete("services", "ns1", "b")
        self.assertIsNone(self.srv.get("services", "ns1", "b"))
        self.srv.create("nodes", node("n"))
        self.assertEqual(self.srv.get("nodes", None, "n")["metadata"]["name"], "n")
        ev = w.next()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["resourceVersion"]),
                         ("MODIFIED", updated["metadata"]["resourceVersion"]))
        ev = w.next()
        self.assertEqual((ev["type"], ev["object"]["spec"]["type"]), ("DELETED", "ClusterIP"))
        self.assertGreater(int(ev["object"]["metadata"]["resourceVersion"]),
                           int(updated["metadata"]["resourceVersion"]))
        w.close()

    def test_list_pagination_and_selector(self):
        for i in range(25):
            self.srv.create("services", svc(f"s{i:02}", ns="a", labels={"app": "x" if i % 5 == 0 else "y"}))
            self.srv.create("services", svc(f"s{i:02}", ns="b"))
        code, page, _ = self.c("GET", "/api/v1/namespaces/a/services?limit=10")
        rv = page["metadata"]["resourceVersion"]
        self.assertEqual((len(page["items"]), page["metadata"]["remainingItemCount"]), (10, 15))
        self.srv.create("services", svc("s99", ns="a"))  # after the snapshot: not on later pages
        self.srv.delete("services", "a", "s20")
        names = [o["metadata"]["name"] for o in page["items"]]
        while "continue" in page["metadata"]:
            token = page["metadata"]["continue"]
            code, page, _ = self.c("GET", f"/api/v1/namespaces/a/services?limit=10&continue={token}")
            self.assertEqual((code, page["metadata"]["resourceVersion"]), (200, rv))
            names += [o["metadata"]["name"] for o in page["items"]]
        self.assertEqual(names, [f"s{i:02}" for i in range(25)])
        self.assertEqual(len(self.c("GET", "/api/v1/services")[1]["items"]), 50)
        lst = self.c("GET", "/api/v1/services?labelSelector=app%3Dx")[1]
        self.assertEqual([o["metadata"]["name"] for o in lst["items"]], ["s00", "s05", "s10", "s15"])
        lst = self.c("GET", "/api/v1/namespaces/a/services?labelSelector=app!%3Dx,app&resourceVersion=0")[1]
        self.assertEqual(len(lst["items"]), 20)

        page = self.c("GET", "/api/v1/services?limit=5")[1]
        self.srv.expire_resource_versions()
        body = self.assertStatus(self.c("GET", f"/api/v1/services?limit=5&continue={page['metadata']['continue']}"),
                                 410, "Expired")
        self.assertEqual(body["message"], "The provided continue parameter is too old to display a consistent "
                         "list result. You can start a new list without the continue parameter.")

    def test_watch_initial_live_and_resume(self):
        self.srv.create("nodes", node("n1"))
        self.srv.create("nodes", node("n2"))
        w = Watch(self.srv, NODES + "?watch=true")
        self.assertEqual(w.resp.getheader("Transfer-Encoding"), "chunked")
        first = [w.next(), w.next()]
        self.assertEqual(sorted((e["type"], e["object"]["metadata"]["name"], e["object"]["kind"]) for e in first),
                         [("ADDED", "n1", "Node"), ("ADDED", "n2", "Node")])
        rv = self.srv.resource_version()
        self.c("POST", NODES, node("n3"))
        self.c("PATCH", NODES + "/n1", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json")
        self.c("DELETE", NODES + "/n2")
        live = [w.next() for _ in range(3)]
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in live],
                         [("ADDED", "n3"), ("MODIFIED", "n1"), ("DELETED", "n2")])
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in live]
        self.assertEqual(rvs, sorted(rvs))
        w.close()

        self.srv.create("services", svc("other-ns", ns="elsewhere"))
        r = Watch(self.srv, f"{NODES}?watch=true&resourceVersion={rv}")
        self.assertEqual([int(r.next()["object"]["metadata"]["resourceVersion"]) for _ in range(3)], rvs)
        r.close()
        self.srv.create("services", svc("s1"))
        # namespaced watch: the event in the other namespace is skipped
        r = Watch(self.srv, f"{SVCS}?watch=true&resourceVersion={rv}")
        ev = r.next()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("ADDED", "s1"))
        r.close()

        self.srv.expire_resource_versions()
        e = Watch(self.srv, f"{NODES}?watch=true&resourceVersion={rv}")
        ev = e.next()
        self.assertEqual(ev["type"], "ERROR")
        self.assertEqual({k: v for k, v in ev["object"].items() if k != "message"},
                         {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "reason": "Expired", "code": 410})
        self.assertRegex(ev["object"]["message"], rf"^too old resource version: {rv} \(\d+\)$")
        self.assertIsNone(e.next())  # clean end of stream
        self.assertEqual(e.client("GET", NODES)[0], 200)  # and the connection is reusable

    def test_restore_from_backup_and_encoded_names_and_ipmode_warnings(self):
        self.srv.create("nodes", node("n1"))
        backup = self.srv.snapshot()
        self.srv.create("nodes", node("n2"))
        ahead = self.srv.resource_version()
        self.srv.restore(backup)
        self.assertEqual(sorted(n["metadata"]["name"] for n in self.srv.list("nodes")), ["n1"])
        self.assertLess(self.srv.resource_version(), ahead)  # versions went back
        body = self.assertStatus(self.c("GET", f"{NODES}?watch=true&resourceVersion={ahead}"), 504,
                                 "Timeout")
        self.assertRegex(body["message"], r"^Too large resource version: \d+, current: \d+$")
        self.assertEqual(body["details"]["causes"][0]["reason"], "ResourceVersionTooLarge")
        # Percent-encoded names in paths, as kube-apiserver decodes them.
        self.srv.create("services", svc("q?x=1"))
        code, got, _ = self.c("GET", SVCS + "/q%3Fx%3D1")
        self.assertEqual((code, got["metadata"]["name"]), (200, "q?x=1"))
        # Before Kubernetes 1.29, ipMode is an unknown field: dropped with a warning.
        self.srv.drop_ip_mode = True
        code, got, resp = self.c("PATCH", SVCS + "/q%3Fx%3D1/status",
                                 {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1",
                                                                           "ipMode": "VIP"}]}}},
                                 "application/merge-patch+json")
        self.assertEqual(code, 200)
        self.assertEqual(got["status"]["loadBalancer"]["ingress"], [{"ip": "192.0.2.1"}])
        self.assertIn('unknown field \\"status.loadBalancer.ingress[0].ipMode\\"',
                      resp.getheader("Warning"))

    def test_watch_history_overflow(self):
        srv = ApiServer(history=5).start()
        try:
            for i in range(10):
                srv.create("nodes", node(f"n{i}"))
            w = Watch(srv, f"{NODES}?watch=true&resourceVersion=3")
            self.assertEqual(w.next()["object"]["code"], 410)
            w = Watch(srv, f"{NODES}?watch=true&resourceVersion={srv.resource_version() - 5}")
            self.assertEqual([w.next()["type"] for _ in range(5)], ["ADDED"] * 5)
        finally:
            srv.stop()

    def test_watch_bookmarks_and_timeout(self):
        self.srv.create("ippools", {"metadata": {"name": "p"}, "spec": {"cidrs": ["192.0.2.0/28"]}})
        start = time.monotonic()
        w = Watch(self.srv, "/apis/flowlb.io/v1alpha1/ippools?watch=1&allowWatchBookmarks=true&timeoutSeconds=1")
        events = []
        while (ev := w.next()) is not None:
            events.append(ev)
            if ev["type"] == "BOOKMARK" and len(events) == 3:
                self.srv.create("nodes", node("n"))  # bookmarks report the global RV
        self.assertLess(time.monotonic() - start, 1.6)
        self.assertEqual(events[0]["type"], "ADDED")
        bookmarks = [e["object"] for e in events if e["type"] == "BOOKMARK"]
        self.assertGreaterEqual(len(bookmarks), 3)
        self.assertEqual(bookmarks[0], {"kind": "IPPool", "apiVersion": "flowlb.io/v1alpha1",
                                        "metadata": {"resourceVersion": str(self.srv.resource_version() - 1)}})
        self.assertEqual(bookmarks[-1]["metadata"]["resourceVersion"], str(self.srv.resource_version()))
        self.assertEqual(w.client("GET", "/apis/flowlb.io/v1alpha1/ippools/p")[0], 200)

    def test_watch_label_selector(self):
        self.srv.create("services", svc("in", labels={"app": "x"}))
        self.srv.create("services", svc("out", labels={"app": "y"}))
        w = Watch(self.srv, SVCS + "?watch=true&labelSelector=app%3Dx")
        self.assertEqual(w.next()["object"]["metadata"]["name"], "in")
        for labels in ({"app": "x"}, {"app": "z"}):
            self.c("PATCH", SVCS + "/out", {"metadata": {"labels": labels}}, "application/merge-patch+json")
        self.c("PATCH", SVCS + "/in", {"spec": {"a": 1}}, "application/merge-patch+json")
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in (w.next(), w.next(), w.next())],
                         [("ADDED", "out"), ("DELETED", "out"), ("MODIFIED", "in")])

    def test_watch_chunk_framing(self):
        self.srv.create("nodes", node("n1"))
        self.srv.create("nodes", node("n2"))
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=5) as s:
            s.sendall(f"GET {NODES}?watch=true&timeoutSeconds=0.3 HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
            raw = b""
            while not raw.endswith(b"\r\n0\r\n\r\n"):
                raw += s.recv(65536)
        head, body = raw.split(b"\r\n\r\n", 1)
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertIn(b"Content-Type: application/json", head)
        chunks = []
        while body:
            size, body = body.split(b"\r\n", 1)
            chunks.append(body[:int(size, 16)])
            self.assertEqual(body[int(size, 16):int(size, 16) + 2], b"\r\n")
            body = body[int(size, 16) + 2:]
        self.assertEqual(chunks[-1], b"")
        for c in chunks[:-1]:  # one event per chunk, one line each
            self.assertTrue(c.endswith(b"\n") and c.count(b"\n") == 1)
            self.assertEqual(json.loads(c)["type"], "ADDED")
        self.assertEqual(len(chunks), 3)

    def test_drop_garbage_and_stop(self):
        watches = [Watch(self.srv, NODES + "?watch=true") for _ in range(3)]
        wait_until(lambda: self.srv.open_watches() == 3, 3, "3 open watch(es)", interval=0.01)
        self.srv.inject_garbage()
        for w in watches:
            self.assertEqual(w.line(), b"{this is not json\n")
        start = time.monotonic()
        self.srv.drop_watches()
        for w in watches:  # abrupt: no terminating chunk
            with self.assertRaises(ConnectionError):
                w.line()
        self.assertLess(time.monotonic() - start, 0.5)
        self.assertEqual(self.srv.open_watches(), 0)
        self.assertEqual(self.c("GET", NODES)[0], 200)  # the server itself carries on

        w = Watch(self.srv, NODES + "?watch=true")
        wait_until(lambda: self.srv.open_watches() == 1, 3, "1 open watch(es)", interval=0.01)
        w.close()  # a client hanging up is noticed
        wait_until(lambda: self.srv.open_watches() == 0, 1.0, "the hung-up watch noticed", interval=0.01)
        w = Watch(self.srv, NODES + "?watch=true")
        idle = Client(self.srv)
        idle("GET", NODES)
        start = time.monotonic()
        self.srv.stop()
        with self.assertRaises(ConnectionError):
            w.line()
        self.assertEqual(idle.conn.sock.recv(1), b"")  # idle keep-alive connections are closed too
        self.assertLess(time.monotonic() - start, 0.5)
        self.srv = ApiServer().start()  # for tearDown

    def test_fail_next_and_delay(self):
        self.srv.create("services", svc("s"))
        self.srv.fail_next(2, 429, method="PUT", path_contains="/services/s", retry_after=3)
        self.assertEqual(self.c("GET", SVCS + "/s")[0], 200)
        for _ in range(2):
            body = self.assertStatus(self.c("PUT", SVCS + "/s", svc("s")), 429, "TooManyRequests")
            self.assertIsNotNone(self.c.conn.sock)  # an error response keeps the connection
        self.assertEqual(body["details"], {"retryAfterSeconds": 3})
        self.assertEqual(self.srv.request_log()[-1]["code"], 429)
        self.assertEqual(self.c("PUT", SVCS + "/s", svc("s"))[0], 200)
        self.srv.fail_next(1, 429, retry_after=2)
        self.assertEqual(self.c("GET", NODES)[2].getheader("Retry-After"), "2")
        for code, reason in ((500, "InternalError"), (503, "ServiceUnavailable"), (504, "Timeout")):
            self.srv.fail_next(1, code, path_contains="watch=true")
            self.assertEqual(self.c("GET", NODES)[0], 200)
            self.assertStatus(self.c("GET", NODES + "?watch=true"), code, reason)

        self.srv.set_delay(0.3, "nodes")
        start = time.monotonic()
        self.c("GET", NODES)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        start = time.monotonic()
        self.c("GET", SVCS)
        self.assertLess(time.monotonic() - start, 0.2)
        self.srv.set_delay(0, "nodes")
        start = time.monotonic()
        self.c("GET", NODES)
        self.assertLess(time.monotonic() - start, 0.2)

    @unittest.skipUnless(subprocess.run(["which", "openssl"], capture_output=True).returncode == 0, "no openssl")
    def test_tls_and_client_certificates(self):
        with tempfile.TemporaryDirectory() as d:
            p = lambda name: os.path.join(d, name)  # noqa: E731
            key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

            def run(*args):
                subprocess.run(["openssl", *args], check=True, capture_output=True)
            run("req", "-x509", *key, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "1", "-subj", "/CN=ca")
            with open(p("san"), "w") as f:
                f.write("subjectAltName=IP:127.0.0.1\n")
            for name, extra in (("server", ["-extfile", p("san")]), ("client", [])):
                run("req", *key, "-keyout", p(f"{name}.key"), "-out", p(f"{name}.csr"),
                    "-subj", f"/CN=controller-{name}")
                run("x509", "-req", "-in", p(f"{name}.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                    "-CAcreateserial", "-days", "1", "-out", p(f"{name}.crt"), *extra)
            srv = ApiServer(tls_cert=p("server.crt"), tls_key=p("server.key"), client_ca=p("ca.crt")).start()
            stalled = socket.create_connection(("127.0.0.1", srv.port))  # never handshakes
            try:
                self.assertTrue(srv.url.startswith("https://127.0.0.1:"))
                plain = ssl.create_default_context(cafile=p("ca.crt"))
                with_cert = ssl.create_default_context(cafile=p("ca.crt"))
                with_cert.load_cert_chain(p("client.crt"), p("client.key"))
                self.assertEqual(Client(srv, token=None, context=with_cert)("GET", NODES)[0], 200)
                self.assertEqual(Client(srv, context=plain)("POST", NODES, node("n"))[0], 201)
                self.assertEqual(Client(srv, token=None, context=plain)("GET", NODES)[0], 401)
                self.assertEqual([e["identity"] for e in srv.request_log()], ["controller-client", TOKEN, None])
                w = Watch(srv, NODES + "?watch=true", context=plain)
                self.assertEqual(w.next()["type"], "ADDED")
                srv.drop_watches()
                with self.assertRaises((ConnectionError, ssl.SSLError)):
                    w.line()
            finally:
                stalled.close()
                srv.stop()

    def test_service_account_tokens_and_token_review(self):
        pod = {"metadata": {"name": "agent-x", "namespace": "sys"}, "spec": {"nodeName": "node-a"}}
        self.assertEqual(self.c("POST", "/api/v1/namespaces/sys/pods", pod)[0], 201)
        bound = self.srv.issue_token("sys", "agent", pod="agent-x", audiences=("flowlb",))
        review = lambda tok, aud: self.c("POST", "/apis/authentication.k8s.io/v1/tokenreviews",  # noqa: E731
                                         {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                          "spec": {"token": tok, "audiences": aud}})
        code, body, _ = review(bound, ["flowlb"])
        self.assertEqual(code, 201, body)
        st = body["status"]
        self.assertTrue(st["authenticated"])
        self.assertEqual(st["user"]["username"], "system:serviceaccount:sys:agent")
        self.assertEqual(st["user"]["extra"]["authentication.kubernetes.io/pod-name"], ["agent-x"])
        self.assertEqual(st["audiences"], ["flowlb"])
        self.assertFalse(review(bound, ["kubernetes"])[1]["status"]["authenticated"], "wrong audience")
        self.assertFalse(review("forged", ["flowlb"])[1]["status"]["authenticated"])
        # A token for another audience cannot call the API; a bound token dies with its Pod.
        self.assertStatus(Client(self.srv, token=bound)("GET", SVCS), 401, "Unauthorized")
        self.srv.delete("pods", "sys", "agent-x")
        self.assertFalse(review(bound, ["flowlb"])[1]["status"]["authenticated"])
        expired = self.srv.issue_token("sys", "agent", ttl=-1)
        self.assertStatus(Client(self.srv, token=expired)("GET", SVCS), 401, "Unauthorized")

    def test_rbac_is_enforced_for_service_accounts_and_use_is_recorded(self):
        self.srv.create("clusterroles", {"metadata": {"name": "reader"}, "rules": [
            {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch", "update"]}]})
        self.srv.create("clusterrolebindings", {"metadata": {"name": "reader"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
                        "subjects": [{"kind": "ServiceAccount", "name": "ctl", "namespace": "sys"}]})
        self.srv.create("roles", {"metadata": {"name": "lease", "namespace": "sys"}, "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["mine"],
             "verbs": ["get"]}]})
        self.srv.create("rolebindings", {"metadata": {"name": "lease", "namespace": "sys"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease"},
                        "subjects": [{"kind": "ServiceAccount", "name": "ctl", "namespace": "sys"}]})
        self.c("POST", SVCS, svc("a"))
        self.srv.create("leases", {"metadata": {"name": "mine", "namespace": "sys"}, "spec": {}})
        self.srv.create("leases", {"metadata": {"name": "theirs", "namespace": "sys"}, "spec": {}})
        ctl = Client(self.srv, token=self.srv.issue_token("sys", "ctl"))
        self.assertEqual(ctl("GET", "/api/v1/services")[0], 200)
        body = self.assertStatus(ctl("GET", SVCS + "/a"), 403, "Forbidden")
        self.assertEqual(body["message"], 'services "a" is forbidden: User "system:serviceaccount:sys:ctl" '
                         'cannot get resource "services" in API group "" in the namespace "default"')
        self.assertEqual(ctl("PATCH", SVCS + "/a/status", {"status": {}}, ctype="application/merge-patch+json")[0],
                         200)
        self.assertStatus(ctl("PATCH", SVCS + "/a", {"metadata": {}}, ctype="application/merge-patch+json"),
                          403, "Forbidden")
        leases = "/apis/coordination.k8s.io/v1/namespaces/sys/leases"
        self.assertEqual(ctl("GET", leases + "/mine")[0], 200)
        self.assertStatus(ctl("GET", leases + "/theirs"), 403, "Forbidden")
        self.assertStatus(ctl("GET", "/apis/coordination.k8s.io/v1/namespaces/other/leases/mine"), 403,
                          "Forbidden")
        granted, used = self.srv.rbac_usage("system:serviceaccount:sys:ctl")
        self.assertEqual(granted - used, {("", "services", "watch", ""), ("", "services/status", "update", "")})
        self.assertEqual(used, {("", "services", "list", ""), ("", "services/status", "patch", ""),
                                ("coordination.k8s.io", "leases", "get", "mine")})
        # The administrator's token is not held to RBAC.
        self.assertEqual(self.c("GET", SVCS + "/a")[0], 200)

    def test_ten_thousand_objects_list_in_pages_and_take_writes(self):
        # At the scale of bench/controller_bench.py; how fast is bench/run.sh apiserver's job.
        for i in range(10000):
            self.srv.create("services", svc(f"svc-{i:05}", ns=f"ns{i % 10}"))
            self.srv.create("endpointslices", {
                "metadata": {"name": f"svc-{i:05}-abcde", "namespace": f"ns{i % 10}",
                             "labels": {"kubernetes.io/service-name": f"svc-{i:05}"}},
                "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [f"10.{i // 256 % 256}.{i % 256}.{j}"], "conditions": {"ready": True},
                               "nodeName": f"node-{j}"} for j in range(10)]})
        token, n, names = "", 0, set()
        while True:
            page = self.c("GET", "/apis/discovery.k8s.io/v1/endpointslices?limit=500" + token)[1]
            n += len(page["items"])
            names.update(o["metadata"]["name"] for o in page["items"])
            if "continue" not in page["metadata"]:
                break
            token = "&continue=" + page["metadata"]["continue"]
        self.assertEqual(n, 10000)
        self.assertEqual(len(names), 10000)
        for i in range(1000):
            path = f"/api/v1/namespaces/ns{i % 10}/services/svc-{i:05}"
            status = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
            self.assertEqual(self.c("PATCH", path + "/status", status, "application/merge-patch+json")[0], 200)
            self.assertEqual(self.c("PUT", path, svc(f"svc-{i:05}", ns=f"ns{i % 10}", port=81))[0], 200)


if __name__ == "__main__":
    unittest.main()

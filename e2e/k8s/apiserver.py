#!/usr/bin/env python3
"""An in-memory Kubernetes API server for flowlb's e2e tests and benchmarks.

It speaks the kube-apiserver wire protocol that the controller's cpprestsdk
client sees: HTTP/1.1 keep-alive, bearer-token or client-certificate
authentication, optional TLS, JSON CRUD with resourceVersion conflicts, merge
patches, status subresources, paginated lists, and chunked watch streams (one
JSON event per chunk and line, resume from a resourceVersion, bookmarks, 410
Expired after compaction). Errors are real Status objects.

Tests use it as a library (`from apiserver import ApiServer`): direct store
access, fault injection (error codes, delays, dropped watches, garbage lines,
compaction) and a log of who sent which request when. From the command line
it serves until Ctrl-C:

    apiserver.py --port 6443 --token T [--tls-cert C --tls-key K] [--load FILE.json]

Only the resources flowlb uses exist: services, endpointslices, nodes, ippools,
bgppeers, bgpadvertisements
(flowlb.io/v1alpha1), leases, events, pods, secrets, configmaps, and RBAC's
roles, clusterroles and their bindings; plus TokenReview.

ServiceAccount tokens (issue_token(), optionally bound to a Pod, with
audiences and an expiry, like projected tokens) authenticate as
system:serviceaccount:NS:NAME and are held to RBAC: every request is checked
against the Roles/ClusterRoles bound to the account (the objects the chart
renders, created like any other), 403 Forbidden otherwise, and every rule
that allowed something is recorded (rbac_usage()) so a test can list what a
grant holds that was never used. The plain --token tokens stay unrestricted
(an administrator's).
"""
import argparse
import base64
import collections
import itertools
import json
import math
import os
import pickle
import random
import re
import select
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from e2e.k8s.auth import API_AUDIENCE, REASONS, TOKEN_REVIEW_PATH, ApiError, Auth  # noqa: F401

_encode = json.JSONEncoder(separators=(",", ":")).encode


def _dumps(obj):
    return _encode(obj).encode()


def _copy(obj):
    """A deep copy; pickle is several times faster than copy.deepcopy."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


def _event(etype, obj_bytes):
    """One watch event line; built from already serialised object bytes."""
    return b'{"type":"%s","object":%s}\n' % (etype.encode(), obj_bytes)


class Resource:
    def __init__(self, plural, kind, api_version, namespaced, status):
        self.plural, self.kind, self.api_version = plural, kind, api_version
        self.namespaced, self.status = namespaced, status
        group = api_version.rpartition("/")[0]
        # how kube-apiserver names the resource in error messages
        self.qualified = f"{plural}.{group}" if group else plural

    def full(self, obj):
        """The object as served; stored objects omit kind/apiVersion so list items can be dumped as they are."""
        return {"kind": self.kind, "apiVersion": self.api_version, **obj}


RESOURCES = {r.plural: r for r in (
    Resource("services", "Service", "v1", True, True),
    Resource("endpointslices", "EndpointSlice", "discovery.k8s.io/v1", True, False),
    Resource("nodes", "Node", "v1", False, True),
    Resource("ippools", "IPPool", "flowlb.io/v1alpha1", False, True),
    Resource("bgppeers", "BGPPeer", "flowlb.io/v1alpha1", False, True),
    Resource("bgpadvertisements", "BGPAdvertisement", "flowlb.io/v1alpha1", False, False),
    Resource("leases", "Lease", "coordination.k8s.io/v1", True, False),
    Resource("events", "Event", "v1", True, False),
    Resource("pods", "Pod", "v1", True, True),
    Resource("secrets", "Secret", "v1", True, False),
    Resource("configmaps", "ConfigMap", "v1", True, False),
    Resource("clusterroles", "ClusterRole", "rbac.authorization.k8s.io/v1", False, False),
    Resource("clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io/v1", False, False),
    Resource("roles", "Role", "rbac.authorization.k8s.io/v1", True, False),
    Resource("rolebindings", "RoleBinding", "rbac.authorization.k8s.io/v1", True, False),
)}
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

EXPIRED_CONTINUE = ("The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.")
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
WATCH_BATCH = 0.01  # seconds
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # kube-apiserver's generateName alphabet
_VERSION = _dumps({"major": "1", "minor": "30", "gitVersion": "v1.30.0-flowlb-test"})


def _not_found(res, name):
    return ApiError(404, f'{res.qualified} "{name}" not found', details={"name": name, "kind": res.plural})


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch. Returns new containers and never mutates target: stored objects are shared."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _field(obj, path):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return None if obj is None else str(obj)


def _label(obj, key):
    return (obj["metadata"].get("labels") or {}).get(key)


def _selector(labels="", fields=""):
    """Compile equality-based label and field selectors to a predicate on stored objects (None: all)."""
    preds = []
    for text, get in ((labels, _label), (fields, _field)):
        for term in filter(None, (t.strip() for t in text.split(","))):
            m = re.fullmatch(r"([^!=\s]+)\s*(!=|==|=)\s*(\S*)", term)
            if m:
                k, op, v = m.groups()
                preds.append(lambda o, k=k, v=v, neg=op == "!=", get=get: (get(o, k) == v) != neg)
            elif get is _label and re.fullmatch(r"!?[^!=\s]+", term):  # "key" / "!key": existence
                preds.append(lambda o, k=term.lstrip("!"), neg=term[0] == "!":
                             (k in (o["metadata"].get("labels") or {})) != neg)
            else:
                raise ApiError(400, f"unable to parse requirement: {term!r}")
    return (lambda o: all(p(o) for p in preds)) if preds else None


def _route(path):
    """Map a URL path to (resource, namespace, name, is_status) or None. Each segment is
    percent-decoded, as kube-apiserver does ("q%3Fx%3D1" names the object "q?x=1")."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[0] == "api" and len(parts) > 2 and parts[1] == "v1":
        api_version, rest = "v1", parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    ns = None
    if rest[0] == "namespaces" and len(rest) > 2:
        ns, rest = rest[1], rest[2:]
    res = RESOURCES.get(rest[0])
    if (res is None or res.api_version != api_version or len(rest) > 3 or "" in rest or ns == ""
            or (ns is not None and not res.namespaced)
            or (res.namespaced and ns is None and len(rest) > 1)
            or (len(rest) == 3 and (rest[2] != "status" or not res.status))):
        return None
    return res, ns, rest[1] if len(rest) > 1 else None, len(rest) == 3


def _abort(sock):
    """Shut the TCP connection beneath any TLS layer: the peer sees EOF mid-stream, blocked threads wake."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Watch:
    def __init__(self, res, ns, sel, sock):
        self.res, self.ns, self.sel, self.sock = res, ns, sel, sock
        self.pending = []  # event chunks, appended under the store lock
        self.wake = threading.Event()
        self.dropped = False


class ApiServer:
    """The server. Python-API writes behave like HTTP writes (same RVs, history and watch events)."""

    def __init__(self, tokens=("test-token",), tls_cert=None, tls_key=None, client_ca=None,
                 bookmark_interval=1.0, history=100000, host="127.0.0.1", port=0, drop_ip_mode=False):
        self.tokens = frozenset(tokens or ())
        self.bookmark_interval = bookmark_interval
        # As Kubernetes before 1.29: status.loadBalancer.ingress[].ipMode is an unknown field,
        # dropped with a "Warning: 299" header.
        self.drop_ip_mode = drop_ip_mode
        self._addr = (host, port)
        self._ssl = None
        if tls_cert:
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl.load_cert_chain(tls_cert, tls_key)
            if client_ca:
                self._ssl.verify_mode = ssl.CERT_OPTIONAL
                self._ssl.load_verify_locations(cafile=client_ca)
        elif client_ca:
            raise ValueError("client_ca needs tls_cert/tls_key")
        self.url, self.port, self._server = None, None, None
        self._lock = threading.Lock()
        self._store = {name: {} for name in RESOURCES}  # plural -> {(namespace, name): object}
        self._sorted = {}  # plural -> sorted keys; dropped on create/delete, rebuilt by the next list
        self._rv = 1  # never hand out "0": to a watch it means "any version"
        self._compacted = 0  # watches/continue tokens from an RV below this get 410
        self._history = collections.deque(maxlen=max(1, history))
        self._snapshots = collections.OrderedDict()  # paginated list id -> items at its RV
        self._ids = itertools.count(1)
        self._watchers = set()
        self._conns = set()
        self._faults = []
        self._delays = {}
        self._log = []
        self.auth = Auth(self._store, self._lock)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self):
        self._server = _Server(self._addr, self, self._ssl)
        self.port = self._server.server_address[1]
        host = "127.0.0.1" if self._addr[0] in ("", "0.0.0.0") else self._addr[0]
        self.url = f"{'https' if self._ssl else 'http'}://{host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            self._end_watches()
            conns = list(self._conns)
        for c in conns:  # idle keep-alive readers wake up with EOF and exit
            _abort(c)

    # --- direct store access -----------------------------------------------------------------

    def create(self, resource, obj):
        res = RESOURCES[resource]
        return json.loads(self._create(res, None, _copy(obj))[1])

    def update(self, resource, obj):
        """Unconditional replace of the whole object, status included."""
        res, obj = RESOURCES[resource], _copy(obj)
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or "default") if res.namespaced else None
        return json.loads(self._update(res, ns, meta.get("name"), lambda cur: obj, "all")[1])

    def delete(self, resource, ns, name):
        self._delete(RESOURCES[resource], ns, name)

    def get(self, resource, ns, name):
        res = RESOURCES[resource]
        obj = self._store[resource].get((ns or "", name))
        return None if obj is None else _copy(res.full(obj))

    def list(self, resource):
        res, store = RESOURCES[resource], self._store[resource]
        with self._lock:
            objs = [store[k] for k in sorted(store)]
        return _copy([res.full(o) for o in objs])

    def resource_version(self):
        return self._rv

    # --- ServiceAccount tokens and RBAC (auth.py) ----------------------------------------------

    def issue_token(self, namespace, service_account, pod=None, audiences=(API_AUDIENCE,), ttl=3600,
                    token=None):
        """A token as the kubelet projects it; see auth.Auth.issue_token."""
        return self.auth.issue_token(namespace, service_account, pod, audiences, ttl, token)

    def rbac_usage(self, user):
        """(granted, used) rule combinations of a ServiceAccount; see auth.Auth.rbac_usage."""
        return self.auth.rbac_usage(user)

    # --- fault injection ---------------------------------------------------------------------

    def fail_next(self, count, code, method=None, path_contains=None, retry_after=None):
        """Fail the next `count` matching requests; path_contains is matched against path and query."""
        if count > 0:
            with self._lock:
                self._faults.append([count, code, method and method.upper(), path_contains, retry_after])

    def set_delay(self, seconds, path_contains=None):
        """Hold every matching request this long before handling it (0 clears this path's delay)."""
        with self._lock:
            if seconds > 0:
                self._delays[path_contains] = seconds
            else:
                self._delays.pop(path_contains, None)

    def drop_watches(self):
        with self._lock:
            self._end_watches()

    def expire_resource_versions(self):
        """Compact: every RV handed out so far becomes too old for watches and continue tokens."""
        with self._lock:
            self._rv += 1  # the current RV is handed out too, so it must expire as well
            self._compacted = self._rv
            self._snapshots.clear()

    def snapshot(self):
        """The whole store and its resourceVersion, as an etcd backup holds them."""
        with self._lock:
            return self._rv, {plural: dict(objs) for plural, objs in self._store.items()}

    def restore(self, snap):
        """Restore a snapshot, as when etcd is restored from a backup: resourceVersions go back, the
        history since is lost and watches end. A watch that resumes from a version newer than the
        server's gets 504 "Too large resource version", as kube-apiserver answers; one from before
        the snapshot gets 410."""
        rv, store = snap
        with self._lock:
            self._rv = rv
            self._store = {plural: dict(objs) for plural, objs in store.items()}
            self._sorted.clear()
            self._history.clear()
            self._snapshots.clear()
            self._compacted = rv
            self._end_watches()

    def inject_garbage(self, line=b"{this is not json"):
        line = line if line.endswith(b"\n") else line + b"\n"
        with self._lock:
            for w in self._watchers:
                w.pending.append(line)
                w.wake.set()

    # --- observation -------------------------------------------------------------------------

    def request_log(self):
        return [dict(e) for e in list(self._log)]

    def open_watches(self):
        return len(self._watchers)

    # --- store internals ---------------------------------------------------------------------

    def _end_watches(self):
        # store lock held
        for w in self._watchers:
            w.dropped = True
            _abort(w.sock)
            w.wake.set()
        self._watchers.clear()

    def _create(self, res, ns, body):
        meta = dict(body.get("metadata") or {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
        name = meta.get("name")
        if not name or not isinstance(name, str):
            raise ApiError(400, "metadata.name: Required value: name or generateName is required")
        if res.namespaced:
            if ns and meta.get("namespace", ns) != ns:
                raise ApiError(400, "the namespace of the provided object does not match the namespace "
                               "sent on the request")
            meta["namespace"] = ns or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        meta.pop("resourceVersion", None)
        meta.update(uid=str(uuid.uuid4()), generation=1,
                    creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        obj = {"metadata": meta, **{k: v for k, v in body.items() if k not in ("kind", "apiVersion", "metadata")}}
        key = (meta.get("namespace", ""), name)
        with self._lock:
            if key in self._store[res.plural]:
                raise ApiError(409, f'{res.qualified} "{name}" already exists', "AlreadyExists",
                               {"name": name, "kind": res.plural})
            return self._commit(res, "ADDED", key, obj, None)

    def _update(self, res, ns, name, make, part, expect_rv=None):
        """Replace an object with make(current). part: "main" keeps the stored status, "status" changes
        only the status, "all" replaces both (resources without a status subresource)."""
        key = (ns or "", name)
        with self._lock:
            cur = self._store[res.plural].get(key)
            if cur is None:
                raise _not_found(res, name)
            if expect_rv and expect_rv != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has '
                               "been modified; please apply your changes to the latest version and try again",
                               "Conflict", {"name": name, "kind": res.plural})
            body = make(cur)
            if not isinstance(body, dict):
                raise ApiError(400, "the body must be a JSON object")
            if part == "status":
                new = {k: v for k, v in cur.items() if k not in ("metadata", "status")}
                meta = dict(cur["metadata"])
                status = body.get("status")
            else:
                meta = dict(body.get("metadata") or {})
                if meta.get("name", name) != name:
                    raise ApiError(400, f"the name of the object ({meta['name']}) does not match the name "
                                   f"on the URL ({name})")
                new = {k: v for k, v in body.items() if k not in ("kind", "apiVersion", "metadata", "status")}
                status = (cur if part == "main" else body).get("status")
                changed = new != {k: v for k, v in cur.items() if k not in ("metadata", "status")}
                meta.update(name=name, uid=cur["metadata"]["uid"],
                            creationTimestamp=cur["metadata"]["creationTimestamp"],
                            generation=cur["metadata"].get("generation", 1) + changed)
                if res.namespaced:
                    meta["namespace"] = key[0]
                else:
                    meta.pop("namespace", None)
            new = {"metadata": meta, **new}
            if status is not None:
                new["status"] = status
            return self._commit(res, "MODIFIED", key, new, cur)

    def _delete(self, res, ns, name):
        key = (ns or "", name)
        with self._lock:
            cur = self._store[res.plural].get(key)
            if cur is None:
                raise _not_found(res, name)
            return self._commit(res, "DELETED", key, None, cur)

    def _commit(self, res, etype, key, obj, old):
        """Apply one write (store lock held): new RV, store, history, watchers. Returns (object, its JSON)."""
        rv = self._rv + 1
        if etype == "DELETED":  # the event carries the last state at the deletion's RV
            obj = {**old, "metadata": {**old["metadata"], "resourceVersion": str(rv)}}
        else:
            obj["metadata"]["resourceVersion"] = str(rv)
        data = _dumps(res.full(obj))  # first: an object JSON cannot encode changes nothing
        self._rv = rv
        if etype == "DELETED":
            del self._store[res.plural][key]
        else:
            self._store[res.plural][key] = obj
        if etype != "MODIFIED":
            self._sorted.pop(res.plural, None)
        event = (rv, res.plural, key[0], etype, _event(etype, data), obj, old if etype == "MODIFIED" else None)
        if len(self._history) == self._history.maxlen:  # the oldest event falls out: compaction
            self._compacted = max(self._compacted, self._history[0][0])
        self._history.append(event)
        for w in self._watchers:
            chunk = self._chunk_for(w, event)
            if chunk:
                if not w.pending:  # one wakeup per batch
                    w.wake.set()
                w.pending.append(chunk)
        return obj, data

    @staticmethod
    def _chunk_for(w, event):
        """The bytes watcher w gets for a history event, or None."""
        _, plural, ns, etype, chunk, obj, old = event
        if plural != w.res.plural or (w.ns and ns != w.ns):
            return None
        if w.sel is None:
            return chunk
        now, before = w.sel(obj), old is not None and w.sel(old)
        if etype == "MODIFIED" and now != before:  # moved into or out of the selection
            return _event("ADDED" if now else "DELETED", _dumps(w.res.full(obj)))
        return chunk if now else None

    def _get(self, res, ns, name):
        obj = self._store[res.plural].get((ns or "", name))  # a dict read is atomic; objects are immutable
        if obj is None:
            raise _not_found(res, name)
        return obj

    def _list(self, res, ns, q):
        sel = _selector(q.get("labelSelector", ""), q.get("fieldSelector", ""))
        try:
            limit = max(0, int(q.get("limit") or 0))
        except ValueError:
            raise ApiError(400, f"invalid limit: {q.get('limit')!r}")
        token, sid, off = q.get("continue"), None, 0
        with self._lock:
            if token:
                try:
                    rv, sid, off = json.loads(base64.urlsafe_b64decode(token))
                except (ValueError, TypeError):
                    raise ApiError(400, "continue key is not valid")
                items = self._snapshots.get(sid)
                if rv < self._compacted or items is None:
                    raise ApiError(410, EXPIRED_CONTINUE, "Expired")
            else:
                rv, store = self._rv, self._store[res.plural]
                keys = self._sorted.get(res.plural)
                if keys is None:
                    keys = self._sorted[res.plural] = sorted(store)
                items = [store[k] for k in keys if not ns or k[0] == ns]
                if sel:
                    items = [o for o in items if sel(o)]
                if limit and len(items) > limit:  # later pages come from this snapshot, like etcd at rv
                    sid = next(self._ids)
                    self._snapshots[sid] = items
                    while len(self._snapshots) > 64:
                        self._snapshots.popitem(last=False)
        meta = {"resourceVersion": str(rv)}
        if limit and off + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(_dumps([rv, sid, off + limit])).decode()
            meta["remainingItemCount"] = len(items) - off - limit
        page = items[off:off + limit] if limit else items
        return _dumps({"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta, "items": page})

    def _watch_open(self, w, since):
        """Register w and return (first chunks, live). Not live: the stream ends after the chunks (410)."""
        try:
            since = 0 if since in ("", "0") else int(since)
        except ValueError:
            raise ApiError(400, f"invalid resourceVersion: {since!r}")
        with self._lock:
            if since and since > self._rv:
                raise ApiError(504, f"Too large resource version: {since}, current: {self._rv}", "Timeout",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}],
                                "retryAfterSeconds": 1})
            if since and since < self._compacted:
                status = ApiError(410, f"too old resource version: {since} ({self._compacted})", "Expired")
                return [_event("ERROR", _dumps(status.status()))], False
            if since:
                chunks = []
                for event in reversed(self._history):
                    if event[0] <= since:
                        break
                    chunk = self._chunk_for(w, event)
                    if chunk:
                        chunks.append(chunk)
                chunks.reverse()
            else:
                objs = [o for k, o in self._store[w.res.plural].items()
                        if (not w.ns or k[0] == w.ns) and (w.sel is None or w.sel(o))]
            self._watchers.add(w)
        if not since:  # synthetic ADDED for the current state, serialised outside the lock
            chunks = [_event("ADDED", _dumps(w.res.full(o))) for o in objs]
        return chunks, True

    def _take_fault(self, method, target):
        with self._lock:
            for f in self._faults:
                if (f[2] is None or f[2] == method) and (f[3] is None or f[3] in target):
                    f[0] -= 1
                    if f[0] == 0:
                        self._faults.remove(f)
                    return f[1], f[4]
        return None

    def _delay_for(self, target):
        if not self._delays:
            return 0
        with self._lock:
            return max((s for p, s in self._delays.items() if p is None or p in target), default=0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() aborts the connections itself
    request_queue_size = 128

    def __init__(self, addr, api, ssl_ctx):
        self.api, self.ssl_ctx = api, ssl_ctx
        super().__init__(addr, _Handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's reverse DNS lookup
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = super().get_request()
        if self.ssl_ctx:  # the handshake runs in the connection's thread (_Handler.setup)
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # resets and failed handshakes are routine
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # watch chunks must not wait for the client's delayed ACK
    cert_cn = None

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)  # a silent client only ties up its own thread
            self.request.do_handshake()
            self.request.settimeout(None)
            cert = self.request.getpeercert()  # only verified certificates get here
            if cert:
                self.cert_cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn
                                     if k == "commonName"), None)
        super().setup()
        self.api = self.server.api
        with self.api._lock:
            self.api._conns.add(self.request)

    def finish(self):
        with self.api._lock:
            self.api._conns.discard(self.request)
        super().finish()

    def log_message(self, *args):
        pass

    def _serve(self):
        api, url = self.api, urlsplit(self.path)
        entry = {"t": time.monotonic(), "method": self.command, "path": url.path,
                 "query": url.query, "code": None, "identity": None, "credential": None}
        headers = ()
        try:
            body = self._read_body()
            if url.path == "/version":  # unauthenticated, as in kube-apiserver: a readiness probe
                return self._reply(entry, 200, _VERSION)
            auth = self.headers.get("Authorization", "")
            entry["credential"] = auth[7:].strip() if auth.startswith("Bearer ") else None
            entry["identity"] = self._identity()
            if entry["identity"] is None:
                raise ApiError(401, "Unauthorized")
            if entry["identity"].startswith("system:serviceaccount:"):
                self._authorize_request(entry["identity"], url)
            fault = api._take_fault(self.command, self.path)
            delay = api._delay_for(self.path)
            if delay:
                time.sleep(delay)
            if fault:
                code, retry_after = fault
                details = None
                if retry_after is not None:
                    headers, details = (("Retry-After", retry_after),), {"retryAfterSeconds": retry_after}
                raise ApiError(code, f"injected failure (HTTP {code})", details=details)
            self._dispatch(url.path, dict(parse_qsl(url.query)), body, entry)
        except ApiError as e:
            self._reply(entry, e.code, e.status(), headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _identity(self):
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else None
        if token in self.api.tokens:
            return token
        if token and self.api.auth.knows(token):
            review, _ = self.api.auth.review(token, (API_AUDIENCE,))
            return review["user"]["username"] if review else None
        if token:
            return None
        return self.cert_cn

    def _authorize_request(self, user, url):
        """RBAC for a ServiceAccount: the verb and resource the request stands for."""
        if url.path == TOKEN_REVIEW_PATH:
            return self.api.auth.authorize(user, "create", "authentication.k8s.io", "tokenreviews", None, "")
        route = _route(url.path)
        if route is None:
            return
        res, ns, name, status = route
        q = dict(parse_qsl(url.query))
        if self.command == "GET":
            verb = "watch" if q.get("watch") in ("true", "1") else "get" if name else "list"
        else:
            verb = VERBS.get(self.command, self.command.lower())
        group = res.api_version.rpartition("/")[0]
        self.api.auth.authorize(user, verb, group, res.plural + ("/status" if status else ""), ns, name or "")

    def _reply(self, entry, code, payload, headers=()):
        if not isinstance(payload, bytes):
            payload = _dumps(payload)
        entry["code"] = code
        self.api._log.append(entry)  # before the reply: a client that got it finds it in the log
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        phrase = self.responses.get(code, ("Error",))[0]
        # one write per response: no Nagle/delayed-ACK stalls, one syscall
        self.wfile.write(f"HTTP/1.1 {code} {phrase}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\n{extra}\r\n".encode() + payload)

    def _dispatch(self, path, q, body, entry):
        api, method = self.api, self.command
        if path == TOKEN_REVIEW_PATH and method == "POST":
            review = _json(body)
            spec = review.get("spec") or {}
            result, why = api.auth.review(spec.get("token") or "", tuple(spec.get("audiences") or (API_AUDIENCE,)))
            status = {"authenticated": True, **result} if result else {"authenticated": False, "error": why}
            return self._reply(entry, 201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                                            "metadata": {"creationTimestamp": None}, "spec": spec,
                                            "status": status})
        route = _route(path)
        if route is None:
            raise ApiError(404, "the server could not find the requested resource")
        res, ns, name, status = route
        part = "status" if status else "main" if res.status else "all"
        if method == "GET" and q.get("watch") in ("true", "1"):
            fields = ",".join(filter(None, (q.get("fieldSelector"), name and f"metadata.name={name}")))
            return self._watch(res, ns, _selector(q.get("labelSelector", ""), fields), q, entry)
        if method == "GET":
            return self._reply(entry, 200, res.full(api._get(res, ns, name)) if name else api._list(res, ns, q))
        if method == "POST" and not name and (ns or not res.namespaced):
            return self._reply(entry, 201, api._create(res, ns, _json(body))[1])
        if method == "PUT" and name:
            obj = _json(body)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            return self._reply(entry, 200, api._update(res, ns, name, lambda cur: obj, part, rv)[1])
        if method == "PATCH" and name:
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype not in MERGE_PATCH_TYPES:
                raise ApiError(415, f"the body of the request was in an unknown format - accepted media "
                               f"types include: {', '.join(MERGE_PATCH_TYPES)}")
            patch = _json(body)
            rv = (patch.get("metadata") or {}).get("resourceVersion")
            warnings = []
            if api.drop_ip_mode and res.plural == "services":
                for i, ing in enumerate(((patch.get("status") or {}).get("loadBalancer") or {})
                                        .get("ingress") or []):
                    if isinstance(ing, dict) and ing.pop("ipMode", None) is not None:
                        warnings.append(("Warning", f'299 - "unknown field '
                                         f'\\"status.loadBalancer.ingress[{i}].ipMode\\""'))
            obj = api._update(res, ns, name, lambda cur: merge_patch(cur, patch), part, rv)[1]
            return self._reply(entry, 200, obj, warnings)
        if method == "DELETE" and name and not status:
            obj = api._delete(res, ns, name)[0]
            details = {"name": name, "kind": res.plural, "uid": obj["metadata"]["uid"]}
            return self._reply(entry, 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                            "status": "Success", "details": details})
        raise ApiError(405, f"{method} is not supported on {path}")

    def _watch(self, res, ns, sel, q, entry):
        api = self.api
        try:
            timeout = float(q.get("timeoutSeconds") or 0)
        except ValueError:
            raise ApiError(400, f"invalid timeoutSeconds: {q['timeoutSeconds']!r}")
        w = _Watch(res, ns, sel, self.connection)
        chunks, live = api._watch_open(w, q.get("resourceVersion", ""))
        entry["code"] = 200
        api._log.append(entry)
        now = time.monotonic()
        deadline = now + timeout if timeout > 0 else math.inf
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        next_bookmark = now + api.bookmark_interval if bookmarks else math.inf
        hangup = select.poll()
        hangup.register(self.connection, select.POLLIN)
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Cache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n\r\n")
            last_write = 0
            while True:
                for i in range(0, len(chunks), 1000):  # batched writes, bounded buffers
                    self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks[i:i + 1000]))
                    last_write = time.monotonic()
                now = time.monotonic()
                if not live or now >= deadline:
                    self.wfile.write(b"0\r\n\r\n")  # clean end; the connection stays usable
                    return
                w.wake.wait(max(0, min(0.2, next_bookmark - now, deadline - now)))
                # at most one write per WATCH_BATCH: a burst costs each watcher a few wakeups, not one per
                # event (thread switches dominate fan-out); an isolated event still goes out at once
                pause = last_write + WATCH_BATCH - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                with api._lock:  # drain and read the RV together: a bookmark never overtakes an event
                    w.wake.clear()
                    chunks, w.pending = w.pending, []
                    rv = api._rv
                # dropped/stopped, or the client hung up (clients never send on a watch connection)
                if w.dropped or hangup.poll(0):
                    self.close_connection = True
                    return
                if time.monotonic() >= next_bookmark:
                    chunks.append(_event("BOOKMARK", _dumps({"kind": res.kind, "apiVersion": res.api_version,
                                                             "metadata": {"resourceVersion": str(rv)}})))
                    next_bookmark = time.monotonic() + api.bookmark_interval
        except OSError:
            self.close_connection = True
        finally:
            with api._lock:
                api._watchers.discard(w)


def _json(body):
    try:
        obj = json.loads(body)
    except ValueError as e:
        raise ApiError(400, f"invalid JSON in request body: {e}")
    if not isinstance(obj, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return obj


def main():
    ap = argparse.ArgumentParser(description="In-memory Kubernetes API server for flowlb tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6443)
    ap.add_argument("--token", action="append", help="accepted bearer token (repeatable; default test-token)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca", help="CA for client certificates (identity = certificate CN)")
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    ap.add_argument("--load", help='JSON list of {"resource": ..., "object": ...} to create at start')
    ap.add_argument("--rbac-usage-file", help="keep the RBAC rules --rbac-usage-user exercised here (JSON)")
    ap.add_argument("--rbac-usage-user", default="")
    ap.add_argument("--service-account-token", action="append", default=[], metavar="NS:SA[:POD[:AUDIENCE]]=TOKEN",
                    help="accept TOKEN as the ServiceAccount's (bound to POD, for AUDIENCE; held to RBAC)")
    args = ap.parse_args()
    srv = ApiServer(tokens=args.token or ["test-token"], tls_cert=args.tls_cert, tls_key=args.tls_key,
                    client_ca=args.client_ca, bookmark_interval=args.bookmark_interval,
                    host=args.host, port=args.port)
    if args.load:
        with open(args.load) as f:
            for item in json.load(f):
                srv.create(item["resource"], item["object"])
    if args.rbac_usage_file:
        save_lock = threading.Lock()

        def save():
            with save_lock:
                _, used = srv.rbac_usage(args.rbac_usage_user)
                with open(args.rbac_usage_file + ".tmp", "w") as f:
                    json.dump(sorted(used), f)
                os.replace(args.rbac_usage_file + ".tmp", args.rbac_usage_file)
        srv.auth.on_new_use = save
    for spec in args.service_account_token:
        who, token = spec.split("=", 1)
        ns, sa, pod, audience = (who.split(":") + [None, None])[:4]
        srv.issue_token(ns, sa, pod=pod or None, audiences=(audience,) if audience else (API_AUDIENCE,),
                        ttl=86400, token=token)
    srv.start()
    print(srv.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()

"""Authentication and authorization for the API test server (apiserver.py):
ServiceAccount tokens as the kubelet projects them (bound to a Pod, with
audiences and an expiry), TokenReview, and RBAC from the Role/ClusterRole
objects in the store, enforced for ServiceAccount users with every use of a
rule recorded.
"""
import json
import time
import uuid

API_AUDIENCE = "https://kubernetes.default.svc"
TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType",
           422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}


class ApiError(Exception):
    """A request failure; becomes a Status body. The Python API raises it too."""

    def __init__(self, code, message, reason=None, details=None):
        super().__init__(message)
        self.code, self.reason, self.details = code, reason or REASONS.get(code, "Unknown"), details

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": str(self), "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
        return s


class Auth:
    """Tokens, reviews and RBAC over the server's store (dicts keyed (namespace, name))."""

    def __init__(self, store, lock):
        self._store, self._lock = store, lock
        self.on_new_use = None  # called (outside the lock) when a rule allows something new
        self._tokens = {}  # token -> {"ns", "name", "pod", "pod_uid", "audiences", "expires"}
        self._used = set()  # (group, resource, verb, resource name or "") that allowed a request

    def knows(self, token):
        return token in self._tokens

    def issue_token(self, namespace, service_account, pod=None, audiences=(API_AUDIENCE,), ttl=3600,
                    token=None):
        """A token for the account, as the kubelet projects it: bound to `pod` (which must exist) if
        given, valid for `audiences` until `ttl` seconds from now. Returns the token (`token`, to
        give a restarted server the same one)."""
        info = {"ns": namespace, "name": service_account, "pod": None, "pod_uid": None,
                "audiences": tuple(audiences), "expires": time.time() + ttl}
        if pod:
            obj = self._store["pods"].get((namespace, pod))
            if obj is None:
                raise ValueError(f"no pod {namespace}/{pod}")
            info.update(pod=pod, pod_uid=obj["metadata"]["uid"])
        token = token or "sa." + uuid.uuid4().hex + uuid.uuid4().hex
        with self._lock:
            self._tokens[token] = info
        return token

    def review(self, token, audiences):
        """(user info dict, None) for a valid token and audience list, else (None, reason)."""
        info = self._tokens.get(token)
        if info is None:
            return None, "invalid bearer token"
        if time.time() >= info["expires"]:
            return None, "token has expired"
        matched = [a for a in info["audiences"] if a in audiences]
        if not matched:
            return None, "token audiences " + json.dumps(list(info["audiences"])) + " are invalid for " + \
                json.dumps(list(audiences))
        extra = {}
        if info["pod"]:  # a bound token dies with its Pod (or a new Pod of the same name)
            obj = self._store["pods"].get((info["ns"], info["pod"]))
            if obj is None or obj["metadata"]["uid"] != info["pod_uid"]:
                return None, f'pod "{info["pod"]}" not found or replaced'
            extra = {"authentication.kubernetes.io/pod-name": [info["pod"]],
                     "authentication.kubernetes.io/pod-uid": [info["pod_uid"]]}
        user = {"username": f"system:serviceaccount:{info['ns']}:{info['name']}",
                "uid": info["ns"] + "/" + info["name"],
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{info['ns']}",
                           "system:authenticated"], "extra": extra}
        return {"user": user, "audiences": matched}, None

    def _rules_for(self, user):
        """[(namespace or None for cluster-wide, rule)] granted to a ServiceAccount user."""
        _, _, ns, name = user.split(":", 3)

        def bound(b):
            return any(s.get("kind") == "ServiceAccount" and s.get("name") == name and s.get("namespace") == ns
                       for s in b.get("subjects") or ())
        out = []
        store = self._store
        for b in list(store["clusterrolebindings"].values()):
            ref = b.get("roleRef") or {}
            role = store["clusterroles"].get(("", ref.get("name"))) if ref.get("kind") == "ClusterRole" else None
            if role and bound(b):
                out += [(None, r) for r in role.get("rules") or ()]
        for (bns, _), b in list(store["rolebindings"].items()):
            ref = b.get("roleRef") or {}
            if not bound(b):
                continue
            if ref.get("kind") == "Role":
                role = store["roles"].get((bns, ref.get("name")))
            else:
                role = store["clusterroles"].get(("", ref.get("name")))
            if role:
                out += [(bns, r) for r in role.get("rules") or ()]
        return out

    def authorize(self, user, verb, group, resource, ns, name):
        """Raises 403 unless a rule bound to the ServiceAccount allows it; records the use."""
        for scope, r in self._rules_for(user):
            if scope is not None and scope != ns:
                continue
            names = r.get("resourceNames") or []
            if (("*" in r.get("apiGroups", ()) or group in r.get("apiGroups", ()))
                    and ("*" in r.get("resources", ()) or resource in r.get("resources", ()))
                    and ("*" in r.get("verbs", ()) or verb in r.get("verbs", ()))
                    and (not names or (name in names and verb not in ("list", "watch", "create")))):
                use = (group, resource, verb, name if names else "")
                with self._lock:
                    new = use not in self._used
                    self._used.add(use)
                if new and self.on_new_use:
                    self.on_new_use()
                return
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        what = f'{resource.split("/")[0]} "{name}"' if name else resource.split("/")[0]
        raise ApiError(403, f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                       f'in API group "{group}"{where}', "Forbidden",
                       {"name": name or "", "group": group, "kind": resource.split("/")[0]})

    def rbac_usage(self, user):
        """(granted, used): sets of (group, resource, verb, resourceName or "") for the account's
        rules, expanded, and those that allowed at least one request."""
        granted = set()
        for _, r in self._rules_for(user):
            for g in r.get("apiGroups", ()):
                for res in r.get("resources", ()):
                    for v in r.get("verbs", ()):
                        for n in (r.get("resourceNames") or [""]):
                            granted.add((g, res, v, n))
        with self._lock:
            used = set(self._used)
        return granted, used

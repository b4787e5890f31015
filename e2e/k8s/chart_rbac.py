"""The chart's RBAC, for the API test server: render it with helm, load it,
and keep track of which of its rules the controller exercised.

Every e2e test that runs flowlb-controller against apiserver.py with the
chart's ServiceAccount records its usage (record_usage); e2e/rbac_minimal_test.py
then fails on any rule that no test ever exercised, so the grant stays what
the code uses.
"""
import json
import os
import subprocess

import yaml

from e2e.lib.paths import ROOT as SRC

CHART = os.path.join(SRC, "charts", "flowlb")
RELEASE, NAMESPACE = "flowlb", "flowlb-system"
CONTROLLER_SA = "flowlb-controller"
CONTROLLER_USER = f"system:serviceaccount:{NAMESPACE}:{CONTROLLER_SA}"
# Renders whose rules differ: the default, and the CA kept by the controller.
MODES = {"default": (), "ca-in-secret": ("--set", "tls.generate=controller")}
KINDS = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
         "Role": "roles", "RoleBinding": "rolebindings", "Secret": "secrets",
         "ConfigMap": "configmaps"}


def helm():
    return subprocess.run([os.path.join(SRC, "scripts", "install-helm.sh")], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]


_cache = {}


def objects(mode="default", template="templates/rbac.yaml"):
    """The objects one template renders: [(resource plural, object)]."""
    if (mode, template) not in _cache:
        out = subprocess.run([helm(), "template", RELEASE, CHART, "-n", NAMESPACE,
                              "--show-only", template, *MODES[mode]],
                             check=True, capture_output=True, text=True).stdout
        _cache[mode, template] = [(KINDS[o["kind"]], o) for o in yaml.safe_load_all(out) if o]
    return [(r, json.loads(json.dumps(o))) for r, o in _cache[mode, template]]


def load(server, mode="default", drop=None):
    """Creates the render's RBAC objects in the server. drop(resource, rule) -> True removes a rule
    (to show what a missing grant does)."""
    for resource, obj in objects(mode):
        if drop and "rules" in obj:
            obj["rules"] = [r for r in obj["rules"] if not drop(resource, r)]
        server.create(resource, obj)


def record_usage(server, build, test):
    """Appends what the controller's ServiceAccount used on this server to BUILD/e2e-rbac/TEST.json."""
    _, used = server.rbac_usage(CONTROLLER_USER)
    d = os.path.join(build, "e2e-rbac")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, test + ".json")
    seen = set()
    if os.path.exists(path):
        with open(path) as f:
            seen = {tuple(x) for x in json.load(f)}
    with open(path, "w") as f:
        json.dump(sorted(seen | used), f)

#!/usr/bin/env python3
"""Checks on rendered Kubernetes manifests that a real API server or
admission would make, without a cluster (e2e/helm_test.sh, e2e/kind/):

  manifest_check.py chart FILE            structure the chart promises: Pod Security
                                          (controller `restricted`, agent hardened), no
                                          secret of ours in the agent Pod, no token mounted,
                                          no RBAC binding for the agent, namespaces
  manifest_check.py crd CRD_FILE OBJ...   objects validated against the CRD's
                                          openAPIV3Schema (an error names the field)
  manifest_check.py values SCHEMA FILE... Helm values files against values.schema.json

Each prints one line per check and exits 1 on any failure.
"""
import json
import sys

import jsonschema
import yaml

FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILS.append(what)


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


# The `restricted` Pod Security Standard (v1.30), the parts a Pod spec decides.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(spec):
    out = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            out.append(flag)
    psc = spec.get("securityContext") or {}
    for v in spec.get("volumes") or ():
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {v['name']} is {kinds}")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if sc.get("allowPrivilegeEscalation", True) is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{c['name']}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: adds capabilities {caps.get('add')}")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"{c['name']}: runAsNonRoot must be true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile must be RuntimeDefault or Localhost")
    return out


def chart(path):
    objs = docs(path)
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    ctl = next(o for o in by_kind["Deployment"] if o["metadata"]["name"].endswith("-controller"))
    agent = next(o for o in by_kind["DaemonSet"] if o["metadata"]["name"].endswith("-agent"))
    v = restricted_violations(pod_spec(ctl))
    check(not v, "controller Pod meets Pod Security `restricted`" + (f": {v}" if v else ""))
    a = pod_spec(agent)
    c = a["containers"][0]
    sc = c.get("securityContext") or {}
    check(sc.get("allowPrivilegeEscalation") is False, "agent: allowPrivilegeEscalation false")
    check(sc.get("readOnlyRootFilesystem") is True, "agent: readOnlyRootFilesystem")
    check(((a.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "RuntimeDefault",
          "agent: seccompProfile RuntimeDefault")
    check(not sc.get("privileged"), "agent: not privileged")
    check("ALL" in sc.get("capabilities", {}).get("drop", []), "agent: capabilities drop ALL")
    check(a.get("automountServiceAccountToken") is False, "agent: no ServiceAccount token mounted")
    secrets = [v["name"] for v in a.get("volumes") or () if "secret" in v]
    projected_secrets = [s for v in a.get("volumes") or () for s in (v.get("projected") or {}).get("sources", [])
                         if "secret" in s]
    check(not secrets and not projected_secrets,
          "agent: mounts no Secret (no CA key, no serving key)" + (f": {secrets}" if secrets else ""))
    # Host paths: only the flow-state directory (--state-dir), the TUN device
    # when the kernel exception path is on and, if asked, bpffs.
    args = c.get("args") or []
    state = [a.split("=", 1)[1] for a in args if a.startswith("--state-dir=")]
    tun = ["/dev/net/tun"] if "--kernel-path=true" in args else []
    hostpaths = [v["hostPath"]["path"] for v in a.get("volumes") or () if "hostPath" in v]
    check(set(hostpaths) <= set(state) | set(tun) | {"/sys/fs/bpf"},
          f"agent: hostPath volumes {hostpaths} (state: {state}, tun: {tun})")
    check("/dev/net/tun" not in tun or any(v.get("hostPath", {}).get("type") == "CharDevice"
                                           and v["hostPath"]["path"] == "/dev/net/tun" for v in a.get("volumes") or ()),
          "agent: the kernel path has /dev/net/tun (a CharDevice hostPath)")
    agent_sa = a["serviceAccountName"]
    for sa in by_kind.get("ServiceAccount", []):
        if sa["metadata"]["name"] == agent_sa:
            check(sa.get("automountServiceAccountToken") is False, "agent ServiceAccount: automount off")
    bound = [b["metadata"]["name"] for k in ("RoleBinding", "ClusterRoleBinding") for b in by_kind.get(k, [])
             if any(s.get("name") == agent_sa for s in b.get("subjects") or ())]
    check(not bound, "agent ServiceAccount: bound to no Role" + (f": {bound}" if bound else ""))
    for ns in by_kind.get("Namespace", []):
        labels = ns["metadata"].get("labels") or {}
        check(labels.get("pod-security.kubernetes.io/enforce") == "privileged",
              f"Namespace {ns['metadata']['name']} allows the agent (enforce=privileged)")
    namespaced = [o for o in objs if o["kind"] not in (
        "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition")]
    check(all(o["metadata"].get("namespace") for o in namespaced), "every namespaced object names its namespace")


def crd(crd_path, objs):
    """Every object of a kind one of the CRDs defines, against that CRD's schema."""
    validators = {}
    for spec in (d for d in docs(crd_path) if d["kind"] == "CustomResourceDefinition"):
        version = spec["spec"]["versions"][0]
        validators[spec["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(
            strip_k8s(version["schema"]["openAPIV3Schema"]))
    for path in objs:
        for o in docs(path):
            validator = validators.get(o.get("kind"))
            if validator is None:
                continue
            errs = sorted(validator.iter_errors(o), key=lambda e: list(e.path))
            what = f"{path}: {o['kind']} {o['metadata']['name']}"
            check(not errs, what + ("" if not errs else ": " + "; ".join(
                f"{'.'.join(str(p) for p in e.path)}: {e.message}" for e in errs)))


def strip_k8s(s):
    """OpenAPI v3 as JSON Schema: drop the x-kubernetes-* keys the validator does not know."""
    if isinstance(s, dict):
        return {k: strip_k8s(v) for k, v in s.items() if not k.startswith("x-kubernetes-")}
    if isinstance(s, list):
        return [strip_k8s(v) for v in s]
    return s


def values(schema_path, files):
    with open(schema_path) as f:
        validator = jsonschema.Draft7Validator(json.load(f))
    for path in files:
        with open(path) as f:
            v = yaml.safe_load(f) or {}
        errs = list(validator.iter_errors(v))
        # Helm merges files onto the chart's defaults; a partial file is fine.
        errs = [e for e in errs if e.validator != "required"]
        check(not errs, f"{path} against values.schema.json" + (
            "" if not errs else ": " + "; ".join(e.message for e in errs)))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "chart":
        chart(sys.argv[2])
    elif cmd == "crd":
        crd(sys.argv[2], sys.argv[3:])
    elif cmd == "values":
        values(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
    sys.exit(1 if FAILS else 0)

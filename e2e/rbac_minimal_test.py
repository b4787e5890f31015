#!/usr/bin/env python3
"""The chart's RBAC grants exactly what the controller uses.

e2e/test_controller_k8s.py and e2e/test_identity.py run flowlb-controller
as the chart's ServiceAccount in an API server that enforces the chart's
rules (a missing rule fails them) and record every rule that allowed a
request (BUILD/e2e-rbac/*.json). This lists every rule of every render
(the default, and tls.generate=controller) that no test exercised, and
fails if there is one: a grant nobody uses is a grant to remove. It also
checks that the agent's ServiceAccount is bound to nothing.
Usage (from the repository root): python3 -m e2e.rbac_minimal_test
"""
import glob
import json
import os
import sys

from e2e.k8s import chart_rbac
from e2e.lib.paths import build_dir

build = build_dir()
files = sorted(glob.glob(os.path.join(build, "e2e-rbac", "*.json")))
want = {"controller_k8s.json", "identity.json", "bgp_crd.json"}
missing = want - {os.path.basename(f) for f in files}
if missing:
    sys.exit(f"FAIL no usage from {sorted(missing)}: run e2e_controller_k8s, e2e_identity and e2e_bgp_crd first")
used = set()
for f in files:
    with open(f) as fh:
        used |= {tuple(x) for x in json.load(fh)}

fails = 0
for mode in chart_rbac.MODES:
    objs = chart_rbac.objects(mode)
    for resource, obj in objs:
        for s in obj.get("subjects") or ():
            if s.get("name") != chart_rbac.CONTROLLER_SA:
                print(f"FAIL [{mode}] {obj['kind']} {obj['metadata']['name']} binds {s.get('name')}")
                fails += 1
        for rule in obj.get("rules") or ():
            for g in rule["apiGroups"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [""]:
                            combo = (g, res, verb, name)
                            ok = combo in used
                            fails += not ok
                            print(f"{'ok  ' if ok else 'FAIL'} [{mode}] {obj['kind']} "
                                  f"{verb} {g or 'core'}/{res}{'/' + name if name else ''}"
                                  f"{'' if ok else ': never exercised by the controller'}")
print(f"rbac_minimal_test: {fails} failure(s)")
sys.exit(1 if fails else 0)

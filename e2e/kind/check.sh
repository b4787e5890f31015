#!/usr/bin/env bash
# What e2e/kind/run.sh uses, checked where kind cannot run (CI, this lab):
# `helm template` with exactly the values it passes, those values against the
# chart's schema, the rendered install against the manifest checks, its IPPool
# (with a kind-like range) against the CRD, and its echo Deployment/Service.
# The image it builds is built by e2e/image_test.sh from the same Dockerfile.
# Usage: e2e/kind/check.sh SOURCE_DIR
set -euo pipefail
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
here="$src/e2e/kind"
helm=$("$src/scripts/install-helm.sh")
check="python3 $src/e2e/k8s/manifest_check.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

bash -n "$here/run.sh" && pass "run.sh parses" || fail "run.sh syntax"
$check values "$src/charts/flowlb/values.schema.json" "$here/values.yaml" >/dev/null &&
  pass "kind/values.yaml meets the chart's schema" || fail "kind/values.yaml vs schema"
# Exactly run.sh's install (namespace and release name included).
if "$helm" template flowlb "$src/charts/flowlb" -n flowlb-system -f "$here/values.yaml" \
     --set image.tag=kind-0123456789ab >"$tmp/kind.yaml" 2>"$tmp/err"; then
  pass "helm template with run.sh's values"
else
  fail "helm template with run.sh's values: $(cat "$tmp/err")"
fi
$check chart "$tmp/kind.yaml" >"$tmp/c" && pass "the kind install passes the manifest checks" || { fail "manifest checks"; cat "$tmp/c"; }
grep -q "image: localhost/flowlb:kind-0123456789ab" "$tmp/kind.yaml" && grep -q "imagePullPolicy: Never" "$tmp/kind.yaml" &&
  pass "the loaded image, never pulled" || fail "image settings"
sed "s/@RANGE@/172.18.255.200-172.18.255.250/" "$here/ippool.yaml" >"$tmp/ippool.yaml"
$check crd "$tmp/kind.yaml" "$tmp/ippool.yaml" >"$tmp/c" && pass "its IPPool validates against the CRD" || { fail "IPPool vs CRD"; cat "$tmp/c"; }
python3 - "$here/echo.yaml" "$tmp/kind.yaml" <<'PY' && pass "echo.yaml: 3 spread replicas behind a Service of the chart's class" || fail "echo.yaml"
import sys, yaml
objs = {o["kind"]: o for o in yaml.safe_load_all(open(sys.argv[1])) if o}
d, s = objs["Deployment"], objs["Service"]
assert d["spec"]["replicas"] == 3
assert d["spec"]["template"]["metadata"]["labels"] == s["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
assert d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
ctl = next(o for o in yaml.safe_load_all(open(sys.argv[2])) if o and o["kind"] == "Deployment")
args = ctl["spec"]["template"]["spec"]["containers"][0]["args"]
assert f"--load-balancer-class={s['spec']['loadBalancerClass']}" in args, args
assert s["spec"]["type"] == "LoadBalancer"
port = d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]
assert s["spec"]["ports"][0]["targetPort"] == port
PY
echo "kind check: $fails failure(s)"
[ "$fails" -eq 0 ]

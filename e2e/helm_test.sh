#!/usr/bin/env bash
# The Helm chart: lints strictly, renders every TLS mode and option, keeps
# what an install needs (Pod Security, no secret in the agent, RBAC only for
# the controller), rejects bad values through its schema with clear errors,
# passes only flags the binaries have, works as a subchart (`global`), and
# keeps manifests/install.yaml current. The IPPool CRD validates the samples
# and refuses bad addresses. (RBAC against real calls: e2e/rbac_minimal_test.py.)
# Usage: e2e/helm_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
helm=$("$src/scripts/install-helm.sh")
chart="$src/charts/flowlb"
check="python3 $src/e2e/k8s/manifest_check.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }
render() { "$helm" template flowlb "$chart" --namespace flowlb-system "$@"; }

"$helm" lint --strict "$chart" >"$tmp/lint" 2>&1 && pass "helm lint --strict" || { fail "helm lint"; cat "$tmp/lint"; }
render >"$tmp/all.yaml"
for kind in CustomResourceDefinition Deployment DaemonSet ClusterRole ClusterRoleBinding Role \
            RoleBinding Service ServiceAccount Secret ConfigMap PodDisruptionBudget; do
  grep -q "^kind: $kind$" "$tmp/all.yaml" && pass "renders a $kind" || fail "no $kind rendered"
done
grep -q "name: ippools.flowlb.io" "$tmp/all.yaml" && pass "IPPool CRD is a template (upgraded with the release)" || fail "IPPool CRD"
grep -q "name: bgppeers.flowlb.io" "$tmp/all.yaml" && grep -q "name: bgpadvertisements.flowlb.io" "$tmp/all.yaml" &&
  pass "BGPPeer and BGPAdvertisement CRDs are templates" || fail "BGP CRDs"
grep -q "helm.sh/resource-policy: keep" "$tmp/all.yaml" && pass "the CRD is kept on uninstall" || fail "CRD not kept"
render --set crds.enabled=false | grep -q "kind: CustomResourceDefinition" && fail "crds.enabled=false still renders the CRD" ||
  pass "crds.enabled=false leaves the CRD to you"
render --set controller.replicas=1 | grep -q "^kind: PodDisruptionBudget" && fail "PDB with one replica" ||
  pass "no PodDisruptionBudget for one replica"

# Every --flag the chart passes must be one the binary documents, in every mode.
for bin in agent controller; do "$build/$bin/flowlb-$bin" --help >"$tmp/help-$bin"; done
for values in "" "--set tls.generate=controller" "--set tls.certManager.enabled=true" "--set tls.enabled=false" \
              "--set agent.metricsBindAddress=node-ip,agent.interfaces={eth1},agent.snatIPv6=fd00::1"; do
  # shellcheck disable=SC2086
  render $values >"$tmp/mode.yaml"
  for bin in agent controller; do
    flags=$(awk -v c="flowlb-$bin" '$0 ~ "/usr/local/bin/"c {on=1} on && /^ *- --/ {print} on && /^ *(ports|env|resources):/ {on=0}' "$tmp/mode.yaml" |
            sed -E 's/^ *- (--[a-z0-9-]+).*/\1/' | sort -u)
    [ -n "$flags" ] || fail "no $bin flags found in the rendered chart"
    for flag in $flags; do
      grep -q -- "$flag" "$tmp/help-$bin" || fail "$bin has no $flag (values: $values)"
    done
  done
  # shellcheck disable=SC2086
  $check chart "$tmp/mode.yaml" >"$tmp/check" || { fail "manifest checks with '$values'"; cat "$tmp/check"; }
done
pass "every flag the chart passes exists, and Pod Security / secret / RBAC checks hold, in every TLS mode"
$check chart "$tmp/all.yaml"  # the default, line by line

# TLS out of the box: the chart's CA; only the controller mounts its Secret.
python3 - "$tmp/all.yaml" <<'PY' && pass "default TLS: a generated CA, the certificate alone in a ConfigMap for agents" || fail "default TLS objects"
import base64, sys, yaml
objs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
secret = next(o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "flowlb-ca")
crt = base64.b64decode(secret["data"]["tls.crt"]).decode()
assert "BEGIN CERTIFICATE" in crt and "PRIVATE KEY" in base64.b64decode(secret["data"]["tls.key"]).decode()
bundle = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "flowlb-ca-bundle")
assert bundle["data"]["ca.crt"].strip() == crt.strip() and "PRIVATE" not in bundle["data"]["ca.crt"]
ctl = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
assert any(v.get("secret", {}).get("secretName") == "flowlb-ca" for v in ctl["volumes"])
args = ctl["containers"][0]["args"]
assert "--tls-ca-key=/etc/flowlb/ca/tls.key" in args and not any(a.startswith("--tls-cert") for a in args)
PY
render --set tls.generate=controller >"$tmp/ctl-ca.yaml"
grep -q -- "--ca-secret=flowlb-ca" "$tmp/ctl-ca.yaml" && ! grep -q "tls.key:" "$tmp/ctl-ca.yaml" &&
  pass "tls.generate=controller: no key in the manifest; the controller fills the Secret" || fail "tls.generate=controller"
render --set tls.certManager.enabled=true >"$tmp/cm.yaml"
grep -q "kind: Certificate" "$tmp/cm.yaml" && grep -q "isCA: true" "$tmp/cm.yaml" && grep -q -- "--ca-bundle-configmap" "$tmp/cm.yaml" &&
  pass "tls.certManager.enabled renders an Issuer and a CA Certificate" || fail "cert-manager objects"
render --set tls.existingSecret=my-ca | grep -q "secretName: my-ca" && pass "tls.existingSecret is mounted into the controller" ||
  fail "tls.existingSecret"
render --set tls.enabled=false >"$tmp/plain.yaml"
grep -q -- "--plaintext" "$tmp/plain.yaml" && ! grep -q "kind: Secret" "$tmp/plain.yaml" && grep -q "WARNING\|plaintext" "$tmp/plain.yaml" &&
  pass "tls.enabled=false: plaintext on both ends, no CA" || fail "tls.enabled=false"
render --set defaultClass=true | grep -q -- "--default-class" && pass "defaultClass reaches the controller" || fail "defaultClass"
render --set agent.metricsBindAddress=node-ip | grep -q -- "--metrics-address=node-ip:9464" &&
  pass "agent.metricsBindAddress=node-ip binds the agent's metrics to the node IP" || fail "metricsBindAddress"
render --set metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,metrics.prometheusRule.enabled=true >"$tmp/mon.yaml"
for kind in ServiceMonitor PodMonitor PrometheusRule; do
  grep -q "^kind: $kind$" "$tmp/mon.yaml" && pass "renders a $kind when asked" || fail "no $kind"
done
# The PrometheusRule carries the plain rules file, the PodMonitor labels series with the node.
python3 - "$tmp/mon.yaml" "$chart/alerts/flowlb-rules.yaml" <<'PY' && pass "PrometheusRule = alerts/flowlb-rules.yaml; PodMonitor adds node" || fail "PrometheusRule content or PodMonitor node label"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rule = [d for d in docs if d["kind"] == "PrometheusRule"][0]
assert rule["spec"] == yaml.safe_load(open(sys.argv[2])), "rules differ"
pm = [d for d in docs if d["kind"] == "PodMonitor"][0]
assert pm["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"] == "node"
PY
render --set metrics.grafanaDashboard.enabled=true >"$tmp/dash.yaml"
python3 - "$tmp/dash.yaml" "$chart/dashboards/flowlb.json" <<'PY' && pass "grafanaDashboard: a ConfigMap labelled grafana_dashboard with the dashboard" || fail "dashboard ConfigMap"
import json, sys, yaml
cm = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")][0]
assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
assert json.loads(cm["data"]["flowlb.json"]) == json.load(open(sys.argv[2]))
PY
! render | grep -q "grafana_dashboard\|kind: PrometheusRule" && pass "no dashboard ConfigMap or PrometheusRule by default" || fail "monitoring objects on by default"
render --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef |
  grep -q "flowlb@sha256:0123" && pass "an image digest wins over the tag" || fail "image.digest"
render --set-string agent.nodeSelector.x=true | grep -q 'x: "true"' && pass "--set-string nodeSelector renders a string" ||
  fail "nodeSelector string"
render --show-only templates/NOTES.txt >/dev/null 2>&1 || true
"$helm" install --dry-run flowlb "$chart" -n flowlb-system 2>/dev/null | sed -n '/^NOTES:/,$p' >"$tmp/notes" || true
if grep -q "kind: IPPool" "$tmp/notes" && grep -q "docs/install.md" "$tmp/notes" && ! grep -qi "not released" "$tmp/notes"; then
  pass "NOTES: the next step (an IPPool), how to see the VIP, the docs"
else
  # `helm install --dry-run` needs a cluster; render the NOTES template as text instead.
  grep -q "kind: IPPool" "$chart/templates/NOTES.txt" && grep -q "docs/install.md" "$chart/templates/NOTES.txt" &&
    ! grep -qi "not released" "$chart/templates/NOTES.txt" && pass "NOTES: the next step (an IPPool), how to see the VIP, the docs" ||
    fail "NOTES.txt"
fi

# The schema refuses nonsense, naming the value.
reject() {  # reject NAME PATTERN HELM-ARGS...
  if render "${@:3}" >"$tmp/bad" 2>&1; then fail "accepted: $1"
  elif grep -q -- "$2" "$tmp/bad"; then pass "rejects $1"
  else fail "unclear error for $1: $(head -3 "$tmp/bad")"; fi
}
reject "agent.xdpMode=turbo" "xdpMode" --set agent.xdpMode=turbo
reject "a boolean nodeSelector value (the API server would 400)" "agent.nodeSelector.x" --set agent.nodeSelector.x=true
reject "a boolean podLabels value" "controller.podLabels.team" --set controller.podLabels.team=true
reject "snatPorts reversed" "the range is reversed" --set agent.snatPorts=65000-61000
reject "snatPorts beyond 65535" "snatPorts" --set agent.snatPorts=61000-70000
reject "snatPorts from 0" "snatPorts" --set agent.snatPorts=0-100
reject "an empty interface name" "agent.interfaces" --set 'agent.interfaces[0]='
reject "a tag inside image.repository" "image.repository" --set image.repository=ghcr.io/flowlb/flowlb:1.0
reject "an image tag that is no tag" "image.tag" --set "image.tag=v1 beta"
reject "an image digest that is no digest" "image.digest" --set image.digest=latest
reject "a metrics bind address that is no address" "metricsBindAddress" --set agent.metricsBindAddress=eth0
reject "tls.existingSecret with certManager" "choose one" --set tls.existingSecret=x --set tls.certManager.enabled=true
reject "an unknown value" "Additional property" --set agent.interface=eth0

# As a subchart: Helm hands it `global`.
mkdir -p "$tmp/parent/charts"
printf 'apiVersion: v2\nname: parent\nversion: 0.1.0\n' >"$tmp/parent/Chart.yaml"
printf 'global: {imageRegistry: registry.example}\nflowlb: {defaultClass: true}\n' >"$tmp/parent/values.yaml"
cp -r "$chart" "$tmp/parent/charts/flowlb"
"$helm" template p "$tmp/parent" -n flowlb-system >"$tmp/sub.yaml" 2>"$tmp/sub.err" &&
  grep -q -- "--default-class" "$tmp/sub.yaml" && pass "works as a subchart (global accepted)" || { fail "as a subchart"; cat "$tmp/sub.err"; }
render --set global.foo=bar >/dev/null && pass "accepts global" || fail "global refused"

# The BGP CRDs refuse what the controller would refuse anyway, before it is stored.
cat >"$tmp/bad-bgp.yaml" <<'YAML'
apiVersion: flowlb.io/v1alpha1
kind: BGPPeer
metadata: {name: bad}
spec: {peerAddress: not-an-ip, peerASN: 0, myASN: 64512}
---
apiVersion: flowlb.io/v1alpha1
kind: BGPAdvertisement
metadata: {name: bad}
spec: {communities: [not-a-community], aggregationLength: 33}
YAML
if $check crd "$tmp/all.yaml" "$tmp/bad-bgp.yaml" >"$tmp/crd-bgp"; then fail "the BGP CRDs accepted a bad peer and advertisement"
else grep -q "spec.peerAddress" "$tmp/crd-bgp" && grep -q "spec.peerASN" "$tmp/crd-bgp" &&
  grep -q "spec.communities.0" "$tmp/crd-bgp" && grep -q "spec.aggregationLength" "$tmp/crd-bgp" &&
  pass "the BGP CRDs refuse a bad address, AS, community and length" || { fail "BGP CRD errors unclear"; cat "$tmp/crd-bgp"; }; fi

# The IPPool CRD: the samples pass, what a real API server accepted before is refused.
cat >"$tmp/bad-pool.yaml" <<'YAML'
apiVersion: flowlb.io/v1alpha1
kind: IPPool
metadata: {name: bad}
spec: {addresses: [not-an-ip, 10.0.0.0/33]}
YAML
$check crd "$tmp/all.yaml" "$src/manifests/samples/ippool.yaml" "$src/manifests/samples/bgp.yaml" >"$tmp/crd" && pass "the samples validate against the CRDs" ||
  { fail "samples vs CRD"; cat "$tmp/crd"; }
if $check crd "$tmp/all.yaml" "$tmp/bad-pool.yaml" >"$tmp/crd"; then fail "the CRD accepted not-an-ip and 10.0.0.0/33"
else grep -q "spec.addresses.0" "$tmp/crd" && grep -q "spec.addresses.1" "$tmp/crd" &&
  pass "the CRD refuses not-an-ip and 10.0.0.0/33, naming each entry" || { fail "CRD error unclear"; cat "$tmp/crd"; }; fi

# manifests/install.yaml: the chart with its own namespace and the controller-kept CA.
render --set namespace.create=true --set tls.generate=controller >"$tmp/install.yaml"
if diff -q <(grep -v '^#' "$src/manifests/install.yaml") <(grep -v '^#' "$tmp/install.yaml") >/dev/null; then
  pass "manifests/install.yaml matches the chart"
else
  fail "manifests/install.yaml is stale: re-render it (see its header)"
fi
head -c 2000 "$src/manifests/install.yaml" | grep -q "^kind: Namespace" && pass "install.yaml creates its namespace first" ||
  fail "install.yaml must start with its Namespace"
$check chart "$src/manifests/install.yaml" >/dev/null && pass "install.yaml passes the manifest checks" || fail "install.yaml checks"

echo "helm_test: $fails failure(s)"
[ "$fails" -eq 0 ]

#!/usr/bin/env bash
# The Helm chart: lints strictly, renders what an install needs, rejects
# bad values through its schema, and passes only flags the binaries have.
# Usage: e2e/helm_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
helm=$("$src/scripts/install-helm.sh")
chart="$src/charts/flowlb"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1"; fails=$((fails + 1)); }

"$helm" lint --strict "$chart" >"$tmp/lint" 2>&1 && pass "helm lint --strict" || { fail "helm lint"; cat "$tmp/lint"; }
"$helm" template rel "$chart" --namespace flowlb-system --include-crds >"$tmp/all.yaml"
for kind in CustomResourceDefinition Deployment DaemonSet ClusterRole ClusterRoleBinding Role \
            RoleBinding Service ServiceAccount; do
  grep -q "^kind: $kind$" "$tmp/all.yaml" && pass "renders a $kind" || fail "no $kind rendered"
done
grep -q "name: ippools.flowlb.io" "$tmp/all.yaml" && pass "IPPool CRD included" || fail "IPPool CRD"

# Every --flag the chart passes must be one the binary documents.
for bin in agent controller; do
  flags=$(awk -v c="flowlb-$bin" '$0 ~ "/usr/local/bin/"c {on=1} on && /^ *- --/ {print} on && /^ *(ports|env|resources):/ {on=0}' "$tmp/all.yaml" |
          sed -E 's/^ *- (--[a-z0-9-]+).*/\1/' | sort -u)
  [ -n "$flags" ] || fail "no $bin flags found in the rendered chart"
  # The help text in a file: piped into grep -q under pipefail, the binary
  # could die of SIGPIPE once grep had its match, and the flag looked absent.
  "$build/$bin/flowlb-$bin" --help >"$tmp/help-$bin" 2>&1 || fail "$bin --help failed"
  for flag in $flags; do
    grep -q -- "$flag" "$tmp/help-$bin" && pass "$bin knows $flag" || fail "$bin has no $flag"
  done
done

if "$helm" template rel "$chart" --set agent.xdpMode=turbo >"$tmp/bad" 2>&1; then
  fail "schema accepted agent.xdpMode=turbo"
else
  grep -q "xdpMode" "$tmp/bad" && pass "schema rejects a bad xdpMode" || fail "unclear schema error"
fi
"$helm" template rel "$chart" --set tls.enabled=false --set defaultClass=true >"$tmp/plain.yaml"
grep -q -- "--plaintext" "$tmp/plain.yaml" && grep -q -- "--default-class" "$tmp/plain.yaml" &&
  pass "tls.enabled=false and defaultClass=true reach the controller's flags" || fail "values not applied"

# manifests/install.yaml is the default render, kept current.
"$helm" template flowlb "$chart" --namespace flowlb-system --include-crds >"$tmp/install.yaml"
if diff -q <(grep -v '^#' "$src/manifests/install.yaml") <(grep -v '^#' "$tmp/install.yaml") >/dev/null; then
  pass "manifests/install.yaml matches the chart"
else
  fail "manifests/install.yaml is stale: re-render it (see its header)"
fi

echo "helm_test: $fails failure(s)"
[ "$fails" -eq 0 ]

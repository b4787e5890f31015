#!/usr/bin/env bash
# End-to-end checks of the two binaries as a user runs them: help texts,
# the standalone configuration check and dry run, and clear rejections of
# bad input. Usage: e2e/cli_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
agent=$build/agent/flowlb-agent
controller=$build/controller/flowlb-controller
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {  # check NAME COMMAND...: the command must succeed
  if "${@:2}" >"$tmp/out" 2>&1; then echo "ok   $1"; else echo "FAIL $1"; sed 's/^/     /' "$tmp/out"; fails=$((fails + 1)); fi
}
expect_fail() {  # expect_fail NAME PATTERN COMMAND...: must fail and print PATTERN
  if "${@:3}" >"$tmp/out" 2>&1; then echo "FAIL $1 (succeeded)"; fails=$((fails + 1));
  elif grep -q -- "$2" "$tmp/out"; then echo "ok   $1";
  else echo "FAIL $1 (no '$2')"; sed 's/^/     /' "$tmp/out"; fails=$((fails + 1)); fi
}

for flag in --config --check --dry-run-flows --interface --xdp-mode --conntrack-entries --metrics-address; do
  check "agent --help documents $flag" grep -q -- "$flag" <("$agent" --help)
done
for flag in --source --kubeconfig --default-class --grpc-address --tls-cert --plaintext --leader-elect; do
  check "controller --help documents $flag" grep -q -- "$flag" <("$controller" --help)
done

check "agent checks the example config" "$agent" --config "$src/examples/agent-standalone.yaml" --check
grep -q "fingerprint=" "$tmp/out" || { echo "FAIL no fingerprint printed"; fails=$((fails + 1)); }

"$agent" --config "$src/examples/agent-standalone.yaml" --check --dry-run-flows 3000 >"$tmp/dry" 2>&1
# 3000 flows over weights 1:1:2 (the draining backend gets none): each within 20 % of its share.
python3 - "$tmp/dry" <<'PY' && echo "ok   dry run spreads flows by weight" || { echo "FAIL dry run spread"; cat "$tmp/dry"; exit 1; }
import re, sys
text = open(sys.argv[1]).read()
line = [l for l in text.splitlines() if l.strip().startswith("default/web:http:")][0]
counts = {a: int(n) for a, n in re.findall(r"(\d+\.\d+\.\d+\.\d+):8080=(\d+)", line)}
assert "10.1.0.14" not in counts, "draining backend got new flows"
want = {"10.1.0.11": 750, "10.1.0.12": 750, "10.1.0.13": 1500}
for a, w in want.items():
    assert abs(counts.get(a, 0) - w) <= 0.2 * w, (a, counts)
assert "dropped=0" in line
PY

cat >"$tmp/bad.yaml" <<'YAML'
services:
  - name: web
    vip: 192.0.2.10
    port: 80
    mode: magic
    backends: []
YAML
expect_fail "agent rejects a bad mode naming line and field" "line 5: services\[0\].mode" "$agent" --config "$tmp/bad.yaml" --check
printf 'services:\n  - name: web\n    vip: 192.0.2.300\n    port: 80\n    backends: []\n' >"$tmp/badip.yaml"
expect_fail "agent rejects a bad VIP" "services\[0\].vip" "$agent" --config "$tmp/badip.yaml" --check
expect_fail "agent refuses a bad --xdp-mode" "xdp-mode" "$agent" --xdp-mode turbo --config "$src/examples/agent-standalone.yaml"
# Issue 17, finding 9: flags that used to abort with an uncaught exception
# (std::stoi/stoul) now end in a usage error naming the flag, exit code 2.
expect_exit2() {  # expect_exit2 NAME PATTERN COMMAND...
  local rc=0
  "${@:3}" >"$tmp/out" 2>&1 || rc=$?
  if [ "$rc" -eq 2 ] && grep -q -- "$2" "$tmp/out"; then echo "ok   $1";
  else echo "FAIL $1 (exit $rc, want 2 and '$2')"; sed 's/^/     /' "$tmp/out"; fails=$((fails + 1)); fi
}
huge=99999999999999999999999
expect_exit2 "agent: a bad --cpus is a usage error, not an abort" "'x' is not a CPU number" \
  "$agent" --cpus x --config "$src/examples/agent-standalone.yaml"
expect_exit2 "agent: a bad --kernel-path-mark is a usage error, not an abort" "kernel-path-mark: 'x'" \
  "$agent" --kernel-path-mark x --config "$src/examples/agent-standalone.yaml"
expect_exit2 "agent: a huge --metrics-address port is a usage error" "metrics-address: port" \
  "$agent" --metrics-address "0.0.0.0:$huge" --config "$src/examples/agent-standalone.yaml"
expect_exit2 "agent: a huge --controller-address port is a usage error" "controller-address: port" \
  "$agent" --controller-address "ctl:$huge" --plaintext
expect_exit2 "controller: a huge --grpc-address port is a usage error" "grpc-address: port" \
  "$controller" --grpc-address "0.0.0.0:$huge" --plaintext
expect_exit2 "controller: a huge --metrics-address port is a usage error" "metrics-address: port" \
  "$controller" --metrics-address "0.0.0.0:$huge" --plaintext
expect_exit2 "controller: a non-numeric --kube-api-qps is a usage error" "kube-api-qps" \
  "$controller" --kube-api-qps fast --plaintext
# Issue 17, finding 2: TLS without a client CA accepted anonymous agents silently.
expect_exit2 "controller: TLS without --tls-ca refuses to start" "allow-unauthenticated-agents" \
  "$controller" --tls-cert "$src/README.md" --tls-key "$src/README.md"
# Issue 17, finding 1: plaintext stays for tests and labs, and says so at start.
"$agent" --controller-address 127.0.0.1:9 --plaintext --interface nonexistent0 >"$tmp/out" 2>&1 || true
grep -q "event=insecure_controller_link reason=plaintext" "$tmp/out" && echo "ok   agent warns about plaintext at start" ||
  { echo "FAIL agent plaintext warning"; cat "$tmp/out"; fails=$((fails + 1)); }
# Issue 17, finding 16: two slow HTTP connections blocked every scrape of the
# controller. Now 100 connections trickling unfinished requests do not.
mkdir -p "$tmp/slow"
cp "$src/examples/cluster/"*.yaml "$tmp/slow/"
"$controller" --source "dir:$tmp/slow" --plaintext --grpc-address 127.0.0.1:0 \
  --metrics-address 127.0.0.1:19463 >"$tmp/ctl.log" 2>&1 &
ctl_pid=$!
python3 - "$tmp/ctl.log" <<'PY' && echo "ok   controller: 100 slowloris connections do not block a scrape; plaintext warned" ||
import socket, sys, time, urllib.request
deadline = time.time() + 10
while time.time() < deadline:  # up: the metrics port answers
    try:
        urllib.request.urlopen("http://127.0.0.1:19463/readyz", timeout=1).read()
        break
    except OSError:
        time.sleep(0.1)
assert "event=insecure_agent_link reason=plaintext" in open(sys.argv[1]).read(), "no plaintext warning"
slow = []
for _ in range(100):
    s = socket.create_connection(("127.0.0.1", 19463))
    s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
    slow.append(s)
body = urllib.request.urlopen("http://127.0.0.1:19463/metrics", timeout=3).read().decode()
assert "flowlb_build_info" in body, body[:200]
ready = urllib.request.urlopen("http://127.0.0.1:19463/readyz", timeout=3).read().decode()
assert "readyz check passed" in ready, ready
PY
  { echo "FAIL controller metrics under slow clients"; cat "$tmp/ctl.log"; fails=$((fails + 1)); }
kill "$ctl_pid" 2>/dev/null; wait "$ctl_pid" 2>/dev/null || true

for bin in agent controller; do
  out=$("$build/$bin/flowlb-$bin" --version)
  if [[ "$out" =~ ^flowlb-$bin\ [0-9]+\.[0-9]+\.[0-9]+\ \(commit\ [0-9a-f]{7,}(-dirty)?\)$ ]]; then echo "ok   $bin --version: $out";
  else echo "FAIL $bin --version: '$out'"; fails=$((fails + 1)); fi
done

expect_fail "controller refuses a missing source dir" "no directory" "$controller" --source dir:/nonexistent --plaintext
expect_fail "controller needs TLS or --plaintext" "plaintext" "$controller"

# The controller on the standalone source: allocations, per-node state, persistence.
cluster="$tmp/cluster"
cp -r "$src/examples/cluster" "$cluster"
"$controller" --source "dir:$cluster" --once --dump-state --status-file "$tmp/status.yaml" >"$tmp/c1" 2>&1 ||
  { echo "FAIL controller dir source"; cat "$tmp/c1"; fails=$((fails + 1)); }
# (IPv6 from 2001:db8:100::1: the all-zeros address is the subnet-router anycast, never given out.)
for want in "shop/web: \\[192.0.2.1, 2001:db8:100::1\\] pool=public satisfied=true" \
            "infra/dns: \\[198.51.100.15\\] pool=reserved" \
            "backend 10.1.0.13:8080 DRAINING" "(this node announces)"; do
  if grep -q -- "$want" "$tmp/c1"; then echo "ok   controller state has '$want'";
  else echo "FAIL controller state lacks '$want'"; fails=$((fails + 1)); fi
done
if grep -q "elsewhere" "$tmp/c1"; then echo "FAIL a Service of another class was touched"; fails=$((fails + 1));
else echo "ok   Services of other classes untouched"; fi
# A new, older Service appears, and a broken one too: web keeps its address
# (read back from the status file), the broken object is reported, the rest is served.
cat >"$cluster/new.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: early, namespace: shop, creationTimestamp: "2020-01-01T00:00:00Z"}
spec: {type: LoadBalancer, loadBalancerClass: flowlb.io/lb, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: broken, namespace: shop}
spec: {type: LoadBalancer, loadBalancerClass: flowlb.io/lb, ports: [{port: 0}]}
YAML
"$controller" --source "dir:$cluster" --once --dump-state --status-file "$tmp/status.yaml" >"$tmp/c2" 2>&1
if grep -q "shop/web: \\[192.0.2.1, 2001:db8:100::1\\]" "$tmp/c2"; then echo "ok   restart keeps web's addresses";
else echo "FAIL web moved after restart"; cat "$tmp/c2"; fails=$((fails + 1)); fi
if grep -q "shop/early: \\[192.0.2.2" "$tmp/c2"; then echo "ok   the newcomer gets a free address";
else echo "FAIL early"; fails=$((fails + 1)); fi
if grep -q "object_rejected.*Service/broken.*ports\\[\\].port" "$tmp/c2"; then echo "ok   broken object reported";
else echo "FAIL broken object not reported"; fails=$((fails + 1)); fi

# An unreadable status file stops the controller: starting would replace the
# allocations it holds (issue 17.14).
cp "$tmp/status.yaml" "$tmp/status.good"
printf 'services: {shop/web: {ingress: [192.0.2.1\n' >"$tmp/status.yaml"
expect_fail "controller refuses an unreadable status file" "status_file_unreadable" \
  "$controller" --source "dir:$cluster" --once --status-file "$tmp/status.yaml"
if grep -q "192.0.2.1$" "$tmp/status.yaml" && ! grep -q early "$tmp/status.yaml"; then
  echo "ok   the unreadable status file is left as it was"
else echo "FAIL the status file was rewritten"; fails=$((fails + 1)); fi

echo "cli_test: $fails failure(s)"
[ "$fails" -eq 0 ]

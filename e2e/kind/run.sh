#!/usr/bin/env bash
# flowlb end to end on a kind cluster, for a machine with Docker and kind
# (modelled on MetalLB's `inv dev-env` + `inv e2etest` and Cilium's kind e2e).
#
# IT DOES NOT RUN IN THIS PROJECT'S CI: the test machines have no Docker
# engine. What it uses that can run there does, on every `./flowlb.sh test`:
# the image build (e2e/image_test.sh, buildah, same Dockerfile), and
# e2e/kind/check.sh: `helm template` with exactly the values passed below,
# those values against the chart's schema, and the manifests applied below
# against the chart's schema and the IPPool CRD.
#
#   1. creates a 3-node kind cluster (cluster.yaml)
#   2. builds the image and loads it into the nodes
#   3. `helm install` with the chart's defaults (+ values.yaml: the local image,
#      the controller on the control plane), and an IPPool from the top of the
#      kind Docker network
#   4. deploys a 3-replica echo server, one pod per node (echo.yaml)
#   5. checks from the host: the VIP in `kubectl get svc`; requests spread over
#      the pods; a rolling update with zero failed requests; `docker pause` of
#      the node that announces the VIP, and service back within a few seconds;
#      the controller's Events on the Service
#   6. deletes the cluster (unless --keep)
#
# Needs: docker, kind, kubectl, curl, ip; helm (else scripts/install-helm.sh).
# Usage: e2e/kind/run.sh [--keep]        FLOWLB_KIND_NAME (default flowlb-e2e)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
name=${FLOWLB_KIND_NAME:-flowlb-e2e}
keep=false
[ "${1:-}" = --keep ] && keep=true
for tool in docker kind kubectl curl ip; do
  command -v "$tool" >/dev/null || { echo "e2e/kind/run.sh needs $tool" >&2; exit 2; }
done
helm=$(command -v helm || "$src/scripts/install-helm.sh")
ctx="kind-$name"
k() { kubectl --context "$ctx" "$@"; }
tmp=$(mktemp -d)
loop_pid=""
cleanup() {
  [ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null || true
  rm -rf "$tmp"
  $keep || kind delete cluster --name "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT
step() { echo; echo "== $*"; }
ok() { echo "ok   $*"; }
fail() {
  echo "FAIL $*"
  k -n flowlb-system get pods -o wide || true
  k -n flowlb-system logs deploy/flowlb-controller --tail=60 || true
  k -n flowlb-system logs ds/flowlb-agent --tail=40 --prefix || true
  exit 1
}
wait_until() {  # wait_until SECONDS COMMAND...: polls every 0.2 s
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

step "1. a 3-node kind cluster"
kind create cluster --name "$name" --config "$here/cluster.yaml" --wait 180s

step "2. the image, built and loaded"
tag="kind-$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null || echo dev)"
docker build -t "localhost/flowlb:$tag" --build-arg GIT_COMMIT="${tag#kind-}" "$src"
kind load docker-image "localhost/flowlb:$tag" --name "$name"

step "3. helm install (chart defaults) and an IPPool from the kind network"
k create namespace flowlb-system
k label namespace flowlb-system pod-security.kubernetes.io/enforce=privileged
# check.sh renders exactly this (values.yaml + the tag).
"$helm" --kube-context "$ctx" install flowlb "$src/charts/flowlb" -n flowlb-system \
  -f "$here/values.yaml" --set image.tag="$tag" --wait --timeout 5m
subnet=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | tr ' ' '\n' | grep -v : | head -1)
net=${subnet%.*.*}  # 172.18.0.0/16 -> 172.18
sed "s/@RANGE@/$net.255.200-$net.255.250/" "$here/ippool.yaml" | k apply -f -
k wait --for=jsonpath='{.status.conditions[0].status}'=True ippool/kind --timeout 60s ||
  fail "the IPPool is not valid: $(k get ippool kind -o yaml)"
ok "flowlb installed; IPPool $net.255.200-$net.255.250"

step "4. a 3-replica echo server, one pod per node"
k apply -f "$here/echo.yaml"
k rollout status deploy/echo --timeout 180s
[ "$(k get pods -l app=echo -o jsonpath='{.items[*].spec.nodeName}' | tr ' ' '\n' | sort -u | wc -l)" -eq 3 ] ||
  fail "the echo pods are not on 3 nodes"

step "5. checks from the host"
vip_of() { k get svc echo -o jsonpath='{.status.loadBalancer.ingress[0].ip}'; }
wait_until 60 test -n "$(vip_of)" || fail "no VIP in kubectl get svc"
vip=$(vip_of)
k get svc echo
ok "the Service has the VIP $vip"
wait_until 30 curl -sf --max-time 1 "http://$vip/hostname" -o /dev/null || fail "the VIP does not answer"
for _ in $(seq 90); do curl -s --max-time 2 "http://$vip/hostname"; echo; done | sort | uniq -c >"$tmp/spread"
cat "$tmp/spread"
[ "$(grep -c . "$tmp/spread")" -eq 3 ] && ! awk '$1 < 10 {exit 1}' "$tmp/spread" &&
  ok "90 requests spread over the 3 pods (at least 10 each)" || fail "requests not spread: $(cat "$tmp/spread")"

# A rolling update under a stream of requests: none may fail.
(while true; do curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 "http://$vip/hostname"; sleep 0.05; done) \
  >"$tmp/codes" 2>&1 &
loop_pid=$!
k rollout restart deploy/echo
k rollout status deploy/echo --timeout 300s
sleep 2
kill "$loop_pid"
loop_pid=""
total=$(grep -c . "$tmp/codes")
bad=$(grep -vc '^200$' "$tmp/codes" || true)
[ "$bad" -eq 0 ] && ok "rolling update: $total requests, 0 failed" || fail "rolling update: $bad of $total requests failed"

# The announcing node: whose MAC the host resolved the VIP to.
mac=$(ip neigh show "$vip" | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1)}')
node=""
for n in $(kind get nodes --name "$name"); do
  [ "$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}' "$n")" = "$mac" ] && node=$n
done
[ -n "$node" ] || fail "no node has the VIP's MAC $mac"
ok "$node announces $vip"
docker pause "$node"
start=$(date +%s.%N)
wait_until 30 curl -sf --max-time 0.5 "http://$vip/hostname" -o /dev/null || { docker unpause "$node"; fail "no service within 30 s of pausing $node"; }
gap=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
docker unpause "$node"
awk -v g="$gap" 'BEGIN {exit !(g < 5)}' && ok "paused $node: the VIP answered again after $gap s" ||
  fail "paused $node: $gap s without service (want < 5 s)"

events=$(k get events --field-selector involvedObject.name=echo,involvedObject.kind=Service \
           -o jsonpath='{range .items[*]}{.reason}{" "}{.source.component}{"\n"}{end}')
echo "$events"
grep -q "IPAllocated flowlb-controller" <<<"$events" && ok "the controller's IPAllocated Event is on the Service" ||
  fail "no IPAllocated Event"

step "6. done"
echo "kind e2e: all checks passed"

#!/usr/bin/env bash
# The demo: the namespace lab, three backends, flowlb-agent on the LB node
# with examples/lab-agent.yaml, and real HTTP through the VIPs. Cleans up
# after itself, also on Ctrl-C. Usage: e2e/lab/demo.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
P=flbdemo
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$here/lab.sh" down "$P"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
client() { ip netns exec "$P-client" python3 "$here/client.py" "$@"; }
metric() {
  ip netns exec "$P-lb" curl -s "http://127.0.0.1:19500/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s + 0}'
}

say "lab: client 10.10.1.2 -- LB node (10.10.1.1 | 10.10.2.1) -- switch -- backends 10.10.2.11-13"
"$here/lab.sh" up "$P"
for i in 1 2 3; do
  ip netns exec "$P-b$i" python3 "$here/backend_server.py" "b$i" 80 "10.10.2.1$i,10.10.100.20" >/dev/null 2>&1 &
  pids+=($!)
done
cp "$root/examples/lab-agent.yaml" "$work/agent.yaml"
nsenter --net="/run/netns/$P-lb" "$build/agent/flowlb-agent" --interface l0 --interface l1 \
  --config "$work/agent.yaml" --metrics-address 127.0.0.1:19500 >"$work/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  [ "$(metric flowlb_agent_config_generation)" = "1" ] && break
  sleep 0.2
done
grep -E "xdp_attached|xsk_bound|started" "$work/agent.log" | sed 's/^\[[^]]*\] \[[a-z]*\] /   agent: /'

say "300 HTTP requests to the NAT VIP 10.10.100.10:80 (one connection each)"
client spread http://10.10.100.10/id 300 | python3 -c 'import json,sys; c=json.load(sys.stdin); print("   answered by: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))'
say "60 requests to the DSR VIP 10.10.100.20:80 (replies go straight from the backend)"
client spread http://10.10.100.20/id 60 | python3 -c 'import json,sys; c=json.load(sys.stdin); print("   answered by: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))'

say "30 requests to 10.10.1.100, a VIP on the client's own LAN: the LB node answers its ARP"
client spread http://10.10.1.100/id 30 | python3 -c 'import json,sys; c=json.load(sys.stdin); print("   answered by: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))'
echo "   client's neighbour entry: $(ip netns exec "$P-client" ip neigh show 10.10.1.100)  (the LB's l0: $(ip netns exec "$P-lb" cat /sys/class/net/l0/address))"

say "1 MiB download through each VIP, checked byte for byte"
want=$(python3 -c 'import hashlib; print(hashlib.md5(bytes((i*7+3)%256 for i in range(1048576))).hexdigest())')
for vip in 10.10.100.10 10.10.100.20; do
  who=$(client fetch "http://$vip/bytes/1048576" "$work/dl.bin" | head -1)
  got=$(md5sum <"$work/dl.bin" | cut -d' ' -f1)
  [ "$got" = "$want" ] && echo "   $vip: 1048576 bytes from $who, identical" || { echo "   $vip: MISMATCH"; exit 1; }
done

say "b1 leaves the NAT service (config edited; the agent reloads it by itself)"
python3 - "$work/agent.yaml" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().splitlines()
out, seen = [], False
for l in lines:
    if "10.10.2.11" in l and not seen:
        seen = True  # the first service's b1 only
        continue
    out.append(l.replace("generation: 1", "generation: 2"))
open(p + ".new", "w").write("\n".join(out) + "\n")
PY
mv "$work/agent.yaml.new" "$work/agent.yaml"
for _ in $(seq 50); do
  [ "$(metric flowlb_agent_config_generation)" = "2" ] && break
  sleep 0.2
done
client spread http://10.10.100.10/id 100 | python3 -c 'import json,sys; c=json.load(sys.stdin); print("   100 new requests answered by: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))'

say "what the agent counted (Prometheus, 127.0.0.1:19500 in the LB namespace)"
sleep 1.2
echo "   new flows: $(metric 'flowlb_agent_service_new_flows_total') | packets forwarded: $(metric 'flowlb_agent_service_packets_total') | dropped: $(metric 'flowlb_agent_datapath_drops_total') | XDP passed to the kernel: $(metric 'flowlb_agent_xdp_packets_total{action=\"passed\"')"
say "done; cleaning up the lab"

#!/usr/bin/env bash
# Benchmarks that print figures, one per line: FIGURE <name> <value> <unit>.
#   bench/run.sh core      Maglev, conntrack and forwarding-decision figures
#   bench/run.sh datapath  AF_XDP datapath vs nftables DNAT vs kernel forwarding, against the
#                          limits of the machine: a minimal AF_XDP forwarder and NAT in XDP (root)
#   bench/run.sh controller  10k Services against the Kubernetes API test server, and
#                            their fan-out to 200 simulated agents
#   bench/run.sh apiserver   the Kubernetes API test server itself at that scale
#   bench/run.sh e2e       the whole system in the cluster lab: failover, drain, propagation;
#                          BGP with real routers: failover with BFD, ECMP moves; flows across
#                          agent restarts and a SYN flood, health-check detection and
#                          failed requests in the datapath lab; NAT flows across VIP moves
#                          with flow sync (root)
# Run through ./flowlb.sh bench core (which installs and builds first), or
# after a build into build/. The Python benches are modules of the repository
# (they share e2e/lib), so they run from its root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FLOWLB_BUILD:-$root/build}
export FLOWLB_BUILD=$build
cd "$root"

core() {
  ninja -C "$build" -j2 bench_core >/dev/null
  local out
  out=$(mktemp)
  "$build/bench/bench_core" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_format=json --benchmark_out="$out" --benchmark_out_format=json >/dev/null
  python3 - "$out" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
med = {b["run_name"]: b for b in data["benchmarks"] if b.get("aggregate_name") == "median"}
def ms(name):
    b = med[name]
    scale = {"ms": 1, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
    return b["real_time"] * scale
lat = med["BM_MemoryLatencyBaseline"]["ns_per_load"] * 1e9
hit = med["BM_ConntrackLookupHit/0"]["ns_per_lookup"] * 1e9
hit16 = med["BM_ConntrackLookupHit/1"]["ns_per_lookup"] * 1e9
figures = [
    ("maglev_build_ms_n10", ms("BM_MaglevBuild/10"), "ms"),
    ("maglev_build_ms_n100", ms("BM_MaglevBuild/100"), "ms"),
    ("maglev_build_ms_n1000", ms("BM_MaglevBuild/1000"), "ms"),
    ("maglev_imbalance_n1000", med["BM_MaglevBuild/1000"]["imbalance"], "ratio"),
    ("maglev_disruption_excess_n100", med["BM_MaglevDisruption/100/iterations:3"]["excess"], "ratio"),
    ("memory_latency_baseline_ns", lat, "ns"),
    ("conntrack_lookup_hit_ns_1m", hit, "ns"),
    ("conntrack_lookup_hit_vs_memory_latency", hit / lat, "ratio"),
    ("conntrack_lookup_hit_batched16_ns_1m", hit16, "ns"),
    ("conntrack_lookup_hit_batched16_vs_memory_latency", hit16 / lat, "ratio"),
    ("conntrack_bytes_per_entry", med["BM_ConntrackLookupHit/0"]["bytes_per_entry"], "bytes"),
    ("forward_established_ns", med["BM_ForwardEstablished/4096/1"]["ns_per_packet"] * 1e9, "ns"),
    ("forward_established_one_by_one_ns", med["BM_ForwardEstablished/4096/0"]["ns_per_packet"] * 1e9, "ns"),
    ("forward_established_128k_flows_ns", med["BM_ForwardEstablished/131072/1"]["ns_per_packet"] * 1e9, "ns"),
    ("forward_established_128k_flows_one_by_one_ns", med["BM_ForwardEstablished/131072/0"]["ns_per_packet"] * 1e9, "ns"),
    ("forward_new_flow_ns", med["BM_ForwardNewFlow/16384"]["ns_per_packet"] * 1e9, "ns"),
    ("handoff_frame_64b_ns", med["BM_HandoffFrame/64"]["ns_per_frame"] * 1e9, "ns"),
    ("handoff_frame_1514b_ns", med["BM_HandoffFrame/1514"]["ns_per_frame"] * 1e9, "ns"),
    ("forward_new_flow_1m_table_ns", med["BM_ForwardNewFlow/1048576"]["ns_per_packet"] * 1e9, "ns"),
    # bench datapath's new-flow case without the veth (UDP, 1 s timeout,
    # 3 backends, 55,001 SNAT ports, 1 Mi entries) at simulated offered rates
    ("forward_new_udp_flow_nat_50kpps_ns", med["BM_ForwardNewUdpFlowSteady/0/50"]["ns_per_packet"] * 1e9, "ns"),
    ("forward_new_udp_flow_nat_150kpps_ns", med["BM_ForwardNewUdpFlowSteady/0/150"]["ns_per_packet"] * 1e9, "ns"),
    ("forward_new_udp_flow_dsr_150kpps_ns", med["BM_ForwardNewUdpFlowSteady/1/150"]["ns_per_packet"] * 1e9, "ns"),
    ("forward_new_udp_flow_dsr_1000kpps_ns", med["BM_ForwardNewUdpFlowSteady/1/1000"]["ns_per_packet"] * 1e9, "ns"),
    ("next_hop_lookup_scan_ns_4_routes", med["BM_NextHopLookup/4/0"]["ns_per_lookup"] * 1e9, "ns"),
    ("next_hop_lookup_precomputed_ns_4_routes", med["BM_NextHopLookup/4/1"]["ns_per_lookup"] * 1e9, "ns"),
    ("next_hop_lookup_scan_ns_500_routes", med["BM_NextHopLookup/500/0"]["ns_per_lookup"] * 1e9, "ns"),
    ("next_hop_lookup_precomputed_ns_500_routes", med["BM_NextHopLookup/500/1"]["ns_per_lookup"] * 1e9, "ns"),
    ("agent_update_one_of_1000_services_ms", ms("BM_SnapshotUpdateOne/1000"), "ms"),
]
for name, value, unit in figures:
    print("FIGURE %s %.4g %s" % (name, value, unit))
PY
  rm -f "$out"
  # The agent's memory with 10k services and with one VIP of 4,000 ports
  # (the real binary on a veth: needs root).
  if [ "$(id -u)" -eq 0 ]; then
    ninja -C "$build" -j2 flowlb-agent >/dev/null
    (cd "$root" && python3 -m bench.agent_memory "$build")
    # What an idle agent's main loop costs (it sleeps until something happens).
    (cd "$root" && python3 -m bench.agent_idle "$build")
  else
    echo "# agent_rss_mb_*, agent_idle_*: skipped (needs root)"
  fi
}

datapath() {  # needs root: builds a namespace lab
  ninja -C "$build" -j2 flowlb-agent xdp_traffic baseline_forward >/dev/null
  python3 -m bench.datapath_bench "$build"
}

controller() {
  ninja -C "$build" -j2 flowlb-controller bench_reconcile bench_flow_sync fanout_agents >/dev/null
  "$build/bench/bench_reconcile" --benchmark_filter=10000 --benchmark_format=json 2>/dev/null |
    python3 -c '
import json, sys
for b in json.load(sys.stdin)["benchmarks"]:
    name = {"BM_ReconcileInitial/10000": "reconcile_initial_ms_10k",
            "BM_ReconcileSteady/10000": "reconcile_full_ms_10k",
            "BM_ReconcileEndpointChange/10000": "reconcile_endpoint_change_ms_10k"}[b["name"]]
    print("FIGURE %s %.1f ms" % (name, b["real_time"]))'
  "$build/bench/bench_flow_sync" --benchmark_format=json 2>/dev/null |
    python3 -c '
import json, sys
for b in json.load(sys.stdin)["benchmarks"]:
    nodes = b["name"].split("/")[1]
    print("FIGURE flow_sync_relay_records_per_s_%s_nodes %.0f records/s" % (nodes, b["items_per_second"]))'
  python3 -m bench.controller_bench "$build"
  python3 -m bench.fanout_bench "$build"
}

apiserver() {
  python3 -m bench.apiserver_bench
}

e2e() {  # needs root: builds the cluster lab
  ninja -C "$build" -j2 flowlb-agent flowlb-controller xdp_traffic >/dev/null
  python3 -m bench.e2e_bench "$build"
  FLOWLB_BUILD="$build" python3 -m bench.bgp_bench
  FLOWLB_BUILD="$build" python3 -m bench.flow_survival_bench
  FLOWLB_BUILD="$build" python3 -m bench.flow_move_bench
  FLOWLB_BUILD="$build" python3 -m bench.health_bench
}

case "${1:-}" in
  core) core ;;
  e2e) e2e ;;
  datapath) datapath ;;
  controller) controller ;;
  apiserver) apiserver ;;
  *) echo "usage: bench/run.sh core|datapath|controller|apiserver|e2e" >&2; exit 2 ;;
esac

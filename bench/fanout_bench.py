#!/usr/bin/env python3
"""The controller's fan-out to agents at cluster scale.

The real flowlb-controller against the Kubernetes API test server with 10,000
LoadBalancer Services and 100,000 endpoints on 200 ready nodes, serving 200
simulated agents (bench/fanout_agents: real gRPC clients in one process,
speaking the real protocol and acking). Prints FIGURE lines:
  fanout_endpoint_change_to_all_agents_ms_p99 (and p50)
                                    one EndpointSlice changes in the API -> every
                                    agent has acknowledged a state carrying it
  fanout_bytes_per_endpoint_change  DesiredState bytes all agents received for one
                                    endpoint change (mean)
  fanout_full_state_bytes           one agent's FULL state
  rollout_bytes_200_agents          every agent reconnects once, one after another
  rollout_vs_full_states            rollout bytes / (agents x one FULL state)
  controller_cpu_s_per_1000_changes the controller's CPU seconds per 1,000 endpoint
                                    changes fanned out to every agent
Usage (from the repository root): python3 -m bench.fanout_bench BUILD_DIR [SERVICES] [AGENTS]
"""
import gc
import os
import subprocess
import sys
import tempfile
import time

from e2e.k8s.apiserver import ApiServer
from e2e.lib.paths import ROOT

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
AGENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 200
ENDPOINTS = 10
CHANGES = 100
GRPC_PORT = 19543


def address(n):
    """The n-th endpoint address: 10.1.0.0 onwards, every one distinct."""
    return f"10.{1 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    server = ApiServer(tokens=("bench",), bookmark_interval=5.0, history=1000000)
    server.start()
    t = time.monotonic()
    for n in range(AGENTS):
        server.create("nodes", {"metadata": {"name": f"node-{n}"},
                                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    server.create("ippools", {"metadata": {"name": "bench"}, "spec": {"addresses": ["10.200.0.0/16"]}})
    for i in range(N):
        name = f"svc-{i}"
        server.create("services", {
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "flowlb.io/lb",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        server.create("endpointslices", {
            "metadata": {"name": name + "-x", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address(i * ENDPOINTS + j)],
                           "nodeName": f"node-{(i + j) % AGENTS}", "conditions": {"ready": True}}
                          for j in range(ENDPOINTS)]})
    print(f"# loaded {N} Services, {N * ENDPOINTS} endpoints, {AGENTS} nodes in "
          f"{time.monotonic() - t:.1f}s", flush=True)

    tmp = tempfile.mkdtemp(prefix="flowlb-fanout-")
    cfg = os.path.join(tmp, "kubeconfig")
    with open(cfg, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
current-context: b
contexts: [{{name: b, context: {{cluster: c, user: u}}}}]
clusters: [{{name: c, cluster: {{server: "{server.url}"}}}}]
users: [{{name: u, user: {{token: bench}}}}]
""")
    log = open(os.path.join(tmp, "controller.log"), "w")
    t0 = time.monotonic()
    ctl = subprocess.Popen(
        [os.path.join(BUILD, "controller", "flowlb-controller"), "--source", "kubernetes",
         "--kubeconfig", cfg, "--plaintext", "--leader-elect=false",
         "--grpc-address", f"127.0.0.1:{GRPC_PORT}", "--grpc-max-streams-per-source",
         str(AGENTS + 16),
         # 200 agents share this machine's CPUs with the controller, and each
         # decodes a 2 MB FULL state: with 1 s pings and a 5 s timeout the
         # busy ones were taken for dead, reconnected, got a FULL state again
         # and the run never settled (no figures). Pings here only detect
         # dead peers, which this bench has none of.
         "--grpc-keepalive-ms", "10000", "--grpc-keepalive-timeout-ms", "60000",
         "--metrics-address", "127.0.0.1:19490", "--kube-api-qps", "100000",
         "--kube-api-burst", "100000", "--api-writers", "8"],
        stdout=log, stderr=subprocess.STDOUT)
    agents = None
    try:
        written, seen = set(), 0
        while len(written) < N:
            entries = server.request_log()
            for r in entries[seen:]:
                if r["method"] == "PATCH" and r["path"].endswith("/status") and r["code"] == 200:
                    written.add(r["path"])
            seen = len(entries)
            if time.monotonic() - t0 > 300:
                raise SystemExit(f"only {len(written)} of {N} statuses after 300s")
            time.sleep(0.05)
        print(f"# every Service had its address {time.monotonic() - t0:.1f}s after start",
              flush=True)

        agents = subprocess.Popen(
            [os.path.join(BUILD, "bench", "fanout_agents"), f"127.0.0.1:{GRPC_PORT}", str(AGENTS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

        def ask(command, expect):
            agents.stdin.write(command + "\n")
            agents.stdin.flush()
            line = agents.stdout.readline().split()
            if not line or line[0] != expect:
                raise SystemExit(f"fanout_agents answered {line!r} to {command!r}")
            return line[1:]

        t1 = time.monotonic()
        ms, full = ask("synced", "SYNCED")
        full = int(full)
        print(f"# {AGENTS} agents connected and in sync {time.monotonic() - t1:.1f}s after "
              f"starting; one FULL state is {full} bytes", flush=True)
        # Let the connect burst and the API writes settle: once agents
        # acknowledge, every Service gets its Programmed and Announced
        # conditions (10,000 PATCHes) and Events drain (10,000 POSTs), and
        # changes measured meanwhile wait behind them. Settled: no write for 2 s.
        t2, writes, quiet_since = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - quiet_since < 2:
            n = sum(1 for r in server.request_log() if r["method"] != "GET")
            if n != writes:
                writes, quiet_since = n, time.monotonic()
            if time.monotonic() - t2 > 300:
                raise SystemExit(f"status writes still going after 300s ({writes})")
            time.sleep(0.2)
        print(f"# API writes settled {time.monotonic() - t2:.1f}s after the agents synced "
              f"({writes} writes since start)", flush=True)

        # The API test server lives in this Python process: a full garbage
        # collection over its store, history and request log (millions of
        # objects) stopped it for 0.3-1.3 s, and a change whose watch event
        # waited behind one measured that pause (a 722 ms "p99" with every
        # other change under 100 ms). What exists now is kept out of the
        # collector; the changes' own garbage is still collected.
        gc.collect()
        gc.freeze()
        cpu0 = cpu_seconds(ctl.pid)
        log0 = len(server.request_log())
        lat, sizes = [], []
        for k in range(CHANGES):
            i = k * 97 % N
            s = server.get("endpointslices", "bench", f"svc-{i}-x")
            s["endpoints"][0]["conditions"]["ready"] = not s["endpoints"][0]["conditions"]["ready"]
            ask(f"watch bench/svc-{i}/http/ipv4", "WATCHING")
            start = time.monotonic()
            server.update("endpointslices", s)
            line = agents.stdout.readline().split()
            if not line or line[0] != "DONE":
                raise SystemExit(f"fanout_agents: {line!r}")
            lat.append((float(line[1]) - start) * 1000)
            sizes.append(int(line[2]))
        cpu = cpu_seconds(ctl.pid) - cpu0
        # The controller's API writes while endpoints changed (none is needed:
        # an endpoint change alters no Service status), by kind of path.
        writes = {}
        for r in server.request_log()[log0:]:
            if r["method"] != "GET":
                kind = r["method"] + " " + "/".join(
                    p if not p.startswith("svc-") else "*" for p in r["path"].split("/"))
                writes[kind] = writes.get(kind, 0) + 1
        for kind, n in sorted(writes.items(), key=lambda kv: -kv[1])[:5]:
            print(f"# API writes during the changes: {n} {kind}", flush=True)
        slowest = sorted(range(len(lat)), key=lambda k: -lat[k])[:3]
        print("# slowest changes: " + ", ".join(f"#{k} {lat[k]:.0f} ms" for k in slowest),
              flush=True)
        lat.sort()
        p50 = lat[len(lat) // 2]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]

        _, rollout_bytes, full_states = ask("rollout", "ROLLOUT")
        rollout_bytes, full_states = int(rollout_bytes), int(full_states)

        print(f"FIGURE fanout_endpoint_change_to_all_agents_ms_p50 {p50:.1f} ms")
        print(f"FIGURE fanout_endpoint_change_to_all_agents_ms_p99 {p99:.1f} ms")
        print(f"FIGURE fanout_bytes_per_endpoint_change {sum(sizes) / len(sizes):.0f} bytes")
        print(f"FIGURE fanout_full_state_bytes {full} bytes")
        print(f"FIGURE rollout_bytes_200_agents {rollout_bytes} bytes")
        print(f"FIGURE rollout_vs_full_states {rollout_bytes / (AGENTS * full):.2f} ratio")
        print(f"FIGURE rollout_full_states {full_states} states")
        print(f"FIGURE controller_cpu_s_per_1000_changes {cpu / CHANGES * 1000:.2f} s")
        print(f"FIGURE fanout_api_writes_per_endpoint_change "
              f"{sum(writes.values()) / CHANGES:.1f} requests")
    finally:
        if agents:
            try:
                agents.stdin.write("quit\n")
                agents.stdin.flush()
                agents.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                agents.kill()
        ctl.terminate()
        try:
            ctl.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ctl.kill()
        log.close()
        server.stop()


if __name__ == "__main__":
    main()

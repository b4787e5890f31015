"""Controller at cluster scale against the Kubernetes API test server.

10,000 LoadBalancer Services with 10 endpoints each (100,000 endpoints) on 3
nodes, served by e2e/k8s/apiserver.py. Prints FIGURE lines:
  controller_initial_sync_s_10k      start -> every Service has its IP in status
  controller_rss_mb_10k              resident memory once in sync (peak)
  controller_endpoint_update_to_desired_state_ms_p99 (and p50)
                                     one EndpointSlice changes in the API ->
                                     the controller has computed the new
                                     per-node desired state
Usage (from the repository root): python3 -m bench.controller_bench [BUILD_DIR [SERVICES]]
"""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from e2e.k8s.apiserver import ApiServer
from e2e.lib.paths import ROOT

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
ENDPOINTS = 10
UPDATES = 100


def main():
    server = ApiServer(tokens=("bench",), bookmark_interval=5.0, history=1000000)
    server.start()
    t = time.monotonic()
    for n in ("node-a", "node-b", "node-c"):
        server.create("nodes", {"metadata": {"name": n},
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
            "endpoints": [{"addresses": [f"10.{1 + i // 25000}.{(i // 100) % 250}.{(i % 100) * 2 + j % 2 + 1}"],
                           "nodeName": f"node-{'abc'[j % 3]}", "conditions": {"ready": True}}
                          for j in range(ENDPOINTS)]})
    print(f"# loaded {N} Services and {N * ENDPOINTS} endpoints in {time.monotonic() - t:.1f}s",
          flush=True)

    tmp = tempfile.mkdtemp(prefix="flowlb-bench-")
    cfg = os.path.join(tmp, "kubeconfig")
    with open(cfg, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
current-context: b
contexts: [{{name: b, context: {{cluster: c, user: u}}}}]
clusters: [{{name: c, cluster: {{server: "{server.url}"}}}}]
users: [{{name: u, user: {{token: bench}}}}]
""")
    versions = []  # (monotonic time the line was read, version)
    lock = threading.Condition()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [os.path.join(BUILD, "controller", "flowlb-controller"), "--source", "kubernetes",
         "--kubeconfig", cfg, "--plaintext", "--leader-elect=false",
         "--metrics-address", "127.0.0.1:19489", "--kube-api-qps", "100000",
         "--kube-api-burst", "100000", "--api-writers", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def reader():
        for line in proc.stdout:
            m = re.search(r"event=desired_state version=(\d+)", line)
            if m:
                with lock:
                    versions.append((time.monotonic(), int(m.group(1))))
                    lock.notify_all()
            elif "error" in line or "warn" in line or "event=listed" in line:
                sys.stderr.write(f"# +{time.monotonic() - t0:.2f}s controller: " + line)
    threading.Thread(target=reader, daemon=True).start()

    try:
        # Initial sync: every Service has its address in status.
        written = set()
        seen = 0
        while len(written) < N:
            log = server.request_log()
            for r in log[seen:]:
                if r["method"] == "PATCH" and r["path"].endswith("/status") and r["code"] == 200:
                    written.add(r["path"])
            seen = len(log)
            if time.monotonic() - t0 > 300:
                raise SystemExit(f"only {len(written)} of {N} statuses after 300s")
            time.sleep(0.05)
        sync_s = time.monotonic() - t0
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ctl_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        own = os.times()
        print(f"# every Service had its address {sync_s:.1f}s after start; CPU seconds so far: "
              f"controller {ctl_cpu:.1f}, test server and this script {own.user + own.system:.1f}",
              flush=True)
        # The server's view (not our log parsing) must agree.
        have = sum(1 for s in server.list("services") if s.get("status", {}).get("loadBalancer", {}).get("ingress"))
        assert have == N, have
        # Let the remaining writes (annotations, Events, pool status) finish.
        quiet_since, n_seen = time.monotonic(), len(server.request_log())
        while time.monotonic() - quiet_since < 1.0 and time.monotonic() - t0 < 120:
            time.sleep(0.2)
            n = len(server.request_log())
            if n != n_seen:
                quiet_since, n_seen = time.monotonic(), n
        print(f"# writes settled {time.monotonic() - t0:.1f}s after start "
              f"({n_seen} requests in all)", flush=True)
        rss = hwm = 0
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024

        # Endpoint updates, one at a time.
        lat = []
        for k in range(UPDATES):
            s = server.get("endpointslices", "bench", f"svc-{k * 97 % N}-x")
            s["endpoints"][0]["conditions"]["ready"] = not s["endpoints"][0]["conditions"]["ready"]
            start = time.monotonic()
            rv = int(server.update("endpointslices", s)["metadata"]["resourceVersion"])
            with lock:
                ok = lock.wait_for(lambda: any(v >= rv for _, v in versions[-50:]), timeout=10)
                if not ok:
                    raise SystemExit(f"update {k}: no desired state with version {rv} in 10s")
                done = min(t for t, v in versions if v >= rv)
            lat.append((done - start) * 1000)
            time.sleep(0.05)
        lat.sort()
        p50 = lat[len(lat) // 2]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        suffix = "10k" if N == 10000 else str(N)
        print(f"FIGURE controller_initial_sync_s_{suffix} {sync_s:.2f} s")
        print(f"FIGURE controller_rss_mb_{suffix} {hwm:.0f} MB")
        print(f"FIGURE controller_rss_steady_mb_{suffix} {rss:.0f} MB")
        print(f"FIGURE controller_endpoint_update_to_desired_state_ms_p50 {p50:.1f} ms")
        print(f"FIGURE controller_endpoint_update_to_desired_state_ms_p99 {p99:.1f} ms")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.stop()


if __name__ == "__main__":
    main()

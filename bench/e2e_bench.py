"""End-to-end figures on the cluster lab (e2e/lab/cluster.sh), the whole
system: the standalone controller, two LB-node agents over gRPC, backends, a
client. Prints FIGURE lines:
  l2_failover_ms_median, l2_failover_ms_max   the announcing node's agent is
      killed while a client connects every 10 ms; the longest time without a
      successful connection, 5 runs
  drain_errors   failed requests during a rolling update of all three backends
      (each replaced: the new one ready, the old one terminating, then gone)
      under continuous load
  endpoint_change_to_datapath_ms_p50/_p99   an EndpointSlice change written
      until both agents have applied it to their datapath, 50 changes
Usage (from the repository root, as root): python3 -m bench.e2e_bench [BUILD_DIR]
"""
import datetime
import os
import re
import statistics
import sys
import time

from e2e.lib.cluster_lab import NODES, Cluster, failover_gap_ms, samples, service_yaml
from e2e.lib.proc import lab_prefix


def applied_times(log, backends):
    """Wall-clock times of desired_state_applied lines with this many backends."""
    out = []
    for m in re.finditer(r"^\[([\d-]+ [\d:.]+)\] \[info\] event=desired_state_applied .*backends=(\d+)",
                         log, re.M):
        if int(m.group(2)) == backends:
            out.append(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp())
    return out


def main():
    c = Cluster(prefix=lab_prefix("flbench"))
    try:
        c.up()
        c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3"], drain_timeout="1s"))
        vip = c.vip_of("demo/web")
        for n in NODES:
            c.wait_applied(n, lambda a: a.backends == 3)

        # Endpoint change -> both datapaths.
        lat = []
        for k in range(50):
            want = 4 if k % 2 == 0 else 3
            t0 = time.time()
            c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3", "b4"][:want],
                                             drain_timeout="1s"))
            done = []
            deadline = t0 + 5
            while len(done) < 2 and time.time() < deadline:
                done = [t for n in NODES
                        for t in [min([x for x in applied_times(c.log(n), want) if x >= t0 - 0.001],
                                      default=None)] if t]
                time.sleep(0.005)
            if len(done) < 2:
                raise SystemExit(f"change {k} did not reach both agents")
            lat.append((max(done) - t0) * 1000)
            time.sleep(0.1)
        lat.sort()
        p50 = lat[len(lat) // 2]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]

        # Rolling update under load.
        c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3"], drain_timeout="1s"))
        time.sleep(0.5)
        c.start_client("roll", "loop", f"http://{vip}/id", "9")
        time.sleep(0.5)
        steps = [(["b2", "b3", "b4"], "b1"), (["b3", "b4", "b1"], "b2"), (["b4", "b1", "b2"], "b3")]
        for live, old in steps:
            c.write("web.yaml", service_yaml("web", live + [old], draining=(old,),
                                             drain_timeout="1s"))
            time.sleep(1.5)  # the old pod terminates once its drain period is over
            c.write("web.yaml", service_yaml("web", live, drain_timeout="1s"))
            time.sleep(1.0)
        rc, out = c.client_output("roll", timeout=60)
        got = samples(out)
        drain_errors = sum(1 for s in got if s[2] is None)
        served = {s[2] for s in got if s[2]}

        # Failover, 5 times.
        gaps = []
        for run in range(5):
            announcer = c.announcer()
            c.start_client("fo", "loop", f"http://{vip}/id", "3")
            time.sleep(1.0)
            t_fail = time.time()
            c.kill(announcer)
            rc, out = c.client_output("fo")
            gaps.append(failover_gap_ms(samples(out), t_fail))
            c.start_agent(announcer)
            c.wait_connected(2)
            time.sleep(1.0)

        print(f"# rolling update: {len(got)} requests, served by {sorted(served)}")
        print(f"# failover runs (ms): {[round(g) for g in gaps]}")
        print(f"FIGURE l2_failover_ms_median {statistics.median(gaps):.0f} ms")
        print(f"FIGURE l2_failover_ms_max {max(gaps):.0f} ms")
        print(f"FIGURE drain_errors {drain_errors} requests")
        print(f"FIGURE endpoint_change_to_datapath_ms_p50 {p50:.1f} ms")
        print(f"FIGURE endpoint_change_to_datapath_ms_p99 {p99:.1f} ms")
    finally:
        c.down()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.environ["FLOWLB_BUILD"] = os.path.abspath(sys.argv[1])
    main()

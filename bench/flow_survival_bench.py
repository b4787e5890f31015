"""Flow-survival figures (issue 15) in the datapath lab of e2e/test_flow_survival.py:
the real agent with --state-dir, NAT services over IPv4 and IPv6, real backends.
Prints FIGURE lines:
  nat_restart_flows_lost       NAT downloads (IPv4 and IPv6, the backend
      speaking) and request/response sessions (the client speaking) that did
      not complete byte-identical across agent restarts, over all rounds
  nat_restart_flows            how many flows were running across the restarts
  nat_restart_gap_ms_median/_max  the longest time without a successful new
      connection (a client connects every 10 ms) around each restart
  agent_exit_ms_median         SIGTERM until the agent has exited
  synflood_established_lost    downloads that did not complete byte-identical
      while a SYN flood from random sources ran at the generator's full rate
  synflood_sent_pps, synflood_new_flows_per_s   the flood's rate and the new
      flows the datapath created meanwhile (each a conntrack entry)
Usage (from the repository root, as root): python3 -m bench.flow_survival_bench [ROUNDS]
"""
import os
import statistics
import sys
import time

from e2e.lib import content
from e2e.lib.cluster_lab import failover_gap_ms, samples
from e2e.lib.paths import build_dir
from e2e.lib.proc import in_ns, run
from e2e.test_flow_survival import NAT, NAT6, SurvivalLab


def figure(name, value, unit):
    print(f"FIGURE {name} {value:.4g} {unit}", flush=True)


def url(vip, path):
    return f"http://[{vip}]{path}" if ":" in vip else f"http://{vip}{path}"


def start_downloads(lab, tag, vips, size, pace_ms):
    names = []
    for i, vip in enumerate(vips):
        name = f"{tag}-{i}"
        lab.start_client(name, "fetch", url(vip, f"/slow/{size}/{pace_ms}"), os.path.join(lab.tmp, name + ".bin"))
        names.append(name)
    for name in names:
        lab.header(name, timeout=15)
    return names


def lost_downloads(lab, names, size):
    lost = 0
    for name in names:
        code, _ = lab.finish(name, timeout=240)
        if code != 0 or content.md5_file(os.path.join(lab.tmp, name + ".bin")) != content.expected_md5(size):
            print(f"lost {name}: exit {code}", file=sys.stderr, flush=True)
            lost += 1
    return lost


def restarts(lab, rounds):
    lost = flows = 0
    gaps, exits = [], []
    size = 2097152
    for r in range(rounds):
        downloads = start_downloads(lab, f"rs{r}", [NAT] * 6 + [NAT6] * 4, size, 20)
        sessions = []
        for i in range(2):
            name = f"ka{r}-{i}"
            lab.start_client(name, "keepalive", url(NAT, "/id"), "40", "100")
            lab.header(name, timeout=15)
            sessions.append(name)
        lab.start_client(f"loop{r}", "loop", url(NAT, "/id"), "6")
        lab.header(f"loop{r}", timeout=15)
        t_stop = time.time()
        lab.stop_agent()
        exits.append((time.time() - t_stop) * 1000)
        lab.start_agent()
        _, out = lab.finish(f"loop{r}", timeout=30)
        gaps.append(failover_gap_ms(samples(out), t_stop))
        lost += lost_downloads(lab, downloads, size)
        for name in sessions:
            code, out = lab.finish(name, timeout=60)
            answers = [line for line in out.splitlines() if line.strip()]
            if code != 0 or len(answers) != 39 or len(set(answers)) != 1:
                print(f"lost {name}: exit {code}, {len(answers)} answers from {sorted(set(answers))}: "
                      f"{out[-300:]}", file=sys.stderr, flush=True)
                lost += 1
        flows += len(downloads) + len(sessions)
    figure("nat_restart_flows_lost", lost, "flows")
    figure("nat_restart_flows", flows, "flows")
    figure("nat_restart_gap_ms_median", statistics.median(gaps), "ms")
    figure("nat_restart_gap_ms_max", max(gaps), "ms")
    figure("agent_exit_ms_median", statistics.median(exits), "ms")


def synflood(lab):
    size = 1048576
    names = start_downloads(lab, "sf", [NAT] * 3, size, 30)
    before = lab.metric("flowlb_agent_service_new_flows_total", service="survive/http")
    t0 = time.time()
    out = run(in_ns(lab.ns_name("client"), os.path.join(build_dir(), "bench", "xdp_traffic"), "gen", "c0",
                    lab.lb_mac(), "10.10.1.2", NAT, "80", "4", "0", "syn"), timeout=60)
    secs = time.time() - t0
    new = lab.metric("flowlb_agent_service_new_flows_total", service="survive/http") - before
    figure("synflood_established_lost", lost_downloads(lab, names, size), "flows")
    figure("synflood_sent_pps", int(out.split()[1]) / secs, "pps")
    figure("synflood_new_flows_per_s", new / secs, "flows/s")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lab = SurvivalLab()
    try:
        lab.up()
        restarts(lab, rounds)
        synflood(lab)
    finally:
        lab.down()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What an idle agent costs its node (issue 13): the real binary on one veth
in a namespace, with nothing to forward, in both modes. Its main thread
sleeps until something happens (a desired state, a kernel event, a file
change, a drain deadline) and refreshes metrics once a second; it used to
poll every 5 ms with a controller and every 100 ms with a file.

  FIGURE agent_idle_main_wakeups_per_s_controller  main-thread wakeups (voluntary switches)
  FIGURE agent_idle_main_cpu_ms_per_s_controller   main-thread CPU time
  FIGURE agent_idle_main_wakeups_per_s_file        the same, standalone file
  FIGURE agent_idle_main_cpu_ms_per_s_file

The controller address answers nothing (the link retries with backoff: also
idle work). Needs root. Usage (from the repository root):
python3 -m bench.agent_idle BUILD_DIR
"""
import os
import subprocess
import sys
import tempfile
import time

from e2e.lib import prom
from e2e.lib.proc import in_ns, lab_prefix, nsenter, run
from e2e.lib.wait import wait_until

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
AGENT = os.path.join(BUILD, "agent", "flowlb-agent")
NS = lab_prefix("flbidle")
METRICS = "127.0.0.1:19491"
SECONDS = 5
CONFIG = """generation: 1
snat: {ipv4: 10.99.0.1, portMin: 40000, portMax: 59999}
services:
  - {name: ns/web/tcp-80/ipv4, vip: "10.99.1.1", port: 80, protocol: tcp,
     backends: [{address: "10.99.0.2", port: 8080}]}
"""


def main_thread(pid):
    """(voluntary context switches, CPU seconds) of the process's main thread."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        switches = next(int(line.split()[1]) for line in f
                        if line.startswith("voluntary_ctxt_switches:"))
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return switches, ticks / os.sysconf("SC_CLK_TCK")


def measure(args, ready_metric, tmp, name):
    log = open(os.path.join(tmp, name + ".log"), "w")
    agent = subprocess.Popen(nsenter(NS, AGENT, "--interface", "i0", "--metrics-address", METRICS,
                                     *args), stdout=log, stderr=subprocess.STDOUT)

    def ready():
        if agent.poll() is not None:
            raise RuntimeError("the agent exited; see " + log.name)
        text = run(in_ns(NS, "curl", "-sf", "-m", "2", f"http://{METRICS}/metrics"))
        return prom.value(text, ready_metric) is not None
    try:
        wait_until(ready, 60, "the agent serving metrics",
                   ignore=(prom.MetricAbsent, subprocess.CalledProcessError))
        time.sleep(1)  # the measured interval starts once start-up work is over
        s0, c0 = main_thread(agent.pid)
        time.sleep(SECONDS)  # the scenario: idle for this long
        s1, c1 = main_thread(agent.pid)
        return (s1 - s0) / SECONDS, (c1 - c0) * 1000 / SECONDS
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        log.close()


def main():
    run(["ip", "netns", "del", NS], check=False)
    run(["ip", "netns", "add", NS])
    tmp = tempfile.mkdtemp(prefix="flowlb-idle-")
    try:
        run(in_ns(NS, "ip", "link", "add", "i0", "type", "veth", "peer", "name", "i1"))
        run(in_ns(NS, "ip", "addr", "add", "10.99.0.1/24", "dev", "i0"))
        for ifc in ("lo", "i0", "i1"):
            run(in_ns(NS, "ip", "link", "set", ifc, "up"))
        config = os.path.join(tmp, "agent.yaml")
        with open(config, "w") as f:
            f.write(CONFIG)
        cases = [("controller", ["--controller-address", "127.0.0.1:1", "--plaintext",
                                 "--snat-ipv4", "10.99.0.1"], "flowlb_agent_controller_connected"),
                 ("file", ["--config", config], "flowlb_agent_config_generation")]
        for name, args, metric in cases:
            wakeups, cpu_ms = measure(args, metric, tmp, name)
            print(f"FIGURE agent_idle_main_wakeups_per_s_{name} {wakeups:.1f} /s")
            print(f"FIGURE agent_idle_main_cpu_ms_per_s_{name} {cpu_ms:.2f} ms/s")
    finally:
        run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    main()

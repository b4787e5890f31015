#!/usr/bin/env python3
"""The agent's memory with many services (issue 17.6), measured on the real
binary: a flowlb-agent with its default flags (1M conntrack entries, 8192
UMEM frames) on one veth in a namespace, given a standalone file, then the
same file with one backend changed. Prints, per case, the resident set once
the second state is applied (what the agent keeps) and its peak:

  FIGURE agent_rss_mb_10k_services       10,000 services x 3 backends
  FIGURE agent_rss_mb_one_vip_4000_ports one VIP, 4,000 ports, 3 backends

Needs root. Usage (from the repository root): python3 -m bench.agent_memory BUILD_DIR
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
NS = lab_prefix("flbmem")
METRICS = "127.0.0.1:19490"


def service(name, vip, port, backends):
    addrs = ", ".join(f'{{address: "{b}", port: 8080}}' for b in backends)
    return f'  - {{name: {name}, vip: "{vip}", port: {port}, protocol: tcp, backends: [{addrs}]}}'


def ten_thousand(generation):
    lines = [f"generation: {generation}", "snat: {ipv4: 10.10.2.1, portMin: 40000, portMax: 59999}",
             "services:"]
    for i in range(10000):
        vip = f"10.{100 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}"
        backends = [f"10.200.{(i * 3 + j) // 250 % 250}.{(i * 3 + j) % 250 + 1}" for j in range(3)]
        if generation > 1 and i == 0:
            backends[0] = "10.201.0.1"  # one backend changed
        lines.append(service(f"ns/s{i}/tcp-80/ipv4", vip, 80, backends))
    return "\n".join(lines) + "\n"


def one_vip_many_ports(generation):
    lines = [f"generation: {generation}", "snat: {ipv4: 10.10.2.1, portMin: 40000, portMax: 59999}",
             "services:"]
    backends = ["10.200.0.1", "10.200.0.2", "10.200.0.3" if generation == 1 else "10.200.0.4"]
    for p in range(4000):
        lines.append(service(f"ns/big/tcp-{1000 + p}/ipv4", "10.99.0.1", 1000 + p, backends))
    return "\n".join(lines) + "\n"


def kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def measure(make, tmp):
    path = os.path.join(tmp, "agent.yaml")
    with open(path, "w") as f:
        f.write(make(1))
    log = open(os.path.join(tmp, "agent.log"), "w")
    agent = subprocess.Popen(nsenter(NS, AGENT, "--interface", "m0", "--config", path,
                                     "--metrics-address", METRICS),
                             stdout=log, stderr=subprocess.STDOUT)

    def generation():
        if agent.poll() is not None:
            raise RuntimeError("the agent exited; see " + log.name)
        text = run(in_ns(NS, "curl", "-sf", "-m", "2", f"http://{METRICS}/metrics"))
        return prom.value(text, "flowlb_agent_config_generation")
    try:
        wait_until(lambda: generation() == 1, 180, "the first state applied",
                   ignore=(prom.MetricAbsent, subprocess.CalledProcessError))
        with open(path + ".new", "w") as f:
            f.write(make(2))
        os.replace(path + ".new", path)
        wait_until(lambda: generation() == 2, 180, "the changed state applied",
                   ignore=(prom.MetricAbsent, subprocess.CalledProcessError))
        # Settled: the replaced snapshot is reclaimed and its memory returned
        # within a few polls; take the resident set once it stops moving.
        readings = [kib(agent.pid, "VmRSS")]

        def settled():
            time.sleep(0.3)
            readings.append(kib(agent.pid, "VmRSS"))
            return abs(readings[-1] - readings[-2]) < 1024
        wait_until(settled, 20, "the resident set to settle")
        return readings[-1] / 1024, kib(agent.pid, "VmHWM") / 1024
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        log.close()


def main():
    for n in (NS, NS + "-peer"):
        run(["ip", "netns", "del", n], check=False)
        run(["ip", "netns", "add", n])
    tmp = tempfile.mkdtemp(prefix="flowlb-mem-")
    try:
        run(["ip", "link", "add", "m0", "netns", NS, "type", "veth", "peer", "name", "m1", "netns",
             NS + "-peer"])
        run(in_ns(NS, "ip", "link", "set", "lo", "up"))
        run(in_ns(NS, "ip", "link", "set", "m0", "up"))
        run(in_ns(NS + "-peer", "ip", "link", "set", "m1", "up"))
        for name, make in [("agent_rss_mb_10k_services", ten_thousand),
                           ("agent_rss_mb_one_vip_4000_ports", one_vip_many_ports)]:
            rss, peak = measure(make, tmp)
            print(f"FIGURE {name} {rss:.0f} MB")
            print(f"FIGURE {name}_peak {peak:.0f} MB")
    finally:
        for n in (NS, NS + "-peer"):
            run(["ip", "netns", "del", n], check=False)


if __name__ == "__main__":
    main()

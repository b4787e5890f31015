"""bench/run.sh datapath: forwarding rate and latency through the lab's LB
node for flowlb (AF_XDP, NAT), nftables DNAT with conntrack (kube-proxy
style) and plain kernel forwarding, measured in one run with the same
generator and sink. Prints FIGURE lines. Needs root.

Placement (2 vCPUs): the live-frames generator runs on CPU 0, so the
kernel cases (and the XDP-only NAT baseline) forward in its softirq on
CPU 0; flowlb's worker, and the minimal AF_XDP forwarder that measures the
limit of AF_XDP on this machine, busy-poll CPU 1. The sink (XDP drop counter on the switch port facing the LB) runs
in the softirq of whichever CPU transmits into it.

Usage (from the repository root, as root): python3 -m bench.datapath_bench BUILD_DIR
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

from e2e.lib.datapath_lab import topology_down, topology_up
from e2e.lib.paths import ROOT
from e2e.lib.proc import lab_prefix, module

BUILD = os.path.abspath(sys.argv[1])
TRAFFIC = os.path.join(BUILD, "bench", "xdp_traffic")
BASELINE = os.path.join(BUILD, "bench", "baseline_forward")
# FLOWLB_BENCH_AGENT: another agent binary (an earlier build, to compare in one session).
AGENT = os.environ.get("FLOWLB_BENCH_AGENT") or os.path.join(BUILD, "agent", "flowlb-agent")
P = lab_prefix("flbbench")
VIP = "10.10.100.10"
POD_VIP = "10.10.100.11"  # NAT to a pod on the LB node: the kernel exception path
DSR_VIP = "10.10.100.12"  # the same backends in DSR: a new flow per packet without SNAT
RUNS = int(os.environ.get("FLOWLB_BENCH_RUNS", "3"))
# FLOWLB_BENCH_XSK_BUSY_POLL=1: flowlb once more with --xsk-busy-poll (socket
# busy polling), in the same run, for datapath_xsk_busy_poll_* figures.
XSK_BUSY_POLL = os.environ.get("FLOWLB_BENCH_XSK_BUSY_POLL") == "1"
SECONDS = 2.0


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw).stdout


def ns(name, *cmd, **kw):
    return sh("ip", "netns", "exec", f"{P}-{name}", *cmd, **kw)


def rate(dst, dport, flows, sink_ns="sw", sink_if="sw-l1"):
    """Median over RUNS of the sink's median 250 ms rate while the generator runs."""
    mac = ns("lb", "cat", "/sys/class/net/l0/address").strip()
    results = []
    for _ in range(RUNS):
        sink = subprocess.Popen(["ip", "netns", "exec", f"{P}-{sink_ns}", TRAFFIC, "sink", sink_if,
                                 str(SECONDS + 1.5)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        ns("client", "taskset", "-c", "0", TRAFFIC, "gen", "c0", mac, "10.10.1.2", dst, str(dport),
           str(SECONDS), str(flows))
        rates = [float(l.split()[1]) for l in sink.communicate()[0].splitlines() if l.startswith("rate")]
        busy = sorted(r for r in rates if r > 0)
        steady = busy[1:-1] if len(busy) > 3 else busy
        results.append(statistics.median(steady) if steady else 0.0)
        if os.environ.get("FLOWLB_BENCH_DEBUG"):
            print(dst, flows, rates, file=sys.stderr)
    SPREAD.append(results)
    return statistics.median(results)


SPREAD = []  # the per-run rates behind each rate(), in call order


def spread():
    """'min-max of N runs' of the last rate()."""
    r = SPREAD[-1]
    return f"runs {min(r) / 1e6:.3f}-{max(r) / 1e6:.3f}"


def baseline(*args):
    """Starts bench/baseline_forward in the LB namespace; stop() returns what it printed."""
    p = subprocess.Popen(["ip", "netns", "exec", f"{P}-lb", BASELINE, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    if p.poll() is not None:
        raise RuntimeError(f"baseline_forward {args[0]}: {p.communicate()[1].strip()}")
    return p


def stop(p):
    p.terminate()
    out, err = p.communicate(timeout=10)
    if p.returncode != 0:
        raise RuntimeError(f"baseline_forward: {err.strip()}")
    return out


def rtt(count=2000):
    """UDP ping-pong to VIP:53 from the client, both ends pinned to CPU 0."""
    code = f"""
import socket, time, statistics
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
lat = []
for i in range({count}):
    t = time.perf_counter_ns(); s.sendto(b"ping", ("{VIP}", 53))
    try:
        s.recvfrom(2048); lat.append((time.perf_counter_ns() - t) / 1000)
    except socket.timeout:
        pass
    time.sleep(0.0005)
lat.sort(); print(lat[len(lat)//2], lat[int(len(lat)*0.99)], len(lat))
"""
    out = ns("client", "taskset", "-c", "0", "python3", "-c", code).split()
    return float(out[0]), float(out[1]), int(out[2])


def nft(on):
    ns("lb", "nft", "flush", "ruleset")
    if on:
        rules = f"""table ip flbbench {{
  chain pre {{ type nat hook prerouting priority dstnat;
    ip daddr {VIP} udp dport 53 dnat to numgen random mod 3 map {{ 0 : 10.10.2.11, 1 : 10.10.2.12, 2 : 10.10.2.13 }};
  }}
  chain post {{ type nat hook postrouting priority srcnat; oifname "l1" masquerade; }}
}}"""
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
            f.write(rules)
        ns("lb", "nft", "-f", f.name)
        os.unlink(f.name)


def main():
    figures = []
    servers = []
    agent = None
    topology_up(P)
    try:
        # A pod on the LB node, reached only through the kernel's exception path.
        sh(os.path.join(ROOT, "e2e", "lab", "pods.sh"), "up", P)
        ns("lb", "ethtool", "-K", "l0", "gro", "on")  # NAPI for live frames without XDP on l0
        ns("lb", "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1", check=False)
        for i in (1, 2, 3):
            servers.append(subprocess.Popen(["ip", "netns", "exec", f"{P}-b{i}", "taskset", "-c", "0",
                                             *module("e2e.lab.backend_server", f"b{i}", "80",
                                                     f"10.10.2.1{i}")],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            cwd=ROOT))
        time.sleep(0.5)
        # Kernel cases: frames sent with XDP_TX into a veth are only delivered
        # by its NAPI, which an XDP program on the receiving end provides.
        passer = subprocess.Popen(["ip", "netns", "exec", f"{P}-lb", TRAFFIC, "pass", "l0", "3600"],
                                  stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        kernel = rate("10.10.2.11", 53, 16)
        nft(True)
        nft_few = rate(VIP, 53, 16)
        ns("lb", "conntrack", "-F", check=False)
        nft_new = rate(VIP, 53, 0)
        nft_p50, nft_p99, _ = rtt()
        nft(False)
        passer.terminate()
        passer.wait()
        # The limits, same generator and sink: NAT to one fixed backend in
        # XDP alone (the in-kernel ceiling, CPU 0), then in a minimal AF_XDP
        # forwarder on the agent's own sockets and loop (CPU 1).
        b1_mac = ns("b1", "cat", "/sys/class/net/eth0/address").strip()
        xdp = baseline("xdp", "l0", "l1", VIP, "10.10.2.1", "10.10.2.11", b1_mac, "3600")
        xdp_few = rate(VIP, 53, 16)
        xdp_spread = spread()
        stop(xdp)
        mini = baseline("afxdp", "l0", "l1", "10.10.2.1", "10.10.2.11", b1_mac, "3600", "1")
        mini_few = rate(VIP, 53, 16)
        mini_few_spread = spread()
        mini_new = rate(VIP, 53, 0)
        mini_new_spread = spread()
        stop(mini)
        cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        # New flow per packet: UDP flows idle out after 1 s in both flowlb
        # and nftables (nf_conntrack_udp_timeout). Even so the NAT case runs
        # out of SNAT ports (3 x 55,001 pairs; docs/datapath.md), so the
        # new-flow ratios take the DSR service.
        def udp_service(name, vip, mode, backends):
            lines = [f"  - name: {name}", f"    vip: {vip}", "    port: 53", "    protocol: udp",
                     f"    mode: {mode}", "    idleTimeoutSeconds: 1", "    backends:"]
            return "\n".join(lines + [f"      - {{address: {b}, port: 53}}" for b in backends])

        web = ["10.10.2.11", "10.10.2.12", "10.10.2.13"]
        cfg.write("\n".join([
            "snat: {ipv4: 10.10.2.1, portMin: 10000, portMax: 65000}", "services:",
            udp_service("bench/udp", VIP, "nat", web),
            udp_service("bench/udp-dsr", DSR_VIP, "dsr", web),
            udp_service("bench/udp-pod", POD_VIP, "nat", ["10.244.1.5"])]) + "\n")
        cfg.close()
        def start_agent(*extra):
            a = subprocess.Popen(["nsenter", f"--net=/run/netns/{P}-lb", AGENT, "--interface", "l0",
                                  "--interface", "l1", "--config", cfg.name, "--metrics-address",
                                  "127.0.0.1:19490", "--poll-mode", "busy", "--cpus", "1",
                                  "--conntrack-entries", "1048576", *extra],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2)
            if a.poll() is not None:
                raise RuntimeError(f"{AGENT} exited with {a.returncode} (run it by hand to see why)")
            ns("client", "ping", "-c", "1", "-W", "1", "10.10.1.1")
            return a

        if XSK_BUSY_POLL:
            agent = start_agent("--xsk-busy-poll")
            bp_few = rate(VIP, 53, 16)
            bp_few_spread = spread()
            bp_new = rate(VIP, 53, 0)
            bp_new_spread = spread()
            bp_p50, bp_p99, _ = rtt()
            agent.terminate()
            agent.wait()
            agent = None
        agent = start_agent()
        fl_few = rate(VIP, 53, 16)
        fl_few_spread = spread()
        fl_new = rate(VIP, 53, 0)
        fl_new_spread = spread()
        # A new flow per packet without SNAT (the issue's "DSR or a SNAT
        # range that does not bind"): conntrack inserts and Maglev only.
        fl_dsr_new = rate(DSR_VIP, 53, 0)
        fl_dsr_new_spread = spread()
        fl_p50, fl_p99, _ = rtt()
        # The same NAT to the pod behind vethpod1: every packet goes through
        # the agent's TUN device and the kernel (masquerade, routing).
        fl_kernel = rate(POD_VIP, 53, 16, sink_ns="pod1", sink_if="eth0")
        os.unlink(cfg.name)
        figures += [
            ("kernel_forward_mpps", kernel / 1e6, "Mpps", "cpu0"),
            ("nftables_dnat_mpps", nft_few / 1e6, "Mpps", "cpu0"),
            ("nftables_dnat_newflow_mpps", nft_new / 1e6, "Mpps", "cpu0"),
            ("xdp_nat_forward_mpps", xdp_few / 1e6, "Mpps", "cpu0, " + xdp_spread),
            ("minimal_afxdp_forward_mpps", mini_few / 1e6, "Mpps", "cpu1, " + mini_few_spread),
            ("minimal_afxdp_forward_newflow_mpps", mini_new / 1e6, "Mpps",
             "cpu1, " + mini_new_spread),
            ("minimal_afxdp_vs_xdp_ratio", mini_few / xdp_few if xdp_few else 0, "ratio", ""),
            ("datapath_nat_mpps", fl_few / 1e6, "Mpps", "worker cpu1, " + fl_few_spread),
            ("datapath_nat_newflow_mpps", fl_new / 1e6, "Mpps", "worker cpu1, " + fl_new_spread),
            ("datapath_vs_minimal_ratio", fl_few / mini_few if mini_few else 0, "ratio", ""),
            ("datapath_dsr_newflow_mpps", fl_dsr_new / 1e6, "Mpps",
             "worker cpu1, " + fl_dsr_new_spread),
            # DSR: the minimal forwarder only swaps MACs, so the NAT case
            # would also measure SNAT ports running out (see docs/datapath.md).
            ("datapath_vs_minimal_newflow_ratio", fl_dsr_new / mini_new if mini_new else 0, "ratio",
             "DSR"),
            ("datapath_nat_vs_minimal_newflow_ratio", fl_new / mini_new if mini_new else 0, "ratio",
             "NAT, SNAT-bound"),
            ("datapath_vs_nftables_ratio", fl_few / nft_few if nft_few else 0, "ratio", ""),
            ("datapath_vs_nftables_newflow_ratio", fl_dsr_new / nft_new if nft_new else 0, "ratio",
             "flowlb DSR vs nftables DNAT+masquerade"),
            ("datapath_nat_vs_nftables_newflow_ratio", fl_new / nft_new if nft_new else 0, "ratio",
             "NAT, SNAT-bound"),
            ("datapath_rtt_p50_us", fl_p50, "us", "client+server cpu0, worker cpu1"),
            ("datapath_rtt_p99_us", fl_p99, "us", "client+server cpu0, worker cpu1"),
            ("nftables_rtt_p50_us", nft_p50, "us", "all cpu0"),
            ("nftables_rtt_p99_us", nft_p99, "us", "all cpu0"),
            ("datapath_vs_nftables_rtt_p99_ratio", fl_p99 / nft_p99 if nft_p99 else 0, "ratio", ""),
            ("datapath_kernel_path_mpps", fl_kernel / 1e6, "Mpps", "worker cpu1, kernel cpu0/1"),
            ("datapath_kernel_path_vs_direct_ratio", fl_kernel / fl_few if fl_few else 0, "ratio", ""),
        ]
        if XSK_BUSY_POLL:
            figures += [
                ("datapath_xsk_busy_poll_nat_mpps", bp_few / 1e6, "Mpps", "worker cpu1, " + bp_few_spread),
                ("datapath_xsk_busy_poll_nat_newflow_mpps", bp_new / 1e6, "Mpps",
                 "worker cpu1, " + bp_new_spread),
                ("datapath_xsk_busy_poll_rtt_p99_us", bp_p99, "us", "client+server cpu0, worker cpu1"),
                ("datapath_xsk_busy_poll_vs_without_ratio", bp_few / fl_few if fl_few else 0, "ratio", ""),
                ("datapath_xsk_busy_poll_vs_without_newflow_ratio", bp_new / fl_new if fl_new else 0,
                 "ratio", ""),
                ("datapath_xsk_busy_poll_vs_without_rtt_p99_ratio", bp_p99 / fl_p99 if fl_p99 else 0,
                 "ratio", ""),
            ]
    finally:
        if agent:
            agent.terminate()
            agent.wait()
        for s in servers:
            s.kill()
            s.wait()
        topology_down(P)
    for name, value, unit, where in figures:
        print(f"FIGURE {name} {value:.4g} {unit}" + (f"  # {where}" if where else ""))


if __name__ == "__main__":
    main()

"""Installs GoBGP's multipath RIB into the kernel, as zebra would: every
prefix gets one route with a next hop per path of the best length (stale
paths of a graceful restart included), and loses it when no path is left.
Runs in the router namespace beside gobgpd; woken by `gobgp monitor`.

Usage: python3 -m e2e.lab.gobgp_fib HOST:PORT   (the gobgpd API address)
"""
import json
import subprocess
import sys
import threading


def rib(api, family):
    host, port = api.split(":")
    out = subprocess.run(["gobgp", "-u", host, "-p", port, "global", "rib", "-a", family, "-j"],
                         capture_output=True, text=True, timeout=10).stdout
    try:
        return json.loads(out or "{}")
    except json.JSONDecodeError:
        return {}


def next_hop(path):
    for a in path.get("attrs", []):
        if a.get("type") == 3:
            return a.get("nexthop")
        if a.get("type") == 14:
            return a.get("nexthop")
    return None


def as_path_len(path):
    for a in path.get("attrs", []):
        if a.get("type") == 2:
            return sum(len(s.get("asns", [])) for s in a.get("as_paths", []))
    return 0


def sync(api, installed):
    want = {}
    for family in ("ipv4", "ipv6"):
        for prefix, paths in rib(api, family).items():
            if not paths:
                continue
            best = min(as_path_len(p) for p in paths)
            hops = sorted({next_hop(p) for p in paths if as_path_len(p) == best} - {None})
            if hops:
                want[prefix] = hops
    for prefix, hops in want.items():
        if installed.get(prefix) == hops:
            continue
        cmd = ["ip", "route", "replace", prefix, "proto", "bgp"]
        for h in hops:
            cmd += ["nexthop", "via", h]
        subprocess.run(cmd, check=False)
        installed[prefix] = hops
        print(f"installed {prefix} via {','.join(hops)}", flush=True)
    for prefix in list(installed):
        if prefix not in want:
            subprocess.run(["ip", "route", "del", prefix, "proto", "bgp"], check=False)
            del installed[prefix]
            print(f"removed {prefix}", flush=True)


def main(api):
    host, port = api.split(":")
    installed = {}
    wake = threading.Event()

    def watch(family):
        while True:
            p = subprocess.Popen(["gobgp", "-u", host, "-p", port, "monitor", "global", "rib",
                                  "-a", family], stdout=subprocess.PIPE, text=True)
            for _ in p.stdout:
                wake.set()
            p.wait()
            wake.set()
            wake.wait(0.2)  # gobgpd not up yet: try again shortly

    for family in ("ipv4", "ipv6"):
        threading.Thread(target=watch, args=(family,), daemon=True).start()
    while True:
        wake.wait(1.0)  # also a periodic resync, e.g. for stale paths dropped
        wake.clear()
        sync(api, installed)


if __name__ == "__main__":
    main(sys.argv[1])

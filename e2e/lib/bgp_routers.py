"""The real BGP routers of the BGP lab, each from Debian, run in the
router namespace with private paths: BIRD 2, FRR (zebra, bfdd, bgpd) and
GoBGP. Each is configured the same way (AS 65000, passive, the LB nodes as
neighbours, ECMP into the kernel, BFD 100 ms x 3 where it has BFD) and
answers the same questions from its own CLI: is the session with a
neighbour Established?

GoBGP has no BFD and no FIB of its own, and the GoBGP of Debian 12 cannot
use the zebra of Debian 12's FRR (its ZAPI decoder panics on FRR 8.4's
interface messages), so e2e/lab/gobgp_fib.py installs its multipath RIB
into the kernel, as zebra would.
"""
import json
import os
import re
import shutil
import subprocess

from e2e.lib.proc import in_ns, module, run

ROUTER_AS = 65000
LB_AS = 65001


class Router:
    """One routing daemon in namespace `ns`, writing under `workdir`."""
    kind = "?"
    has_bfd = True

    def bfd_up(self, addr):
        """Whether the router's BFD session to `addr` is Up (no BFD: True)."""
        return True

    def __init__(self, ns, workdir, procs):
        self.ns = ns
        self.dir = os.path.join(workdir, self.kind)
        self.procs = procs
        self.opts = None

    # neighbours: {address: {"password": str|None}}; bfd and gr: bool.
    def start(self, neighbours, bfd=True, gr=True):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.opts = (tuple(sorted((a, o.get("password")) for a, o in neighbours.items())), bfd, gr)
        self._start(neighbours, bfd and self.has_bfd, gr)

    def options(self):
        return self.opts

    def run(self, *cmd, timeout=20, check=True):
        return run(in_ns(self.ns, *cmd), timeout=timeout, check=check)


class Bird(Router):
    kind = "bird"

    def _start(self, neighbours, bfd, gr):
        self.ctl = os.path.join(self.dir, "bird.ctl")
        lines = [
            "router id 10.30.1.1;",
            f'log "{self.dir}/bird.log" all;',
            "protocol device {}",
            "protocol kernel k4 { ipv4 { import none; export all; }; merge paths yes limit 8; }",
            "protocol kernel k6 { ipv6 { import none; export all; }; merge paths yes limit 8; }",
        ]
        if bfd:
            lines.append('protocol bfd { interface "rtr-l" { min rx interval 100 ms; '
                         "min tx interval 100 ms; multiplier 3; }; }")
        for addr, o in neighbours.items():
            v6 = ":" in addr
            name = "lb_" + re.sub(r"[^0-9a-z]", "_", addr)
            chan = "ipv6 { import all; export none; };" if v6 else \
                "ipv4 { import all; export none; }; ipv6 { import all; export none; };"
            pw = f'password "{o["password"]}";' if o.get("password") else ""
            lines.append(
                f"protocol bgp {name} {{ local as {ROUTER_AS}; neighbor {addr} as {LB_AS}; "
                f"passive yes; error wait time 1, 2; graceful restart {'on' if gr else 'off'}; "
                f"bfd {'on' if bfd else 'off'}; {pw} {chan} }}")
        conf = os.path.join(self.dir, "bird.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.run("bird", "-c", conf, "-s", self.ctl, "-P", os.path.join(self.dir, "bird.pid"))
        self.names = {addr: "lb_" + re.sub(r"[^0-9a-z]", "_", addr) for addr in neighbours}

    def stop(self):
        pid = os.path.join(self.dir, "bird.pid")
        if os.path.exists(pid):
            _kill_pidfile(pid)

    def established(self, addr):
        out = self.run("birdc", "-s", self.ctl, "show", "protocols", self.names[addr], check=False)
        return "Established" in out

    def bfd_up(self, addr):
        out = self.run("birdc", "-s", self.ctl, "show", "bfd", "sessions", check=False)
        return any(line.split()[:1] == [addr] and " Up " in f" {line} "
                   for line in out.splitlines())

    def describe(self, addr):
        return self.run("birdc", "-s", self.ctl, "show", "protocols", "all", self.names[addr],
                        check=False)


class Frr(Router):
    kind = "frr"

    def _start(self, neighbours, bfd, gr):
        os.chmod(self.dir, 0o777)
        shutil.chown(self.dir, "frr", "frr")
        conf = {
            "zebra": [f"log file {self.dir}/zebra.log"],
            "bfdd": ["bfd", " profile fast", "  receive-interval 100", "  transmit-interval 100",
                     "  detect-multiplier 3"],
            "bgpd": ["frr defaults datacenter", f"log file {self.dir}/bgpd.log",
                     f"router bgp {ROUTER_AS}", " bgp router-id 10.30.1.1",
                     " no bgp ebgp-requires-policy", " no bgp default ipv4-unicast",
                     " bgp graceful-restart" if gr else " bgp graceful-restart-disable"],
        }
        for addr, o in neighbours.items():
            conf["bgpd"] += [f" neighbor {addr} remote-as {LB_AS}", f" neighbor {addr} passive"]
            if bfd:
                conf["bgpd"].append(f" neighbor {addr} bfd profile fast")
            if o.get("password"):
                conf["bgpd"].append(f" neighbor {addr} password {o['password']}")
        for fam, v6 in (("ipv4", False), ("ipv6", True)):
            conf["bgpd"].append(f" address-family {fam} unicast")
            conf["bgpd"].append("  maximum-paths 8")
            for addr in neighbours:
                if (":" in addr) == v6:
                    conf["bgpd"].append(f"  neighbor {addr} activate")
            conf["bgpd"].append(" exit-address-family")
        daemons = ["zebra", "bfdd", "bgpd"] if bfd else ["zebra", "bgpd"]
        for d in daemons:
            path = os.path.join(self.dir, d + ".conf")
            with open(path, "w") as f:
                f.write("\n".join(conf[d]) + "\n")
            shutil.chown(path, "frr", "frr")
        for d in daemons:
            extra = ["--bfdctl", os.path.join(self.dir, "bfdd.sock")] if d == "bfdd" else []
            self.run(f"/usr/lib/frr/{d}", "-d", "-f", os.path.join(self.dir, d + ".conf"),
                     "-i", os.path.join(self.dir, d + ".pid"),
                     "-z", os.path.join(self.dir, "zserv.api"), "--vty_socket", self.dir, *extra)
        self.daemons = daemons

    def stop(self):
        for d in reversed(getattr(self, "daemons", [])):
            _kill_pidfile(os.path.join(self.dir, d + ".pid"))

    def vtysh(self, *commands):
        argv = ["vtysh", "--vty_socket", self.dir]
        for c in commands:
            argv += ["-c", c]
        return self.run(*argv, check=False)

    def established(self, addr):
        try:
            n = json.loads(self.vtysh(f"show bgp neighbors {addr} json") or "{}")
        except json.JSONDecodeError:
            return False
        return n.get(addr, {}).get("bgpState") == "Established"

    def bfd_up(self, addr):
        """bgpd has seen the peer's BFD session Up (only then does a BFD Down
        take the session down: before, the hold time decides)."""
        try:
            n = json.loads(self.vtysh(f"show bgp neighbors {addr} json") or "{}")
        except json.JSONDecodeError:
            return False
        return n.get(addr, {}).get("peerBfdInfo", {}).get("status") == "Up"

    def describe(self, addr):
        return self.vtysh(f"show bgp neighbors {addr}")


class Gobgp(Router):
    kind = "gobgp"
    has_bfd = False
    API = "127.0.0.1:50151"

    def _start(self, neighbours, bfd, gr):
        lines = ["[global.config]", f"  as = {ROUTER_AS}", '  router-id = "10.30.1.1"',
                 "[global.use-multiple-paths.config]", "  enabled = true"]
        for addr, o in neighbours.items():
            fam = "ipv6-unicast" if ":" in addr else "ipv4-unicast"
            lines += ["[[neighbors]]", "  [neighbors.config]", f'    neighbor-address = "{addr}"',
                      f"    peer-as = {LB_AS}"]
            if o.get("password"):
                lines.append(f'    auth-password = "{o["password"]}"')
            lines += ["  [neighbors.transport.config]", "    passive-mode = true",
                      "  [neighbors.graceful-restart.config]", f"    enabled = {str(gr).lower()}",
                      "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      f'      afi-safi-name = "{fam}"']
            if gr:
                lines += ["    [neighbors.afi-safis.mp-graceful-restart.config]",
                          "      enabled = true"]
        conf = os.path.join(self.dir, "gobgpd.toml")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.procs.start("gobgpd", in_ns(self.ns, "gobgpd", "-f", conf, "-p",
                                         "--api-hosts", self.API))
        self.procs.start("gobgp-fib", in_ns(self.ns, *module("e2e.lab.gobgp_fib", self.API)))

    def stop(self):
        self.procs.stop("gobgp-fib")
        self.procs.stop("gobgpd")

    def cli(self, *args):
        host, port = self.API.split(":")
        return self.run("gobgp", "-u", host, "-p", port, *args, check=False)

    def established(self, addr):
        try:
            peers = json.loads(self.cli("neighbor", "-j") or "[]")
        except json.JSONDecodeError:
            return False
        if not isinstance(peers, list):  # gobgpd still starting: an error object
            return False
        for p in peers:
            if p.get("conf", {}).get("neighbor_address") == addr:
                return str(p.get("state", {}).get("session_state")).lower() in ("established", "6")
        return False

    def describe(self, addr):
        return self.cli("neighbor", addr)


ROUTERS = {"bird": Bird, "frr": Frr, "gobgp": Gobgp}


def _kill_pidfile(path):
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    # Wait for it to go (the next daemon reuses its sockets and port 179).
    subprocess.run(["sh", "-c", f"for i in $(seq 100); do kill -0 {pid} 2>/dev/null || exit 0; "
                    "sleep 0.05; done; kill -9 " + str(pid)], check=False)

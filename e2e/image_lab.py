#!/usr/bin/env python3
"""The image's agent in the namespace lab (e2e/lab/lab.sh), confined the way
the chart confines it, and real traffic through its VIPs.

The agent binary, its libraries and its XDP object all come from ROOTFS (a
mounted image). It runs in the lab's LB namespace, chrooted into ROOTFS made
read-only (readOnlyRootFilesystem), with a private /tmp, read-only sysfs, no
bpffs, a writable state directory (the chart's hostPath for --state-dir),
no_new_privs (allowPrivilegeEscalation: false), as root with ONLY the
capabilities in CAPS (everything else dropped from the bounding set, as the
container runtime does with `drop: [ALL]` and `add: [...]`).

Passes (exit 0) when the agent becomes ready, holds exactly CAPS, and a
1 MiB download through a NAT VIP and a request to an ARP-announced VIP both
succeed. Otherwise exits 1 and says which step failed.
Usage (from the repository root):
    python3 -m e2e.image_lab ROOTFS CAPS PREFIX     CAPS: e.g. bpf,perfmon,net_admin,net_raw,ipc_lock
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

from e2e.lib.content import expected_md5, md5_file
from e2e.lib.paths import LAB as LAB_DIR
from e2e.lib.paths import ROOT
from e2e.lib.proc import module

LAB = os.path.join(LAB_DIR, "lab.sh")
NAT_VIP, L2_VIP = "10.10.100.10", "10.10.1.100"
METRICS = "127.0.0.1:19478"
CAP_NUMBERS = {"chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4,
               "kill": 5, "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9,
               "net_bind_service": 10, "net_broadcast": 11, "net_admin": 12, "net_raw": 13,
               "ipc_lock": 14, "ipc_owner": 15, "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18,
               "sys_ptrace": 19, "sys_pacct": 20, "sys_admin": 21, "sys_boot": 22, "sys_nice": 23,
               "sys_resource": 24, "sys_time": 25, "sys_tty_config": 26, "mknod": 27, "lease": 28,
               "audit_write": 29, "audit_control": 30, "setfcap": 31, "mac_override": 32,
               "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36,
               "audit_read": 37, "perfmon": 38, "bpf": 39, "checkpoint_restore": 40}

CONFIG = f"""generation: 1
announce: [l0]
snat: {{ipv4: 10.10.2.1, portMin: 40000, portMax: 59999}}
services:
  - name: lab/nat-http
    vip: "{NAT_VIP}"
    port: 80
    protocol: tcp
    mode: nat
    backends: [{{address: 10.10.2.11, port: 80}}, {{address: 10.10.2.12, port: 80}}, {{address: 10.10.2.13, port: 80}}]
  - name: lab/l2-http
    vip: "{L2_VIP}"
    port: 80
    protocol: tcp
    mode: nat
    backends: [{{address: 10.10.2.11, port: 80}}, {{address: 10.10.2.12, port: 80}}]
"""

# In a private mount namespace inside the LB node's network namespace: the
# image read-only, the mounts a container gets, then the agent as root with
# the given bounding set and nothing inheritable.
LAUNCH = r"""
set -e
R=$1; CONF=$2; CAPS=$3; shift 3
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
# A container's /dev: a tmpfs with the usual nodes, and /dev/net/tun only
# because the chart mounts it (agent.kernelPath) for the kernel exception path.
mount -t tmpfs -o size=64k,mode=755 tmpfs "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir "$R/dev/net" "$R/dev/shm" && touch "$R/dev/net/tun" && mount --bind /dev/net/tun "$R/dev/net/tun"
mount -t tmpfs -o size=16m tmpfs "$R/tmp"
mount --bind "$CONF" "$R/mnt"
exec chroot "$R" /usr/bin/setpriv --no-new-privs --reuid=0 --regid=0 --clear-groups \
  --inh-caps=-all --bounding-set="-all$CAPS" -- "$@"
"""


def fail(step, detail=""):
    print(f"FAIL {step}" + (f": {detail}" if detail else ""), flush=True)
    sys.exit(1)


def main():
    rootfs, caps_arg, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    caps = sorted(c.strip().lower().removeprefix("cap_") for c in caps_arg.split(",") if c.strip())
    tmp = tempfile.mkdtemp(prefix="flowlb-image-lab-")
    with open(os.path.join(tmp, "agent.yaml"), "w") as f:
        f.write(CONFIG)
    os.makedirs(os.path.join(tmp, "state"))  # --state-dir: a writable host directory (hostPath)
    procs = []

    def ns(name, *cmd, timeout=10):
        try:
            return subprocess.run(["ip", "netns", "exec", f"{prefix}-{name}", *cmd], capture_output=True,
                                  text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout}s")
    try:
        subprocess.run([LAB, "up", prefix], check=True, timeout=90, capture_output=True)
        for i in (1, 2, 3):
            procs.append(subprocess.Popen(["ip", "netns", "exec", f"{prefix}-b{i}",
                                           *module("e2e.lab.backend_server", f"b{i}", "80", f"10.10.2.1{i}")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT))
        log_path = os.path.join(tmp, "agent.log")
        log = open(log_path, "w")
        agent = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{prefix}-lb", "unshare", "--mount", "--propagation",
             "private", "--fork", "bash", "-c", LAUNCH, "launch", rootfs, tmp,
             "".join(f",+{c}" for c in caps),
             "/usr/local/bin/flowlb-agent", "--config", "/mnt/agent.yaml", "--interface", "l0",
             "--interface", "l1", "--metrics-address", METRICS, "--conntrack-entries", "65536",
             "--bpf-object", "/usr/lib/flowlb/flowlb_xdp_steer.o", "--state-dir", "/mnt/state"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(agent)

        def agent_log():
            with open(log_path) as f:
                return f.read()
        deadline = time.monotonic() + 20
        while True:
            if agent.poll() is not None:
                last = [line for line in agent_log().splitlines() if "error" in line][-1:]
                fail("the agent exited", (last or agent_log().splitlines()[-1:] or ["?"])[0])
            r = ns("lb", "curl", "-s", "-m", "2", f"http://{METRICS}/readyz")
            if r.returncode == 0 and "readyz check passed" in r.stdout:
                break
            if time.monotonic() > deadline:
                fail("the agent never became ready", r.stdout.strip().replace("\n", " | "))
            time.sleep(0.2)
        # (pgrep is not per namespace: find the agent among the namespace's own processes)
        pids = subprocess.run(["ip", "netns", "pids", f"{prefix}-lb"], capture_output=True,
                              text=True).stdout.split()
        pid = next(p for p in pids if open(f"/proc/{p}/comm").read().strip() == "flowlb-agent")
        with open(f"/proc/{pid}/status") as f:
            eff = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
        held = sorted(n for n, bit in CAP_NUMBERS.items() if eff >> bit & 1)
        if held != caps:
            fail("capabilities", f"the agent holds {held}, not {caps}")
        print(f"ok   the image's agent is ready holding exactly {','.join(caps)}", flush=True)
        out = os.path.join(tmp, "nat.bin")
        r = ns("client", *module("e2e.lab.client", "fetch", f"http://{NAT_VIP}/bytes/1048576", out),
               timeout=30)
        if r.returncode != 0 or md5_file(out) != expected_md5(1048576):
            fail("1 MiB through the NAT VIP", r.stderr.strip()[-300:] or "wrong bytes")
        print("ok   1 MiB through the NAT VIP, byte-identical", flush=True)
        r = ns("client", *module("e2e.lab.client", "fetch", f"http://{L2_VIP}/id", os.path.join(tmp, "id")),
               timeout=15)
        if r.returncode != 0:
            fail("the ARP-announced VIP", r.stderr.strip()[-300:])
        print("ok   the VIP announced by ARP answers", flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM) if p is procs[-1] else p.kill()
                    p.wait(timeout=10)
                except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
                    p.kill()
        subprocess.run([LAB, "down", prefix], timeout=60, capture_output=True)


if __name__ == "__main__":
    main()

"""The README's demo: the whole system on the cluster lab, narrated.

The standalone controller reads examples/demo/ (two LB nodes, a pool, a web
Service with three backends), two flowlb-agents get their state over gRPC and
forward with AF_XDP, and a client sends real HTTP to the VIP. Then a backend is
drained under load and the announcing LB node is killed. Everything is cleaned
up at the end, also on Ctrl-C.

Usage (from the repository root, as root; ./flowlb.sh demo does this):
    python3 -m e2e.lab.demo [BUILD_DIR]
"""
import os
import re
import signal
import sys
import time

from e2e.lib.cluster_lab import NODES, Cluster, failover_gap_ms, samples, service_yaml
from e2e.lib.content import pattern
from e2e.lib.paths import ROOT
from e2e.lib.proc import lab_prefix
from e2e.lib.wait import wait_until


def say(text):
    print(text, flush=True)


def main():
    c = Cluster(prefix=lab_prefix("fldemo"), manifests=os.path.join(ROOT, "examples", "demo"))

    def stop(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started with SIGINT ignored (in background)
    try:
        say("lab: client 10.10.1.2 | LB nodes lb1 10.10.1.11, lb2 10.10.1.12 | controller "
            "10.10.2.5 | backends b1-b4 10.10.2.11-14")
        c.up()
        vip = c.vip_of("demo/web")
        with open(c.status_file) as f:
            pool = re.search(r"demo/web:\s*\n\s*ingress:.*\n\s*pool: (\S+)", f.read()).group(1)
        for n in NODES:
            c.wait_applied(n, lambda a: a.services == 1)
        announcer = c.announcer()
        say(f"1. Service demo/web got VIP {vip} from pool {pool}; both agents have it over gRPC; "
            f"{announcer} announces it (ARP)")

        counts = c.spread(vip, 1000)
        say("2. 1,000 HTTP requests through the VIP were spread over the backends as "
            + " / ".join(f"{b} {counts.get(b, 0)}" for b in ("b1", "b2", "b3")))

        backend = c.start_download("dl", f"http://{vip}/slow/{1 << 20}/40")
        c.start_client("load", "loop", f"http://{vip}/id", "4")
        wait_until(lambda: c.loop_successes("load") >= 20, 5, "the load getting through")
        others = [b for b in ("b1", "b2", "b3") if b != backend]
        c.change("web.yaml", service_yaml("web", ["b1", "b2", "b3"], draining=(backend,),
                                          drain_timeout="4s"))
        rc, out = c.client_output("load")
        got = samples(out) if rc == 0 else []
        errors = sum(1 for s in got if s[2] is None)
        late = [s[2] for s in got[len(got) // 2:] if s[2]]
        rc, _ = c.client_output("dl")
        intact = rc == 0 and c.downloaded("dl") == pattern(1 << 20)
        say(f"3. backend {backend} was drained (terminating) under load: {errors} failed of "
            f"{len(got)} requests, new requests went to {'/'.join(sorted(set(late)) or others)}"
            f", and the 1 MiB download it was serving completed "
            f"{'byte-identical' if intact else 'BROKEN'}")

        c.change("web.yaml", service_yaml("web", ["b1", "b2", "b3"], drain_timeout="4s"))
        announcer = c.announcer()
        c.start_client("loop", "loop", f"http://{vip}/id", "3")
        wait_until(lambda: c.loop_successes("loop") >= 20, 5, "the client getting through")
        t_fail = time.time()
        c.kill(announcer)
        rc, out = c.client_output("loop")
        gap = failover_gap_ms(samples(out), t_fail) if rc == 0 else float("nan")
        say(f"4. the announcing node {announcer} failed (agent killed); {c.announcer()} took the "
            f"VIP over and new connections succeeded again after {gap:.0f} ms")
        connected = c.metric("ctl", 9465, "flowlb_controller_agents_connected")
        generation = c.metric("ctl", 9465, "flowlb_controller_desired_generation")
        say(f"   (controller metrics: {int(connected)} agent(s) connected, generation "
            f"{int(generation)})")
        return 0 if intact and errors == 0 and gap < 1000 else 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        c.down()
        say("cleaned up: lab namespaces and processes removed")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.environ["FLOWLB_BUILD"] = os.path.abspath(sys.argv[1])
    sys.exit(main())

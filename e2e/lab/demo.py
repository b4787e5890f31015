#!/usr/bin/env python3
"""The README's demo: the whole system on the cluster lab, narrated.

The standalone controller reads examples/demo/ (two LB nodes, a pool, a web
Service with three backends), two flowlb-agents get their state over gRPC and
forward with AF_XDP, and a client sends real HTTP to the VIP. Then a backend is
drained under load and the announcing LB node is killed. Everything is cleaned
up at the end, also on Ctrl-C. Usage: demo.py BUILD_DIR
"""
import json
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import Cluster, expected_bytes, failover_gap_ms, service_yaml  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def say(text):
    print(text, flush=True)


def main(build):
    c = Cluster(build, prefix="fldemo", manifests=os.path.join(ROOT, "examples", "demo"))

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
        for n in ("lb1", "lb2"):
            c.wait_applied(n, lambda line: "services=1" in line)
        announcer = c.announcer()
        say(f"1. Service demo/web got VIP {vip} from pool {pool}; both agents have it over gRPC; "
            f"{announcer} announces it (ARP)")

        counts = c.spread(vip, 1000)
        say("2. 1,000 HTTP requests through the VIP were spread over the backends as "
            + " / ".join(f"{b} {counts.get(b, 0)}" for b in ("b1", "b2", "b3")))

        c.start_client("dl", "fetch", f"http://{vip}/slow/{1 << 20}/40",
                       os.path.join(c.tmp, "dl.bin"))
        backend = ""
        deadline = time.time() + 5
        while not backend and time.time() < deadline:
            backend = open(os.path.join(c.tmp, "dl.out")).read().strip()
            time.sleep(0.05)
        c.start_client("load", "loop", f"http://{vip}/id", "4")
        time.sleep(0.5)
        others = [b for b in ("b1", "b2", "b3") if b != backend]
        c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3"], draining=(backend,),
                                         drain_timeout="4s"))
        rc, out = c.client_output("load")
        samples = json.loads(out) if rc == 0 else []
        errors = sum(1 for s in samples if s[2] is None)
        late = [s[2] for s in samples[len(samples) // 2:] if s[2]]
        rc, _ = c.client_output("dl")
        with open(os.path.join(c.tmp, "dl.bin"), "rb") as f:
            intact = rc == 0 and f.read() == expected_bytes(1 << 20)
        say(f"3. backend {backend} was drained (terminating) under load: {errors} failed of "
            f"{len(samples)} requests, new requests went to {'/'.join(sorted(set(late)) or others)}"
            f", and the 1 MiB download it was serving completed "
            f"{'byte-identical' if intact else 'BROKEN'}")

        c.write("web.yaml", service_yaml("web", ["b1", "b2", "b3"], drain_timeout="4s"))
        time.sleep(0.5)
        announcer = c.announcer()
        other = "lb2" if announcer == "lb1" else "lb1"
        c.start_client("loop", "loop", f"http://{vip}/id", "3")
        time.sleep(1.0)
        t_fail = time.time()
        c.kill(announcer)
        rc, out = c.client_output("loop")
        gap = failover_gap_ms(json.loads(out), t_fail) if rc == 0 else float("nan")
        say(f"4. the announcing node {announcer} failed (agent killed); {c.announcer()} took the "
            f"VIP over and new connections succeeded again after {gap:.0f} ms")
        say(f"   (controller metrics: {int(c.metric('ctl', 9465, 'flowlb_controller_agents_connected'))}"
            f" agent(s) connected, generation "
            f"{int(c.metric('ctl', 9465, 'flowlb_controller_desired_generation'))})")
        return 0 if intact and errors == 0 and gap < 1000 else 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        c.down()
        say("cleaned up: lab namespaces and processes removed")


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1])))

"""Health-check figures (issue 14) in the datapath lab of e2e/test_health.py:
the real agent on a standalone file, one NAT service over three backends with
an HTTP check (interval 500 ms, timeout 200 ms, thresholds 2/2). Each round
stops one backend's HTTP server while a client opens a connection every
10 ms through the VIP, then starts it again. Prints FIGURE lines:
  health_detect_ms (median) and health_detect_ms_max: from stopping the
      server to the agent's verdict (its event=backend_health ... unhealthy
      log line); the target is at most 3 x interval + timeout (1700 ms)
  health_apply_ms_max: from stopping the server to the verdict applied
      (event=health_verdicts_applied)
  health_failed_requests: requests the client started after the verdict was
      applied that failed, over all rounds (must be 0)
Usage (from the repository root, as root): python3 -m bench.health_bench [ROUNDS]
"""
import json
import re
import statistics
import sys
import time
from datetime import datetime

from e2e.lib.datapath_lab import BACKENDS, NAT_VIP, DatapathLab
from e2e.lib.proc import in_ns, lab_prefix, module
from e2e.lib.wait import wait_until
from e2e.test_health import health_config

INTERVAL_MS, TIMEOUT_MS = 500, 200
_STAMP = r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\] \[\w+\] "


def figure(name, value, unit):
    print(f"FIGURE {name} {value:.4g} {unit}", flush=True)


def stamp(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def first_after(lab, mark, pattern, timeout=15):
    """The time (Unix s, from the agent's log stamp) of the first log line
    after `mark` that matches `pattern`."""
    found = []

    def check():
        m = re.search(_STAMP + pattern, lab.procs.log_since("agent", mark), re.M)
        if m:
            found.append(stamp(m.group(1)))
        return bool(found)
    wait_until(check, timeout, pattern)
    return found[0]


def healthy_again(lab, mark):
    first_after(lab, mark, r"event=health_verdicts_applied generation=\d+ unhealthy=0")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    lab = DatapathLab(prefix=lab_prefix("flbhcb"), make_config=health_config)
    lab.up()
    detect, apply, failed, after = [], [], 0, 0
    try:
        first_after(lab, 0, r"event=backend_health service=\"lab/web\" backend=10\.10\.2\.13:80 "
                            r"status=healthy")
        for r in range(rounds):
            victim = 1 + r % 3
            addr = BACKENDS[victim - 1]
            loop = f"loop{r}"
            lab.procs.start(loop, in_ns(lab.ns_name("client"), *module(
                "e2e.lab.client", "loop", f"http://{NAT_VIP}/id", "30")))
            time.sleep(1.0)  # the client's steady state before the failure (a figure, not a sync)
            mark = lab.procs.mark("agent")
            t_stop = time.time()
            lab.procs.stop(f"server-b{victim}")
            t_down = first_after(lab, mark, r"event=backend_health service=\"lab/web\" backend="
                                 + re.escape(addr) + r":80 status=unhealthy")
            t_applied = first_after(lab, mark, r"event=health_verdicts_applied generation=\d+ "
                                    r"unhealthy=1")
            detect.append((t_down - t_stop) * 1000)
            apply.append((t_applied - t_stop) * 1000)
            time.sleep(3.0)  # requests after the verdict (a figure, not a sync)
            lab.procs.kill(loop)
            for line in lab.procs.log(loop).splitlines():
                try:
                    t0, _, who = json.loads(line)
                except ValueError:
                    continue
                if t0 > t_applied:
                    after += 1
                    failed += who is None
            mark = lab.procs.mark("agent")
            lab.start_server(f"b{victim}", f"b{victim}", addr)
            healthy_again(lab, mark)
    finally:
        lab.down()
    figure("health_detect_ms", statistics.median(detect), "ms")
    figure("health_detect_ms_max", max(detect), "ms")
    figure("health_detect_target_ms", 3 * INTERVAL_MS + TIMEOUT_MS, "ms")
    figure("health_apply_ms_max", max(apply), "ms")
    figure("health_failed_requests", failed, "requests")
    figure("health_requests_after_detection", after, "requests")


if __name__ == "__main__":
    main()

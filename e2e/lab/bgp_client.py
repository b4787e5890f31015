"""Connections for the BGP lab's graceful-restart test, run in the client
namespace: N sequential HTTP requests, each allowed TIMEOUT seconds, so a
SYN lost while an agent restarts is retransmitted by TCP (after 1, 3, 7 s)
instead of counted as a failure. Prints {"ok": n, "failed": [errors]} and
exits 1 if any request failed.

Usage: python3 -m e2e.lab.bgp_client URL N TIMEOUT
"""
import json
import sys
import urllib.request


def main(url, n, timeout):
    ok, failed = 0, []
    for _ in range(n):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                r.read()
            ok += 1
        except OSError as e:
            failed.append(str(e))
    print(json.dumps({"ok": ok, "failed": failed}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))

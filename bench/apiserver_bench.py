"""bench/run.sh apiserver: how fast the Kubernetes API test server
(e2e/k8s/apiserver.py) is at the scale of bench/controller_bench.py, with the
client in the same process (its GIL included). Prints FIGURE lines:
  apiserver_create_10k_services_and_slices_s   10,000 Services and 10,000
      EndpointSlices (10 endpoints each) created through the Python API
  apiserver_list_10k_slices_s                  the 10,000 slices listed over
      HTTP in pages of 500
  apiserver_writes_per_s                       1,000 status PATCHes and 1,000
      PUTs over one keep-alive connection
These were pass/fail bounds of apiserver_test.py (10 s, -, 400/s) before they
became figures. Run from the repository root: python3 -m bench.apiserver_bench
"""
import http.client
import json
import time

from e2e.k8s.apiserver import ApiServer

N = 10000
TOKEN = "bench"


def service(i, port=80):
    return {"metadata": {"name": f"svc-{i:05}", "namespace": f"ns{i % 10}"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]}}


def main():
    srv = ApiServer(tokens=(TOKEN,)).start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def call(method, path, body=None, ctype="application/json"):
        h = dict(headers)
        if body is not None:
            h["Content-Type"] = ctype
            body = json.dumps(body).encode()
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{method} {path}: {resp.status} {data[:200]!r}")
        return json.loads(data)

    try:
        start = time.monotonic()
        for i in range(N):
            srv.create("services", service(i))
            srv.create("endpointslices", {
                "metadata": {"name": f"svc-{i:05}-abcde", "namespace": f"ns{i % 10}",
                             "labels": {"kubernetes.io/service-name": f"svc-{i:05}"}},
                "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [f"10.{i // 256 % 256}.{i % 256}.{j}"],
                               "conditions": {"ready": True}, "nodeName": f"node-{j}"}
                              for j in range(10)]})
        created = time.monotonic() - start

        start, token, n = time.monotonic(), "", 0
        while True:
            page = call("GET", "/apis/discovery.k8s.io/v1/endpointslices?limit=500" + token)
            n += len(page["items"])
            if "continue" not in page["metadata"]:
                break
            token = "&continue=" + page["metadata"]["continue"]
        listed = time.monotonic() - start
        if n != N:
            raise SystemExit(f"listed {n} slices, not {N}")

        start, writes = time.monotonic(), 2000
        for i in range(writes // 2):
            path = f"/api/v1/namespaces/ns{i % 10}/services/svc-{i:05}"
            call("PATCH", path + "/status", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}},
                 "application/merge-patch+json")
            call("PUT", path, service(i, port=81))
        rate = writes / (time.monotonic() - start)
    finally:
        conn.close()
        srv.stop()
    print(f"FIGURE apiserver_create_10k_services_and_slices_s {created:.2f} s")
    print(f"FIGURE apiserver_list_10k_slices_s {listed:.2f} s")
    print(f"FIGURE apiserver_writes_per_s {rate:.0f} per_s")


if __name__ == "__main__":
    main()

"""Helpers shared by every e2e test, the demo and the bench scripts.

- paths:        the repository root, the build directory (FLOWLB_BUILD), binaries
- prom:         the one Prometheus text-format parser (with labels)
- wait:         wait_until, which always raises with context on timeout
- proc:         commands in network namespaces, processes started and stopped by name and pid,
                free loopback ports, the namespace prefix override (FLOWLB_E2E_PREFIX)
- content:      the byte pattern the lab's backends serve, and its md5
- datapath_lab: the datapath lab (e2e/lab/lab.sh) with one flowlb-agent on a standalone file
- cluster_lab:  the cluster lab (e2e/lab/cluster.sh): controller, two agents, backends, client
"""

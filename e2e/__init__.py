"""flowlb's end-to-end tests, one Python package.

Run from the repository root, as a module, never by path:

    python3 -m unittest e2e.test_datapath                  # one suite
    python3 -m unittest e2e.test_datapath.DatapathTest.test_udp_request_response_nat_and_dsr
    python3 -m e2e.run --shuffle 42 e2e.test_cluster       # a suite in a random order

Shared helpers live in e2e/lib/; see e2e/README.md.
"""

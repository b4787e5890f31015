"""Node identity end to end (issue 17, findings 1 and 2) in the cluster lab.

The controller runs on the Kubernetes API test server (in PREFIX-ctl) as the
chart's ServiceAccount under the chart's RBAC, holding the CA key; each
agent has only the CA certificate and its Pod's projected token, gets its
node certificate through the bootstrap (TokenReview + the token's Pod's
nodeName) and serves real traffic. Then impostors in a namespace of their
own on the backend network try what used to work: another node's token,
another node's certificate, no certificate, plaintext. Needs root.

    python3 -m unittest e2e.test_identity
"""
import json
import os
import re
import shutil
import subprocess
import unittest

from e2e.k8s import chart_rbac
from e2e.lib import prom
from e2e.lib.cluster_lab import BACKENDS, CONTROLLER_METRICS, LAB_SH, Cluster, service_yaml
from e2e.lib.outcome import test_failed
from e2e.lib.paths import agent_binary, build_dir, controller_binary
from e2e.lib.proc import CommandFailed, lab_prefix, module, run
from e2e.lib.wait import wait_until

NS = chart_rbac.NAMESPACE
AUDIENCE = "flowlb-controller.flowlb-system"
CTL = "10.10.2.5:9443"
IGNORE = (CommandFailed, prom.MetricAbsent)


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        raise CommandFailed(r.returncode, ["openssl", *args], r.stdout, r.stderr)


class IdentityTest(unittest.TestCase):
    """One lab for the class; each test leaves both real agents connected."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, XDP)")
        c = cls.c = Cluster(prefix=lab_prefix("flid"))
        cls.tmp = os.path.join(c.tmp, "identity")
        os.makedirs(cls.tmp)
        try:
            run([LAB_SH, "up", c.p], timeout=120)
            # The impostors' own host on the backend network.
            run(["ip", "netns", "add", f"{c.p}-imp"])
            run(["ip", "link", "add", "i0", "netns", f"{c.p}-imp", "type", "veth", "peer", "name",
                 "imp-i0", "netns", f"{c.p}-swb"])
            c.ns("imp", "ip", "link", "set", "lo", "up")
            c.ns("imp", "ip", "link", "set", "i0", "up")
            c.ns("imp", "ip", "addr", "add", "10.10.2.50/24", "dev", "i0")
            c.ns("swb", "ip", "link", "set", "imp-i0", "master", "br0", "up")
            for name, addr in BACKENDS.items():
                c.spawn(name, name, module("e2e.lab.backend_server", name, "80", addr))
            cls.make_ca()
            cls.start_apiserver()
            cls.start_controller()
            for n in ("lb1", "lb2"):
                cls.start_agent(n, n, token=f"token-{n}")
            c.wait_connected(2, timeout=30)
        except Exception:
            cls.dump()
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            usage = os.path.join(cls.tmp, "rbac-used.json")
            if os.path.exists(usage):  # kept up to date by the API server process
                os.makedirs(os.path.join(build_dir(), "e2e-rbac"), exist_ok=True)
                shutil.copy(usage, os.path.join(build_dir(), "e2e-rbac", "identity.json"))
        finally:
            run(["ip", "netns", "del", f"{cls.c.p}-imp"], check=False)
            cls.c.down()

    @classmethod
    def dump(cls):
        for n in ("apiserver", "controller", "lb1", "lb2", "impostor"):
            print(f"--- {n} (tail) ---\n{cls.c.log(n)[-2500:]}")

    def setUp(self):
        self.c.wait_connected(2, timeout=15)

    def tearDown(self):
        if test_failed(self):
            self.dump()
        self.c.kill("impostor")

    # -- set-up ----------------------------------------------------------------
    @classmethod
    def make_ca(cls):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "2", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=flowlb-e2e-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,digitalSignature", cwd=cls.tmp)

    @classmethod
    def node_cert(cls, cn):
        """A certificate for CN=cn from the CA, as a stolen node certificate would be."""
        with open(os.path.join(cls.tmp, "client.ext"), "w") as f:
            f.write("extendedKeyUsage=clientAuth\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{cn}.key", "-out", f"{cn}.csr", "-subj", f"/CN={cn}", cwd=cls.tmp)
        openssl("x509", "-req", "-in", f"{cn}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-out", f"{cn}.crt", "-extfile", "client.ext",
                cwd=cls.tmp)
        return os.path.join(cls.tmp, f"{cn}.crt"), os.path.join(cls.tmp, f"{cn}.key")

    @classmethod
    def start_apiserver(cls):
        c = cls.c
        objs = [{"resource": r, "object": o} for r, o in chart_rbac.objects()]
        for n in ("lb1", "lb2"):
            objs.append({"resource": "nodes", "object": {
                "metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}})
            objs.append({"resource": "pods", "object": {
                "metadata": {"name": f"flowlb-agent-{n}", "namespace": NS},
                "spec": {"nodeName": n, "serviceAccountName": "flowlb-agent"},
                "status": {"phase": "Running"}}})
        objs.append({"resource": "ippools", "object": {
            "apiVersion": "flowlb.io/v1alpha1", "kind": "IPPool", "metadata": {"name": "lan"},
            "spec": {"addresses": ["10.10.1.110-10.10.1.115"]}}})
        svc, slc = service_yaml("web", ["b1", "b2", "b3"]).split("\n---\n")
        objs.append({"resource": "services", "object": json.loads(svc)})
        objs.append({"resource": "endpointslices", "object": json.loads(slc)})
        load = os.path.join(cls.tmp, "objects.json")
        with open(load, "w") as f:
            json.dump(objs, f)
        sa = [f"{NS}:{chart_rbac.CONTROLLER_SA}=controller-token"]
        for n in ("lb1", "lb2"):
            sa.append(f"{NS}:flowlb-agent:flowlb-agent-{n}:{AUDIENCE}=token-{n}")
            with open(os.path.join(cls.tmp, f"token-{n}"), "w") as f:
                f.write(f"token-{n}\n")
        c.spawn("apiserver", "ctl", module(
            "e2e.k8s.apiserver", "--port", "6443", "--token", "admin", "--load", load,
            "--rbac-usage-file", os.path.join(cls.tmp, "rbac-used.json"),
            "--rbac-usage-user", chart_rbac.CONTROLLER_USER,
            *[a for s in sa for a in ("--service-account-token", s)]))
        wait_until(lambda: "http://127.0.0.1:6443" in c.log("apiserver"), 15,
                   "the API test server listening", context=lambda: c.log("apiserver"))
        with open(os.path.join(cls.tmp, "kubeconfig"), "w") as f:
            f.write('current-context: t\ncontexts: [{name: t, context: {cluster: c, user: u}}]\n'
                    'clusters: [{name: c, cluster: {server: "http://127.0.0.1:6443"}}]\n'
                    'users: [{name: u, user: {token: controller-token}}]\n')

    @classmethod
    def start_controller(cls):
        cls.c.spawn("controller", "ctl", [
            controller_binary(), "--source", "kubernetes",
            "--kubeconfig", os.path.join(cls.tmp, "kubeconfig"), "--identity", "ctl-1",
            "--grpc-address", CTL, "--metrics-address", f"127.0.0.1:{CONTROLLER_METRICS}",
            "--lease-namespace", NS, "--tls-ca", os.path.join(cls.tmp, "ca.crt"),
            "--tls-ca-key", os.path.join(cls.tmp, "ca.key"), "--tls-server-name", "10.10.2.5",
            "--bootstrap-audience", AUDIENCE, "--agent-namespace", NS,
            "--agent-service-account", "flowlb-agent"])

    @classmethod
    def start_agent(cls, name, node, token=None, cert=None, plaintext=False, ns=None):
        """An agent as the chart runs it: the CA certificate and a token file, no key of ours.
        The real ones take both node IPs, as status.hostIPs gives them."""
        ns = ns or node
        args = [agent_binary(), "--controller-address", CTL, "--node-name", node,
                "--metrics-address", "127.0.0.1:9464", "--conntrack-entries", "65536"]
        if ns == "imp":
            args += ["--interface", "i0", "--node-ip", "10.10.2.50"]
        else:
            i = node[-1]
            args += ["--interface", "l0", "--interface", "l1", "--announce-interface", "l0",
                     "--node-ip", f"10.10.2.10{i},fd10:2::10{i}"]
        args += ["--plaintext"] if plaintext else ["--tls-ca", os.path.join(cls.tmp, "ca.crt")]
        if token:
            args += ["--bootstrap-token-file", os.path.join(cls.tmp, token)]
        if cert:
            args += ["--tls-cert", cert[0], "--tls-key", cert[1]]
        cls.c.spawn(name, ns, args)

    def controller_metric(self, name, **labels):
        try:
            return self.c.metric("ctl", CONTROLLER_METRICS, name, **labels)
        except prom.MetricAbsent:
            return 0.0

    def vip(self):
        def status_ip():
            out = self.c.ns("ctl", "curl", "-s", "-H", "Authorization: Bearer admin",
                            "http://127.0.0.1:6443/api/v1/namespaces/demo/services/web")
            try:
                return json.loads(out)["status"]["loadBalancer"]["ingress"][0]["ip"]
            except (ValueError, KeyError, IndexError, TypeError):
                return None
        return wait_until(status_ip, 20, "the Service's VIP", context=lambda: self.c.log("controller")[-2000:])

    # -- the tests -------------------------------------------------------------
    def test_agents_bootstrap_their_node_certificates_and_serve_traffic(self):
        self.assertEqual(self.controller_metric("flowlb_controller_agent_certificates_total",
                                                result="issued"), 2)
        for n in ("lb1", "lb2"):
            self.assertRegex(self.c.log(n), rf"event=certificate_received node={n}")
            # status.hostIPs gives the IPv6 NAT source of a dual-stack node.
            self.assertRegex(self.c.log(n), rf"IPv6 NAT source fd10:2::10{n[-1]} \(node IP\)")
            self.c.wait_applied(n, lambda a: a.services == 1 and a.backends == 3)
        counts = self.c.spread(self.vip(), 60)
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)

    def test_another_nodes_token_buys_no_certificate(self):
        """lb1's token (stolen from its Pod) asking for lb2's identity: the TokenReview finds the
        token's Pod on lb1, and the controller refuses."""
        before = self.controller_metric("flowlb_controller_agent_certificates_total", result="denied")
        self.start_agent("impostor", "lb2", token="token-lb1", ns="imp")
        wait_until(lambda: self.controller_metric("flowlb_controller_agent_certificates_total",
                                                  result="denied") > before, 20, "the refusal",
                   context=lambda: self.c.log("controller")[-1500:])
        self.assertRegex(self.c.log("controller"),
                         r"event=certificate_refused reason=denied node=lb2 .*runs on node 'lb1'")
        self.assertRegex(self.c.log("impostor"), r"event=certificate_request_failed node=lb2")
        self.assertEqual(self.controller_metric("flowlb_controller_agents_connected"), 2)

    def test_a_certificate_speaks_only_for_its_own_node(self):
        """Issue 17 finding 1 as it was found: a valid certificate for lb1 says Hello as lb2. The
        stream is refused and the real lb2 keeps its stream and its state."""
        resets = self.controller_metric("flowlb_controller_stream_resets_total")
        self.start_agent("impostor", "lb2", cert=self.node_cert("lb1"), ns="imp")
        wait_until(lambda: re.search(r'event=agent_refused reason=identity_mismatch certificate="lb1" '
                                     r'hello_node="lb2"', self.c.log("controller")), 20, "the refusal",
                   context=lambda: self.c.log("controller")[-1500:])
        self.assertEqual(self.controller_metric("flowlb_controller_stream_resets_total"), resets,
                         "the real lb2's stream was cut")
        self.assertNotRegex(self.c.log("impostor"), r"event=desired_state_applied")
        counts = self.c.spread(self.vip(), 30)
        self.assertEqual(set(counts), {"b1", "b2", "b3"}, counts)

    def test_no_certificate_and_plaintext_get_nothing(self):
        self.start_agent("impostor", "lb2", ns="imp")  # TLS, but no certificate
        wait_until(lambda: re.search(r"event=agent_refused reason=no_client_certificate",
                                     self.c.log("controller")), 20, "the refusal")
        self.c.kill("impostor")
        self.start_agent("impostor", "lb2", plaintext=True, ns="imp")
        wait_until(lambda: len(re.findall(r"event=controller_disconnected", self.c.log("impostor"))) >= 2,
                   20, "the plaintext stream failing twice")
        self.assertNotRegex(self.c.log("impostor"), r"event=desired_state_applied")
        self.assertEqual(self.controller_metric("flowlb_controller_agents_connected"), 2)

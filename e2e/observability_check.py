"""Static checks of what flowlb ships for observability (no root, no lab):
the alert rules pass `promtool check rules` and `promtool test rules`;
docs/metrics.md lists exactly the metrics the sources declare; every metric
the dashboard and the rules read is documented; every dashboard query parses
(promtool, as a recording rule) once its variables are substituted; the
dashboard uses only variables it defines. The live check against a real
Prometheus is e2e/test_observability.py.
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

from e2e.lib import observability as obs


def promtool(*args):
    r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


@unittest.skipUnless(shutil.which("promtool"), "promtool missing (scripts/install-deps.sh installs prometheus)")
class RulesTest(unittest.TestCase):
    def test_rules_check(self):
        rc, out = promtool("check", "rules", obs.RULES)
        self.assertEqual(rc, 0, out)
        self.assertIn(f"SUCCESS: {len(obs.alert_rules())} rules found", out)

    def test_rules_unit_tests(self):
        rc, out = promtool("test", "rules", obs.RULES_TEST)
        self.assertEqual(rc, 0, out)

    def test_every_alert_is_unit_tested_and_has_a_runbook(self):
        with open(obs.RULES_TEST) as f:
            tests = yaml.safe_load(f)["tests"]
        tested = {a["alertname"] for t in tests for a in t.get("alert_rule_test", [])
                  if a.get("exp_alerts")}
        with open(os.path.join(obs.ROOT, "docs", "alerts.md")) as f:
            runbook = f.read()
        for rule in obs.alert_rules():
            name = rule["alert"]
            self.assertIn(name, tested, f"{name} never fires in {obs.RULES_TEST}")
            anchor = rule["annotations"]["runbook"].split("#")[1]
            self.assertIn(f"## {name}", runbook, f"no runbook section for {name}")
            self.assertEqual(anchor, name.lower())


class MetricListTest(unittest.TestCase):
    def test_docs_list_exactly_the_declared_metrics(self):
        docs, src = set(obs.documented()), obs.declared()
        self.assertEqual(sorted(src - docs), [], "declared in the sources, missing from docs/metrics.md")
        self.assertEqual(sorted(docs - src), [], "in docs/metrics.md, declared nowhere")

    def test_dashboard_and_rules_read_documented_metrics(self):
        docs = set(obs.documented())
        for title, expr in obs.panel_queries():
            self.assertEqual(sorted(obs.metric_names(expr) - docs), [], f"panel {title!r}")
            self.assertTrue(obs.metric_names(expr), f"panel {title!r} reads no flowlb metric")
        for rule in obs.alert_rules():
            self.assertEqual(sorted(obs.metric_names(rule["expr"]) - docs), [], rule["alert"])


class DashboardTest(unittest.TestCase):
    def test_variables(self):
        dash = obs.dashboard()
        names = set(obs.variables(dash))
        self.assertTrue({"datasource", "namespace", "service", "node"} <= names, names)
        used = set()
        for p in dash["panels"]:
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            self.assertTrue(p.get("targets"), f"panel {p['title']!r} has no query")
            for t in p["targets"]:
                used |= set(re.findall(r"\$(\w+)", t["expr"]))
        self.assertEqual(sorted(used - names - {"__rate_interval"}), [])
        self.assertTrue({"node", "namespace", "service"} <= used)

    @unittest.skipUnless(shutil.which("promtool"), "promtool missing")
    def test_every_query_parses(self):
        values = {"node": "(lb1|lb2)", "namespace": ".*", "service": ".*", "datasource": "x"}
        rules = [{"record": f"flowlb:panel{i}", "expr": obs.substitute(e, values)}
                 for i, (_, e) in enumerate(obs.panel_queries())]
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            f.flush()
            rc, out = promtool("check", "rules", f.name)
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()

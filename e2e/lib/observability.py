"""What flowlb ships for observability, read from the tree: the metric list of
docs/metrics.md, the names the sources declare, the dashboard's queries and
variables, the alert rules. One reader for the static check
(e2e/observability_check.py) and the live one (e2e/test_observability.py).
"""
import json
import os
import re

import yaml

from e2e.lib.paths import ROOT

DOCS = os.path.join(ROOT, "docs", "metrics.md")
DASHBOARD = os.path.join(ROOT, "charts", "flowlb", "dashboards", "flowlb.json")
RULES = os.path.join(ROOT, "charts", "flowlb", "alerts", "flowlb-rules.yaml")
RULES_TEST = os.path.join(ROOT, "charts", "flowlb", "alerts", "flowlb-rules_test.yaml")
METRIC_SOURCES = [os.path.join(ROOT, p) for p in
                  ("agent/metrics.cc", "controller/metrics.cc", "common/endpoints.cc")]

_ROW = re.compile(r"^\|\s*`(flowlb_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|[^|]*\|\s*([^|]+?)\s*\|")


def documented():
    """{name: (type, when)} from the tables of docs/metrics.md."""
    out = {}
    with open(DOCS) as f:
        for line in f:
            m = _ROW.match(line)
            if m:
                if m.group(1) in out:
                    raise ValueError(f"{m.group(1)} documented twice")
                out[m.group(1)] = (m.group(2), m.group(3))
    return out


def declared():
    """Metric names the sources register (string literals flowlb_...)."""
    names = set()
    for path in METRIC_SOURCES:
        with open(path) as f:
            names |= set(re.findall(r'"(flowlb_[a-z0-9_]+)"', f.read()))
    return names


def exported(text):
    """Family names in a /metrics text (from # TYPE lines)."""
    return set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def panel_queries(dash=None):
    """[(panel title, expr)] for every target of every panel."""
    dash = dash or dashboard()
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def variables(dash=None):
    dash = dash or dashboard()
    return {v["name"]: v for v in dash["templating"]["list"]}


def substitute(expr, values, rate_interval="1m"):
    """The query Grafana would send: $__rate_interval and each $var replaced
    (values: {var: regex text}, e.g. {"node": "(lb1|lb2)"})."""
    expr = expr.replace("$__rate_interval", rate_interval)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("$" + name, values[name])
    if "$" in expr:
        raise ValueError(f"unsubstituted variable in {expr!r}")
    return expr


def alert_rules():
    """[rule dict] of every alert in the rules file."""
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def metric_names(expr):
    """flowlb_* metric names an expression reads (histogram suffixes folded)."""
    names = set(re.findall(r"\b(flowlb_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith("flowlb_controller_reconcile")
            else n for n in names}

"""A picture of the dashboard's key panels from a Prometheus that scraped a lab
run: each panel's first queries over the last SECONDS, as range queries,
plotted with matplotlib (Grafana is not packaged here). The README's
docs/dashboard.png is made this way by e2e/test_observability.py when
FLOWLB_DASHBOARD_PNG names the output.

    python3 -m e2e.lab.dashboard_picture PROMETHEUS_URL OUT.png SECONDS
"""
import json
import sys
import time
import urllib.parse
import urllib.request

from e2e.lib import observability as obs

PANELS = ("Packets per service", "Backend share of new flows", "Drops by reason",
          "Conntrack fill", "Announcer per VIP", "Desired state: generation and lag",
          "Reconcile latency", "IPPool usage")
VALUES = {"node": "(lb1|lb2)", "namespace": ".*", "service": ".*"}


def query_range(url, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{q}", timeout=20) as r:
        body = json.load(r)
    return body["data"]["result"]


def legend(fmt, labels):
    text = fmt or json.dumps(labels, sort_keys=True)
    for k, v in labels.items():
        text = text.replace("{{" + k + "}}", v)
    return text


def render(url, out, seconds):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - seconds
    panels = {p["title"]: p for p in obs.dashboard()["panels"] if p["type"] != "row"}
    fig, axes = plt.subplots(2, 4, figsize=(20, 8.5))
    for ax, title in zip(axes.flat, PANELS):
        p = panels[title]
        drawn = 0
        for t in p["targets"][:2]:
            expr = obs.substitute(t["expr"], VALUES, rate_interval="10s")
            for series in query_range(url, expr, start, end, 1):
                xs = [float(x) - start for x, _ in series["values"]]
                ys = [float(y) for _, y in series["values"]]
                if title == "Drops by reason" and not any(ys):
                    continue  # the reasons that never happened
                ax.plot(xs, ys, label=legend(t.get("legendFormat", ""), series["metric"])[:40])
                drawn += 1
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("seconds into the run", fontsize=8)
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        if unit and unit != "short":
            ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=8)
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
    fig.suptitle("flowlb dashboard, key panels: Prometheus query results from a cluster-lab run "
                 "(traffic, an agent killed, a pool filled, SYNs to a Service without backend)",
                 fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    render(sys.argv[1], sys.argv[2], float(sys.argv[3]))

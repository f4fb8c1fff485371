"""Render the Grafana dashboard's panels from Prometheus without Grafana (a stand-in PNG).

Reads deploy/grafana/dashboards/semcom.json, evaluates every panel's PromQL over the last
``--minutes`` with Prometheus's HTTP API (query_range; $__rate_interval -> ``--rate``,
$stage -> all stages) and draws one matplotlib subplot per panel. It is also a check of
the dashboard: a panel whose queries return no series is reported (exit 1 with --strict).

    python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 \
        --out docs/benchmarks/compose_dashboard_prometheus.png

Used where Grafana itself cannot run (no image registry, no Debian package); with Grafana,
its own renderer or a browser screenshot of http://127.0.0.1:3000 is the real thing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from shared.imageio import save_figure

ROOT = Path(__file__).resolve().parent.parent


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as reply:
        body = json.load(reply)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt: str, metric: dict) -> str:
    out = fmt
    for key, value in metric.items():
        out = out.replace("{{" + key + "}}", value)
    return out if "{{" not in out else json.dumps(metric)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=ROOT / "deploy/grafana/dashboards/semcom.json")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--rate", default="1m", help="what $__rate_interval becomes (default 1m)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/compose_dashboard_prometheus.png")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a panel has no data")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import datetime, timezone

    dash = json.loads(args.dashboard.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    end = time.time()
    start = end - args.minutes * 60
    step = max(5.0, args.minutes * 60 / 240)
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(16, 3.2 * rows), squeeze=False)
    empty = []
    for ax, panel in zip(axes.flat, panels):
        n_series = 0
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", args.rate).replace('"$stage"', '".*"')
            if panel["type"] == "heatmap":  # drawn as one line per bucket bound (increase per step)
                expr = expr.replace("increase(", "rate(")
            for series in query_range(args.prometheus, expr, start, end, step):
                pts = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                if not pts:
                    continue
                n_series += 1
                ax.plot([datetime.fromtimestamp(t, timezone.utc) for t, _ in pts], [v for _, v in pts],
                        lw=1.2, label=legend(target.get("legendFormat", ""), series["metric"]))
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit") or \
            panel.get("options", {}).get("yAxis", {}).get("unit", "")
        ax.set_title(panel["title"] + (" (no data)" if not n_series else ""), fontsize=10)
        ax.set_ylabel({"s": "seconds", "reqps": "per second", "percentunit": "fraction"}.get(unit, unit), fontsize=8)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if panel["type"] == "timeseries" and "latency" in panel["title"].lower():
            ax.set_yscale("log")
        if 0 < n_series <= 14:
            ax.legend(fontsize=6, loc="upper left", ncol=2)
        if not n_series:
            empty.append(panel["title"])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{dash['title']} - panels of deploy/grafana/dashboards/semcom.json evaluated by Prometheus "
                 f"(stand-in for Grafana), {datetime.fromtimestamp(end, timezone.utc):%Y-%m-%d %H:%M} UTC", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, args.out, dpi=80)
    print(f"wrote {args.out}; {len(panels) - len(empty)}/{len(panels)} panels with data"
          + (f"; empty: {empty}" if empty else ""))
    return 1 if (args.strict and empty) else 0


if __name__ == "__main__":
    sys.exit(main())

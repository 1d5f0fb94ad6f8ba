"""Charts from bench results: ``python -m bench ... --plot DIR`` or, for saved
runs, ``python -m bench.plot DIR result.json [result.json ...]``.

Writes, for whatever the results hold:

- ``latency-cdf.png``: latency CDF, app against baseline, one panel per transport;
- ``ceiling.png``: p99 latency against offered deliveries/s, the ceiling search's
  steps, with the SLO line;
- ``connects.png``: connects (or reconnects) per second, app against baseline:
  churn, reconnect storm, held connections.

matplotlib comes with the optional ``bench`` extra (``pip install -e .[bench]``);
it is not a runtime dependency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLORS = {"app": "#c0392b", "baseline": "#2c3e50"}
TRANSPORT_NAMES = {"ws": "WebSocket", "sse": "SSE", "poll": "long-poll"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - depends on the extra
        raise SystemExit("--plot needs matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _merge(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phases and scenarios of every run; a later run wins for the same name."""
    phases: dict[str, dict[str, Any]] = {"app": {}, "baseline": {}}
    scenarios: dict[str, Any] = {}
    for run in runs:
        for target, by_name in run.get("phases", {}).items():
            phases.setdefault(target, {}).update(by_name)
        scenarios.update(run.get("scenarios", {}))
    return phases, scenarios


def plot_latency_cdf(plt: Any, phases: dict[str, Any], out: Path) -> Path | None:
    transports = [t for t in TRANSPORT_NAMES if phases["app"].get(t, {}).get("latency_cdf_ms")]
    if not transports:
        return None
    fig, axes = plt.subplots(1, len(transports), figsize=(4.2 * len(transports), 3.4), sharey=True)
    axes = axes if len(transports) > 1 else [axes]
    for ax, transport in zip(axes, transports, strict=True):
        for target in ("app", "baseline"):
            cdf = phases.get(target, {}).get(transport, {}).get("latency_cdf_ms")
            if not cdf:
                continue
            ys = [k / (len(cdf) - 1) for k in range(len(cdf))]
            p99 = phases[target][transport]["latency_ms"]["p99"]
            ax.plot(cdf, ys, color=COLORS[target], label=f"{target} (p99 {p99:g} ms)")
        ax.set_xscale("log")
        ax.set_title(TRANSPORT_NAMES[transport])
        ax.set_xlabel("commit → client latency, ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("fraction of deliveries")
    fig.suptitle("Latency CDF, app vs baseline (one daphne process)")
    fig.tight_layout()
    path = out / "latency-cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ceiling(plt: Any, scenarios: dict[str, Any], out: Path) -> Path | None:
    ceiling = scenarios.get("ceiling")
    if not ceiling:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    slo = None
    for target in ("app", "baseline"):
        found = ceiling.get(target)
        if not found:
            continue
        slo = found["slo"]["p99_ms"]
        steps = sorted(found["steps"], key=lambda s: s["offered_deliveries_per_s"])
        xs = [s["offered_deliveries_per_s"] for s in steps]
        ys = [max(s["latency_ms"]["p99"], 0.1) for s in steps]
        ax.plot(xs, ys, "o-", color=COLORS[target], label=target)
        for s in steps:
            if not s["passes"]:
                ax.plot(s["offered_deliveries_per_s"], max(s["latency_ms"]["p99"], 0.1), "x",
                        color=COLORS[target], markersize=10)  # fmt: skip
        if found["ceiling_deliveries_per_s"]:
            ax.axvline(found["ceiling_deliveries_per_s"], color=COLORS[target], ls=":", alpha=0.7)
            ax.annotate(
                f"{target} ceiling {found['ceiling_deliveries_per_s']:,.0f}/s",
                (found["ceiling_deliveries_per_s"], slo or 50),
                textcoords="offset points", xytext=(4, 8), fontsize=8, color=COLORS[target],
            )  # fmt: skip
    if slo:
        ax.axhline(slo, color="grey", ls="--", label=f"SLO p99 {slo:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries/s (WebSocket fan-out)")
    ax.set_ylabel("p99 latency, ms (x: SLO missed)")
    ax.set_title("Fan-out: p99 against offered load, to the ceiling")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "ceiling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_connects(
    plt: Any, phases: dict[str, Any], scenarios: dict[str, Any], out: Path
) -> Path | None:
    bars: list[tuple[str, float | None, float | None]] = []
    for name, label in (("churn_ws", "WS churn"), ("churn_sse", "SSE churn")):
        pair = scenarios.get(name)
        if pair:
            bars.append(
                (
                    f"{label}\n({pair['app']['clients']:,})",
                    pair.get("app", {}).get("connects_per_s"),
                    pair.get("baseline", {}).get("connects_per_s"),
                )
            )
    storm = scenarios.get("storm")
    if storm:
        bars.append(
            (
                f"WS reconnect storm\n({storm['app']['clients']:,}, settled)",
                storm.get("app", {}).get("reconnects_per_s"),
                storm.get("baseline", {}).get("reconnects_per_s"),
            )
        )
    for kind, label in (("idle_ws", "WS held"), ("idle_sse", "SSE held")):
        app = phases.get("app", {}).get(kind, {})
        if app.get("connects_per_s"):
            bars.append(
                (
                    f"{label}\n({app['connections']:,})",
                    app.get("connects_per_s"),
                    phases.get("baseline", {}).get(kind, {}).get("connects_per_s"),
                )
            )
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(1.9 * len(bars) + 2, 4))
    width = 0.38
    for offset, target, column in ((-width / 2, "app", 1), (width / 2, "baseline", 2)):
        xs = [k + offset for k in range(len(bars))]
        ys = [bar[column] or 0 for bar in bars]
        drawn = ax.bar(xs, ys, width, color=COLORS[target], label=target)
        ax.bar_label(drawn, labels=[f"{y:,.0f}" for y in ys], fontsize=7)
    ax.set_xticks(range(len(bars)), [bar[0] for bar in bars], fontsize=8)
    ax.set_ylabel("connects/s (one daphne process)")
    ax.set_title("Handshakes: connect + subscribe per second")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "connects.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_results(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write every chart the results allow into ``out``; returns the files written."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    phases, scenarios = _merge(runs)
    written = [
        plot_latency_cdf(plt, phases, out),
        plot_ceiling(plt, scenarios, out),
        plot_connects(plt, phases, scenarios, out),
    ]
    return [path for path in written if path is not None]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m bench.plot DIR result.json [result.json ...]")
    runs = [json.loads(Path(name).read_text()) for name in argv[1:]]
    for path in plot_results(runs, Path(argv[0])):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])

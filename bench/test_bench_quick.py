"""CI smoke test: the quick bench runs end to end, losing and duplicating nothing.

Figures (latency, memory, CPU) depend on the machine and are not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHASE_KEYS = {
    "connections",
    "failed_connections",
    "rss_per_connection_kb",
    "events",
    "expected_deliveries",
    "deliveries",
    "lost",
    "duplicated",
    "unexpected",
    "latency_ms",
    "deliveries_per_s",
    "cpu_s_per_1k_deliveries",
}


@pytest.mark.live
@pytest.mark.timeout(240)
def test_quick_bench_completes_without_loss_or_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--idle-ws", "20", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())

    assert {"config", "machine", "phases", "ratios", "totals", "ok"} <= results.keys()
    assert results["ok"] is True
    assert results["totals"] == {
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
        "failed_connections": 0,
    }
    for target in ("app", "baseline"):
        phases = results["phases"][target]
        assert set(phases) == {"ws", "sse", "poll", "idle_ws"}
        for transport in ("ws", "sse", "poll"):
            phase = phases[transport]
            assert phase.keys() >= PHASE_KEYS, transport
            assert {"p50", "p95", "p99", "max"} <= phase["latency_ms"].keys()
            assert phase["events"] == results["config"]["events"]
            assert phase["deliveries"] == phase["expected_deliveries"] > 0
            assert phase["lost"] == 0 and phase["duplicated"] == 0
            # The app's seconds in the cycle collector, from its /metrics.
            assert ("gc_share_of_cpu" in phase) == (target == "app"), transport
        assert phases["idle_ws"]["connections"] == 20
    for transport in ("ws", "sse", "poll", "idle_ws"):
        assert "rss_per_connection_kb" in results["ratios"][transport]


@pytest.mark.live
@pytest.mark.timeout(240)
def test_capacity_scenarios_run_end_to_end(tmp_path: Path) -> None:
    """Churn, reconnect storm, ceiling search and charts, tiny: shapes, not figures."""
    out = tmp_path / "capacity.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--churn",
            "20",
            "--churn-transports",
            "ws",
            "--storm",
            "30",
            "--storm-orders",
            "10",
            "--ceiling",
            "--ws",
            "20",
            "--orders",
            "10",
            "--staff",
            "1",
            "--ceiling-start",
            "100",
            "--ceiling-steps",
            "1",
            "--ceiling-refine",
            "0",
            "--step-seconds",
            "1",
            "--plot",
            str(tmp_path / "charts"),
            "--json",
            str(out),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    scenarios = results["scenarios"]
    for target in ("app", "baseline"):
        churn = scenarios["churn_ws"][target]
        assert churn["done"] == 20 and churn["connects_per_s"] > 0
        storm = scenarios["storm"][target]
        assert storm["reconnected"] == 30
        assert storm["deliveries"] == storm["expected_deliveries"] == 30
        assert storm["lost"] == storm["duplicated"] == 0
        ceiling = scenarios["ceiling"][target]
        assert ceiling["steps"] and all(step["lost"] == 0 for step in ceiling["steps"])
    # The two searches take their steps in turn, so both meet the machine as it
    # is at the time (``bench.run.run_ceilings``).
    stepped = [line.split()[1] for line in done.stdout.splitlines() if "ceiling step" in line]
    assert stepped[:2] == ["app", "baseline"], stepped
    assert (tmp_path / "charts" / "connects.png").exists()
    assert (tmp_path / "charts" / "ceiling.png").exists()


def tool_lines(module: str, *args: str, prefix: str) -> list[str]:
    """Run ``python -m module args`` from the repository; its lines starting with ``prefix``."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if line.startswith(prefix)]


@pytest.mark.timeout(120)
def test_the_hop_timer_times_every_case() -> None:
    """``python -m bench.hop``: five cases timed on its own database."""
    lines = tool_lines("bench.hop", "--hops", "3", prefix="hop ")
    assert len(lines) == 5 and all(line.endswith(" us") for line in lines), lines


@pytest.mark.timeout(120)
def test_the_publish_timer_times_every_group_and_the_floor() -> None:
    """``python -m bench.publish``: commit -> Redis per group, then the floor,
    then the CPU an order change costs its process."""
    lines = tool_lines("bench.publish", "--events", "6", prefix="publish ")
    assert len(lines) == 5 and all(line.endswith(" ms") for line in lines), lines
    assert "CPU per order change" in lines[-1], lines

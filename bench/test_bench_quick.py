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
        assert phases["idle_ws"]["connections"] == 20
    for transport in ("ws", "sse", "poll", "idle_ws"):
        assert "rss_per_connection_kb" in results["ratios"][transport]

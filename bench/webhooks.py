"""``python -m bench --webhooks N``: commit -> receiver latency of webhook deliveries.

Starts a private Redis and SQLite database (``bench.run.Env``), N receiver
processes (``tests/webhooks/receiver.py``), one endpoint per receiver and one
``manage.py deliver`` worker, then runs two phases of E status changes at
R/s through the real order actions (``bench.driver``):

1. ``all_healthy``: every receiver answers 200;
2. ``one_failing``: receiver 0 answers 500 (its endpoint retries and holds
   its events), the others 200.

For the healthy receivers it reports commit -> receipt p50/p99 (overall and
per receiver), deliveries/s, and lost / duplicated ids. The failing
receiver must change nobody else's p99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import PYTHON, RESULTS, ROOT, Env, stop

RECEIVER = ROOT / "tests" / "webhooks" / "receiver.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --webhooks N")
    parser.add_argument("--webhooks", type=int, required=True, help="receivers (endpoints)")
    parser.add_argument("--events", type=int, default=1000, help="status changes per phase")
    parser.add_argument("--rate", type=float, default=100.0, help="status changes per second")
    parser.add_argument("--drain", type=float, default=30.0, help="s to wait for stragglers")
    parser.add_argument("--json", default=str(RESULTS / "webhooks.json"), help="output file")
    args, _ = parser.parse_known_args(argv)
    return args


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Receiver:
    def __init__(self, workdir: Path, index: int) -> None:
        self.record = workdir / f"receiver-{index}.jsonl"
        self.record.touch()
        self.process = subprocess.Popen(  # noqa: S603
            [PYTHON, str(RECEIVER), "--record", str(self.record)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self.process.stdout.readline().split()[1])  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def fail(self, status: int) -> None:
        import httpx

        httpx.post(
            f"http://127.0.0.1:{self.port}/_control/mode", json={"path": "/hook", "status": status}
        ).raise_for_status()

    def received(self) -> list[tuple[int, float]]:
        """(event id, receipt time) of each 2xx-answered request."""
        out = []
        for line in self.record.read_text().splitlines():
            entry = json.loads(line)
            if 200 <= entry["status"] < 300:
                out.append((json.loads(entry["body"])["id"], entry["received_at"]))
        return out


def create_endpoints(env: Env, urls: list[str]) -> None:
    script = (
        "import django, json, sys; django.setup()\n"
        "from notifications.webhooks import deliveries\n"
        "from notifications.webhooks.models import WebhookEndpoint\n"
        "latest = deliveries.latest_event_id()\n"
        "for url in json.loads(sys.argv[1]):\n"
        "    WebhookEndpoint.objects.create(url=url, start_after=latest, rows_through=latest)\n"
    )
    subprocess.run(  # noqa: S603
        [PYTHON, "-c", script, json.dumps(urls)], cwd=ROOT, env=env.env, check=True
    )


def run_phase(
    env: Env, args: argparse.Namespace, orders: list[Any], receivers: list[Receiver], failing: bool
) -> dict[str, Any]:
    healthy = receivers[1:] if failing else receivers
    if failing:
        receivers[0].fail(500)
    plan = {"mode": "app", "orders": [o[:2] for o in orders], "events": args.events}
    plan["rate"] = args.rate
    out = json.loads(env.python("bench.driver", env.write("webhook-plan.json", plan)))
    committed = {event_id: at for event_id, _, at in out["events"]}
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        if all(set(committed) <= {i for i, _ in r.received()} for r in healthy):
            break
        time.sleep(0.2)  # waiting on other processes' files: nothing to await
    latencies: list[float] = []
    per_receiver = []
    lost = duplicated = 0
    last = 0.0
    for index, receiver in enumerate(receivers):
        got = [(i, at) for i, at in receiver.received() if i in committed]
        ids = [i for i, _ in got]
        mine = [(at - committed[i]) * 1000 for i, at in got]
        row = {
            "receiver": index,
            "failing": failing and index == 0,
            "received": len(set(ids)),
            "in_order": ids == sorted(ids),
            "p50_ms": round(percentile(mine, 0.5), 1),
            "p99_ms": round(percentile(mine, 0.99), 1),
        }
        per_receiver.append(row)
        if receiver in healthy:
            lost += len(set(committed) - set(ids))
            duplicated += len(ids) - len(set(ids))
            latencies += mine
            last = max([last, *(at for _, at in got)])
    first_commit = min(committed.values())
    return {
        "events": len(committed),
        "driver_seconds": round(out["seconds"], 2),
        "driver_worst_lag_s": round(out["worst_lag_s"], 3),
        "healthy_receivers": len(healthy),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "deliveries_per_s": round(len(latencies) / max(last - first_commit, 1e-9), 1),
        "lost": lost,
        "duplicated": duplicated,
        "receivers": per_receiver,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="booktime-bench-webhooks-"))
    env = Env(workdir, "pubsub")
    env.env["WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "1"
    receivers: list[Receiver] = []
    worker = None
    started = time.time()
    try:
        per_phase = -(-args.events // 4)
        print(f"bench: seeding {2 * per_phase} orders in {workdir}", flush=True)
        seed_env = env.env | {"CHANNEL_LAYER": "memory"}
        seed = json.loads(
            env.python(
                "bench.seed",
                env.write("seed-plan.json", {"phases": {"a": per_phase, "b": per_phase}}),
                env=seed_env,
            )
        )
        receivers = [Receiver(workdir, i) for i in range(args.webhooks)]
        create_endpoints(env, [r.url for r in receivers])
        worker = subprocess.Popen(  # noqa: S603
            [PYTHON, "manage.py", "deliver"],
            cwd=ROOT,
            env=env.env,
            stdout=open(workdir / "deliver.log", "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        time.sleep(1.5)  # let the worker start listening: starting a process, not a result
        results: dict[str, Any] = {
            "config": {"webhooks": args.webhooks, "events": args.events, "rate": args.rate},
            "phases": {},
        }
        for name, phase_orders, failing in (
            ("all_healthy", seed["phases"]["a"], False),
            ("one_failing", seed["phases"]["b"], True),
        ):
            print(f"bench: webhooks {name} ...", flush=True)
            results["phases"][name] = run_phase(env, args, phase_orders, receivers, failing)
    finally:
        if worker is not None:
            stop(worker)
        for receiver in receivers:
            stop(receiver.process)
        env.close()
    results["ok"] = not any(p["lost"] or p["duplicated"] for p in results["phases"].values())
    results["seconds"] = round(time.time() - started, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    for name, phase in results["phases"].items():
        print(
            f"{name:12} p50 {phase['p50_ms']} ms  p99 {phase['p99_ms']} ms  "
            f"{phase['deliveries_per_s']} deliveries/s  lost {phase['lost']}  "
            f"dup {phase['duplicated']}  (healthy receivers: {phase['healthy_receivers']})"
        )
        print("  per receiver p99 ms:", [r["p99_ms"] for r in phase["receivers"]])
    print(f"bench: results in {args.json}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

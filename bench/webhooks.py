"""``python -m bench --webhooks N``: commit -> receiver latency of webhook deliveries.

Starts a private Redis and SQLite database (``bench.run.Env``; ``--postgres
URL`` for a private database on that server instead), N receiver processes
(``devtools.webhook_receiver``), one endpoint per receiver and one ``manage.py
deliver`` worker (``--workers W`` for more), then runs phases of E status
changes at R/s through the real order actions (``bench.driver``):

0. with ``--backlog``, first the workers' capacity: E events committed while
   they are stopped, then the time they take to deliver them all;
1. ``all_healthy``: every receiver answers 200;
2. ``one_failing``: receiver 0 answers 500 (its endpoint retries and holds
   its events), the others 200.

For the healthy receivers it reports commit -> receipt p50/p99 (overall and
per receiver), deliveries/s, and lost / duplicated ids. The failing
receiver must change nobody else's p99. Every process shares the machine,
so each phase also reports the load average, the CPU seconds of the
workers, receivers, driver and Redis, and how long the workers waited for a
CPU (``--profile``: py-spy on the first worker, without pausing it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from bench.run import PYTHON, RESULTS, ROOT, Env, Profiler
from devtools.processes import ManageCommand
from devtools.webhook_receiver import WebhookReceiver


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench --webhooks N")
    parser.add_argument("--webhooks", type=int, required=True, help="receivers (endpoints)")
    parser.add_argument("--events", type=int, default=1000, help="status changes per phase")
    parser.add_argument("--rate", type=float, default=100.0, help="status changes per second")
    parser.add_argument("--drain", type=float, default=30.0, help="s to wait for stragglers")
    parser.add_argument("--json", default=str(RESULTS / "webhooks.json"), help="output file")
    parser.add_argument("--workers", type=int, default=1, help="manage.py deliver processes")
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="first measure capacity: deliver E events committed while the workers were stopped",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on a private database created (and dropped) on this PostgreSQL server",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the (first) worker; top frames to the JSON"
    )
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


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


def record_lengths(receivers: list[WebhookReceiver]) -> dict[str, int]:
    """How many requests each receiver has recorded so far."""
    return {r.name: r.record.read_bytes().count(b"\n") for r in receivers}


def wait_for_requests(
    receivers: list[WebhookReceiver], before: dict[str, int], count: int, timeout: float
) -> None:
    """Wait until each receiver recorded ``count`` more requests than ``before`` (or time-out).

    Counting lines is cheap enough not to slow down a worker still catching up.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = record_lengths(receivers)
        if all(now[r.name] - before[r.name] >= count for r in receivers):
            return
        time.sleep(0.2)  # waiting on other processes' files: nothing to await


class Cpu:
    """CPU seconds (user + system) used by the given processes, and by waited-for children."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = {name: [psutil.Process(pid) for pid in pids] for name, pids in groups.items()}

    def sample(self) -> dict[str, float]:
        out = {name: sum(sum(p.cpu_times()[:2]) for p in ps) for name, ps in self.groups.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["driver"] = children.ru_utime + children.ru_stime  # the driver is the one waited for
        out["workers_waiting_for_cpu"] = sum(
            runqueue_wait(p.pid) for p in self.groups.get("workers", [])
        )
        return out


def runqueue_wait(pid: int) -> float:
    """Seconds the threads of ``pid`` have spent runnable but waiting for a CPU
    (Linux ``schedstat``; 0 elsewhere): how much a busy machine held it back."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


def run_phase(
    env: Env,
    args: argparse.Namespace,
    orders: list[Any],
    receivers: list[WebhookReceiver],
    failing: bool,
    cpu: Cpu,
) -> dict[str, Any]:
    healthy = receivers[1:] if failing else receivers
    if failing:
        receivers[0].set_mode("/hook", status=500)
    plan = {"mode": "app", "orders": [o[:2] for o in orders], "events": args.events}
    plan["rate"] = args.rate
    counts = record_lengths(healthy)
    load = os.getloadavg()[0]
    cpu_before = cpu.sample()
    phase_started = time.monotonic()
    out = json.loads(env.python("bench.driver", env.write("webhook-plan.json", plan)))
    committed = {event_id: at for event_id, _, at in out["events"]}
    wait_for_requests(healthy, counts, len(committed), args.drain)
    cpu_after = cpu.sample()
    phase_seconds = time.monotonic() - phase_started
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
    used = {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after}
    return {
        "events": len(committed),
        "load_average_1m_before": round(load, 2),
        "driver_seconds": round(out["seconds"], 2),
        "driver_commits_per_s": round(len(committed) / max(out["seconds"], 1e-9), 1),
        "driver_worst_lag_s": round(out["worst_lag_s"], 3),
        "healthy_receivers": len(healthy),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "deliveries_per_s": round(len(latencies) / max(last - first_commit, 1e-9), 1),
        "lost": lost,
        "duplicated": duplicated,
        "in_order": all(r["in_order"] for r in per_receiver),
        "phase_seconds": round(phase_seconds, 2),
        "cpu_seconds": used,
        "worker_cpu_ms_per_delivery": round(1000 * used["workers"] / max(len(latencies), 1), 3),
        "receivers": per_receiver,
    }


def run_backlog(
    env: Env,
    args: argparse.Namespace,
    orders: list[Any],
    receivers: list[WebhookReceiver],
    workers: list[ManageCommand],
) -> dict[str, Any]:
    """The workers' capacity: E events committed with the workers stopped, then
    how fast they deliver the backlog (first to last receipt) and at what CPU cost."""
    for worker in workers:
        worker.stop()
    plan = {"mode": "app", "orders": [o[:2] for o in orders], "events": args.events}
    plan["rate"] = 1e6  # as fast as the driver goes
    out = json.loads(env.python("bench.driver", env.write("webhook-backlog.json", plan)))
    committed = {event_id for event_id, _, _ in out["events"]}
    counts = record_lengths(receivers)
    load = os.getloadavg()[0]
    for worker in workers:
        worker.start(60)
    cpu = Cpu({"workers": [w.process.pid for w in workers if w.process]})
    cpu_before = cpu.sample()
    wait_for_requests(receivers, counts, len(committed), args.drain + len(committed) / 10)
    cpu_after = cpu.sample()
    times, lost, duplicated, in_order = [], 0, 0, True
    for receiver in receivers:
        got = [(i, at) for i, at in receiver.received() if i in committed]
        ids = [i for i, _ in got]
        lost += len(committed - set(ids))
        duplicated += len(ids) - len(set(ids))
        in_order = in_order and ids == sorted(ids)
        times += [at for _, at in got]
    seconds = max(times) - min(times) if times else 0.0
    worker_cpu = cpu_after["workers"] - cpu_before["workers"]
    return {
        "events": len(committed),
        "deliveries": len(times),
        "load_average_1m_before": round(load, 2),
        "drain_seconds": round(seconds, 2),
        "deliveries_per_s": round(len(times) / max(seconds, 1e-9), 1),
        "worker_cpu_seconds": round(worker_cpu, 2),
        "worker_cpu_ms_per_delivery": round(1000 * worker_cpu / max(len(times), 1), 3),
        "workers_waiting_for_cpu_s": round(
            cpu_after["workers_waiting_for_cpu"] - cpu_before["workers_waiting_for_cpu"], 2
        ),
        "lost": lost,
        "duplicated": duplicated,
        "in_order": in_order,
    }


@contextlib.contextmanager
def database(env: Env, server_url: str | None) -> Iterator[None]:
    """The bench's SQLite file (``Env``'s), or a private database on a PostgreSQL server."""
    if not server_url:
        yield
        return
    import psycopg

    name = f"bench_webhooks_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env.env["DATABASE_URL"] = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    try:
        yield
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="booktime-bench-webhooks-"))
    env = Env(workdir, "pubsub")
    env.env["WEBHOOKS_ALLOW_PRIVATE_NETWORKS"] = "1"
    receivers: list[WebhookReceiver] = []
    workers: list[ManageCommand] = []
    profiler: Profiler | None = None
    started = time.time()
    results: dict[str, Any] = {
        "config": {
            "webhooks": args.webhooks,
            "events": args.events,
            "rate": args.rate,
            "workers": args.workers,
            "database": "postgresql" if args.postgres else "sqlite",
        },
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "phases": {},
    }
    try:
        with database(env, args.postgres):
            per_phase = -(-args.events // 4)
            phases = dict.fromkeys(["a", "b", "c"] if args.backlog else ["a", "b"], per_phase)
            print(f"bench: seeding {sum(phases.values())} orders in {workdir}", flush=True)
            seed_env = env.env | {"CHANNEL_LAYER": "memory"}
            seed = json.loads(
                env.python(
                    "bench.seed", env.write("seed-plan.json", {"phases": phases}), env=seed_env
                )
            )
            for index in range(args.webhooks):
                receiver = WebhookReceiver(
                    name=f"receiver-{index}",
                    record=workdir / f"receiver-{index}.jsonl",
                    log_path=env.logs / f"receiver-{index}.log",
                )
                receivers.append(receiver)
                receiver.launch()
            for receiver in receivers:
                receiver.wait_ready()
            create_endpoints(env, [r.url() for r in receivers])
            for index in range(args.workers):
                worker = ManageCommand(
                    "deliver",
                    env=env.env,
                    name=f"deliver-{index}",
                    log_path=env.logs / f"deliver-{index}.log",
                )
                workers.append(worker)
                worker.start(60)
            if args.backlog:
                print("bench: webhooks backlog ...", flush=True)
                results["backlog"] = run_backlog(env, args, seed["phases"]["c"], receivers, workers)
            pids = {"workers": [w.process.pid for w in workers if w.process]}
            pids["receivers"] = [r.process.pid for r in receivers if r.process]
            pids["redis"] = [env.redis.process.pid] if env.redis.process else []
            cpu = Cpu(pids)
            if args.profile:
                RESULTS.mkdir(parents=True, exist_ok=True)
                profiler = Profiler(
                    pids["workers"][0], RESULTS / "profile-deliver.txt", nonblocking=True
                )
            for name, phase_orders, failing in (
                ("all_healthy", seed["phases"]["a"], False),
                ("one_failing", seed["phases"]["b"], True),
            ):
                print(f"bench: webhooks {name} ...", flush=True)
                results["phases"][name] = run_phase(
                    env, args, phase_orders, receivers, failing, cpu
                )
            if profiler is not None:
                results["profile_top"] = profiler.finish()
                profiler = None
            for child in workers + receivers:
                child.close()
    finally:
        if profiler is not None:
            profiler.finish()
        for child in workers + receivers:
            child.close()
        env.close()
    checked = [*results["phases"].values(), *([results["backlog"]] if args.backlog else [])]
    results["ok"] = not any(p["lost"] or p["duplicated"] or not p["in_order"] for p in checked)
    results["seconds"] = round(time.time() - started, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    for name, phase in results["phases"].items():
        print(
            f"{name:12} p50 {phase['p50_ms']} ms  p99 {phase['p99_ms']} ms  "
            f"{phase['deliveries_per_s']} deliveries/s  lost {phase['lost']}  "
            f"dup {phase['duplicated']}  in order {phase['in_order']}  "
            f"(healthy receivers: {phase['healthy_receivers']}, "
            f"driver {phase['driver_commits_per_s']} commits/s, "
            f"load {phase['load_average_1m_before']})"
        )
        print("  per receiver p99 ms:", [r["p99_ms"] for r in phase["receivers"]])
        print(
            "  cpu s:",
            phase["cpu_seconds"],
            f"worker {phase['worker_cpu_ms_per_delivery']} ms/delivery",
        )
    if args.backlog:
        backlog = results["backlog"]
        print(
            f"backlog      {backlog['deliveries']} deliveries in {backlog['drain_seconds']} s: "
            f"{backlog['deliveries_per_s']} deliveries/s, worker "
            f"{backlog['worker_cpu_ms_per_delivery']} ms CPU/delivery, lost {backlog['lost']}  "
            f"dup {backlog['duplicated']}  in order {backlog['in_order']}  "
            f"(load {backlog['load_average_1m_before']})"
        )
    print(f"bench: results in {args.json}")
    if results["ok"]:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"bench: logs kept in {workdir / 'logs'}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

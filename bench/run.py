"""The bench coordinator: ``python -m bench [options]``.

For each transport it runs one phase against the app and one against the
baseline (``bench/baseline.py``), each on freshly started servers:

1. start N daphne processes (and, for the app, ``manage.py publish_pending``);
2. start the client process(es) (``bench/clients.py``), which warm up with one
   connection, then open C connections spread over the servers;
3. measure server RSS before and after opening (per connection);
4. run the driver (``bench/driver.py``): E status changes at R/s;
5. tell the clients which event ids each subscription must get; they wait for
   them (or a drain timeout) and report latencies, lost and duplicated ids;
6. server CPU seconds over steps 4-5 per 1,000 deliveries.

Everything runs against a private Redis and a private SQLite database in a
temporary directory; nothing touches the shared Redis on 6379.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import psutil

from devtools.daphne import APPLICATION, DaphneServer
from devtools.processes import ChildProcess, ManageCommand, stop_processes
from devtools.redis_server import start_private_redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PYTHON = sys.executable
TRANSPORTS = ("ws", "sse", "poll")
TARGETS = ("app", "baseline")


# --- processes -------------------------------------------------------------------


class Env:
    """The private Redis, database and environment shared by every phase."""

    def __init__(self, workdir: Path, layer: str) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir()
        # Its log goes to logs/redis.log; one connection per client and server socket.
        self.redis = start_private_redis(workdir=self.logs, options=("--maxclients", "20000"))
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "booktime.settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "REDIS_URL": self.redis.url,
            "CHANNEL_LAYER": layer,
            "CHANNEL_LAYER_PREFIX": f"bench{os.getpid()}",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            # Staff clients share one user; the per-user poll and stream
            # limits are not what the bench measures.
            "LONGPOLL_MAX_PER_CLIENT": "100000",
            "SSE_MAX_PER_CLIENT": "100000",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }

    def python(self, module: str, *args: str, env: dict[str, str] | None = None) -> str:
        """Run ``python -m module args`` to completion; return its stdout."""
        done = subprocess.run(
            [PYTHON, "-m", module, *args],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{module} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def write(self, name: str, data: Any) -> str:
        path = self.workdir / name
        path.write_text(json.dumps(data))
        return str(path)

    def redis_cpu(self) -> float:
        """CPU seconds (user + system) Redis has used so far."""
        assert self.redis.process is not None
        return sum(psutil.Process(self.redis.process.pid).cpu_times()[:2])

    def redis_calls(self) -> Counter[str]:
        """Commands Redis has served so far, by name (INFO commandstats)."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return Counter(
            {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
        )

    def close(self) -> None:
        self.redis.close()


class Servers:
    """N daphne processes serving the app or the baseline (+ the app's publisher)."""

    def __init__(self, env: Env, target: str, count: int, label: str) -> None:
        application = APPLICATION if target == "app" else "bench.baseline:application"
        self.daphnes = [
            DaphneServer(
                env.env,
                name=f"{label}-daphne{index}",
                application=application,
                log_path=env.logs / f"{label}-daphne{index}.log",
            )
            for index in range(count)
        ]
        self.helpers: list[ChildProcess] = []
        try:
            for daphne in self.daphnes:
                daphne.launch()  # all start up at once; wait_ready() below
            has_publisher = (ROOT / "notifications/management/commands/publish_pending.py").exists()
            if target == "app" and has_publisher:
                publisher = ManageCommand(
                    "publish_pending",
                    name=f"{label}-publish_pending",
                    env=env.env,
                    log_path=env.logs / f"{label}-publish_pending.log",
                )
                publisher.launch()
                self.helpers.append(publisher)
            for daphne in self.daphnes:
                daphne.wait_ready(60)
        except BaseException:
            self.close()
            raise
        self.ports = [daphne.port for daphne in self.daphnes]
        self._track_processes()

    def _track_processes(self) -> None:
        """Note the daphne processes now running (their pids change on restart)."""
        self.pids = [daphne.process.pid for daphne in self.daphnes if daphne.process]
        self.ps = [psutil.Process(pid) for pid in self.pids]

    def restart(self) -> None:
        """Stop every daphne, then start them again on the same ports (a deploy:
        new processes, nothing cached, no connection open)."""
        for daphne in self.daphnes:
            daphne.stop()
        for daphne in self.daphnes:
            daphne.launch()
        for daphne in self.daphnes:
            daphne.wait_ready(60)
        self._track_processes()

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.ps)

    def cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.ps)

    def gc_seconds(self) -> float | None:
        """Seconds the servers spent in Python's cyclic garbage collector so far,
        from the app's ``/metrics`` (``booktime_gc_pause_seconds``); None for
        the baseline, which serves no metrics."""
        total = 0.0
        for port in self.ports:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
                    text = answer.read().decode()
            except OSError:
                return None
            for line in text.splitlines():
                if line.startswith("booktime_gc_pause_seconds_sum{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def close(self) -> None:
        for child in self.daphnes + self.helpers:
            child.close()


def gc_share(before: float | None, after: float | None, cpu: float) -> dict[str, float]:
    """The app servers' seconds in the cycle collector over a phase, and their share
    of the servers' CPU (nothing for the baseline)."""
    if before is None or after is None:
        return {}
    seconds = after - before
    return {
        "server_gc_s": round(seconds, 3),
        "gc_share_of_cpu": round(seconds / cpu, 3) if cpu else 0.0,
    }


class ClientProcess:
    """One ``bench.clients`` process and its JSON-lines conversation."""

    def __init__(self, env: Env, config: dict[str, Any], label: str) -> None:
        path = env.write(f"{label}.json", config)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.clients", path],
            cwd=ROOT,
            env=env.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(env.logs / f"{label}.log", "w"),  # noqa: SIM115
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.label = label
        self.env = env

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def wait(self, stage: str, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.label}: no {stage!r} within {timeout:.0f}s") from None
        if line is None:
            log = (self.env.logs / f"{self.label}.log").read_text()[-3000:]
            raise RuntimeError(f"{self.label} exited before {stage!r}:\n{log}")
        message = json.loads(line)
        if message.get("stage") != stage:
            raise RuntimeError(f"{self.label}: expected {stage!r}, got {message}")
        return message

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "close"})
                self.wait("closed", 120)
            except (RuntimeError, OSError):
                pass
        stop_processes([self.proc])


# --- measuring -------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


def summarize_latency(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    return {
        "p50": round(percentile(ordered, 0.50), 2),
        "p95": round(percentile(ordered, 0.95), 2),
        "p99": round(percentile(ordered, 0.99), 2),
        "max": round(ordered[-1], 2) if ordered else 0.0,
        "mean": round(mean, 2),
    }


def latency_cdf(latencies: list[float], points: int = 200) -> list[float]:
    """``points + 1`` evenly spaced quantiles (0 … 100 %), for the CDF chart."""
    ordered = sorted(latencies)
    if not ordered:
        return []
    last = len(ordered) - 1
    return [round(ordered[round(last * k / points)], 2) for k in range(points + 1)]


def wait_idle(servers: Servers, timeout: float = 60.0) -> float:
    """Seconds until the servers' CPU use falls below 5 % of a core over 0.25 s."""
    started = time.monotonic()
    before = servers.cpu()
    while time.monotonic() - started < timeout:
        time.sleep(0.25)  # sampling CPU use, not waiting for a result
        now = servers.cpu()
        if now - before < 0.05 * 0.25 * len(servers.ps):
            return round(time.monotonic() - started - 0.25, 3)
        before = now
    return round(timeout, 3)


def specs_for(
    transport: str,
    count: int,
    staff: int,
    rows: list[list[Any]],
    ports: list[int],
    staff_cookie: str,
    cursor: int,
) -> list[dict[str, Any]]:
    """``count`` customer connections over ``rows``' orders and ``staff`` staff ones."""
    specs = [
        {
            "transport": transport,
            "port": ports[i % len(ports)],
            "cookie": rows[i % len(rows)][2],
            "streams": [[f"order:{rows[i % len(rows)][0]}", cursor]],
        }
        for i in range(count)
    ]
    specs += [
        {
            "transport": transport,
            "port": ports[j % len(ports)],
            "cookie": staff_cookie,
            "streams": [["staff", cursor]],
        }
        for j in range(staff)
    ]
    return specs


# Leaf frames of a thread that waits (event-loop select, idle pool workers).
IDLE_FRAMES = (
    "select (selectors.py",
    "_worker (concurrent/futures/thread.py",
    "wait (threading.py",
    "_wait_for_tstate_lock",
)


class Profiler:
    """py-spy recording one server process, if py-spy is installed."""

    def __init__(self, pid: int, out: Path, *, nonblocking: bool = False) -> None:
        """``nonblocking``: sample without pausing the process (less overhead, for a
        process whose timing is what is measured; stacks may now and then be torn)."""
        binary = Path(PYTHON).parent / "py-spy"
        self.out = out
        self.proc: subprocess.Popen[Any] | None = None
        out.parent.mkdir(parents=True, exist_ok=True)
        if binary.exists() or shutil.which("py-spy"):
            self.proc = subprocess.Popen(
                [
                    str(binary if binary.exists() else "py-spy"),
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    # Only the thread holding the GIL: the database thread
                    # otherwise shows its waits for the GIL as busy time.
                    "--gil",
                    "--output",
                    str(out),
                    *(["--nonblocking"] if nonblocking else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def finish(self) -> dict[str, Any]:
        """Stop recording; the frames with most busy samples, by self and inclusive time."""
        if self.proc is None:
            return {}
        stop_processes([self.proc], 30, sig=signal.SIGINT)  # py-spy writes its output on SIGINT
        if not self.out.exists():
            return {}
        self_time: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        busy = idle = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            if any(marker in frames[-1] for marker in IDLE_FRAMES):
                idle += int(count)  # waiting, not working
                continue
            busy += int(count)
            self_time[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)

        def top(counter: Counter[str]) -> list[list[Any]]:
            return [[round(100 * n / busy, 1), frame] for frame, n in counter.most_common(40)]

        return {
            "raw": str(self.out),
            "busy_samples": busy,
            "idle_samples": idle,
            "self_pct": top(self_time) if busy else [],
            "inclusive_pct": top(inclusive) if busy else [],
        }


def run_phase(
    env: Env,
    args: argparse.Namespace,
    target: str,
    transport: str,
    seed: dict[str, Any],
    cursor: int,
    idle: int = 0,
    *,
    rows: list[list[Any]] | None = None,
    rate: float | None = None,
    events: int | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """One measured run of one transport against one target on fresh servers.

    ``rows``, ``rate`` and ``events`` override the phase's orders and load
    (the ceiling search steps them).
    """
    label = label or f"{target}-{'idle-' if idle else ''}{transport}"
    if rows is None:
        rows = seed["phases"]["idle" if idle else transport]
    servers = Servers(env, target, args.servers, label)
    clients: list[ClientProcess] = []
    profiler: Profiler | None = None
    try:
        count = idle or getattr(args, transport)
        staff = 0 if idle else args.staff
        specs = specs_for(
            transport, count, staff, rows, servers.ports, seed["staff_cookie"], cursor
        )
        procs = max(1, min(args.client_procs, len(specs)))
        for index in range(procs):
            config = {
                "connections": specs[index::procs],
                "warmup": [
                    specs_for(transport, 0, 1, rows, servers.ports, seed["staff_cookie"], cursor)[0]
                ],
            }
            clients.append(ClientProcess(env, config, f"{label}-clients{index}"))
        for client in clients:
            client.wait("warm", 120)
        rss_before = servers.rss()
        for client in clients:
            client.send({"cmd": "open"})
        ready = [client.wait("ready", 120 + len(specs) / 20) for client in clients]
        rss_after = servers.rss()
        opened = sum(r["open"] for r in ready)
        failed = sum(r["failed"] for r in ready)
        result: dict[str, Any] = {
            "connections": opened,
            "failed_connections": failed,
            "open_seconds": max(r["open_seconds"] for r in ready),
            "rss_before_mb": round(rss_before / 2**20, 2),
            "rss_after_open_mb": round(rss_after / 2**20, 2),
            "rss_per_connection_kb": round((rss_after - rss_before) / 1024 / max(opened, 1), 2),
            "errors": [e for r in ready for e in r["errors"]][:5],
        }
        if idle:
            return result

        rows_for_driver = rows[: max(len(rows), 1)]
        plan = {
            "mode": target,
            "orders": [[row[0], row[1]] for row in rows_for_driver],
            "events": events or args.events,
            "rate": rate or args.rate,
            "first_id": cursor + 1,
        }
        if args.profile and target == "app" and transport in args.profile:
            profiler = Profiler(servers.pids[0], RESULTS / f"profile-{transport}.txt")
        # The scrape first: its own CPU is not the phase's.
        gc_before = servers.gc_seconds()
        cpu_before = servers.cpu()
        redis_cpu_before = env.redis_cpu()
        redis_calls_before = env.redis_calls()
        driven = json.loads(env.python("bench.driver", env.write(f"{label}-plan.json", plan)))
        events = driven["events"]
        drain = args.drain
        for client in clients:
            client.send({"cmd": "expect", "events": events, "timeout": drain})
        done = [client.wait("done", drain + 60) for client in clients]
        server_cpu = servers.cpu() - cpu_before
        gc_after = servers.gc_seconds()
        redis_cpu = env.redis_cpu() - redis_cpu_before
        redis_calls = env.redis_calls()
        redis_calls.subtract(redis_calls_before)
        redis_calls.pop("info", None)
        if profiler is not None:
            result["profile_top"] = profiler.finish()
            profiler = None

        totals: Counter[str] = Counter()
        latencies: list[float] = []
        first_receipt = last_receipt = None
        for message in done:
            stats = message["results"].get(transport, {})
            latencies += stats.get("latencies_ms", [])
            for key in ("deliveries", "expected", "lost", "duplicated", "unexpected"):
                totals[key] += stats.get(key, 0)
            if stats.get("first_receipt") is not None:
                first_receipt = min(first_receipt or stats["first_receipt"], stats["first_receipt"])
                last_receipt = max(last_receipt or stats["last_receipt"], stats["last_receipt"])
            totals["resets"] += message["resets"]
            result["errors"] += message["errors"]
        first_commit = min((e[2] for e in events), default=0.0)
        # What the driver offered, per second, over its own run (the ceiling's x axis).
        offered = totals["expected"] / driven["seconds"] if driven["seconds"] else 0.0
        window = (last_receipt - first_commit) if last_receipt else 0.0
        deliveries = totals["deliveries"]
        result.update(
            {
                "events": len(events),
                "event_rate": round(len(events) / driven["seconds"], 1) if driven["seconds"] else 0,
                "driver_worst_lag_s": round(driven["worst_lag_s"], 3),
                "expected_deliveries": totals["expected"],
                "deliveries": deliveries,
                "lost": totals["lost"],
                "duplicated": totals["duplicated"],
                "unexpected": totals["unexpected"],
                "resets": totals["resets"],
                "latency_ms": summarize_latency(latencies),
                "latency_cdf_ms": latency_cdf(latencies),
                "offered_deliveries_per_s": round(offered, 1),
                "deliveries_per_s": round(deliveries / window, 1) if window > 0 else 0.0,
                "server_cpu_s": round(server_cpu, 3),
                **gc_share(gc_before, gc_after, server_cpu),
                "cpu_s_per_1k_deliveries": round(1000 * server_cpu / max(deliveries, 1), 4),
                "redis_cpu_s_per_1k_deliveries": round(1000 * redis_cpu / max(deliveries, 1), 4),
                "redis_commands_per_delivery": round(
                    sum(redis_calls.values()) / max(deliveries, 1), 2
                ),
                "redis_commands": dict(redis_calls.most_common(8)),
                "max_event_id": max((e[0] for e in events), default=cursor),
            }
        )
        result["errors"] = result["errors"][:5]
        return result
    finally:
        if profiler is not None:
            profiler.finish()
        for client in clients:
            client.close()
        servers.close()


# --- capacity scenarios (memory held together, churn, reconnect storm, ceiling) ------


def start_clients(
    env: Env, specs: list[dict[str, Any]], warmup: list[dict[str, Any]], procs: int, label: str
) -> list[ClientProcess]:
    """Client processes sharing ``specs``, each warmed up with one connection per kind."""
    procs = max(1, min(procs, len(specs)))
    clients = [
        ClientProcess(env, {"connections": specs[i::procs], "warmup": warmup}, f"{label}{i}")
        for i in range(procs)
    ]
    for client in clients:
        client.wait("warm", 120)
    return clients


def run_held(
    env: Env, args: argparse.Namespace, target: str, seed: dict[str, Any], cursor: int
) -> dict[str, Any]:
    """The memory scenario: ``--idle-ws`` WebSockets, then ``--idle-sse`` SSE
    streams opened beside them, all held open at once on the same servers.

    RSS per connection of each kind is the growth while that kind opened.
    """
    rows = seed["phases"]["idle"]
    servers = Servers(env, target, args.servers, f"{target}-held")
    clients: list[ClientProcess] = []
    out: dict[str, Any] = {}
    try:
        specs: list[dict[str, Any]] = []
        for kind, count in (("ws", args.idle_ws), ("sse", args.idle_sse)):
            specs += specs_for(kind, count, 0, rows, servers.ports, "", cursor)
        warm = [
            specs_for(kind, 0, 1, rows, servers.ports, seed["staff_cookie"], cursor)[0]
            for kind in ("ws", "sse")
        ]
        clients = start_clients(env, specs, warm, args.client_procs, f"{target}-held-clients")
        for kind, count in (("ws", args.idle_ws), ("sse", args.idle_sse)):
            if not count:
                continue
            rss_before = servers.rss()
            for client in clients:
                client.send({"cmd": "open", "transport": kind})
            ready = [client.wait("ready", 120 + count / 20) for client in clients]
            rss_after = servers.rss()
            opened = sum(r["open"] for r in ready)
            out[f"idle_{kind}"] = {
                "connections": opened,
                "failed_connections": sum(r["failed"] for r in ready),
                "open_seconds": max(r["open_seconds"] for r in ready),
                "connects_per_s": round(opened / max(r["open_seconds"] for r in ready), 1),
                "rss_before_mb": round(rss_before / 2**20, 2),
                "rss_after_open_mb": round(rss_after / 2**20, 2),
                "rss_per_connection_kb": round((rss_after - rss_before) / 1024 / max(opened, 1), 2),
                "held_with": {k: v["connections"] for k, v in out.items()},
                "errors": [e for r in ready for e in r["errors"]][:5],
            }
        return out
    finally:
        for client in clients:
            client.close()
        servers.close()


def run_churn(
    env: Env,
    args: argparse.Namespace,
    target: str,
    transport: str,
    seed: dict[str, Any],
    cursor: int,
) -> dict[str, Any]:
    """``--churn N``: N clients connect, subscribe with a cursor and disconnect,
    ``--in-flight`` at a time. Connects/s, and the time until the server is idle again."""
    rows = seed["phases"]["churn"]
    servers = Servers(env, target, args.servers, f"{target}-churn-{transport}")
    clients: list[ClientProcess] = []
    profiler: Profiler | None = None
    try:
        specs = specs_for(transport, args.churn, 0, rows, servers.ports, "", cursor)
        warm = specs_for(transport, 0, 1, rows, servers.ports, seed["staff_cookie"], cursor)
        clients = start_clients(
            env, specs, warm, args.client_procs, f"{target}-churn-{transport}-clients"
        )
        if args.profile and target == "app" and transport in args.profile:
            profiler = Profiler(servers.pids[0], RESULTS / f"profile-churn-{transport}.txt")
        gc_before = servers.gc_seconds()  # before the CPU reading, as in run_phase
        cpu_before = servers.cpu()
        started = time.monotonic()
        for client in clients:
            client.send({"cmd": "churn", "in_flight": args.in_flight})
        churned = [client.wait("churned", 300 + args.churn / 10) for client in clients]
        seconds = max(c["seconds"] for c in churned)
        tail = wait_idle(servers)
        done = sum(c["done"] for c in churned)
        cpu, gc_seconds = servers.cpu() - cpu_before, servers.gc_seconds()
        profile = profiler.finish() if profiler is not None else None
        profiler = None
        return {
            **({"profile_top": profile} if profile else {}),
            "clients": args.churn,
            "in_flight": args.in_flight,
            "done": done,
            "failed_connections": sum(c["failed"] for c in churned),
            "seconds": seconds,
            "connects_per_s": round(done / seconds, 1) if seconds else 0.0,
            "settle_seconds": round(time.monotonic() - started, 3),
            "settle_tail_seconds": tail,
            "server_cpu_ms_per_connect": round(1000 * cpu / max(done, 1), 3),
            **gc_share(gc_before, gc_seconds, cpu),
            "errors": [e for c in churned for e in c["errors"]][:5],
        }
    finally:
        if profiler is not None:
            profiler.finish()
        for client in clients:
            client.close()
        servers.close()


def run_storm(
    env: Env, args: argparse.Namespace, target: str, seed: dict[str, Any], cursor: int
) -> dict[str, Any]:
    """``--storm N``: N WebSocket clients with cursors are connected; all drop,
    the server processes restart (a deploy: nothing cached in them), one change
    per order is committed meanwhile, and all reconnect at once (``--in-flight``
    handshakes at a time), each from its last id. Settled = every client
    subscribed again and holding every change it missed."""
    rows = seed["phases"]["storm"]
    servers = Servers(env, target, args.servers, f"{target}-storm")
    clients: list[ClientProcess] = []
    profiler: Profiler | None = None
    try:
        specs = specs_for("ws", args.storm, 0, rows, servers.ports, "", cursor)
        warm = specs_for("ws", 0, 1, rows, servers.ports, seed["staff_cookie"], cursor)
        clients = start_clients(env, specs, warm, args.client_procs, f"{target}-storm-clients")
        for client in clients:
            client.send({"cmd": "open", "in_flight": args.in_flight})
        ready = [client.wait("ready", 300 + args.storm / 10) for client in clients]
        for client in clients:
            client.send({"cmd": "drop"})
        for client in clients:
            client.wait("dropped", 120)
        servers.restart()
        plan = {
            "mode": target,
            "orders": [[row[0], row[1]] for row in rows],
            "events": len(rows),  # one change per order: every client missed one
            "rate": 1000.0,
            "first_id": cursor + 1,
        }
        driven = json.loads(
            env.python("bench.driver", env.write(f"{target}-storm-plan.json", plan))
        )
        events = driven["events"]
        if args.profile and target == "app" and "ws" in args.profile:
            # The restarted process: the reconnects, not the first opens.
            profiler = Profiler(servers.pids[0], RESULTS / "profile-storm-ws.txt")
        cpu_before = servers.cpu()
        for client in clients:
            client.send(
                {
                    "cmd": "storm",
                    "events": events,
                    "in_flight": args.in_flight,
                    "timeout": 300 + args.storm / 10,
                }
            )
        settled = [client.wait("settled", 400 + args.storm / 5) for client in clients]
        totals: Counter[str] = Counter()
        for message in settled:
            stats = message["results"].get("ws", {})
            for key in ("deliveries", "expected", "lost", "duplicated", "unexpected"):
                totals[key] += stats.get(key, 0)
        settle = max(m["settle_seconds"] for m in settled)
        cpu = servers.cpu() - cpu_before
        profile = profiler.finish() if profiler is not None else None
        profiler = None
        return {
            **({"profile_top": profile} if profile else {}),
            "clients": args.storm,
            "in_flight": args.in_flight,
            "first_open_seconds": max(r["open_seconds"] for r in ready),
            "events_missed": len(events),
            "reconnected": sum(m["open"] for m in settled),
            "failed_connections": sum(m["failed"] for m in settled),
            "reopen_seconds": max(m["reopen_seconds"] for m in settled),
            "settle_seconds": settle,
            "reconnects_per_s": round(args.storm / settle, 1) if settle else 0.0,
            "server_cpu_ms_per_reconnect": round(1000 * cpu / max(args.storm, 1), 3),
            "expected_deliveries": totals["expected"],
            "deliveries": totals["deliveries"],
            "lost": totals["lost"],
            "duplicated": totals["duplicated"],
            "unexpected": totals["unexpected"],
            "resets": sum(m["resets"] for m in settled),
            "max_event_id": max((e[0] for e in events), default=cursor),
            "errors": [e for m in settled for e in m["errors"]][:5],
        }
    finally:
        if profiler is not None:
            profiler.finish()
        for client in clients:
            client.close()
        servers.close()


def fanout_per_event(args: argparse.Namespace) -> float:
    """Deliveries per change in the ceiling's layout: customers per order + staff."""
    return args.ws / args.orders + args.staff


def step_passes(phase: dict[str, Any], args: argparse.Namespace) -> bool:
    """The SLO: p99 within ``--slo-ms``, and ``--on-time`` of the offered rate
    delivered (nothing lost, nothing queued up behind the run)."""
    offered = phase.get("offered_deliveries_per_s") or 0.0
    return bool(
        phase.get("lost", 1) == 0
        and phase.get("duplicated", 1) == 0
        and phase["latency_ms"]["p99"] <= args.slo_ms
        and phase["deliveries_per_s"] >= args.on_time * offered
    )


def ceiling_search(args: argparse.Namespace) -> Generator[float, dict[str, Any], dict[str, Any]]:
    """The ceiling's search for one target: yields each offered rate (deliveries/s)
    and is sent that step's result. Steps up by ``--ceiling-factor`` until the
    SLO breaks (or down, from a failing start), refines between the last pass
    and the first failure, then offers 1.1x the ceiling once."""
    steps: list[dict[str, Any]] = []
    passed: float | None = None
    failed: float | None = None
    offered = args.ceiling_start
    driver_bound = False
    for _ in range(args.ceiling_steps):
        result = yield offered
        steps.append(result)
        if result["driver_bound"] and result["passes"]:
            driver_bound = True  # the ceiling is above what the driver can offer
            break
        if result["passes"]:
            passed = offered
            if failed is not None:
                break  # came down from a failing start: the bracket is found
            offered *= args.ceiling_factor
        else:
            failed = offered
            if passed is not None:
                break
            offered /= args.ceiling_factor  # the start was already too much: step down
    for _ in range(args.ceiling_refine):
        if passed is None or failed is None:
            break
        middle = (passed * failed) ** 0.5
        result = yield middle
        steps.append(result)
        if result["passes"]:
            passed = middle
        else:
            failed = middle
    # The ceiling is the highest *achieved* offered rate among passing steps.
    ceiling = max((s["offered_deliveries_per_s"] for s in steps if s["passes"]), default=0.0)
    over: dict[str, Any] | None = None
    if ceiling and not driver_bound:
        over = yield 1.1 * ceiling
        over["over_ceiling"] = True
        steps.append(over)
    return {
        "fanout_per_event": round(fanout_per_event(args), 2),
        "slo": {"p99_ms": args.slo_ms, "on_time": args.on_time},
        "ceiling_deliveries_per_s": round(ceiling, 1),
        "first_failure_deliveries_per_s": round(failed, 1) if failed else None,
        # True: no step failed; the ceiling is at least ``ceiling_deliveries_per_s``,
        # the most the driver could offer (raise the fan-out per event: --staff).
        "driver_bound": driver_bound,
        "at_1_1x": (
            {
                k: over[k]
                for k in (
                    "offered_deliveries_per_s",
                    "deliveries_per_s",
                    "latency_ms",
                    "lost",
                    "duplicated",
                    "passes",
                )
            }  # fmt: skip
            if over
            else None
        ),
        "steps": steps,
    }


def run_ceilings(
    env: Env, args: argparse.Namespace, targets: list[str], seed: dict[str, Any], cursor: int
) -> tuple[dict[str, dict[str, Any]], int]:
    """``--ceiling`` for every target, their steps taken in turn (app, baseline,
    app, ...) so that both searches run on the machine as it is at the time:
    run one after the other, minutes apart, the baseline's ceiling on this
    2-core machine moved from 14,400 to 28,300 deliveries/s between runs of
    the same code (docs/performance.md, round 11)."""
    fanout = fanout_per_event(args)
    sets = {
        target: iter(seed["phases"][n] for n in sorted(seed["phases"]) if n.startswith("ceil"))
        for target in targets
    }
    taken = dict.fromkeys(targets, 0)

    def step(target: str, offered: float) -> dict[str, Any]:
        nonlocal cursor
        rate = offered / fanout
        rows = next(sets[target])
        events = int(min(len(rows) * 4, max(50, rate * args.step_seconds)))
        print(f"bench: {target} ceiling step {offered:,.0f} deliveries/s offered", flush=True)
        phase = run_phase(
            env, args, target, "ws", seed, cursor if target == "app" else 0,
            rows=rows, rate=rate, events=events, label=f"{target}-ceil{taken[target]}",
        )  # fmt: skip
        taken[target] += 1
        if target == "app":
            cursor = max(cursor, phase["max_event_id"])
        phase["target_offered_deliveries_per_s"] = round(offered, 1)
        # The driver commits each change through the app (or, for the baseline,
        # publishes it): when it cannot offer the step's rate, the step says
        # nothing about the server, and stepping higher says less.
        phase["driver_bound"] = phase["offered_deliveries_per_s"] < args.on_time * offered
        phase["passes"] = step_passes(phase, args)
        phase.pop("latency_cdf_ms", None)
        return phase

    searches = {target: ceiling_search(args) for target in targets}
    offers = {target: next(search) for target, search in searches.items()}
    found: dict[str, dict[str, Any]] = {}
    while offers:
        for target in list(offers):
            try:
                offers[target] = searches[target].send(step(target, offers[target]))
            except StopIteration as done:
                found[target] = done.value
                del offers[target]
    return {target: found[target] for target in targets}, cursor


# --- reporting -------------------------------------------------------------------

# (label, path into a phase result, format); every row also gets app/baseline.
ROWS = [
    ("connections", ("connections",), "{:.0f}"),
    ("latency p50 ms", ("latency_ms", "p50"), "{:.1f}"),
    ("latency p95 ms", ("latency_ms", "p95"), "{:.1f}"),
    ("latency p99 ms", ("latency_ms", "p99"), "{:.1f}"),
    ("latency max ms", ("latency_ms", "max"), "{:.1f}"),
    ("deliveries/s", ("deliveries_per_s",), "{:.1f}"),
    ("deliveries", ("deliveries",), "{:.0f}"),
    ("lost", ("lost",), "{:.0f}"),
    ("duplicated", ("duplicated",), "{:.0f}"),
    ("RSS/conn KiB", ("rss_per_connection_kb",), "{:.1f}"),
    ("CPU s/1k deliv.", ("cpu_s_per_1k_deliveries",), "{:.3f}"),
    ("GC share of CPU", ("gc_share_of_cpu",), "{:.3f}"),
    ("Redis CPU s/1k", ("redis_cpu_s_per_1k_deliveries",), "{:.3f}"),
    ("Redis cmds/deliv.", ("redis_commands_per_delivery",), "{:.1f}"),
]
IDLE_ROWS = [
    ("connections", ("connections",), "{:.0f}"),
    ("RSS/conn KiB", ("rss_per_connection_kb",), "{:.1f}"),
    ("open seconds", ("open_seconds",), "{:.1f}"),
]


def dig(data: dict[str, Any], path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data if isinstance(data, int | float) else None


def ratios(app: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """app / baseline for every figure in the table."""
    out: dict[str, float | None] = {}
    for _label, path, _fmt in ROWS + IDLE_ROWS:
        a, b = dig(app, path), dig(baseline, path)
        if a is not None and b is not None:
            out["_".join(path)] = round(a / b, 2) if b else None
    return out


def table(results: dict[str, Any]) -> str:
    lines = []
    for phase in results["phases"]["app"]:
        app = results["phases"]["app"][phase]
        base = results["phases"]["baseline"].get(phase, {})
        lines.append(f"\n== {phase} ==")
        lines.append(f"{'':18} {'app':>12} {'baseline':>12} {'ratio':>8}")
        for label, path, fmt in IDLE_ROWS if phase.startswith("idle") else ROWS:
            a, b = dig(app, path), dig(base, path)
            ratio = f"{a / b:.2f}x" if a is not None and b else "-"
            lines.append(
                f"{label:18} {fmt.format(a) if a is not None else '-':>12} "
                f"{fmt.format(b) if b is not None else '-':>12} {ratio:>8}"
            )
    return "\n".join(lines)


# --- entry point -------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run, under a minute")
    parser.add_argument("--servers", type=int, default=1, help="daphne processes (default 1)")
    parser.add_argument("--ws", type=int, default=200, help="WebSocket clients")
    parser.add_argument("--sse", type=int, default=100, help="SSE clients")
    parser.add_argument("--poll", type=int, default=100, help="long-poll clients")
    parser.add_argument("--staff", type=int, default=2, help="staff-stream clients per phase")
    parser.add_argument("--orders", type=int, default=200, help="orders watched per phase (M)")
    parser.add_argument("--events", type=int, default=600, help="status changes per phase (E)")
    parser.add_argument("--rate", type=float, default=50.0, help="status changes per second")
    parser.add_argument(
        "--layer",
        choices=["redis", "pubsub"],
        default="pubsub",
        help="channel layer (app default: pubsub)",
    )
    parser.add_argument("--client-procs", type=int, default=1, help="client processes")
    parser.add_argument("--drain", type=float, default=30.0, help="s to wait for stragglers")
    parser.add_argument("--idle-ws", type=int, default=0, help="idle WebSocket connections")
    parser.add_argument("--idle-sse", type=int, default=0, help="idle SSE connections")
    parser.add_argument("--no-baseline", action="store_true", help="measure the app only")
    parser.add_argument(
        "--profile",
        nargs="*",
        choices=TRANSPORTS,
        default=None,
        help="py-spy the (first) app server in these phases (ws: also the churn and the storm's reconnects); top frames go to the JSON",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="find the fan-out ceiling (WebSocket: --ws customers on --orders orders + --staff)",
    )
    parser.add_argument(
        "--ceiling-start", type=float, default=1000.0, help="first offered deliveries/s"
    )
    parser.add_argument("--ceiling-factor", type=float, default=1.4, help="step multiplier")
    parser.add_argument("--ceiling-steps", type=int, default=10, help="at most this many steps")
    parser.add_argument("--ceiling-refine", type=int, default=2, help="bisections after a failure")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--slo-ms", type=float, default=50.0, help="the ceiling's p99 bound")
    parser.add_argument(
        "--on-time", type=float, default=0.98, help="share of the offered rate to deliver"
    )
    parser.add_argument(
        "--churn", type=int, metavar="N", default=0, help="N connect+subscribe+disconnect"
    )
    parser.add_argument(
        "--churn-transports", nargs="*", choices=["ws", "sse"], default=["ws", "sse"]
    )
    parser.add_argument(
        "--storm", type=int, metavar="N", default=0, help="N WebSocket clients reconnect at once"
    )
    parser.add_argument("--storm-orders", type=int, default=1000, help="orders the storm follows")
    parser.add_argument(
        "--in-flight", type=int, default=100, help="handshakes in flight (churn, storm)"
    )
    parser.add_argument("--plot", metavar="DIR", help="write PNG charts (needs the bench extra)")
    parser.add_argument("--json", default=str(RESULTS / "latest.json"), help="output file")
    parser.add_argument(
        "--webhooks",
        type=int,
        metavar="N",
        help="webhook latency to N receivers (bench.webhooks; python -m bench --webhooks N -h)",
    )
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        # Quick defaults; options given explicitly still win.
        parser.set_defaults(ws=20, sse=10, poll=10, staff=1, orders=12, events=48, drain=15.0)
    return parser.parse_args(argv)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def scenario_ratio(app: dict[str, Any], baseline: dict[str, Any], key: str) -> float | None:
    a, b = app.get(key), baseline.get(key)
    return (
        round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    )


def scenario_table(scenarios: dict[str, Any]) -> str:
    """The capacity scenarios, app against baseline."""
    lines = []
    churn = ["connects_per_s", "settle_seconds", "server_cpu_ms_per_connect", "gc_share_of_cpu"]
    shown = {
        "churn_ws": churn,
        "churn_sse": churn,
        "storm": ["reopen_seconds", "settle_seconds", "lost", "duplicated"],
        "ceiling": ["ceiling_deliveries_per_s", "first_failure_deliveries_per_s", "driver_bound"],
    }
    for name, keys in shown.items():
        if name not in scenarios:
            continue
        pair = scenarios[name]
        lines.append(f"\n== {name} ==")
        lines.append(f"{'':28} {'app':>12} {'baseline':>12} {'ratio':>8}")
        for key in keys:
            a = pair.get("app", {}).get(key)
            b = pair.get("baseline", {}).get(key)
            r = scenario_ratio(pair.get("app", {}), pair.get("baseline", {}), key)
            lines.append(
                f"{key:28} {a if a is not None else '-':>12} {b if b is not None else '-':>12} "
                f"{f'{r:.2f}x' if r is not None else '-':>8}"
            )
        if name == "ceiling":
            for target in ("app", "baseline"):
                over = pair.get(target, {}).get("at_1_1x")
                if over:
                    lines.append(
                        f"{target} at 1.1x: offered {over['offered_deliveries_per_s']:,.0f}/s, "
                        f"p50 {over['latency_ms']['p50']} ms, p99 {over['latency_ms']['p99']} ms, "
                        f"lost {over['lost']}"
                    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if any(arg == "--webhooks" or arg.startswith("--webhooks=") for arg in given):
        from bench.webhooks import main as webhooks_main  # its own options (see there)

        return webhooks_main(given)
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    scenario_mode = bool(args.ceiling or args.churn or args.storm)
    # --ceiling, --churn and --storm run only their scenarios (--ws etc. are the
    # ceiling's layout there); --idle-ws/--idle-sse run alongside anything.
    transports = [] if scenario_mode else [t for t in TRANSPORTS if getattr(args, t) > 0]
    steps = 4  # placed -> paid -> packed -> shipped -> delivered
    per_phase = max(args.orders, -(-args.events // steps))
    idle = max(args.idle_ws, args.idle_sse)
    workdir = Path(tempfile.mkdtemp(prefix="booktime-bench-"))
    started = time.time()
    env = Env(workdir, args.layer)
    targets = ["app"] if args.no_baseline else list(TARGETS)
    results: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k not in ("json",)}
        | {"orders_per_phase": per_phase, "fd_limit": fd_limit},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "baseline_server": "daphne (bench.baseline:application, plain Redis pub/sub)",
        "phases": {target: {} for target in targets},
        "scenarios": {},
    }
    scenarios = results["scenarios"]
    try:
        phases = dict.fromkeys(transports, per_phase)
        if idle:
            phases["idle"] = max(1, min(idle, args.orders))
        if args.churn:
            phases["churn"] = max(1, min(args.churn, args.orders))
        if args.storm:
            phases["storm"] = args.storm_orders
        if args.ceiling:
            for k in range(args.ceiling_steps + args.ceiling_refine + 1):
                phases[f"ceil{k:02d}"] = args.orders
        print(f"bench: seeding {sum(phases.values())} orders in {workdir}", flush=True)
        seed_env = env.env | {"CHANNEL_LAYER": "memory"}
        seed = json.loads(
            env.python("bench.seed", env.write("seed-plan.json", {"phases": phases}), env=seed_env)
        )
        cursor = seed["cursor"]
        for transport in transports:
            for target in targets:
                print(f"bench: {target} {transport} ...", flush=True)
                phase = run_phase(
                    env, args, target, transport, seed, cursor if target == "app" else 0
                )
                results["phases"][target][transport] = phase
                if target == "app":
                    cursor = max(cursor, phase["max_event_id"])
        if idle:
            for target in targets:
                print(
                    f"bench: {target} held: {args.idle_ws} WS + {args.idle_sse} SSE ...", flush=True
                )
                held = run_held(env, args, target, seed, cursor if target == "app" else 0)
                results["phases"][target].update(held)
        for transport in args.churn_transports if args.churn else ():
            for target in targets:
                print(f"bench: {target} churn {transport} x{args.churn} ...", flush=True)
                scenarios.setdefault(f"churn_{transport}", {})[target] = run_churn(
                    env, args, target, transport, seed, cursor if target == "app" else 0
                )
        if args.storm:
            for target in targets:
                print(f"bench: {target} reconnect storm x{args.storm} ...", flush=True)
                storm = run_storm(env, args, target, seed, cursor if target == "app" else 0)
                scenarios.setdefault("storm", {})[target] = storm
                if target == "app":
                    cursor = max(cursor, storm["max_event_id"])
        if args.ceiling:
            scenarios["ceiling"], cursor = run_ceilings(env, args, targets, seed, cursor)
    finally:
        env.close()
    for pair in scenarios.values():
        if "app" in pair and "baseline" in pair:
            keys = [k for k, v in pair["app"].items() if isinstance(v, int | float)]
            pair["ratios"] = {k: scenario_ratio(pair["app"], pair["baseline"], k) for k in keys}
    if "baseline" in results["phases"]:
        results["ratios"] = {
            phase: ratios(results["phases"]["app"][phase], results["phases"]["baseline"][phase])
            for phase in results["phases"]["app"]
            if phase in results["phases"]["baseline"]
        }
    every = [p for t in results["phases"].values() for p in t.values()]
    every += [
        r
        for name, pair in scenarios.items()
        for target, r in pair.items()
        if target in TARGETS and name != "ceiling"
    ]
    results["totals"] = {
        key: sum(p.get(key, 0) for p in every)
        for key in ("lost", "duplicated", "unexpected", "failed_connections")
    }
    # Past the ceiling a step may fail its SLO, but it must still lose nothing.
    for pair in (scenarios.get("ceiling") or {}).values():
        for step in pair.get("steps", []) if isinstance(pair, dict) else []:
            for key in ("lost", "duplicated", "unexpected"):
                results["totals"][key] += step.get(key, 0)
    results["ok"] = not any(results["totals"].values())
    results["seconds"] = round(time.time() - started, 1)
    if "baseline" in results["phases"]:
        print(table(results))
        print(scenario_table(scenarios))
    else:
        print(json.dumps({"phases": results["phases"], "scenarios": scenarios}, indent=1)[:20000])
    for target, phases_ in results["phases"].items():
        for name, phase in phases_.items():
            for error in phase.get("errors", []):
                print(f"  {target} {name}: {error}")
    for name, pair in scenarios.items():
        for target, r in pair.items():
            for error in r.get("errors", []) if isinstance(r, dict) else []:
                print(f"  {target} {name}: {error}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if args.plot:
        from bench.plot import plot_results

        for path in plot_results([results], Path(args.plot)):
            print(f"bench: chart {path}")
    print(f"\nbench: {'OK' if results['ok'] else 'FAILED'} in {results['seconds']}s -> {out}")
    if results["ok"]:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"bench: logs kept in {workdir / 'logs'}")
    return 0 if results["ok"] else 1

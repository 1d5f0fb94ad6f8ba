"""The development supervisor ``scripts/run`` runs, once the virtualenv exists.

``scripts/run`` makes the virtualenv, then calls ``setup`` and ``run``:

``python -m devtools.devserver setup``
    Apply migrations and load the demo data. Needs no Redis: the demo
    events are published on the in-memory layer (nobody is listening yet;
    browsers read them from the event log by cursor).

``python -m devtools.devserver run [--host H] [--port P] [--animate SECONDS]``
    Find a Redis (``REDIS_URL``, the local 6379, or a private redis-server
    started for this run; see ``devtools.redis_server``), apply any new
    migrations, then run daphne and the ``publish_pending`` and ``deliver`` workers until
    Ctrl-C; stop everything it started, private Redis included.

Development only: it turns DEBUG on unless the environment says otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading

from devtools.processes import BASE_DIR, stop_processes
from devtools.redis_server import DiscoveredRedis, RedisUnavailable, discover_redis, redacted


def manage(*args: str, env: dict[str, str]) -> None:
    """Run ``manage.py`` with ``args``; exit with its status if it fails."""
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=False
    )
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup(env: dict[str, str]) -> int:
    env.setdefault("CHANNEL_LAYER", "memory")
    manage("migrate", "--noinput", env=env)
    manage("seed_demo", env=env)
    return 0


def run(env: dict[str, str], host: str, port: int, animate: float | None) -> int:
    redis: DiscoveredRedis | None = None
    if env.get("CHANNEL_LAYER", "redis") in ("redis", "pubsub"):
        try:
            redis = discover_redis(env)
        except RedisUnavailable as exc:
            print(f"booktime: {exc}", file=sys.stderr)
            return 1
        env["REDIS_URL"] = redis.url
        print(f"booktime: Redis at {redacted(redis.url)} ({redis.source})")
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        manage("migrate", "--noinput", env=env)
        commands = [
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                host,
                "-p",
                str(port),
                "booktime.asgi:application",
            ],
            [sys.executable, "manage.py", "publish_pending"],
            [sys.executable, "manage.py", "deliver"],  # webhooks, e-mail, push
        ]
        if animate:
            commands.append([sys.executable, "manage.py", "seed_demo", "--animate", str(animate)])
        for command in commands:
            children.append(subprocess.Popen(command, cwd=BASE_DIR, env=env))  # noqa: S603
        base = f"http://{host}:{port}"
        print(
            f"booktime: serving {base}/ — sign in as alice, bob or staff "
            "(password booktime-demo); Ctrl-C stops everything\n"
            f"  {base}/orders/    a customer's orders (alice or bob), live\n"
            f"  {base}/staff/     the staff dashboard with new-order alerts (staff)\n"
            f"  {base}/admin/     Django admin (staff)\n"
            f"  {base}/api/docs/  REST API docs (OpenAPI at /api/schema/)",
            flush=True,
        )
        if env.get("EMAIL_URL", "console:") == "console:":
            print("booktime: e-mail uses the console backend: the deliver worker prints each")
            print("  e-mail here instead of sending it (set EMAIL_URL to send; README)", flush=True)
        # Wake up on Ctrl-C or when any child dies (it would otherwise go unnoticed).
        while not stop.wait(0.5):
            exited = [c for c in children if c.poll() is not None]
            if exited:
                print(f"booktime: {exited[0].args[2:4]} exited ({exited[0].returncode}); stopping")
                return exited[0].returncode or 1
        return 0
    finally:
        stop_processes(children)
        if redis is not None:
            redis.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devtools.devserver", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="migrate and load the demo data")
    run_parser = sub.add_parser("run", help="run daphne, the publisher and (if needed) Redis")
    run_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    run_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run_parser.add_argument(
        "--animate",
        type=float,
        metavar="SECONDS",
        help="also move demo orders along every SECONDS, to watch live updates",
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
    env.setdefault("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "1")  # local test receivers
    env.setdefault("EMAIL_URL", "console:")  # e-mails printed by the deliver worker
    env["PYTHONUNBUFFERED"] = "1"
    if args.command == "setup":
        return setup(env)
    env.setdefault("SITE_URL", f"http://{args.host}:{args.port}")  # links in e-mails
    return run(env, args.host, args.port, args.animate)


if __name__ == "__main__":
    sys.exit(main())

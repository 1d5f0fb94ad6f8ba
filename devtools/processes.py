"""Process tooling shared by ``scripts/run``, the tests and ``bench/``.

Free ports, waiting on a condition with a timeout, stopping processes
(SIGTERM, then SIGKILL), and ``ChildProcess``: a server or worker run as a
child process with its output in a log file, that can be started (and
waited on until it is ready), stopped, killed and restarted. Two kinds of
child build on it: ``HttpServerProcess`` (an HTTP server on a listening
socket bound here and handed over) and ``ManageCommand`` (a ``manage.py``
worker such as ``publish_pending`` or ``deliver``).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Self

BASE_DIR = Path(__file__).resolve().parent.parent
# How long a child gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT_SECONDS = 10.0


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


def stop_processes(
    processes: Iterable[subprocess.Popen[bytes] | subprocess.Popen[str]],
    timeout: float = STOP_TIMEOUT_SECONDS,
    sig: int = signal.SIGTERM,
) -> None:
    """Send ``sig`` (SIGTERM) to every process still running, then wait for all of
    them; SIGKILL any not gone after ``timeout``."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(sig)
    for process in running:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of the log at ``path`` (``"(no log)"`` if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ChildProcess:
    """One server or worker process on 127.0.0.1, its output in ``log_path``.

    ``start()`` launches it and returns once ``ready()`` is true, raising
    with the log's tail if it exits first or takes longer than the timeout.
    ``stop()``, ``kill()`` and ``restart()`` act on the running process;
    ``close()`` also removes the log file unless the caller chose its path.
    Subclasses that serve something override ``command()`` and ``ready()``
    (and ``launch()`` to hand over a listening socket).

    Each child runs in a session of its own: a Ctrl-C in a terminal reaches
    the parent, whose clean-up stops it.
    """

    # What start() raises when the process exits before it is ready.
    StartError: type[Exception] = RuntimeError
    host = "127.0.0.1"
    port = 0
    START_TIMEOUT_SECONDS = 30.0

    def __init__(
        self,
        command: Sequence[str] = (),
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self._command = list(command)
        self.name = name
        self.env = dict(env or {})
        self._owns_log = log_path is None
        self.log_path = log_path or Path(
            tempfile.mkstemp(prefix=f"booktime-{name}-", suffix=".log")[1]
        )
        self.process: subprocess.Popen[bytes] | None = None

    # -- what runs ---------------------------------------------------------------

    def command(self) -> list[str]:
        """The argv to run."""
        return list(self._command)

    def environment(self) -> dict[str, str]:
        """The process environment: ours, overridden by ``env``."""
        return {**os.environ, **self.env}

    def ready(self) -> bool:
        """True once the process does its job (a server: answers); polled by ``start()``."""
        return True

    # -- lifecycle ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self, pass_fds: Sequence[int] = ()) -> None:
        """Start the process without waiting for it to be ready (see ``wait_ready``)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self.command(),
                cwd=BASE_DIR,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
                start_new_session=True,
            )

    def wait_ready(self, timeout: float | None = None) -> Self:
        """Return once ``ready()``; raise with the log's tail if the process dies or is slow."""
        timeout = self.START_TIMEOUT_SECONDS if timeout is None else timeout
        where = f"{self.name} on port {self.port}" if self.port else self.name
        try:
            wait_for(
                lambda: not self.running or self.ready(),
                timeout,
                f"{where} did not answer within {timeout} s",
            )
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}:\n{self.log_tail()}") from None
        if not self.running:
            status = self.process.returncode if self.process is not None else None
            self.process = None
            raise self.StartError(
                f"{where} exited at start-up (status {status}):\n{self.log_tail()}"
            )
        return self

    def start(self, timeout: float | None = None) -> Self:
        """Launch the process and return once it is ready (at once if it already runs)."""
        if self.running:
            return self
        self.launch()
        return self.wait_ready(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Graceful stop (SIGTERM), SIGKILL after ``timeout``; waits until it is gone."""
        process, self.process = self.process, None
        if process is not None:
            stop_processes([process], timeout)

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crash or an OOM kill would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> Self:
        """Stop, then start again (servers keep their port)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the process and remove its log file, unless the caller chose its path."""
        self.stop()
        if self._owns_log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = f" port {self.port}" if self.port else ""
        return f"<{type(self).__name__} {self.name}{where} {state}>"


class HttpAddress:
    """``url``, ``ws_url`` and ``origin`` of a server listening on ``host``:``port``."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """Base HTTP URL, no trailing slash: ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base WebSocket URL, no trailing slash: ``ws://127.0.0.1:PORT``."""
        return f"ws://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        """The ``Origin`` a page served by this server sends (passes the origin check)."""
        return self.url


class HttpServerProcess(HttpAddress, ChildProcess):
    """An HTTP server child on 127.0.0.1, listening on a socket bound here.

    ``launch()`` binds the port (``port=0``: a free one) and hands the
    listening socket to the child, whose ``command()`` names it with
    ``self.listen_fd``: the port is known before the child starts, no other
    process can take it in between, and ``restart()`` keeps it, so clients
    reconnect to the same URL. Ready once ``READY_PATH`` answers (any status).
    """

    READY_PATH = "/"

    def __init__(
        self,
        command: Sequence[str] = (),
        *,
        name: str,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(command, name=name, env=env, log_path=log_path)
        self.port = port
        self.listen_fd = -1  # the listening socket handed to the child (see launch)

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PYTHONUNBUFFERED": "1"}

    def launch(self, pass_fds: Sequence[int] = ()) -> None:
        """Bind the port, start the child on it (``wait_ready()`` waits until it answers)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(1024)
            self.port = listener.getsockname()[1]
            self.listen_fd = listener.fileno()
            super().launch(pass_fds=(*pass_fds, self.listen_fd))
        finally:
            # Only the child holds the socket now: when it dies, the port refuses.
            listener.close()

    def ready(self) -> bool:
        """True once the server answers ``GET READY_PATH`` (any status will do)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            connection.request("GET", self.READY_PATH)
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()


class ManageCommand(ChildProcess):
    """``python manage.py <command> <args>``: a long-running worker (``publish_pending``,
    ``deliver``). Ready once its start-up line (``"<command>:"``) is in its log."""

    def __init__(
        self,
        command: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        log_path: Path | None = None,
        ready_text: str | None = None,
    ) -> None:
        argv = [sys.executable, "manage.py", command, *args]
        super().__init__(argv, name=name or command, env=env, log_path=log_path)
        self.ready_text = f"{command}:" if ready_text is None else ready_text
        self._log_offset = 0  # where this run's output starts (the log is appended to)

    def environment(self) -> dict[str, str]:
        env = {**super().environment(), "PYTHONUNBUFFERED": "1"}
        env.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
        return env

    def launch(self, pass_fds: Sequence[int] = ()) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().launch(pass_fds)

    def ready(self) -> bool:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                head = log.read(64 * 1024)
        except OSError:
            return False
        return self.ready_text.encode() in head

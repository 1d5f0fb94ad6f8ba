"""The app (or another ASGI application) in a real daphne child process.

Process tooling shared by the tests (the ``daphne_server`` and
``start_daphne`` fixtures) and ``bench/`` (app and baseline servers), plus
``database_url_for``: the ``DATABASE_URL`` that points such a process at the
database this process uses.
"""

from __future__ import annotations

import http.client
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from devtools.processes import ChildProcess

APPLICATION = "booktime.asgi:application"
# Django set-up plus Twisted start-up takes 1-2 s here; a loaded CI box can be
# several times slower.
DAPHNE_START_TIMEOUT_SECONDS = 30.0


class DaphneServer(ChildProcess):
    """One ``daphne booktime.asgi:application`` process on 127.0.0.1.

    ``port=0`` lets the OS pick a free port; ``restart()`` reuses the port it
    got, so clients can reconnect to the same URL. ``application`` serves
    something else (the bench's baseline); ``log_path`` keeps the log where
    the caller wants it (else a temporary file that ``close()`` removes).
    """

    START_TIMEOUT_SECONDS = DAPHNE_START_TIMEOUT_SECONDS

    def __init__(
        self,
        env: Mapping[str, str],
        port: int = 0,
        name: str = "daphne",
        *,
        application: str = APPLICATION,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(name=name, env=env, log_path=log_path)
        self.port = port
        self.application = application
        self._fd = -1  # the listening socket handed to daphne (see launch)

    # -- addresses ---------------------------------------------------------------

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

    # -- the process -------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {**super().environment(), "PYTHONUNBUFFERED": "1"}
        env.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
        return env

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "daphne",
            "--fd", str(self._fd),
            "--verbosity", "1",
            self.application,
        ]  # fmt: skip

    def launch(self, pass_fds: Sequence[int] = ()) -> None:
        """Start daphne on a socket bound here (``wait_ready()`` waits until it answers).

        The listening socket is bound here and handed over with ``--fd``: the
        port is known before daphne starts and no other process can take it
        in between. (Daphne's own "Listening on" log line is swallowed once
        Django configures logging, so it cannot serve as the signal.)
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            self._fd = listener.fileno()
            super().launch(pass_fds=(*pass_fds, self._fd))
        finally:
            # Only daphne holds the socket now: when it dies, the port refuses.
            listener.close()

    def ready(self) -> bool:
        """True once the application answers a request (any status will do)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def __repr__(self) -> str:
        return f"<DaphneServer {self.name} {self.url} {'running' if self.running else 'stopped'}>"


def database_url_for(settings_dict: Mapping[str, Any], base_url: str | None = None) -> str:
    """A ``DATABASE_URL`` that points another process at the database Django is using.

    During tests ``settings_dict`` is the connection's (its ``NAME`` is the test
    database); ``base_url`` carries host, port, user and options.
    """
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine == "django.db.backends.sqlite3":
        if name == ":memory:" or name.startswith("file:"):
            raise ValueError("an in-memory SQLite database cannot be shared with a server process")
        return f"sqlite:///{name}"
    if engine == "django.db.backends.postgresql":
        if base_url:
            parts = urlsplit(base_url)
            return urlunsplit(parts._replace(path="/" + quote(name)))
        user = quote(settings_dict.get("USER") or "")
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(name)}"
    raise ValueError(f"cannot build a DATABASE_URL for engine {engine}")

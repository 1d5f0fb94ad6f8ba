"""The app (or another ASGI application) in a real daphne child process.

Process tooling shared by the tests (the ``daphne_server`` and
``start_daphne`` fixtures) and ``bench/`` (app and baseline servers), plus
``database_url_for``: the ``DATABASE_URL`` that points such a process at the
database this process uses.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from devtools.processes import HttpServerProcess

APPLICATION = "booktime.asgi:application"
# Django set-up plus Twisted start-up takes 1-2 s here; a loaded CI box can be
# several times slower.
DAPHNE_START_TIMEOUT_SECONDS = 30.0


class DaphneServer(HttpServerProcess):
    """One ``daphne booktime.asgi:application`` process on 127.0.0.1.

    ``port=0`` lets the OS pick a free port; ``restart()`` reuses the port it
    got, so clients can reconnect to the same URL. ``application`` serves
    something else (the bench's baseline); ``log_path`` keeps the log where
    the caller wants it (else a temporary file that ``close()`` removes).
    The listening socket is bound here and handed over with ``--fd``
    (``HttpServerProcess``): daphne's own "Listening on" log line is
    swallowed once Django configures logging, so it cannot serve as the
    signal; ready once the application answers ``GET /healthz``.
    """

    START_TIMEOUT_SECONDS = DAPHNE_START_TIMEOUT_SECONDS
    READY_PATH = "/healthz"

    def __init__(
        self,
        env: Mapping[str, str],
        port: int = 0,
        name: str = "daphne",
        *,
        application: str = APPLICATION,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(name=name, port=port, env=env, log_path=log_path)
        self.application = application

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
        return env

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "daphne",
            "--fd", str(self.listen_fd),
            "--verbosity", "1",
            self.application,
        ]  # fmt: skip

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

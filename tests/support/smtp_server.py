"""A real SMTP server process for the e-mail tests (aiosmtpd), recording every message.

Run as ``python -m tests.support.smtp_server --port P --dir D``: each accepted
message is written to ``D`` as ``<time_ns>-<n>.eml`` (the raw bytes the
client sent, written to a temporary name and renamed, so a reader never sees
half a file). While a file ``D/HOLD`` exists, the server records a message
and then waits before answering ``250``: a client killed in that wait has
handed the message over but never learnt that it was accepted.

``SmtpServer`` runs it as a ``devtools.processes.ChildProcess``.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import itertools
import socket
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from devtools.processes import ChildProcess, free_port


class Recorder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counter = itertools.count()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        name = f"{time.time_ns()}-{next(self.counter):06d}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.directory / name)
        while (self.directory / "HOLD").exists():
            await asyncio.sleep(0.02)
        return "250 Message accepted for delivery"


async def serve(port: int, directory: Path) -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    recorder = Recorder(directory)
    server = await loop.create_server(
        lambda: SMTP(recorder, hostname="smtp.test", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=port,
        reuse_address=True,
    )
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="record SMTP messages to a directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.port, args.dir))
    return 0


class SmtpServer(ChildProcess):
    """The recording SMTP server on 127.0.0.1; ``restart()`` keeps the port and the messages."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(name="smtp")
        self.directory = directory
        self.port = port or free_port(self.host)

    @property
    def url(self) -> str:
        """``EMAIL_URL`` for this server."""
        return f"smtp://{self.host}:{self.port}/?timeout=5"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.support.smtp_server",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
        ]

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"220")
        except OSError:
            return False

    def hold(self, on: bool) -> None:
        """While on, accepted messages are recorded but not yet answered."""
        path = self.directory / "HOLD"
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def messages(self) -> list[EmailMessage]:
        """Every message received so far, oldest first."""
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in sorted(self.directory.glob("*.eml"))
        ]


if __name__ == "__main__":
    sys.exit(main())

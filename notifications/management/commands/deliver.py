"""``manage.py deliver``: the worker for every outbound channel (webhooks today).

Long-running; woken right after each commit through the channel layer and
scanning every ``WEBHOOKS_POLL_MS`` anyway, so it keeps working without
Redis. Several may run against PostgreSQL (they share the work); run one on
SQLite. ``--once`` delivers what is due and exits.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from notifications.outbound.base import channel_classes
from notifications.outbound.worker import Worker


class Command(BaseCommand):
    help = "Deliver webhooks (and later e-mail, push) from the database (long-running)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="deliver what is due, then exit")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.WEBHOOKS_CONCURRENCY,
            help="jobs (endpoints) in flight at once",
        )

    def handle(self, *args: Any, once: bool, concurrency: int, **options: Any) -> None:
        asyncio.run(self.main(once, max(concurrency, 1)))

    async def main(self, once: bool, concurrency: int) -> None:
        worker = Worker(
            [cls() for cls in channel_classes()],
            concurrency=concurrency,
            poll_seconds=settings.WEBHOOKS_POLL_MS / 1000,
            listen=not once,
        )
        if once:
            for channel in worker.channels:
                await channel.start()
            try:
                await worker.drain()
            finally:
                for channel in worker.channels:
                    await channel.close()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write(f"deliver: {', '.join(c.name for c in worker.channels)} (Ctrl-C to stop)")
        self.stdout.flush()
        await worker.run(stop)

"""Publish order events that the on-commit fast path did not get out.

Events stay unpublished when Redis was unreachable at commit time or the
process died between commit and publish. This long-running worker sends them,
oldest first, within about a second of Redis answering again.

Run one per deployment; several are safe (an event may then be sent twice and
clients drop duplicates by id). ``--once`` publishes what is pending and exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from notifications.publish import MAX_BATCH, publish_pending

logger = logging.getLogger("notifications.publisher")


class Command(BaseCommand):
    help = "Publish unpublished order events to the channel layer (long-running)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between scans")
        parser.add_argument(
            "--once", action="store_true", help="publish what is pending, then exit"
        )

    def handle(self, *args: Any, interval: float, once: bool, **options: Any) -> None:
        if once:
            total = self.drain()
            self.stdout.write(f"published {total} pending event(s)")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"publish_pending: scanning every {interval}s (Ctrl-C to stop)")
        while not stop.is_set():
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - database hiccup: log, keep running
                logger.exception("publish_pending scan failed; retrying")
            finally:
                close_old_connections()
            stop.wait(interval)

    @staticmethod
    def drain() -> int:
        """Publish pending events batch by batch until none are left or the layer fails."""
        total = 0
        while True:
            sent = publish_pending(limit=MAX_BATCH)
            total += sent
            if sent < MAX_BATCH:
                return total

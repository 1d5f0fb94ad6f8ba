"""``manage.py prune_events [--keep-days N] [--batch-size B]``: bound the event log.

Deletes events older than N days (default ``EVENT_RETENTION_DAYS``; 0 keeps
none) in batches, never one still unpublished or still owed to an enabled
webhook endpoint, and moves the log's horizon: a cursor below it is answered
with ``reset``. The rules are ``notifications.retention``'s. Run it daily
(README: "Deploying").
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.retention import DEFAULT_BATCH_SIZE, prune_events


class Command(BaseCommand):
    help = (
        "Delete events older than --keep-days (default EVENT_RETENTION_DAYS) from the "
        "event log, in batches, and move its horizon (older cursors get a reset)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--keep-days",
            type=int,
            default=None,
            help="Keep events this many days old or newer (0 keeps none). "
            "Default: EVENT_RETENTION_DAYS.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows deleted per transaction (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        keep_days = options["keep_days"]
        if keep_days is None:
            keep_days = settings.EVENT_RETENTION_DAYS
        if keep_days < 0:
            raise CommandError("--keep-days must be 0 or more")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be 1 or more")
        result = prune_events(keep_days, options["batch_size"])
        message = (
            f"Deleted {result.deleted} events; the log now starts after event "
            f"#{result.through} (kept: the last {keep_days} days"
        )
        if result.held_by:
            message += f", and from the oldest event held by {result.held_by}"
        self.stdout.write(message + ").")

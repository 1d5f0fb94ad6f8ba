"""What a delivery channel provides to the ``deliver`` worker.

One subclass per channel (like healthchecks' ``hc/api/transports.py``). The
channel keeps its own work as database rows; the worker only asks it, in a
loop, to ``prepare`` (create rows it may have missed), ``claim`` up to a
number of jobs no other worker will take, and ``deliver`` each job, running
at most the configured number of jobs at a time. A job is whatever the
channel leases: for webhooks one endpoint, whose events go out in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar


class OutboundChannel(ABC):
    name: ClassVar[str]

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open long-lived resources (HTTP clients, SMTP connections)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release them."""

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Create work the fast path may have missed (runs before each claim)."""

    @abstractmethod
    async def claim(self, limit: int) -> list[Any]:
        """Lease up to ``limit`` jobs to this worker."""

    @abstractmethod
    async def deliver(self, job: Any) -> None:
        """Do one job and record its outcome; give its lease back when done."""


def channel_classes() -> list[type[OutboundChannel]]:
    """Every channel the worker runs."""
    from notifications.email.channel import EmailChannel
    from notifications.push.channel import PushChannel
    from notifications.webhooks.channel import WebhookChannel

    return [WebhookChannel, EmailChannel, PushChannel]

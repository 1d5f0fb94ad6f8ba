"""The ``deliver`` worker loop: claim jobs from each channel, run them with bounded concurrency.

It runs a scan when woken (a commit, or one of its own jobs finishing) and
at least every ``poll_seconds`` otherwise. Several workers can run against
PostgreSQL: channels claim with ``SKIP LOCKED`` leases, so they share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from notifications.outbound import wakeup
from notifications.outbound.base import OutboundChannel

logger = logging.getLogger("notifications.deliver")


class Worker:
    def __init__(
        self,
        channels: list[OutboundChannel],
        concurrency: int,
        poll_seconds: float,
        listen: bool = True,
    ) -> None:
        self.channels = channels
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.listen = listen
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def scan(self) -> int:
        """One pass over every channel; returns how many jobs it started."""
        started = 0
        for channel in self.channels:
            free = self.concurrency - len(self._running)
            if free <= 0:
                break
            try:
                await channel.prepare()
                jobs = await channel.claim(free)
            except Exception:  # noqa: BLE001 - database hiccup: log, next scan retries
                logger.exception("%s: scan failed", channel.name)
                continue
            for job in jobs:
                task = asyncio.create_task(self._run(channel, job))
                self._running.add(task)
                started += 1
        return started

    async def _run(self, channel: OutboundChannel, job: object) -> None:
        try:
            await channel.deliver(job)
        except Exception:  # noqa: BLE001 - the lease runs out and another scan retries
            logger.exception("%s: job %r failed", channel.name, job)
        finally:
            self._running.discard(asyncio.current_task())  # type: ignore[arg-type]
            self.wake()  # a slot is free, and the job's endpoint may have more

    async def drain(self) -> None:
        """Scan until nothing is due and no job runs (``deliver --once``, tests)."""
        while True:
            await self.scan()
            if not self._running:
                return
            await asyncio.wait(set(self._running))

    async def run(self, stop: asyncio.Event) -> None:
        for channel in self.channels:
            await channel.start()
        listener = asyncio.create_task(wakeup.listen(self.wake, stop)) if self.listen else None
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                await self.scan()
                waker = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {waker, stopper}, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                waker.cancel()
        finally:
            stopper.cancel()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if self._running:
                await asyncio.wait(set(self._running), timeout=30)
            for channel in self.channels:
                await channel.close()

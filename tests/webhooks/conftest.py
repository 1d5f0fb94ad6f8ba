"""Fixtures for the webhook tests (helpers are in ``tests.support.webhooks``).

- ``start_receiver(port=0, status=200)``: a real receiver process
  (``devtools.webhook_receiver``); ``stop()`` / ``start()`` / ``restart()``
  keep its port.
- ``start_deliver(**env)``: ``manage.py deliver`` (``start_worker``) with
  ``FAST_RETRIES``, on this run's test database and channel layer.
- ``webhook_settings``: the same settings for the engine run in-process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.processes import ManageCommand
from devtools.webhook_receiver import WebhookReceiver
from tests.support.webhooks import FAST_RETRIES


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    started: list[WebhookReceiver] = []

    def start(port: int = 0, status: int = 200) -> WebhookReceiver:
        receiver = WebhookReceiver(port, status)
        started.append(receiver)
        return receiver.start()

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture
def start_deliver(start_worker: Callable[..., ManageCommand]) -> Callable[..., ManageCommand]:
    """Factory: ``start_deliver(**env)`` runs ``manage.py deliver`` (``FAST_RETRIES`` + env)."""

    def start(**env: str) -> ManageCommand:
        return start_worker("deliver", **{**FAST_RETRIES, **env})

    return start


@pytest.fixture
def webhook_settings(settings: Any) -> Any:
    """This process's settings as ``FAST_RETRIES`` gives them to the worker process."""
    for name, value in FAST_RETRIES.items():
        setattr(settings, name, int(value))
    settings.WEBHOOKS_ALLOW_HTTP = True
    return settings

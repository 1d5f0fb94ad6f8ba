"""Fixtures for the e-mail and push tests: the SMTP server, the push service, the worker.

Imported by ``tests/email/conftest.py`` and ``tests/push/conftest.py``.

- ``smtp_server``: a real SMTP server process (``tests/support/smtp_server.py``)
  recording messages to a directory; ``stop()`` / ``start()`` keep the port.
- ``push_service``: a local Web Push service process
  (``tests/support/push_service.py``) that checks VAPID and decrypts payloads.
- ``vapid_keys``: a key pair for the run (``manage.py create_vapid_keys``'s).
- ``outbound_settings``: this process's settings as ``start_deliver_worker``
  gives them to the worker: no folding wait, fast retries, links to
  ``SITE_URL``, VAPID keys; e-mail to the ``smtp_server`` if the test uses one.
- ``start_deliver_worker(**env)``: ``manage.py deliver`` as a child process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.processes import ManageCommand
from notifications.management.commands.create_vapid_keys import new_vapid_keys
from tests.support.push_service import PushService
from tests.support.smtp_server import SmtpServer

SITE_URL = "http://testserver.local"
FAST = {
    "WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "1",
    "WEBHOOKS_ALLOW_HTTP": "1",
    "WEBHOOKS_RETRY_BASE_MS": "100",
    "WEBHOOKS_RETRY_MAX_MS": "500",
    "WEBHOOKS_POLL_MS": "200",
    "EMAIL_FOLD_SECONDS": "0",
    "SHOP_NAME": "Bookshop Test",
    "DEFAULT_FROM_EMAIL": "orders@bookshop.test",
}


@pytest.fixture(scope="session")
def vapid_keys() -> dict[str, str]:
    public, private = new_vapid_keys()
    return {
        "VAPID_PUBLIC_KEY": public,
        "VAPID_PRIVATE_KEY": private,
        "VAPID_SUBJECT": "mailto:ops@bookshop.test",
    }


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path / "mail").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def push_service(tmp_path: Path, vapid_keys: dict[str, str]) -> Iterator[PushService]:
    service = PushService(tmp_path / "push", vapid_keys["VAPID_PUBLIC_KEY"]).start()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def outbound_env(vapid_keys: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """What the worker process gets on top of ``daphne_env`` (and this process's settings)."""
    env = {**FAST, **vapid_keys, "SITE_URL": SITE_URL, "EMAIL_URL": "locmem:"}
    if "smtp_server" in request.fixturenames:
        env["EMAIL_URL"] = request.getfixturevalue("smtp_server").url
    if "daphne_server" in request.fixturenames:
        env["SITE_URL"] = request.getfixturevalue("daphne_server").url.rstrip("/")
    return env


@pytest.fixture
def outbound_settings(settings: Any, outbound_env: dict[str, str]) -> Any:
    from booktime.email_url import parse_email_url

    for name, value in outbound_env.items():
        setattr(settings, name, int(value) if value.isdigit() else value)
    for name, value in parse_email_url(outbound_env["EMAIL_URL"]).items():
        setattr(settings, name, value)
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    return settings


@pytest.fixture
def start_deliver_worker(
    start_worker: Callable[..., ManageCommand], outbound_env: dict[str, str]
) -> Callable[..., ManageCommand]:
    """Factory: ``start_deliver_worker(**env)`` runs ``manage.py deliver`` with the
    outbound settings (``start_worker``: stopped, its output shown, at the end)."""

    def start(**env: str) -> ManageCommand:
        return start_worker("deliver", **{**outbound_env, "LOG_LEVEL": "INFO", **env})

    return start

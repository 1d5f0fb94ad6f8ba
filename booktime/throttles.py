"""Failure limits: sign-in attempts and bad credentials, counted in the shared cache.

Three counters, each in fixed windows of ``AUTH_FAILURE_WINDOW_SECONDS``:

- ``LOGIN_USERNAME``: failed sign-ins (frontend and admin) per username;
- ``LOGIN_ADDRESS``: failed sign-ins per client address;
- ``AUTH_ADDRESS``: failed credentials per client address: an unknown or
  inactive API token (REST and streams), a tracking link that does not verify.

Past its limit a counter refuses further attempts until its window ends
(``wait`` gives the seconds, for ``Retry-After``), *before* the credentials
are checked. Successes are not counted. The client address is
``booktime.clientip.client_address``'s; counters live in Django's cache,
Redis by default (booktime/settings.py), so they hold across processes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailureLimit:
    """A failure counter: ``name`` in cache keys and logs, its limit from ``setting``."""

    name: str
    setting: str

    @property
    def limit(self) -> int:
        return int(getattr(settings, self.setting))

    @staticmethod
    def window() -> int:
        return int(settings.AUTH_FAILURE_WINDOW_SECONDS)

    def _key(self, ident: str, now: float) -> tuple[str, float]:
        """(cache key of the current window, seconds until the window ends)."""
        window = self.window()
        index = int(now // window)
        digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"fail:{self.name}:{digest}:{index}", (index + 1) * window - now

    def wait(self, ident: str) -> int:
        """Seconds ``ident`` must wait before trying again; 0: it may try now."""
        now = time.time()
        key, remaining = self._key(ident, now)
        count = cache.get(key, 0)
        if isinstance(count, int) and count >= self.limit:
            return max(1, math.ceil(remaining))
        return 0

    def fail(self, ident: str) -> None:
        """Count one failure of ``ident`` (logged when it reaches the limit)."""
        key, remaining = self._key(ident, time.time())
        timeout = math.ceil(remaining) + 1
        cache.add(key, 0, timeout=timeout)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: a new window
            cache.add(key, 1, timeout=timeout)
            count = 1
        if count == self.limit:
            logger.warning("Failure limit %s reached (%s failures)", self.name, count)


LOGIN_USERNAME = FailureLimit("login-user", "LOGIN_FAILURES_PER_USERNAME")
LOGIN_ADDRESS = FailureLimit("login-addr", "LOGIN_FAILURES_PER_ADDRESS")
AUTH_ADDRESS = FailureLimit("auth-addr", "AUTH_FAILURES_PER_ADDRESS")


def login_wait(username: str, address: str) -> int:
    """Seconds before another sign-in attempt for ``username`` from ``address``; 0: now."""
    return max(LOGIN_USERNAME.wait(username.casefold()), LOGIN_ADDRESS.wait(address))


def login_failed(username: str, address: str) -> None:
    LOGIN_USERNAME.fail(username.casefold())
    LOGIN_ADDRESS.fail(address)
    logger.info("Sign-in failed from %s", address)

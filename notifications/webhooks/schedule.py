"""When a failing endpoint is tried again, and when it is given up on.

After the n-th consecutive failure the next attempt waits
``base * 2**(n-1)`` capped at ``max``, times a random factor in [0.8, 1.2]
(jitter, so endpoints that failed together do not retry together). With the
defaults (10 s base, 6 h cap) that is 10 s, 20 s, 40 s, ... 5.7 h (about
11 h in all after 12 failures), then every ~6 h. The endpoint is disabled
at the first failure once it has been failing without a success for
``WEBHOOKS_DISABLE_AFTER_SECONDS`` (3 days): about 22 attempts.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.conf import settings

JITTER = 0.2


def retry_delay(failures: int, rng: random.Random | None = None) -> timedelta:
    """Delay before the next attempt after ``failures`` consecutive failures (>= 1)."""
    base = settings.WEBHOOKS_RETRY_BASE_MS
    delay = min(base * 2 ** min(max(failures, 1) - 1, 40), settings.WEBHOOKS_RETRY_MAX_MS)
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    return timedelta(milliseconds=delay * factor)


def gives_up(failing_since: datetime, now: datetime) -> bool:
    """True once an endpoint has failed for the whole window without a success."""
    return now - failing_since >= timedelta(seconds=settings.WEBHOOKS_DISABLE_AFTER_SECONDS)


def nominal_schedule(window_seconds: float | None = None) -> list[float]:
    """Seconds after the first failure of each retry (no jitter), up to the window."""
    window = window_seconds or settings.WEBHOOKS_DISABLE_AFTER_SECONDS
    base, cap = settings.WEBHOOKS_RETRY_BASE_MS / 1000, settings.WEBHOOKS_RETRY_MAX_MS / 1000
    out, elapsed, n = [], 0.0, 1
    while True:
        elapsed += min(base * 2 ** min(n - 1, 40), cap)
        if elapsed > window:
            return out
        out.append(elapsed)
        n += 1

"""Django's Redis cache, made safe to share Redis with the channel layer and to lose.

The cache holds throttle and sign-in counters only (``CACHES`` in
booktime/settings.py). Two changes to ``django.core.cache.backends.redis.RedisCache``:

- **Fail open.** While Redis does not answer, reads answer "not cached" and
  writes are dropped (logged once per outage): limits pause, but no request
  fails and no save is refused because Redis is down.
- **``clear()`` deletes this cache's keys only** (those under its
  ``KEY_PREFIX``), never ``FLUSHDB``: the same Redis holds the channel layer's
  groups and, in tests, other runs' keys.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _fail_open(fallback: Any) -> Callable[[F], F]:
    """Run the cache operation; on a Redis error log (once per outage) and return ``fallback``."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: FailOpenRedisCache, *args: Any, **kwargs: Any) -> Any:
            try:
                result = method(self, *args, **kwargs)
            except (RedisError, OSError) as exc:
                if not self.failing:
                    self.failing = True
                    logger.warning("Cache unavailable (limits paused): %s", exc)
                value = fallback(*args, **kwargs) if callable(fallback) else fallback
                return value
            if self.failing:
                self.failing = False
                logger.warning("Cache available again")
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _default(key: Any, default: Any = None, *args: Any, **kwargs: Any) -> Any:
    return kwargs.get("default", default)


class FailOpenRedisCache(RedisCache):
    """``RedisCache`` that keeps serving without Redis and clears only its own keys."""

    failing = False

    get = _fail_open(_default)(RedisCache.get)
    add = _fail_open(False)(RedisCache.add)
    set = _fail_open(None)(RedisCache.set)
    touch = _fail_open(False)(RedisCache.touch)
    delete = _fail_open(False)(RedisCache.delete)
    get_many = _fail_open(lambda *a, **k: {})(RedisCache.get_many)
    has_key = _fail_open(False)(RedisCache.has_key)
    set_many = _fail_open(lambda *a, **k: [])(RedisCache.set_many)
    delete_many = _fail_open(None)(RedisCache.delete_many)

    @_fail_open(lambda *a, **k: 0)
    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return super().incr(key, delta, version)

    @_fail_open(False)
    def clear(self) -> bool:
        """Delete the keys under this cache's prefix (not the whole Redis database)."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.key_prefix) + ":*"
        client = self._cache.get_client(None, write=True)
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return True

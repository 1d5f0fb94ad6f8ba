"""The pytest plugin: shared fixtures and run-wide set-up (root ``conftest.py`` loads it).

Run-wide (``pytest_configure``):

- Redis: ``REDIS_URL`` if set, else the local 6379, else a private
  redis-server this run starts and stops (``devtools.redis_server``). Skipped
  while ``CHANNEL_LAYER=memory`` until a test asks for ``redis_url``.
- A per-run channel-layer key prefix, so parallel runs (and a developer's
  ``scripts/run`` on the same Redis) never see each other's groups; its keys
  are deleted after every test and at the end of the run.
- Both are written to ``settings`` and ``os.environ``, so daphne processes
  started by the tests use the same Redis and prefix.
- A test database of the run's own on PostgreSQL too (SQLite's is per
  process already), so concurrent runs on one server do not collide.
- Tests marked ``postgres`` are deselected (with a note) unless
  ``DATABASE_URL`` points at PostgreSQL; ``.ci/run`` runs them there.

Fixtures, by what a test needs:

- people and data: ``alice``, ``bob`` (customers), ``staff_user``,
  ``products``, ``make_order`` (an order in any status, via the real actions),
  ``login_cookies`` (session cookie for a user, for live clients),
  ``api_as`` (a REST API client acting as a user, by session or token);
- servers: ``daphne_server`` (one shared daphne, transactional DB),
  ``start_daphne`` (private daphne processes, e.g. two for scale-out, or one to
  kill), ``start_worker`` (a ``manage.py`` worker: ``start_publisher`` for
  ``publish_pending``; the webhook tests' ``start_deliver``), ``private_redis``
  (a redis-server the test may stop or restart),
  ``layer_on_private_redis`` (the same, with this process's layer on it),
  ``redis_url``, ``channel_layer_prefix``, ``test_database_url``.

Async tests: the factories touch the database synchronously; call them with
``sync_to_async`` (``await sync_to_async(make_order)(alice, "shipped")``) or
request the data as fixtures. Live tests need ``django_db(transaction=True)``
(``daphne_server`` and ``start_daphne`` request ``transactional_db``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from devtools.daphne import DaphneServer, database_url_for
from devtools.processes import ManageCommand
from devtools.redis_server import DiscoveredRedis, RedisServer, discover_redis, redacted

_redis_key = pytest.StashKey[DiscoveredRedis]()
_prefix_key = pytest.StashKey[str]()

PASSWORD = "correct-horse-battery-staple"
SHIPPING = {
    "shipping_name": "Alice Example",
    "shipping_address": "1 Test Street",
    "shipping_city": "London",
    "shipping_postcode": "N1 1AA",
    "shipping_country": "GB",
}


# -- run-wide set-up -------------------------------------------------------------


def _layer_uses_redis() -> bool:
    from django.conf import settings

    return settings.CHANNEL_LAYER in ("redis", "pubsub")


def _point_channel_layer_at(redis_url: str | None, prefix: str) -> None:
    """Make this process and its children use ``redis_url`` and ``prefix``."""
    from django.conf import settings

    os.environ["CHANNEL_LAYER_PREFIX"] = prefix
    settings.CHANNEL_LAYER_PREFIX = prefix
    # The cache's keys live under the run's prefix too (deleted with it).
    os.environ["CACHE_KEY_PREFIX"] = f"{prefix}cache"
    cache_config = settings.CACHES["default"]
    if "KEY_PREFIX" in cache_config or "LOCATION" in cache_config:
        cache_config["KEY_PREFIX"] = f"{prefix}cache"
        if redis_url is not None:
            cache_config["LOCATION"] = redis_url
    config = settings.CHANNEL_LAYERS["default"].setdefault("CONFIG", {})
    if settings.CHANNEL_LAYER in ("redis", "pubsub"):
        config["prefix"] = prefix
    if redis_url is not None:
        os.environ["REDIS_URL"] = redis_url
        settings.REDIS_URL = redis_url
        if "hosts" in config:
            config["hosts"] = [with_address(host, redis_url) for host in config["hosts"]]
    _point_cache_at(redis_url, prefix)
    _forget_channel_layer()


def _point_cache_at(redis_url: str | None, prefix: str) -> None:
    """The throttle cache under the run's prefix too (its keys go with the layer's).

    A LocMem cache (``CHANNEL_LAYER=memory`` without ``REDIS_URL``) stays as
    it is in this process; daphne children derive the prefix themselves.
    """
    from django.conf import settings
    from django.test.signals import clear_cache_handlers

    cache_prefix = f"{prefix}:cache"
    os.environ["CACHE_KEY_PREFIX"] = cache_prefix
    settings.CACHE_KEY_PREFIX = cache_prefix
    cache = settings.CACHES["default"]
    if cache["BACKEND"].endswith("RedisCache"):
        cache["KEY_PREFIX"] = cache_prefix
        if redis_url is not None:
            cache["LOCATION"] = redis_url
        clear_cache_handlers(setting="CACHES")


def with_address(host: Any, url: str) -> Any:
    """A layer host entry pointed at ``url``, keeping its options (timeouts)."""
    return {**host, "address": url} if isinstance(host, dict) else url


def _forget_channel_layer() -> None:
    """Drop the cached layer instance; the next ``get_channel_layer()`` builds a fresh one."""
    from channels.layers import channel_layers

    channel_layers.backends.pop("default", None)


def _ensure_redis(config: pytest.Config) -> DiscoveredRedis:
    found = config.stash.get(_redis_key, None)
    if found is None:
        found = discover_redis()
        config.stash[_redis_key] = found
        _point_channel_layer_at(found.url, config.stash[_prefix_key])
    return found


def delete_prefixed_keys(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (groups, channel queues) on ``redis_url``."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


def clear_cache() -> None:
    """Empty Django's cache: only this run's keys (RedisCache.clear() would flush
    the whole Redis database, other runs' keys included)."""
    from django.conf import settings
    from django.core.cache import cache, caches

    config = settings.CACHES["default"]
    if "REDIS" in config["BACKEND"].upper():
        caches["default"].close()
        delete_prefixed_keys(config["LOCATION"], config["KEY_PREFIX"])
    else:
        cache.clear()


def pytest_configure(config: pytest.Config) -> None:
    # Letters, digits and dashes only: safe in a SCAN pattern and in group names.
    prefix = f"bt-test-{os.getpid()}-{secrets.token_hex(4)}-"
    config.stash[_prefix_key] = prefix
    _point_channel_layer_at(None, prefix)
    _private_postgres_test_database()
    if _layer_uses_redis():
        _ensure_redis(config)


def _private_postgres_test_database() -> None:
    """Give this run a PostgreSQL test database of its own (``test_<db>_<pid>``).

    Otherwise concurrent runs on one server (two CI jobs, or a developer and
    CI) would all use ``test_<db>`` and drop it from under each other.
    SQLite gets the same per-process name in settings.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    test = database.setdefault("TEST", {})
    if database["ENGINE"] == "django.db.backends.postgresql" and not test.get("NAME"):
        test["NAME"] = f"test_{database['NAME']}_{os.getpid()}"[:63]


def pytest_unconfigure(config: pytest.Config) -> None:
    _remove_sqlite_side_files()
    found = config.stash.get(_redis_key, None)
    if found is None:
        return
    try:
        if found.server is None:  # a shared Redis: leave nothing behind in it
            delete_prefixed_keys(found.url, config.stash[_prefix_key])
    finally:
        found.close()


def _remove_sqlite_side_files() -> None:
    """Delete the WAL/SHM files of this run's SQLite test database once it is gone.

    pytest-django deletes the database file only; in WAL mode its ``-wal`` and
    ``-shm`` companions would pile up in the project directory run after run.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    name = (database.get("TEST") or {}).get("NAME")
    if database["ENGINE"] != "django.db.backends.sqlite3" or not name:
        return
    if not os.path.exists(name):
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{name}{suffix}")


def pytest_report_header(config: pytest.Config) -> list[str]:
    found = config.stash.get(_redis_key, None)
    where = f"{redacted(found.url)} ({found.source})" if found else "not started yet"
    return [f"booktime: redis {where}, channel-layer prefix {config.stash[_prefix_key]}"]


def _deselect_topology_unless_asked(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``topology`` run only when selected (``-m topology``): scripts/test
    runs them as a step of their own, after the main passes."""
    if "topology" in (config.option.markexpr or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("topology")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("topology")]


def _database_is_postgres() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_topology_unless_asked(config, items)
    if _database_is_postgres():
        return
    selected, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("postgres") else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"booktime: {len(deselected)} postgres test(s) deselected; run them with "
                "DATABASE_URL=postgres://... (.ci/run does)",
                yellow=True,
            )


# -- channel layer and Redis -------------------------------------------------------


@pytest.fixture(scope="session")
def channel_layer_prefix(pytestconfig: pytest.Config) -> str:
    """This run's channel-layer key prefix (also in ``settings`` and the environment)."""
    return pytestconfig.stash[_prefix_key]


@pytest.fixture(scope="session")
def redis_url(pytestconfig: pytest.Config) -> str:
    """URL of the Redis this run uses (found or started; see the module docstring)."""
    return _ensure_redis(pytestconfig).url


@pytest.fixture(autouse=True)
def _fresh_channel_layer(pytestconfig: pytest.Config) -> Iterator[None]:
    """Each test starts with an empty channel layer.

    Order ids repeat across tests (tables are flushed), so group names do
    too: a membership left behind by one test would deliver to a dead
    channel in the next. Deleting the run's keys also resets the groups of
    the shared daphne process, which lives in the same Redis.
    """
    yield
    _forget_channel_layer()
    found = pytestconfig.stash.get(_redis_key, None)
    if found is not None:
        delete_prefixed_keys(found.url, pytestconfig.stash[_prefix_key])


@pytest.fixture(autouse=True)
def _close_executor_thread_connections() -> Iterator[None]:
    """Close the database connection ``sync_to_async`` opened for an async test.

    Async tests run their ``sync_to_async`` calls on asgiref's one shared
    executor thread, whose connection Django never closes: on PostgreSQL it
    would keep the test database from being dropped at the end of the run.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture
def memory_layer(settings: Any) -> Iterator[None]:
    """The in-memory channel layer, for fast tests through the ASGI app
    (communicators); live tests use real Redis."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CHANNEL_LAYER = "memory"
    yield


# The project's layer backends by ``CHANNEL_LAYER`` (booktime/settings.py).
LAYER_BACKENDS = {
    "redis": "notifications.layers.BlockingPoolRedisChannelLayer",
    "pubsub": "notifications.layers.InboxPubSubChannelLayer",
}


def use_redis_layer(
    settings: Any,
    address: str,
    prefix: str,
    *,
    kind: str = "redis",
    backend: str | None = None,
    host: dict[str, Any] | None = None,
    **config: Any,
) -> None:
    """Put this process (what it publishes, and its test code) on the
    ``kind`` layer (``CHANNEL_LAYER``: ``redis`` or ``pubsub``) at
    ``address``, as servers started with that ``CHANNEL_LAYER``; ``backend``
    another class, ``host`` connection options, ``config`` layer options
    (``capacity``...)."""
    settings.CHANNEL_LAYER = kind
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": backend or LAYER_BACKENDS[kind],
            "CONFIG": {
                "hosts": [{"address": address, **(host or {})}],
                "prefix": prefix,
                **config,
            },
        }
    }


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, on a free port; stop, kill or restart it freely.

    Only the test's own code uses it; ``layer_on_private_redis`` also points
    this process's channel layer at it. Pass ``REDIS_URL=private_redis.url``
    to ``start_daphne`` for servers that should use it.
    """
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()
        _forget_channel_layer()


@pytest.fixture
def layer_on_private_redis(private_redis: RedisServer, settings: Any) -> RedisServer:
    """``private_redis``, with this process's channel layer (publishing included) on it.

    For outage tests: ``layer_on_private_redis.stop()`` / ``.restart()``
    take the layer down and back without touching the shared Redis.
    """
    import copy

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "hosts" not in layers["default"].get("CONFIG", {}):
        pytest.fail("layer_on_private_redis needs CHANNEL_LAYER=redis or pubsub")
    config = layers["default"]["CONFIG"]
    config["hosts"] = [with_address(host, private_redis.url) for host in config["hosts"]]
    settings.CHANNEL_LAYERS = layers  # channels drops its cached layer on this change
    settings.REDIS_URL = private_redis.url
    return private_redis


# -- database for other processes --------------------------------------------------


@pytest.fixture(scope="session")
def test_database_url(django_db_setup: None) -> str:
    """``DATABASE_URL`` of the test database, for server processes the tests start."""
    from django.db import connection

    return database_url_for(connection.settings_dict, os.environ.get("DATABASE_URL"))


@pytest.fixture(scope="session")
def daphne_env(test_database_url: str, pytestconfig: pytest.Config) -> dict[str, str]:
    """Environment for a daphne process serving this run's test database and layer."""
    from django.conf import settings

    env = {
        "DJANGO_SETTINGS_MODULE": "booktime.settings",
        "DATABASE_URL": test_database_url,
        "CHANNEL_LAYER": settings.CHANNEL_LAYER,
        "CHANNEL_LAYER_PREFIX": pytestconfig.stash[_prefix_key],
        "SECRET_KEY": settings.SECRET_KEY,  # sessions/tracking tokens made here must verify there
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        # With DEBUG=0 the default is smtp://localhost:25: a deliver worker
        # would retry it and log "connection refused". Tests that send mail
        # set their own (tests/support/outbound.py).
        "EMAIL_URL": "dummy:",
    }
    if _layer_uses_redis():
        env["REDIS_URL"] = _ensure_redis(pytestconfig).url
    return env


# -- servers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _session_daphne(daphne_env: dict[str, str]) -> Iterator[DaphneServer]:
    server = DaphneServer(daphne_env, name="daphne-shared").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def daphne_server(_session_daphne: DaphneServer, transactional_db: None) -> DaphneServer:
    """The run's shared daphne process (started once), with a transactional test DB.

    Do not stop or restart it; use ``start_daphne`` for a server of your own.
    """
    if not _session_daphne.running:
        _session_daphne.start()  # an earlier test broke the rule: recover for the next ones
    return _session_daphne


@pytest.fixture
def start_daphne(
    daphne_env: dict[str, str], transactional_db: None
) -> Iterator[Callable[..., DaphneServer]]:
    """Factory: ``start_daphne(name="a", REDIS_URL=..., **env)`` starts a private daphne.

    Every server it started is stopped when the test ends; a failing test
    prints each server's log tail (pytest shows captured output on failure).
    """
    started: list[DaphneServer] = []

    def start(name: str = "daphne", port: int = 0, **env: str) -> DaphneServer:
        server = DaphneServer({**daphne_env, **env}, port=port, name=name)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        print(f"--- {server!r} log tail ---\n{server.log_tail()}")
        server.close()


@pytest.fixture
def start_worker(
    daphne_env: dict[str, str], transactional_db: None
) -> Iterator[Callable[..., ManageCommand]]:
    """Factory: ``start_worker("deliver", *args, **env)`` runs a ``manage.py`` worker
    (``devtools.processes.ManageCommand``) on this run's test database and channel
    layer, and returns once it has started. Every worker it started is stopped when
    the test ends; its output is printed (pytest shows it on failure)."""
    started: list[ManageCommand] = []

    def start(command: str, *args: str, **env: str) -> ManageCommand:
        worker = ManageCommand(command, *args, env={**daphne_env, **env})
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
        print(f"--- {worker.name} output ---\n{worker.log_tail(60)}")
        worker.close()


@pytest.fixture
def start_publisher(start_worker: Callable[..., ManageCommand]) -> Callable[..., ManageCommand]:
    """Factory: ``start_publisher(REDIS_URL=...)`` runs ``manage.py publish_pending``,
    the worker that sends events the on-commit fast path could not (Redis down)."""
    return functools.partial(start_worker, "publish_pending", "--interval", "0.2")


# -- people and data ------------------------------------------------------------


@functools.cache
def password_hash(raw: str = PASSWORD) -> str:
    """The hash of ``raw``, computed once per run: Django's default hasher
    takes ~0.3 s per call by design, and the suite creates users in most tests.
    Real hashes, so daphne processes verify logins as in production."""
    from django.contrib.auth.hashers import make_password

    return make_password(raw)


def _user(username: str, **extra: Any) -> Any:
    from django.contrib.auth import get_user_model

    user = get_user_model()(username=username, email=f"{username}@example.com", **extra)
    user.password = password_hash()
    user.save()
    return user


@pytest.fixture
def alice(db: None) -> Any:
    """A customer."""
    return _user("alice", first_name="Alice")


@pytest.fixture
def bob(db: None) -> Any:
    """Another customer, for "may not see alice's order" tests."""
    return _user("bob", first_name="Bob")


@pytest.fixture
def staff_user(db: None) -> Any:
    """A staff member (reads the staff stream, transitions orders)."""
    return _user("staff", first_name="Sam", is_staff=True)


@pytest.fixture
def products(db: None) -> list[Any]:
    """Two products for sale and one withdrawn (``products[2]``, inactive)."""
    from orders.models import Product

    return [
        Product.objects.create(sku="BK-001", name="Dune", price=Decimal("12.50")),
        Product.objects.create(sku="BK-002", name="Emma", price=Decimal("7.99")),
        Product.objects.create(sku="BK-003", name="Ulysses", price=Decimal("9.00"), active=False),
    ]


def status_path(target: str) -> list[str]:
    """Statuses to pass through from ``placed`` to ``target`` (shortest path)."""
    from orders.status import TRANSITIONS, OrderStatus

    start = OrderStatus.PLACED.value
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for nxt in sorted(TRANSITIONS[current]):
            if nxt not in previous:
                previous[nxt] = current
                queue.append(nxt)
    if target not in previous:
        raise ValueError(f"{target!r} is not reachable from placed")
    path: list[str] = []
    node: str | None = target
    while node is not None and node != start:
        path.append(node)
        node = previous[node]
    return path[::-1]


@pytest.fixture
def make_order(products: list[Any]) -> Callable[..., Any]:
    """Factory: ``make_order(customer, status="placed", quantity=1)`` -> Order.

    Goes through ``place_order``/``transition_order``, so every step writes
    (and publishes) its event exactly as production code does.
    """
    from orders.actions import LineRequest, place_order, transition_order

    def make(customer: Any, status: str = "placed", quantity: int = 1, actor: Any = None) -> Any:
        order = place_order(
            customer, [LineRequest(products[0].pk, quantity)], shipping=dict(SHIPPING)
        )
        for step in status_path(status):
            order = transition_order(order, step, actor=actor)
        return order

    return make


@pytest.fixture
def api_as(request: pytest.FixtureRequest, db: None) -> Callable[[str], Any]:
    """Factory: ``api_as("alice_token")`` -> a DRF ``APIClient`` acting as that principal
    (the names are ``tests.support.api.PRINCIPALS``)."""
    from rest_framework.test import APIClient

    from tests.support.api import PRINCIPALS, session_client, token_client

    clear_cache()  # throttle history: user and token ids repeat across tests

    def make(principal: str) -> APIClient:
        fixture, how = PRINCIPALS[principal]
        if fixture is None:
            return APIClient(enforce_csrf_checks=True)
        user = request.getfixturevalue(fixture)
        return session_client(user) if how == "session" else token_client(user)

    return make


@pytest.fixture
def login_cookies(db: None) -> Callable[[Any], dict[str, str]]:
    """Factory: ``login_cookies(user)`` -> ``{"sessionid": ...}`` for HTTP and WebSocket clients."""
    from tests.support.asgi import session_cookies

    return session_cookies

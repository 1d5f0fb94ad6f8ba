"""The test harness, shared by every test suite and by ``bench/``.

- ``fixtures``: the pytest plugin (root ``conftest.py`` loads it).
- ``asgi``: the real ASGI application in-process, through channels' communicators.
- ``live``: clients for live daphne servers (WebSocket, a resuming follower, ...).
- ``sse``: the one server-sent-events parser (tests and the bench's clients).
- ``api``: REST API clients acting as each principal, and the error-shape check.
- ``forms``: the values a browser would submit from a page's forms (the admin).
- ``webhooks``: webhook endpoints for tests, waiting for deliveries, the tests' retry settings.

Server and worker processes (daphne, redis-server, webhook receivers, ``manage.py``
workers) are ``devtools``'.
"""

"""Dev and process tooling shared by ``scripts/run``, the tests and ``bench/``.

- ``processes``: free ports, waiting on a condition, ``ChildProcess``.
- ``redis_server``: a private redis-server, and finding a Redis to use.
- ``daphne``: the app (or the bench baseline) in a daphne child process.
- ``devserver``: the supervisor ``scripts/run`` runs (``python -m devtools.devserver``).

Development and test only: production never imports this package.
"""

"""Root conftest: the shared fixtures live in ``booktime.testing.fixtures``."""

pytest_plugins = ["booktime.testing.fixtures"]

"""Fixtures for the security and fuzz tests: see tests/support/fixtures.py
(``memory_layer``, people, orders)."""

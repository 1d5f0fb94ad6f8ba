"""Fixtures for the security and fuzz tests: see booktime/testing/fixtures.py
(``memory_layer``, people, orders)."""

"""Test support: real daphne processes, protocol clients and the shared pytest fixtures."""

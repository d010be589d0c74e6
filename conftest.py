"""Fixtures shared by the core tests and every plugin's tests."""

pytest_plugins = ["tests.fixtures"]

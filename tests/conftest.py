"""Test-wide plugins: real server fixtures live in ``tests/fixtures/``."""

pytest_plugins = ["fixtures.servers"]

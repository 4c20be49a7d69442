"""Shared test fixtures: each fixture module under tests/fixtures owns one real server."""

pytest_plugins = [
    "tests.fixtures.env",
    "tests.fixtures.gateway",
    "tests.fixtures.app_api",
    "tests.fixtures.app",
]

"""Shared test fixtures: each fixture module under tests/fixtures owns one real server."""

pytest_plugins = [
    "tests.fixtures.env",
    "tests.fixtures.gateway",
    "tests.fixtures.app_api",
    "tests.fixtures.app",
    "tests.fixtures.services",
]


def pytest_collection_modifyitems(items) -> None:
    """Run the browser tests last: fast feedback first, and sync Playwright's event loop
    never overlaps the asyncio tests."""
    items.sort(key=lambda item: "/tests/e2e/" in str(item.path).replace("\\", "/"))

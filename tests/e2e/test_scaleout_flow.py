"""Scale-out mode end to end: two app instances, two workers each, one PostgreSQL, one Redis.

Both instances run from their own project copy with `scripts/run` (as the README starts
them) and share a PostgreSQL database and a redis-server of this module's own (Reflex's
keys cannot be prefixed, and one test restarts it), and one gateway process. Cookies are
per host, not per port, so one browser context is signed in on both instances at once.

The throttling test locks sign-in for 127.0.0.1 in this database; it runs last.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.test_chat_flow import PASSWORD, ask, assistant_messages
from tests.fixtures.app import AppServer, project_copy, run_app
from tests.fixtures.gateway import RunningGateway, start_gateway
from tests.fixtures.services import PgDatabase, PrivateRedis, create_pg_database

pytestmark = pytest.mark.e2e

WORKERS = "2"
CONVERSATION_URL = re.compile(r"/chat/[A-Za-z0-9_-]+/?$")
ANSWER_TIMEOUT_MS = 30_000


@dataclass
class Cluster:
    """Two app instances sharing one database, one Redis and one gateway."""

    a: AppServer
    b: AppServer
    gateway: RunningGateway
    database: PgDatabase
    redis: PrivateRedis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("scaleout")
    (base / "redis").mkdir()
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(create_pg_database())
        redis = PrivateRedis(base / "redis")
        redis.start()
        stack.callback(redis.stop)
        gateway = start_gateway(base, {"BEHEST_GATEWAY_TOKEN_DELAY_MS": "15"})
        stack.callback(gateway.stop)
        env = {
            "DATABASE_URL": database.url,
            "REDIS_URL": redis.url,
            "GRANIAN_WORKERS": WORKERS,
            "BEHEST_BASE_URL": gateway.base_url,
            "BEHEST_KEY": gateway.api_key,
        }

        def start(name: str) -> tuple[AppServer, contextlib.ExitStack]:
            own = contextlib.ExitStack()
            root = project_copy(base / f"project-{name}")
            workdir = base / f"app-{name}"
            workdir.mkdir()
            server = own.enter_context(run_app(workdir, root, **env))
            return server, own

        with ThreadPoolExecutor(2) as pool:  # the two builds overlap
            futures = [pool.submit(start, name) for name in ("a", "b")]
        for future in futures:
            if future.exception() is None:
                stack.push(future.result()[1].__exit__)
        (a, _), (b, _) = (future.result() for future in futures)  # raises a start failure
        yield Cluster(a, b, gateway, database, redis)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    expect.set_options(timeout=20_000)
    context = browser.new_context(viewport={"width": 1200, "height": 850})
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    yield context
    context.close()
    assert errors == [], f"errors in the page: {errors}"


def statuses(page: Page) -> list[tuple[str | None, str | None]]:
    messages = page.locator('[data-testid="message"]')
    return [(m.get_attribute("data-role"), m.get_attribute("data-status")) for m in messages.all()]


def wait_done(page: Page, count: int) -> None:
    done = assistant_messages(page).and_(page.locator('[data-status="done"]'))
    expect(done).to_have_count(count, timeout=ANSWER_TIMEOUT_MS)


def streaming(page: Page):
    return page.locator('[data-testid="message"][data-status="streaming"]')


def open_form(page: Page, url: str) -> None:
    """Open a sign-in or registration form once its script can take the submit."""
    page.goto(url)
    # A click before auth.js is loaded would submit the form natively (and go nowhere).
    page.wait_for_function("() => Boolean(window.behestAuth)")


def register(page: Page, base: str) -> str:
    """Create a fresh account through the UI at `base`; returns the username."""
    username = f"u{secrets.token_hex(4)}"
    open_form(page, f"{base}/register")
    page.get_by_test_id("username-input").fill(username)
    page.get_by_test_id("display_name-input").fill(f"User {username}")
    page.get_by_test_id("password-input").fill(PASSWORD)
    page.get_by_test_id("register").click()
    expect(page).to_have_url(re.compile(r"/chat/?$"))
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")
    return username


def reload_conversation(page: Page) -> None:
    """Reload once the page's URL names the conversation (a new one gets its URL on send)."""
    expect(page).to_have_url(CONVERSATION_URL)
    page.reload()


def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    open_form(page, f"{base}/login")
    page.get_by_test_id("username-input").fill(username)
    page.get_by_test_id("password-input").fill(password)
    page.get_by_test_id("sign-in").click()


def test_core_flow_with_two_workers_on_postgres_and_redis(
    cluster: Cluster, context: BrowserContext
) -> None:
    page = context.new_page()
    username = register(page, cluster.a.url)
    ask(page, "long: 40")
    wait_done(page, 1)

    ask(page, "long: 3000")
    expect(streaming(page)).to_have_count(1)
    page.get_by_test_id("stop").click()
    expect(assistant_messages(page).and_(page.locator('[data-status="stopped"]'))).to_have_count(1)
    expect(page.get_by_test_id("send")).to_be_visible()

    ask(page, "long: 250")  # about 4 s of streaming
    expect(streaming(page)).to_have_count(1)
    reload_conversation(page)  # the new websocket may land on the other worker
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")
    wait_done(page, 2)
    assert statuses(page) == [("user", "done"), ("assistant", "done"),
                              ("user", "done"), ("assistant", "stopped"),
                              ("user", "done"), ("assistant", "done")]

    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/login/?$"))
    sign_in(page, cluster.a.url, username)
    expect(page).to_have_url(re.compile(r"/chat/?$"))


def test_stop_after_reload_ends_the_turn_wherever_it_runs(
    cluster: Cluster, context: BrowserContext
) -> None:
    page = context.new_page()
    register(page, cluster.a.url)
    for round_ in range(1, 4):  # each reload is a new chance to land on the other worker
        ask(page, "long: 3000")
        expect(streaming(page)).to_have_count(1)
        reload_conversation(page)
        expect(streaming(page)).to_have_count(1)
        page.get_by_test_id("stop").click()
        stopped = assistant_messages(page).and_(page.locator('[data-status="stopped"]'))
        expect(stopped).to_have_count(round_)
    stats = cluster.gateway.stats()
    assert stats["streams_open"] == 0, "every stopped stream was closed at the gateway"


def test_two_instances_see_one_account_session_and_conversation_store(
    cluster: Cluster, browser: Browser, context: BrowserContext
) -> None:
    on_a, on_b = context.new_page(), context.new_page()
    username = register(on_a, cluster.a.url)
    on_b.goto(f"{cluster.b.url}/chat")  # same cookie (cookies ignore the port), other instance
    expect(on_b.get_by_test_id("display-name")).to_have_text(f"User {username}")
    ask(on_b, "long: 30")
    wait_done(on_b, 1)

    elsewhere = browser.new_context()  # a second browser signs in on instance B
    try:
        other = elsewhere.new_page()
        sign_in(other, cluster.b.url, username)
        expect(other.get_by_test_id("display-name")).to_have_text(f"User {username}")
        on_a.get_by_test_id("sign-out").click()  # ends the first browser's session only
        expect(on_a).to_have_url(re.compile(r"/login/?$"))
        on_b.reload()
        expect(on_b).to_have_url(re.compile(r"/login/?$"))
        other.reload()
        expect(other.get_by_test_id("display-name")).to_have_text(f"User {username}")
    finally:
        elsewhere.close()
    (count,) = cluster.database.query(
        'SELECT count(*) FROM "user" WHERE username = %s', username
    )[0]
    assert count == 1


def test_one_mint_per_user_across_all_workers_and_instances(
    cluster: Cluster, context: BrowserContext
) -> None:
    pages = [context.new_page() for _ in range(4)]
    register(pages[0], cluster.a.url)
    before = cluster.gateway.stats()
    for n, page in enumerate(pages):
        if n:
            page.goto(f"{(cluster.a, cluster.b)[n % 2].url}/chat")
        ask(page, f"echo: tab {n}")
        wait_done(page, 1)
        ask(page, f"echo: again {n}")
        wait_done(page, 2)
    after = cluster.gateway.stats()
    assert after["chat_requests"] - before["chat_requests"] == 8
    assert after["mints"] - before["mints"] == 1, "one token for the user on every worker"


def test_postgres_connections_dropped_mid_conversation(
    cluster: Cluster, context: BrowserContext
) -> None:
    page = context.new_page()
    username = register(page, cluster.b.url)
    ask(page, "long: 30")
    wait_done(page, 1)
    assert cluster.database.terminate_connections() >= 1
    ask(page, "long: 30")  # every event looks the session up again: a fresh connection
    wait_done(page, 2)
    ask(page, "long: 200")
    expect(streaming(page)).to_have_count(1)
    cluster.database.terminate_connections()
    wait_done(page, 3)
    reload_conversation(page)
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")
    expect(assistant_messages(page)).to_have_count(3)
    assert statuses(page) == [("user", "done"), ("assistant", "done")] * 3
    rows = cluster.database.query(
        'SELECT count(*) FROM auth_session s JOIN "user" u ON u.id = s.user_id '
        "WHERE u.username = %s AND s.revoked_at IS NULL",
        username,
    )
    assert rows == [(1,)]


def test_redis_restart_during_a_stream_keeps_the_conversation(
    cluster: Cluster, context: BrowserContext
) -> None:
    page = context.new_page()
    username = register(page, cluster.a.url)
    ask(page, "echo: kept before the restart")
    wait_done(page, 1)
    ask(page, "long: 600")
    expect(streaming(page)).to_have_count(1)
    cluster.redis.restart()
    # The turn ends (finished, or cut with a message saying so); it is never left hanging.
    expect(streaming(page)).to_have_count(0, timeout=ANSWER_TIMEOUT_MS)
    last = assistant_messages(page).last
    assert last.get_attribute("data-status") in ("done", "error")
    if last.get_attribute("data-status") == "error":
        expect(last.get_by_test_id("message-error")).not_to_be_empty()
    expect(page.get_by_test_id("send")).to_be_visible()

    reload_conversation(page)
    expect(page.get_by_test_id("display-name")).to_have_text(f"User {username}")
    first_answer = assistant_messages(page).first
    expect(first_answer).to_have_text("kept before the restart")
    ask(page, "echo: after the restart")
    expect(assistant_messages(page).last).to_have_text(
        "after the restart", timeout=ANSWER_TIMEOUT_MS
    )


def test_sign_in_throttling_counts_failures_on_every_instance(
    cluster: Cluster, browser: Browser
) -> None:
    setup = browser.new_context()
    username = register(setup.new_page(), cluster.a.url)
    setup.close()
    context = browser.new_context()
    try:
        page = context.new_page()
        for n in range(5):  # failures alternate between the instances
            sign_in(page, (cluster.a, cluster.b)[n % 2].url, username, "wrong password!")
            expect(page.get_by_test_id("auth-error")).to_have_text("Wrong username or password.")
        sign_in(page, cluster.b.url, username)  # right password, but locked everywhere
        expect(page.get_by_test_id("auth-error")).to_contain_text("Too many attempts")
    finally:
        context.close()
    failures = cluster.database.query(
        "SELECT count(*) FROM login_attempt WHERE subject = %s", f"user:{username}"
    )
    assert failures == [(5,)]

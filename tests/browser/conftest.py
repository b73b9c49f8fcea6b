"""Real Chromium (Debian's, at /usr/bin/chromium) against pytest-django's live_server.

Playwright never downloads a browser here (no ``playwright install``): the launch points at the
system Chromium, and a missing one fails the run with the command that installs it.

Playwright's sync API runs an asyncio loop in a greenlet of pytest's thread and, between its calls,
leaves that loop marked as the thread's running loop. Django reacts to that mark in two ways: the ORM
refuses to run (SynchronousOnlyOperation) unless DJANGO_ALLOW_ASYNC_UNSAFE is set, and ``connections``
hands out a second set of connection objects (asgiref's Local keys its storage on "is a loop
running"), which lack what pytest-django set on the first set (the serialized data for
``serialized_rollback``). So the mark is confined to each browser test's body (``_browser_window``):
it is lifted right after the browser starts, set again for the test, then lifted, with the test's own
connections closed, before pytest-django flushes the database; DJANGO_ALLOW_ASYNC_UNSAFE is set for
the same window only. Outside it every test, browser or not, sees a plain synchronous thread.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PASSWORD = "pw-for-tests-1"  # tests/factories.py: UserFactory's password
PLAYWRIGHT_LOOP = pytest.StashKey[asyncio.AbstractEventLoop]()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the browser tests need Debian's Chromium at {CHROMIUM}: apt-get install -y chromium",
                    pytrace=False)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser(browser, request):
    """pytest-playwright's browser, with Playwright's loop unmarked between browser tests."""
    loop = asyncio.get_running_loop()  # marked by the launch
    asyncio._set_running_loop(None)
    request.config.stash[PLAYWRIGHT_LOOP] = loop
    yield browser
    asyncio._set_running_loop(loop)  # pytest-playwright closes the browser next: Playwright runs again


@pytest.fixture(autouse=True)
def _browser_window(browser, request):
    """Playwright's loop marked, and the ORM allowed beside it, for this test only (see the module doc)."""
    from django.db import connections

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        asyncio._set_running_loop(request.config.stash[PLAYWRIGHT_LOOP])
        try:
            yield
        finally:
            # The connections this test opened beside the loop; pytest-django's flush comes after.
            for connection in connections.all(initialized_only=True):
                connection.close()
            asyncio._set_running_loop(None)


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """The ``context`` (and so ``page``) fixture: a laptop-sized window, English unless a test switches."""
    return {**browser_context_args, "viewport": {"width": 1366, "height": 800}, "locale": "en"}


@pytest.fixture
def shot(request):
    """``shot(page, name)``: a full-page screenshot at ``artifacts/<test>-<name>.png``; returns its path."""
    test = re.sub(r"[^\w.-]+", "_", request.node.originalname)

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"{test}-{re.sub(r'[^\w.-]+', '_', name)}.png"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def login(page, live_server, user, password: str = PASSWORD) -> None:
    """Sign in through the real login form (by field name, so it works in either language)."""
    page.goto(f"{live_server.url}/login/")
    page.locator("input[name=username]").fill(user.get_username())
    page.locator("input[name=password]").fill(password)
    page.locator("form[action='/login/'] button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/")


@pytest.fixture(name="login")
def login_fixture():
    """The ``login(page, live_server, user)`` helper as a fixture."""
    return login


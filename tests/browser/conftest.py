"""The studio as a producer sees it: daphne, a django-q2 cluster and the fake ComfyUI on real
ports, sharing the test database (by file or URL) and Redis, driven by Debian's Chromium.

Skipped only when /usr/bin/chromium is missing (``.ci/run`` installs it through apt).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.support.processes import database_url, free_port, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


# A stopped stack is thrown away: its processes get a moment to exit, then are killed (the
# cluster's graceful stop takes 6 s alone, 20 s when its workers are signalled too).
STOP_GRACE = 2.0


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the cluster's workers too
        process.wait()


class Stack:
    def __init__(self, base_url: str, logs: Path) -> None:
        self.base_url = base_url
        self.logs = logs

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


# Not handed to the stack; PYTEST_CURRENT_TEST changes with every test.
NOT_PASSED = {"SECRET_KEY_FILE", "DJANGO_ALLOW_ASYNC_UNSAFE", "PYTEST_CURRENT_TEST"}


class StackPool:
    """At most one running stack, kept from module to module while the environment it was started
    with stays the same (a module may set variables that its cluster must read at start)."""

    def __init__(self, *, make_tmp: Callable[[], Path], db_url: str, redis_url: str) -> None:
        self.make_tmp = make_tmp
        self.db_url = db_url
        self.redis_url = redis_url
        self.environ: dict[str, str] | None = None
        self.processes: list[subprocess.Popen] = []
        self.current: Stack | None = None
        self.modules_done: set[str] = set()

    def get(self) -> Stack:
        environ = {k: v for k, v in os.environ.items() if k not in NOT_PASSED}
        if self.current is None or environ != self.environ:
            self.stop()
            self.current = self._start(environ)
            self.environ = environ
        return self.current

    def _start(self, environ: dict[str, str]) -> Stack:
        tmp = self.make_tmp()
        port = free_port()
        env = dict(environ)
        env.update(
            DATABASE_URL=self.db_url,
            REDIS_URL=self.redis_url,
            REDIS_PREFIX=f"browser-{uuid.uuid4().hex[:8]}",
            SECRET_KEY=settings.SECRET_KEY,
            TOWER_VAR_DIR=str(tmp / "var"),
            MEDIA_ROOT=str(tmp / "media"),
            TOWER_WORKERS="2",
            COMFYUI_STALL_TIMEOUT="1",
            LOG_LEVEL="WARNING",
        )
        for name, argv in (
            ("daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tower.asgi:application"]),
            ("qcluster", [sys.executable, str(ROOT / "manage.py"), "qcluster"]),
        ):
            with (tmp / f"{name}.log").open("wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        base_url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base_url}/login/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(up, timeout=60, what=f"daphne on {base_url} (log: {tmp / 'daphne.log'})")
        except BaseException:
            self.stop()
            raise
        return Stack(base_url, tmp)

    def stop(self) -> None:
        processes, self.processes, self.current = self.processes, [], None
        _stop(list(reversed(processes)))


@pytest.fixture(scope="session")
def stack_pool(django_db_setup, django_db_blocker, redis_url, tmp_path_factory) -> Iterator[StackPool]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    pool = StackPool(make_tmp=lambda: tmp_path_factory.mktemp("stack"), db_url=db_url, redis_url=redis_url)
    try:
        yield pool
    finally:
        pool.stop()


# Module fixtures that set variables the stack's cluster reads at its start (test_curation's):
# their modules run after the other browser modules, which then share a single stack.
STACK_ENV_FIXTURES = {"trainer_env"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slots = [n for n, item in enumerate(items) if "stack" in item.fixturenames]
    ours = [items[n] for n in slots]
    ordered = sorted(ours, key=lambda item: bool(STACK_ENV_FIXTURES & set(item.fixturenames)))
    for n, item in zip(slots, ordered, strict=True):
        items[n] = item


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.fixture(scope="module")
def stack(stack_pool: StackPool, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """daphne + qcluster against the test database, shared by consecutive modules (each test's
    rows are flushed: ``transaction=True``); stopped after the session's last module that uses it,
    so no cluster outlives the browser tests and claims other tests' jobs."""
    yield stack_pool.get()
    stack_pool.modules_done.add(_module_of(request.node))
    users = {_module_of(item) for item in request.session.items if "stack" in item.fixturenames}
    if users <= stack_pool.modules_done:
        stack_pool.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread while the module runs;
    # the tests' own ORM calls (and pytest-django's flush between tests) are still synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            yield chromium
        finally:
            chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.base_url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


def screenshot(page, name: str, *, width: int | None = None) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    if width:
        page.set_viewport_size({"width": width, "height": 900})
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if width:
        page.set_viewport_size({"width": 1280, "height": 900})
    return path

"""The studio as a producer sees it: daphne, a django-q2 cluster and the fake ComfyUI on real
ports, sharing the test database (by file or URL) and Redis, driven by Debian's Chromium.

Skipped only when /usr/bin/chromium is missing (``.ci/run`` installs it through apt).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Stack:
    def __init__(self, base_url: str, logs: Path) -> None:
        self.base_url = base_url
        self.logs = logs

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, redis_url, tmp_path_factory) -> Iterator[Stack]:
    """daphne + qcluster against the test database, started once per module."""
    tmp = tmp_path_factory.mktemp("stack")
    port = free_port()
    with django_db_blocker.unblock():
        db_url = database_url()
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY_FILE", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"browser-{uuid.uuid4().hex[:8]}",
        SECRET_KEY=settings.SECRET_KEY,
        TOWER_VAR_DIR=str(tmp / "var"),
        MEDIA_ROOT=str(tmp / "media"),
        TOWER_WORKERS="2",
        COMFYUI_STALL_TIMEOUT="1",
        LOG_LEVEL="WARNING",
    )
    processes = []
    for name, argv in (
        ("daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tower.asgi:application"]),
        ("qcluster", [sys.executable, str(ROOT / "manage.py"), "qcluster"]),
    ):
        with (tmp / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
    base_url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base_url}/login/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30, what=f"daphne on {base_url} (log: {tmp / 'daphne.log'})")
        yield Stack(base_url, tmp)
    finally:
        for process in reversed(processes):
            _stop(process)


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

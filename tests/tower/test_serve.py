"""``manage.py serve``: one command starts the studio, Ctrl-C stops all of it.

The end-to-end tests run the real command in a subprocess on the embedded default (no
DATABASE_URL, no REDIS_URL) with its own var directory, and talk to it over HTTP.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.support.processes import free_port, wait_until
from tower.core.embedded import socket_path
from tower.management.commands.ensure_admin import ensure_admin

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_LINE = re.compile(r"Created the admin user 'admin' with password: (\S+)")
_INHERITED_OUT = re.compile(
    r"^(DATABASE_URL|REDIS_URL|SECRET_KEY(_FILE)?|TOWER_\w+|COMFYUI_URLS|LOG_LEVEL|MEDIA_ROOT|STATIC_ROOT)$"
)


# --- ensure_admin -----------------------------------------------------------------------------------


@pytest.fixture
def admin_env(monkeypatch):
    for name in ("TOWER_ADMIN_USER", "TOWER_ADMIN_PASSWORD", "TOWER_ADMIN_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def run_ensure_admin() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_ensure_admin_creates_admin_with_a_generated_password_shown_once(admin_env):
    first = run_ensure_admin()

    password = PASSWORD_LINE.search(first)[1]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(password)
    assert password not in admin.password  # only the hash is stored
    assert "change it" in first

    second = run_ensure_admin()

    assert password not in second
    assert "password" not in second.replace("password is unchanged", "")
    admin.refresh_from_db()
    assert admin.check_password(password)
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_ensure_admin_uses_the_configured_user_and_password(admin_env):
    admin_env.setenv("TOWER_ADMIN_USER", "director")
    admin_env.setenv("TOWER_ADMIN_PASSWORD", "storyboard-at-dawn-42")

    output = run_ensure_admin()

    assert "storyboard-at-dawn-42" not in output
    director = get_user_model().objects.get(username="director")
    assert director.is_superuser
    assert director.check_password("storyboard-at-dawn-42")


@pytest.mark.django_db
def test_ensure_admin_reads_the_password_from_a_file(admin_env, tmp_path):
    secret = tmp_path / "admin_password"
    secret.write_text("keyframes-and-inbetweens\n")
    admin_env.setenv("TOWER_ADMIN_PASSWORD_FILE", str(secret))

    run_ensure_admin()

    assert get_user_model().objects.get(username="admin").check_password("keyframes-and-inbetweens")


@pytest.mark.django_db
def test_ensure_admin_never_resets_an_existing_password(admin_env):
    user = get_user_model().objects.create_superuser(username="director", password="the-original-one-77")
    admin_env.setenv("TOWER_ADMIN_USER", "director")
    admin_env.setenv("TOWER_ADMIN_PASSWORD", "a-new-one-from-env-88")

    output = run_ensure_admin()

    user.refresh_from_db()
    assert user.check_password("the-original-one-77")
    assert "ignored" in output


@pytest.mark.django_db
def test_ensure_admin_leaves_a_studio_that_has_a_superuser_alone(admin_env):
    get_user_model().objects.create_superuser(username="producer", password="already-here-123")

    account = ensure_admin()

    assert account.created is False
    assert account.username == "producer"
    assert not get_user_model().objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_ensure_admin_refuses_a_weak_configured_password(admin_env):
    admin_env.setenv("TOWER_ADMIN_PASSWORD", "password")

    with pytest.raises(CommandError, match="TOWER_ADMIN_PASSWORD is too weak"):
        ensure_admin()

    assert not get_user_model().objects.exists()


# --- The real command ------------------------------------------------------------------------------------


def parents() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    return table


def descendants(pid: int, *, direct: bool = False) -> dict[int, str]:
    """Every process below ``pid`` (or only its children), with its command line."""
    children: dict[int, list[int]] = {}
    for child, parent in parents().items():
        children.setdefault(parent, []).append(child)
    found: dict[int, str] = {}
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found[child] = command_line(child)
            if not direct:
                stack.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@dataclass
class Serve:
    """``manage.py serve`` in a subprocess, its output collected as it comes."""

    var_dir: Path
    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def start(self, **extra_env: str) -> Serve:
        env = {name: value for name, value in os.environ.items() if not _INHERITED_OUT.match(name)}
        env.update(TOWER_VAR_DIR=str(self.var_dir), TOWER_WORKERS="1", TOWER_HEALTH_MIN_FREE_BYTES="1")
        env.update(TOWER_FETCH_MODELS="0")  # the tests never download the scoring models
        env.update(extra_env)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port), *self.args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        wait_until(
            lambda: text in self.output or self.process.poll() is not None,
            timeout=timeout,
            what=f"{text!r} in the output",
        )
        assert text in self.output, f"serve exited with {self.process.returncode}:\n{self.output}"

    def health(self) -> dict | None:
        try:
            response = httpx.get(f"{self.url}/api/health", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """Last-resort clean-up after a failed test: nothing may outlive the test."""
        if self.process is None:
            return
        leftovers = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in leftovers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def admin_login(base_url: str, username: str, password: str, *, then_get: str = "") -> bool | dict:
    """Whether the admin login works; with ``then_get``, the JSON that path answers once signed in."""
    with httpx.Client(base_url=base_url, timeout=10) as browser:
        page = browser.get("/admin/login/")
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        response = browser.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"},
        )
        ok = response.status_code == 302 and response.headers["location"] == "/admin/"
        return browser.get(then_get).json() if then_get and ok else ok


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio") / "var"


@dataclass
class FirstRun:
    serve: Serve
    health: dict
    children: dict[int, str]
    password: str
    login_ok: bool
    wrong_password_login_ok: bool
    exit_code: int
    stopped_in: float


@pytest.fixture(scope="module")
def first_run(var_dir) -> Iterator[FirstRun]:
    """A fresh studio: start, wait until healthy with a worker, log in, then Ctrl-C."""
    serve = Serve(var_dir).start()
    try:
        # Anonymous callers get the status alone; "ok" includes a live worker.
        wait_until(
            lambda: (body := serve.health()) and body["status"] == "ok",
            timeout=60,
            what=f"GET /api/health to answer 200 with a live worker\n{serve.output}",
        )
        serve.wait_for_output("Press Ctrl+C to stop.")
        children = descendants(serve.process.pid)
        password = PASSWORD_LINE.search(serve.output)[1]
        health = admin_login(serve.url, "admin", password, then_get="/api/health")  # the detail
        login_ok = admin_login(serve.url, "admin", password)
        wrong_ok = admin_login(serve.url, "admin", password + "x")
        started = time.monotonic()
        code = serve.stop(signal.SIGINT)
        yield FirstRun(serve, health, children, password, login_ok, wrong_ok, code, time.monotonic() - started)
    finally:
        serve.kill()


def test_first_run_answers_health_200_with_a_live_worker(first_run):
    checks = first_run.health["checks"]
    assert first_run.health["status"] == "ok"
    assert checks["workers"]["alive"] >= 1
    assert checks["database"]["vendor"] == "sqlite"
    assert checks["channel_layer"]["ok"] is True


def test_first_run_runs_daphne_a_worker_and_the_embedded_redis_as_children(first_run):
    commands = list(first_run.children.values())
    assert any("daphne" in command and str(first_run.serve.port) in command for command in commands)
    assert any("qcluster" in command for command in commands)
    assert any("redis-server" in command for command in commands)


def test_first_run_prints_the_url_the_admin_login_and_where_data_lives(first_run, var_dir):
    output = first_run.serve.output
    assert f"Tower is running at http://127.0.0.1:{first_run.serve.port}/" in output
    assert f"http://127.0.0.1:{first_run.serve.port}/admin/" in output
    assert str(var_dir) in output
    assert output.count(first_run.password) == 1
    assert "Traceback" not in output
    assert re.search(r"Workflows: \d+ shipped templates \(\d+ new, 0 updated\)$", output, re.MULTILINE)
    assert len([line for line in output.splitlines() if line.strip()]) < 30  # short


def test_first_run_with_model_fetching_off_downloads_nothing(first_run, var_dir):
    assert re.search(r"Scoring models: \d+ missing, not fetched \(TOWER_FETCH_MODELS=0\)", first_run.serve.output)
    assert not (var_dir / "models" / ".fetch-status.json").exists()


def test_the_printed_password_logs_in_to_the_admin(first_run):
    assert first_run.login_ok is True
    assert first_run.wrong_password_login_ok is False


def test_ctrl_c_stops_every_child_removes_the_socket_and_exits_0(first_run, var_dir):
    assert first_run.exit_code == 0, first_run.serve.output
    assert first_run.stopped_in < 30
    assert "Tower stopped." in first_run.serve.output
    still_running = {pid: command for pid, command in first_run.children.items() if not gone(pid)}
    assert still_running == {}
    assert not socket_path(var_dir).exists()


def test_a_second_run_reuses_the_admin_without_a_new_password(first_run, var_dir):
    serve = Serve(var_dir, args=("--no-worker",)).start(COMFYUI_URLS="http://gpu-1.local:8188")
    try:
        serve.wait_for_output("Press Ctrl+C to stop.")

        assert "Admin user: admin (existing account; its password is unchanged)" in serve.output
        assert not PASSWORD_LINE.search(serve.output)
        assert "applying" not in serve.output  # migrations were applied by the first run
        assert "registered gpu-1.local:8188" in serve.output
        assert admin_login(serve.url, "admin", first_run.password)
        assert not any("qcluster" in command for command in descendants(serve.process.pid).values())
        assert serve.stop(signal.SIGTERM) == 0
    finally:
        serve.kill()


def test_a_child_that_dies_stops_tower_with_a_non_zero_exit_naming_it(first_run, var_dir):
    serve = Serve(var_dir, args=("--no-migrate",)).start()
    try:
        serve.wait_for_output("Press Ctrl+C to stop.")
        children = descendants(serve.process.pid)
        direct = descendants(serve.process.pid, direct=True)
        (worker,) = [pid for pid, command in direct.items() if "qcluster" in command]

        os.kill(worker, signal.SIGKILL)
        code = serve.process.wait(timeout=30)

        assert code != 0
        assert "worker (qcluster)" in serve.output
        assert {pid for pid in children if not gone(pid)} == set()
        assert not socket_path(var_dir).exists()
    finally:
        serve.kill()


def listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:``port`` (Linux /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    return ""


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def test_several_web_processes_answer_on_one_port(first_run, var_dir):
    serve = Serve(var_dir, args=("--no-worker", "--no-migrate")).start(TOWER_WEB_PROCESSES="3")
    try:
        serve.wait_for_output("Press Ctrl+C to stop.", timeout=90)
        webs = [pid for pid, command in descendants(serve.process.pid, direct=True).items() if "daphne" in command]
        inode = listening_inode(serve.port)
        answers = [httpx.get(f"{serve.url}/", timeout=10).status_code for _ in range(20)]

        assert "Web:     3 processes" in serve.output
        assert len(webs) == 3
        assert inode and all(inode in socket_inodes(pid) for pid in webs)  # one socket, three listeners
        assert answers == [302] * 20  # to the sign-in page, every one
        assert serve.stop(signal.SIGTERM) == 0
        assert all(gone(pid) for pid in webs)
    finally:
        serve.kill()


def test_a_port_in_use_is_reported_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        serve = Serve(tmp_path / "var", port=taken.getsockname()[1]).start()
        try:
            code = serve.process.wait(timeout=30)
            serve._reader.join(timeout=5)
        finally:
            serve.kill()

    assert code == 1
    assert "Tower cannot start: cannot listen on 127.0.0.1" in serve.output
    assert "--port" in serve.output
    assert not socket_path(tmp_path / "var").exists()

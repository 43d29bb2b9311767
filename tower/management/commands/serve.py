"""``manage.py serve``: the whole studio in one command (what ``make run`` calls).

Starts the embedded Redis (unless ``REDIS_URL`` is set), applies migrations, makes sure there is an
admin user, registers the ``COMFYUI_URLS`` backends on first start, fetches missing scoring models
in the background (unless ``TOWER_FETCH_MODELS=0``), then runs the web server
(``TOWER_WEB_PROCESSES`` daphne processes sharing the port) and a worker (django-q2 ``qcluster``)
as child processes until Ctrl-C / SIGTERM or until one of them dies. Children run in their own
sessions so a Ctrl-C reaches only this supervisor, which stops them in order: web and worker
first, Redis last (they need it to shut down cleanly).

In production run the processes yourself (see the README); this command is for one machine.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from generation.services.backends import BackendError
from generation.services.bootstrap import seed_backends, sync_shipped_templates
from quality.fetch import BackgroundFetch, start_background_fetch
from tower.core.embedded import EmbeddedRedis, EmbeddedRedisError, supervised_popen_kwargs
from tower.core.env import env_int, env_str
from tower.core.webpool import daphne_command, listen, single_daphne_command
from tower.management.commands.ensure_admin import describe, ensure_admin

# How long a child gets to shut down cleanly before it is killed. A worker finishes the task in
# hand first; a second Ctrl-C skips the wait.
STOP_TIMEOUT = 20.0
PATIENCE_NOTICE = 3.0
READY_TIMEOUT = 60.0
POLL_INTERVAL = 0.2


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None


class Command(BaseCommand):
    help = "Start Tower: embedded Redis (unless REDIS_URL is set), migrations, admin, web and worker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", help="address to listen on (TOWER_HOST, default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port to listen on (TOWER_PORT, default 8000)")
        parser.add_argument("--no-worker", action="store_true", help="do not start a worker")
        parser.add_argument("--no-migrate", action="store_true", help="do not apply migrations")

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"] or env_str("TOWER_HOST", "127.0.0.1")
        port = options["port"] or env_int("TOWER_PORT", 8000, min_value=1, max_value=65535)
        try:
            if not 1 <= port <= 65535:
                raise CommandError(f"--port must be between 1 and 65535; got {port}")
            supervisor = Supervisor(self, host=host, port=port)
            code = supervisor.run(worker=not options["no_worker"], migrate=not options["no_migrate"])
        except CommandError as exc:
            self.stderr.write(f"Tower cannot start: {exc}")
            sys.exit(1)
        if code:
            sys.exit(code)

    def say(self, line: str = "", style: Any = None) -> None:
        self.stdout.write(style(line) if style else line)
        self.stdout.flush()


class Supervisor:
    def __init__(self, command: Command, *, host: str, port: int) -> None:
        self.out = command
        self.host = host
        self.port = port
        self.redis: EmbeddedRedis | None = None
        self.fetcher: BackgroundFetch | None = None
        self.children: list[Child] = []
        self.listener: socket.socket | None = None
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "tower.settings")
        # A quiet console: start-up chatter only with LOG_LEVEL=INFO (access lines go to var/log).
        self.env.setdefault("LOG_LEVEL", "WARNING")
        self.web_processes = 0
        self._signal: int | None = None
        self._supervising = False
        self._stopping = False
        self._wake = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    def run(self, *, worker: bool, migrate: bool) -> int:
        """Start everything, wait, stop everything; return the exit status."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        dead = None
        try:
            try:
                self._start(worker=worker, migrate=migrate)
                dead = self._supervise()
            except KeyboardInterrupt:
                pass  # stopped while starting: clean up below like any other stop
        finally:
            self._stopping = True
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if dead is not None:
            self.out.stderr.write(f"Tower stopped because the {dead.name} {_how_it_ended(dead.process.returncode)}.")
            return 1
        self.out.say("Tower stopped.")
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            self._signal = signum  # a second Ctrl-C: stop waiting for graceful exits
            self._wake.set()
            return
        self._signal = signum
        self._wake.set()
        if not self._supervising:
            raise KeyboardInterrupt

    def _start(self, *, worker: bool, migrate: bool) -> None:
        self.out.say("Starting Tower…")
        self._check_port()
        self._start_redis()
        if migrate:
            self._migrate()
        self.out.say(f"  Workflows: {sync_shipped_templates()}")
        for line in describe(ensure_admin(), admin_url=f"{self.url}admin/"):
            self.out.say(f"  {line}")
        self._seed_backends()
        self._start_model_fetch()
        for folder in (settings.MEDIA_ROOT, settings.STATIC_ROOT):
            Path(folder).mkdir(parents=True, exist_ok=True)
        # Children open their own connections; ours must not be shared across fork/exec.
        connections.close_all()
        self._spawn_web(settings.WEB_PROCESSES)
        if worker:
            self._spawn("worker (qcluster)", [sys.executable, str(settings.BASE_DIR / "manage.py"), "qcluster"])
        self._supervising = True
        if self._signal is not None:
            raise KeyboardInterrupt
        if self._wait_until_listening():
            self._banner(worker=worker)

    def _supervise(self) -> Child | None:
        """Block until a signal arrives (``None``) or a child dies (that child)."""
        while self._signal is None:
            for child in self._all_children():
                if not child.alive():
                    return child
            self._wake.wait(POLL_INTERVAL)
        return None

    def _stop_all(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        running = [child for child in self.children if child.alive()]
        if running:
            self.out.say("Stopping Tower…")
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        self._signal = None
        started = time.monotonic()
        told = False
        for child in self.children:
            while child.alive() and time.monotonic() - started < STOP_TIMEOUT and self._signal is None:
                if not told and time.monotonic() - started > PATIENCE_NOTICE:
                    told = True
                    self.out.say(f"  Waiting for the {child.name} to finish (Ctrl+C again stops it at once)…")
                self._wake.clear()
                self._wake.wait(0.1)
            _kill_group(child.process)
        self.children.clear()
        if self.fetcher is not None:
            self.fetcher.stop()  # its .part files resume at the next start
            self.fetcher = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    # --- steps -----------------------------------------------------------------------------------

    def _check_port(self) -> None:
        # Bound now and held: the web processes adopt this socket, and nobody takes the port meanwhile.
        try:
            self.listener = listen(self.host, self.port)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror}). Is Tower already "
                "running? Choose another address with --host/--port or TOWER_HOST/TOWER_PORT."
            ) from None

    def _start_redis(self) -> None:
        if not settings.EMBEDDED_REDIS:
            parts = urlsplit(settings.REDIS_URL)
            self.out.say(f"  Redis: {parts.hostname or 'unix socket'} (REDIS_URL)")
            return
        self.redis = EmbeddedRedis(var_dir=settings.VAR_DIR)
        try:
            self.env["REDIS_URL"] = self.redis.start()
        except EmbeddedRedisError as exc:
            self.redis = None  # start() cleaned up after itself; never stop another Tower's Redis
            raise CommandError(f"the embedded Redis cannot start: {exc}") from None
        self.out.say(f"  Redis: embedded, on {self.redis.socket}")

    def _migrate(self) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            self.out.say(f"  Database: applying {len(pending)} migrations…")
            call_command("migrate", interactive=False, verbosity=0)
        self.out.say(f"  Database: {_describe_database()}, up to date")

    def _seed_backends(self) -> None:
        try:
            names = seed_backends(urls=settings.COMFYUI_URLS)
        except BackendError as exc:
            raise CommandError(str(exc)) from None
        if names:
            self.out.say(f"  ComfyUI: registered {', '.join(names)} (from COMFYUI_URLS)")

    def _start_model_fetch(self) -> None:
        # A thread of this process, not a child: it ends when the models are in, and its end
        # (or failure) must never stop Tower. Progress goes to the dashboard, not the console.
        self.fetcher, line = start_background_fetch(settings.MODELS_DIR, enabled=settings.TOWER_FETCH_MODELS)
        self.out.say(f"  Scoring models: {line}")

    def _spawn_web(self, processes: int) -> None:
        listener, self.listener = self.listener, None
        assert listener is not None  # bound by _check_port
        self.web_processes = processes if listener.family == socket.AF_INET else 1
        if self.web_processes == 1:
            listener.close()  # one daphne binds the port itself
            self._spawn("web server (daphne)", single_daphne_command(self.host, self.port, log_dir=self._log_dir()))
            return
        with listener:  # the children hold their copies; ours closes once they are started
            for index in range(1, processes + 1):
                self._spawn(
                    f"web server (daphne {index}/{processes})",
                    daphne_command(listener, port=self.port, index=index, log_dir=self._log_dir()),
                    pass_fds=(listener.fileno(),),
                )

    def _spawn(self, name: str, args: list[str], pass_fds: tuple[int, ...] = ()) -> None:
        process = subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
            **supervised_popen_kwargs(),
        )
        self.children.append(Child(name=name, process=process))

    def _wait_until_listening(self) -> bool:
        """Wait for the web server to answer; ``False`` if it is stopping instead."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._signal is not None or any(not child.alive() for child in self._all_children()):
                return False  # _supervise reports it
            # An HTTP answer, not a connection: the socket accepts as soon as it is bound.
            connection = http.client.HTTPConnection(_connectable(self.host), self.port, timeout=2)
            try:
                connection.request("HEAD", "/")  # any answer will do: a redirect to sign in
                connection.getresponse()
                return True
            except OSError:
                self._wake.wait(POLL_INTERVAL)
            finally:
                connection.close()
        self.out.stderr.write(f"The web server is not answering on port {self.port} yet; still waiting.")
        return False

    def _banner(self, *, worker: bool) -> None:
        self.out.say()
        self.out.say(f"Tower is running at {self.url}", self.out.style.SUCCESS)
        self.out.say(f"  Admin:   {self.url}admin/")
        self.out.say(f"  Health:  {self.url}api/health")
        webs = self.web_processes
        self.out.say(f"  Web:     {webs} process{'es' if webs != 1 else ''} (daphne, TOWER_WEB_PROCESSES)")
        if worker:
            count = settings.Q_CLUSTER["workers"]
            self.out.say(f"  Worker:  {count} process{'es' if count != 1 else ''} (django-q2)")
        else:
            self.out.say("  Worker:  not started (--no-worker): generation jobs will wait")
        self.out.say(f"  Data:    {settings.VAR_DIR} (media in {settings.MEDIA_ROOT})")
        self.out.say("Press Ctrl+C to stop.")

    # --- helpers ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = _connectable(self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def _all_children(self) -> list[Child]:
        children = list(self.children)
        if self.redis is not None and self.redis.process is not None:
            children.append(Child(name="embedded Redis (redis-server)", process=self.redis.process))
        return children

    def _log_dir(self) -> Path:
        path = settings.VAR_DIR / "log"
        path.mkdir(parents=True, exist_ok=True)
        return path


def _describe_database() -> str:
    db = settings.DATABASES[DEFAULT_DB_ALIAS]
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite at {db['NAME']}"
    return f"PostgreSQL {db.get('NAME')} on {db.get('HOST') or 'local socket'}"


def _connectable(host: str) -> str:
    """The address to reach a server bound to ``host`` (a wildcard means this machine)."""
    host = host.strip("[]")
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of a child's process group (its own worker processes included)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()

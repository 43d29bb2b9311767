"""Scoring models out of the box: ``manage.py serve`` fetches the missing ones in the background
(resumed, checksum-checked), the dashboard shows the progress, ``TOWER_FETCH_MODELS=0`` turns it off.

Nothing here downloads from the internet: the registry is replaced by small files served by
``tests/fakes/http_files.FileServer`` on a real port.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from quality import fetch, weights
from tests.fakes.http_files import FileServer
from tower.management.commands.serve import Supervisor

ALPHA = os.urandom(3 * weights.CHUNK + 1234)  # several blocks, so progress is reported between them
BETA = os.urandom(70_000)


def spec(server: FileServer, model_id: str, body: bytes, *, sha256: str | None = None) -> weights.ModelSpec:
    return weights.ModelSpec(
        id=model_id,
        filename=f"{model_id}/{model_id}.bin",
        url=server.url(f"/files/{model_id}.bin"),
        sha256=sha256 or hashlib.sha256(body).hexdigest(),
        size=len(body),
        used_by=(f"{model_id}_score",),
        description="a test file",
    )


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "alpha.bin").write_bytes(ALPHA)
    (folder / "beta.bin").write_bytes(BETA)
    return {"/files/alpha.bin": folder / "alpha.bin", "/files/beta.bin": folder / "beta.bin"}


@pytest.fixture
def server(files) -> Iterator[FileServer]:
    with FileServer(files) as running:
        yield running


@pytest.fixture
def registry(monkeypatch, server) -> dict[str, weights.ModelSpec]:
    """The only models this studio knows: two small files on the local server."""
    models = {"alpha": spec(server, "alpha", ALPHA), "beta": spec(server, "beta", BETA)}
    monkeypatch.setattr(weights, "MODELS", models)
    return models


@pytest.fixture
def models_dir(settings, tmp_path) -> Path:
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def gets(server: FileServer) -> list[tuple[str, str]]:
    return [(path, wanted) for method, path, wanted in server.requests if method == "GET"]


def wait_for(condition, *, timeout: float = 30.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- the fetch ----------------------------------------------------------------------------------


def test_a_fetch_resumes_a_partial_file_and_installs_both_models(registry, server, models_dir):
    part = models_dir / "alpha/alpha.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(ALPHA[:100_000])

    status = fetch.fetch_missing(models_dir)

    assert gets(server) == [("/files/alpha.bin", "bytes=100000-"), ("/files/beta.bin", "")]
    assert (models_dir / "alpha/alpha.bin").read_bytes() == ALPHA
    assert (models_dir / "beta/beta.bin").read_bytes() == BETA
    assert not part.exists()
    assert [(m.id, m.state) for m in status.models] == [("alpha", "done"), ("beta", "done")]
    assert fetch.read_status(models_dir).state == "done"
    assert fetch.missing_models(models_dir) == []


def test_a_checksum_mismatch_discards_the_file_and_the_dashboard_shows_the_error(
    registry, server, models_dir, monkeypatch, owner
):
    monkeypatch.setitem(weights.MODELS, "beta", spec(server, "beta", BETA, sha256="0" * 64))

    status = fetch.fetch_missing(models_dir)

    assert [(m.id, m.state) for m in status.models] == [("alpha", "done"), ("beta", "failed")]
    assert not (models_dir / "beta/beta.bin").exists()
    assert not (models_dir / "beta/beta.bin.part").exists()  # a bad file is not resumed either
    html = dashboard(owner)
    assert 'data-fetch-state="failed"' in html
    assert "beta" in html and "does not match" in html
    assert "beta score" in html and "python manage.py fetch_models" in html
    assert "alpha score" not in html  # alpha is in: its metric is on


def test_progress_is_written_while_a_model_downloads(registry, server, models_dir, monkeypatch):
    """The status file is what the web process reads: it must move while bytes arrive."""
    monkeypatch.setattr(fetch, "WRITE_INTERVAL", 0.0)
    seen: list[tuple[str, int, int | None]] = []

    def snapshot(model_id: str, done: int, total: int | None) -> None:
        status = fetch.read_status(models_dir)
        current = next(m for m in status.models if m.id == model_id)
        seen.append((current.state, current.done, current.total))

    fetch.fetch_missing(models_dir, ids=["alpha"], on_progress=snapshot)

    states = {state for state, _, _ in seen}
    done = [d for _, d, _ in seen]
    assert states == {"downloading"}
    assert {total for _, _, total in seen} == {len(ALPHA)}
    assert 0 < min(d for d in done if d) < len(ALPHA) and done == sorted(done) and done[-1] == len(ALPHA)


def test_a_stopped_fetch_keeps_its_part_file_for_the_next_start(registry, server, models_dir):
    stop = threading.Event()

    def stop_after_first_block(model_id: str, done: int, total: int | None) -> None:
        if done:
            stop.set()

    status = fetch.fetch_missing(models_dir, stop=stop, on_progress=stop_after_first_block)

    assert status.state == "stopped"
    assert [m.state for m in status.models] == ["stopped", "stopped"]
    kept = (models_dir / "alpha/alpha.bin.part").stat().st_size
    assert 0 < kept < len(ALPHA)
    assert gets(server) == [("/files/alpha.bin", "")]  # beta was not started

    assert fetch.fetch_missing(models_dir).state == "done"  # the next start resumes it
    assert gets(server)[1] == ("/files/alpha.bin", f"bytes={kept}-")
    assert (models_dir / "alpha/alpha.bin").read_bytes() == ALPHA


def test_a_second_fetch_into_the_same_folder_is_refused_while_one_runs(registry, server, models_dir):
    models_dir.mkdir(parents=True)
    with (models_dir / fetch.LOCK_NAME).open("a") as held:  # what a running fetch holds
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(CommandError, match="another fetch of the scoring models is running"):
            call_command("fetch_models", stdout=io.StringIO(), stderr=io.StringIO())
        assert gets(server) == []
    assert fetch.fetch_missing(models_dir).state == "done"  # once it is released


def test_a_running_status_left_by_a_dead_process_reads_as_stopped(models_dir):
    models_dir.mkdir(parents=True)
    old = time.time() - fetch.STALE_AFTER - 1
    fetch.status_path(models_dir).write_text(
        json.dumps({"state": "running", "models": [{"id": "alpha", "state": "downloading"}], "updated": old})
    )

    status = fetch.read_status(models_dir)

    assert status.state == "stopped" and status.models[0].state == "stopped"


# --- manage.py serve ----------------------------------------------------------------------------


class Console:
    """What ``Supervisor`` prints through (``Command.say``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, line: str = "", style: object = None) -> None:
        self.lines.append(line)


def supervisor() -> tuple[Supervisor, Console]:
    console = Console()
    return Supervisor(console, host="127.0.0.1", port=0), console  # type: ignore[arg-type]


def test_serve_fetches_the_missing_models_in_the_background(registry, server, models_dir, settings):
    settings.TOWER_FETCH_MODELS = True
    tower, console = supervisor()

    tower._start_model_fetch()

    assert console.lines == ["  Scoring models: fetching 2 missing in the background (progress on the dashboard)"]
    assert tower.fetcher.join(timeout=30).state == "done"
    assert fetch.missing_models(models_dir) == []
    again, console = supervisor()
    again._start_model_fetch()
    assert again.fetcher is None and console.lines == ["  Scoring models: all present"]


def test_tower_fetch_models_0_starts_no_fetch(registry, server, models_dir, settings):
    settings.TOWER_FETCH_MODELS = False
    tower, console = supervisor()

    tower._start_model_fetch()

    assert tower.fetcher is None
    assert [t for t in threading.enumerate() if t.name == "fetch-models"] == []
    assert gets(server) == []
    assert not fetch.status_path(models_dir).exists()
    assert console.lines == [
        "  Scoring models: 2 missing, not fetched (TOWER_FETCH_MODELS=0); run: python manage.py fetch_models"
    ]


def test_stopping_tower_stops_the_fetch(registry, server, models_dir, settings, monkeypatch):
    settings.TOWER_FETCH_MODELS = True
    tower, _ = supervisor()
    started = threading.Event()
    running: list[fetch.BackgroundFetch] = []
    real_download = weights.download

    def download_once_stopping(*args, **kwargs):
        # Holds the first download until Tower is stopping, so the stop lands mid-download.
        started.set()
        wait_for(lambda: running and running[0].stop_event.is_set(), what="Tower to stop")
        return real_download(*args, **kwargs)

    monkeypatch.setattr(weights, "download", download_once_stopping)
    tower._start_model_fetch()
    tower_fetcher = tower.fetcher
    running.append(tower_fetcher)
    wait_for(started.is_set, what="the download to start")

    tower._stop_all()

    assert tower.fetcher is None and not tower_fetcher.thread.is_alive()
    assert fetch.read_status(models_dir).state == "stopped"
    assert [path for path, _ in gets(server)] == ["/files/alpha.bin"]  # beta was never asked for


def test_an_unexpected_error_in_the_background_is_recorded_not_left_running(registry, models_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(weights, "download", broken)

    fetcher, _ = fetch.start_background_fetch(models_dir, enabled=True)
    fetcher.join(timeout=30)

    status = fetch.read_status(models_dir)
    assert status.state == "failed"
    assert {m.error for m in status.models} == {"RuntimeError: disk on fire"}


# --- the dashboard --------------------------------------------------------------------------------


def dashboard(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_the_dashboard_shows_a_running_download_and_polls_until_it_ends(registry, models_dir, owner):
    models_dir.mkdir(parents=True)
    fetch.status_path(models_dir).write_text(
        json.dumps(
            {
                "state": "running",
                "models": [
                    {"id": "alpha", "state": "done", "done": len(ALPHA), "total": len(ALPHA)},
                    {"id": "beta", "state": "downloading", "done": 35_000, "total": len(BETA)},
                ],
                "updated": time.time(),
            }
        )
    )
    expected = int((len(ALPHA) + 35_000) * 100 / (len(ALPHA) + len(BETA)))

    html = dashboard(owner)

    assert 'data-fetch-state="running"' in html
    assert f'hx-get="{reverse("scoring-models")}" hx-trigger="every 2s"' in html
    assert f"data-fetch-percent>{expected}%" in html
    assert 'data-fetch-model="alpha" data-state="done"' in html

    finished = json.loads(fetch.status_path(models_dir).read_text())
    finished["state"] = "done"
    finished["models"][1].update(state="done", done=len(BETA))
    fetch.status_path(models_dir).write_text(json.dumps(finished))
    for model in weights.MODELS.values():
        (models_dir / model.filename).parent.mkdir(parents=True, exist_ok=True)
        (models_dir / model.filename).write_bytes(ALPHA if model.id == "alpha" else BETA)
    client = Client()
    client.force_login(owner)
    polled = client.get(reverse("scoring-models"), HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in polled and 'id="scoring-models" hidden' in polled  # polling stops


@pytest.mark.django_db
def test_the_dashboard_says_how_to_turn_scoring_on_when_nothing_was_fetched(registry, models_dir, owner):
    html = dashboard(owner)

    assert 'data-fetch-state="missing"' in html
    assert "alpha score, beta score" in html
    assert html.count("python manage.py fetch_models") == 1


def test_after_a_stopped_download_the_dashboard_says_it_resumes(registry, server, models_dir, owner):
    stop = threading.Event()
    stop.set()
    fetch.fetch_missing(models_dir, stop=stop)

    html = dashboard(owner)

    assert 'data-fetch-state="stopped"' in html and "resumes at its next start" in html
    assert html.count("python manage.py fetch_models") == 1


@pytest.mark.django_db
def test_the_scoring_models_card_needs_a_login(registry, models_dir):
    response = Client().get(reverse("scoring-models"))
    assert response.status_code == 302 and "/login/" in response["Location"]

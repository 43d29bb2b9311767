"""The README's command-line example runs as written on a fresh install, against the fake ComfyUI.

The commands are read from README.md itself, so the README cannot drift from what works.
"""

from __future__ import annotations

import io
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from generation import tasks
from generation.models import Asset, Job, JobStatus
from tests.factories import UserFactory
from tests.generation.engine_helpers import backend_for, shipped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_command(name: str) -> list[str]:
    """The arguments of the README's one ``manage.py <name>`` line."""
    lines = [line for line in README.read_text().splitlines() if line.startswith(".venv/bin/python manage.py ")]
    [argv] = [shlex.split(line)[2:] for line in lines if shlex.split(line)[2] == name]
    return argv


@pytest.fixture
def workers(monkeypatch) -> Iterator[list[threading.Thread]]:
    """Each enqueued job runs at once in its own thread, as a django-q worker would."""
    threads: list[threading.Thread] = []

    def run(job_id: int) -> None:
        def work() -> None:
            try:
                tasks.job_run(job_id)
            finally:
                connection.close()

        thread = threading.Thread(target=work, daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(tasks, "enqueue_run", run)
    monkeypatch.setattr(tasks, "enqueue_abort", lambda job_id: None)
    yield threads
    while threads:
        thread = threads.pop(0)
        thread.join(timeout=60)
        assert not thread.is_alive(), "a job did not finish"


def test_the_readme_generate_example_runs_after_seed_demo(fake, workers):
    # What `make run` leaves on a fresh install: an admin, the shipped templates, and a backend.
    UserFactory(username="admin", is_superuser=True, is_staff=True)
    shipped("weightless-image")
    backend_for(fake)
    seed, generate = readme_command("seed_demo"), readme_command("generate")
    assert "--project" in generate and "--count" in generate

    call_command(*seed, stdout=io.StringIO())
    out = io.StringIO()
    try:
        call_command(*generate, stdout=out, stderr=io.StringIO())
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)

    jobs = list(Job.objects.select_related("project", "character", "template").order_by("pk"))
    count = int(generate[generate.index("--count") + 1])
    assert code == 0, out.getvalue()
    assert len(jobs) == count
    assert {(job.project.slug, job.character.name, job.template.slug, job.status) for job in jobs} == {
        ("cyberpunk-goblin-slayer", "Kai Nakamura", "weightless-image", JobStatus.SUCCEEDED)
    }
    assert Asset.objects.filter(job__in=jobs).count() == count
    assert f"{count} of {count} jobs succeeded." in out.getvalue()

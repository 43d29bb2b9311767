"""A fresh install has no scoring models: a job's quality card says once, in plain words, which
metrics are off and the one command that turns them on (not a file path, not the command twice)."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.test import Client
from django.urls import reverse

from characters.services import character_create
from generation import tasks
from quality import fetch, weights
from quality.metrics import MetricModels
from quality.services import common
from quality.tasks import score_job
from tests.factories import make_project
from tests.quality.scoring_helpers import submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def fresh_install(settings, tmp_path, monkeypatch):
    """No weights at all, as after `make run` on a machine that could not fetch them."""
    settings.MODELS_DIR = tmp_path / "models"
    monkeypatch.setattr(common, "metric_models", lambda: MetricModels(root=settings.MODELS_DIR))
    return settings.MODELS_DIR


def card(user, job) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("job-quality", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def scored_job(project, owner):
    job = submit(
        project,
        owner,
        overrides={"batch_size": 2},
        character=character_create(project=project, name="Kai", design_prompt="1boy, silver hair"),
    )
    assert tasks.job_run(job.pk) == "succeeded"
    assert score_job(job.pk) == "not_evaluated"
    return job


def test_a_fresh_install_says_once_which_metrics_are_off_and_how_to_turn_them_on(fake, owner, engine, fresh_install):
    project = make_project(owner, art_kind="photoreal")
    job = scored_job(project, owner)

    html = card(owner, job)

    assert 'data-verdict="not_evaluated"' in html
    notice = re.search(r"<p [^>]*data-quality-off>(.*?)</p>", html, re.S).group(1)
    assert "Off on this studio: aesthetic, character similarity" in notice
    assert "not downloaded" in notice
    assert html.count("manage.py fetch_models") == 1
    assert "<code>python manage.py fetch_models</code>" in notice
    assert str(fresh_install) not in html  # no file path
    for spec in weights.MODELS.values():
        assert spec.filename not in html
    # the gate lists each skipped metric once, whatever the number of outputs
    skipped = re.search(r"data-skipped>(.*?)</dd>", html, re.S).group(1)
    assert skipped.count("aesthetic") == 1 and "off (model not downloaded)" in skipped


def test_while_the_models_download_the_card_says_so_instead_of_the_command(fake, owner, engine, fresh_install):
    project = make_project(owner, art_kind="photoreal")
    job = scored_job(project, owner)
    fresh_install.mkdir(parents=True, exist_ok=True)
    fetch.status_path(fresh_install).write_text(
        json.dumps({"state": "running", "models": [{"id": "alpha", "state": "downloading"}], "updated": time.time()})
    )

    html = card(owner, job)

    assert "downloading now" in html
    assert "manage.py fetch_models" not in html

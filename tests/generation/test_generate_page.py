"""The Generate page's live form: a change re-renders what depends on it, never a field being edited."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import CharacterFactory
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_change_sends_the_preview_out_of_band_and_never_the_typed_fields(owner, project):
    template = shipped("weightless-image")
    query = {"project": project.pk, "template": template.pk, "prompt": "on the roof", "negative": "blurry"}
    html = client_for(owner).get(reverse("generate"), {**query, "changed": "mode"}, HTTP_HX_REQUEST="true")
    html = html.content.decode()
    assert 'id="generate-preview" hx-swap-oob="true"' in html and "on the roof" in html  # in the preview
    assert 'name="prompt"' not in html and 'name="negative"' not in html and 'name="count"' not in html
    assert 'name="template"' not in html and 'name="character"' not in html  # nothing depends on the mode


def test_a_new_project_brings_its_characters_and_workflows(owner, project):
    kai = CharacterFactory(project=project, name="Kai")
    query = {"project": project.pk, "prompt": "on the roof", "changed": "project"}
    html = client_for(owner).get(reverse("generate"), query, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="field-character" hx-swap-oob="true"' in html and f'value="{kai.pk}"' in html
    assert 'id="field-template" hx-swap-oob="true"' in html
    assert 'name="prompt"' not in html and 'name="project"' not in html
    character = client_for(owner).get(
        reverse("generate"), {**query, "character": kai.pk, "changed": "character"}, HTTP_HX_REQUEST="true"
    )
    html = character.content.decode()
    assert 'id="field-version"' in html and 'id="field-variation"' in html and 'id="field-character"' not in html


def test_the_full_page_still_renders_every_field(owner, project):
    html = client_for(owner).get(reverse("generate"), {"project": project.pk, "prompt": "x"}).content.decode()
    assert 'name="prompt"' in html and "/static/js/generate.js" in html and "data-generate-form" in html


def test_a_request_refused_by_pre_flight_is_not_called_queued_and_retry_says_why(owner, project, monkeypatch):
    from django.utils import timezone

    from generation import tasks
    from generation.models import BackendObjectInfo, Job, JobStatus
    from tests.factories import BackendFactory

    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)
    template = shipped("weightless-image")
    backend = BackendFactory(healthy=True)
    unrelated = {"SaveImage": {"input": {"required": {}}, "output": [], "output_node": True}}
    BackendObjectInfo.objects.create(backend=backend, data=unrelated, fetched_at=timezone.now())  # lacks the nodes
    form = {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "seed": ""}
    response = client_for(owner).post(reverse("generate"), form, follow=True)
    job = Job.objects.get()
    assert job.status == JobStatus.FAILED
    html = response.content.decode()
    assert f"Job #{job.pk} was refused: pre-flight" in html
    assert "queued." not in html and 'class="alert ok"' not in html
    # The Generate page's output pane lists it as failed; its page offers Retry.
    pane = html[html.index('id="generate-output"') :]
    assert f'id="job-row-{job.pk}"' in pane and "Failed" in pane
    html = client_for(owner).get(reverse("job-detail", args=[job.pk])).content.decode()
    # Nothing has changed since: Retry is there, disabled, and says why.
    assert re.search(r'data-action="retry" disabled title="nothing has changed', html)
    assert "data-retry-why>Nothing has changed since it was refused" in html
    response = client_for(owner).post(reverse("job-action", args=[job.pk, "retry"]), follow=True)
    assert Job.objects.count() == 1 and "nothing has changed" in response.content.decode()


def test_the_preview_of_an_imported_graph_shows_the_values_it_will_run_with(owner, project):
    from generation.services.templates import template_import
    from tests.generation.test_workflow_style import ANIMATION

    style = project.style
    style.width, style.height, style.fps, style.style_prompt = 768, 1024, 12, "neon lighting"
    style.save()
    template = template_import(project=project, name="Mine", graph_json=ANIMATION, kind="loop", user=owner)
    query = {"project": project.pk, "template": template.pk, "prompt": "on the roof", "changed": "template"}
    html = client_for(owner).get(reverse("generate"), query, HTTP_HX_REQUEST="true").content.decode()
    preview = html[html.index('id="generate-preview"') :]
    # The graph keeps its own 512×512 at 10 fps, and the style's prompt does not reach it.
    assert "on the roof" in preview and "neon lighting" not in preview
    assert '<dd class="mono">1024</dd>' not in preview and '<dd class="mono">12</dd>' not in preview
    shipped_html = client_for(owner).get(
        reverse("generate"), {**query, "template": shipped("weightless-image").pk}, HTTP_HX_REQUEST="true"
    )
    assert "neon lighting" in shipped_html.content.decode()  # a shipped template follows the style

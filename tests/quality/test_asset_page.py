"""The asset page and the lightbox: what made the output (prompt, negative, parameters), its
scores and verdict, and which job it belongs to, named plainly."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from quality.models import QualityScore
from quality.services.verdicts import assets_quality_refresh
from tests.factories import AssetFactory, CharacterFactory, JobFactory, TemplateFactory, make_project

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def outputs(project):
    kai = CharacterFactory(project=project, name="Kai")
    job = JobFactory(
        project=project,
        character=kai,
        template=TemplateFactory(name="Portrait SDXL"),
        prompt="1boy, neon rain, rooftop at dusk, looking at viewer",
        negative_prompt="lowres, extra fingers",
        seed=4242,
        params={"steps": 28, "cfg": 7.5, "sampler": "dpmpp_2m", "inputs": {"x": 1}, "prompt": "dup"},
    )
    first, second = AssetFactory(project=project, job=job), AssetFactory(project=project, job=job)
    QualityScore.objects.create(asset=second, metric="aesthetic", value=4.25, threshold=5.0, passed=False)
    QualityScore.objects.create(asset=second, metric="character_similarity", value=0.81, threshold=0.6, passed=True)
    assets_quality_refresh(asset_ids=[second.pk])  # as scoring does with the rows it writes
    return job, first, second


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "lightbox"])
def test_shows_prompt_negative_parameters_scores_and_verdict(owner, outputs, htmx):
    _, _, second = outputs
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    html = client_for(owner).get(reverse("asset-detail", args=[second.pk]), **headers).content.decode()
    assert ("<html" in html) is not htmx
    assert "1boy, neon rain, rooftop at dusk, looking at viewer" in html and "lowres, extra fingers" in html
    assert "<dt>steps</dt>" in html and "<dt>cfg</dt>" in html and "dpmpp_2m" in html and "4242" in html
    assert "<dt>inputs</dt>" not in html
    assert 'data-score="aesthetic"' in html and "4.250" in html and "0.810" in html
    assert 'data-verdict="failed"' in html  # one gated metric failed


def test_names_its_job_plainly_with_a_link(owner, outputs):
    job, first, second = outputs
    client = client_for(owner)
    html = client.get(reverse("asset-detail", args=[second.pk])).content.decode()
    job_url = reverse("job-detail", args=[job.pk])
    assert f'Output 2 of <a href="{job_url}">job #{job.pk}</a>' in html
    assert "Portrait SDXL — 1boy, neon rain" in html
    assert f"<title>Output 2 of job #{job.pk} · Tower</title>" in html
    assert f"Asset #{second.pk}" not in html
    assert "Output 1 of" in client.get(reverse("asset-detail", args=[first.pk])).content.decode()


def test_unscored_output_says_not_evaluated(owner, outputs):
    _, first, _ = outputs
    html = client_for(owner).get(reverse("asset-detail", args=[first.pk])).content.decode()
    assert 'data-verdict="unscored"' in html and "not evaluated" in html


def test_close_on_the_standalone_page_goes_to_the_gallery_and_in_the_lightbox_closes_it(owner, outputs):
    _, first, _ = outputs
    client = client_for(owner)
    page = client.get(reverse("asset-detail", args=[first.pk])).content.decode()
    assert f'<a class="button secondary" href="{reverse("gallery")}" data-close-page>Close</a>' in page
    assert "data-close-lightbox" not in page
    lightbox = client.get(reverse("asset-detail", args=[first.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "data-close-lightbox" in lightbox and "data-close-page" not in lightbox


def test_outsider_gets_404(outsider, outputs):
    _, first, _ = outputs
    assert client_for(outsider).get(reverse("asset-detail", args=[first.pk])).status_code == 404


def test_standalone_page_links_the_newer_and_older_outputs_in_gallery_order(owner, outsider, outputs):
    _, first, second = outputs
    newest = AssetFactory(project=first.project)
    AssetFactory(project=make_project(outsider, name="Elsewhere"))  # never a neighbour: not visible
    client = client_for(owner)
    middle = client.get(reverse("asset-detail", args=[second.pk])).content.decode()
    assert f'href="{reverse("asset-detail", args=[newest.pk])}" rel="prev"' in middle
    assert f'href="{reverse("asset-detail", args=[first.pk])}" rel="next"' in middle
    top = client.get(reverse("asset-detail", args=[newest.pk])).content.decode()
    assert 'rel="prev"' not in top and f'href="{reverse("asset-detail", args=[second.pk])}" rel="next"' in top
    last = client.get(reverse("asset-detail", args=[first.pk])).content.decode()
    assert 'rel="next"' not in last

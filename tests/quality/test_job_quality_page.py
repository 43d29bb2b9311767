"""The job page's quality panel: per-output scores, gates, the regeneration chain, a per-frame chart."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generation.models import JobKind, JobStatus
from quality.charts import sparkline, temporal_chart
from quality.models import QualityGate, QualityScore, ScoreStatus
from quality.tasks import score_job
from tests.factories import AssetFactory, JobFactory, make_project
from tests.quality.test_loop_gate import SIZE, apng, pan
from tower.page_consumer import render_event

pytestmark = pytest.mark.django_db

FIX = "python manage.py fetch_models alexnet"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def panel(user, job, htmx: bool = True):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client_for(user).get(reverse("job-quality", args=[job.pk]), **headers)


def row(html: str, metric: str) -> str:
    found = re.search(rf'<tr data-score="{metric}">(.*?)</tr>', html, re.S)
    assert found, f"no row for {metric}"
    return re.sub(r"\s+", " ", found.group(1))


def scored_clip(project, job=None, **gate_details):
    job = job or JobFactory(project=project, kind=JobKind.LOOP, status=JobStatus.SUCCEEDED)
    asset = AssetFactory(project=project, job=job, kind="animation")
    add = QualityScore.objects.create
    add(asset=asset, metric="aesthetic", value=6.1, threshold=5.5, passed=True, model_id="laion-aesthetic")
    add(asset=asset, metric="subject_consistency", value=0.71, threshold=0.85, passed=False)
    add(asset=asset, metric="character_similarity", threshold=0.7, status=ScoreStatus.NO_SUBJECT,
        details={"reason": "no face found in any sampled frame"})  # fmt: skip
    add(asset=asset, metric="temporal_lpips", threshold=None, status=ScoreStatus.UNAVAILABLE,
        details={"reason": "alexnet missing", "fix": FIX})  # fmt: skip
    add(asset=asset, metric="temporal_flicker", value=0.97, details={"per_pair": [1.0, 2.0, 9.0, 1.5]})
    add(asset=asset, metric="join_ssim", value=0.4, details={"joins": [{"frame": 3}]})
    add(asset=asset, metric="loop_seamlessness", value=0.3, threshold=0.5, passed=False,
        details={"seamless": False, "seam_abs_diff": 12.0})  # fmt: skip
    details = {
        "outcome": "failed",
        "evaluated": ["aesthetic", "subject_consistency"],
        "skipped": [{"metric": "character_similarity", "status": "no_subject", "reason": "no face", "fix": ""}],
        "combined_score": 0.9,
        **gate_details,
    }
    QualityGate.objects.create(job=job, stage="post_gen", passed=False, details=details)
    return job, asset


def test_each_score_shows_value_threshold_and_verdict_or_why_it_is_missing(owner, project, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"  # none downloaded
    job, asset = scored_clip(project)

    response = panel(owner, job)

    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html  # the fragment
    assert f'data-output="{asset.pk}"' in html
    assert re.search(r"6\.100.*≥ 5\.50.*badge ok\">pass", row(html, "aesthetic"))
    assert re.search(r"0\.710.*≥ 0\.85.*badge bad\">fail", row(html, "subject_consistency"))
    assert "no face found" in row(html, "character_similarity")
    lpips = row(html, "temporal_lpips")
    assert "unavailable" in lpips and "0." not in lpips.split("</td>")[1]  # no invented value
    # the command is said once, above the outputs, not on every row
    assert FIX not in lpips and html.count("manage.py fetch_models") == 1
    assert re.search(r"data-quality-off>Off on this studio: temporal LPIPS, because", html)
    assert "not gated" in row(html, "temporal_flicker")
    assert 'data-gate="post_gen"' in html and 'data-verdict="failed"' in html
    assert re.search(r"data-skipped>.*character_similarity", html)


def test_the_chart_draws_each_frame_pair_the_joins_and_the_seam(owner, project):
    job, _ = scored_clip(project)

    html = panel(owner, job).content.decode()

    assert html.count("<svg") == 1 and "data-chart" in html
    points = re.search(r'<polyline points="([^"]+)"', html).group(1).split()
    assert len(points) == 4  # one point per frame pair
    assert html.count("data-join") == 1 and "join at frame 3" in html
    assert "data-seam" in html and "loop seam" in html
    assert "<script" not in html


def test_the_regeneration_chain_links_parent_child_and_the_kept_attempt(owner, project):
    parent = JobFactory(project=project, kind=JobKind.LOOP, status=JobStatus.SUCCEEDED)
    job = JobFactory(project=project, kind=JobKind.LOOP, status=JobStatus.SUCCEEDED, parent=parent)
    child = JobFactory(project=project, kind=JobKind.LOOP, status=JobStatus.QUEUED, parent=job)
    scored_clip(project, job, attempt=2, max_regenerations=3, regenerated_as=child.pk)

    html = panel(owner, job).content.decode()

    assert f'href="/jobs/{parent.pk}/" data-chain="parent"' in html
    assert f'href="/jobs/{child.pk}/" data-chain="child"' in html
    assert "2 of at most 4" in html

    final = JobFactory(project=project, kind=JobKind.LOOP, status=JobStatus.SUCCEEDED)
    scored_clip(project, final, attempt=3, max_regenerations=2, kept_job=parent.pk, kept=False)
    html = panel(owner, final).content.decode()
    assert f'data-kept="{parent.pk}"' in html and f'href="/jobs/{parent.pk}/">#{parent.pk}</a> is kept' in html


def test_an_unscored_job_says_so(owner, project):
    job = JobFactory(project=project, status=JobStatus.RUNNING)
    assert "data-quality-empty" in panel(owner, job).content.decode()


def test_the_job_page_loads_the_panel_and_links_it_without_js(owner, project):
    job, _ = scored_clip(project)
    url = reverse("job-quality", args=[job.pk])

    html = client_for(owner).get(reverse("job-detail", args=[job.pk])).content.decode()

    assert re.search(rf'id="job-quality-{job.pk}" hx-get="{url}" hx-trigger="load"', html)
    assert f'<a href="{url}">' in html
    full = panel(owner, job, htmx=False).content.decode()
    assert "<html" in full and f'id="job-quality-{job.pk}"' in full and 'data-score="aesthetic"' in full


def test_a_quality_evaluation_event_resends_the_panel(owner, project):
    job, _ = scored_clip(project)
    event = {"type": "quality_evaluation", "job": job.pk, "project": project.pk}

    html = render_event(user=owner, event=event, job_page=True, csrf_token="")

    assert f'id="job-quality-{job.pk}" hx-swap-oob="true"' in html and 'data-score="aesthetic"' in html
    progress = render_event(user=owner, event={**event, "type": "progress"}, job_page=True, csrf_token="")
    assert "job-quality" not in progress


def test_outsider_gets_404_and_anonymous_the_login(owner, outsider, project, client):
    job, _ = scored_clip(project)
    assert panel(outsider, job).status_code == 404
    assert render_event(user=outsider, event={"type": "quality_evaluation", "job": job.pk}, job_page=True,
                        csrf_token="") == ""  # fmt: skip
    response = client.get(reverse("job-quality", args=[job.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_constant_queries_for_1_and_10_outputs(owner, project):
    def queries_for(outputs: int) -> int:
        job = JobFactory(project=project, kind=JobKind.LOOP, status=JobStatus.SUCCEEDED)
        for _ in range(outputs):
            scored_clip(project, job)
        client = client_for(owner)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse("job-quality", args=[job.pk]), HTTP_HX_REQUEST="true")
        assert response.content.decode().count("data-output=") == outputs
        assert response.content.decode().count("data-chart") == outputs
        return len(queries)

    one, ten = queries_for(1), queries_for(10)
    # session, user, the job (the access check), its assets, their scores, its gates
    assert one == ten == 6


def test_a_real_scored_loop_shows_its_chart_and_seam(owner, models):
    project = make_project(owner, name="Loops", threshold_aesthetic=0.0, max_regenerations=0)
    job = JobFactory(project=project, created_by=owner, kind=JobKind.LOOP, status=JobStatus.SUCCEEDED)
    AssetFactory(project=project, job=job, kind="animation", file=_file(apng(pan(SIZE // 4))))
    score_job(job.pk)

    html = panel(owner, job).content.decode()

    assert len(re.search(r'<polyline points="([^"]+)"', html).group(1).split()) == SIZE // 4 - 1
    assert "temporal LPIPS per frame pair" in html and "data-seam" in html
    assert 'badge bad">fail' in row(html, "loop_seamlessness")


def _file(data: bytes):
    from django.core.files.base import ContentFile

    return ContentFile(data, name="loop.png")


def test_sparkline_geometry():
    chart = sparkline([0.0, 1.0, 0.5], title="t", joins=[2], seam=2.0, width=100, height=20)
    assert chart is not None and chart.count == 3
    xs = [float(p.split(",")[0]) for p in chart.points.split()]
    ys = [float(p.split(",")[1]) for p in chart.points.split()]
    assert xs == sorted(xs) and xs[0] == 3.0
    assert ys[0] == 17.0 and chart.seam == (97.0, 3.0)  # the seam is the highest point, at the right edge
    assert [m.x for m in chart.joins] == [xs[1]]  # join at frame 2 = the step from frame 1 to 2
    assert sparkline([], title="t") is None


def test_the_chart_prefers_lpips_and_falls_back_to_pixel_differences():
    lpips = temporal_chart({"temporal_lpips": {"per_pair": [0.1, 0.2]}, "temporal_flicker": {"per_pair": [1, 2, 3]}})
    assert lpips is not None and lpips.count == 2 and "LPIPS" in lpips.title
    diffs = temporal_chart({"temporal_flicker": {"per_pair": [1, 2, 3]}})
    assert diffs is not None and diffs.count == 3 and "difference" in diffs.title
    assert temporal_chart({"aesthetic": {}}) is None


def test_the_card_shows_the_pre_gen_and_final_gates_and_a_job_gated_only_at_submission_is_not_scored(owner, project):
    job = JobFactory(project=project, kind=JobKind.VIDEO, status=JobStatus.SUCCEEDED, forced_reason="client demo")
    QualityGate.objects.create(
        job=job,
        stage="pre_gen",
        passed=True,
        details={
            "preflight": {"passed": True, "message": ""},
            "inputs": [{"parameter": "init_image", "name": "tower-abc.png", "path": "x.png", "sha256": "abc"}],
            "forced_reason": "client demo",
        },
    )

    html = panel(owner, job).content.decode()
    assert "Not scored yet" in html  # the submission's gate says nothing about the outputs
    assert 'data-gate="pre_gen"' in html
    assert re.search(r"data-inputs>.*init_image.*tower-abc\.png", html, re.S)
    assert "client demo" in html

    asset = AssetFactory(project=project, job=job, kind="video")
    QualityScore.objects.create(asset=asset, metric="overall", value=0.62, threshold=0.8, passed=False)
    QualityGate.objects.create(
        job=job,
        stage="final",
        passed=False,
        details={"score": 0.62, "reasons": ["overall 0.62 is not above 0.8"], "checks": {}, "asset_id": asset.pk},
    )

    html = panel(owner, job).content.decode()
    assert "Not scored yet" not in html
    assert re.search(r'data-gate="final".*data-verdict="failed"', html, re.S)
    assert "overall 0.62 is not above 0.8" in html
    assert re.search(r"0\.620.*&gt; 0\.80.*badge bad\">fail", row(html, "overall"))

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from generation.models import Asset, AssetKind, Backend, Job, JobLogLine, JobStatus
from generation.services.backends import backends_set_enabled
from tests.factories import AssetFactory, BackendFactory, CharacterFactory, JobFactory, make_project, png_bytes

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:generation_job_changelist")
ASSETS = reverse("admin:generation_asset_changelist")
BACKENDS = reverse("admin:generation_backend_changelist")


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def get_counting_queries(client, url: str, **params):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
    assert response.status_code == 200
    return response, len(ctx.captured_queries)


def make_jobs(project, n: int, **fields) -> list[Job]:
    # Each job with its own character and backend, so a missing select_related shows as N queries.
    return [
        JobFactory(project=project, character=CharacterFactory(project=project), backend=BackendFactory(), **fields)
        for _ in range(n)
    ]


def make_assets(project, n: int) -> list[Asset]:
    return [
        AssetFactory(project=project, job=JobFactory(project=project), file__data=png_bytes(), width=64, height=64)
        for _ in range(n)
    ]


# --- Changelists ---------------------------------------------------------------------------------


def test_job_changelist_queries_do_not_grow_with_rows(admin_client, owner):
    project = make_project(owner)
    make_jobs(project, 3)
    _, few = get_counting_queries(admin_client, JOBS)
    make_jobs(project, 27)
    response, many = get_counting_queries(admin_client, JOBS)

    assert len(response.context["cl"].result_list) == 30
    assert many == few


def test_asset_changelist_queries_do_not_grow_with_rows(admin_client, owner):
    project = make_project(owner)
    make_assets(project, 3)
    _, few = get_counting_queries(admin_client, ASSETS)
    make_assets(project, 27)
    response, many = get_counting_queries(admin_client, ASSETS)

    assert len(response.context["cl"].result_list) == 30
    assert many == few


def test_big_tables_do_not_count_every_row(admin_client):
    from django.contrib import admin

    for model in (Job, Asset, JobLogLine):
        assert admin.site._registry[model].show_full_result_count is False


def test_asset_list_shows_thumbnails_never_the_files(admin_client, owner):
    project = make_project(owner)
    image = make_assets(project, 1)[0]
    video = AssetFactory(project=project, kind=AssetKind.VIDEO, mime="video/mp4", file__filename="clip.mp4")

    html = admin_client.get(ASSETS).content.decode()

    assert f'<img loading="lazy" src="{reverse("admin:generation_asset_thumb", args=[image.pk])}"' in html
    assert "max-width:96px;max-height:96px" in html
    assert video.file.url not in html and image.file.url not in html


def test_job_page_shows_its_outputs_as_thumbnails_and_its_log(admin_client, owner):
    project = make_project(owner)
    asset = make_assets(project, 1)[0]
    JobLogLine.objects.create(job=asset.job, message="node 3 finished")

    html = admin_client.get(reverse("admin:generation_job_change", args=[asset.job.pk])).content.decode()

    assert f'<img loading="lazy" src="{reverse("admin:generation_asset_thumb", args=[asset.pk])}"' in html
    assert "node 3 finished" in html


# --- Job status only through job_transition ------------------------------------------------------


def test_job_status_is_not_a_form_field_and_a_post_cannot_change_it(admin_client, owner):
    job = JobFactory(project=make_project(owner))
    url = reverse("admin:generation_job_change", args=[job.pk])

    response = admin_client.get(url)
    assert "status" not in response.context["adminform"].form.fields
    assert 'name="status"' not in response.content.decode()

    admin_client.post(url, {"status": JobStatus.SUCCEEDED, "progress": "1", "prompt_id": "forged"})
    job.refresh_from_db()
    assert (job.status, job.progress, job.prompt_id) == (JobStatus.QUEUED, 0.0, "")


def test_jobs_cannot_be_added_in_the_admin(admin_client):
    assert admin_client.get(reverse("admin:generation_job_add")).status_code == 403


def test_cancel_action_cancels_queued_jobs_and_reports_the_others(admin_client, owner):
    project = make_project(owner)
    queued = make_jobs(project, 2)
    running = JobFactory(project=project, status=JobStatus.RUNNING)
    done = JobFactory(project=project, status=JobStatus.SUCCEEDED)

    response = admin_client.post(
        JOBS,
        {"action": "cancel_queued", "index": 0, "_selected_action": [j.pk for j in [*queued, running, done]]},
        follow=True,
    )

    assert "2 job(s) cancelled; 2 were not queued and were left alone." in messages_of(response)
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert [statuses[j.pk] for j in queued] == [JobStatus.CANCELLED] * 2
    assert statuses[running.pk] == JobStatus.RUNNING
    assert statuses[done.pk] == JobStatus.SUCCEEDED
    cancelled = Job.objects.get(pk=queued[0].pk)
    assert cancelled.finished_at is not None
    assert cancelled.log_lines.filter(message="status → cancelled").exists()


def test_cancel_action_with_nothing_queued_cancels_nothing(admin_client, owner):
    running = JobFactory(project=make_project(owner), status=JobStatus.RUNNING)

    response = admin_client.post(
        JOBS, {"action": "cancel_queued", "index": 0, "_selected_action": [running.pk]}, follow=True
    )

    assert "0 job(s) cancelled; 1 were not queued and were left alone." in messages_of(response)
    running.refresh_from_db()
    assert running.status == JobStatus.RUNNING


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("finished_24h", {"recent", "failed_recent"}), ("failed_today", {"failed_recent"}), ("in_flight", {"running"})],
)
def test_recency_filter(admin_client, owner, choice, expected):
    project = make_project(owner)
    now = timezone.now()
    jobs = {
        "recent": JobFactory(project=project, status=JobStatus.SUCCEEDED, finished_at=now - timedelta(hours=1)),
        "failed_recent": JobFactory(project=project, status=JobStatus.FAILED, finished_at=now),
        "old": JobFactory(project=project, status=JobStatus.FAILED, finished_at=now - timedelta(days=3)),
        "running": JobFactory(project=project, status=JobStatus.RUNNING),
    }

    response = admin_client.get(JOBS, {"recently": choice})

    shown = {name for name, job in jobs.items() if job in response.context["cl"].result_list}
    assert shown == expected


# --- Backends ------------------------------------------------------------------------------------


def test_disable_and_enable_backends(admin_client):
    on, off = BackendFactory(enabled=True), BackendFactory(enabled=False)

    response = admin_client.post(
        BACKENDS, {"action": "disable", "index": 0, "_selected_action": [on.pk, off.pk]}, follow=True
    )
    assert "1 backend(s) disabled; 1 already were." in messages_of(response)
    assert not Backend.objects.filter(enabled=True).exists()

    response = admin_client.post(
        BACKENDS, {"action": "enable", "index": 0, "_selected_action": [on.pk, off.pk]}, follow=True
    )
    assert "2 backend(s) enabled; 0 already were." in messages_of(response)
    assert Backend.objects.filter(enabled=True).count() == 2


def test_backends_set_enabled_counts_only_changes():
    a, b = BackendFactory(enabled=True), BackendFactory(enabled=True)
    assert backends_set_enabled(backend_ids=[a.pk, b.pk], enabled=True) == 0
    assert backends_set_enabled(backend_ids=[a.pk], enabled=False) == 1
    assert list(Backend.objects.order_by("pk").values_list("enabled", flat=True)) == [False, True]


def test_backend_health_fields_are_read_only(admin_client):
    backend = BackendFactory(healthy=False, comfyui_version="0.3.10")
    url = reverse("admin:generation_backend_change", args=[backend.pk])

    form = admin_client.get(url).context["adminform"].form
    assert {"healthy", "comfyui_version", "last_error", "stats"}.isdisjoint(form.fields)

    response = admin_client.post(
        url,
        {
            "name": "renamed",
            "url": backend.url,
            "enabled": "on",
            "max_in_flight": 2,
            "vram_hold_threshold": 0.8,
            "healthy": "on",
            "comfyui_version": "forged",
        },
    )
    assert response.status_code == 302
    backend.refresh_from_db()
    assert (backend.name, backend.healthy, backend.comfyui_version) == ("renamed", False, "0.3.10")

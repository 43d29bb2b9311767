"""GET /api/v1/jobs reads rows, not model instances: every listed value must equal the detail's."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from characters.services import character_create
from generation.api_jobs import JOB_HEAVY_FIELDS
from generation.models import JobKind, JobStatus
from tests.factories import BackendFactory, JobFactory, TemplateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def jobs(project, owner):
    """Jobs whose optional fields are set on some and empty on others."""
    backend = BackendFactory(name="gpu-ü")
    kai = character_create(project=project, name="Kai", design_prompt="x")
    template = TemplateFactory()
    start = timezone.now() - timedelta(hours=3)
    first = JobFactory(project=project)
    made = [first]
    for n in range(1, 12):
        full = n % 2 == 0
        made.append(
            JobFactory(
                project=project,
                created_by=owner if full else None,
                character=kai if full else None,
                template=template if n % 3 == 0 else None,
                backend=backend if full else None,
                status=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED][n % 3],
                kind=JobKind.VIDEO if n % 4 == 0 else JobKind.IMAGE,
                progress=0.25 * (n % 5),
                eta_seconds=1.5 * n if full else None,
                queue_position=n if not full else None,
                seed=None if n == 5 else 2**40 + n,
                started_at=start + timedelta(seconds=n, microseconds=7 * n) if full else None,
                finished_at=start + timedelta(minutes=n) if n % 3 == 0 else None,
                parent=first if full else None,
                reproduce_of=first if n % 3 == 0 else None,
                batch=uuid.UUID(int=n) if full else None,
                error_message="boom <é>" if n % 3 == 1 else "",
                label=f"cfg={n}",
                params={"steps": n},
                graph={"1": {"class_type": "EmptyImage", "inputs": {}}},
            )
        )
    return made


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo"])
def test_every_listed_value_equals_the_detail(api_owner, jobs, zone):
    with override_settings(TIME_ZONE=zone):
        listed = api_owner.get("/api/v1/jobs/?page_size=5&page=2&ordering=finished_at").json()["results"]
        listed += api_owner.get("/api/v1/jobs/?page_size=100").json()["results"]
        assert len(listed) == 5 + len(jobs)
        for row in listed:
            detail = api_owner.get(f"/api/v1/jobs/{row['id']}/").json()
            assert row == {name: value for name, value in detail.items() if name not in JOB_HEAVY_FIELDS}
    named = [row for row in listed if row["backend_name"] is not None]
    assert named and {row["backend_name"] for row in named} == {"gpu-ü"}
    assert any(row["started_at"] and "." in row["started_at"] for row in listed)  # microseconds kept

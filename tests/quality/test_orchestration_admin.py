"""The admin lists orchestrations with their phases, and cancels them through the service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from generation.models import Job
from quality.models import Orchestration
from tests.quality.orchestration_helpers import character_with_reference, flow_project, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


def test_the_admin_shows_the_phases_and_cancels_with_their_jobs(fake, engine, admin_client, owner):
    project = flow_project(owner)
    orchestration = start(project, character_with_reference(project), owner)
    [job] = Job.objects.filter(phase_runs__orchestration=orchestration)

    listing = admin_client.get(reverse("admin:quality_orchestration_changelist"), {"status__exact": "running"})
    assert orchestration in listing.context["cl"].result_list
    page = admin_client.get(reverse("admin:quality_orchestration_change", args=[orchestration.pk])).content.decode()
    assert "weightless-sheet" in page and f"/admin/generation/job/{job.pk}/change/" in page

    response = admin_client.post(
        reverse("admin:quality_orchestration_changelist"),
        {"action": "cancel", "index": 0, "_selected_action": [orchestration.pk]},
    )

    assert response.status_code == 302
    orchestration.refresh_from_db()
    assert orchestration.status == "cancelled" and orchestration.reasons == ["cancelled by admin"]
    assert Job.objects.get(pk=job.pk).status == "cancelled"
    assert Orchestration.objects.count() == 1

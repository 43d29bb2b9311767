from __future__ import annotations

import pytest
from django.urls import reverse

from quality.models import PhaseGate, QualityGate, QualityScore
from tests.factories import AssetFactory, JobFactory, make_project, png_bytes

pytestmark = pytest.mark.django_db

SCORES = reverse("admin:quality_qualityscore_changelist")


@pytest.fixture
def asset(owner):
    project = make_project(owner)
    return AssetFactory(project=project, job=JobFactory(project=project), file__data=png_bytes())


def score(asset, metric: str, value: float | None, threshold: float = 0.7, **fields) -> QualityScore:
    passed = None if value is None else value >= threshold
    status = "ok" if value is not None else "unavailable"
    return QualityScore.objects.create(
        asset=asset, metric=metric, value=value, threshold=threshold, passed=passed, status=status, **fields
    )


def test_scores_show_the_asset_thumbnail(admin_client, asset):
    score(asset, "ccip", 0.8)

    html = admin_client.get(SCORES).content.decode()

    assert f'<img loading="lazy" src="{asset.file.url}"' in html


@pytest.mark.parametrize(
    ("choice", "expected"), [("failed", {"low", "near"}), ("near", {"near", "just_over"}), ("unscored", {"missing"})]
)
def test_margin_filter(admin_client, asset, choice, expected):
    scores = {
        "low": score(asset, "a", 0.2),
        "near": score(asset, "b", 0.68),
        "just_over": score(asset, "c", 0.71),
        "high": score(asset, "d", 0.99),
        "missing": score(asset, "e", None),
    }

    shown = admin_client.get(SCORES, {"margin": choice}).context["cl"].result_list

    assert {name for name, s in scores.items() if s in shown} == expected


def test_scores_and_gates_are_read_only(admin_client, asset):
    row = score(asset, "ccip", 0.8)
    gate = QualityGate.objects.create(job=asset.job, stage="post_gen", passed=True)

    for obj, model in [(row, "qualityscore"), (gate, "qualitygate")]:
        url = reverse(f"admin:quality_{model}_change", args=[obj.pk])
        assert admin_client.get(url).status_code == 200
        assert admin_client.post(url, {"passed": "false"}).status_code == 403
        assert admin_client.get(reverse(f"admin:quality_{model}_add")).status_code == 403
    row.refresh_from_db()
    assert row.passed is True


def phase_gate_post(client, gate: PhaseGate, **data):
    return client.post(reverse("admin:quality_phasegate_change", args=[gate.pk]), data)


def test_opening_a_phase_gate_by_hand_needs_a_reason(admin_client, admin_user, project):
    gate = PhaseGate.objects.create(project=project, phase=1, pass_ratio=0.5, sample_size=10)

    refused = phase_gate_post(admin_client, gate, is_open="on", override_reason="")
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["override_reason"]
    gate.refresh_from_db()
    assert not gate.is_open

    accepted = phase_gate_post(admin_client, gate, is_open="on", override_reason="director approved the sheets")
    assert accepted.status_code == 302
    gate.refresh_from_db()
    assert gate.is_open
    assert gate.overridden_by == admin_user
    assert gate.override_reason == "director approved the sheets"


def test_an_override_reason_cannot_be_erased_afterwards(admin_client, admin_user, project):
    gate = PhaseGate.objects.create(
        project=project, phase=1, is_open=True, overridden_by=admin_user, override_reason="why not"
    )

    response = phase_gate_post(admin_client, gate, is_open="on", override_reason="")

    assert response.status_code == 200
    gate.refresh_from_db()
    assert gate.override_reason == "why not"


def test_phase_gates_are_not_added_by_hand(admin_client):
    assert admin_client.get(reverse("admin:quality_phasegate_add")).status_code == 403

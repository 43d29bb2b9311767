from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from quality.models import PhaseGate, QualityScore
from tests.factories import AssetFactory, make_project


@pytest.mark.django_db
def test_a_scored_metric_must_have_a_value_and_an_unavailable_one_need_not(owner):
    project = make_project(owner)
    asset = AssetFactory(project=project)
    QualityScore.objects.create(asset=asset, metric="aesthetic", status="unavailable", details={"fix": "x"})
    with pytest.raises(IntegrityError), transaction.atomic():
        QualityScore.objects.create(asset=asset, metric="aesthetic", status="ok", value=None)


@pytest.mark.django_db
def test_one_phase_gate_per_project_phase_and_overrides_need_a_reason(owner):
    project = make_project(owner)
    PhaseGate.objects.create(project=project, phase=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        PhaseGate.objects.create(project=project, phase=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        PhaseGate.objects.create(project=project, phase=2, is_open=True, overridden_by=owner, override_reason="")
    with pytest.raises(IntegrityError), transaction.atomic():
        PhaseGate.objects.create(project=project, phase=4)

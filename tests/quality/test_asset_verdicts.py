"""The asset's copies of its current verdict and scores (what the gallery filters on) follow every
write of scores: scoring, a newer score of a metric, and an evaluation of the asset."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from generation.models import Asset, JobStatus
from quality.models import QualityScore, ScoreStatus
from quality.services.common import QualityError
from quality.services.evaluate import media_evaluate
from quality.services.scoring import jobs_score
from quality.services.verdicts import assets_quality_refresh
from tests.factories import AssetFactory, JobFactory, make_project
from tests.quality.scoring_helpers import png

pytestmark = pytest.mark.django_db


def scored(asset, metric: str, value: float | None, passed: bool | None) -> None:
    status = ScoreStatus.OK if value is not None else ScoreStatus.UNAVAILABLE
    QualityScore.objects.create(asset=asset, metric=metric, value=value, passed=passed, status=status)
    assets_quality_refresh(asset_ids=[asset.pk])


def copies(asset) -> tuple[str, float | None, float | None]:
    asset = Asset.objects.get(pk=asset.pk)
    return asset.verdict, asset.aesthetic, asset.similarity


def test_a_newer_score_of_a_metric_replaces_the_copy(owner):
    asset = AssetFactory(project=make_project(owner))
    assert copies(asset) == ("unscored", None, None)
    scored(asset, "aesthetic", 4.0, False)
    scored(asset, "character_similarity", 0.8, True)
    assert copies(asset) == ("failed", 4.0, 0.8)
    scored(asset, "aesthetic", 6.5, True)  # re-scored with a new model or threshold
    assert copies(asset) == ("passed", 6.5, 0.8)
    scored(asset, "character_similarity", None, None)  # the newest run could not run: no number
    assert copies(asset) == ("passed", 6.5, None)


def test_the_gallery_filters_follow_a_rescore(owner):
    project = make_project(owner)
    asset = AssetFactory(project=project)
    scored(asset, "aesthetic", 4.0, False)
    client = Client()
    client.force_login(owner)

    def shown(query: str) -> bool:
        return f'data-asset="{asset.pk}"' in client.get(reverse("gallery") + query).content.decode()

    assert shown("?status=failed") and not shown("?status=passed") and not shown("?min_aesthetic=6")
    scored(asset, "aesthetic", 7.0, True)
    assert shown("?status=passed") and not shown("?status=failed") and shown("?min_aesthetic=6")


def test_an_evaluation_that_cannot_read_the_asset_fails_its_copy(owner):
    project = make_project(owner)
    asset = AssetFactory(project=project)
    scored(asset, "aesthetic", 7.0, True)
    with pytest.raises(QualityError):
        media_evaluate(data=b"not an image", project=project, asset=asset, max_bytes=1_000_000)
    assert copies(asset) == ("failed", 7.0, None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
@pytest.mark.usefixtures("channel_layer")
def test_scoring_a_job_writes_its_outputs_copies(owner, models):
    project = make_project(owner, art_kind="photoreal", threshold_aesthetic=0.0)
    job = JobFactory(project=project, created_by=owner, status=JobStatus.SUCCEEDED)
    good = AssetFactory(project=project, job=job, file=ContentFile(png(), name="good.png"))
    broken = AssetFactory(project=project, job=job, file=ContentFile(b"not an image", name="broken.png"))
    jobs_score(job_ids=[job.pk])
    aesthetic = QualityScore.objects.get(asset=good, metric="aesthetic")
    assert copies(good) == ("passed", aesthetic.value, None)
    assert copies(broken) == ("failed", None, None)

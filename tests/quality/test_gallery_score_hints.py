"""The gallery's score filters say when no output has that score yet (a fresh install scores
nothing until its models are in), instead of silently emptying the grid."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from quality.models import QualityScore, ScoreStatus
from tests.factories import AssetFactory, make_project

pytestmark = pytest.mark.django_db


def hints(user, **query) -> set[str]:
    client = Client()
    client.force_login(user)
    html = client.get(reverse("gallery"), query).content.decode()
    return set(re.findall(r'data-score-hint="(\w+)">no outputs scored yet<', html))


def test_each_score_filter_says_when_no_output_has_that_score(owner, outsider, project):
    asset = AssetFactory(project=project)
    QualityScore.objects.create(asset=asset, metric="aesthetic", status=ScoreStatus.UNAVAILABLE)  # could not run
    theirs = AssetFactory(project=make_project(outsider, name="Theirs"))
    QualityScore.objects.create(asset=theirs, metric="aesthetic", value=6.0, status=ScoreStatus.OK)

    assert hints(owner) == {"min_aesthetic", "min_similarity"}
    assert hints(owner, min_aesthetic="6") == {"min_aesthetic", "min_similarity"}  # also while filtering

    QualityScore.objects.create(asset=asset, metric="aesthetic", value=5.5, status=ScoreStatus.OK)

    assert hints(owner) == {"min_similarity"}
    assert hints(outsider) == {"min_similarity"}

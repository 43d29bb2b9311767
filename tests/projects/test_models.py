from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from projects.models import Episode, GenerationStyle, Project
from tests.factories import make_project


@pytest.mark.django_db
def test_new_project_gets_the_seed_presets(owner):
    project = make_project(owner)
    style = GenerationStyle.objects.get(project=project)
    assert style.preset("draft") == {"steps": 15, "cfg": 7.0, "denoise": 0.8}
    assert style.preset("production") == {"steps": 25, "cfg": 8.0, "denoise": 1.0}
    assert project.threshold_similarity == 0.70
    assert project.phase == 1


@pytest.mark.django_db
def test_database_refuses_out_of_range_thresholds_and_phases(owner):
    project = make_project(owner)
    for field, bad in [("threshold_similarity", 1.5), ("phase", 4), ("threshold_aesthetic", -1)]:
        with pytest.raises(IntegrityError), transaction.atomic():
            Project.objects.filter(pk=project.pk).update(**{field: bad})


@pytest.mark.django_db
def test_episode_numbers_are_unique_per_project(owner):
    a, b = make_project(owner, "A"), make_project(owner, "B")
    Episode.objects.create(project=a, number=1, title="Pilot")
    Episode.objects.create(project=b, number=1, title="Pilot")
    with pytest.raises(IntegrityError), transaction.atomic():
        Episode.objects.create(project=a, number=1, title="Again")

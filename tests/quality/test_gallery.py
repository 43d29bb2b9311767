"""The gallery with quality: verdict and score filters, scores on tiles, constant queries."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from quality.models import QualityScore, ScoreStatus
from quality.selectors import Verdict, gallery_assets
from quality.services.verdicts import assets_quality_refresh
from tests.factories import AssetFactory, CharacterFactory, JobFactory, make_project

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def score(asset, metric: str, value: float | None, passed: bool | None, **fields) -> QualityScore:
    status = fields.pop("status", ScoreStatus.OK if value is not None else ScoreStatus.UNAVAILABLE)
    row = QualityScore.objects.create(asset=asset, metric=metric, value=value, passed=passed, status=status, **fields)
    assets_quality_refresh(asset_ids=[asset.pk])  # as scoring does with the rows it writes
    return row


def shown(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'data-asset="(\d+)"', html)}


@pytest.fixture
def assets(project):
    good = AssetFactory(project=project)
    score(good, "aesthetic", 7.2, True)
    score(good, "character_similarity", 0.81, True)
    bad = AssetFactory(project=project)
    score(bad, "aesthetic", 4.1, False)
    score(bad, "character_similarity", 0.74, True)
    plain = AssetFactory(project=project)  # never scored
    # Failed at first, then re-scored with a better model: only the newest row of a metric counts.
    rescored = AssetFactory(project=project)
    score(rescored, "aesthetic", 3.0, False)
    score(rescored, "aesthetic", 6.5, True)
    # The metric could not run: no number, no verdict.
    missing = AssetFactory(project=project)
    score(missing, "character_similarity", None, None)
    return {"good": good, "bad": bad, "plain": plain, "rescored": rescored, "missing": missing}


def test_verdict_filter(owner, assets):
    client = client_for(owner)
    ids = {name: a.pk for name, a in assets.items()}
    passed = shown(client.get(reverse("gallery"), {"status": "passed"}).content.decode())
    failed = shown(client.get(reverse("gallery"), {"status": "failed"}).content.decode())
    unscored = shown(client.get(reverse("gallery"), {"status": "unscored"}).content.decode())
    assert passed == {ids["good"], ids["rescored"]}
    assert failed == {ids["bad"]}
    assert unscored == {ids["plain"], ids["missing"]}


def test_score_thresholds_combine_and_leave_out_assets_without_that_score(owner, assets):
    client = client_for(owner)
    ids = {name: a.pk for name, a in assets.items()}
    aesthetic = shown(client.get(reverse("gallery"), {"min_aesthetic": "6"}).content.decode())
    assert aesthetic == {ids["good"], ids["rescored"]}
    similar = shown(client.get(reverse("gallery"), {"min_similarity": "0.75"}).content.decode())
    assert similar == {ids["good"]}
    both = shown(client.get(reverse("gallery"), {"min_aesthetic": "4", "min_similarity": "0.7"}).content.decode())
    assert both == {ids["good"], ids["bad"]}


def test_tiles_show_current_scores_and_a_gate_badge_passed_failed_or_not_evaluated(owner, assets):
    html = client_for(owner).get(reverse("gallery")).content.decode()
    tiles = {int(pk): body for pk, body in re.findall(r'data-asset="(\d+)"(.*?)</a>', html, re.S)}
    good, bad, plain, rescored = (tiles[assets[n].pk] for n in ("good", "bad", "plain", "rescored"))
    assert "A 7.2" in good and "S 0.81" in good and 'data-badge="passed">passed<' in good
    assert "A 4.1" in bad and 'data-badge="failed">failed<' in bad
    assert "A 6.5" in rescored and "A 3.0" not in rescored and 'data-badge="passed"' in rescored
    # Never scored, or the metric could not run: said so, rather than no badge at all.
    assert 'data-badge="unscored">not evaluated<' in plain and "data-score" not in plain
    assert 'data-badge="unscored">not evaluated<' in tiles[assets["missing"].pk]


def test_htmx_filter_gets_only_the_grid_and_bad_thresholds_are_shown(owner, assets):
    client = client_for(owner)
    fragment = client.get(reverse("gallery"), {"status": "failed"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and shown(fragment) == {assets["bad"].pk}
    page = client.get(reverse("gallery"), {"min_aesthetic": "lots", "status": "failed"}).content.decode()
    assert "Enter a number" in page
    assert shown(page) == {assets["bad"].pk}  # the valid filter still applies
    assert 'value="lots"' in page  # what the user typed stays


def test_filters_compose_with_project_character_and_kind(owner, project):
    kai = CharacterFactory(project=project)
    mine = AssetFactory(project=project, job=JobFactory(project=project, character=kai))
    score(mine, "aesthetic", 8.0, True)
    video = AssetFactory(project=project, kind="video", mime="video/webm")
    score(video, "aesthetic", 8.0, True)
    client = client_for(owner)
    by_character = shown(client.get(reverse("gallery"), {"character": kai.pk, "status": "passed"}).content.decode())
    assert by_character == {mine.pk}
    by_kind = shown(client.get(reverse("gallery"), {"kind": "video", "min_aesthetic": "7"}).content.decode())
    assert by_kind == {video.pk}


def test_outsider_sees_none_of_it(owner, outsider, assets):
    theirs = make_project(outsider, name="Elsewhere")
    own = AssetFactory(project=theirs)
    html = client_for(outsider).get(reverse("gallery"), {"status": ""}).content.decode()
    assert shown(html) == {own.pk}
    assert list(gallery_assets(user=outsider, verdict=Verdict.PASSED)) == []


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("gallery"))
    assert response.status_code == 302 and reverse("login") in response.url


def _scored_assets(owner, n: int) -> None:
    for i in range(n):
        project = make_project(owner, name=f"G{n}-{i}")
        character = CharacterFactory(project=project)
        asset = AssetFactory(project=project, job=JobFactory(project=project, character=character))
        score(asset, "aesthetic", 5.0 + i % 4, i % 3 != 0)
        score(asset, "character_similarity", 0.5 + (i % 5) / 10, True)
        score(asset, "aesthetic", 6.0, True)  # a re-score


@pytest.mark.parametrize("query", [{}, {"status": "passed", "min_aesthetic": "5", "min_similarity": "0.5"}])
def test_constant_queries_for_3_and_30_scored_assets(owner, query, django_assert_max_num_queries):
    client = client_for(owner)
    _scored_assets(owner, 3)
    with django_assert_max_num_queries(14) as small:
        response = client.get(reverse("gallery"), query)
    assert response.status_code == 200 and len(shown(response.content.decode())) == 3
    _scored_assets(owner, 27)
    with django_assert_max_num_queries(len(small.captured_queries)) as large:
        response = client.get(reverse("gallery"), query)
    assert len(shown(response.content.decode())) == 30
    assert len(large.captured_queries) == len(small.captured_queries)


def test_a_filter_change_pushes_the_address_of_the_grid_it_answers(owner, assets):
    client = client_for(owner)
    query = {"project": "", "kind": "", "status": "failed", "min_aesthetic": "4"}
    response = client.get(reverse("gallery"), query, HTTP_HX_REQUEST="true")
    assert response["HX-Push-Url"] == reverse("gallery") + "?status=failed&min_aesthetic=4"
    assert shown(response.content.decode()) == {assets["bad"].pk}
    cleared = client.get(reverse("gallery"), {"status": ""}, HTTP_HX_REQUEST="true")
    assert cleared["HX-Push-Url"] == reverse("gallery")
    # Back restoring a page from the server, and a plain page load, push nothing.
    restore = client.get(reverse("gallery"), query, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "HX-Push-Url" not in restore and "<html" in restore.content.decode()
    assert "HX-Push-Url" not in client.get(reverse("gallery"), query)

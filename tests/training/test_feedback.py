"""Rejections teach the character's negative prompt; undo takes back exactly what was taught;
rejected generated images can be regenerated with the refined prompt, a bounded number of times."""

from __future__ import annotations

import html

import pytest
from django.test import Client
from django.urls import reverse

from characters.models import Character
from generation import tasks
from generation.models import Job, JobStatus
from generation.services.resolve import resolve_job_parameters
from generation.services.submit import jobs_create
from tests.factories import AssetFactory, CharacterFactory, make_project
from tests.generation.engine_helpers import Enqueued, shipped
from tests.training.test_review import hx, make_image
from training.models import DatasetImage, ReviewStatus
from training.review.feedback import CATEGORY_TERMS, category_terms, parse_learned_negatives
from training.review.services import dataset_image_regenerate
from training.services import (
    CurationError,
    dataset_images_approve,
    dataset_images_reject,
    dataset_images_reset,
)

pytestmark = pytest.mark.django_db

ANATOMY = {"bad anatomy": 1, "bad hands": 1, "extra fingers": 1, "missing fingers": 1}


def act(pk: int, action: str) -> str:
    return reverse("review-action", args=[pk, action])


def learned(character) -> dict:
    return Character.objects.get(pk=character.pk).learned_negatives


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def kai(project):
    return CharacterFactory(project=project, name="Kai", trigger_word="kai_tw")


@pytest.fixture
def images(kai):
    return [make_image(kai) for _ in range(3)]


def test_every_category_maps_to_sensible_terms_and_only_duplicate_and_other_teach_nothing():
    from training.models import RejectionCategory

    assert set(CATEGORY_TERMS) == set(RejectionCategory.values)
    assert CATEGORY_TERMS["bad_anatomy"] == ("bad anatomy", "bad hands", "extra fingers", "missing fingers")
    silent = {c for c, terms in CATEGORY_TERMS.items() if not terms}
    assert silent == {"duplicate", "other", "wrong_character"}  # wrong_character: the other one's trigger word


def test_categories_teach_prompt_terms_not_their_own_labels():
    from training.models import RejectionCategory

    for category, label in RejectionCategory.choices:
        for art_kind in ("anime", "photoreal"):
            terms = category_terms(category, art_kind=art_kind)
            assert label.lower() not in terms
            assert not any(word in term for term in terms for word in ("wrong", "off-model", "mismatch in style"))
    assert "bad colors" in category_terms("off_model_colours")
    assert "mismatched clothing" in category_terms("wrong_outfit")


def test_a_photoreal_style_mismatch_steers_away_from_drawn_styles_not_from_realism(project, owner):
    project.art_kind = "photoreal"
    project.save(update_fields=["art_kind"])
    actor = CharacterFactory(project=project, name="Aiko")
    image = make_image(actor)
    dataset_images_reject(image_ids=[image.pk], categories=["style_mismatch"], reviewer=owner)
    weights = learned(actor)
    assert "anime" in weights and "cartoon" in weights
    assert "realistic" not in weights and "photorealistic" not in weights


def test_weights_count_occurrences_and_approval_teaches_nothing(kai, images, owner):
    dataset_images_reject(image_ids=[images[0].pk], categories=["bad_anatomy"], reviewer=owner)
    assert learned(kai) == ANATOMY

    dataset_images_reject(image_ids=[images[1].pk], categories=["bad_anatomy", "low_quality"], reviewer=owner)
    weights = learned(kai)
    assert weights["bad hands"] == 2 and weights["blurry"] == 1 and weights["low quality"] == 1

    dataset_images_approve(image_ids=[images[2].pk], reviewer=owner)
    assert learned(kai) == weights


def test_reset_approve_and_re_rejection_take_back_exactly_what_a_rejection_taught(kai, images, owner):
    kai.learned_negatives = {"bad hands": 5, "extra arms": 2}  # edited by hand earlier
    kai.save()
    dataset_images_reject(image_ids=[images[0].pk], categories=["bad_anatomy"], reviewer=owner)
    assert learned(kai)["bad hands"] == 6 and learned(kai)["missing fingers"] == 1

    dataset_images_reject(image_ids=[images[0].pk], categories=["artifacts"], reviewer=owner)  # changed mind
    assert learned(kai)["bad hands"] == 5 and "missing fingers" not in learned(kai)
    assert learned(kai)["jpeg artifacts"] == 1

    dataset_images_approve(image_ids=[images[0].pk], reviewer=owner)
    assert learned(kai) == {"bad hands": 5, "extra arms": 2}

    dataset_images_reject(image_ids=[images[1].pk], categories=["wrong_outfit"], reviewer=owner)
    dataset_images_reset(image_ids=[images[1].pk])
    assert learned(kai) == {"bad hands": 5, "extra arms": 2}


def test_other_and_duplicate_add_no_term_but_wrong_character_adds_the_other_ones_trigger_word(kai, images, owner):
    mei = CharacterFactory(project=kai.project, name="Mei", trigger_word="mei_tw")
    dataset_images_reject(image_ids=[images[0].pk], categories=["other"], note="a cat", reviewer=owner)
    dataset_images_reject(image_ids=[images[1].pk], categories=["duplicate"], reviewer=owner)
    assert learned(kai) == {}

    DatasetImage.objects.filter(pk=images[2].pk).update(classified_character=mei, classification_confidence=0.9)
    dataset_images_reject(image_ids=[images[2].pk], categories=["wrong_character"], reviewer=owner)
    assert learned(kai) == {"mei_tw": 1}
    assert learned(mei) == {}


def test_undo_on_the_review_page_reverses_the_weights(member, kai, images):
    client = client_for(member)
    hx(client, act(images[0].pk, "reject"), {"category": ["bad_anatomy", "off_model_colours"]})
    hx(client, act(images[1].pk, "reject"), {"category": "bad_anatomy"})
    assert learned(kai)["bad hands"] == 2 and learned(kai)["color bleeding"] == 1

    hx(client, reverse("review-undo"))
    assert learned(kai)["bad hands"] == 1
    hx(client, reverse("review-undo"))
    assert learned(kai) == {}
    assert DatasetImage.objects.get(pk=images[0].pk).status == ReviewStatus.PENDING


def test_a_new_rejection_shows_up_in_the_characters_resolved_prompt(member, kai, images):
    before = resolve_job_parameters(project=kai.project, mode="draft", character=kai)
    assert "inconsistent colors" not in before.negative

    hx(client_for(member), act(images[0].pk, "reject"), {"category": "off_model_colours"})

    kai.refresh_from_db()
    resolved = resolve_job_parameters(project=kai.project, mode="draft", character=kai)
    assert resolved.negative.startswith(before.negative + ", ")
    assert "inconsistent colors" in resolved.negative and "bad colors" in resolved.negative
    assert "off-model colours" not in resolved.negative.lower()
    # and on the character page's resolved-prompt panel
    preview = client_for(member).get(reverse("character-preview", args=[kai.pk]))
    assert "color bleeding" in html.unescape(preview.content.decode())


# --- The character page's editor -------------------------------------------------------------------


def test_character_page_lists_the_terms_heaviest_first_and_editors_can_edit_them(member, kai):
    kai.learned_negatives = {"blurry": 1, "bad hands": 3}
    kai.save()
    client = client_for(member)
    page = html.unescape(client.get(reverse("character-detail", args=[kai.pk])).content.decode())
    assert page.index("bad hands") < page.index("blurry")
    assert "bad hands: 3\nblurry: 1" in page  # the editor's text

    url = reverse("character-learned-negatives", args=[kai.pk])
    response = client.post(url, {"learned_negatives": "bad hands: 4\nblurry: 0\nextra arms\n"}, follow=True)
    assert learned(kai) == {"bad hands": 4, "extra arms": 1}
    assert "Learned negatives saved (2 terms)." in html.unescape(response.content.decode())


def test_a_bad_edit_changes_nothing_and_says_why(member, kai):
    kai.learned_negatives = {"bad hands": 3}
    kai.save()
    url = reverse("character-learned-negatives", args=[kai.pk])
    response = client_for(member).post(url, {"learned_negatives": "blurry: lots"}, follow=True)
    assert "line 1: the weight must be a number" in html.unescape(response.content.decode())
    assert learned(kai) == {"bad hands": 3}


def test_editing_learned_negatives_needs_edit_rights(viewer, outsider, kai):
    url = reverse("character-learned-negatives", args=[kai.pk])
    assert client_for(viewer).post(url, {"learned_negatives": "x: 1"}).status_code == 403
    assert client_for(outsider).post(url, {"learned_negatives": "x: 1"}).status_code == 404
    assert learned(kai) == {}
    page = client_for(viewer).get(reverse("character-detail", args=[kai.pk])).content.decode()
    assert "Save learned negatives" not in page


@pytest.mark.parametrize(
    ("text", "error"),
    [("a, b: 1", "no commas"), (": 2", "a term is missing"), ("x: -1", "between 0"), ("x" * 81, "at most 80")],
)
def test_the_editor_refuses_bad_lines(text, error):
    from training.review.feedback import LearnedNegativesError

    with pytest.raises(LearnedNegativesError, match=error):
        parse_learned_negatives(text)


# --- Regeneration with the refined prompt ----------------------------------------------------------


@pytest.fixture
def enqueued(monkeypatch) -> Enqueued:
    runs = Enqueued()
    monkeypatch.setattr(tasks, "enqueue_run", runs)
    return runs


def generated_image(project, character, owner, *, negative: str = "") -> DatasetImage:
    [job] = jobs_create(
        user=owner,
        project=project,
        template=shipped("weightless-image"),
        character=character,
        prompt="standing on a rooftop",
        negative=negative,
        overrides={"width": 64, "height": 64},
    )
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    asset = AssetFactory(project=project, job=job)
    return make_image(character, source="generated", origin_job=job, origin_asset=asset)


def test_reject_with_regenerate_queues_a_child_with_the_learned_negatives(
    django_capture_on_commit_callbacks, member, owner, kai, enqueued
):
    image = generated_image(kai.project, kai, owner, negative="umbrella")
    origin = image.origin_job
    assert "extra fingers" not in origin.negative_prompt

    with django_capture_on_commit_callbacks(execute=True):
        response = hx(client_for(member), act(image.pk, "reject"), {"category": "bad_anatomy", "regenerate": "1"})

    child = Job.objects.get(parent=origin)
    assert f"Regenerating with the refined prompt as job {child.pk}" in html.unescape(response.content.decode())
    assert enqueued.take() == [child.pk]
    assert "extra fingers, missing fingers" in child.negative_prompt
    assert "umbrella" in child.negative_prompt  # the request's own negative is kept
    assert child.prompt == origin.prompt and child.seed != origin.seed
    assert child.created_by == member and child.template_id == origin.template_id
    assert child.log_lines.filter(message__contains=f"regeneration of job {origin.pk}").exists()


def test_reject_without_the_checkbox_regenerates_nothing(member, owner, kai, enqueued):
    image = generated_image(kai.project, kai, owner)
    hx(client_for(member), act(image.pk, "reject"), {"category": "bad_anatomy"})
    assert not Job.objects.filter(parent=image.origin_job).exists()


def test_regeneration_is_bounded_by_the_projects_limit_and_once_per_image(owner, enqueued):
    project = make_project(owner, name="Bounded", max_regenerations=2)
    kai = CharacterFactory(project=project, name="Kai")
    first = generated_image(project, kai, owner)
    dataset_images_reject(image_ids=[first.pk], categories=["artifacts"], reviewer=owner)
    child = dataset_image_regenerate(image=first, user=owner)
    with pytest.raises(CurationError, match=f"already regenerated as job {child.pk}"):
        dataset_image_regenerate(image=first, user=owner)

    # The child's output is rejected too: a second regeneration (attempt 3) is still allowed…
    second = make_image(kai, source="generated", origin_job=child)
    dataset_images_reject(image_ids=[second.pk], categories=["artifacts"], reviewer=owner)
    grandchild = dataset_image_regenerate(image=second, user=owner)
    assert grandchild.parent_id == child.pk
    # …and the third is refused: two regenerations from the original request.
    third = make_image(kai, source="generated", origin_job=grandchild)
    dataset_images_reject(image_ids=[third.pk], categories=["artifacts"], reviewer=owner)
    with pytest.raises(CurationError, match="regeneration limit reached"):
        dataset_image_regenerate(image=third, user=owner)
    assert Job.objects.filter(project=project).count() == 3


def test_only_rejected_generated_images_are_regenerated(owner, kai, images, enqueued):
    with pytest.raises(CurationError, match="only a rejected image"):
        dataset_image_regenerate(image=images[0], user=owner)
    dataset_images_reject(image_ids=[images[0].pk], categories=["artifacts"], reviewer=owner)
    with pytest.raises(CurationError, match="not generated by Tower"):
        dataset_image_regenerate(image=images[0], user=owner)


def test_a_refused_regeneration_keeps_the_rejection_and_says_why(member, owner, enqueued):
    project = make_project(owner, name="No retries", max_regenerations=0)
    from projects.services import project_member_set

    project_member_set(project=project, username=member.username, role="editor")
    kai = CharacterFactory(project=project, name="Kai")
    image = generated_image(project, kai, owner)

    response = hx(client_for(member), act(image.pk, "reject"), {"category": "artifacts", "regenerate": "1"})

    assert "Not regenerated: regeneration limit reached" in html.unescape(response.content.decode())
    assert DatasetImage.objects.get(pk=image.pk).status == ReviewStatus.REJECTED
    assert not Job.objects.filter(parent=image.origin_job).exists()


def test_undo_of_a_rejection_cancels_its_queued_regeneration(
    django_capture_on_commit_callbacks, member, owner, kai, enqueued
):
    image = generated_image(kai.project, kai, owner)
    client = client_for(member)
    hx(client, act(image.pk, "reject"), {"category": "artifacts", "regenerate": "1"})
    child = Job.objects.get(parent=image.origin_job)

    response = hx(client, reverse("review-undo"))

    assert f"Regeneration job {child.pk} was cancelled" in html.unescape(response.content.decode())
    assert Job.objects.get(pk=child.pk).status == JobStatus.CANCELLED
    assert learned(kai) == {}


def test_the_review_card_says_which_terms_each_category_adds(member, kai, images):
    page = client_for(member).get(reverse("review"), {"character": kai.pk}).content.decode()
    assert 'data-terms="bad colors, inconsistent colors, color bleeding, oversaturated"' in page
    assert "adds to the character's negatives: bad anatomy, bad hands, extra fingers" in page


def test_learned_label_terms_of_earlier_rejections_become_model_terms(kai, images, owner):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("training.migrations.0006_learned_negatives_model_terms")
    kai.learned_negatives = {
        "off-model colours": 2,
        "wrong hair colour": 2,
        "wrong eye colour": 3,
        "wrong outfit": 1,
        "bad hands": 4,
        "extra arms": 1,
    }
    kai.save()
    migration.forwards(apps, None)

    weights = learned(kai)
    assert not {"off-model colours", "wrong hair colour", "wrong eye colour", "wrong outfit"} & set(weights)
    assert weights["bad colors"] == weights["color bleeding"] == 3
    assert weights["mismatched clothing"] == weights["extra accessories"] == 1
    assert (weights["bad hands"], weights["extra arms"]) == (4, 1)
    # A rejection withdrawn afterwards takes back exactly the new terms it taught.
    dataset_images_reject(image_ids=[images[0].pk], categories=["off_model_colours"], reviewer=owner)
    dataset_images_approve(image_ids=[images[0].pk], reviewer=owner)
    assert learned(kai) == weights


def test_a_regeneration_drops_retired_label_terms_from_an_old_jobs_negative(
    django_capture_on_commit_callbacks, member, owner, kai, enqueued
):
    # A job made before the terms changed carries the old learned label in its negative prompt.
    image = generated_image(kai.project, kai, owner, negative="umbrella, off-model colours")
    with django_capture_on_commit_callbacks(execute=True):
        hx(client_for(member), act(image.pk, "reject"), {"category": "off_model_colours", "regenerate": "1"})
    child = Job.objects.get(parent=image.origin_job)
    assert "umbrella" in child.negative_prompt and "bad colors" in child.negative_prompt
    assert "off-model colours" not in child.negative_prompt

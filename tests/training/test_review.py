"""The keyboard review page, through its forms: approve, reject with a category, skip, undo, promote."""

from __future__ import annotations

import hashlib
import html
import itertools

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from characters.models import ReferenceImage
from tests.factories import CharacterFactory, make_project, png_bytes
from training.models import DatasetImage, ReviewStatus

pytestmark = pytest.mark.django_db

REVIEW = reverse("review")
UNDO = reverse("review-undo")
_colours = itertools.count(1)


def make_image(character, **fields) -> DatasetImage:
    n = next(_colours)
    data = png_bytes(96, 96, colour=((n * 37) % 256, (n * 91) % 256, (n * 13) % 256))
    fields.setdefault("source", "upload")
    image = DatasetImage(character=character, sha256=hashlib.sha256(data).hexdigest(), width=96, height=96, **fields)
    image.image.save(f"r{n}.png", ContentFile(data), save=False)
    image.save()
    return image


def act(pk: int, action: str) -> str:
    return reverse("review-action", args=[pk, action])


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def hx(client: Client, url: str, data: dict | None = None):
    return client.post(url, data or {}, HTTP_HX_REQUEST="true")


def text(response) -> str:
    return html.unescape(response.content.decode())


def shown(response) -> int | None:
    image = response.context["image"]
    return image.pk if image else None


def status_of(image) -> str:
    return DatasetImage.objects.get(pk=image.pk).status


@pytest.fixture
def kai(project):
    return CharacterFactory(project=project, name="Kai", trigger_word="kai_tw")


@pytest.fixture
def queue(kai):
    return [make_image(kai, caption=f"kai_tw, pose {i}") for i in range(3)]


@pytest.fixture
def editor(member):
    return client_for(member)


def test_page_shows_the_oldest_pending_image_large_with_its_details_and_preloads_the_next(editor, queue, kai):
    kai_2 = CharacterFactory(project=kai.project, name="Mei")
    DatasetImage.objects.filter(pk=queue[0].pk).update(
        classified_character=kai_2, classification_confidence=0.83, classification_method="llm"
    )

    response = editor.get(REVIEW, {"project": kai.project_id})

    assert response.status_code == 200
    assert shown(response) == queue[0].pk
    page = text(response)
    assert 'id="review-current"' in page and queue[0].image.url in page
    assert "Mei (0.83)" in page and "differs" in page
    assert "kai_tw, pose 0" in page and "Upload" in page
    assert f'<link rel="preload" as="image" href="{queue[1].image.url}">' in page
    assert response.context["left"] == 3 and response.context["reviewed"] == 0
    for digit, label in (("1", "Wrong character"), ("3", "Bad anatomy or hands"), ("9", "Other")):
        assert f"<kbd>{digit}</kbd>{label}" in page
    assert "js/review.js" in page


def test_approve_through_htmx_returns_the_next_card_and_counts(editor, member, queue, kai):
    response = hx(editor, act(queue[0].pk, "approve"), {"project": kai.project_id, "status": "pending"})

    assert response.status_code == 200
    assert response.templates[0].name == "training/review/_card.html"
    assert status_of(queue[0]) == ReviewStatus.APPROVED
    assert DatasetImage.objects.get(pk=queue[0].pk).reviewed_by == member
    assert shown(response) == queue[1].pk
    assert (response.context["left"], response.context["reviewed"]) == (2, 1)
    assert f"Image #{queue[0].pk} approved." in text(response)


def test_plain_post_redirects_to_the_page_with_the_filter_and_the_next_image(editor, queue, kai):
    response = editor.post(act(queue[0].pk, "approve"), {"character": kai.pk, "status": "pending"})

    assert response.status_code == 302
    assert response["Location"].startswith(REVIEW) and f"character={kai.pk}" in response["Location"]
    page = editor.get(response["Location"])
    assert shown(page) == queue[1].pk
    assert f"Image #{queue[0].pk} approved." in text(page)


def test_reject_with_a_category_records_it_and_moves_on(editor, queue):
    response = hx(editor, act(queue[0].pk, "reject"), {"category": "bad_anatomy"})

    image = DatasetImage.objects.get(pk=queue[0].pk)
    assert (image.status, image.rejection_categories) == ("rejected", ["bad_anatomy"])
    assert shown(response) == queue[1].pk
    assert "rejected (Bad anatomy or hands)" in text(response)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "choose at least one rejection category"),
        ({"category": "made_up"}, "unknown categories: made_up"),
        ({"category": "other", "note": "  "}, "'other' needs a note"),
    ],
)
def test_an_invalid_rejection_changes_nothing_and_shows_the_same_image(editor, queue, kai, data, message):
    for post in (hx, lambda c, url, d: c.post(url, d)):
        response = post(editor, act(queue[0].pk, "reject"), data)
        assert response.status_code == 400
        assert shown(response) == queue[0].pk
        assert message in text(response)
    assert status_of(queue[0]) == ReviewStatus.PENDING
    kai.refresh_from_db()
    assert kai.learned_negatives == {}


def test_other_with_a_note_is_accepted(editor, queue):
    hx(editor, act(queue[0].pk, "reject"), {"category": "other", "note": "a cat in the background"})

    image = DatasetImage.objects.get(pk=queue[0].pk)
    assert (image.rejection_categories, image.rejection_note) == (["other"], "a cat in the background")


def test_skip_moves_on_without_changing_the_image_and_undo_brings_it_back(editor, queue):
    response = hx(editor, act(queue[0].pk, "skip"))

    assert status_of(queue[0]) == ReviewStatus.PENDING
    assert shown(response) == queue[1].pk
    assert (response.context["left"], response.context["skipped"], response.context["reviewed"]) == (2, 1, 0)
    assert shown(editor.get(REVIEW)) == queue[1].pk  # a reload keeps the skip

    response = hx(editor, UNDO)
    assert shown(response) == queue[0].pk
    assert (response.context["left"], response.context["skipped"]) == (3, 0)


def test_undo_is_a_stack_of_this_sessions_actions(editor, queue, kai):
    hx(editor, act(queue[0].pk, "approve"))
    hx(editor, act(queue[1].pk, "reject"), {"category": "artifacts"})
    hx(editor, act(queue[2].pk, "skip"))

    response = hx(editor, UNDO)  # the skip
    assert shown(response) == queue[2].pk
    response = hx(editor, UNDO)  # the rejection
    assert shown(response) == queue[1].pk
    assert status_of(queue[1]) == ReviewStatus.PENDING
    assert DatasetImage.objects.get(pk=queue[1].pk).rejection_categories == []
    response = hx(editor, UNDO)  # the approval
    assert shown(response) == queue[0].pk and status_of(queue[0]) == ReviewStatus.PENDING
    assert response.context["reviewed"] == 0
    response = hx(editor, UNDO)
    assert "Nothing to undo" in text(response)


def test_undo_restores_an_earlier_review_not_just_pending(editor, queue):
    DatasetImage.objects.filter(pk=queue[0].pk).update(status="rejected", rejection_categories=["duplicate"])
    hx(editor, act(queue[0].pk, "approve"), {"status": "rejected"})
    assert status_of(queue[0]) == ReviewStatus.APPROVED

    response = hx(editor, UNDO, {"status": "rejected"})

    image = DatasetImage.objects.get(pk=queue[0].pk)
    assert (image.status, image.rejection_categories) == ("rejected", ["duplicate"])
    assert shown(response) == queue[0].pk


def test_another_session_cannot_undo_my_actions(editor, queue, owner):
    hx(editor, act(queue[0].pk, "approve"))

    response = hx(client_for(owner), UNDO)

    assert "Nothing to undo" in text(response)
    assert status_of(queue[0]) == ReviewStatus.APPROVED


def test_filters_by_character_source_and_status(editor, queue, kai):
    mei = CharacterFactory(project=kai.project, name="Mei")
    frame = make_image(mei, source="video_frame")
    DatasetImage.objects.filter(pk=queue[2].pk).update(status="approved")

    assert shown(editor.get(REVIEW, {"character": mei.pk})) == frame.pk
    assert shown(editor.get(REVIEW, {"source": "video_frame"})) == frame.pk
    assert editor.get(REVIEW, {"character": kai.pk}).context["left"] == 2
    assert shown(editor.get(REVIEW, {"status": "approved"})) == queue[2].pk
    response = editor.get(REVIEW, {"character": mei.pk, "source": "upload"})
    assert shown(response) is None and "Nothing left to review" in text(response)


def test_empty_queue_says_so(editor, kai):
    response = editor.get(REVIEW, {"project": kai.project_id})
    assert "Nothing left to review for this filter." in text(response)


def test_promote_approves_and_adds_a_reference_and_refuses_a_duplicate(editor, queue, kai):
    response = hx(editor, act(queue[0].pk, "promote"))

    assert status_of(queue[0]) == ReviewStatus.APPROVED
    reference = ReferenceImage.objects.get(character=kai)
    assert reference.sha256 == queue[0].sha256 and reference.is_primary
    assert "now a reference of Kai" in text(response)

    response = hx(editor, act(queue[0].pk, "promote"), {"status": "approved"})
    assert response.status_code == 400
    assert "this image is already a reference of Kai" in text(response)
    assert ReferenceImage.objects.filter(character=kai).count() == 1


def test_a_rejected_image_cannot_be_promoted(editor, queue, kai):
    DatasetImage.objects.filter(pk=queue[0].pk).update(status="rejected", rejection_categories=["artifacts"])

    response = hx(editor, act(queue[0].pk, "promote"), {"status": "rejected"})

    assert response.status_code == 400
    assert "a rejected image cannot become a reference" in text(response)
    assert not ReferenceImage.objects.exists()


def test_undo_of_a_promotion_removes_the_reference(editor, queue, kai):
    hx(editor, act(queue[0].pk, "promote"))
    assert ReferenceImage.objects.filter(character=kai).exists()

    response = hx(editor, UNDO)

    assert not ReferenceImage.objects.filter(character=kai).exists()
    assert status_of(queue[0]) == ReviewStatus.PENDING
    assert "reference it became was removed" in text(response)


# --- Access --------------------------------------------------------------------------------------


def test_an_outsider_gets_404_everywhere(outsider, queue, kai):
    client = client_for(outsider)
    assert client.get(REVIEW, {"project": kai.project_id}).status_code == 404
    assert client.get(REVIEW, {"character": kai.pk}).status_code == 404
    assert shown(client.get(REVIEW)) is None  # nothing of the project leaks into the unfiltered queue
    for action in ("approve", "skip", "promote"):
        assert client.post(act(queue[0].pk, action)).status_code == 404
    assert client.post(act(queue[0].pk, "reject"), {"category": "artifacts"}).status_code == 404
    assert status_of(queue[0]) == ReviewStatus.PENDING
    assert not ReferenceImage.objects.exists()


def test_a_viewer_sees_the_queue_read_only_and_gets_403_on_writes(viewer, queue):
    client = client_for(viewer)
    response = client.get(REVIEW)
    assert shown(response) == queue[0].pk
    page = text(response)
    assert "read-only access" in page and 'data-key="a"' not in page
    for action in ("approve", "skip", "promote"):
        assert client.post(act(queue[0].pk, action)).status_code == 403
    assert client.post(act(queue[0].pk, "reject"), {"category": "artifacts"}).status_code == 403
    assert status_of(queue[0]) == ReviewStatus.PENDING


def test_an_image_of_another_project_is_not_reachable_through_a_filter(editor, owner, queue):
    elsewhere = CharacterFactory(project=make_project(owner, name="Elsewhere"), name="Ren")
    theirs = make_image(elsewhere)
    # The member does not belong to "Elsewhere": 404, whatever the hidden filter fields say.
    assert editor.post(act(theirs.pk, "approve"), {"project": queue[0].character.project_id}).status_code == 404
    assert status_of(theirs) == ReviewStatus.PENDING


def test_unknown_action_is_404_and_get_is_refused(editor, queue):
    assert editor.post(act(queue[0].pk, "delete")).status_code == 404
    assert editor.get(act(queue[0].pk, "approve")).status_code == 405
    assert editor.get(UNDO).status_code == 405


def test_anonymous_is_sent_to_log_in(client, queue):
    response = client.get(REVIEW)
    assert response.status_code == 302 and "/login/" in response["Location"]

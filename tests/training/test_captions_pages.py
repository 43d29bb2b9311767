"""The captions page: inline edits, bulk edits with undo, auto-captioning, classification; access rules."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from tests.factories import CharacterFactory, png_bytes
from tests.fakes.llm import fake_llm
from training.llm import runs, tasks, views
from training.models import DatasetImage

__all__ = ["fake_llm"]
pytestmark = pytest.mark.django_db


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def aiko(project):
    return CharacterFactory(project=project, name="Aiko", slug="aiko", trigger_word="aikoSky")


def add_image(character, n: int, *, caption="", status="approved", source="") -> DatasetImage:
    image = DatasetImage(
        character=character, sha256=f"{n:064x}", source="upload", status=status, caption=caption, caption_source=source
    )
    image.image.save(f"{n}.png", ContentFile(png_bytes(64, 64, (10 * n, 100, 100))), save=False)
    image.save()
    return image


def captions_url(character, **params) -> str:
    url = reverse("character-captions", args=[character.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def test_the_page_lists_approved_images_with_training_captions_and_classification(owner, aiko, project):
    ben = CharacterFactory(project=project, name="Ben", slug="ben")
    shown = add_image(aiko, 1, caption="1girl, smile")
    pending = add_image(aiko, 2, caption="pending one", status="pending")
    DatasetImage.objects.filter(pk=shown.pk).update(
        classified_character=ben, classification_confidence=0.83, classification_method="llm"
    )
    page = client_for(owner).get(captions_url(aiko)).content.decode()
    assert f'id="caption-row-{shown.pk}"' in page and f'id="caption-row-{pending.pk}"' not in page
    assert "aikoSky, 1girl, smile" in page  # the training caption, trigger first
    assert "looks like Ben 0.83" in page and "disagrees" in page  # the classifier thinks it is someone else
    page = client_for(owner).get(captions_url(aiko, status="pending")).content.decode()
    assert f'id="caption-row-{pending.pk}"' in page and f'id="caption-row-{shown.pk}"' not in page


def test_htmx_filtering_returns_only_the_list(owner, aiko):
    add_image(aiko, 1, caption="1girl")
    response = client_for(owner).get(captions_url(aiko, status="all"), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "caption-row-" in body and "<html" not in body and "Find and replace" not in body


def test_a_caption_is_saved_inline(member, aiko):
    image = add_image(aiko, 1, caption="old")
    url = reverse("dataset-image-caption", args=[image.pk])
    response = client_for(member).post(url, {"caption": "1girl,\n red hair"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="caption-row-{image.pk}"' in body and "aikoSky, 1girl, red hair" in body and "saved" in body
    image.refresh_from_db()
    assert (image.caption, image.caption_source) == ("1girl, red hair", "manual")
    # without JS: a redirect back to the page, with a message
    response = client_for(member).post(url, {"caption": "x" * 2001, "status": "approved"}, follow=True)
    assert "not saved" in response.content.decode()
    assert DatasetImage.objects.get(pk=image.pk).caption == "1girl, red hair"


def test_bulk_tag_then_undo(member, aiko):
    a = add_image(aiko, 1, caption="smile")
    b = add_image(aiko, 2, caption="outdoors, smile")
    c = add_image(aiko, 3, caption="night")
    client = client_for(member)
    response = client.post(
        reverse("character-captions-bulk", args=[aiko.pk]),
        {"tag": "outdoors", "position": "prepend", "images": [a.pk, b.pk], "status": "approved"},
        follow=True,
    )
    page = response.content.decode()
    assert "Added “outdoors” at the start of 1 of 2 selected captions (1 already had it)." in page
    assert DatasetImage.objects.get(pk=a.pk).caption == "outdoors, smile"
    assert DatasetImage.objects.get(pk=c.pk).caption == "night"
    assert 'id="undo-form"' in page
    response = client.post(reverse("character-captions-undo", args=[aiko.pk]), {"status": "approved"}, follow=True)
    assert "1 captions restored." in response.content.decode()
    assert DatasetImage.objects.get(pk=a.pk).caption == "smile"
    response = client.post(reverse("character-captions-undo", args=[aiko.pk]), follow=True)
    assert "no bulk change to undo" in response.content.decode()


def test_bulk_tag_without_a_selection_changes_nothing(member, aiko):
    a = add_image(aiko, 1, caption="smile")
    response = client_for(member).post(
        reverse("character-captions-bulk", args=[aiko.pk]), {"tag": "x", "position": "append"}, follow=True
    )
    assert "Select at least one image first; nothing was changed." in response.content.decode()
    assert DatasetImage.objects.get(pk=a.pk).caption == "smile"


def test_find_and_replace_previews_the_count_then_applies(member, aiko):
    a = add_image(aiko, 1, caption="red hair, red eyes")
    b = add_image(aiko, 2, caption="Red scarf")
    pending = add_image(aiko, 3, caption="red shoes", status="pending")
    client = client_for(member)
    url = reverse("character-captions-replace", args=[aiko.pk])
    preview = client.post(url, {"find": "red", "replace": "crimson", "status": "approved"}).content.decode()
    assert "occurs 3 times in 2 approved captions" in preview and "Replace all 3" in preview
    assert DatasetImage.objects.get(pk=a.pk).caption == "red hair, red eyes"  # nothing changed yet
    sensitive = client.post(url, {"find": "red", "replace": "crimson", "case_sensitive": "1"}).content.decode()
    assert "occurs 2 times in 1 approved caption." in sensitive
    response = client.post(url, {"find": "red", "replace": "crimson", "apply": "1", "status": "approved"}, follow=True)
    assert "Replaced 3 occurrences of “red” in 2 captions." in response.content.decode()
    assert DatasetImage.objects.get(pk=a.pk).caption == "crimson hair, crimson eyes"
    assert DatasetImage.objects.get(pk=b.pk).caption == "crimson scarf"
    assert DatasetImage.objects.get(pk=pending.pk).caption == "red shoes"  # another status, untouched
    missing = client.post(url, {"find": "purple", "replace": "x"}).content.decode()
    assert "is in none of the approved captions" in missing


def test_auto_captioning_is_queued_and_its_progress_is_shown(
    member, aiko, fake_llm, monkeypatch, django_capture_on_commit_callbacks
):
    fake_llm.answer = "1girl, smile"
    images = [add_image(aiko, n) for n in range(2)]
    queued: list[tuple[int, str]] = []
    monkeypatch.setattr(tasks, "enqueue_caption_run", lambda *args: queued.append(args))
    client = client_for(member)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("character-captions-auto", args=[aiko.pk]), {"method": "llm", "style": "tags"}, follow=True
        )
    assert "Captioning 2 approved images with the vision LLM" in response.content.decode()
    [(character_id, run_id)] = queued
    poll = client.get(reverse("character-captions-run", args=[aiko.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "queued" in poll and 'hx-trigger="every 1s"' in poll
    assert tasks.caption_run(character_id, run_id) == "succeeded"
    poll = client.get(reverse("character-captions-run", args=[aiko.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "2 of 2 images" in poll and "2 captioned" in poll and "every 1s" not in poll  # polling stops
    assert {i.caption for i in DatasetImage.objects.filter(pk__in=[i.pk for i in images])} == {"1girl, smile"}


def test_auto_captioning_without_an_llm_says_so(member, aiko, settings):
    settings.TOWER_LLM_BASE_URL = ""
    add_image(aiko, 1)
    response = client_for(member).post(
        reverse("character-captions-auto", args=[aiko.pk]), {"method": "llm"}, follow=True
    )
    assert "Captioning not started: no vision LLM is configured" in response.content.decode()
    assert runs.caption_run_get(character_id=aiko.pk) is None


def test_classify_again_runs_the_classifier_over_the_shown_images(
    member, aiko, fake_llm, monkeypatch, django_capture_on_commit_callbacks
):
    ben = CharacterFactory(project=aiko.project, name="Ben", slug="ben")
    fake_llm.answer = '{"character": "Ben", "confidence": 0.77}'
    image = add_image(aiko, 1)
    add_image(aiko, 2, status="rejected")
    queued = []
    monkeypatch.setattr(views, "enqueue_classify", lambda ids, label: queued.append(ids))
    client = client_for(member)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("character-captions-classify", args=[aiko.pk]), {"status": "approved"}, follow=True
        )
    assert "Classifying 1 images again" in response.content.decode()
    assert queued == [[image.pk]]
    report = tasks.classify_images(queued[0])
    assert report["disagree"] == [image.pk]
    page = client.get(captions_url(aiko)).content.decode()
    assert "looks like Ben 0.77" in page
    image.refresh_from_db()
    assert image.classified_character_id == ben.pk


WRITES = [
    ("character-captions-bulk", {"tag": "x", "images": ["IMG"]}),
    ("character-captions-replace", {"find": "smile", "replace": "grin", "apply": "1"}),
    ("character-captions-undo", {}),
    ("character-captions-auto", {"method": "tags"}),
    ("character-captions-classify", {}),
]


@pytest.mark.parametrize(("name", "data"), WRITES)
def test_viewers_see_but_cannot_write(viewer, aiko, name, data, monkeypatch):
    monkeypatch.setattr(views, "enqueue_classify", lambda *a, **k: pytest.fail("enqueued for a viewer"))
    image = add_image(aiko, 1, caption="smile")
    client = client_for(viewer)
    page = client.get(captions_url(aiko)).content.decode()
    assert "aikoSky, smile" in page and "readonly" in page and "Find and replace" not in page
    data = {k: ([str(image.pk)] if v == ["IMG"] else v) for k, v in data.items()}
    assert client.post(reverse(name, args=[aiko.pk]), data).status_code == 403
    assert client.post(reverse("dataset-image-caption", args=[image.pk]), {"caption": "hacked"}).status_code == 403
    assert DatasetImage.objects.get(pk=image.pk).caption == "smile"


@pytest.mark.parametrize(("name", "data"), [*WRITES, ("character-captions", None), ("character-captions-run", None)])
def test_outsiders_get_404_everywhere(outsider, aiko, name, data):
    image = add_image(aiko, 1, caption="smile")
    client = client_for(outsider)
    url = reverse(name, args=[aiko.pk])
    response = client.get(url) if data is None else client.post(url, data)
    assert response.status_code == 404
    assert client.post(reverse("dataset-image-caption", args=[image.pk]), {"caption": "x"}).status_code == 404
    assert DatasetImage.objects.get(pk=image.pk).caption == "smile"


def test_anonymous_users_are_sent_to_log_in(aiko):
    response = Client().get(captions_url(aiko))
    assert response.status_code == 302 and "login" in response.url


def test_the_two_caption_boxes_are_labelled(member, aiko):
    image = add_image(aiko, 1, caption="1girl")
    page = client_for(member).get(captions_url(aiko, status="all")).content.decode()
    assert f'<label for="caption-{image.pk}"' in page and f'<textarea id="caption-{image.pk}"' in page
    assert f'id="training-label-{image.pk}"' in page and f'aria-labelledby="training-label-{image.pk}"' in page
    assert "Training caption" in page


def test_an_error_shows_in_the_row_and_a_successful_save_clears_it(member, aiko, settings, monkeypatch):
    from training.llm import captions

    image = add_image(aiko, 1, caption="old")
    url = reverse("dataset-image-caption", args=[image.pk])
    client = client_for(member)
    monkeypatch.setattr(captions, "MAX_CAPTION_CHARS", 10)
    failed = client.post(url, {"caption": "a caption that is too long"}, HTTP_HX_REQUEST="true")
    # htmx swaps only 2xx answers: the error must come in one to be seen at all.
    assert failed.status_code == 200
    body = failed.content.decode()
    assert "errorlist" in body and "at most 10 characters" in body and 'aria-invalid="true"' in body

    saved = client.post(url, {"caption": "1girl"}, HTTP_HX_REQUEST="true")
    body = saved.content.decode()
    assert saved.status_code == 200 and "saved" in body
    assert "errorlist" not in body and "at most 10" not in body and "aria-invalid" not in body

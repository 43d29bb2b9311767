"""Captions: tag cleaning, the trigger word first and once, the vision LLM (a fake on a real port), bulk edits."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from tests.factories import CharacterFactory, JobFactory, png_bytes
from tests.fakes.llm import fake_llm
from training.llm import runs
from training.llm.captions import (
    caption_with_trigger,
    captions_add_tag,
    captions_auto,
    captions_find_replace,
    captions_restore,
    clean_tags,
    dataset_image_caption_set,
    training_caption,
)
from training.models import DatasetImage

__all__ = ["fake_llm"]


@pytest.mark.parametrize(
    ("prompt", "tags"),
    [
        ("(masterpiece:1.2), best quality, 1girl, red hair", "masterpiece, best quality, 1girl, red hair"),
        ("((red hair)), [blue eyes], {smile}", "red hair, blue eyes, smile"),
        ("1girl, <lora:aiko_v2:0.8>, embedding:EasyNegative, solo", "1girl, solo"),
        ("(embedding:goodhands:1.1), smile, Smile,  smile ", "smile"),
        ("hatsune miku \\(vocaloid\\), twintails", "hatsune miku \\(vocaloid\\), twintails"),
        ("1girl BREAK outdoors\nsunset,, ", "1girl, outdoors, sunset"),
        ("(red hair:1.3), red hair, (red hair)", "red hair"),
        ("", ""),
    ],
)
def test_prompts_become_clean_deduplicated_tags(prompt, tags):
    assert clean_tags(prompt) == tags
    assert clean_tags(tags) == tags  # idempotent


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("1girl, red hair", "aikoSky, 1girl, red hair"),
        ("aikoSky, 1girl, red hair", "aikoSky, 1girl, red hair"),
        ("1girl, AIKOSKY, red hair, aikosky", "aikoSky, 1girl, red hair"),
        ("aikoSky a girl with red hair", "aikoSky, a girl with red hair"),
        ("", "aikoSky"),
        ("  1girl,\n red hair  ", "aikoSky, 1girl, red hair"),
        ("aikoSkyline, city", "aikoSky, aikoSkyline, city"),  # a longer word is not the trigger
    ],
)
def test_the_trigger_word_is_first_and_never_doubled(caption, expected):
    assert caption_with_trigger(caption, "aikoSky") == expected
    assert caption_with_trigger(expected, "aikoSky") == expected


def test_no_trigger_word_leaves_the_caption_on_one_line():
    assert caption_with_trigger("1girl,\nred hair", "") == "1girl, red hair"


@pytest.fixture
def aiko(project):
    return CharacterFactory(project=project, name="Aiko", slug="aiko", trigger_word="aikoSky")


def add_image(character, n: int, *, caption="", source="", status="approved", job=None) -> DatasetImage:
    image = DatasetImage(
        character=character,
        sha256=f"{n:064x}",
        source="upload",
        status=status,
        caption=caption,
        caption_source=source,
        origin_job=job,
    )
    image.image.save(f"{n}.png", ContentFile(png_bytes(64, 64, (10 * n, 100, 100))), save=False)
    image.save()
    return image


@pytest.mark.django_db
def test_training_caption_reads_the_characters_trigger(aiko):
    image = add_image(aiko, 1, caption="1girl, smile")
    assert training_caption(image) == "aikoSky, 1girl, smile"


@pytest.mark.django_db
def test_llm_captions_are_tags_without_the_characters_name(fake_llm, aiko):
    fake_llm.answer = "Tags: 1girl, Aiko, red hair, (smiling:1.2), aikoSky, school uniform, red hair"
    image = add_image(aiko, 1)
    report = captions_auto(character=aiko, method="llm")
    assert (report.total, report.captioned) == (1, 1)
    image.refresh_from_db()
    assert image.caption == "1girl, red hair, smiling, school uniform"
    assert image.caption_source == "llm"
    assert training_caption(image) == "aikoSky, 1girl, red hair, smiling, school uniform"
    [request] = fake_llm.requests
    assert "Aiko" not in request.prompt and "aikoSky" not in request.prompt  # the name is never suggested
    assert request.image_urls[0].startswith("data:image/png;base64,")


@pytest.mark.django_db
def test_sentence_captions(fake_llm, aiko):
    fake_llm.answer = "Aiko stands in a park at sunset, smiling."
    image = add_image(aiko, 1)
    captions_auto(character=aiko, method="llm", style="sentence")
    image.refresh_from_db()
    assert image.caption == "the character stands in a park at sunset, smiling."
    assert "sentences" in fake_llm.requests[0].prompt


@pytest.mark.django_db
def test_auto_captions_respect_status_and_hand_edits(fake_llm, aiko):
    fake_llm.answer = "1girl, outdoors"
    empty = add_image(aiko, 1)
    manual = add_image(aiko, 2, caption="my words", source="manual")
    imported = add_image(aiko, 3, caption="(1girl:1.2), <lora:x:1>", source="")  # raw prompt from ingestion
    done = add_image(aiko, 4, caption="1girl, indoors", source="llm")
    pending = add_image(aiko, 5, status="pending")
    report = captions_auto(character=aiko, method="llm")
    assert (report.total, report.captioned, report.skipped) == (4, 2, 2)
    captions = dict(DatasetImage.objects.values_list("pk", "caption"))
    assert captions[empty.pk] == captions[imported.pk] == "1girl, outdoors"
    assert captions[manual.pk] == "my words" and captions[done.pk] == "1girl, indoors" and captions[pending.pk] == ""
    report = captions_auto(character=aiko, method="llm", overwrite=True, statuses=None)
    assert report.captioned == 4 and report.skipped == 1  # only the hand-edited one is kept
    assert DatasetImage.objects.get(pk=manual.pk).caption == "my words"


@pytest.mark.django_db
def test_an_unreachable_llm_is_reported_and_changes_nothing(settings, aiko):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.TOWER_LLM_BASE_URL = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    images = [add_image(aiko, n) for n in range(3)]
    report = captions_auto(character=aiko, method="llm")
    assert report.failed == 3 and report.captioned == 0
    assert len(report.errors) == 1 and "cannot be reached" in report.errors[0]  # asked once, not three times
    assert all(DatasetImage.objects.get(pk=i.pk).caption == "" for i in images)


@pytest.mark.django_db
def test_captions_from_the_generation_prompt(aiko, project):
    job = JobFactory(project=project, prompt="aikoSky, (1girl:1.1), red hair, <lora:aiko:0.7>, red hair, smile")
    from_job = add_image(aiko, 1, job=job)
    from_scan = add_image(aiko, 2, caption="embedding:bad, 1girl, (sitting:1.3)", source="")
    report = captions_auto(character=aiko, method="tags")
    assert report.captioned == 2
    from_job.refresh_from_db()
    from_scan.refresh_from_db()
    assert from_job.caption == "1girl, red hair, smile" and from_job.caption_source == "tags"
    assert from_scan.caption == "1girl, sitting"
    assert training_caption(from_job) == "aikoSky, 1girl, red hair, smile"


@pytest.mark.django_db
def test_no_llm_configured_is_a_clear_error(settings, aiko):
    settings.TOWER_LLM_BASE_URL = ""
    with pytest.raises(ValidationError, match="no vision LLM is configured"):
        captions_auto(character=aiko, method="llm")


@pytest.mark.django_db
def test_a_hand_edit_is_one_line_and_bounded(aiko):
    image = add_image(aiko, 1)
    dataset_image_caption_set(image=image, caption="  1girl,\n smile ")
    image.refresh_from_db()
    assert image.caption == "1girl, smile" and image.caption_source == "manual"
    with pytest.raises(ValidationError):
        dataset_image_caption_set(image=image, caption="x" * 2001)
    image.refresh_from_db()
    assert image.caption == "1girl, smile"


@pytest.mark.django_db
def test_bulk_prepend_and_append_skip_captions_that_have_the_tag(aiko):
    a = add_image(aiko, 1, caption="1girl, smile", source="llm")
    b = add_image(aiko, 2, caption="Outdoors, 1girl")
    c = add_image(aiko, 3, caption="")
    changes = captions_add_tag(character=aiko, image_ids=[a.pk, b.pk, c.pk], tag=" outdoors ", position="prepend")
    assert sorted(ch.image_id for ch in changes) == [a.pk, c.pk]
    assert DatasetImage.objects.get(pk=a.pk).caption == "outdoors, 1girl, smile"
    assert DatasetImage.objects.get(pk=c.pk).caption == "outdoors"
    captions_add_tag(character=aiko, image_ids=[a.pk], tag="night", position="append")
    assert DatasetImage.objects.get(pk=a.pk).caption == "outdoors, 1girl, smile, night"
    with pytest.raises(ValidationError):
        captions_add_tag(character=aiko, image_ids=[a.pk], tag="a, b")


@pytest.mark.django_db
def test_bulk_edit_never_touches_another_characters_images(aiko, project):
    other = add_image(CharacterFactory(project=project, name="Ben", slug="ben"), 9, caption="1boy")
    assert captions_add_tag(character=aiko, image_ids=[other.pk], tag="smile") == []
    assert DatasetImage.objects.get(pk=other.pk).caption == "1boy"


@pytest.mark.django_db
def test_find_and_replace_previews_counts_then_applies_and_undoes(aiko):
    a = add_image(aiko, 1, caption="red hair, red eyes, Red scarf", source="llm")
    b = add_image(aiko, 2, caption="red hair, smile")
    c = add_image(aiko, 3, caption="blue sky")
    preview = captions_find_replace(character=aiko, find="red", replace="crimson")
    assert (preview.images, preview.occurrences, preview.changes) == (2, 4, [])
    assert DatasetImage.objects.get(pk=a.pk).caption == "red hair, red eyes, Red scarf"  # a preview changes nothing
    sensitive = captions_find_replace(character=aiko, find="red", replace="crimson", case_sensitive=True)
    assert (sensitive.images, sensitive.occurrences) == (2, 3)
    applied = captions_find_replace(character=aiko, find="red", replace="crimson", case_sensitive=True, apply=True)
    assert DatasetImage.objects.get(pk=a.pk).caption == "crimson hair, crimson eyes, Red scarf"
    assert DatasetImage.objects.get(pk=a.pk).caption_source == "manual"
    assert DatasetImage.objects.get(pk=c.pk).caption == "blue sky"
    # b is edited by hand after the replace: undo restores a, leaves b as the person typed it
    dataset_image_caption_set(image=DatasetImage.objects.get(pk=b.pk), caption="crimson hair, grin")
    assert captions_restore(character=aiko, changes=applied.changes) == (1, 1)
    a.refresh_from_db()
    assert (a.caption, a.caption_source) == ("red hair, red eyes, Red scarf", "llm")
    assert DatasetImage.objects.get(pk=b.pk).caption == "crimson hair, grin"


@pytest.mark.django_db
def test_replacing_a_tag_with_nothing_leaves_no_empty_tags(aiko):
    a = add_image(aiko, 1, caption="1girl, watermark, smile")
    captions_find_replace(character=aiko, find="watermark", replace="", apply=True)
    assert DatasetImage.objects.get(pk=a.pk).caption == "1girl, smile"


@pytest.mark.django_db
def test_find_and_replace_refuses_nonsense(aiko):
    with pytest.raises(ValidationError):
        captions_find_replace(character=aiko, find="", replace="x")
    with pytest.raises(ValidationError):
        captions_find_replace(character=aiko, find="x", replace="x")


@pytest.mark.django_db(transaction=True)
def test_a_caption_run_is_queued_after_commit_and_runs_once_with_progress(fake_llm, aiko, monkeypatch):
    fake_llm.answer = "1girl, smile"
    for n in range(3):
        add_image(aiko, n)
    queued: list[tuple[int, str]] = []
    state = runs.caption_run_start(character=aiko, method="llm", enqueue=lambda *a: queued.append(a))
    assert state["status"] == "queued" and state["total"] == 3 and queued == [(aiko.pk, state["run_id"])]
    with pytest.raises(ValidationError, match="already queued"):
        runs.caption_run_start(character=aiko, method="llm", enqueue=lambda *a: None)
    seen: list[int] = []
    original = runs._write

    def spy(character_id, s):
        seen.append(s.get("done", 0))
        original(character_id, s)

    monkeypatch.setattr(runs, "_write", spy)
    assert runs.caption_run_execute(character_id=aiko.pk, run_id=state["run_id"]) == "succeeded"
    monkeypatch.undo()
    assert seen[1:4] == [1, 2, 3]  # progress after each image
    assert runs.caption_run_execute(character_id=aiko.pk, run_id=state["run_id"]) == "already succeeded"
    final = runs.caption_run_get(character_id=aiko.pk)
    assert final["status"] == "succeeded" and final["report"]["captioned"] == 3 and not final["active"]
    assert len(fake_llm.requests) == 3


@pytest.mark.django_db
def test_a_run_whose_worker_stopped_is_stale_and_can_be_replaced(aiko):
    from datetime import timedelta

    from django.utils import timezone

    from training.models import CaptionRun

    add_image(aiko, 0)
    first = runs.caption_run_start(character=aiko, method="tags", enqueue=lambda *a: None)
    assert runs.caption_run_get(character_id=aiko.pk)["active"]
    gone = timezone.now() - timedelta(seconds=runs.stale_after_seconds() + 1)
    CaptionRun.objects.filter(run_id=first["run_id"]).update(status="running", updated_at=gone)
    state = runs.caption_run_get(character_id=aiko.pk)
    assert state["stale"] and not state["active"]
    second = runs.caption_run_start(character=aiko, method="tags", enqueue=lambda *a: None)
    assert second["run_id"] != first["run_id"] and second["status"] == "queued"
    # The old run's task, if it ever comes back, finds itself superseded and does nothing.
    assert runs.caption_run_execute(character_id=aiko.pk, run_id=first["run_id"]) == "superseded"

"""Classification: the vision LLM (a fake on a real port) decides; embedding similarity is the fallback."""

from __future__ import annotations

import io
import socket

import pytest
from django.core.files.base import ContentFile

from characters.services import character_add_reference
from quality.metrics import MetricModels
from quality.services import common
from tests.factories import CharacterFactory, make_project, png_bytes
from tests.fakes.llm import fake_llm
from tests.quality.scoring_helpers import models, png
from training.llm.classify import classify_dataset_images, classify_image
from training.models import DatasetImage

__all__ = ["fake_llm", "models"]
pytestmark = pytest.mark.django_db

RED, BLUE = (220, 30, 30), (30, 40, 220)
# Bright squares on black: faces to the tiny photoreal detector, one tint per character.
PINK, SKY = (255, 200, 200), (200, 215, 255)


@pytest.fixture
def no_weights(monkeypatch, tmp_path) -> MetricModels:
    """This installation without any scoring model downloaded."""
    empty = MetricModels(root=tmp_path / "no-models", device="cpu")
    monkeypatch.setattr(common, "metric_models", lambda: empty)
    return empty


@pytest.fixture
def cast(project):
    aiko = CharacterFactory(
        project=project, name="Aiko", slug="aiko", trigger_word="aikoSky", design_prompt="1girl, red hair, red jacket"
    )
    ben = CharacterFactory(
        project=project, name="Ben", slug="ben", trigger_word="benSky", design_prompt="1boy, blue hair, blue coat"
    )
    return aiko, ben


def add_reference(character, data: bytes) -> None:
    upload = io.BytesIO(data)
    upload.name = "ref.png"
    character_add_reference(character=character, upload=upload, original_name="ref.png")


def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def test_the_llm_picks_the_character_in_the_image(fake_llm, project, cast, no_weights):
    aiko, ben = cast
    fake_llm.colours = {"Aiko": RED, "Ben": BLUE}
    red = classify_image(project=project, data=png_bytes(96, 96, RED))
    blue = classify_image(project=project, data=png_bytes(96, 96, BLUE))
    assert (red.character_id, red.method, red.confidence) == (aiko.pk, "llm", 0.9)
    assert (blue.character_id, blue.method) == (ben.pk, "llm")
    request = fake_llm.requests[0]
    assert request.body["model"] == "llava" and request.body["temperature"] == 0
    assert request.image_urls[0].startswith("data:image/png;base64,")
    # every candidate is described to the model: name, design prompt and trigger word
    for text in ("Aiko", "red hair, red jacket", "aikoSky", "Ben", "blue coat", "benSky"):
        assert text in request.prompt


def test_candidates_limit_the_choice(fake_llm, project, cast, no_weights):
    _aiko, ben = cast
    fake_llm.colours = {"Aiko": RED, "Ben": BLUE}
    classify_image(project=project, data=png_bytes(96, 96, RED), candidates=[ben])
    assert "Ben" in fake_llm.requests[0].prompt and "Aiko" not in fake_llm.requests[0].prompt


@pytest.mark.parametrize(("said", "expected"), [("AIKO", "aiko"), (" aiko. ", "aiko"), ("benSky", "ben")])
def test_names_are_matched_case_insensitively_and_by_trigger_word(fake_llm, project, cast, no_weights, said, expected):
    fake_llm.answer = f'{{"character": "{said}", "confidence": 0.7}}'
    result = classify_image(project=project, data=png_bytes(64, 64, RED))
    assert result.character_id == {"aiko": cast[0].pk, "ben": cast[1].pk}[expected]


@pytest.mark.parametrize(("said", "expected"), [("0.35", 0.35), ("85", 0.85), ('"60%"', 0.6), ("0", 0.0)])
def test_confidence_is_always_between_0_and_1(fake_llm, project, cast, no_weights, said, expected):
    fake_llm.answer = f'{{"character": "Aiko", "confidence": {said}}}'
    result = classify_image(project=project, data=png_bytes(64, 64, RED))
    assert result.character_id == cast[0].pk and result.confidence == pytest.approx(expected)


def test_the_llm_may_say_none_of_them(fake_llm, project, cast, no_weights):
    fake_llm.answer = '{"character": null, "confidence": 0.8}'
    result = classify_image(project=project, data=png_bytes(64, 64, (0, 200, 0)))
    assert result.character_id is None and result.method == "llm"
    assert "none of: Aiko, Ben" in result.note


@pytest.mark.parametrize(
    "answer",
    [
        '{"character": "Zed", "confidence": 0.9}',  # not a candidate
        '{"character": "Aiko", "confidence": 7000}',  # nonsense confidence
        '{"who": "Aiko"}',
        "Looks like Aiko to me!",
    ],
)
def test_a_useless_answer_falls_back_to_embeddings_and_says_why(fake_llm, project, cast, no_weights, answer):
    fake_llm.answer = answer
    result = classify_image(project=project, data=png_bytes(64, 64, RED))
    assert result.character_id is None and result.method == ""
    assert "LLM answer unusable" in result.note


def test_garbage_mode_falls_back(fake_llm, project, cast, no_weights):
    fake_llm.mode = "garbage"
    result = classify_image(project=project, data=png_bytes(64, 64, RED))
    assert result.character_id is None and "did not answer with JSON" in result.note


def test_missing_weights_are_named_with_the_command_that_fetches_them(settings, project, cast, no_weights):
    settings.TOWER_LLM_BASE_URL = dead_url()
    project.art_kind = "photoreal"
    project.save(update_fields=["art_kind"])
    for character, colour in zip(cast, (RED, BLUE), strict=True):
        add_reference(character, png(colour, size=128, square=48))
    result = classify_image(project=project, data=png(RED, size=128, square=48))
    assert result.character_id is None and result.method == ""
    assert "LLM unavailable" in result.note and "cannot be reached" in result.note
    assert "buffalo_l" in result.note and "python manage.py fetch_models buffalo_l" in result.note


def test_anime_projects_name_the_missing_clip_weights(settings, project, cast, no_weights):
    settings.TOWER_LLM_BASE_URL = ""
    for character, colour in zip(cast, (PINK, SKY), strict=True):
        add_reference(character, png(colour, size=128, square=48))
    result = classify_image(project=project, data=png(PINK, size=128, square=48))
    assert result.character_id is None and result.method == ""
    assert "no LLM configured" in result.note
    assert "clip-vit-l-14" in result.note and "run: python manage.py fetch_models clip-vit-l-14" in result.note


def test_a_server_error_falls_back_to_embedding_similarity(fake_llm, project, cast, models):
    """The LLM fails (500); the quality engine's embeddings against the references decide."""
    project.art_kind = "photoreal"  # the tiny face detector sees bright squares as faces
    project.save(update_fields=["art_kind"])
    aiko, ben = cast
    add_reference(aiko, png(PINK, size=128, square=48))
    add_reference(ben, png(SKY, size=128, square=48))
    fake_llm.mode = "error500"
    result = classify_image(project=project, data=png(SKY, size=128, square=48))
    assert (result.character_id, result.method) == (ben.pk, "embedding")
    assert result.confidence == pytest.approx(1.0, abs=1e-4)
    assert "LLM unavailable" in result.note and "500" in result.note


def test_without_an_llm_embeddings_decide(settings, project, cast, models):
    settings.TOWER_LLM_BASE_URL = ""
    project.art_kind = "photoreal"
    project.save(update_fields=["art_kind"])
    aiko, ben = cast
    add_reference(aiko, png(PINK, size=128, square=48))
    add_reference(ben, png(SKY, size=128, square=48))
    result = classify_image(project=project, data=png(PINK, size=128, square=48))
    assert (result.character_id, result.method) == (aiko.pk, "embedding")
    assert "no LLM configured" in result.note


def test_no_references_no_decision(settings, project, cast, models):
    settings.TOWER_LLM_BASE_URL = ""
    # Photoreal, like the other embedding tests: the tiny CCIP file is not the pinned size, so an
    # anime project would stop at "weights missing" before looking at references.
    project.art_kind = "photoreal"
    project.save(update_fields=["art_kind"])
    result = classify_image(project=project, data=png_bytes(64, 64, RED))
    assert result.character_id is None and "no reference image" in result.note


def test_a_project_without_characters(settings, owner):
    settings.TOWER_LLM_BASE_URL = ""
    result = classify_image(project=make_project(owner, name="Empty"), data=png_bytes())
    assert result.character_id is None and "no characters" in result.note


def dataset_image(character, colour) -> DatasetImage:
    image = DatasetImage(character=character, sha256=f"{abs(hash(colour)):064x}"[:64], source="upload")
    image.image.save("img.png", ContentFile(png_bytes(96, 96, colour)), save=False)
    image.save()
    return image


def test_classifying_dataset_images_again_stores_results_and_flags_disagreements(fake_llm, project, cast, no_weights):
    aiko, ben = cast
    fake_llm.colours = {"Aiko": RED, "Ben": BLUE}
    right = dataset_image(aiko, RED)
    wrong = dataset_image(aiko, BLUE)  # filed under Aiko, but Ben is in it
    manual = dataset_image(ben, RED)
    DatasetImage.objects.filter(pk=manual.pk).update(classification_method="manual", classified_character=ben)
    report = classify_dataset_images(image_ids=[right.pk, wrong.pk, manual.pk])
    assert (report.total, report.classified, report.kept_manual) == (3, 2, 1)
    assert report.disagree == [wrong.pk] and report.by_method == {"llm": 2}
    wrong.refresh_from_db()
    assert (wrong.classified_character_id, wrong.classification_method) == (ben.pk, "llm")
    assert wrong.classification_confidence == 0.9
    manual.refresh_from_db()
    assert manual.classified_character_id == ben.pk and manual.classification_method == "manual"
    assert len(fake_llm.requests) == 2
    assert "1 look like another character" in report.summary()


def test_an_unreachable_llm_is_asked_once_per_run(settings, project, cast, no_weights):
    settings.TOWER_LLM_BASE_URL = dead_url()
    images = [dataset_image(cast[0], (10 * i, 0, 0)) for i in range(3)]
    report = classify_dataset_images(image_ids=[i.pk for i in images])
    assert report.unclassified == 3 and report.classified == 0
    assert any("cannot be reached" in n for n in report.notes)
    assert set(DatasetImage.objects.values_list("classification_method", flat=True)) == {""}


def test_an_embedding_match_below_the_characters_threshold_is_left_undecided(settings, project, cast, models):
    settings.TOWER_LLM_BASE_URL = ""
    project.art_kind = "photoreal"
    project.save(update_fields=["art_kind"])
    aiko, ben = cast
    add_reference(aiko, png(PINK, size=128, square=48))
    add_reference(ben, png(SKY, size=128, square=48))
    type(aiko).objects.filter(pk__in=[aiko.pk, ben.pk]).update(consistency_threshold=0.9999)
    result = classify_image(project=project, data=png((230, 255, 200), size=128, square=48))
    assert result.character_id is None and result.method == "embedding"
    assert "below its threshold 1.00" in result.note and 0 <= result.confidence < 0.9999

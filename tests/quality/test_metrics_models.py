"""Aesthetic and character similarity through the real loaders on tiny models of the real shapes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from quality import weights
from quality.metrics import (
    MetricModels,
    Reference,
    Status,
    aesthetic_scores,
    character_similarity,
    embed_reference,
    embedding_model_id,
)
from quality.metrics import similarity as sim
from quality.metrics.aesthetic import clip_embeddings
from quality.metrics.runtime import load_aesthetic_head, load_clip, loaded_keys
from tests.quality.tiny_models import tiny_models as build_tiny_models


@pytest.fixture
def tiny_models():
    return build_tiny_models()


def face_image(x: int = 40, y: int = 40, size: int = 40, seed: int = 0) -> np.ndarray:
    """A dark picture with one bright square (a "face" to the tiny SCRFD-shaped detector)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((128, 128, 3), dtype=np.uint8)
    image[y : y + size, x : x + size] = rng.integers(200, 256, (size, size, 3), dtype=np.uint8)
    return image


def copy_without(models: MetricModels, tmp_path, *roles) -> MetricModels:
    root = tmp_path / "models"
    shutil.copytree(models.root, root)
    for role in roles:
        (root / role[1]).unlink()
    return MetricModels(root=root, clip_arch=models.clip_arch, device="cpu")


# --- aesthetic --------------------------------------------------------------------------------


def test_aesthetic_is_the_head_on_the_normalised_clip_embedding(tiny_models):
    images = [face_image(seed=s) for s in range(3)]
    results = aesthetic_scores(images, models=tiny_models, batch=2)
    assert [r.status for r in results] == [Status.OK] * 3
    assert results[0].model_id == "laion-aesthetic+clip-vit-l-14"
    model, preprocess = load_clip(tiny_models)
    from PIL import Image

    with torch.inference_mode():
        raw = model.encode_image(preprocess(Image.fromarray(images[1])).unsqueeze(0))
        expected = load_aesthetic_head(tiny_models, 768)(raw / raw.norm(dim=-1, keepdim=True)).item()
    assert results[1].value == pytest.approx(expected, abs=1e-4)
    assert len({round(r.value, 6) for r in results}) == 3  # different images, different scores
    assert np.allclose(np.linalg.norm(clip_embeddings(images, tiny_models), axis=1), 1.0, atol=1e-5)


def test_clip_loaded_once(tiny_models):
    aesthetic_scores([face_image()], models=tiny_models)
    aesthetic_scores([face_image(seed=1)], models=tiny_models)
    assert len([k for k in loaded_keys() if k[0] == "clip"]) == 1


def test_aesthetic_without_its_head_is_unavailable_with_the_fix(tiny_models, tmp_path):
    models = copy_without(tiny_models, tmp_path, weights.AESTHETIC_HEAD)
    (result,) = aesthetic_scores([face_image()], models=models)
    assert result.status is Status.UNAVAILABLE
    assert result.value is None
    assert result.fix == "python manage.py fetch_models laion-aesthetic"


# --- photoreal: insightface -------------------------------------------------------------------


def test_photoreal_face_found_and_matched_to_the_right_reference(tiny_models):
    alice = embed_reference(face_image(20, 24, seed=1), art_kind="photoreal", models=tiny_models)
    bob = embed_reference(face_image(64, 64, size=48, seed=7), art_kind="photoreal", models=tiny_models)
    assert isinstance(alice, sim.FaceEmbedding) and alice.model_id == "buffalo_l"
    assert alice.vector.shape == (512,)
    x, y, w, h = alice.face.box
    assert 0 <= x < 60 and 0 <= y < 64 and w > 0 and h > 0
    refs = [Reference(1, alice.vector, "buffalo_l"), Reference(2, bob.vector, "buffalo_l")]
    (result,) = character_similarity([face_image(20, 24, seed=1)], refs, art_kind="photoreal", models=tiny_models)
    assert result.status is Status.OK
    assert result.value == pytest.approx(1.0, abs=1e-5)
    assert result.details["reference"] == 1
    assert result.details["face_box"] == list(alice.face.box)
    assert result.details["passed"] is True
    assert result.details["per_reference"]["2"] < result.details["per_reference"]["1"]


def test_no_face_is_no_subject_not_zero(tiny_models):
    refs = [Reference(1, np.ones(512, np.float32), "buffalo_l")]
    dark = np.zeros((128, 128, 3), dtype=np.uint8)
    (result,) = character_similarity([dark], refs, art_kind="photoreal", models=tiny_models)
    assert result.status is Status.NO_SUBJECT
    assert result.value is None
    assert result.details["reason"] == "no face found"


def test_missing_recognizer_is_unavailable(tiny_models, tmp_path):
    models = copy_without(tiny_models, tmp_path, weights.FACE_RECOGNIZER)
    refs = [Reference(1, np.ones(512, np.float32), "buffalo_l")]
    (result,) = character_similarity([face_image()], refs, art_kind="photoreal", models=models)
    assert result.status is Status.UNAVAILABLE
    assert result.fix == "python manage.py fetch_models buffalo_l"


def test_references_of_another_model_are_not_compared(tiny_models):
    refs = [Reference(1, np.ones(768, np.float32), "clip-vit-l-14")]
    (result,) = character_similarity([face_image()], refs, art_kind="photoreal", models=tiny_models)
    assert result.status is Status.UNAVAILABLE
    assert "no reference embedded with buffalo_l" in result.details["reason"]


# --- anime: animeface + CCIP or CLIP ----------------------------------------------------------


def test_anime_without_a_face_is_no_subject_from_the_real_detector(tiny_models):
    refs = [Reference(1, np.ones(768, np.float32), "ccip")]
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    (result,) = character_similarity([noise], refs, art_kind="anime", models=tiny_models)
    assert result.status is Status.NO_SUBJECT


def test_anime_uses_ccip_and_falls_back_to_clip(tiny_models, tmp_path, monkeypatch):
    # animeface ships no sample picture; the detector is replaced, the embedding models are real.
    monkeypatch.setattr(sim, "detect_anime_faces", lambda image: [sim.Face((30, 30, 40, 40), 0.9)])
    assert embedding_model_id("anime", tiny_models) == "ccip"
    ref = embed_reference(face_image(30, 30, seed=2), art_kind="anime", models=tiny_models)
    assert ref.model_id == "ccip" and ref.vector.shape == (768,)
    refs = [Reference("r", ref.vector, "ccip")]
    same, other = character_similarity(
        [face_image(30, 30, seed=2), face_image(30, 30, seed=3) // 3], refs, art_kind="anime", models=tiny_models
    )
    assert same.value == pytest.approx(1.0, abs=1e-5) and same.model_id == "ccip"
    assert other.value < same.value

    without_ccip = copy_without(tiny_models, tmp_path, weights.CCIP_FEATURES)
    assert embedding_model_id("anime", without_ccip) == "clip-vit-l-14"
    fallback = embed_reference(face_image(30, 30, seed=2), art_kind="anime", models=without_ccip)
    assert fallback.model_id == "clip-vit-l-14"
    (result,) = character_similarity(
        [face_image(30, 30, seed=2)],
        [Reference(9, fallback.vector, "clip-vit-l-14")],
        art_kind="anime",
        models=without_ccip,
    )
    assert result.value == pytest.approx(1.0, abs=1e-5)
    assert result.model_id == "clip-vit-l-14"


def test_unknown_art_kind_is_an_error(tiny_models):
    (result,) = character_similarity([face_image()], [], art_kind="cartoon", models=tiny_models)  # type: ignore[arg-type]
    assert result.status is Status.ERROR

"""Scoring a character's outputs: a sheet's face quality, the palette (gated or only shown), a
version's own references, a clip's overall composite, with the tiny test models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from characters.models import ReferenceEmbedding
from characters.services import character_add_reference, character_create, version_create
from generation.models import JobKind, JobStatus
from quality import weights
from quality.models import QualityGate, QualityScore
from quality.services.phase_gates import phase_verdict
from quality.tasks import score_job
from tests.factories import AssetFactory, JobFactory, make_project
from tests.quality.scoring_helpers import png

pytestmark = pytest.mark.django_db

PANEL = 128
WHITE = (240, 240, 240)


@pytest.fixture
def project(owner):
    # Only what each test looks at decides: aesthetic at its floor, no regeneration.
    return make_project(owner, art_kind="photoreal", threshold_aesthetic=0.0, max_regenerations=0)


@pytest.fixture
def kai(project):
    character = character_create(project=project, name="Kai", design_prompt="1boy")
    character_add_reference(character=character, upload=io.BytesIO(png(WHITE, square=40)), original_name="kai.png")
    character.refresh_from_db()
    return character


def panel(face: bool) -> np.ndarray:
    """A panel drawn like the reference (a bright square on black: a "face" to the tiny detector),
    or black (no face)."""
    if not face:
        return np.zeros((PANEL, PANEL, 3), np.uint8)
    return np.asarray(Image.open(io.BytesIO(png(WHITE, size=PANEL, square=40))).convert("RGB"))


def sheet(faces: list[bool], columns: int = 4) -> bytes:
    rows = [np.concatenate([panel(f) for f in faces[r : r + columns]], axis=1) for r in range(0, len(faces), columns)]
    out = io.BytesIO()
    Image.fromarray(np.concatenate(rows, axis=0)).save(out, format="PNG")
    return out.getvalue()


def scored(project, data: bytes, *, kind=JobKind.IMAGE, character=None, version=None, metadata=None, name="o.png"):
    job = JobFactory(
        project=project, kind=kind, character=character, version=version, status=JobStatus.SUCCEEDED, phase=1
    )
    AssetFactory(project=project, job=job, file=ContentFile(data, name=name), metadata=metadata or {})
    outcome = score_job(job.pk)
    return job, outcome


def test_a_sheet_scores_face_quality_over_its_panels(project, kai, models):
    job, _ = scored(project, sheet([True] * 6 + [False] * 2), kind=JobKind.CHARACTER_SHEET, character=kai)

    row = QualityScore.objects.get(asset__job=job, metric="face_quality")
    assert row.status == "ok" and row.threshold == project.threshold_face_quality
    per_panel = row.details["per_panel"]
    assert per_panel[6:] == [None, None]  # no face in the last two panels
    assert all(v >= project.threshold_similarity for v in per_panel[:6])
    assert row.details["matched"] == 6
    assert row.value == pytest.approx(6 / 8 * np.mean(per_panel[:6]), abs=1e-5)
    assert row.passed is False  # at most 0.75: two poses lost the face
    verdict = phase_verdict(job=job, phase=1)
    assert verdict.passed is False and verdict.reasons[0].startswith("face_quality 0.7")

    full, _ = scored(project, sheet([True] * 8), kind=JobKind.CHARACTER_SHEET, character=kai)
    assert QualityScore.objects.get(asset__job=full, metric="face_quality").passed is True
    assert phase_verdict(job=full, phase=1).passed is True


def test_a_sheet_follows_its_recorded_layout(project, kai, models):
    job, _ = scored(
        project,
        sheet([True, True, False], columns=3),
        kind=JobKind.CHARACTER_SHEET,
        character=kai,
        metadata={"sheet_layout": {"columns": 3, "rows": 1}},
    )

    row = QualityScore.objects.get(asset__job=job, metric="face_quality")
    assert (row.details["panels"], row.details["matched"]) == (3, 2)


def test_a_sheet_without_face_weights_is_not_evaluated_with_the_fix(project, kai, models_without):
    models_without(weights.FACE_RECOGNIZER)
    ReferenceEmbedding.objects.all().delete()
    job, _ = scored(project, sheet([True] * 8), kind=JobKind.CHARACTER_SHEET, character=kai)

    row = QualityScore.objects.get(asset__job=job, metric="face_quality")
    assert (row.status, row.value) == ("unavailable", None)
    verdict = phase_verdict(job=job, phase=1)
    assert verdict.passed is None
    assert verdict.fix == [row.details["fix"]] and "fetch_models" in row.details["fix"]


def test_the_palette_is_shown_on_every_output_and_gated_only_when_the_character_says_so(project, kai, models):
    assert kai.palette  # taken from the first reference
    image = png(WHITE, size=PANEL, square=40)

    shown, outcome = scored(project, image, character=kai)
    row = QualityScore.objects.get(asset__job=shown, metric="palette_distance")
    assert row.status == "ok" and row.threshold is None and row.passed is None
    gate = QualityGate.objects.get(job=shown, stage="post_gen")
    assert "palette_distance" not in gate.details["evaluated"]

    kai.palette = ["#ff0000", "#00ff00", "#0000ff"]  # colours the output does not have
    kai.palette_gated = True
    kai.save()
    strayed, outcome = scored(project, image, character=kai)
    row = QualityScore.objects.get(asset__job=strayed, metric="palette_distance")
    assert row.threshold == project.threshold_palette and row.value > row.threshold and row.passed is False
    assert outcome == "failed"
    failing = {c["metric"] for c in QualityGate.objects.get(job=strayed).details["checks"] if not c["passed"]}
    assert failing == {"palette_distance"}

    kai.palette = ["#e6e6e6"]  # a shade off the output's white: within the project's 25 ΔE
    kai.palette_threshold = 1.0  # the character's own threshold overrides the project's
    kai.save()
    strict, _ = scored(project, image, character=kai)
    row = QualityScore.objects.get(asset__job=strict, metric="palette_distance")
    assert 1.0 < row.value < project.threshold_palette
    assert (row.threshold, row.passed) == (1.0, False)


def test_a_version_with_references_of_its_own_is_scored_against_them(project, kai, models):
    child = version_create(character=kai, name="Child")
    own = character_add_reference(
        character=kai, version=child, upload=io.BytesIO(png((250, 250, 250), square=60)), original_name="child.png"
    )
    bare = version_create(character=kai, name="Adult")
    image = png((250, 250, 250), size=PANEL, square=60)

    versioned, _ = scored(project, image, character=kai, version=child)
    plain, _ = scored(project, image, character=kai, version=bare)

    row = QualityScore.objects.get(asset__job=versioned, metric="character_similarity")
    assert row.status == "ok" and row.details["reference"] == own.pk
    assert list(row.details["per_reference"]) == [str(own.pk)]
    other = QualityScore.objects.get(asset__job=plain, metric="character_similarity")
    assert other.status == "ok" and other.details["reference"] != own.pk  # the character's references
    assert str(own.pk) not in other.details["per_reference"]
    assert ReferenceEmbedding.objects.filter(reference=own).exists()


def test_a_video_gets_its_overall_composite_gated_for_phase_3(project, models):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    frames = [Image.fromarray(np.roll(base, 2 * i, axis=1)) for i in range(8)]
    out = io.BytesIO()
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:], duration=40, loop=0)

    job, _ = scored(project, out.getvalue(), kind=JobKind.VIDEO)

    row = QualityScore.objects.get(asset__job=job, metric="overall")
    assert row.status == "ok" and row.threshold == project.threshold_overall
    assert set(row.details["components"]) == {
        "subject_consistency",
        "motion_smoothness",
        "temporal_flicker",
        "aesthetic",
    }
    assert row.passed == (row.value > project.threshold_overall)
    verdict = phase_verdict(job=job, phase=3)
    assert verdict.score == row.value and verdict.passed == row.passed

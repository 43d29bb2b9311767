"""Phase-2 loops: the post-generation gate also checks that the loop closes without a visible seam."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from generation.models import JobKind, JobStatus
from quality.models import QualityGate, QualityScore
from quality.services.scoring import LOOP_SEAM_THRESHOLD
from quality.tasks import score_job
from tests.factories import AssetFactory, JobFactory, make_project

pytestmark = pytest.mark.django_db

SIZE = 64


def texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(base, (0, 0), 3).astype(np.float32)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def pan(n: int, step: int = 2) -> list[np.ndarray]:
    """A pan across a texture that wraps: with n·step = SIZE, frame n would be frame 0 again."""
    base = texture()
    return [np.roll(base, step * i, axis=1) for i in range(n)]


def apng(frames: list[np.ndarray]) -> bytes:
    """A lossless animated PNG, so the metric sees exactly these frames."""
    images = [Image.fromarray(f) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format="PNG", save_all=True, append_images=images[1:], duration=80, loop=0)
    return out.getvalue()


@pytest.fixture
def project(owner):
    # Only the seam decides: every other gated threshold is at its floor, and no regeneration.
    project = make_project(
        owner, threshold_aesthetic=0.0, threshold_temporal=0.0, threshold_motion=0.0, max_regenerations=0
    )
    project.threshold_overall = 0.0  # a phase-3 video's composite (not a project_create field)
    project.save(update_fields=["threshold_overall"])
    return project


def scored_loop(project, owner, frames: list[np.ndarray], kind: str = JobKind.LOOP):
    job = JobFactory(project=project, created_by=owner, kind=kind, status=JobStatus.SUCCEEDED)
    AssetFactory(project=project, job=job, file=ContentFile(apng(frames), name="loop.png"), mime="image/png")
    outcome = score_job(job.pk)
    return job, outcome


def test_a_seamless_loop_passes_the_seam_check(project, owner, models):
    job, outcome = scored_loop(project, owner, pan(SIZE // 2))  # wraps exactly

    assert outcome == "passed"
    row = QualityScore.objects.get(asset__job=job, metric="loop_seamlessness")
    assert (row.passed, row.threshold, row.details["seamless"]) == (True, LOOP_SEAM_THRESHOLD, True)
    gate = QualityGate.objects.get(job=job, stage="post_gen")
    assert "loop_seamlessness" in gate.details["evaluated"]


def test_a_loop_that_jumps_back_fails_on_the_seam_alone(project, owner, models):
    job, outcome = scored_loop(project, owner, pan(SIZE // 4))  # stops half way: last → first is a cut

    assert outcome == "failed"
    row = QualityScore.objects.get(asset__job=job, metric="loop_seamlessness")
    assert row.details["seamless"] is False and row.passed is False
    assert row.value < LOOP_SEAM_THRESHOLD  # the number and the verdict agree
    gate = QualityGate.objects.get(job=job, stage="post_gen")
    failing = {c["metric"] for c in gate.details["checks"] if not c["passed"]}
    assert failing == {"loop_seamlessness"}
    assert gate.details["regeneration"] == "limit reached (0 regenerations)"


def test_a_video_is_not_held_to_the_loop_rule(project, owner, models):
    job, outcome = scored_loop(project, owner, pan(SIZE // 4), kind=JobKind.VIDEO)

    assert outcome == "passed"
    assert not QualityScore.objects.filter(asset__job=job, metric="loop_seamlessness").exists()

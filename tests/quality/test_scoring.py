"""A job finishes on the fake ComfyUI → its outputs are scored with the tiny models → gated → announced."""

from __future__ import annotations

import io

import pytest

from characters.models import ReferenceEmbedding
from characters.services import character_add_reference, character_create
from generation import tasks
from generation.models import JobStatus
from generation.services.inputs import image_source_from, input_image_create
from quality import weights
from quality.models import QualityGate, QualityScore
from quality.tasks import score_job, score_succeeded
from tests.factories import make_project
from tests.quality.scoring_helpers import listen, png, submit, wait_for_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner):
    return make_project(owner, art_kind="photoreal", threshold_aesthetic=0.0)


def character_with_reference(project):
    import io

    character = character_create(project=project, name="Kai", design_prompt="1boy, silver hair")
    character_add_reference(
        character=character, upload=io.BytesIO(png((240, 240, 240), square=40)), original_name="kai.png"
    )
    return character


def test_a_finished_job_is_scored_gated_and_announced(fake, project, owner, engine, models, channel_layer):
    _, announced = engine
    job = submit(project, owner, overrides={"batch_size": 2})
    assert tasks.job_run(job.pk) == "succeeded"
    # Generation only announces; scoring the job is what was enqueued.
    assert announced.take() == [("quality.tasks.score_succeeded", job.pk)]
    channel = listen(channel_layer, f"job.{job.pk}")

    assert score_succeeded(job.pk) == "1 scored"  # what the worker runs

    rows = QualityScore.objects.filter(asset__job=job)
    aesthetic = list(rows.filter(metric="aesthetic"))
    assert len(aesthetic) == 2
    assert {r.model_id for r in aesthetic} == {"laion-aesthetic+clip-vit-l-14"}
    assert all(r.status == "ok" and r.value is not None and r.threshold == 0.0 and r.passed for r in aesthetic)
    assert rows.filter(metric="sharpness", status="ok", threshold__isnull=True).count() == 2
    gate = QualityGate.objects.get(job=job, stage="post_gen")
    assert gate.passed is True
    assert gate.details["outcome"] == "passed"
    assert gate.details["evaluated"] == ["aesthetic"]
    assert gate.details["kept_job"] == job.pk
    event = wait_for_event(channel_layer, channel, "quality_evaluation")
    assert (event["job"], event["outcome"], event["passed"]) == (job.pk, "passed", True)
    assert {s["metric"] for s in event["scores"]} >= {"aesthetic", "sharpness"}
    assert job.__class__.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def test_scoring_twice_stores_nothing_new(fake, project, owner, engine, models):
    job = submit(project, owner)
    tasks.job_run(job.pk)
    score_job(job.pk)
    count = QualityScore.objects.count()

    score_job(job.pk)  # a re-delivered task

    assert QualityScore.objects.count() == count
    assert QualityGate.objects.filter(job=job, stage="post_gen").count() == 1


def test_character_similarity_embeds_the_references_and_reports_the_match(fake, project, owner, engine, models):
    character = character_with_reference(project)
    job = submit(project, owner, character=character)
    tasks.job_run(job.pk)

    score_job(job.pk)

    embedding = ReferenceEmbedding.objects.get(reference__character=character)
    assert embedding.model_id == "buffalo_l" and embedding.dim == 512
    row = QualityScore.objects.get(asset__job=job, metric="character_similarity")
    assert row.model_id == "buffalo_l"
    assert character.consistency_threshold is None  # follows the project
    assert row.threshold == project.threshold_similarity
    assert row.character == character
    if row.status == "ok":
        assert row.details["reference"] == embedding.reference_id
        assert row.passed == (row.value >= row.threshold)
    else:
        assert row.status == "no_subject" and row.value is None


def test_missing_weights_are_unavailable_and_the_gate_says_what_was_skipped(
    fake, project, owner, engine, models_without
):
    models_without(weights.AESTHETIC_HEAD)
    job = submit(project, owner)
    tasks.job_run(job.pk)

    assert score_job(job.pk) == "not_evaluated"

    row = QualityScore.objects.get(asset__job=job, metric="aesthetic")
    assert (row.status, row.value, row.passed) == ("unavailable", None, None)
    assert row.details["fix"] == "python manage.py fetch_models laion-aesthetic"
    gate = QualityGate.objects.get(job=job, stage="post_gen")
    assert gate.passed is None  # not a pass
    assert gate.details["outcome"] == "not_evaluated"
    assert gate.details["skipped_metrics"] == ["aesthetic"]
    assert gate.details["fix"] == ["python manage.py fetch_models laion-aesthetic"]
    assert not job.children.exists()  # regenerating cannot fix missing weights


def test_a_loop_gets_temporal_scores_and_its_gate_checks_coherence_and_motion(fake, project, owner, engine, models):
    first, _ = input_image_create(project=project, user=owner, upload=io.BytesIO(png()), original_name="first.png")
    job = submit(project, owner, slug="weightless-loop", images={"init_image": image_source_from(first)})
    assert tasks.job_run(job.pk) == "succeeded"

    score_job(job.pk)

    metrics = set(QualityScore.objects.filter(asset__job=job).values_list("metric", flat=True))
    assert {
        "temporal_lpips",
        "subject_consistency",
        "motion_smoothness",
        "temporal_flicker",
        "loop_seamlessness",
    } <= metrics
    lpips = QualityScore.objects.get(asset__job=job, metric="temporal_lpips")
    assert lpips.model_id == "alexnet" and lpips.status == "ok"
    gate = QualityGate.objects.get(job=job, stage="post_gen")
    assert {"subject_consistency", "motion_smoothness", "aesthetic"} <= set(gate.details["evaluated"])
    coherence = QualityScore.objects.get(asset__job=job, metric="subject_consistency")
    assert coherence.threshold == project.threshold_temporal


def test_an_unreadable_output_is_a_failed_evaluation_not_a_crash(fake, project, owner, engine, models):
    job = submit(project, owner)
    tasks.job_run(job.pk)
    asset = job.assets.get()
    with open(asset.file.path, "wb") as handle:
        handle.write(b"this is not an image")
    project.max_regenerations = 0
    project.save()

    assert score_job(job.pk) == "failed"

    row = QualityScore.objects.get(asset=asset, metric="media")
    assert (row.status, row.value, row.passed) == ("error", None, False)
    assert "not an image or video" in row.details["reason"]

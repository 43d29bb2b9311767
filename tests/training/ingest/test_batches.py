"""Ingestion batches: classification without a target, progress, claims, a failure half way, the duplicate check."""

from __future__ import annotations

import pytest

from tests.factories import CharacterFactory
from tests.training.ingest.helpers import (
    FakeClassifier,
    make_zip,
    near_copy,
    png,
    start_and_run,
    texture,
    upload,
)
from training.ingest import services, tasks
from training.ingest.dedupe import dataset_duplicate_of
from training.models import DatasetImage, IngestBatch, IngestStatus

# --- classification without a target ------------------------------------------------------------


def test_without_a_target_images_go_to_the_named_character_or_stay_out(
    project, owner, hana, kai, monkeypatch, enqueued
):
    kai_data, hana_data, nobody = png(texture(1)), png(texture(2)), png(texture(3))

    def decide(data, candidates):
        return {kai_data: (kai.pk, 0.8), hana_data: (hana.pk, 0.7)}.get(data, (None, 0.0))

    monkeypatch.setattr("training.llm.classify.classify_image", FakeClassifier(decide))
    archive = make_zip({"k.png": kai_data, "h.png": hana_data, "n.png": nobody})
    batch = start_and_run(project, owner, uploads=[upload("cast.zip", archive)])

    assert batch.status == IngestStatus.SUCCEEDED
    assert (batch.report["added"], batch.report["unclassified"]) == (2, 1)
    assert any(m == "cast.zip/n.png: kept unassigned, no character recognised" for m in batch.report["messages"])
    k = DatasetImage.objects.get(source_ref="cast.zip/k.png")
    assert (k.character, k.classified_character, k.classification_confidence) == (kai, kai, pytest.approx(0.8))
    assert DatasetImage.objects.get(source_ref="cast.zip/h.png").character == hana
    assert batch.source_file.read() == archive  # the unclassified image is still in the kept source


# --- progress, claims, the shared duplicate check -------------------------------------------------


def test_progress_is_visible_while_the_batch_runs(project, owner, hana, monkeypatch, enqueued):
    seen: list[tuple[str, int, int | None, str]] = []

    def decide(data, candidates):
        row = IngestBatch.objects.values_list("status", "progress_done", "progress_total", "stage").get()
        seen.append(row)
        return candidates[0].pk, 0.5

    monkeypatch.setattr("training.llm.classify.classify_image", FakeClassifier(decide))
    archive = make_zip({f"{i}.png": png(texture(i)) for i in range(5)})
    batch = start_and_run(project, owner, character=hana, uploads=[upload("five.zip", archive)])

    assert [row[1] for row in seen] == [0, 1, 2, 3, 4]
    assert all(row[0] == "running" and row[2] == 5 and row[3] == "adding images from the archive" for row in seen)
    assert (batch.progress_done, batch.progress_total, batch.stage) == (5, 5, "done")
    assert batch.started_at and batch.finished_at and batch.report["added"] == 5


def test_a_redelivered_task_does_nothing_twice(project, owner, hana, classifier, enqueued):
    batch = start_and_run(project, owner, character=hana, uploads=[upload("a.png", png(texture(1)))])
    assert tasks.ingest_run(batch.pk) == "not claimed"
    assert DatasetImage.objects.count() == 1


def test_a_failure_half_way_keeps_the_images_already_added(project, owner, hana, classifier, monkeypatch, enqueued):
    from training.ingest import pipeline

    original = pipeline.Ingestor._store

    def store(self, candidate, result, character, verdict):
        if self.report.added == 2:
            raise OSError(28, "No space left on device")
        return original(self, candidate, result, character, verdict)

    monkeypatch.setattr(pipeline.Ingestor, "_store", store)
    archive = make_zip({f"{i}.png": png(texture(i)) for i in range(4)})
    batch = services.ingest_batch_start(project=project, user=owner, character=hana, uploads=[upload("x.zip", archive)])
    with pytest.raises(OSError):
        tasks.ingest_run(batch.pk)
    batch.refresh_from_db()
    assert batch.status == IngestStatus.FAILED and "No space left on device" in batch.error_message
    assert batch.report["added"] == 2
    images = list(DatasetImage.objects.all())
    assert len(images) == 2 and all(i.image.storage.exists(i.image.name) for i in images)
    assert batch.source_file.read() == archive


def test_dataset_duplicate_of_serves_other_paths(project, owner, hana, classifier, enqueued):
    start_and_run(project, owner, character=hana, uploads=[upload("a.png", png(texture(1)))])
    existing = DatasetImage.objects.get()
    assert dataset_duplicate_of(character_id=hana.pk, data=png(texture(1))) == (existing.pk, 0)
    match = dataset_duplicate_of(character_id=hana.pk, data=near_copy(texture(1)))
    assert match is not None and match[0] == existing.pk and 0 < match[1] <= 6
    assert dataset_duplicate_of(character_id=hana.pk, data=png(texture(2))) is None


def test_character_of_another_project_is_refused(project, owner, enqueued):
    from tests.factories import make_project

    other = CharacterFactory(project=make_project(owner, name="Other"), name="Stray")
    with pytest.raises(services.IngestError, match="another project"):
        services.ingest_batch_start(project=project, user=owner, character=other, uploads=[upload("a.png", b"x")])

"""Ingestion through the task: uploaded images and archives (bad files, duplicates, path tricks, zip bombs)."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from tests.training.ingest.helpers import (
    make_zip,
    near_copy,
    png,
    run,
    start_and_run,
    texture,
    upload,
)
from training.ingest import services
from training.ingest.pipeline import thumbnail_name
from training.models import DatasetImage, DatasetSource, IngestStatus


def test_single_image_is_added_with_hash_thumbnail_and_classification(
    project, owner, hana, kai, classifier, enqueued, django_capture_on_commit_callbacks
):
    data = png(texture(1))
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.ingest_batch_start(
            project=project, user=owner, character=hana, uploads=[upload("pose.png", data)]
        )
    assert enqueued == [batch.pk]
    batch = run(batch)

    assert batch.status == IngestStatus.SUCCEEDED and batch.stage == "done"
    assert batch.report["added"] == 1 and batch.progress_done == batch.progress_total == 1
    image = DatasetImage.objects.get(ingest_batch=batch)
    assert image.character == hana and image.source == DatasetSource.UPLOAD and image.source_ref == "pose.png"
    assert image.image.read() == data and image.width == image.height == 96
    assert len(image.phash) == 16 and "pose" not in image.image.name
    with image.image.storage.open(thumbnail_name(image.image.name)) as thumb:
        assert Image.open(thumb).format == "JPEG"
    # With a target, the classifier only records its opinion (here: the first candidate).
    assert classifier.calls[0]["candidates"] == [hana, kai] or set(classifier.calls[0]["candidates"]) == {hana, kai}
    assert image.classification_method == "llm" and image.classification_confidence == pytest.approx(0.9)
    assert image.classified_character_id == classifier.calls[0]["candidates"][0].pk
    # The upload is kept with the batch.
    assert batch.source_file.read() == data


def test_renamed_text_file_fails_with_a_clear_message_and_adds_nothing(project, owner, hana, classifier, enqueued):
    batch = start_and_run(project, owner, character=hana, uploads=[upload("portrait.png", b"just some notes\n" * 20)])
    assert batch.status == IngestStatus.FAILED
    assert "portrait.png" in batch.error_message and "not a readable image" in batch.error_message
    assert batch.report["unreadable"] == 1 and not DatasetImage.objects.exists()
    assert batch.source_file.read().startswith(b"just some notes")


def test_several_images_at_once_keep_their_names_as_labels_only(project, owner, hana, classifier, enqueued):
    files = [upload("../../etc/a.png", png(texture(1))), upload("b.png", png(texture(2)))]
    batch = start_and_run(project, owner, character=hana, uploads=files)
    assert batch.status == IngestStatus.SUCCEEDED and batch.report["added"] == 2
    refs = sorted(DatasetImage.objects.values_list("source_ref", flat=True))
    assert refs == ["2 files/a.png", "2 files/b.png"]
    assert all(".." not in name for name in DatasetImage.objects.values_list("image", flat=True))


# --- archives ------------------------------------------------------------------------------------


def test_zip_with_folders_truncated_png_too_small_and_duplicates(project, owner, hana, classifier, enqueued):
    good = png(texture(1))
    existing = png(texture(9))
    start_and_run(project, owner, character=hana, uploads=[upload("first.png", existing)])
    archive = make_zip(
        {
            "set/one/a.png": good,
            "set/one/a-again.png": good,  # exact duplicate inside the batch
            "set/two/a-brighter.jpg": near_copy(texture(1)),  # near duplicate inside the batch
            "set/two/old.jpg": near_copy(texture(9)),  # near duplicate of the dataset
            "b.png": png(texture(2)),
            "broken.png": png(texture(3))[:300],  # truncated
            "tiny.png": png(texture(4, size=32)),
            "__MACOSX/._a.png": b"resource fork",
        }
    )
    batch = start_and_run(project, owner, character=hana, uploads=[upload("set.zip", archive)])

    assert batch.status == IngestStatus.SUCCEEDED
    report = batch.report
    assert (report["added"], report["duplicate"], report["unreadable"], report["too_small"]) == (2, 3, 1, 1)
    text = "\n".join(report["messages"])
    assert "set.zip/broken.png" in text and "set.zip/tiny.png: 32×32" in text
    assert "set.zip/set/one/a-again.png: the same file as set.zip/set/one/a.png in this batch" in text
    assert "set.zip/set/two/a-brighter.jpg: a near-duplicate" in text and report["held"] == 2
    old = DatasetImage.objects.get(source_ref="first.png")
    assert "set.zip/set/two/old.jpg: a near-duplicate (distance" in text and f"dataset image #{old.pk}" in text
    assert set(DatasetImage.objects.filter(ingest_batch=batch).values_list("source_ref", flat=True)) == {
        "set.zip/set/one/a.png",
        "set.zip/b.png",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [("../evil.png", "'..'"), ("ok/../../evil.png", "'..'"), ("/abs/evil.png", "absolute path")],
)
def test_zip_with_path_tricks_is_refused_whole(project, owner, hana, classifier, enqueued, name, expected):
    archive = make_zip({"fine.png": png(texture(1)), name: png(texture(2))})
    batch = start_and_run(project, owner, character=hana, uploads=[upload("tricks.zip", archive)])
    assert batch.status == IngestStatus.FAILED
    assert name in batch.error_message and expected in batch.error_message and "refused" in batch.error_message
    assert not DatasetImage.objects.exists()
    assert batch.source_file.read() == archive  # kept: nothing the user sent is lost


def test_zip_with_a_symlink_is_refused(project, owner, hana, classifier, enqueued):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("fine.png", png(texture(1)))
        link = zipfile.ZipInfo("link.png")
        link.create_system = 3
        link.external_attr = (0o120777 << 16) | 0
        archive.writestr(link, "/etc/passwd")
    batch = start_and_run(project, owner, character=hana, uploads=[upload("links.zip", out.getvalue())])
    assert batch.status == IngestStatus.FAILED and "link.png" in batch.error_message
    assert "symbolic link" in batch.error_message and not DatasetImage.objects.exists()


def test_zip_bomb_by_declared_size_is_refused(settings, project, owner, hana, classifier, enqueued):
    settings.TOWER_INGEST_MAX_ARCHIVE_BYTES = 1024 * 1024
    archive = make_zip({"a.png": png(texture(1)), "zeros.png": b"\0" * (2 * 1024 * 1024)})
    assert len(archive) < 10_000
    batch = start_and_run(project, owner, character=hana, uploads=[upload("bomb.zip", archive)])
    assert batch.status == IngestStatus.FAILED
    assert "zeros.png" in batch.error_message and "1,048,576" in batch.error_message
    assert not DatasetImage.objects.exists()


def test_zip_bomb_with_lying_headers_is_refused_while_reading(settings, project, owner, hana, classifier, enqueued):
    settings.TOWER_INGEST_MAX_ARCHIVE_BYTES = 1024 * 1024
    archive = bytearray(make_zip({"a.png": png(texture(1)), "zeros.png": b"\0" * (4 * 1024 * 1024)}))
    # Rewrite the uncompressed size of zeros.png to 100 bytes in both headers: the declared total fits.
    real = (4 * 1024 * 1024).to_bytes(4, "little")
    assert archive.count(real) == 2
    archive = bytes(archive).replace(real, (100).to_bytes(4, "little"))
    batch = start_and_run(project, owner, character=hana, uploads=[upload("liar.zip", archive)])
    assert batch.status == IngestStatus.FAILED
    assert "zeros.png" in batch.error_message and "refused" in batch.error_message
    assert not DatasetImage.objects.exists()


def test_zip_with_too_many_members_is_refused(settings, project, owner, hana, classifier, enqueued):
    settings.TOWER_INGEST_MAX_ARCHIVE_MEMBERS = 3
    archive = make_zip({f"{i}.png": png(texture(i)) for i in range(4)})
    batch = start_and_run(project, owner, character=hana, uploads=[upload("many.zip", archive)])
    assert batch.status == IngestStatus.FAILED and "4 members; the limit is 3" in batch.error_message
    assert not DatasetImage.objects.exists()

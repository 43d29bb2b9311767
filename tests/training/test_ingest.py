"""Ingestion end to end through the task: every source, every bad input, duplicates, sizes, progress, report."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, PngImagePlugin

from tests.factories import AssetFactory, CharacterFactory, JobFactory
from tests.fakes.http_files import FileServer
from training.ingest import services, tasks
from training.ingest.dedupe import dataset_duplicate_of
from training.ingest.pipeline import thumbnail_name
from training.llm.classify import Classification
from training.models import DatasetImage, DatasetSource, IngestBatch, IngestStatus

# --- builders ------------------------------------------------------------------------------------


def texture(seed: int, size: int = 96) -> np.ndarray:
    """A distinct, detailed RGB image per seed (pHashes far apart)."""
    rng = np.random.default_rng(seed)
    blocks = (rng.random((8, 8, 3)) * 255).astype("uint8")
    return cv2.resize(blocks, (size, size), interpolation=cv2.INTER_NEAREST)


def png(array: np.ndarray, pnginfo: PngImagePlugin.PngInfo | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", pnginfo=pnginfo)
    return out.getvalue()


def near_copy(array: np.ndarray) -> bytes:
    """The same picture, slightly brighter and re-encoded as JPEG: other bytes, same pHash neighbourhood."""
    out = io.BytesIO()
    Image.fromarray(np.clip(array.astype(int) + 6, 0, 255).astype("uint8")).save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


SHOTS = [(230, 40, 40), (40, 200, 60), (50, 70, 230)]
FRAMES_PER_SHOT = 24
BLURRED = {0, 1, 2, 3, 24, 25, 26, 27, 48, 49, 50, 51}  # the first four frames of every shot


def make_video(path: Path, *, size: int = 128, fps: int = 12) -> Path:
    """Three coloured shots with hard cuts, 2 s each; the first four frames of each are blurred."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "16"}
        number = 0
        for shot, colour in enumerate(SHOTS):
            tex = cv2.cvtColor(texture(100 + shot, size), cv2.COLOR_RGB2GRAY)
            for i in range(FRAMES_PER_SHOT):
                frame = (np.full((size, size, 3), colour, "uint8") * 0.5 + tex[..., None] * 0.5).astype("uint8")
                frame = np.roll(frame, i, axis=1)
                if number in BLURRED:
                    frame = cv2.GaussianBlur(frame, (0, 0), 4)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                number += 1
        for packet in stream.encode():
            container.mux(packet)
    return path


def comfy_png(array: np.ndarray, graph: dict, workflow: dict | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    info.add_text("workflow", json.dumps(workflow or {"nodes": [], "links": []}))
    return png(array, info)


def api_graph(positive: str, seed: int) -> dict:
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": seed, "steps": 20, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0]},
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "anime.safetensors"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "lowres, bad hands", "clip": ["4", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["4", 1]}},
    }


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _ingest_settings(settings):
    settings.TOWER_DATASET_MIN_SIDE = 64
    settings.TOWER_DATASET_PHASH_DISTANCE = 6
    settings.TOWER_INGEST_ALLOWED_HOSTS = ["127.0.0.1"]  # the fake file servers are on loopback


@pytest.fixture
def hana(project):
    return CharacterFactory(project=project, name="Hana")


@pytest.fixture
def kai(project):
    return CharacterFactory(project=project, name="Kai")


class FakeClassifier:
    """Stands in for training.llm.classify (built by another part); records what it was asked."""

    def __init__(self, decide=None) -> None:
        self.decide = decide or (lambda data, candidates: (candidates[0].pk, 0.9))
        self.calls: list[dict] = []

    def __call__(self, *, project, data, candidates=None):
        self.calls.append({"project": project, "data": data, "candidates": list(candidates or [])})
        character_id, confidence = self.decide(data, list(candidates or []))
        if character_id is None:
            return Classification(character_id=None, confidence=0.0, method="", note="no character recognised")
        return Classification(character_id=character_id, confidence=confidence, method="llm")


@pytest.fixture
def classifier(monkeypatch):
    fake = FakeClassifier()
    monkeypatch.setattr("training.llm.classify.classify_image", fake)
    return fake


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(services, "enqueue_run", calls.append)
    return calls


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def run(batch: IngestBatch) -> IngestBatch:
    assert tasks.ingest_run(batch.pk) in (IngestStatus.SUCCEEDED, IngestStatus.NOTHING_ADDED, IngestStatus.FAILED)
    batch.refresh_from_db()
    return batch


def start_and_run(project, owner, **kwargs) -> IngestBatch:
    return run(services.ingest_batch_start(project=project, user=owner, **kwargs))


# --- image uploads -------------------------------------------------------------------------------


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


# --- video ---------------------------------------------------------------------------------------


def test_video_upload_keeps_the_sharpest_frames_of_each_shot(tmp_path, project, owner, hana, classifier, enqueued):
    data = make_video(tmp_path / "clip.mp4").read_bytes()
    batch = start_and_run(
        project, owner, character=hana, uploads=[upload("clip.mp4", data, "video/mp4")], frames_per_shot=2
    )
    assert batch.status == IngestStatus.SUCCEEDED, batch.error_message
    assert batch.source == DatasetSource.VIDEO_FRAME
    (video,) = batch.report["videos"]
    assert video["shots"] == 3 and video["frames_decoded"] == 72 and video["frames_kept"] == 6
    assert video["duration_seconds"] == pytest.approx(6.0, abs=0.1)
    # Each shot gives at least one image (the others of a static shot are near-duplicates of it).
    images = list(DatasetImage.objects.filter(ingest_batch=batch))
    assert batch.report["added"] + batch.report["duplicate"] == 6
    shots = {ref.split(" shot ")[1].split(" ")[0] for ref in (i.source_ref for i in images)}
    assert shots == {"1", "2", "3"}
    kept_frames = {int(i.source_ref.split(" frame ")[1].split(" ")[0]) for i in images}
    assert not kept_frames & BLURRED
    assert all(i.source == DatasetSource.VIDEO_FRAME and i.width == 128 for i in images)


def test_unreadable_video_fails_with_a_message(project, owner, hana, classifier, enqueued):
    data = b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100
    batch = start_and_run(project, owner, character=hana, uploads=[upload("clip.mp4", data)])
    assert batch.status == IngestStatus.FAILED and batch.error_message.startswith("clip.mp4: the video cannot be")
    assert not DatasetImage.objects.exists() and batch.source_file.read() == data


# --- URLs (yt-dlp) -------------------------------------------------------------------------------


def test_url_is_downloaded_by_yt_dlp_and_its_frames_added(tmp_path, project, owner, hana, classifier, enqueued):
    clip = make_video(tmp_path / "clip.mp4")
    with FileServer({"/media/clip.mp4": clip}) as server:
        batch = start_and_run(project, owner, character=hana, url=server.url("/media/clip.mp4"), frames_per_shot=1)
    assert batch.status == IngestStatus.SUCCEEDED, batch.error_message
    assert any(method == "GET" and path == "/media/clip.mp4" for method, path, _ in server.requests)
    assert batch.source == DatasetSource.YOUTUBE and batch.report["videos"][0]["shots"] == 3
    assert batch.report["added"] == 3
    assert set(DatasetImage.objects.values_list("source", flat=True)) == {DatasetSource.YOUTUBE}
    assert batch.source_file.read() == clip.read_bytes()  # the download is kept like an upload
    assert not list((Path(batch.source_file.path).parent).glob("download-*"))  # the temp folder is gone


def test_unreachable_url_fails_with_a_clear_message(project, owner, hana, classifier, enqueued):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/clip.mp4"
    batch = start_and_run(project, owner, character=hana, url=url)
    assert batch.status == IngestStatus.FAILED
    assert batch.error_message.startswith(f"could not download {url}") and "refused" in batch.error_message.lower()
    assert not DatasetImage.objects.exists()


def test_url_must_be_http(project, owner, hana, enqueued):
    with pytest.raises(services.IngestError, match="http"):
        services.ingest_batch_start(project=project, user=owner, character=hana, url="file:///etc/passwd")
    assert not IngestBatch.objects.exists() and enqueued == []


# --- ComfyUI folders -----------------------------------------------------------------------------


@pytest.fixture
def comfy_root(settings, tmp_path):
    root = tmp_path / "comfy" / "output"
    (root / "2025-06-01").mkdir(parents=True)
    settings.TOWER_COMFYUI_OUTPUT_DIRS = [str(root)]
    return root


def test_comfy_scan_recovers_prompts_and_links_jobs(comfy_root, project, owner, hana, classifier, enqueued):
    # One output Tower stored as an asset (matched by bytes), one whose graph a job submitted, one unknown.
    by_asset = comfy_png(texture(1), api_graph("1girl, hana, red scarf", 11))
    job_a = JobFactory(project=project, prompt="1girl, hana, red scarf", seed=11, graph=api_graph("x", 11))
    asset = AssetFactory(project=project, job=job_a, sha256=__import__("hashlib").sha256(by_asset).hexdigest())
    graph = api_graph("1girl, hana, school uniform", 22)
    job_b = JobFactory(project=project, prompt="1girl, hana, school uniform", seed=22, graph=graph)
    JobFactory(project=project, prompt="1girl, hana, school uniform", seed=23, graph=api_graph("other", 23))
    by_graph_graph = json.loads(json.dumps(graph))
    by_graph_graph["6"]["_meta"] = {"title": "Positive"}  # ComfyUI may add titles; still the same graph
    (comfy_root / "2025-06-01" / "ComfyUI_00001_.png").write_bytes(by_asset)
    (comfy_root / "2025-06-01" / "ComfyUI_00002_.png").write_bytes(comfy_png(texture(2), by_graph_graph))
    (comfy_root / "ComfyUI_00003_.png").write_bytes(comfy_png(texture(3), api_graph("1boy, stranger", 33)))
    (comfy_root / "ComfyUI_00004_.png").write_bytes(png(texture(4)))
    (comfy_root / "clip.mp4").write_bytes(b"not scanned")

    batch = start_and_run(project, owner, character=hana, folder_root=str(comfy_root))

    assert batch.status == IngestStatus.SUCCEEDED and batch.report["added"] == 4
    assert batch.report["other_files_ignored"] == 1
    rows = {i.source_ref: i for i in DatasetImage.objects.filter(ingest_batch=batch)}
    first = rows["2025-06-01/ComfyUI_00001_.png"]
    assert (first.origin_asset, first.origin_job, first.caption) == (asset, job_a, "1girl, hana, red scarf")
    second = rows["2025-06-01/ComfyUI_00002_.png"]
    assert (second.origin_asset, second.origin_job) == (None, job_b)
    assert second.caption == "1girl, hana, school uniform" and second.caption_source == "tags"
    third = rows["ComfyUI_00003_.png"]
    assert (third.origin_job, third.caption, third.source) == (None, "1boy, stranger", DatasetSource.COMFY_SCAN)
    assert rows["ComfyUI_00004_.png"].caption == "" and rows["ComfyUI_00004_.png"].caption_source == ""
    # The folder is only read.
    assert (comfy_root / "ComfyUI_00004_.png").exists()

    again = start_and_run(project, owner, character=hana, folder_root=str(comfy_root))
    assert (again.report["added"], again.report["duplicate"]) == (0, 4)
    assert again.status == IngestStatus.NOTHING_ADDED and "4 duplicates" in again.error_message


@pytest.mark.parametrize("subfolder", ["../", "../../etc", "/etc", "2025-06-01/../../"])
def test_comfy_folder_tricks_are_refused(comfy_root, project, owner, hana, enqueued, subfolder):
    with pytest.raises(services.IngestError, match="subfolder"):
        services.ingest_batch_start(
            project=project, user=owner, character=hana, folder_root=str(comfy_root), subfolder=subfolder
        )
    assert not IngestBatch.objects.exists()


def test_comfy_folder_outside_the_allowed_list_is_refused(comfy_root, tmp_path, project, owner, hana, enqueued):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(services.IngestError, match="not one of the allowed ComfyUI output folders"):
        services.ingest_batch_start(project=project, user=owner, character=hana, folder_root=str(elsewhere))
    # A symlinked subfolder that leads outside is refused too.
    (comfy_root / "escape").symlink_to(elsewhere)
    with pytest.raises(services.IngestError, match="leads outside"):
        services.ingest_batch_start(
            project=project, user=owner, character=hana, folder_root=str(comfy_root), subfolder="escape"
        )
    assert not IngestBatch.objects.exists()


def test_comfy_scan_skips_file_links_leading_outside(comfy_root, tmp_path, project, owner, hana, classifier, enqueued):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(texture(5)))
    (comfy_root / "link.png").symlink_to(secret)
    (comfy_root / "real.png").write_bytes(png(texture(6)))
    batch = start_and_run(project, owner, character=hana, folder_root=str(comfy_root))
    assert batch.report["added"] == 1
    assert any("link.png: a link leading outside" in m for m in batch.report["messages"])
    assert list(DatasetImage.objects.values_list("source_ref", flat=True)) == ["real.png"]


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

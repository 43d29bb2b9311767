"""Issue 6 end to end: ingest from an upload, a video and a ComfyUI folder → duplicates dropped →
classified by the vision LLM → approved and rejected with categories on the review page → the
character's negative prompt shows the new terms → captions written → a LoRA trained by the
(fake) kohya trainer with progress seen → registered, deployed and carried by the next generation.

Every external system is a fake on a real port or a real subprocess: the OpenAI-compatible LLM
(tests/fakes/llm.py) and the kohya trainer script (tests/fakes/kohya_trainer.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from generation.services.resolve import resolve_job_parameters
from tests.factories import CharacterFactory
from tests.fakes.llm import FakeRequest, fake_llm
from tests.training.ingest.helpers import api_graph, comfy_png, make_video, texture
from tests.training.test_trainer_helpers import fake_command, run_in_thread, wait_for
from training.ingest import services as ingest_services
from training.ingest import tasks as ingest_tasks
from training.llm.captions import training_caption
from training.llm.runs import caption_run_execute, caption_run_start
from training.models import DatasetImage, IngestBatch, LoraModel, ReviewStatus, TrainingJob, TrainingStatus
from training.review.feedback import CATEGORY_TERMS
from training.trainer import registry
from training.trainer import services as trainer_services
from training.trainer.tasks import training_dispatch

__all__ = ["fake_llm"]

pytestmark = pytest.mark.django_db(transaction=True)

RED, BLUE = (220, 40, 40), (40, 60, 220)
CAPTION_TAGS = "1girl, red jacket, short hair, smiling, upper body, outdoors"


def picture(colour: tuple[int, int, int], seed: int, size: int = 128) -> np.ndarray:
    """Mostly one colour (what the fake LLM reads), with a textured patch that makes each seed distinct."""
    image = np.full((size, size, 3), colour, "uint8")
    x = (seed * 23) % (size - 56)
    image[20:76, x : x + 56] = texture(seed, 56)
    return image


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **options)
    return out.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def run_batch(batch: IngestBatch) -> IngestBatch:
    ingest_tasks.ingest_run(batch.pk)
    batch.refresh_from_db()
    return batch


@pytest.fixture
def studio(settings, tmp_path, fake_llm, monkeypatch):
    settings.TOWER_DATASET_MIN_SIDE = 64
    settings.TOWER_TRAINING_MIN_IMAGES = 4
    settings.TOWER_TRAINER_COMMAND = fake_command("--step-delay", "0.02")
    settings.TOWER_TRAINER_BASE_MODEL = "sd15/anything-v5.safetensors"
    settings.TOWER_TRAINING_GPUS = ["0"]
    settings.TOWER_COMFYUI_LORA_DIR = str(tmp_path / "comfy-loras")
    (tmp_path / "comfy-loras").mkdir()
    comfy_output = tmp_path / "comfy-output"
    comfy_output.mkdir()
    settings.TOWER_COMFYUI_OUTPUT_DIRS = [str(comfy_output)]
    # Tasks run inline below; nothing goes to a broker.
    monkeypatch.setattr(ingest_services, "enqueue_run", lambda batch_id: None)
    monkeypatch.setattr(trainer_services, "enqueue_dispatch", lambda: None)
    monkeypatch.setattr(registry, "enqueue_backends_refresh", lambda: None)

    fake_llm.colours = {"Hana": RED, "Kai": BLUE}

    def answer(request: FakeRequest) -> str:
        if "booru-style tags" in request.prompt:
            return CAPTION_TAGS
        return fake_llm.classify_by_colour(request)

    fake_llm.answer = answer
    return {"comfy_output": comfy_output, "lora_dir": tmp_path / "comfy-loras", "llm": fake_llm}


def test_from_ingestion_to_a_trained_lora_the_next_generation_carries(studio, project, owner, tmp_path):
    hana = CharacterFactory(project=project, name="Hana", slug="hana", trigger_word="hanaSTY", design_prompt="red hair")
    kai = CharacterFactory(project=project, name="Kai", slug="kai", trigger_word="kaiSTY", design_prompt="blue coat")

    # --- 1. ingest: a zip upload, a video and a ComfyUI output folder, classified automatically
    reds = [picture(RED, seed) for seed in range(1, 6)]
    blues = [picture(BLUE, seed) for seed in range(11, 13)]
    members = {f"hana/{i}.png": encode(a) for i, a in enumerate(reds)}
    members |= {f"kai/{i}.png": encode(a) for i, a in enumerate(blues)}
    members["hana/again.png"] = members["hana/0.png"]  # the same file twice
    members["hana/near.jpg"] = encode(np.clip(reds[1].astype(int) + 5, 0, 255).astype("uint8"), "JPEG", quality=92)
    archive = SimpleUploadedFile("shoot.zip", zip_of(members), content_type="application/zip")
    upload_batch = run_batch(ingest_services.ingest_batch_start(project=project, user=owner, uploads=[archive]))
    assert upload_batch.status == "succeeded", upload_batch.error_message
    assert upload_batch.report["added"] == 7
    assert upload_batch.report["duplicate"] == 2  # the exact copy and the re-encoded near copy

    video_path = make_video(tmp_path / "episode.mp4")
    with video_path.open("rb") as handle:
        video = SimpleUploadedFile("episode.mp4", handle.read(), content_type="video/mp4")
    video_batch = run_batch(
        ingest_services.ingest_batch_start(project=project, user=owner, uploads=[video], frames_per_shot=1)
    )
    assert video_batch.status == "succeeded", video_batch.error_message
    assert video_batch.report["added"] >= 1

    scene = picture(RED, 40)
    (studio["comfy_output"] / "tower").mkdir()
    (studio["comfy_output"] / "tower" / "hana_00001_.png").write_bytes(
        comfy_png(scene, api_graph("hanaSTY, 1girl, red jacket, rooftop at dusk", seed=9))
    )
    scan = run_batch(
        ingest_services.ingest_batch_start(
            project=project, user=owner, folder_root=str(studio["comfy_output"]), subfolder="tower"
        )
    )
    assert scan.status == "succeeded", scan.error_message
    assert scan.report["added"] == 1
    scanned = DatasetImage.objects.get(ingest_batch=scan)
    assert scanned.character == hana and "rooftop at dusk" in scanned.caption

    # The vision LLM decided every character, and the red pictures are Hana's.
    from_upload = DatasetImage.objects.filter(ingest_batch=upload_batch)
    assert sorted(from_upload.values_list("character__name", flat=True)) == ["Hana"] * 5 + ["Kai"] * 2
    assert set(from_upload.values_list("classification_method", flat=True)) == {"llm"}
    assert studio["llm"].requests, "the LLM was asked"

    # --- 2. review on the keyboard page: approve five of Hana's images, reject two with categories
    client = Client()
    client.force_login(owner)
    pending = list(DatasetImage.objects.filter(character=hana, status=ReviewStatus.PENDING).order_by("pk"))
    assert len(pending) >= 6
    to_approve, to_reject = [*pending[:4], scanned], [i for i in pending[4:6] if i.pk != scanned.pk]
    for image in to_approve:
        response = client.post(reverse("review-action", args=[image.pk, "approve"]), {"character": hana.pk})
        assert response.status_code in (200, 302)
    for image, category in zip(to_reject, ["bad_anatomy", "off_model_colours"], strict=False):
        response = client.post(
            reverse("review-action", args=[image.pk, "reject"]), {"character": hana.pk, "category": category}
        )
        assert response.status_code in (200, 302)
    hana.refresh_from_db()
    assert DatasetImage.objects.filter(character=hana, status=ReviewStatus.APPROVED).count() == 5
    assert set(DatasetImage.objects.filter(pk__in=[i.pk for i in to_reject]).values_list("status", flat=True)) == {
        ReviewStatus.REJECTED
    }

    # --- 3. the rejections taught Hana's negative prompt; the page and every new job show it
    for term in CATEGORY_TERMS["bad_anatomy"] + CATEGORY_TERMS["off_model_colours"]:
        assert hana.learned_negatives.get(term) == 1
    negative = resolve_job_parameters(project=project, character=hana, mode="draft").negative
    assert "extra fingers" in negative and "color bleeding" in negative
    assert "extra fingers" in client.get(reverse("character-detail", args=[hana.pk])).content.decode()

    # --- 4. captions for the approved images, by the vision LLM, trigger word first in the training set
    run = caption_run_start(character=hana, method="llm", user=owner, enqueue=lambda *args: None)
    assert caption_run_execute(character_id=hana.pk, run_id=run["run_id"]) == "succeeded"
    approved = list(DatasetImage.objects.filter(character=hana, status=ReviewStatus.APPROVED))
    for image in approved:
        assert image.caption, f"image {image.pk} has no caption"
        assert training_caption(image).startswith("hanaSTY, ")
    assert any("red jacket" in image.caption for image in approved)

    # --- 5. training: queued from the page, run by the fake kohya trainer, progress seen live
    response = client.post(
        reverse("character-training", args=[hana.pk]),
        {"trigger_word": "hanaSTY", "repeats": 5, "epochs": 2, "learning_rate": 1e-4, "network_dim": 8},
    )
    assert response.status_code in (200, 302), response.content[:400]
    job = TrainingJob.objects.get(character=hana)
    assert job.status == TrainingStatus.QUEUED and len(job.dataset_snapshot) == 5
    layout = Path(job.work_dir) / "img" / "5_hanaSTY person"
    thread, outcome = run_in_thread(training_dispatch)
    wait_for(lambda: TrainingJob.objects.filter(pk=job.pk, step__gt=0).exists(), what="live training progress")
    thread.join(timeout=60)
    job.refresh_from_db()
    assert job.status == TrainingStatus.SUCCEEDED, (outcome, job.error_message)
    assert job.total_steps and job.step == job.total_steps and job.loss_history
    captions = sorted(layout.glob("*.txt"))
    assert len(captions) == 5 and all(p.read_text().startswith("hanaSTY, ") for p in captions)

    # --- 6. the LoRA is registered, deployed to ComfyUI's folder, and the next generation carries it
    lora = LoraModel.objects.get(training_job=job)
    assert len(lora.sha256) == 64 and lora.trigger_word == "hanaSTY" and lora.character == hana
    assert (studio["lora_dir"] / lora.name).exists()
    response = client.get(reverse("character-training", args=[hana.pk]))
    assert lora.name in response.content.decode()
    registry.lora_activate(lora=lora)
    loras = resolve_job_parameters(project=project, character=hana, mode="draft").parameters["loras"]
    assert [(e["name"], e["strength"]) for e in loras] == [(lora.name, lora.default_strength)]
    other = resolve_job_parameters(project=project, character=kai, mode="draft").parameters.get("loras") or []
    assert all(entry["name"] != lora.name for entry in other)

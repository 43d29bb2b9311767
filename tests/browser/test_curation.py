"""Curation in real Chromium against daphne and a real qcluster: a zip ingested through the page,
its batch followed live to the report, then a LoRA trained from the character's page by the fake
kohya trainer (run by the cluster's dispatcher) and registered."""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import screenshot
from tests.browser.test_studio import log_in, producer  # noqa: F401 (fixture)
from tests.factories import CharacterFactory, make_project
from tests.training.test_trainer_helpers import fake_command
from training.models import DatasetImage, LoraModel, ReviewStatus
from training.services import dataset_images_approve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

TRAINER_ENV = {
    "TOWER_TRAINER_COMMAND": fake_command("--step-delay", "0.05"),
    "TOWER_TRAINER_BASE_MODEL": "sd15/anything-v5.safetensors",
    "TOWER_TRAINING_MIN_IMAGES": "5",
    "TOWER_DATASET_MIN_SIDE": "64",
}


@pytest.fixture(scope="module")
def trainer_env():
    """The cluster started by ``stack`` (after this fixture) reads these from its environment."""
    saved = {name: os.environ.get(name) for name in TRAINER_ENV}
    os.environ.update(TRAINER_ENV)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def shoot_zip(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for n in range(count):
            rng = np.random.default_rng(n)
            blocks = (rng.random((8, 8, 3)) * 255).astype("uint8")
            picture = np.kron(blocks, np.ones((24, 24, 1), "uint8"))
            data = io.BytesIO()
            Image.fromarray(picture).save(data, format="PNG")
            archive.writestr(f"shoot/frame-{n}.png", data.getvalue())
    return out.getvalue()


def test_ingest_a_zip_then_train_a_lora_in_the_browser(trainer_env, page, stack, producer, settings, tmp_path):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"  # where daphne and the cluster keep files
    settings.TOWER_TRAINING_MIN_IMAGES = 5
    project = make_project(producer, name="Skyline Academy")
    kai = CharacterFactory(project=project, name="Kai", trigger_word="kaiSTY")
    archive = tmp_path / "shoot.zip"
    archive.write_bytes(shoot_zip(6))

    log_in(page)
    page.click("nav >> text=Ingest")
    page.select_option("#id_project", str(project.pk))
    page.select_option("#id_character", str(kai.pk))
    page.set_input_files("#id_files", str(archive))
    page.click("button:has-text('Start ingest')")
    page.wait_for_url(re.compile(r"/ingest/\d+/$"))
    # The batch runs on the cluster; the page follows it without a reload.
    page.wait_for_selector("[data-count=added]:has-text('6')", timeout=60_000)
    screenshot(page, "curation-1-ingest-report")
    assert DatasetImage.objects.filter(character=kai).count() == 6

    dataset_images_approve(
        image_ids=DatasetImage.objects.filter(character=kai).values_list("pk", flat=True), reviewer=None
    )
    assert DatasetImage.objects.filter(character=kai, status=ReviewStatus.APPROVED).count() == 6

    page.goto(f"/characters/{kai.pk}/")
    page.click("text=Training & LoRAs")
    assert "ready" in page.locator("[data-readiness]").inner_text()
    page.fill("#id_epochs", "2")
    page.click("button:has-text('Queue training')")
    page.wait_for_url(re.compile(r"/training/\d+/$"))
    # Live progress from the trainer's output, without a reload, then the end.
    page.wait_for_selector("[data-training-status]:has-text('training on GPU')", timeout=60_000)
    page.wait_for_selector("[data-training-numbers]:has-text('step')", timeout=30_000)
    screenshot(page, "curation-2-training-running")
    page.wait_for_selector("[data-training-status]:has-text('Succeeded')", timeout=90_000)
    screenshot(page, "curation-3-training-done")
    page.goto(f"/characters/{kai.pk}/training/")
    lora = LoraModel.objects.get(character=kai)
    assert lora.name in page.locator(f"[data-lora='{lora.pk}']").inner_text()
    page.click(f"[data-lora='{lora.pk}'] button:has-text('Activate')")
    page.wait_for_selector(f"[data-lora='{lora.pk}'] [data-lora-active]")
    screenshot(page, "curation-4-lora-active")

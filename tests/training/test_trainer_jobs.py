"""Training jobs end to end with the fake kohya trainer: readiness, layout, run, failures, registration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.training import test_trainer_helpers as helpers
from tests.training.test_trainer_helpers import add_images
from training.models import LoraModel, TrainingJob, TrainingStatus
from training.trainer import tasks
from training.trainer.services import TrainingError, training_job_claim_next, training_job_create, training_job_run

pytestmark = pytest.mark.django_db
enqueued, trainer, ready_character = helpers.enqueued, helpers.trainer, helpers.ready_character


def start(character, owner, **options) -> TrainingJob:
    job = training_job_create(character=character, user=owner, options=options)
    assert training_job_claim_next(worker="test:1").pk == job.pk
    training_job_run(job_id=job.pk, poll_interval=0.05)
    return TrainingJob.objects.get(pk=job.pk)


def test_below_the_minimum_says_how_many_more(project, owner, enqueued, trainer):
    from tests.factories import CharacterFactory

    character = CharacterFactory(project=project, trigger_word="miaX")
    add_images(character, 7)
    add_images(character, 5, status="pending", start=100)
    with pytest.raises(TrainingError, match=r"7 approved.*approve 3 more"):
        training_job_create(character=character, user=owner, options={})
    assert not TrainingJob.objects.exists()
    assert enqueued.count == 0


def test_empty_trigger_word_is_refused(ready_character, owner, enqueued, trainer):
    ready_character.trigger_word = ""
    ready_character.save()
    with pytest.raises(TrainingError, match="no trigger word"):
        training_job_create(character=ready_character, user=owner, options={})
    assert not TrainingJob.objects.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"learning_rate": "fast"}, "learning_rate must be a number"),
        ({"epochs": 0}, "max_train_epochs must be between"),
        ({"resolution": "500"}, "multiples of 64"),
        ({"bogus": 1}, "unknown trainer option"),
        ({"trigger_word": "../etc"}, "trigger word"),
        ({"repeats": 0}, "repeats must be between"),
    ],
)
def test_bad_options_change_nothing(ready_character, owner, enqueued, trainer, options, message):
    with pytest.raises(TrainingError, match=message):
        training_job_create(character=ready_character, user=owner, options=options)
    assert not TrainingJob.objects.exists()
    assert enqueued.count == 0


def test_create_snapshots_dataset_and_config(
    ready_character, owner, enqueued, trainer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = training_job_create(
            character=ready_character, user=owner, options={"epochs": 3, "learning_rate": "2e-4", "repeats": 5}
        )
    assert enqueued.count == 1
    assert job.status == TrainingStatus.QUEUED
    assert len(job.dataset_snapshot) == 10
    first = job.dataset_snapshot[0]
    assert first["caption"].startswith("kaiSTY, ")
    assert first["sha256"] and first["file"].startswith("datasets/")
    assert job.trigger_word == "kaiSTY" and job.repeats == 5
    assert job.base_model == "sd15/anything-v5.safetensors"
    assert job.config["network_module"] == "networks.lora"
    assert job.config["learning_rate"] == pytest.approx(2e-4)
    assert job.config["max_train_epochs"] == 3
    assert job.config["save_model_as"] == "safetensors"
    assert job.config["output_name"] == f"kai-lora-{job.pk}"


def test_run_lays_out_kohya_folders_and_registers_the_lora(
    ready_character, owner, enqueued, trainer, settings, tmp_path
):
    lora_dir = tmp_path / "comfy-loras"
    lora_dir.mkdir()
    settings.TOWER_COMFYUI_LORA_DIR = str(lora_dir)
    job = start(ready_character, owner, epochs=2, repeats=3)

    assert job.status == TrainingStatus.SUCCEEDED, job.error_message
    work = Path(job.work_dir)
    subset = work / "img" / "3_kaiSTY person"
    images = sorted(subset.glob("*.png"))
    assert len(images) == 10
    for image in images:
        assert image.with_suffix(".txt").read_text().startswith("kaiSTY, 1boy")
    config = tomllib.loads((work / "config.toml").read_text())
    assert config["train_data_dir"] == str(work / "img")
    assert config["output_dir"] == str(work / "output")
    assert config["max_train_epochs"] == 2
    assert config["pretrained_model_name_or_path"] == "sd15/anything-v5.safetensors"
    assert not any(key.startswith("tower") for key in config)

    # Progress as the page shows it: 10 images × 3 repeats × 2 epochs.
    assert (job.step, job.total_steps, job.epoch, job.total_epochs) == (60, 60, 2, 2)
    assert job.loss is not None and job.it_per_second
    assert len(job.loss_history) >= 2
    assert "running training / 学習開始" in job.log

    lora = LoraModel.objects.get(training_job=job)
    produced = work / "output" / f"kai-lora-{job.pk}.safetensors"
    import hashlib

    assert lora.sha256 == hashlib.sha256(produced.read_bytes()).hexdigest()
    assert lora.size_bytes == produced.stat().st_size
    assert lora.name == f"kai-lora-{job.pk}.safetensors"
    assert (lora.trigger_word, lora.base_model, lora.character, lora.project) == (
        "kaiSTY",
        "sd15/anything-v5.safetensors",
        ready_character,
        ready_character.project,
    )
    assert (lora_dir / lora.name).read_bytes() == produced.read_bytes()
    assert lora.deployed_at is not None
    assert lora.file.read() == produced.read_bytes()


def test_a_crashing_trainer_fails_with_its_last_lines(ready_character, owner, enqueued, trainer):
    trainer("--mode", "crash")
    job = start(ready_character, owner)
    assert job.status == TrainingStatus.FAILED
    assert "exited with code 1" in job.error_message
    assert "CUDA out of memory" in job.error_message
    assert job.finished_at is not None
    assert not LoraModel.objects.exists()


def test_exit_zero_without_a_file_fails(ready_character, owner, enqueued, trainer):
    trainer("--mode", "no_output")
    job = start(ready_character, owner)
    assert job.status == TrainingStatus.FAILED
    assert f"wrote no kai-lora-{job.pk}.safetensors" in job.error_message
    assert not LoraModel.objects.exists()


def test_a_file_that_is_not_safetensors_is_not_registered(ready_character, owner, enqueued, trainer):
    trainer("--mode", "garbage")
    job = start(ready_character, owner)
    assert job.status == TrainingStatus.FAILED
    assert "not a safetensors file" in job.error_message
    assert not LoraModel.objects.exists()


def test_without_a_trainer_no_job_is_queued_and_the_refusal_names_the_setting(
    ready_character, owner, enqueued, trainer, settings
):
    settings.TOWER_TRAINER_COMMAND = ""
    with pytest.raises(TrainingError, match="TOWER_TRAINER_COMMAND"):
        training_job_create(character=ready_character, user=owner, options={})
    assert not TrainingJob.objects.exists()


def test_a_trainer_removed_after_queueing_fails_the_job_naming_the_setting(
    ready_character, owner, enqueued, trainer, settings
):
    job = training_job_create(character=ready_character, user=owner, options={})
    settings.TOWER_TRAINER_COMMAND = ""
    training_job_claim_next(worker="w:1")
    training_job_run(job_id=job.pk, poll_interval=0.05)
    job.refresh_from_db()
    assert job.status == TrainingStatus.FAILED
    assert "TOWER_TRAINER_COMMAND" in job.error_message


def test_a_command_that_does_not_exist_fails_clearly(ready_character, owner, enqueued, trainer, settings):
    settings.TOWER_TRAINER_COMMAND = "/nonexistent/sd-scripts/train_network.py"
    job = start(ready_character, owner)
    assert job.status == TrainingStatus.FAILED
    assert "cannot start" in job.error_message and "TOWER_TRAINER_COMMAND" in job.error_message


def test_missing_lora_folder_is_reported_not_fatal(ready_character, owner, enqueued, trainer, settings, tmp_path):
    settings.TOWER_COMFYUI_LORA_DIR = str(tmp_path / "no-such-folder")
    job = start(ready_character, owner)
    assert job.status == TrainingStatus.SUCCEEDED
    lora = LoraModel.objects.get(training_job=job)
    assert lora.deployed_at is None
    assert "does not exist" in job.log


def test_dispatch_task_runs_the_queue_in_order(
    ready_character, owner, enqueued, trainer, django_capture_on_commit_callbacks
):
    first = training_job_create(character=ready_character, user=owner, options={"epochs": 1})
    second = training_job_create(character=ready_character, user=owner, options={"epochs": 1})
    assert tasks.training_dispatch().startswith(f"#{first.pk} succeeded")
    assert TrainingJob.objects.get(pk=second.pk).status == TrainingStatus.QUEUED
    assert enqueued.count >= 1  # the next one was dispatched when the first ended
    assert tasks.training_dispatch().startswith(f"#{second.pk} succeeded")
    assert tasks.training_dispatch() == "nothing to run"
    names = list(LoraModel.objects.order_by("pk").values_list("name", flat=True))
    assert names == [f"kai-lora-{first.pk}.safetensors", f"kai-lora-{second.pk}.safetensors"]


def test_captions_carry_the_trigger_word_once_and_first(ready_character, owner, enqueued, trainer):
    from training.models import DatasetImage

    DatasetImage.objects.filter(character=ready_character).update(caption="1boy, kaiSTY, smiling")
    job = training_job_create(character=ready_character, user=owner, options={})
    assert {row["caption"] for row in job.dataset_snapshot} == {"kaiSTY, 1boy, smiling"}
    renamed = training_job_create(character=ready_character, user=owner, options={"trigger_word": "kaiV2"})
    assert {row["caption"].split(", ")[0] for row in renamed.dataset_snapshot} == {"kaiV2"}

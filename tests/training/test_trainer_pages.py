"""Training pages: readiness, start, live progress fragment, cancel, LoRA actions; access for every persona."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import CharacterFactory
from tests.training import test_trainer_helpers as helpers
from tests.training.test_trainer_helpers import add_images
from training.models import LoraModel, TrainingJob, TrainingStatus
from training.trainer.services import training_job_claim_next, training_job_create, training_job_run

pytestmark = pytest.mark.django_db
enqueued, trainer, ready_character = helpers.enqueued, helpers.trainer, helpers.ready_character


def trained(character, owner) -> TrainingJob:
    job = training_job_create(character=character, user=owner, options={"epochs": 1})
    training_job_claim_next(worker="w:1")
    training_job_run(job_id=job.pk, poll_interval=0.05)
    return TrainingJob.objects.get(pk=job.pk)


def test_page_shows_readiness_and_refuses_to_start_below_the_minimum(client, project, owner, enqueued, trainer):
    character = CharacterFactory(project=project, trigger_word="miaX")
    add_images(character, 4)
    client.force_login(owner)
    url = reverse("character-training", args=[character.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "<strong>4</strong> approved images of 10 needed" in page.content.decode()
    response = client.post(
        url, {"trigger_word": "miaX", "repeats": 10, "epochs": 2, "learning_rate": "0.0001", "network_dim": 16}
    )
    assert response.status_code == 400
    assert "approve 6 more" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_an_editor_starts_training_and_sees_it_queued(client, member, ready_character, enqueued, trainer):
    client.force_login(member)
    response = client.post(
        reverse("character-training", args=[ready_character.pk]),
        {
            "trigger_word": "kaiSTY",
            "class_word": "boy",
            "repeats": 4,
            "epochs": 3,
            "learning_rate": "0.0002",
            "network_dim": 8,
            "base_model": "sdxl/base.safetensors",
        },
    )
    job = TrainingJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("training-job", args=[job.pk])
    assert (job.class_word, job.repeats, job.base_model) == ("boy", 4, "sdxl/base.safetensors")
    assert job.config["max_train_epochs"] == 3 and job.config["network_dim"] == 8
    assert job.created_by == member
    page = client.get(response["Location"]).content.decode()
    assert "#1 in the GPU 0 queue" in page
    assert 'hx-trigger="every 1s"' in page  # polls while queued


def test_live_fragment_shows_progress_and_stops_polling_when_done(client, owner, ready_character, enqueued, trainer):
    job = training_job_create(character=ready_character, user=owner, options={"epochs": 2})
    training_job_claim_next(worker="w:1")
    TrainingJob.objects.filter(pk=job.pk).update(
        step=40,
        total_steps=200,
        epoch=1,
        total_epochs=2,
        loss=0.0912,
        it_per_second=3.2,
        eta_seconds=50.0,
        loss_history=[[10, 0.2], [20, 0.15], [40, 0.0912]],
        log="running training / 学習開始\nepoch 1/2",
    )
    client.force_login(owner)
    fragment = client.get(reverse("training-job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert fragment.startswith('<div id="training-job-live"')
    assert "step 40/200 · epoch 1/2 · loss 0.0912 · 3.20 it/s · ETA 50 s" in fragment
    assert "<polyline" in fragment
    assert "学習開始" in fragment
    assert 'hx-trigger="every 1s"' in fragment
    character_page = client.get(reverse("character-training", args=[ready_character.pk])).content.decode()
    assert "step 40/200" in character_page and "running (40/200)" in character_page

    TrainingJob.objects.filter(pk=job.pk).update(
        status=TrainingStatus.FAILED, error_message="The trainer exited with code 1."
    )
    done = client.get(reverse("training-job", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "every 1s" not in done
    assert "The trainer exited with code 1." in done


def test_cancel_from_the_page(client, member, ready_character, enqueued, trainer):
    job = training_job_create(character=ready_character, user=member, options={})
    client.force_login(member)
    response = client.post(reverse("training-job-cancel", args=[job.pk]), follow=True)
    assert response.status_code == 200
    assert TrainingJob.objects.get(pk=job.pk).status == TrainingStatus.CANCELLED
    assert "Cancelled." in response.content.decode()


def test_lora_actions_from_the_page(client, member, project, ready_character, enqueued, trainer, monkeypatch):
    from training.trainer import registry

    monkeypatch.setattr(registry, "enqueue_backends_refresh", lambda: None)
    job = trained(ready_character, member)
    lora = LoraModel.objects.get(training_job=job)
    client.force_login(member)
    page = client.get(reverse("character-training", args=[ready_character.pk])).content.decode()
    assert lora.name in page and "not deployed to ComfyUI" in page

    client.post(reverse("lora-action", args=[lora.pk, "activate"]))
    assert LoraModel.objects.get(pk=lora.pk).active
    client.post(reverse("lora-action", args=[lora.pk, "add-to-style"]), {"strength": "0.65"})
    project.style.refresh_from_db()
    assert {"name": lora.name, "strength": 0.65} in project.style.loras
    response = client.post(reverse("lora-action", args=[lora.pk, "add-to-style"]), {"strength": "loud"}, follow=True)
    assert "strength must be a number" in response.content.decode()
    client.post(reverse("lora-action", args=[lora.pk, "deactivate"]))
    assert not LoraModel.objects.get(pk=lora.pk).active
    assert (
        client.post(reverse("lora-action", args=[lora.pk, "activate"]).replace("activate", "explode")).status_code
        == 404
    )


def test_viewer_reads_but_cannot_write(client, viewer, owner, ready_character, enqueued, trainer, monkeypatch):
    from training.trainer import registry

    monkeypatch.setattr(registry, "enqueue_backends_refresh", lambda: None)
    job = trained(ready_character, owner)
    queued = training_job_create(character=ready_character, user=owner, options={})
    lora = LoraModel.objects.get(training_job=job)
    client.force_login(viewer)
    page = client.get(reverse("character-training", args=[ready_character.pk]))
    assert page.status_code == 200 and "Queue training" not in page.content.decode()
    assert client.get(reverse("training-job", args=[job.pk])).status_code == 200
    assert (
        client.post(reverse("character-training", args=[ready_character.pk]), {"trigger_word": "x"}).status_code == 403
    )
    assert client.post(reverse("training-job-cancel", args=[queued.pk])).status_code == 403
    for action in ("activate", "deactivate", "add-to-style", "deploy"):
        assert client.post(reverse("lora-action", args=[lora.pk, action])).status_code == 403
    assert TrainingJob.objects.filter(status=TrainingStatus.QUEUED).count() == 1
    assert not LoraModel.objects.get(pk=lora.pk).active


def test_outsider_gets_404_everywhere(client, outsider, owner, ready_character, enqueued, trainer, monkeypatch):
    from training.trainer import registry

    monkeypatch.setattr(registry, "enqueue_backends_refresh", lambda: None)
    job = trained(ready_character, owner)
    lora = LoraModel.objects.get(training_job=job)
    client.force_login(outsider)
    assert client.get(reverse("character-training", args=[ready_character.pk])).status_code == 404
    assert (
        client.post(reverse("character-training", args=[ready_character.pk]), {"trigger_word": "x"}).status_code == 404
    )
    assert client.get(reverse("training-job", args=[job.pk])).status_code == 404
    assert client.post(reverse("training-job-cancel", args=[job.pk])).status_code == 404
    for action in ("activate", "add-to-style", "deploy"):
        assert client.post(reverse("lora-action", args=[lora.pk, action])).status_code == 404
    assert not LoraModel.objects.get(pk=lora.pk).active
    assert TrainingJob.objects.count() == 1


def test_anonymous_is_sent_to_login(client, ready_character):
    response = client.get(reverse("character-training", args=[ready_character.pk]))
    assert response.status_code == 302 and "/login" in response["Location"]


def test_other_projects_jobs_in_the_queue_are_anonymous(client, owner, outsider, ready_character, enqueued, trainer):
    from tests.factories import make_project

    theirs = CharacterFactory(project=make_project(outsider, name="Secret"), name="Hidden Hero", trigger_word="hidX")
    add_images(theirs, 10)
    training_job_create(character=theirs, user=outsider, options={})
    client.force_login(owner)
    page = client.get(reverse("character-training", args=[ready_character.pk])).content.decode()
    assert "Hidden Hero" not in page
    assert "another project's training" in page


def test_without_a_trainer_train_is_disabled_with_the_reason_and_nothing_is_queued(
    client, owner, ready_character, enqueued, settings
):
    settings.TOWER_TRAINER_COMMAND = ""
    client.force_login(owner)
    url = reverse("character-training", args=[ready_character.pk])
    page = client.get(url).content.decode()
    button = page[page.index("<button", page.index('id="train-why"') - 400) : page.index("Queue training")]
    assert " disabled" in button and "TOWER_TRAINER_COMMAND" in button
    assert "Disabled: no trainer is configured" in page

    response = client.post(
        url, {"trigger_word": "kaiSTY", "repeats": 4, "epochs": 1, "learning_rate": "0.0001", "network_dim": 8}
    )
    assert response.status_code == 400 and "No trainer is configured" in response.content.decode()
    assert not TrainingJob.objects.exists() and enqueued.count == 0

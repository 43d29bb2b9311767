"""The LoRA registry: one active per character, the resolve hook, the project style, deployment."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile

from generation.services.resolve import resolve_job_parameters
from tests.factories import CharacterFactory
from tests.training import test_trainer_helpers as helpers
from training.models import LoraModel
from training.selectors import character_active_loras
from training.trainer import registry
from training.trainer.registry import RegistryError, lora_activate, lora_add_to_style, lora_deactivate, lora_deploy

pytestmark = pytest.mark.django_db
enqueued, trainer, ready_character = helpers.enqueued, helpers.trainer, helpers.ready_character


@pytest.fixture
def no_broker(monkeypatch):
    calls = []
    monkeypatch.setattr(registry, "enqueue_backends_refresh", lambda: calls.append("refresh"))
    return calls


def make_lora(character, name: str, strength: float = 0.8, content: bytes = b"lora") -> LoraModel:
    lora = LoraModel(
        project=character.project,
        character=character,
        name=name,
        default_strength=strength,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
    )
    lora.file.save(name, ContentFile(content), save=False)
    lora.save()
    return lora


def test_one_active_lora_per_character(project):
    kai = CharacterFactory(project=project)
    v1, v2 = make_lora(kai, "kai-v1.safetensors"), make_lora(kai, "kai-v2.safetensors", 0.6)
    lora_activate(lora=v1)
    assert character_active_loras(kai) == [{"name": "kai-v1.safetensors", "strength": 0.8}]
    lora_activate(lora=v2)
    assert list(LoraModel.objects.filter(active=True).values_list("name", flat=True)) == ["kai-v2.safetensors"]
    assert character_active_loras(kai) == [{"name": "kai-v2.safetensors", "strength": 0.6}]
    lora_deactivate(lora=v2)
    assert character_active_loras(kai) == []


def test_resolved_parameters_carry_the_characters_active_lora_only(project):
    kai, mia = CharacterFactory(project=project), CharacterFactory(project=project)
    lora_activate(lora=make_lora(kai, "kai-v1.safetensors", 0.7))

    for_kai = resolve_job_parameters(project=project, mode="draft", character=kai).parameters["loras"]
    assert [(item["name"], item["strength"]) for item in for_kai] == [("kai-v1.safetensors", 0.7)]
    for_mia = resolve_job_parameters(project=project, mode="draft", character=mia).parameters["loras"]
    assert for_mia == []
    no_character = resolve_job_parameters(project=project, mode="draft").parameters["loras"]
    assert no_character == []
    # A caller that passes its own list decides alone.
    explicit = resolve_job_parameters(project=project, mode="draft", character=kai, extra_loras=[])
    assert explicit.parameters["loras"] == []


def test_an_empty_hook_setting_means_no_character_loras(project, settings):
    kai = CharacterFactory(project=project)
    lora_activate(lora=make_lora(kai, "kai-v1.safetensors"))
    settings.TOWER_CHARACTER_LORAS = ""
    assert resolve_job_parameters(project=project, mode="draft", character=kai).parameters["loras"] == []


def test_add_to_project_style_replaces_same_name(project):
    from projects.services import style_update

    style_update(project=project, loras=[{"name": "flat-colour.safetensors", "strength": 0.5}])
    lora = make_lora(CharacterFactory(project=project), "kai-v1.safetensors")
    lora_add_to_style(lora=lora)
    lora_add_to_style(lora=lora, strength=1.1)
    project.style.refresh_from_db()
    assert project.style.loras == [
        {"name": "flat-colour.safetensors", "strength": 0.5},
        {"name": "kai-v1.safetensors", "strength": 1.1},
    ]
    resolved = resolve_job_parameters(project=project, mode="draft").parameters["loras"]
    assert [item["name"] for item in resolved] == ["flat-colour.safetensors", "kai-v1.safetensors"]
    with pytest.raises(RegistryError, match="between -5 and 5"):
        lora_add_to_style(lora=lora, strength=9)
    project.style.refresh_from_db()
    assert len(project.style.loras) == 2


def test_deploy_copies_and_asks_backends_to_refresh(
    project, settings, tmp_path, no_broker, django_capture_on_commit_callbacks
):
    folder = tmp_path / "loras"
    folder.mkdir()
    settings.TOWER_COMFYUI_LORA_DIR = str(folder)
    lora = make_lora(CharacterFactory(project=project), "kai-v1.safetensors", content=b"weights")
    with django_capture_on_commit_callbacks(execute=True):
        message = lora_deploy(lora=lora)
    assert message == f"deployed to {folder / 'kai-v1.safetensors'}"
    assert (folder / "kai-v1.safetensors").read_bytes() == b"weights"
    assert LoraModel.objects.get(pk=lora.pk).deployed_at is not None
    assert no_broker == ["refresh"]


def test_deploy_never_overwrites_another_file_of_that_name(project, settings, tmp_path, no_broker):
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "kai-v1.safetensors").write_bytes(b"someone else's")
    settings.TOWER_COMFYUI_LORA_DIR = str(folder)
    lora = make_lora(CharacterFactory(project=project), "kai-v1.safetensors", content=b"weights")
    assert "already exists with other content" in lora_deploy(lora=lora)
    assert (folder / "kai-v1.safetensors").read_bytes() == b"someone else's"
    assert LoraModel.objects.get(pk=lora.pk).deployed_at is None


def test_a_folder_that_cannot_take_the_file_is_reported(project, settings, tmp_path, no_broker):
    folder = tmp_path / "loras"
    (folder / "kai-v1.safetensors").mkdir(parents=True)  # in the way: a folder of that name
    settings.TOWER_COMFYUI_LORA_DIR = str(folder)
    lora = make_lora(CharacterFactory(project=project), "kai-v1.safetensors")
    assert lora_deploy(lora=lora).startswith("not deployed: cannot write")
    assert LoraModel.objects.get(pk=lora.pk).deployed_at is None
    assert [p.name for p in folder.iterdir()] == ["kai-v1.safetensors"]
    assert no_broker == []


def test_trained_lora_names_stay_unique_in_the_project(ready_character, owner, enqueued, trainer, no_broker):
    from training.trainer.services import training_job_claim_next, training_job_create, training_job_run

    job = training_job_create(character=ready_character, user=owner, options={"epochs": 1})
    make_lora(ready_character, f"kai-lora-{job.pk}.safetensors")  # already taken, e.g. an earlier upload
    training_job_claim_next(worker="w:1")
    training_job_run(job_id=job.pk, poll_interval=0.05)
    assert LoraModel.objects.get(training_job=job).name == f"kai-lora-{job.pk}-2.safetensors"

"""Image inputs reach ComfyUI: references, versions' references, outputs and uploads, uploaded once
per backend under a content-addressed name, through the engine and the fake ComfyUI on a real port."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from characters.models import ReferenceImage
from characters.services import character_add_reference
from generation import tasks
from generation.models import Asset, BackendUpload
from generation.services.inputs import image_source_from, upload_name
from generation.services.submit import jobs_create
from tests.factories import VersionFactory, png_bytes
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, job, shipped
from tests.generation.image_input_helpers import (
    CHECKPOINT,
    IPADAPTER_NODES,
    SMALL,
    UPLOADS,
    ipadapter_job,
    primary_of,
    received_prompt,
    run,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "shipped_templates", "one_job_per_task"),
]


# --- acceptance: the character's reference reaches ComfyUI ----------------------------------------


def test_character_job_on_ipadapter_uploads_the_primary_reference_and_load_image_names_it(
    comfy, project, owner, kai, enqueued
):
    backend = backend_for(comfy)
    primary = primary_of(kai)
    name = upload_name(image_source_from(primary))
    created = ipadapter_job(project, owner, character=kai, prompt="smiling")
    assert created.params["reference_image"] == name
    assert created.params["inputs"] == [
        {"parameter": "reference_image", "name": name, "path": primary.image.name, "sha256": primary.sha256}
    ]
    done = run(created)
    graph = received_prompt(comfy, done)
    load = next(node for node in graph.values() if node["class_type"] == "LoadImage")
    assert load["inputs"]["image"] == name
    assert (comfy.input_dir / name).read_bytes() == primary.image.open("rb").read()
    assert comfy.counters.requests[UPLOADS] == 1
    assert BackendUpload.objects.filter(backend=backend, name=name, sha256=primary.sha256).count() == 1
    assert Asset.objects.filter(job=done).count() == 1


def test_the_same_reference_is_uploaded_once_per_backend(comfy, project, owner, kai, enqueued):
    backend_for(comfy)
    first = run(ipadapter_job(project, owner, character=kai))
    second = run(ipadapter_job(project, owner, character=kai, prompt="another"))
    assert first.params["reference_image"] == second.params["reference_image"]
    assert comfy.counters.prompts_queued == 2
    assert comfy.counters.requests[UPLOADS] == 1


def test_a_file_the_backend_lost_is_uploaded_again_and_the_job_runs(comfy, project, owner, kai, enqueued):
    backend = backend_for(comfy)
    first = run(ipadapter_job(project, owner, character=kai))
    name = first.params["reference_image"]
    (comfy.input_dir / name).unlink()  # the server's input folder was cleared

    second = run(ipadapter_job(project, owner, character=kai, prompt="again"))
    assert comfy.counters.requests[UPLOADS] == 2
    assert (comfy.input_dir / name).is_file()
    assert comfy.counters.prompts_rejected == 1  # once, naming the missing file; then accepted
    assert BackendUpload.objects.filter(backend=backend, name=name).count() == 1
    log = list(second.log_lines.values_list("message", flat=True))
    assert any(f"no longer had {name}" in line for line in log), log


def test_another_backend_gets_its_own_upload(comfy, tmp_path, project, owner, kai, enqueued):
    with FakeComfy(root=tmp_path / "comfy2", checkpoints=[CHECKPOINT], extra_object_info=IPADAPTER_NODES) as other:
        first_backend = backend_for(comfy)
        run(ipadapter_job(project, owner, character=kai))
        first_backend.enabled = False
        first_backend.save(update_fields=["enabled"])
        backend_for(other, name="gpu-2")
        done = run(ipadapter_job(project, owner, character=kai, prompt="elsewhere"))
        assert done.backend.name == "gpu-2"
        assert other.counters.requests[UPLOADS] == 1
        assert (other.input_dir / done.params["reference_image"]).is_file()
        assert BackendUpload.objects.filter(name=done.params["reference_image"]).count() == 2


def test_a_version_with_references_of_its_own_wins_over_the_character(comfy, project, owner, kai, enqueued):
    backend_for(comfy)
    older = VersionFactory(character=kai, name="Older", slug="older")
    bare = VersionFactory(character=kai, name="Bare", slug="bare")
    data = png_bytes(80, 96, (10, 10, 200))
    own = character_add_reference(character=kai, version=older, upload=io.BytesIO(data))

    done = run(ipadapter_job(project, owner, character=kai, version=older))
    assert done.params["reference_image"] == upload_name(image_source_from(own))
    assert (comfy.input_dir / done.params["reference_image"]).read_bytes() == data
    # A version without references of its own takes the character's primary.
    plain = ipadapter_job(project, owner, character=kai, version=bare)
    assert plain.params["reference_image"] == upload_name(image_source_from(primary_of(kai)))


def test_an_explicit_image_wins_over_the_character_default(project, owner, kai, enqueued):
    other = ReferenceImage.objects.get(character=kai, is_primary=False)
    created = ipadapter_job(
        project, owner, character=kai, images={"reference_image": image_source_from(other)}, prompt="x"
    )
    assert created.params["reference_image"] == upload_name(image_source_from(other))


# --- what the engine reads of a refusal -------------------------------------------------------------


def test_a_refusal_names_the_missing_upload_in_either_of_comfyui_shapes():
    import json

    from generation.services.inputs import missing_uploads

    recorded = json.loads((Path(__file__).parents[1] / "fakes/recordings/prompt_invalid.json").read_text())
    body = recorded["loadimage_missing_file"]["body"]  # custom validation: "Invalid image file: NAME"
    assert missing_uploads([{"name": "no_such_file.png", "path": "x"}], body["node_errors"]) == ["no_such_file.png"]
    assert missing_uploads([{"name": "other.png", "path": "x"}], body["node_errors"]) == []
    # Older servers: "value not in list", whose list names the files the server does have.
    listed = {
        "12": {
            "errors": [
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": "image: 'tower-aaa.png' not in ['tower-bbb.png', 'example.png']",
                    "extra_info": {"input_name": "image", "received_value": "tower-aaa.png"},
                }
            ],
            "class_type": "LoadImage",
        }
    }
    inputs = [{"name": "tower-aaa.png", "path": "a"}, {"name": "tower-bbb.png", "path": "b"}]
    assert missing_uploads(inputs, listed) == ["tower-aaa.png"]


def test_an_input_file_gone_from_storage_fails_the_job_saying_so(fake, project, owner, kai, enqueued):
    backend_for(fake)
    reference = primary_of(kai)
    [created] = jobs_create(
        user=owner,
        project=project,
        template=shipped("weightless-img2img"),
        overrides=SMALL,
        images={"init_image": image_source_from(reference)},
    )
    reference.image.storage.delete(reference.image.name)
    assert tasks.job_run(created.pk) == "failed:input"
    failed = job(created.pk)
    assert failed.error_type == "input_missing"
    assert f"init_image ({reference.image.name}) is no longer in Tower's storage" in failed.error_message
    assert fake.counters.prompts_received == 0

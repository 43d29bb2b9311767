"""Image inputs reach ComfyUI: references, versions' references, outputs and uploads, uploaded once
per backend under a content-addressed name, through the engine and the fake ComfyUI on a real port."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from characters.models import ReferenceImage
from characters.services import character_add_reference, character_create
from generation import tasks
from generation.models import Asset, BackendUpload, InputImage, Job
from generation.services.inputs import image_source_from, template_image_inputs, upload_name
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from tests.factories import VersionFactory, make_project, png_bytes
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, job, shipped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

CHECKPOINT = "anime_v1.safetensors"
SMALL = {"width": 64, "height": 64}
UPLOADS = "POST /upload/image"

# IPAdapter Plus's two nodes as its /object_info describes them (the fake runs them as generic nodes).
IPADAPTER_NODES = {
    "IPAdapterUnifiedLoader": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "preset": [["LIGHT - SD1.5 only (low strength)", "STANDARD (medium strength)", "PLUS (high strength)"]],
            },
            "optional": {"ipadapter": ["IPADAPTER"]},
        },
        "input_order": {"required": ["model", "preset"], "optional": ["ipadapter"]},
        "output": ["MODEL", "IPADAPTER"],
        "output_is_list": [False, False],
        "output_name": ["model", "ipadapter"],
        "name": "IPAdapterUnifiedLoader",
        "display_name": "IPAdapter Unified Loader",
        "description": "",
        "python_module": "custom_nodes.ComfyUI_IPAdapter_plus",
        "category": "ipadapter",
        "output_node": False,
    },
    "IPAdapterAdvanced": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "ipadapter": ["IPADAPTER"],
                "image": ["IMAGE"],
                "weight": ["FLOAT", {"default": 1.0, "min": -1, "max": 5, "step": 0.05}],
                "weight_type": [["linear", "ease in", "ease out", "style transfer"]],
                "combine_embeds": [["concat", "add", "subtract", "average", "norm average"]],
                "start_at": ["FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}],
                "end_at": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}],
                "embeds_scaling": [["V only", "K+V", "K+V w/ C penalty", "K+mean(V) w/ C penalty"]],
            },
        },
        "input_order": {
            "required": [
                "model",
                "ipadapter",
                "image",
                "weight",
                "weight_type",
                "combine_embeds",
                "start_at",
                "end_at",
                "embeds_scaling",
            ]
        },
        "output": ["MODEL"],
        "output_is_list": [False],
        "output_name": ["MODEL"],
        "name": "IPAdapterAdvanced",
        "display_name": "IPAdapter Advanced",
        "description": "",
        "python_module": "custom_nodes.ComfyUI_IPAdapter_plus",
        "category": "ipadapter",
        "output_node": False,
    },
}


@pytest.fixture(autouse=True)
def one_job_per_task(settings):
    settings.TOWER_ENGINE_SESSION_JOBS = 1


@pytest.fixture(autouse=True)
def templates(db):
    shipped("weightless-image")  # loads every shipped template


@pytest.fixture
def comfy(tmp_path):
    """A ComfyUI with IPAdapter Plus installed."""
    with FakeComfy(root=tmp_path / "comfy", checkpoints=[CHECKPOINT], extra_object_info=IPADAPTER_NODES) as server:
        yield server


@pytest.fixture
def kai(project):
    """A character with two references; the first (red) is the primary one."""
    character = character_create(project=project, name="Kai", design_prompt="1boy, silver hair")
    character_add_reference(character=character, upload=io.BytesIO(png_bytes(80, 96, (200, 10, 10))))
    character_add_reference(character=character, upload=io.BytesIO(png_bytes(80, 96, (10, 200, 10))))
    return character


def primary_of(character) -> ReferenceImage:
    return ReferenceImage.objects.get(character=character, is_primary=True, version__isnull=True)


def ipadapter_job(project, owner, **kw) -> Job:
    [created] = jobs_create(
        user=owner,
        project=project,
        template=shipped("ipadapter-character"),
        overrides={**SMALL, "checkpoint": CHECKPOINT, "steps": 2},
        **kw,
    )
    return created


def received_prompt(fake: FakeComfy, done: Job) -> dict:
    """The graph the fake ComfyUI received for the job (its history keeps the queue item)."""
    return fake.history[done.prompt_id]["prompt"][2]


def run(created: Job) -> Job:
    outcome = tasks.job_run(created.pk)
    done = job(created.pk)
    assert outcome == "succeeded", (outcome, done.error_type, done.error_message)
    return done


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


# --- outputs and uploads as inputs, through the API -------------------------------------------------


def test_an_earlier_output_as_init_image_through_the_api(fake, project, owner, api_owner, enqueued):
    backend_for(fake)
    [first] = jobs_create(user=owner, project=project, template=shipped("weightless-image"), overrides=SMALL)
    first = run(first)
    asset = Asset.objects.get(job=first)
    response = api_owner.post(
        "/api/v1/jobs",
        {
            "project": project.pk,
            "template": "weightless-img2img",
            "overrides": SMALL,
            "images": {"init_image": {"asset": asset.pk}},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = Job.objects.get(pk=response.json()["jobs"][0]["id"])
    done = run(created)
    name = f"tower-{asset.sha256[:24]}.png"
    assert received_prompt(fake, done)["1"]["inputs"]["image"] == name
    assert (fake.input_dir / name).read_bytes() == asset.file.open("rb").read()


def test_an_uploaded_image_as_init_image_through_the_api(fake, project, api_owner, enqueued):
    backend_for(fake)
    data = png_bytes(48, 40, (30, 60, 90))
    uploaded = api_owner.post(
        "/api/v1/input-images",
        {"project": project.pk, "file": io.BytesIO(data)},
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.json()
    body = uploaded.json()
    response = api_owner.post(
        "/api/v1/jobs",
        {
            "project": project.pk,
            "template": "weightless-img2img",
            "overrides": SMALL,
            "images": {"init_image": {"upload": body["id"]}},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    done = run(Job.objects.get(pk=response.json()["jobs"][0]["id"]))
    name = f"tower-{body['sha256'][:24]}.png"
    assert received_prompt(fake, done)["1"]["inputs"]["image"] == name
    assert (fake.input_dir / name).read_bytes() == data


def test_the_init_shorthands_still_work(project, api_owner, kai, enqueued):
    reference = primary_of(kai)
    response = api_owner.post(
        "/api/v1/jobs",
        {"project": project.pk, "template": "weightless-img2img", "init_reference": reference.pk},
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = Job.objects.get(pk=response.json()["jobs"][0]["id"])
    assert created.params["init_image"] == upload_name(image_source_from(reference))
    both = api_owner.post(
        "/api/v1/jobs",
        {
            "project": project.pk,
            "template": "weightless-img2img",
            "init_reference": reference.pk,
            "images": {"init_image": {"reference": reference.pk}},
        },
        format="json",
    )
    assert both.status_code == 400
    assert "once" in str(both.json())


# --- refusals ---------------------------------------------------------------------------------------


def test_a_template_needing_an_image_with_none_given_is_refused_naming_it(project, owner, enqueued):
    with pytest.raises(JobError) as refused:
        jobs_create(user=owner, project=project, template=shipped("weightless-img2img"), overrides=SMALL)
    message = str(refused.value)
    assert "'init_image'" in message and "LoadImage #1" in message
    assert Job.objects.count() == 0
    assert enqueued.take() == []


def test_a_character_without_references_is_refused_naming_the_reference_input(project, owner, api_owner, enqueued):
    bare = character_create(project=project, name="Nobody", design_prompt="1girl")
    response = api_owner.post(
        "/api/v1/jobs",
        {"project": project.pk, "template": "ipadapter-character", "character": bare.pk},
        format="json",
    )
    assert response.status_code == 400
    message = response.json()["non_field_errors"][0]
    assert "'reference_image' (LoadImage #12)" in message and "Nobody has no reference images yet" in message
    assert Job.objects.count() == 0


def test_an_image_for_an_input_the_template_does_not_have_is_refused(project, owner, kai, enqueued):
    with pytest.raises(JobError, match="no image input 'reference_image'"):
        jobs_create(
            user=owner,
            project=project,
            template=shipped("weightless-img2img"),
            images={"reference_image": image_source_from(primary_of(kai))},
        )
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("images", "says"),
    [
        ({"init_image": 5}, "exactly one"),
        ({"init_image": {"asset": 1, "reference": 2}}, "exactly one"),
        ({"init_image": {"file": 1}}, "exactly one of reference, version, asset or upload"),
        ({"init_image": {"asset": "x"}}, "valid integer"),
        ({"first_frame": {"asset": 1}}, "unknown image input 'first_frame'"),
        ("init", "dictionary"),
    ],
)
def test_a_wrongly_shaped_images_field_is_a_400_saying_what_is_wrong(project, api_owner, images, says, enqueued):
    response = api_owner.post(
        "/api/v1/jobs", {"project": project.pk, "template": "weightless-img2img", "images": images}, format="json"
    )
    assert response.status_code == 400
    assert says in str(response.json()["images"])
    assert Job.objects.count() == 0


def test_images_pointing_at_objects_of_another_project_are_404(project, owner, api_owner, kai, enqueued):
    elsewhere = make_project(owner, name="Elsewhere")
    theirs = character_create(project=elsewhere, name="Rin", design_prompt="1girl")
    their_ref = character_add_reference(character=theirs, upload=io.BytesIO(png_bytes(colour=(1, 2, 3))))
    their_upload = InputImage.objects.create(project=elsewhere, sha256="b" * 64, file="inputs/x/b.png")
    their_version = VersionFactory(character=theirs)
    for spec in (
        {"reference": their_ref.pk},
        {"upload": their_upload.pk},
        {"version": their_version.pk},
        {"asset": 10**9},
    ):
        response = api_owner.post(
            "/api/v1/jobs",
            {"project": project.pk, "template": "weightless-img2img", "images": {"init_image": spec}},
            format="json",
        )
        assert response.status_code == 404, (spec, response.json())
    assert Job.objects.count() == 0


def test_an_outsider_gets_404_for_images_of_a_project_they_cannot_see(project, api_outsider, kai, enqueued):
    response = api_outsider.post(
        "/api/v1/jobs",
        {
            "project": project.pk,
            "template": "weightless-img2img",
            "images": {"init_image": {"reference": primary_of(kai).pk}},
        },
        format="json",
    )
    assert response.status_code == 404
    assert Job.objects.count() == 0


# --- input images -----------------------------------------------------------------------------------


def test_input_images_are_validated_stored_by_content_and_not_duplicated(project, api_owner, api_member, settings):
    data = png_bytes(40, 30, (9, 99, 199))
    first = api_owner.post(
        "/api/v1/input-images", {"project": project.pk, "file": io.BytesIO(data)}, format="multipart"
    )
    assert first.status_code == 201
    body = first.json()
    assert (body["project"], body["width"], body["height"]) == (project.pk, 40, 30)
    image = InputImage.objects.get(pk=body["id"])
    assert image.file.name == f"inputs/{project.pk}/{body['sha256']}.png"
    assert Path(settings.MEDIA_ROOT, image.file.name).read_bytes() == data
    assert body["url"].endswith(image.file.name)
    thumb = body["thumbnail_url"].split(settings.MEDIA_URL, 1)[1]
    assert thumb == f"inputs/{project.pk}/thumbs/{body['sha256']}.jpg"
    assert Path(settings.MEDIA_ROOT, thumb).read_bytes()[:2] == b"\xff\xd8"  # a JPEG

    again = api_member.post(
        "/api/v1/input-images", {"project": project.pk, "file": io.BytesIO(data)}, format="multipart"
    )
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert InputImage.objects.count() == 1

    listed = api_owner.get(f"/api/v1/input-images?project={project.pk}").json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    assert api_owner.get(f"/api/v1/input-images/{body['id']}").json()["sha256"] == body["sha256"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"GIF89a not really", "not a readable image"),
        (b"", "empty"),
        (png_bytes(fmt="BMP"), "BMP files are not accepted"),
    ],
)
def test_an_input_image_that_is_not_an_accepted_image_is_a_400(project, api_owner, content, says):
    response = api_owner.post(
        "/api/v1/input-images", {"project": project.pk, "file": io.BytesIO(content)}, format="multipart"
    )
    assert response.status_code == 400
    assert says in str(response.json())
    assert InputImage.objects.count() == 0


def test_input_images_are_hidden_from_outsiders_and_read_only_for_viewers(project, api_owner, api_viewer, api_outsider):
    data = png_bytes(colour=(5, 5, 5))
    created = api_owner.post(
        "/api/v1/input-images", {"project": project.pk, "file": io.BytesIO(data)}, format="multipart"
    )
    pk = created.json()["id"]
    assert api_outsider.get(f"/api/v1/input-images/{pk}").status_code == 404
    assert api_outsider.get("/api/v1/input-images").json()["results"] == []
    assert api_outsider.get(f"/api/v1/input-images?project={project.pk}").json()["results"] == []
    refused = api_outsider.post(
        "/api/v1/input-images", {"project": project.pk, "file": io.BytesIO(png_bytes())}, format="multipart"
    )
    assert refused.status_code == 404
    assert api_viewer.get(f"/api/v1/input-images/{pk}").status_code == 200
    viewer_upload = api_viewer.post(
        "/api/v1/input-images", {"project": project.pk, "file": io.BytesIO(png_bytes())}, format="multipart"
    )
    assert viewer_upload.status_code == 403
    assert InputImage.objects.count() == 1


# --- phases -----------------------------------------------------------------------------------------

CHECKED: list[dict] = []
CREATED: list[list[int]] = []


def closed_gate(*, project, character, phase):
    CHECKED.append({"project": project.pk, "character": character.pk, "phase": phase})
    return f"{character.name}'s phase {phase - 1} gate is closed: 2 of 10 recent outputs passed"


def open_gate(*, project, character, phase):
    return None


def record_created(*, job_ids):
    CREATED.append(list(job_ids))


@pytest.fixture
def hooks(settings):
    CHECKED.clear()
    CREATED.clear()
    settings.TOWER_PHASE_CHECK = f"{__name__}.closed_gate"
    settings.TOWER_ON_JOBS_CREATED = [f"{__name__}.record_created"]
    return settings


def test_job_phase_follows_the_template_kind(project, owner, kai, hooks, enqueued):
    hooks.TOWER_PHASE_CHECK = f"{__name__}.open_gate"
    image = jobs_create(user=owner, project=project, template=shipped("weightless-image"))[0]
    sheet = ipadapter_job(project, owner, character=kai)
    loop = jobs_create(user=owner, project=project, template=shipped("weightless-loop"), character=kai)[0]
    assert (image.phase, sheet.phase, loop.phase) == (1, 1, 2)
    explicit = jobs_create(user=owner, project=project, template=shipped("weightless-image"), phase=3)[0]
    assert explicit.phase == 3
    assert [[image.pk], [sheet.pk], [loop.pk], [explicit.pk]] == CREATED


def test_phase_two_work_behind_a_closed_gate_is_refused_unless_forced(project, owner, kai, hooks, enqueued):
    loop = shipped("weightless-loop")
    with pytest.raises(JobError) as refused:
        jobs_create(user=owner, project=project, template=loop, character=kai)
    assert str(refused.value) == (
        "Kai's phase 1 gate is closed: 2 of 10 recent outputs passed (an editor may force it with a reason)"
    )
    assert [{"project": project.pk, "character": kai.pk, "phase": 2}] == CHECKED
    assert Job.objects.count() == 0 and CREATED == []

    [forced] = jobs_create(user=owner, project=project, template=loop, character=kai, force_reason="client preview")
    assert Job.objects.get(pk=forced.pk).forced_reason == "client preview"
    assert any("forced past a closed phase gate" in m for m in forced.log_lines.values_list("message", flat=True))
    assert [[forced.pk]] == CREATED
    # Jobs without a character, and phase-1 work, are not checked.
    first_frame = {p: image_source_from(primary_of(kai)) for p in template_image_inputs(loop)}
    jobs_create(user=owner, project=project, template=loop, images=first_frame)
    ipadapter_job(project, owner, character=kai)
    assert len(CHECKED) == 2


def test_force_reason_through_the_api(project, api_member, kai, hooks, enqueued):
    body = {"project": project.pk, "template": "weightless-loop", "character": kai.pk}
    refused = api_member.post("/api/v1/jobs", body, format="json")
    assert refused.status_code == 400
    assert "an editor may force it" in refused.json()["non_field_errors"][0]
    forced = api_member.post("/api/v1/jobs", {**body, "force_reason": "needed for the trailer"}, format="json")
    assert forced.status_code == 201, forced.json()
    assert forced.json()["jobs"][0]["forced_reason"] == "needed for the trailer"
    assert Job.objects.get(pk=forced.json()["jobs"][0]["id"]).forced_reason == "needed for the trailer"


def test_the_first_image_input_of_each_shipped_template(enqueued):
    assert template_image_inputs(shipped("ipadapter-character")) == ["reference_image"]
    assert template_image_inputs(shipped("weightless-img2img")) == ["init_image"]
    assert template_image_inputs(shipped("weightless-image")) == []


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

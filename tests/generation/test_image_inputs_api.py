"""Image inputs through the API: earlier outputs and uploads as inputs, the refusals that name what is wrong,
and the project's input images (validated, stored by content, scoped by access)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from characters.services import character_add_reference, character_create
from generation.models import Asset, InputImage, Job
from generation.services.inputs import image_source_from, upload_name
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from tests.factories import VersionFactory, make_project, png_bytes
from tests.generation.engine_helpers import backend_for, shipped
from tests.generation.image_input_helpers import SMALL, primary_of, received_prompt, run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "shipped_templates", "one_job_per_task"),
]


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

"""The Generate page's image picker: one per image input of the chosen template, offering the
project's own references (the character's and its version's), recent outputs and uploads, plus an
upload; what is chosen reaches the job as its image input, and a refusal shows beside the picker."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from characters.services import character_add_reference
from generation.models import InputImage, Job
from generation.services.inputs import input_image_create
from tests.factories import AssetFactory, CharacterFactory, JobFactory, VersionFactory, make_project, png_bytes
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def reference(character, colour=(200, 40, 40), version=None):
    return character_add_reference(
        character=character, upload=io.BytesIO(png_bytes(colour=colour)), original_name="r.png", version=version
    )


def upload(project, user, colour=(10, 120, 30)):
    image, _ = input_image_create(project=project, user=user, upload=io.BytesIO(png_bytes(colour=colour)))
    return image


def picker(html: str, param: str = "init_image") -> str:
    start = html.index(f'id="picker-{param}"')
    return html[start : html.index("</fieldset>", start)]


def values(html: str, param: str = "init_image") -> set[str]:
    return set(re.findall(rf'name="image_{param}" value="([^"]+)"', picker(html, param)))


@pytest.fixture
def world(owner, outsider, project):
    kai = CharacterFactory(project=project, name="Kai")
    teen = VersionFactory(character=kai, name="Teen")
    mika = CharacterFactory(project=project, name="Mika")
    elsewhere = make_project(outsider, name="Elsewhere")
    stranger = CharacterFactory(project=elsewhere, name="Stranger")
    return {
        "kai": kai,
        "teen": teen,
        "kai_ref": reference(kai),
        "teen_ref": reference(kai, colour=(0, 0, 200), version=teen),
        "mika_ref": reference(mika, colour=(0, 200, 0)),
        "asset": AssetFactory(project=project),
        "upload": upload(project, owner),
        "foreign_ref": reference(stranger),
        "foreign_asset": AssetFactory(project=elsewhere),
        "foreign_upload": upload(elsewhere, outsider),
        "elsewhere": elsewhere,
    }


def test_the_picker_lists_only_the_projects_own_images(owner, project, world):
    template = shipped("weightless-img2img")
    client = client_for(owner)
    html = client.get(reverse("generate"), {"project": project.pk, "template": template.pk}).text
    own = {
        f"reference:{world['kai_ref'].pk}",
        f"reference:{world['teen_ref'].pk}",
        f"reference:{world['mika_ref'].pk}",
        f"asset:{world['asset'].pk}",
        f"upload:{world['upload'].pk}",
    }
    assert values(html) == own
    assert 'type="file"' in picker(html) and "None chosen" in picker(html)
    # A character narrows the references to its own (the base design's; a version adds its own).
    query = {"project": project.pk, "template": template.pk, "character": world["kai"].pk}
    html = client.get(reverse("generate"), query).text
    assert f"reference:{world['mika_ref'].pk}" not in values(html)
    assert f"reference:{world['teen_ref'].pk}" not in values(html)
    assert "Automatic: the character&#x27;s primary reference" in picker(html)
    html = client.get(reverse("generate"), {**query, "version": world["teen"].pk}).text
    assert {f"reference:{world['kai_ref'].pk}", f"reference:{world['teen_ref'].pk}"} <= values(html)
    # A template without image inputs has no picker.
    html = client.get(reverse("generate"), {"project": project.pk, "template": shipped("weightless-image").pk})
    assert 'id="picker-' not in html.text


def test_a_chosen_output_reaches_the_job_as_its_image_input(owner, project, world, enqueued):
    template = shipped("weightless-img2img")
    asset = world["asset"]
    form = {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "seed": "7"}
    response = client_for(owner).post(reverse("generate"), {**form, "image_init_image": f"asset:{asset.pk}"})
    assert response.status_code == 302 and f"image_init_image=asset%3A{asset.pk}" in response.url
    job = Job.objects.get()
    assert [(i["parameter"], i["path"]) for i in job.params["inputs"]] == [("init_image", asset.file.name)]
    assert job.params["init_image"] == f"tower-{asset.sha256[:24]}.png"


def test_a_template_needing_an_image_with_none_chosen_says_so_beside_the_picker(owner, project, enqueued):
    template = shipped("weightless-img2img")
    form = {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "seed": ""}
    response = client_for(owner).post(reverse("generate"), form)
    assert response.status_code == 400 and not Job.objects.exists()
    error = re.search(r"data-picker-error>(.*?)</ul>", picker(response.text), re.S)
    assert error and "init_image" in error[1]


def test_others_images_and_jobs_stay_out_of_reach(owner, outsider, project, world, enqueued):
    template = shipped("weightless-img2img")
    form = {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "seed": ""}
    client = client_for(owner)
    for choice in (f"asset:{world['foreign_asset'].pk}", f"reference:{world['foreign_ref'].pk}"):
        response = client.post(reverse("generate"), {**form, "image_init_image": choice})
        assert response.status_code == 404, choice
    response = client.post(reverse("generate"), {**form, "image_init_image": f"upload:{world['foreign_upload'].pk}"})
    assert response.status_code == 404
    assert not Job.objects.filter(project=project).exists()
    # An outsider's pane shows none of the project's jobs, its picker none of its images.
    job = JobFactory(project=project, created_by=owner)
    pane = client_for(outsider).get(reverse("generate"), {"pane": 1, "submitted": job.pk}).text
    assert f"job-row-{job.pk}" not in pane
    html = client_for(outsider).get(reverse("generate"), {"project": project.pk, "template": template.pk}).text
    assert 'id="picker-' not in html and "Kai" not in html
    upload_post = {"project": project.pk, "template": template.pk, "upload_for": "init_image"}
    upload_post["upload_init_image"] = SimpleUploadedFile("x.png", png_bytes(), content_type="image/png")
    assert client_for(outsider).post(reverse("generate"), upload_post).status_code == 404


def test_a_picked_file_is_uploaded_at_once_and_comes_back_chosen(owner, project, enqueued):
    template = shipped("weightless-img2img")
    post = {"project": project.pk, "template": template.pk, "mode": "draft", "upload_for": "init_image"}
    post["upload_init_image"] = SimpleUploadedFile("mine.png", png_bytes(colour=(1, 2, 3)), content_type="image/png")
    response = client_for(owner).post(reverse("generate"), post, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    image = InputImage.objects.get(project=project)
    assert 'id="generate-images" hx-swap-oob="true"' in response.text
    assert re.search(rf'value="upload:{image.pk}" checked', response.text)
    # Not an image: the reason beside the picker, nothing stored.
    post["upload_init_image"] = SimpleUploadedFile("notes.png", b"plain text", content_type="image/png")
    response = client_for(owner).post(reverse("generate"), post, HTTP_HX_REQUEST="true")
    assert "data-picker-error" in picker(response.text) and InputImage.objects.count() == 1


def test_a_file_sent_with_the_form_is_stored_and_used(owner, project, enqueued):
    template = shipped("weightless-img2img")
    form = {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "seed": ""}
    form["upload_init_image"] = SimpleUploadedFile("mine.png", png_bytes(colour=(9, 9, 9)), content_type="image/png")
    response = client_for(owner).post(reverse("generate"), form)
    image = InputImage.objects.get(project=project)
    job = Job.objects.get()
    assert response.status_code == 302 and f"image_init_image=upload%3A{image.pk}" in response.url
    assert job.params["inputs"][0]["path"] == image.file.name

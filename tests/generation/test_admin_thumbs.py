"""The admins show thumbnails (never full-size files) and retry jobs through the Retry service."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from characters.models import ReferenceImage
from characters.services import character_add_reference
from generation.models import Asset, AssetKind, Job, JobStatus
from tests.factories import AssetFactory, CharacterFactory, JobFactory, make_project, png_bytes
from training.models import DatasetImage

pytestmark = pytest.mark.django_db

BIG = 1600  # a full-size output; its thumbnail is at most 320 px


def followed_image(client: Client, url: str) -> Image.Image:
    """The image a thumbnail URL ends at (the admin's thumb view redirects to the stored file)."""
    response = client.get(url)
    assert response.status_code == 302, response
    location = response["Location"]
    assert "/thumbs/" in location
    name = location.split("/media/", 1)[-1] if "/media/" in location else location
    with default_storage.open(name.lstrip("/")) as handle:
        image = Image.open(io.BytesIO(handle.read()))
        image.load()
    return image


def img_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*? src="([^"]+)"', html)


def test_asset_list_links_thumbnails_not_full_size_files(admin_client, owner):
    project = make_project(owner)
    asset = AssetFactory(
        project=project, job=JobFactory(project=project), file__data=png_bytes(BIG, BIG), width=BIG, height=BIG
    )
    html = admin_client.get(reverse("admin:generation_asset_changelist")).content.decode()

    sources = img_sources(html)
    assert asset.file.url not in sources
    thumb_url = reverse("admin:generation_asset_thumb", args=[asset.pk])
    assert thumb_url in sources
    assert max(followed_image(admin_client, thumb_url).size) <= 320
    # Made once: the asset now names its thumbnail, and the list links it directly.
    asset.refresh_from_db()
    assert asset.thumbnail
    assert asset.thumbnail.url in img_sources(admin_client.get(reverse("admin:generation_asset_changelist")).text)


def test_the_job_page_shows_output_thumbnails(admin_client, owner):
    project = make_project(owner)
    asset = AssetFactory(project=project, job=JobFactory(project=project), file__data=png_bytes(BIG, BIG))
    html = admin_client.get(reverse("admin:generation_job_change", args=[asset.job.pk])).content.decode()
    assert asset.file.url not in img_sources(html)
    assert reverse("admin:generation_asset_thumb", args=[asset.pk]) in img_sources(html)


def test_a_video_without_a_readable_frame_gets_the_placeholder(admin_client, owner):
    project = make_project(owner)
    video = AssetFactory(project=project, kind=AssetKind.VIDEO, mime="video/mp4", file__filename="clip.mp4")
    response = admin_client.get(reverse("admin:generation_asset_thumb", args=[video.pk]))
    assert response.status_code == 302 and response["Location"].endswith("no-thumbnail.svg")


def test_reference_and_character_lists_show_thumbnails(admin_client, owner):
    character = CharacterFactory(project=make_project(owner))
    reference = character_add_reference(character=character, upload=io.BytesIO(png_bytes(BIG, BIG)))
    thumb_url = reverse("admin:characters_referenceimage_thumb", args=[reference.pk])

    for page in ("admin:characters_referenceimage_changelist", "admin:characters_character_changelist"):
        sources = img_sources(admin_client.get(reverse(page)).text)
        assert reference.image.url not in sources and thumb_url in sources
    change = admin_client.get(reverse("admin:characters_character_change", args=[character.pk])).text
    assert thumb_url in img_sources(change)  # the references inline
    assert max(followed_image(admin_client, thumb_url).size) <= 320


def test_dataset_image_list_shows_thumbnails(admin_client, owner):
    character = CharacterFactory(project=make_project(owner))
    from django.core.files.base import ContentFile

    image = DatasetImage(character=character, sha256="a" * 64, source="upload", width=BIG, height=BIG)
    image.image.save("big.png", ContentFile(png_bytes(BIG, BIG)), save=True)
    thumb_url = reverse("admin:training_datasetimage_thumb", args=[image.pk])

    sources = img_sources(admin_client.get(reverse("admin:training_datasetimage_changelist")).text)
    assert image.image.url not in sources and thumb_url in sources
    assert max(followed_image(admin_client, thumb_url).size) <= 320


def test_thumbnails_follow_the_admins_project_scope(client, owner, outsider):
    from django.contrib.auth.models import Permission

    character = CharacterFactory(project=make_project(owner))
    reference = character_add_reference(character=character, upload=io.BytesIO(png_bytes()))
    outsider.is_staff = True
    outsider.save()
    outsider.user_permissions.add(Permission.objects.get(codename="view_referenceimage"))
    client.force_login(outsider)
    assert client.get(reverse("admin:characters_referenceimage_thumb", args=[reference.pk])).status_code == 404
    assert ReferenceImage.objects.count() == 1


# --- Retry from the admin -------------------------------------------------------------------------


def test_failed_jobs_can_be_retried_from_the_admin(admin_client, owner, monkeypatch):
    from generation import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks, "enqueue_run", queued.append)
    project = make_project(owner)
    failed = JobFactory(project=project, status=JobStatus.FAILED, graph={"1": {"class_type": "X", "inputs": {}}})
    done = JobFactory(project=project, status=JobStatus.SUCCEEDED, graph={"1": {}})

    response = admin_client.post(
        reverse("admin:generation_job_changelist"),
        {"action": "retry", "_selected_action": [failed.pk, done.pk]},
        follow=True,
    )

    retry = Job.objects.get(parent=failed)
    assert retry.status == JobStatus.QUEUED and retry.graph == failed.graph
    assert not Job.objects.filter(parent=done).exists()
    text = " ".join(str(m) for m in response.context["messages"])
    assert f"#{failed.pk} → #{retry.pk}" in text
    assert f"#{done.pk}: only failed or cancelled jobs can be retried" in text
    assert Asset.objects.count() == 0

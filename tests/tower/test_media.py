"""Stored files are served only to people who may see what owns them."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile

from characters.services import character_add_reference, character_create
from generation.models import Asset
from tests.factories import JobFactory, make_project, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def files(project, owner):
    character = character_create(project=project, name="Kai", design_prompt="x")
    reference = character_add_reference(character=character, upload=io.BytesIO(png_bytes()))
    job = JobFactory(project=project)
    asset = Asset(project=project, job=job, mime="image/png", sha256="a" * 64)
    asset.file.save("job1-1.png", ContentFile(png_bytes(colour=(1, 2, 3))), save=False)
    asset.thumbnail.save("t1.webp", ContentFile(b"RIFF....WEBP"), save=False)
    asset.save()
    return {"reference": reference.image.url, "asset": asset.file.url, "thumb": asset.thumbnail.url}


def _get(client, user, url, **headers):
    if user is not None:
        client.force_login(user)
    return client.get(url, **headers)


@pytest.mark.parametrize("which", ["reference", "asset", "thumb"])
def test_members_get_the_file_and_outsiders_a_404(client, files, member, viewer, outsider, which):
    url = files[which]
    for user in (member, viewer):
        response = _get(client, user, url)
        assert response.status_code == 200
        assert response["X-Content-Type-Options"] == "nosniff"
        assert b"".join(response.streaming_content)
    assert _get(client, outsider, url).status_code == 404


def test_anonymous_is_sent_to_login_and_tokens_work(client, files, owner, outsider, token_for):
    response = client.get(files["asset"])
    assert response.status_code == 302 and "/login" in response["Location"]
    assert client.get(files["asset"], HTTP_AUTHORIZATION=f"Bearer {token_for(owner)}").status_code == 200
    assert client.get(files["asset"], HTTP_AUTHORIZATION=f"Bearer {token_for(outsider)}").status_code == 404
    assert client.get(files["asset"], HTTP_AUTHORIZATION="Bearer twr_forged").status_code == 302


@pytest.mark.parametrize(
    "path",
    ["/media/../tower/settings.py", "/media/assets/../../secret_key", "/media/secret_key", "/media/assets/x/a.png"],
)
def test_path_tricks_and_unknown_folders_are_404(client, owner, files, path):
    assert _get(client, owner, path).status_code == 404


def test_files_of_another_project_stay_hidden_even_for_a_busy_user(client, files, outsider, owner):
    other = make_project(outsider, "Other")
    asset = Asset(project=other, mime="image/png", sha256="b" * 64)
    asset.file.save("x.png", ContentFile(png_bytes()), save=False)
    asset.save()
    assert _get(client, owner, asset.file.url).status_code == 404
    assert _get(client, outsider, asset.file.url).status_code == 200

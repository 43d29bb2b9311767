"""REST API v1: a character's reference images (uploads, limits, primary, deletion)."""

from __future__ import annotations

import hashlib
import io
import random
import re
from pathlib import Path

import pytest
from PIL import Image

from characters.models import ReferenceImage
from characters.services import character_add_reference
from tests.characters.api_helpers import media_files, upload_body
from tests.factories import png_bytes
from tests.tower.test_uploads import apng_bytes


def _raw_multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body with the file name exactly as given (test clients strip directories)."""
    boundary = "----tower-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_upload_stores_under_a_generated_name_not_the_users(api_owner, character, settings):
    body, content_type = _raw_multipart("../../etc/passwd.png", png_bytes(40, 24))
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.generic("POST", url, body, content_type=content_type)
    assert response.status_code == 201, response.content
    data = response.json()
    media = Path(settings.MEDIA_ROOT).resolve()
    files = media_files(settings)
    assert len(files) == 1
    relative = files[0].resolve().relative_to(media)  # raises if the file escaped MEDIA_ROOT
    assert relative.parts[:2] == ("references", str(character.pk))
    assert re.fullmatch(r"[0-9a-f]{32}\.png", relative.name)
    assert not (media.parent / "etc").exists()
    assert data["image"] == f"http://testserver/media/{relative.as_posix()}"
    assert (data["width"], data["height"]) == (40, 24)
    assert data["is_primary"] is True  # the first one
    assert data["sha256"] == hashlib.sha256(png_bytes(40, 24)).hexdigest()
    assert "/" not in data["original_name"]


def test_upload_with_primary_and_note_then_list_primary_first(world, api_member):
    url = f"/api/v1/characters/{world['character']}/references/"
    response = api_member.post(url, upload_body(primary="true", note="side view"), format="multipart")
    assert response.status_code == 201
    new_id = response.json()["id"]
    assert response.json()["note"] == "side view"
    listed = api_member.get(url).json()
    assert listed["count"] == 2
    assert [(r["id"], r["is_primary"]) for r in listed["results"]] == [(new_id, True), (world["reference"], False)]
    third = api_member.post(url, upload_body(data=png_bytes(colour=(7, 7, 7))), format="multipart")
    assert third.json()["is_primary"] is False  # a primary exists and none was asked for


@pytest.mark.parametrize(
    ("case", "name", "data"),
    [
        ("text renamed to png", "x.png", b"this is just text, not an image\n" * 10),
        ("truncated png", "cut.png", png_bytes(256, 256)[:300]),
        ("gif", "anim.png", png_bytes(fmt="GIF")),
        ("empty", "empty.png", b""),
    ],
)
def test_bad_uploads_are_refused_and_leave_no_file(api_owner, character, settings, case, name, data):
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.post(url, upload_body(name, data), format="multipart")
    assert response.status_code == 400, case
    assert "image" in response.json()
    assert ReferenceImage.objects.count() == 0
    assert media_files(settings) == []


def test_upload_over_the_byte_limit_is_refused(api_owner, character, settings):
    settings.UPLOAD_MAX_BYTES = 4096
    noise = io.BytesIO()
    Image.frombytes("RGB", (64, 64), random.Random(7).randbytes(64 * 64 * 3)).save(noise, format="PNG")
    assert len(noise.getvalue()) > 4096  # a valid image, only too big
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.post(url, upload_body(data=noise.getvalue()), format="multipart")
    assert response.status_code == 400
    assert "larger than the limit" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 0
    assert media_files(settings) == []


def test_upload_over_the_pixel_limit_is_refused(api_owner, character, settings):
    settings.UPLOAD_MAX_PIXELS = 64 * 64
    response = api_owner.post(
        f"/api/v1/characters/{character.pk}/references/", upload_body(data=png_bytes(65, 64)), format="multipart"
    )
    assert response.status_code == 400
    assert "pixels" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 0
    assert media_files(settings) == []


def test_animation_over_the_pixel_limit_in_all_its_frames_is_refused(api_owner, character, settings):
    # 30 frames at 3000×3000: 35 KB on disk, each frame under the limit, 270 M pixels together.
    data = apng_bytes(3000, 3000, frames=30)
    response = api_owner.post(
        f"/api/v1/characters/{character.pk}/references/", upload_body(data=data), format="multipart"
    )
    assert response.status_code == 400
    assert "30 frames of 3000×3000" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 0
    assert media_files(settings) == []


def test_small_animated_reference_is_accepted(api_owner, character):
    frames = [Image.new("RGB", (64, 64), (i * 50, 90, 30)) for i in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=80, loop=0)
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.post(url, upload_body(data=buffer.getvalue()), format="multipart")
    assert response.status_code == 201, response.content
    assert ReferenceImage.objects.get().width == 64


def test_duplicate_reference_is_refused_and_leaves_one_file(world, api_owner, settings):
    before = media_files(settings)
    assert len(before) == 1
    url = f"/api/v1/characters/{world['character']}/references/"
    response = api_owner.post(url, upload_body(data=png_bytes()), format="multipart")  # same bytes as the fixture's
    assert response.status_code == 400
    assert "already a reference" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 1
    assert media_files(settings) == before


def test_upload_without_a_file_is_a_field_error(world, api_owner):
    url = f"/api/v1/characters/{world['character']}/references/"
    response = api_owner.post(url, {"note": "no image"}, format="multipart")
    assert response.status_code == 400
    assert "image" in response.json()


def test_patch_reference_primary_and_note(world, api_owner, character):
    second = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(5, 5, 5))))
    response = api_owner.patch(f"/api/v1/references/{second.pk}/", {"is_primary": True, "note": "best"})
    assert response.status_code == 200
    assert response.json()["is_primary"] is True
    assert response.json()["note"] == "best"
    assert ReferenceImage.objects.get(is_primary=True).pk == second.pk
    refused = api_owner.patch(f"/api/v1/references/{second.pk}/", {"is_primary": False})
    assert refused.status_code == 400
    assert "is_primary" in refused.json()
    assert ReferenceImage.objects.get(is_primary=True).pk == second.pk
    too_long = api_owner.patch(f"/api/v1/references/{second.pk}/", {"note": "x" * 300})
    assert too_long.status_code == 400
    assert api_owner.put(f"/api/v1/references/{second.pk}/", {"note": "x"}).status_code == 405


def test_delete_primary_reference_promotes_the_next_and_removes_the_file(
    world, api_owner, character, settings, django_capture_on_commit_callbacks
):
    second = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(5, 5, 5))))
    first_file = Path(ReferenceImage.objects.get(pk=world["reference"]).image.path)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_owner.delete(f"/api/v1/references/{world['reference']}/").status_code == 204
    assert not first_file.exists()
    assert ReferenceImage.objects.get().pk == second.pk
    assert ReferenceImage.objects.get().is_primary
    assert api_owner.get(f"/api/v1/references/{world['reference']}/").status_code == 404

"""POST /api/v1/quality/evaluate refuses pixel bombs before decoding them (issue 17, item 12)."""

from __future__ import annotations

import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from quality.models import Evaluation, QualityScore

pytestmark = pytest.mark.django_db

EVALUATE = "/api/v1/quality/evaluate"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int, *, frames: int = 1) -> bytes:
    """A PNG (animated when frames > 1) whose header claims a size; a few hundred bytes on disk.

    Its pixel data is one row: decoding it fully is what must never be tried.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    chunks = [_chunk(b"IHDR", ihdr)]
    if frames > 1:
        chunks.append(_chunk(b"acTL", struct.pack(">II", frames, 0)))
        chunks.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, width, height, 0, 0, 1, 10, 0, 0)))
    chunks.append(_chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))))
    chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


@pytest.fixture
def client(owner, token_for) -> Client:
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token_for(owner)}")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (png_header_only(30000, 30000), "too many pixels"),
        (png_header_only(7000, 7000), "the limit is 40,000,000"),
        (png_header_only(3000, 3000, frames=30), "30 frames of 3000×3000"),
    ],
    ids=["bomb", "over-the-limit", "animated"],
)
def test_an_image_that_decodes_to_too_many_pixels_is_a_413_with_a_message(client, project, data, message):
    upload = SimpleUploadedFile("x.png", data, content_type="image/png")
    response = client.post(EVALUATE, {"project": project.pk, "file": upload})
    assert response.status_code == 413, response.content
    assert message in response.json()["detail"]
    assert not QualityScore.objects.exists()
    assert not Evaluation.objects.exists()  # nothing stored, nothing handed to a worker

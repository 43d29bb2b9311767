"""Request bodies and file listings shared by the character API tests."""

from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import png_bytes


def upload_body(name: str = "ref.png", data: bytes | None = None, **extra) -> dict:
    data = png_bytes(colour=(1, 2, 3)) if data is None else data
    return {"image": SimpleUploadedFile(name, data, content_type="image/png"), **extra}


def media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

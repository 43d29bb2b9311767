"""Thumbnails of stored images (references, dataset images), made once and kept beside the image.

A thumbnail of ``a/b/name.png`` is ``a/b/thumbs/name.jpg`` (the name ingestion already uses), so
the admin and the pages show a few kilobytes instead of the full-size file. Made on first request,
never while a list page renders.
"""

from __future__ import annotations

import io
import logging
import warnings

from django.core.files.base import ContentFile
from django.db.models.fields.files import FieldFile
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

THUMB_SIZE = 320
THUMB_QUALITY = 82
MAX_SOURCE_BYTES = 128 * 1024 * 1024
MAX_SOURCE_PIXELS = 64_000_000


def thumb_name(image_name: str) -> str:
    """Where the JPEG thumbnail of a stored image lives (beside it, under ``thumbs/``)."""
    folder, _, file = image_name.rpartition("/")
    stem = file.rsplit(".", 1)[0]
    return f"{folder}/thumbs/{stem}.jpg" if folder else f"thumbs/{stem}.jpg"


def make_jpeg_thumbnail(data: bytes, *, size: int = THUMB_SIZE) -> bytes:
    """A JPEG at most ``size`` pixels on its longer side; raises ValueError for what is not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_SOURCE_PIXELS:
                    raise ValueError(f"{image.width}×{image.height} is too large to thumbnail")
                image.draft("RGB", (size, size))  # JPEG: decode at a fraction of the size
                small = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                small.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"not a readable image ({exc.__class__.__name__})") from None
    if small.mode == "RGBA":  # JPEG has no alpha: flatten onto the admin's dark panel colour
        backdrop = Image.new("RGB", small.size, (32, 34, 40))
        backdrop.paste(small, mask=small.getchannel("A"))
        small = backdrop
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def stored_thumbnail(file: FieldFile) -> str | None:
    """The storage name of ``file``'s thumbnail, made if missing; None when it cannot be made."""
    if not file or not file.name:
        return None
    storage, name = file.storage, thumb_name(file.name)
    if storage.exists(name):
        return name
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise ValueError("the file is too large to thumbnail")
        thumb = make_jpeg_thumbnail(data)
    except (OSError, ValueError) as exc:
        logger.warning("no thumbnail for %s: %s", file.name, exc)
        return None
    # Two first requests at once: the loser's copy gets another name; either serves.
    return storage.save(name, ContentFile(thumb))

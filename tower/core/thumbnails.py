"""Thumbnails of stored images (references, dataset images), made once and kept beside the image.

A thumbnail of ``a/b/name.png`` is ``a/b/thumbs/name.jpg`` (the name ingestion already uses), so
the admin and the pages show a few kilobytes instead of the full-size file. Made on first request,
never while a list page renders.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import models
from django.db.models.fields.files import FieldFile
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import URLPattern, path, reverse
from PIL import Image, UnidentifiedImageError

from tower.core.admin import THUMB_PX, thumbnail_url

if TYPE_CHECKING:
    from django.contrib import admin

    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object

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


# --- The admin: thumbnails served by the ModelAdmin (staff rules apply), made on first request ---


def admin_thumb_url(model: type[models.Model], pk: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_thumb", args=[pk])


class AdminThumbnailMixin(_AdminBase):
    """Adds ``<pk>/thumb/`` to a ModelAdmin: the row's thumbnail (made on first request), as a redirect.

    A list of 100 rows then loads 100 small JPEGs instead of 100 full-size PNGs, and the list page
    itself never decodes an image. Rows the user may not see answer 404, as their change pages do.
    """

    thumbnail_field = "image"

    def thumbnail_storage_name(self, obj: Any) -> tuple[Storage, str | None]:
        file = getattr(obj, self.thumbnail_field)
        return file.storage, stored_thumbnail(file)

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        view = self.admin_site.admin_view(self.thumbnail_view)
        own = [path("<path:object_id>/thumb/", view, name=f"{opts.app_label}_{opts.model_name}_thumb")]
        return own + super().get_urls()  # before the admin's own "<object_id>/" catch-all

    def thumbnail_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        try:
            obj = self.get_queryset(request).filter(pk=object_id).first()
        except (ValueError, TypeError, ValidationError):
            obj = None
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404("No such row")
        storage, name = self.thumbnail_storage_name(obj)
        return HttpResponseRedirect(storage.url(name) if name else static("img/no-thumbnail.svg"))

    def thumbnail_cell(self, obj: Any, *, alt: str, size: int = THUMB_PX) -> str:
        return thumbnail_url(admin_thumb_url(self.model, obj.pk), alt=alt, size=size)

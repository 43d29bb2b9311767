"""An asset's thumbnail, made once and stored in ``Asset.thumbnail`` (``thumbs/``).

Pages never make thumbnails: they link to the stored one, or, while it is missing, to the
``asset-thumb`` view, which calls :func:`asset_thumbnail_ensure`. A conditional update claims the
field, so two simultaneous first requests store one thumbnail and the loser's file is removed.
"""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from generation.models import Asset
from generation.thumbs import ThumbnailError, make_thumbnail

logger = logging.getLogger(__name__)

MAX_SOURCE_BYTES = 512 * 1024 * 1024


def asset_thumbnail_ensure(*, asset_id: int) -> str | None:
    """The storage name of the asset's thumbnail, making it if missing; None if it cannot be made."""
    asset = Asset.objects.only("pk", "file", "mime", "size_bytes", "sha256", "thumbnail").get(pk=asset_id)
    if asset.thumbnail:
        return asset.thumbnail.name
    if asset.size_bytes > MAX_SOURCE_BYTES:
        return None
    try:
        # The open file, not its bytes: a video's first frame needs only the start of the file.
        with asset.file.open("rb") as handle:
            thumb = make_thumbnail(handle, mime=asset.mime)
    except (OSError, ThumbnailError) as exc:
        logger.warning("no thumbnail for asset %s: %s", asset_id, exc)
        return None
    stored = default_storage.save(f"thumbs/asset-{asset.pk}-{asset.sha256[:12]}.webp", ContentFile(thumb))
    if Asset.objects.filter(pk=asset.pk, thumbnail="").update(thumbnail=stored):
        return stored
    default_storage.delete(stored)  # another request stored one first
    return Asset.objects.filter(pk=asset.pk).values_list("thumbnail", flat=True).first() or None

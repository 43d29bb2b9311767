"""Validation of uploaded images by content, and safe storage names.

The user's file name never reaches the filesystem: files are stored under a generated name whose
extension comes from the format Pillow detected. Size is bounded in bytes before decoding and in
pixels before the pixels are loaded, so a decompression bomb is refused without being expanded.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

from tower.core.errors import DomainError

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class UploadError(DomainError):
    """The upload is not an image Tower accepts; the message says why."""


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str
    extension: str
    mime: str
    width: int
    height: int
    sha256: str

    def storage_name(self) -> str:
        return f"{uuid.uuid4().hex}.{self.extension}"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MiB"
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} bytes"


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    frames: int


def image_header(data: bytes, *, max_pixels: int, max_total_pixels: int) -> ImageHeader | None:
    """Size and frame count of an image or animation read from its header, without decoding a
    pixel; None when Pillow does not know the data (a video, or not media at all).

    Raises :class:`UploadError` when a frame has more than ``max_pixels`` pixels or all frames
    together more than ``max_total_pixels`` (an animated PNG of 30 frames at 3000×3000 is 10 KB
    on disk and 810 MB decoded), so a caller can refuse it before anything is decoded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                frames = int(getattr(probe, "n_frames", 1) or 1)
                fmt = probe.format or ""
        except Image.DecompressionBombError:
            raise UploadError("the image has too many pixels (decompression bomb refused)") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            return None
    if width * height > max_pixels:
        raise UploadError(f"the image is {width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
    if width * height * frames > max_total_pixels:
        raise UploadError(
            f"the animation has {frames} frames of {width}×{height} = {width * height * frames:,} pixels in all; "
            f"the limit is {max_total_pixels:,}"
        )
    return ImageHeader(format=fmt, width=width, height=height, frames=frames)


def check_image(stream: IO[bytes], *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Read at most ``max_bytes`` + 1 bytes and prove they are a whole, sane PNG/JPEG/WebP.

    ``max_pixels`` bounds a still image and, for an animated PNG or WebP, all its frames together:
    whoever reads the frames later (thumbnails, palettes, scoring) must not be handed more pixels
    than the largest still image.
    """
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadError(f"the file is larger than the limit of {_size(max_bytes)}")
    if not data:
        raise UploadError("the file is empty")
    # Size and frame count from the header, before a pixel is decoded.
    image_header(data, max_pixels=max_pixels, max_total_pixels=max_pixels)
    with warnings.catch_warnings():
        # Pillow warns (rather than raises) between 1× and 2× its own bomb limit; we decide here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
                if fmt not in ALLOWED_FORMATS:
                    raise UploadError(f"{fmt or 'this'} files are not accepted; upload a PNG, JPEG or WebP image")
                probe.verify()
            # verify() does not decode pixels; a truncated file only shows when they are loaded.
            with Image.open(io.BytesIO(data)) as full:
                full.load()
        except UploadError:
            raise
        except Image.DecompressionBombError:
            raise UploadError("the image has too many pixels (decompression bomb refused)") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise UploadError(f"the file is not a readable image ({exc.__class__.__name__})") from None
    if width < 1 or height < 1:
        raise UploadError("the image has no pixels")
    return CheckedImage(
        data=data,
        format=fmt,
        extension=ALLOWED_FORMATS[fmt],
        mime=MIME[fmt],
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )

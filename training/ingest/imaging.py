"""Pure image work of ingestion (no Django): validate, perceptual-hash and thumbnail (JPEG) one candidate.

``analyse`` is what each worker thread runs for one candidate image. The heavy parts (PNG/JPEG
decoding, resizing, JPEG encoding, SHA-256) release the GIL, so a thread pool scales on the cores
of a django-q2 worker, which is a daemonic process and may not start processes of its own.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import imagehash
import numpy as np
from PIL import Image

from tower.core.uploads import CheckedImage, UploadError, check_image

THUMB_SIZE = 320
THUMB_QUALITY = 82


@dataclass(frozen=True)
class Analysed:
    """One valid candidate: its checked bytes, 64-bit perceptual hash and a JPEG thumbnail."""

    checked: CheckedImage
    phash: int
    thumbnail: bytes

    @property
    def phash_hex(self) -> str:
        return f"{self.phash:016x}"


def phash_of(image: Image.Image) -> int:
    """imagehash's DCT pHash (8×8 = 64 bits) as an int."""
    bits = imagehash.phash(image).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def decode_small(data: bytes, *, size: int = THUMB_SIZE) -> Image.Image:
    """The image fitted in ``size``², the form both the hash and the thumbnail are made from.

    Call only on bytes ``check_image`` accepted (bounded in bytes and pixels).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                # JPEG can decode straight at a fraction of its size; the hash needs only 32×32.
                image.draft("RGB", (size, size))
                small = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB")
        except (OSError, ValueError) as exc:
            raise UploadError(f"the file is not a readable image ({exc.__class__.__name__})") from None
    small.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return small


def analyse(data: bytes, *, max_bytes: int, max_pixels: int, thumb_size: int = THUMB_SIZE) -> Analysed:
    """Check ``data`` is a whole PNG/JPEG/WebP within the limits, then hash and thumbnail it.

    Raises ``UploadError`` with a message for the user when it is not.
    """
    checked = check_image(io.BytesIO(data), max_bytes=max_bytes, max_pixels=max_pixels)
    small = decode_small(checked.data, size=thumb_size)
    out = io.BytesIO()
    # JPEG: twenty times cheaper to encode than WebP at this size, and every browser shows it.
    small.convert("RGB").save(out, format="JPEG", quality=THUMB_QUALITY)
    return Analysed(checked=checked, phash=phash_of(small), thumbnail=out.getvalue())


T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, window: int = 0) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in order, with at most ``window`` items in flight.

    The window bounds memory when items are large (image bytes read from an archive).
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    window = window or workers * 4
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()

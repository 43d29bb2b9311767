"""De-duplication of dataset images: exact (SHA-256) and perceptual (64-bit pHash, Hamming distance).

``PhashIndex`` is pure (numpy): the character's existing hashes are loaded once per batch, every
accepted image is appended, and a lookup is one vectorised XOR + popcount over all of them (a
10,000-image dataset is a 80 kB array; a lookup costs microseconds).

``dataset_duplicate_of`` is the one-image check any path that adds to a dataset can call (the
gallery's "add to dataset" included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def phash_int(value: str) -> int | None:
    """The stored hex form back to an int (None for an empty or malformed value)."""
    try:
        return int(value, 16) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Match:
    ref: Any  # what the caller registered: a DatasetImage id, or a label of an image in this batch
    distance: int  # Hamming distance of the pHashes (0 for the same bytes)
    exact: bool = False  # the same bytes (SHA-256)


class PhashIndex:
    """Near-duplicate lookup over 64-bit perceptual hashes, plus exact SHA-256 matches."""

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        self._hashes = np.zeros(256, dtype=np.uint64)
        self._refs: list[Any] = []
        self._sha: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._refs)

    def add(self, *, phash: int | None, sha256: str, ref: Any) -> None:
        if sha256:
            self._sha.setdefault(sha256, ref)
        if phash is None:
            return
        n = len(self._refs)
        if n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros(n, dtype=np.uint64)])
        self._hashes[n] = np.uint64(phash)
        self._refs.append(ref)

    def find(self, *, phash: int | None, sha256: str) -> Match | None:
        """The closest registered image within ``max_distance``, the exact same bytes first."""
        if sha256 and sha256 in self._sha:
            return Match(ref=self._sha[sha256], distance=0, exact=True)
        n = len(self._refs)
        if phash is None or n == 0:
            return None
        distances = np.bitwise_count(np.bitwise_xor(self._hashes[:n], np.uint64(phash)))
        best = int(np.argmin(distances))
        distance = int(distances[best])
        return Match(ref=self._refs[best], distance=distance) if distance <= self.max_distance else None


def character_index(character_id: int, *, max_distance: int | None = None) -> PhashIndex:
    """Every image already in the character's dataset (any status: a rejected image stays rejected)."""
    from django.conf import settings

    from training.models import DatasetImage

    index = PhashIndex(settings.TOWER_DATASET_PHASH_DISTANCE if max_distance is None else max_distance)
    rows = DatasetImage.objects.filter(character_id=character_id).values_list("pk", "phash", "sha256")
    for pk, phash, sha256 in rows.iterator(chunk_size=2000):
        index.add(phash=phash_int(phash), sha256=sha256, ref=pk)
    return index


def dataset_duplicate_of(*, character_id: int, data: bytes) -> tuple[int, int] | None:
    """(DatasetImage id, distance) of an image in the character's dataset that ``data`` duplicates.

    ``data`` must already be a checked image (``tower.core.uploads.check_image``).
    """
    import hashlib

    from training.ingest.imaging import decode_small, phash_of

    small = decode_small(data)
    match = character_index(character_id).find(phash=phash_of(small), sha256=hashlib.sha256(data).hexdigest())
    return (int(match.ref), match.distance) if match else None

"""Which of a project's characters appears in an image.

Interface (used by ingestion and by the review page)::

    classify_image(*, project, data, candidates=None) -> Classification

``data`` is the encoded image (PNG/JPEG/WebP bytes), ``candidates`` the characters to choose among
(default: all of the project's). The vision LLM decides when ``TOWER_LLM_BASE_URL`` is set; otherwise,
or when the LLM is unreachable or answers nonsense, embedding similarity against each candidate's
reference images decides. It never raises for one bad image: an undecidable image comes back with
``character_id=None`` and a ``note`` saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from characters.models import Character
from projects.models import Project


@dataclass(frozen=True)
class Classification:
    character_id: int | None
    confidence: float  # 0–1
    method: str  # "llm", "embedding" or "" when nothing could decide
    note: str = ""


def classify_image(*, project: Project, data: bytes, candidates: Sequence[Character] | None = None) -> Classification:
    raise NotImplementedError("filled in by the classification work of issue 6")

"""Which of a project's characters appears in an image.

Interface (used by ingestion and by the review page)::

    classify_image(*, project, data, candidates=None) -> Classification

``data`` is the encoded image (PNG/JPEG/WebP bytes), ``candidates`` the characters to choose among
(default: all of the project's). The vision LLM decides when ``TOWER_LLM_BASE_URL`` is set; otherwise,
or when the LLM is unreachable or answers nonsense, embedding similarity against each candidate's
reference images decides. It never raises for one bad image: an undecidable image comes back with
``character_id=None`` and a ``note`` saying why.

For many images, :class:`Classifier` keeps one LLM connection and the candidates' reference
embeddings across calls, and stops asking an LLM that was found unreachable (each try would cost a
full timeout). :func:`classify_dataset_images` re-classifies stored dataset images with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from characters.models import Character
from characters.selectors import similarity_threshold
from projects.models import Project
from quality import weights
from quality.metrics import (
    MetricInputError,
    MetricModels,
    Status,
    WeightsMissing,
    embed_faces,
    embedding_model_id,
    load_frames,
)
from quality.services import common
from quality.services.references import character_embed_references
from training.llm.client import LLMClient, LLMError, LLMUnavailable, parse_json_answer
from training.models import DatasetImage

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You identify characters in anime and illustration production images. Answer with one JSON object and nothing else."
)


@dataclass(frozen=True)
class Classification:
    character_id: int | None
    confidence: float  # 0–1
    method: str  # "llm", "embedding" or "" when nothing could decide
    note: str = ""


def classify_image(*, project: Project, data: bytes, candidates: Sequence[Character] | None = None) -> Classification:
    with Classifier(project=project, candidates=candidates) as classifier:
        return classifier.classify(data)


def classifier_unavailable_reason(*, art_kind: str) -> str:
    """Why no classifier can decide images of this art kind ("" when one can), with the fix.

    The vision LLM counts as available when it is configured (it is not called here); otherwise
    the embedding fallback needs its weights on disk.
    """
    if settings.TOWER_LLM_BASE_URL:
        return ""
    missing = _missing_weights(art_kind, common.metric_models())
    if not missing:
        return ""
    return f"no vision LLM is configured (set TOWER_LLM_BASE_URL) and {missing}"


def llm_prompt(candidates: Sequence[Character]) -> str:
    lines = []
    for character in candidates:
        trigger = f" (trigger word: {character.trigger_word})" if character.trigger_word else ""
        lines.append(f"- {character.name}{trigger}: {character.design_prompt.strip()}")
    return (
        "Which one of these characters appears in the image?\n"
        + "\n".join(lines)
        + '\n\nAnswer only with JSON: {"character": "<one of the names above>" or null if none of them '
        'appears, "confidence": <a number from 0 to 1>}'
    )


class Classifier:
    """Classifies images among a fixed set of candidates; use as a context manager (closes the LLM client)."""

    def __init__(self, *, project: Project, candidates: Sequence[Character] | None = None) -> None:
        self.project = project
        self.candidates = list(candidates) if candidates is not None else list(project.characters.order_by("name"))
        self.llm = LLMClient.from_settings()
        self.llm_down = ""  # why the LLM is skipped for the rest of this run
        self._references: dict[int, np.ndarray] | None = None
        self._reference_problem = ""

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.llm is not None:
            self.llm.close()

    def classify(self, data: bytes) -> Classification:
        if not self.candidates:
            return Classification(None, 0.0, "", "the project has no characters to choose among")
        why = "no LLM configured (TOWER_LLM_BASE_URL)"
        if self.llm is not None and self.llm_down:
            why = self.llm_down
        elif self.llm is not None:
            try:
                return self._ask_llm(data)
            except LLMUnavailable as exc:
                self.llm_down = why = f"LLM unavailable: {exc}"
            except LLMError as exc:
                why = f"LLM answer unusable: {exc}"
        return self._by_embedding(data, why)

    # --- the vision LLM

    def _ask_llm(self, data: bytes) -> Classification:
        assert self.llm is not None
        answer = self.llm.ask_image(llm_prompt(self.candidates), data, system=SYSTEM_PROMPT, max_tokens=100)
        parsed = parse_json_answer(answer.content)
        if not isinstance(parsed, dict) or "character" not in parsed:
            raise LLMError(f'expected {{"character": …, "confidence": …}}, got {json.dumps(parsed)[:100]}')
        confidence = _confidence(parsed.get("confidence"))
        name = parsed["character"]
        if name is None or (isinstance(name, str) and name.strip().lower() in ("", "null", "none")):
            names = ", ".join(c.name for c in self.candidates)
            return Classification(None, confidence, "llm", f"the LLM sees none of: {names}")
        if not isinstance(name, str):
            raise LLMError(f"the character should be a name, got {name!r}")
        character = self._match(name)
        if character is None:
            raise LLMError(f"the LLM named {name!r}, which is not one of the candidates")
        return Classification(character.pk, confidence, "llm")

    def _match(self, name: str) -> Character | None:
        wanted = name.strip().strip(".").casefold()
        for field_name in ("name", "trigger_word", "slug"):
            for character in self.candidates:
                value = getattr(character, field_name) or ""
                if value and value.casefold() == wanted:
                    return character
        return None

    # --- embedding similarity (the quality engine's)

    def _candidate_references(self) -> dict[int, np.ndarray]:
        if self._references is None:
            self._references = {}
            models = common.metric_models()
            missing = _missing_weights(self.project.art_kind, models)
            if missing:
                self._reference_problem = missing
                return self._references
            problems = []
            for character in self.candidates:
                embedded = character_embed_references(character=character, models=models)
                if embedded.references:
                    vectors = np.stack([r.vector for r in embedded.references]).astype(np.float32)
                    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
                    self._references[character.pk] = vectors
                    continue
                unusable = embedded.unusable()
                if unusable is not None and unusable.status is Status.UNAVAILABLE and unusable.fix:
                    # Weights missing: the same for every candidate, say which and how to fetch them.
                    self._reference_problem = _unavailable_note(unusable.model_id, unusable.details, unusable.fix)
                    self._references = {}
                    return self._references
                problems.append(f"{character.name}: {unusable.details.get('reason') if unusable else 'unusable'}")
            if not self._references:
                self._reference_problem = "no candidate has a usable reference image (" + "; ".join(problems) + ")"
        return self._references

    def _by_embedding(self, data: bytes, why: str) -> Classification:
        references = self._candidate_references()
        if not references:
            return Classification(None, 0.0, "", f"{why}; embedding fallback: {self._reference_problem}")
        try:
            image = load_frames(data, max_frames=1)[0]
            faces = embed_faces(image, art_kind=self.project.art_kind, models=common.metric_models())  # type: ignore[arg-type]  # a choices column holding ArtKind's values
        except MetricInputError as exc:
            return Classification(None, 0.0, "", f"{why}; the image cannot be read: {exc}")
        except WeightsMissing as exc:
            return Classification(None, 0.0, "", f"{why}; embedding fallback unavailable: {exc}")
        if not faces:
            return Classification(None, 0.0, "embedding", f"{why}; no face found for embedding similarity")
        vectors = np.stack([f.vector for f in faces]).astype(np.float32)
        scores = {pk: float((vectors @ refs.T).max()) for pk, refs in references.items()}
        best_pk = max(scores, key=lambda pk: scores[pk])
        best = scores[best_pk]
        character = next(c for c in self.candidates if c.pk == best_pk)
        confidence = min(1.0, max(0.0, best))
        if best < similarity_threshold(character):
            note = (
                f"{why}; closest is {character.name} at similarity {best:.2f}, "
                f"below its threshold {similarity_threshold(character):.2f}"
            )
            return Classification(None, confidence, "embedding", note)
        return Classification(character.pk, confidence, "embedding", why)


def _confidence(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            raise LLMError(f"the confidence should be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise LLMError(f"the confidence should be a number from 0 to 1, got {value!r}")
    if 1 < value <= 100:  # a percentage
        value = value / 100
    if not 0 <= value <= 1:
        raise LLMError(f"the confidence should be from 0 to 1, got {value!r}")
    return float(value)


def _missing_weights(art_kind: str, models: MetricModels) -> str:
    """Which embedding model this art kind needs and is not on disk, with the command that fetches it."""
    try:
        model_id = embedding_model_id(art_kind, models)  # type: ignore[arg-type]  # a choices column holding ArtKind's values
    except MetricInputError as exc:
        return str(exc)
    status = weights.model_status(model_id, models.root, verify=False)
    if status.usable:
        return ""
    return (
        f"character similarity needs the {model_id} weights ({status.detail}); run: {weights.fetch_command(model_id)}"
    )


def _unavailable_note(model_id: str, details: dict[str, Any], fix: str) -> str:
    reason = str(details.get("reason") or f"weights for {model_id} missing")
    return reason if fix in reason else f"{reason}; run: {fix}"


# --- stored dataset images --------------------------------------------------------------------


@dataclass
class ClassifyReport:
    total: int = 0
    classified: int = 0
    unclassified: int = 0
    kept_manual: int = 0
    unreadable: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    disagree: list[int] = field(default_factory=list)  # images whose classifier picked another character
    notes: list[str] = field(default_factory=list)  # distinct reasons, the first few

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "classified": self.classified,
            "unclassified": self.unclassified,
            "kept_manual": self.kept_manual,
            "unreadable": self.unreadable,
            "by_method": dict(self.by_method),
            "disagree": list(self.disagree),
            "notes": list(self.notes),
        }

    def note(self, text: str) -> None:
        if text and text not in self.notes and len(self.notes) < 10:
            self.notes.append(text)

    def summary(self) -> str:
        parts = [f"{self.classified} of {self.total} images classified"]
        if self.by_method:
            parts.append(" / ".join(f"{n} by {m}" for m, n in sorted(self.by_method.items())))
        if self.disagree:
            parts.append(f"{len(self.disagree)} look like another character")
        if self.kept_manual:
            parts.append(f"{self.kept_manual} decided by hand kept")
        if self.unclassified:
            parts.append(f"{self.unclassified} undecided")
        text = "; ".join(parts) + "."
        return text + (f" {self.notes[0]}" if self.notes and self.unclassified else "")


def classify_dataset_images(*, image_ids: Iterable[int]) -> ClassifyReport:
    """Classify stored dataset images again among their project's characters and store the result.

    Images whose character was decided by hand (``classification_method="manual"``) are kept. Safe
    to run twice: the result only replaces the previous classification.
    """
    report = ClassifyReport()
    images = list(
        DatasetImage.objects.filter(pk__in=list(image_ids)).select_related("character__project").order_by("pk")
    )
    by_project: dict[int, list[DatasetImage]] = {}
    for image in images:
        by_project.setdefault(image.character.project_id, []).append(image)
    for group in by_project.values():
        project = group[0].character.project
        with Classifier(project=project) as classifier:
            for image in group:
                _classify_stored(image, classifier, report)
    return report


def _classify_stored(image: DatasetImage, classifier: Classifier, report: ClassifyReport) -> None:
    report.total += 1
    if image.classification_method == "manual":
        report.kept_manual += 1
        return
    try:
        with image.image.open("rb") as handle:
            data = handle.read()
    except OSError as exc:
        report.unreadable += 1
        report.unclassified += 1
        report.note(f"image #{image.pk} cannot be read: {exc}")
        return
    result = classifier.classify(data)
    DatasetImage.objects.filter(pk=image.pk).update(
        classified_character_id=result.character_id,
        classification_confidence=result.confidence if result.method else None,
        classification_method=result.method,
    )
    if result.character_id is None:
        report.unclassified += 1
    else:
        report.classified += 1
        report.by_method[result.method] = report.by_method.get(result.method, 0) + 1
        if result.character_id != image.character_id:
            report.disagree.append(image.pk)
    report.note(result.note)
    log.info("dataset image %s classified: %s", image.pk, result)

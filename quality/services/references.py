"""A character's reference embeddings, made on demand for the embedding model in use."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db import IntegrityError, transaction

from characters.models import Character, CharacterVersion, ReferenceEmbedding, ReferenceImage
from quality.metrics import (
    FaceEmbedding,
    MetricInputError,
    MetricModels,
    MetricResult,
    Reference,
    Status,
    embed_reference,
    embedding_model_id,
    load_frames,
)


@dataclass
class EmbeddedReferences:
    """The references usable with ``model_id``, and why others are not (by reference id)."""

    model_id: str
    references: list[Reference] = field(default_factory=list)
    problems: dict[int, MetricResult] = field(default_factory=dict)
    version_id: int | None = None  # the version whose own references these are; None: the character's

    def unusable(self) -> MetricResult | None:
        """Why similarity cannot run at all (no usable reference), as a result to record."""
        if self.references:
            return None
        unavailable = [p for p in self.problems.values() if p.status is Status.UNAVAILABLE]
        if unavailable:  # weights missing: say which and how to fetch them
            return unavailable[0]
        reason = (
            "the character has no reference image; add one"
            if not self.problems
            else "no face found in any reference image: " + "; ".join(f"#{k}" for k in self.problems)
        )
        return MetricResult(
            metric="character_similarity",
            status=Status.UNAVAILABLE,
            model_id=self.model_id,
            details={"reason": reason},
        )


def _read_reference(ref: ReferenceImage) -> np.ndarray:
    with ref.image.open("rb") as handle:
        return load_frames(handle.read(), max_frames=1)[0]


def reference_set(character: Character, version: CharacterVersion | None = None) -> list[ReferenceImage]:
    """The references a job is scored against: the version's own when it has some, else the
    character's (those of no version)."""
    if version is not None:
        refs = list(ReferenceImage.objects.filter(version=version).order_by("pk"))
        if refs:
            return refs
    return list(ReferenceImage.objects.filter(character=character, version__isnull=True).order_by("pk"))


def character_embed_references(
    *, character: Character, models: MetricModels, version: CharacterVersion | None = None
) -> EmbeddedReferences:
    """Embed every reference of the set a job of ``character`` (and ``version``) is scored
    against (:func:`reference_set`) that has no embedding under the model in use, store them
    (``characters.ReferenceEmbedding``) and return all usable ones.

    The model follows the project's art kind (``quality.metrics.embedding_model_id``). A reference
    with no face, or weights that are missing, are reported in ``problems``, never stored.
    """
    art_kind = character.project.art_kind
    model_id = embedding_model_id(art_kind, models)  # type: ignore[arg-type]  # a choices column holding ArtKind's values
    refs = reference_set(character, version)
    out = EmbeddedReferences(model_id=model_id, version_id=refs[0].version_id if refs else None)
    stored = {e.reference_id: e for e in ReferenceEmbedding.objects.filter(reference__in=refs, model_id=model_id)}
    for ref in refs:
        row = stored.get(ref.pk)
        if row is None:
            try:
                image = _read_reference(ref)
            except (MetricInputError, OSError) as exc:
                out.problems[ref.pk] = MetricResult.error("character_similarity", f"reference #{ref.pk}: {exc}")
                continue
            embedded = embed_reference(image, art_kind=art_kind, models=models)  # type: ignore[arg-type]  # a choices column holding ArtKind's values
            if isinstance(embedded, MetricResult):
                out.problems[ref.pk] = embedded
                if embedded.status is Status.UNAVAILABLE:
                    break  # the same weights are missing for every other reference too
                continue
            row = _store(ref, embedded)
        out.references.append(
            Reference(id=ref.pk, vector=np.frombuffer(bytes(row.vector), dtype=np.float32), model_id=row.model_id)
        )
    return out


def _store(ref: ReferenceImage, embedded: FaceEmbedding) -> ReferenceEmbedding:
    vector = np.asarray(embedded.vector, dtype=np.float32).ravel()
    try:
        with transaction.atomic():
            return ReferenceEmbedding.objects.create(
                reference=ref,
                model_id=embedded.model_id,
                dim=int(vector.size),
                vector=vector.tobytes(),
                face_box=[int(v) for v in embedded.face.box],
            )
    except IntegrityError:  # another worker embedded it meanwhile: theirs is as good
        return ReferenceEmbedding.objects.get(reference=ref, model_id=embedded.model_id)

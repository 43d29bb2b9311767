"""Character similarity: find faces, embed them, compare with the character's reference embeddings.

- ``photoreal``: InsightFace (SCRFD detector, ArcFace 512-d on the 5-point aligned 112×112 crop).
- ``anime``: InsightFace does not work on anime faces (its maintainers say so), so faces come from
  the ``animeface`` detector (its model ships in the wheel) and are embedded with CCIP (deepghs,
  768-d, ONNX) when its file is present, else with the CLIP ViT-L/14 image embedding. CCIP is
  trained on character images, so the crop is the face box grown by half its size on each side.

Similarity is the cosine of L2-normalised embeddings, only against references embedded with the
same model (``model_id``): mixing spaces would give meaningless numbers. No face gives a
``no_subject`` result, never a score of 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from quality import weights
from quality.metrics.frames import FrameLike, as_rgb
from quality.metrics.results import MetricInputError, MetricResult, Status, WeightsMissing
from quality.metrics.runtime import MetricModels, load_ccip, load_face_detector, load_face_recognizer

ArtKind = Literal["anime", "photoreal"]
DEFAULT_THRESHOLD = 0.70
CCIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CCIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
ANIME_MARGIN = 0.5


@dataclass(frozen=True)
class Reference:
    """A stored reference embedding (``characters.ReferenceEmbedding``: its id, vector and model_id)."""

    id: int | str
    vector: np.ndarray
    model_id: str


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the image
    confidence: float
    landmarks: np.ndarray | None = field(default=None, compare=False)  # 5×2 (insightface only)


@dataclass(frozen=True)
class FaceEmbedding:
    face: Face
    vector: np.ndarray  # unit length
    model_id: str


def embedding_model_id(art_kind: ArtKind, models: MetricModels) -> str:
    """The model the given style embeds with on this installation (what references must match)."""
    if art_kind == "photoreal":
        return weights.FACE_RECOGNIZER[0]
    if art_kind != "anime":
        raise MetricInputError(f"unknown art kind {art_kind!r}")
    return weights.CCIP_FEATURES[0] if models.path(weights.CCIP_FEATURES).is_file() else weights.CLIP_CHECKPOINT[0]


# --- detection --------------------------------------------------------------------------------


def detect_anime_faces(image: np.ndarray) -> list[Face]:
    import animeface

    found = animeface.detect(Image.fromarray(image))
    return [
        Face((f.face.pos.x, f.face.pos.y, f.face.pos.width, f.face.pos.height), float(f.likelihood))
        for f in sorted(found, key=lambda f: -f.likelihood)
    ]


def detect_real_faces(image: np.ndarray, models: MetricModels) -> list[Face]:
    detector = load_face_detector(models)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    boxes, kpss = detector.detect(bgr, input_size=(640, 640))
    faces = []
    for i, (x1, y1, x2, y2, score) in enumerate(boxes):
        kps = None if kpss is None else np.asarray(kpss[i], dtype=np.float32)
        faces.append(Face((int(x1), int(y1), round(x2 - x1), round(y2 - y1)), float(score), kps))
    return faces


def _crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    x, y, w, h = box
    h_img, w_img = image.shape[:2]
    x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
    x1, y1 = min(w_img, int(x + w + margin * w)), min(h_img, int(y + h + margin * h))
    if x1 <= x0 or y1 <= y0:
        return image
    return image[y0:y1, x0:x1]


# --- embedding --------------------------------------------------------------------------------


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    unit: np.ndarray = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    return unit


def ccip_embed(crops: Sequence[np.ndarray], models: MetricModels) -> np.ndarray:
    session = load_ccip(models)
    inp = session.get_inputs()[0]
    size = inp.shape[2] if isinstance(inp.shape[2], int) else 384
    batch = np.stack(
        [
            (
                (
                    np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255
                    - CCIP_MEAN
                )
                / CCIP_STD
            ).transpose(2, 0, 1)
            for c in crops
        ]
    ).astype(np.float32)
    if isinstance(inp.shape[0], int) and inp.shape[0] == 1:  # a model exported for batch 1
        return np.concatenate([session.run(None, {inp.name: batch[i : i + 1]})[0] for i in range(len(batch))])
    embeddings: np.ndarray = session.run(None, {inp.name: batch})[0]
    return embeddings


def embed_faces(image: FrameLike, *, art_kind: ArtKind, models: MetricModels) -> list[FaceEmbedding]:
    """Every face in the image with its embedding, most confident first. Raises :class:`WeightsMissing`."""
    return embed_faces_batch([image], art_kind=art_kind, models=models)[0]


def embed_faces_batch(
    images: Sequence[FrameLike], *, art_kind: ArtKind, models: MetricModels
) -> list[list[FaceEmbedding]]:
    """:func:`embed_faces` for many images, the embedding network run once on all their faces."""
    rgb = [as_rgb(im) for im in images]
    model_id = embedding_model_id(art_kind, models)
    faces_per_image: list[list[Face]] = []
    crops: list[np.ndarray] = []
    if art_kind == "photoreal":
        from insightface.utils import face_align

        recognizer = load_face_recognizer(models)  # fail early, before detection, when it is missing
        for image in rgb:
            faces = detect_real_faces(image, models)
            faces_per_image.append(faces)
            bgr = np.ascontiguousarray(image[:, :, ::-1])
            for face in faces:
                if face.landmarks is not None:
                    crops.append(
                        face_align.norm_crop(bgr, landmark=face.landmarks, image_size=recognizer.input_size[0])
                    )
                else:
                    crops.append(cv2.resize(_crop(bgr, face.box, 0.0), recognizer.input_size))
        if not crops:
            vectors = np.zeros((0, 512), np.float32)
        elif isinstance(recognizer.input_shape[0], int) and recognizer.input_shape[0] == 1:  # exported for batch 1
            vectors = np.concatenate([recognizer.get_feat([c]) for c in crops])
        else:
            vectors = recognizer.get_feat(crops)
    else:
        for image in rgb:
            faces = detect_anime_faces(image)
            faces_per_image.append(faces)
            crops.extend(_crop(image, face.box, ANIME_MARGIN) for face in faces)
        if not crops:
            vectors = np.zeros((0, 1), np.float32)
        elif model_id == weights.CCIP_FEATURES[0]:
            vectors = ccip_embed(crops, models)
        else:
            from quality.metrics.aesthetic import clip_embeddings

            vectors = clip_embeddings(crops, models)
    vectors = _unit(vectors) if len(crops) else vectors
    out: list[list[FaceEmbedding]] = []
    i = 0
    for faces in faces_per_image:
        out.append([FaceEmbedding(face, vectors[i + k], model_id) for k, face in enumerate(faces)])
        i += len(faces)
    return out


def embed_reference(image: FrameLike, *, art_kind: ArtKind, models: MetricModels) -> FaceEmbedding | MetricResult:
    """The embedding to store for a reference image (its most confident face), or why there is none."""
    try:
        faces = embed_faces(image, art_kind=art_kind, models=models)
    except WeightsMissing as exc:
        return MetricResult.unavailable("character_similarity", exc.model_id, str(exc))
    if not faces:
        return MetricResult.no_subject("character_similarity", model_id=embedding_model_id(art_kind, models))
    return faces[0]


# --- similarity -------------------------------------------------------------------------------


def character_similarity(
    images: Sequence[FrameLike],
    references: Sequence[Reference],
    *,
    art_kind: ArtKind,
    models: MetricModels,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[MetricResult]:
    """One ``character_similarity`` result per image: the best cosine over its faces × references.

    ``details``: ``face_box`` [x, y, w, h] and ``reference`` (id) of the best match, ``faces``
    (how many were found), ``per_reference`` (best cosine per reference), ``threshold``, ``passed``.
    """
    if not images:
        return []
    try:
        model_id = embedding_model_id(art_kind, models)
    except MetricInputError as exc:
        return [MetricResult.error("character_similarity", str(exc)) for _ in images]
    usable = [r for r in references if r.model_id == model_id]
    if not usable:
        have = sorted({r.model_id for r in references}) or "none"
        reason = f"no reference embedded with {model_id} (references: {have}); embed the character's references again"
        return [
            MetricResult(
                metric="character_similarity", status=Status.UNAVAILABLE, model_id=model_id, details={"reason": reason}
            )
            for _ in images
        ]
    try:
        per_image = embed_faces_batch(images, art_kind=art_kind, models=models)
    except WeightsMissing as exc:
        return [MetricResult.unavailable("character_similarity", exc.model_id, str(exc)) for _ in images]
    refs = _unit(np.stack([r.vector for r in usable]))
    results = []
    for faces in per_image:
        if not faces:
            results.append(MetricResult.no_subject("character_similarity", model_id=model_id))
            continue
        sims = np.stack([f.vector for f in faces]) @ refs.T  # faces × references
        fi, ri = np.unravel_index(int(np.argmax(sims)), sims.shape)
        best = float(sims[fi, ri])
        results.append(
            MetricResult.scored(
                "character_similarity",
                best,
                model_id=model_id,
                face_box=list(faces[fi].face.box),
                reference=usable[ri].id,
                faces=len(faces),
                per_reference={str(r.id): round(float(v), 6) for r, v in zip(usable, sims.max(axis=0), strict=True)},
                threshold=threshold,
                passed=best >= threshold,
            )
        )
    return results

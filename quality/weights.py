"""The model weights the quality metrics use: where each file lives, where it comes from, how to check it.

Django-free: every function takes the models directory (``settings.MODELS_DIR``, set by
``TOWER_MODELS_DIR``) as an argument. Nothing here runs at import time and nothing downloads
unless :func:`download` is called (``manage.py fetch_models``); a metric whose file is missing
reports "unavailable" with :func:`fetch_command`, never a made-up score.

Every download is verified against the SHA-256 pinned here before it replaces anything. The
files unpacked from an archive (and any entry with ``sha256=None``, e.g. a test's) get the digest
of what was installed in a ``<file>.sha256`` sidecar, which later checks compare against
("unverified" until then). :mod:`quality.fetch` runs the downloads with progress a page can show.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tower.core.errors import DomainError

CHUNK = 1024 * 1024


class WeightsError(DomainError):
    """A weights file could not be fetched or does not match its checksum."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    filename: str  # the downloaded file, relative to the models directory
    url: str
    sha256: str | None  # of the downloaded file; None: not published upstream, recorded on fetch
    size: int | None  # bytes, when known
    used_by: tuple[str, ...]  # metrics that need it
    description: str
    # For an archive: the members to unpack into ``unpack_to`` (the archive is removed afterwards).
    members: tuple[str, ...] = ()
    unpack_to: str = ""
    # What runs it: "torch" (CUDA when torch sees a GPU) or "onnx" (CUDA with the onnxruntime-gpu build).
    runtime: str = "torch"

    @property
    def files(self) -> tuple[str, ...]:
        """What must be on disk (relative to the models directory) for the model to be usable."""
        if self.members:
            return tuple(f"{self.unpack_to}/{name}" for name in self.members)
        return (self.filename,)


MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="clip-vit-l-14",
            filename="clip/ViT-L-14.pt",
            # OpenAI publishes the SHA-256 as the path component before the file name.
            url="https://openaipublic.azureedge.net/clip/models/"
            "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
            sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
            size=None,
            used_by=("aesthetic", "character_similarity (anime fallback)"),
            description="OpenAI CLIP ViT-L/14 (open_clip 'ViT-L-14'), image embeddings",
        ),
        ModelSpec(
            id="laion-aesthetic",
            filename="aesthetic/sac+logos+ava1-l14-linearMSE.pth",
            url="https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
            "sac+logos+ava1-l14-linearMSE.pth",
            # Upstream publishes none; the digest and size every independent pin of this file agrees on.
            sha256="21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0",
            size=3_714_759,
            used_by=("aesthetic",),
            description="LAION improved aesthetic predictor (MLP on CLIP ViT-L/14 embeddings)",
        ),
        ModelSpec(
            id="alexnet",
            filename="lpips/alexnet-owt-7be5be79.pth",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
            size=244_408_911,
            used_by=("temporal_lpips", "subject_consistency"),
            description="torchvision AlexNet trunk for LPIPS (the linear layers ship with lpips)",
        ),
        ModelSpec(
            id="ccip",
            filename="ccip/ccip-caformer-24-randaug-pruned/model_feat.onnx",
            # Pinned to a commit: a file on "main" can change under its digest.
            url="https://huggingface.co/deepghs/ccip_onnx/resolve/eb2acdd29af1703388d3d0c04221add322bc9110/"
            "ccip-caformer-24-randaug-pruned/model_feat.onnx",
            sha256="4ea118d16496274f4f6e08d3afc768cc592389e8f7f32f8732ce2215c228ac5f",  # Hugging Face's LFS oid
            size=150_248_245,
            used_by=("character_similarity (anime)",),
            description="deepghs CCIP anime character embedding (768-d), feature model",
            runtime="onnx",
        ),
        ModelSpec(
            id="buffalo_l",
            filename="insightface/buffalo_l.zip",
            url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
            sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
            size=288_621_354,
            used_by=("character_similarity (photoreal)",),
            description="InsightFace buffalo_l: SCRFD-10G face detector + ArcFace R50 (512-d)",
            members=("det_10g.onnx", "w600k_r50.onnx"),
            unpack_to="insightface/buffalo_l",
            runtime="onnx",
        ),
    )
}

# The files the metrics open, by role (model id, path relative to the models directory).
CLIP_CHECKPOINT = ("clip-vit-l-14", "clip/ViT-L-14.pt")
AESTHETIC_HEAD = ("laion-aesthetic", "aesthetic/sac+logos+ava1-l14-linearMSE.pth")
ALEXNET = ("alexnet", "lpips/alexnet-owt-7be5be79.pth")
CCIP_FEATURES = ("ccip", "ccip/ccip-caformer-24-randaug-pruned/model_feat.onnx")
FACE_DETECTOR = ("buffalo_l", "insightface/buffalo_l/det_10g.onnx")
FACE_RECOGNIZER = ("buffalo_l", "insightface/buffalo_l/w600k_r50.onnx")


def fetch_command(model_id: str) -> str:
    """The command that makes a missing model available."""
    return f"python manage.py fetch_models {model_id}"


def get_spec(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        raise WeightsError(f"unknown model {model_id!r}; known: {', '.join(sorted(MODELS))}") from None


# --- status -----------------------------------------------------------------------------------


class State(StrEnum):
    PRESENT = "present"  # verified against the pinned or recorded digest
    UNVERIFIED = "unverified"  # on disk, but no digest to compare with
    MISSING = "missing"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    state: State
    paths: tuple[Path, ...]
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in (State.PRESENT, State.UNVERIFIED)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def model_status(model_id: str, models_dir: Path, *, verify: bool = True) -> ModelStatus:
    """Whether a model's files are there and intact. ``verify=False`` checks presence and size only."""
    spec = get_spec(model_id)
    paths = tuple(Path(models_dir) / name for name in spec.files)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        return ModelStatus(spec, State.MISSING, paths, f"{missing[0]} not found")
    unverified = False
    for path in paths:
        pinned = spec.sha256 if not spec.members else None
        if not spec.members and spec.size is not None and path.stat().st_size != spec.size:
            return ModelStatus(
                spec, State.CORRUPT, paths, f"{path.name}: {path.stat().st_size} bytes, expected {spec.size}"
            )
        if not verify:
            continue
        expected = pinned
        if expected is None and _sidecar(path).is_file():
            expected = _sidecar(path).read_text().split()[0]
        if expected is None:
            unverified = True
            continue
        actual = sha256_of(path)
        if actual != expected:
            return ModelStatus(
                spec, State.CORRUPT, paths, f"{path.name}: sha256 {actual[:12]}…, expected {expected[:12]}…"
            )
    if unverified:
        return ModelStatus(spec, State.UNVERIFIED, paths, "no checksum to verify against")
    return ModelStatus(spec, State.PRESENT, paths)


# --- download ---------------------------------------------------------------------------------

Progress = Callable[[int, int | None], None]  # (bytes done, total or None)


def download(
    model_id: str,
    models_dir: Path,
    *,
    url: str | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> ModelStatus:
    """Fetch one model into ``models_dir``, resuming a ``.part`` file with an HTTP Range request.

    The file is checked against its SHA-256 before it replaces anything; a mismatch removes the
    partial download and raises :class:`WeightsError`. ``url`` overrides the registry's (a mirror).
    """
    spec = get_spec(model_id)
    models_dir = Path(models_dir)
    target = models_dir / spec.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    source = url or spec.url
    if not source.startswith(("https://", "http://")):
        raise WeightsError(f"{model_id}: only http(s) URLs are fetched, not {source!r}")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(source, headers={"User-Agent": "tower-fetch-models"})  # noqa: S310 (checked above)
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        # S310: the URL is the registry's (or an operator's mirror), never user input from the web.
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is already complete (or larger than the file)
            response = None
        else:
            raise WeightsError(f"{model_id}: {source} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(f"{model_id}: cannot reach {source} ({exc})") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                have = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else spec.size
            with part.open("ab" if resumed else "wb") as out:
                done = have
                if progress:
                    progress(done, total)
                try:
                    while block := response.read(CHUNK):
                        out.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
                except (OSError, TimeoutError) as exc:
                    raise WeightsError(
                        f"{model_id}: download interrupted at {done} bytes ({exc}); run again to resume"
                    ) from None
    actual = sha256_of(part)
    if spec.sha256 is not None and actual != spec.sha256:
        part.unlink()
        raise WeightsError(f"{model_id}: sha256 {actual} does not match the registry's {spec.sha256}; removed")
    if spec.size is not None and part.stat().st_size != spec.size:
        part.unlink()
        raise WeightsError(f"{model_id}: {part.stat().st_size} bytes, expected {spec.size}; removed")
    os.replace(part, target)
    if spec.members:
        _unpack(spec, target, models_dir)
    else:
        _sidecar(target).write_text(f"{actual}  {target.name}\n")
    return model_status(model_id, models_dir)


def _unpack(spec: ModelSpec, archive: Path, models_dir: Path) -> None:
    dest = models_dir / spec.unpack_to
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            by_base = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
            for member in spec.members:
                info = by_base.get(member)
                if info is None:
                    raise WeightsError(f"{spec.id}: {member} is not in {archive.name}")
                out = dest / member
                with zf.open(info) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                _sidecar(out).write_text(f"{sha256_of(out)}  {member}\n")
    except zipfile.BadZipFile:
        raise WeightsError(f"{spec.id}: {archive.name} is not a zip archive") from None
    finally:
        archive.unlink(missing_ok=True)

"""Assembling an episode's film on a worker: the service that starts it, the task that runs it.

Which clips make each scene is movie production's knowledge (quality's segments), and generation
knows nothing of quality: the function named by ``settings.TOWER_EPISODE_FOOTAGE`` (a dotted path,
like ``TOWER_PHASE_CHECK``) returns the episode's scenes in order, each with its clips as stored
assets (see :class:`SceneFootage`). The joining itself is :mod:`generation.film.assembly`.

A run is claimed with a conditional update (a re-delivered task does nothing), or taken over when
its worker died (running for longer than a task may run). The film is written to a temporary file
and becomes an Asset in the transaction that marks the assembly succeeded; a failure leaves no
Asset and no file, and the assembly says why.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string
from redis.exceptions import RedisError

from generation import events
from generation.film.assembly import CONTAINERS, MAX_CROSSFADE, AssemblyError, Clip, Film, Reel, assemble
from generation.models import Assembly, AssemblyStatus, Asset, AssetKind
from projects.models import Episode

logger = logging.getLogger(__name__)

__all__ = ["AssemblyError", "SceneFootage", "assembly_run", "assembly_start", "episode_footage"]

PROGRESS_INTERVAL = 0.5  # seconds between progress writes
# An ``assembly_progress`` event on each step of at least this much, at most one per interval:
# a page's bar moves live, and a long film sends about twenty events, not thousands.
PROGRESS_EVENT_STEP = 0.05
PROGRESS_EVENT_INTERVAL = 0.5


@dataclass(frozen=True)
class SceneFootage:
    """One scene of an episode, for the film: its chapter title and its clips in order.

    Every asset after the first starts from its predecessor's last frame (a chained segment);
    ``chained`` says whether the first one starts from the previous scene's last frame, too.
    """

    title: str
    assets: list[Asset] = field(default_factory=list)
    chained: bool = False


def episode_footage(*, episode: Episode) -> list[SceneFootage]:
    """The episode's scenes in order with their clips, from ``settings.TOWER_EPISODE_FOOTAGE``."""
    path = getattr(settings, "TOWER_EPISODE_FOOTAGE", "")
    if not path:
        raise AssemblyError("no source of scene footage is configured (settings.TOWER_EPISODE_FOOTAGE)")
    source: Callable[..., list[SceneFootage]] = import_string(path)
    return source(episode=episode)


def _check_footage(footage: list[SceneFootage]) -> None:
    if not footage:
        raise AssemblyError("the episode has no scenes: add scenes and generate them first")
    empty = [scene.title for scene in footage if not scene.assets]
    if len(empty) == len(footage):
        raise AssemblyError("no scene of the episode has complete segments yet: generate the scenes first")
    if empty:
        raise AssemblyError(f"these scenes have no complete segments yet: {', '.join(empty)}")


def assembly_start(*, episode: Episode, user: User, container: str = "mp4", crossfade_frames: int = 0) -> Assembly:
    """Queue the assembly of the episode's film (its scenes in order, chapters, soundtrack).

    Refuses (:class:`AssemblyError`) an unknown container, a crossfade out of range, an episode with no
    scenes, or one whose scenes have no complete segments. The worker task is enqueued after commit.
    """
    if container not in CONTAINERS:
        raise AssemblyError(f"container must be one of {', '.join(CONTAINERS)}")
    if isinstance(crossfade_frames, bool) or not isinstance(crossfade_frames, int):
        raise AssemblyError("crossfade_frames must be a whole number")
    if not 0 <= crossfade_frames <= MAX_CROSSFADE:
        raise AssemblyError(f"crossfade_frames must be between 0 and {MAX_CROSSFADE}")
    if not episode.scenes.exists():
        raise AssemblyError("the episode has no scenes: add scenes and generate them first")
    _check_footage(episode_footage(episode=episode))
    with transaction.atomic():
        assembly = Assembly.objects.create(
            project_id=episode.project_id,
            episode=episode,
            created_by=user,
            container=container,
            crossfade_frames=crossfade_frames,
        )
        transaction.on_commit(lambda: _enqueue(assembly.pk))
    return assembly


def _enqueue(assembly_id: int) -> None:
    """Push the task; an unreachable queue fails the assembly, saying so (the request has answered)."""
    from generation import tasks  # the broker connection generation keeps

    try:
        tasks.async_task(
            "generation.assembly_task.assembly_task", assembly_id, task_name=f"assembly-{assembly_id}", group="assembly"
        )
    except (RedisError, OSError) as exc:
        logger.warning("could not queue assembly %s (%s)", assembly_id, exc)
        Assembly.objects.filter(pk=assembly_id, status=AssemblyStatus.QUEUED).update(
            status=AssemblyStatus.FAILED,
            error_message="the task queue could not be reached: assemble again",
            finished_at=timezone.now(),
        )


def assembly_task(assembly_id: int) -> str:
    """The worker's entry point (django-q2): ids in, one service call."""
    return assembly_run(assembly_id=assembly_id)


def _stale() -> Q:
    # django-q2 stops a task that runs longer than its timeout: a running assembly older than that
    # lost its worker (killed, or stopped by the timeout), and may be run again.
    limit: Any = settings.Q_CLUSTER.get("timeout", 3600)
    return Q(status=AssemblyStatus.RUNNING, started_at__lt=timezone.now() - timedelta(seconds=int(limit)))


def _claim(assembly_id: int) -> bool:
    taken = Assembly.objects.filter(Q(status=AssemblyStatus.QUEUED) | _stale(), pk=assembly_id).update(
        status=AssemblyStatus.RUNNING, started_at=timezone.now(), progress=0.0, error_message=""
    )
    return taken == 1


def assemblies_reconcile() -> str:
    """Queue again the assemblies whose worker died mid-film (``settings.TOWER_ON_RECONCILE``)."""
    stale = list(Assembly.objects.filter(_stale()).values_list("pk", flat=True))
    for assembly_id in stale:
        _enqueue(assembly_id)
    return f"{len(stale)} stale assembl{'y' if len(stale) == 1 else 'ies'} queued again"


class _ProgressWriter:
    """Writes the fraction done to the assembly row at most every PROGRESS_INTERVAL seconds, and
    announces it (``assembly_progress``) on each PROGRESS_EVENT_STEP, at most every PROGRESS_EVENT_INTERVAL."""

    def __init__(self, assembly: Assembly) -> None:
        self.assembly = assembly
        self.last = 0.0
        self.sent = 0.0  # the claim announced 0
        self.sent_at = time.monotonic()

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        value = max(0.0, min(fraction, 0.99))  # 1.0 only with the finished film
        written = Assembly.objects.filter(pk=self.assembly.pk, status=AssemblyStatus.RUNNING).update(progress=value)
        if written and value - self.sent >= PROGRESS_EVENT_STEP and now - self.sent_at >= PROGRESS_EVENT_INTERVAL:
            self.sent, self.sent_at = value, now
            _progress_event(self.assembly, value)


def _progress_event(assembly: Assembly, progress: float) -> None:
    events.movie_event(
        "assembly_progress",
        project_id=assembly.project_id,
        episode_id=assembly.episode_id,
        user_id=assembly.created_by_id,
        assembly=assembly.pk,
        progress=progress,
        status=AssemblyStatus.RUNNING,
    )


def _local_path(asset: Asset) -> Path:
    try:
        return Path(asset.file.path)
    except NotImplementedError:
        raise AssemblyError("assembly reads clips from local media storage; this storage has no paths") from None


def _reels(footage: list[SceneFootage]) -> list[Reel]:
    return [
        Reel(
            title=scene.title,
            clips=[
                Clip(path=_local_path(asset), continues=index > 0 or scene.chained)
                for index, asset in enumerate(scene.assets)
            ],
        )
        for scene in footage
    ]


def assembly_run(*, assembly_id: int) -> str:
    """Assemble a queued assembly's film and store it as an Asset; safe to re-deliver."""
    if not _claim(assembly_id):
        return "not queued (already taken or finished)"
    assembly = Assembly.objects.select_related("episode", "episode__project").get(pk=assembly_id)
    episode = assembly.episode
    _progress_event(assembly, 0.0)  # queued → running, on the pages at once
    try:
        footage = episode_footage(episode=episode)
        _check_footage(footage)
        soundtrack = Path(episode.soundtrack.path) if episode.soundtrack else None
        with tempfile.TemporaryDirectory(prefix="tower-assembly-") as work:
            out = Path(work) / f"film.{assembly.container}"
            film = assemble(
                _reels(footage),
                out,
                container=assembly.container,
                crossfade_frames=assembly.crossfade_frames,
                soundtrack=soundtrack,
                progress=_ProgressWriter(assembly),
            )
            asset = _store(assembly, footage, film, out)
    except Exception as exc:
        message = str(exc) if isinstance(exc, AssemblyError) else f"internal error ({exc.__class__.__name__}: {exc})"
        _fail(assembly, message)
        if not isinstance(exc, AssemblyError):
            logger.exception("assembly %s failed", assembly_id)
            raise
        return f"failed: {message}"
    return f"asset {asset.pk}: {film.frames} frames, {'stream copy' if film.stream_copy else 'encoded'}"


def _store(assembly: Assembly, footage: list[SceneFootage], film: Film, out: Path) -> Asset:
    """The film as an Asset and the assembly succeeded, in one transaction; the file goes if it fails."""
    with out.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    metadata: dict[str, Any] = {
        "assembly": assembly.pk,
        "episode": assembly.episode_id,
        "container": film.container,
        "chapters": film.chapters,
        "stream_copy": film.stream_copy,
        "why_encoded": film.why_encoded,
        "crossfade_frames": assembly.crossfade_frames,
        "dropped_frames": film.dropped_frames,
        "crossfaded_joins": film.crossfaded_joins,
        "soundtrack": film.soundtrack,
        "scenes": [{"title": s.title, "assets": [a.pk for a in s.assets], "chained": s.chained} for s in footage],
        "notes": film.notes,
    }
    asset = Asset(
        project_id=assembly.project_id,
        kind=AssetKind.VIDEO,
        mime=film.mime,
        size_bytes=out.stat().st_size,
        width=film.width,
        height=film.height,
        frames=film.frames,
        fps=film.fps,
        duration_seconds=film.duration_seconds,
        sha256=sha256,
        metadata=metadata,
    )
    name = f"episode{assembly.episode_id}-film{assembly.pk}.{film.container}"
    with out.open("rb") as handle:
        asset.file.save(name, File(handle, name=name), save=False)
    try:
        with transaction.atomic():
            asset.save()
            updated = Assembly.objects.filter(pk=assembly.pk, status=AssemblyStatus.RUNNING).update(
                status=AssemblyStatus.SUCCEEDED,
                progress=1.0,
                asset=asset,
                chapters=film.chapters,
                stream_copy=film.stream_copy,
                finished_at=timezone.now(),
            )
            if updated != 1:
                raise AssemblyError("the assembly was no longer running when its film was ready")
            events.movie_event(
                "assembly_complete",
                project_id=assembly.project_id,
                episode_id=assembly.episode_id,
                user_id=assembly.created_by_id,
                assembly=assembly.pk,
                status=AssemblyStatus.SUCCEEDED,
                asset=asset.pk,
                frames=film.frames,
                duration=film.duration_seconds,
                chapters=film.chapters,
                stream_copy=film.stream_copy,
            )
    except BaseException:
        asset.file.storage.delete(str(asset.file.name))
        raise
    return asset


def _fail(assembly: Assembly, message: str) -> None:
    with transaction.atomic():
        Assembly.objects.filter(pk=assembly.pk, status=AssemblyStatus.RUNNING).update(
            status=AssemblyStatus.FAILED, error_message=message[:2000], finished_at=timezone.now()
        )
        events.movie_event(
            "assembly_complete",
            project_id=assembly.project_id,
            episode_id=assembly.episode_id,
            user_id=assembly.created_by_id,
            assembly=assembly.pk,
            status=AssemblyStatus.FAILED,
            error=message,
        )

"""An episode's footage for generation's assembly: each scene's segments of its newest complete run.

``settings.TOWER_EPISODE_FOOTAGE`` names :func:`episode_footage`: generation joins the clips without
knowing what a segment is. A scene's first segment is ``chained`` when it started from the previous
scene's last segment's last frame (its first frame repeats that frame, and the assembly drops it).
"""

from __future__ import annotations

from generation.assembly_task import SceneFootage
from projects.models import Episode
from quality.models import SceneRun, Segment, SegmentStatus


def scene_title(number: int, title: str) -> str:
    return title.strip() or f"Scene {number}"


def episode_footage(*, episode: Episode) -> list[SceneFootage]:
    """The episode's scenes in order; a scene without a complete run has no assets."""
    footage: list[SceneFootage] = []
    previous_last_frame: int | None = None
    for scene in episode.scenes.order_by("number"):
        run = SceneRun.objects.filter(scene=scene, status=SegmentStatus.COMPLETE).order_by("-created_at", "-pk").first()
        segments = (
            list(
                Segment.objects.filter(run=run, status=SegmentStatus.COMPLETE, output__isnull=False)
                .select_related("output")
                .order_by("number")
            )
            if run is not None
            else []
        )
        chained = (
            bool(segments) and previous_last_frame is not None and segments[0].first_frame_id == previous_last_frame
        )
        footage.append(
            SceneFootage(
                title=scene_title(scene.number, scene.title),
                assets=[segment.output for segment in segments if segment.output is not None],
                chained=chained,
            )
        )
        previous_last_frame = segments[-1].last_frame_id if segments else None
    return footage

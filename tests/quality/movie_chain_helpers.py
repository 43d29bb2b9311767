"""Scenes chained on the fake ComfyUI in the test's own thread: what the workers would run.

``engine`` (``tests/quality/scoring_helpers``) records what would go to the broker; :func:`drive_scene`
runs job runs and recorded tasks round after round until the scene's run stops moving.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Container
from typing import Any

import numpy as np
from PIL import Image

from characters.services import character_add_reference, character_create
from generation import tasks
from generation.models import Job, JobStatus
from generation.services.completion import job_fail
from generation.services.inputs import image_source_from, upload_name
from projects.services import episode_create, scene_create, style_update
from quality import tasks as quality_tasks
from quality.models import PhaseGate, SceneRun, Segment
from tests.factories import make_project
from tests.generation.engine_helpers import shipped

MAX_ROUNDS = 80
SEGMENT = "weightless-segment"


def textured_png(seed: int = 1, size: int = 96) -> bytes:
    """A picture with structure (smooth gradients and a square): SSIM and flow have something to see."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 / size, y * 255 / size, (x + y) * 127 / size], axis=-1)
    base += rng.normal(0, 4, base.shape)
    base[size // 3 : size // 2, size // 3 : size // 2] = (250, 240, 20)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def movie_project(owner, **fields: Any):
    """A project with small frames (quick on two cores) and the shipped templates loaded."""
    shipped(SEGMENT)
    project = make_project(owner, **fields)
    style_update(project=project, width=96, height=96, fps=12)
    return project


def cast(project, owner, name: str = "Kai", seed: int = 1):
    """A character with a reference, allowed into video work (its phase-2 gate opened by hand)."""
    character = character_create(project=project, name=name, design_prompt="1boy, silver hair")
    character_add_reference(character=character, upload=io.BytesIO(textured_png(seed)), original_name="kai.png")
    PhaseGate.objects.create(
        project=project, character=character, phase=2, is_open=True, overridden_by=owner, override_reason="tests"
    )
    return character


def scene_with(project, characters, *, number: int | None = None, duration: float = 1.5, episode=None, **fields):
    episode = episode or project.episodes.first() or episode_create(project=project, title="Pilot")
    scene = scene_create(episode=episode, number=number, duration_seconds=duration, **fields)
    scene.characters.add(*characters)
    return scene


def drive_scene(
    run: SceneRun, engine: Any, *, until: Container[str] = (), before_round: Callable[[], None] | None = None
) -> SceneRun:
    """Run queued jobs and recorded tasks until nothing is left or the run's status is in ``until``."""
    runs, announced = engine
    for _ in range(MAX_ROUNDS):
        run.refresh_from_db()
        if run.status in until:
            return run
        if before_round is not None:
            before_round()
        job_ids, calls = runs.take(), announced.take()
        if not job_ids and not calls:
            return run
        for job_id in job_ids:
            tasks.job_run(job_id)
        for path, *args in calls:
            name = path.rsplit(".", 1)[-1]
            if name in {"score_succeeded", "scene_step", "score_job", "orchestration_step"}:
                getattr(quality_tasks, name)(*args)
    raise AssertionError(f"scene run {run.pk} still moving after {MAX_ROUNDS} rounds")


def received_first_frame(fake, job: Job) -> np.ndarray:
    """The pixels of the image the fake ComfyUI was given as the job's first frame (its input folder)."""
    graph = fake.history[job.prompt_id]["prompt"][2]
    [name] = [node["inputs"]["image"] for node in graph.values() if node["class_type"] == "LoadImage"]
    return np.asarray(Image.open(fake.input_dir / name).convert("RGB"))


def uploaded_name(image) -> str:
    return upload_name(image_source_from(image))


def fail_segment(run: SceneRun, number: int, engine) -> SceneRun:
    """Drive the scene, failing segment ``number``'s first job in generation (out of memory)."""
    failed: list[int] = []

    def before_round() -> None:
        segment = Segment.objects.select_related("job").get(run=run, number=number)
        if not failed and segment.job is not None and segment.job.status == JobStatus.QUEUED:
            job_fail(job_id=segment.job_id, error_type="node", message="CUDA out of memory", expect={JobStatus.QUEUED})
            failed.append(segment.job_id)

    return drive_scene(run, engine, before_round=before_round)

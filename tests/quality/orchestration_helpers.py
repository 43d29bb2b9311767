"""Running orchestrations on the fake ComfyUI in the test's own thread: what the workers would run.

``engine`` (``tests/quality/scoring_helpers``) records what would go to the broker: job runs and
tasks. :func:`drive` runs them until the orchestration stops moving (or reaches ``until``).
"""

from __future__ import annotations

import io
from collections.abc import Container
from typing import Any

from characters.services import character_add_reference, character_create
from generation import tasks
from quality import tasks as quality_tasks
from quality.models import Orchestration, PhaseRun
from quality.services.orchestration import orchestration_start
from tests.factories import make_project
from tests.generation.engine_helpers import shipped
from tests.quality.scoring_helpers import png

WEIGHTLESS = {"sheet": "weightless-sheet", "loop": "weightless-loop", "video": "weightless-video"}
MAX_ROUNDS = 60  # each round runs what the previous one queued; a pipeline needs about a dozen


def character_with_reference(project, name: str = "Kai"):
    character = character_create(project=project, name=name, design_prompt="1boy, silver hair")
    character_add_reference(
        character=character, upload=io.BytesIO(png((240, 240, 240), square=40)), original_name="kai.png"
    )
    return character


def flow_project(owner, **fields: Any):
    """A project whose gates, unevaluable here (no weights), let the flow through, with the shipped
    templates loaded as at start-up."""
    shipped("weightless-sheet")
    return make_project(owner, **{"advance_unevaluated": True, "max_regenerations": 1, **fields})


def team_project(owner, member, viewer):
    """A flow project with an editor and a viewer beside its owner (who may do what)."""
    from projects.services import project_member_set

    project = flow_project(owner)
    project_member_set(project=project, username=member.username, role="editor")
    project_member_set(project=project, username=viewer.username, role="viewer")
    return project


def start(project, character, user, **kw: Any) -> Orchestration:
    kw.setdefault("templates", WEIGHTLESS)
    return orchestration_start(user=user, project=project, character=character, prompt="on a rooftop", **kw)


def run_of(orchestration: Orchestration, phase: int) -> PhaseRun:
    return PhaseRun.objects.get(orchestration=orchestration, phase=phase)


def drive(orchestration: Orchestration, engine: Any, *, until: Container[str] = ()) -> Orchestration:
    """Run queued jobs and recorded tasks, round after round, until nothing is left to run or the
    orchestration's status is in ``until``; returns it as the database has it then."""
    runs, announced = engine
    for _ in range(MAX_ROUNDS):
        orchestration.refresh_from_db()
        if orchestration.status in until:
            return orchestration
        job_ids, calls = runs.take(), announced.take()
        if not job_ids and not calls:
            return orchestration
        for job_id in job_ids:
            tasks.job_run(job_id)
        for path, *args in calls:
            if path == "quality.tasks.score_succeeded":
                quality_tasks.score_succeeded(*args)
            elif path == "quality.tasks.orchestration_step":
                quality_tasks.orchestration_step(*args)
            elif path == "quality.tasks.score_job":
                quality_tasks.score_job(*args)
    raise AssertionError(f"orchestration {orchestration.pk} still moving after {MAX_ROUNDS} rounds")

"""Creating jobs from requests, and the person-driven moves: cancel, retry, reproduce."""

from __future__ import annotations

import copy
import itertools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.module_loading import import_string

from characters.models import Character, CharacterVersion, Variation
from characters.selectors import primary_reference
from generation import events
from generation.models import Job, JobLogLine, JobStatus, LogLevel, WorkflowTemplate
from generation.services.backend_check import graph_refusal, known_object_infos
from generation.services.completion import job_fail
from generation.services.inputs import (
    PHASE_OF_KIND,
    ImageSource,
    image_source_from,
    template_image_inputs,
    upload_name,
)
from generation.services.jobs import JobError, job_log, job_transition
from generation.services.resolve import ResolveError, resolve_job_parameters
from generation.workflow import WorkflowError, apply, style_parameters
from generation.workflow.apply import graph_values
from generation.workflow.bindings import resolve_bindings
from projects.models import Project, Scene

logger = logging.getLogger(__name__)

MAX_JOBS_PER_REQUEST = 64
MAX_GRID_PARAMETERS = 2
_NOT_CLEANED = ["graph", "project", "character", "version", "variation", "scene", "template", "created_by", "parent"]


# The names before image inputs were general (an init image only); kept for their callers.
InitImage = ImageSource
init_image_from = image_source_from


def _enqueue(job_ids: list[int]) -> None:
    """Hand new jobs to the workers. If the broker is down the jobs stay queued in the database,
    and the next reconcile (on worker start, and every minute) dispatches them: nothing is lost."""
    from generation import tasks  # tasks import the engine; keep services importable alone
    from generation.services.reconcile import free_slots

    # One task per free backend slot: a worker task claims further queued jobs itself as slots
    # free up (a session), so a task per job would mostly find its job taken. At least one, so a
    # job that cannot be placed says why ("waiting: …") at once.
    for job_id in job_ids[: max(1, free_slots())]:
        try:
            tasks.enqueue_run(job_id)
        except Exception:
            logger.warning("broker unreachable; job %s stays queued for reconcile", job_id, exc_info=True)
            return


def _grid_cells(grid: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    if not isinstance(grid, dict) or len(grid) > MAX_GRID_PARAMETERS:
        raise JobError(f"a grid varies at most {MAX_GRID_PARAMETERS} parameters")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise JobError(f"grid parameter {name!r} needs a non-empty list of values")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def _image_sources(
    *,
    template: WorkflowTemplate,
    targets: dict[str, Any],
    images: dict[str, ImageSource],
    overrides: dict[str, Any],
    character: Character | None,
    version: CharacterVersion | None,
) -> dict[str, ImageSource]:
    """The file of each image parameter the template binds, in IMAGE_PARAMETERS order.

    Refuses (JobError) an image the template has no input for, and an input nothing fills: sent
    as it is, the graph would fail on the template's placeholder file (``example.png``).
    """
    wanted = template_image_inputs(template)
    for param in images:
        if param not in wanted:
            takes = ", ".join(wanted) if wanted else "no image"
            raise JobError(f"this template has no image input {param!r} (it takes: {takes})")
    sources: dict[str, ImageSource] = {}
    default: ImageSource | None = None
    for param in wanted:
        if param in images:
            sources[param] = images[param]
            continue
        if isinstance(overrides.get(param), str) and overrides[param]:
            continue  # a file the requester names on the backend themselves
        if character is not None and default is None:
            reference = primary_reference(character, version)
            default = image_source_from(reference) if reference is not None else None
        if default is None:
            node = _node_label(template, targets, param)
            none_yet = f"; {character.name} has no reference images yet" if character is not None else ""
            raise JobError(
                f"this template needs an image for {param!r}{f' ({node})' if node else ''}: "
                f"give images.{param} (a reference, an asset or an upload){none_yet}"
            )
        sources[param] = default
    return sources


def _node_label(template: WorkflowTemplate, targets: dict[str, Any], param: str) -> str:
    """'LoadImage #12': the node an image parameter feeds, as a person finds it in ComfyUI."""
    found = targets.get(param) or []
    if not found:
        return ""
    node_id = found[0].node_id
    class_type = (template.graph.get(str(node_id)) or {}).get("class_type", "")
    return f"{class_type} #{node_id}".strip()


def _phase_gate(*, project: Project, character: Character | None, phase: int, force_reason: str) -> str:
    """The reason a character's phase-``phase`` work would run behind a closed gate ("" when open).

    The gate's state belongs to an app above generation: ``settings.TOWER_PHASE_CHECK`` names
    the function that knows (none: no check). A closed gate refuses the request unless an
    editor forces it with a reason.
    """
    path = getattr(settings, "TOWER_PHASE_CHECK", "")
    if character is None or phase < 2 or not path:
        return ""
    reason = import_string(path)(project=project, character=character, phase=phase)
    if not reason:
        return ""
    if not force_reason.strip():
        raise JobError(f"{reason} (an editor may force it with a reason)")
    return str(reason)


def announce_jobs_created(job_ids: list[int]) -> None:
    """Call every function listed in ``settings.TOWER_ON_JOBS_CREATED`` with ``job_ids=``, after commit.

    Like ``TOWER_ON_JOB_SUCCEEDED``: apps above generation (quality records the jobs' pre-flight
    gates) subscribe by a dotted path in settings. A subscriber that raises is logged; the jobs stand.
    """
    for path in getattr(settings, "TOWER_ON_JOBS_CREATED", ()) or ():
        try:
            import_string(path)(job_ids=job_ids)
        except Exception:
            logger.warning("%s failed for jobs %s", path, job_ids, exc_info=True)


def jobs_create(
    *,
    user: User | None,
    project: Project,
    template: WorkflowTemplate,
    mode: str = "draft",
    character: Character | None = None,
    version: CharacterVersion | None = None,
    variation: Variation | None = None,
    scene: Scene | None = None,
    prompt: str = "",
    negative: str = "",
    overrides: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    count: int | None = None,
    grid: dict[str, list[Any]] | None = None,
    init_image: ImageSource | None = None,
    images: Mapping[str, ImageSource] | None = None,
    phase: int | None = None,
    force_reason: str = "",
    extra_loras: list[dict[str, Any]] | None = None,
    kind: str | None = None,
    parent: Job | None = None,
) -> list[Job]:
    """Resolve the request into one job per seed × grid cell, queue them, and start them after commit.

    ``seeds`` (one job each) or ``count`` (jobs with drawn seeds), not both unless they agree.
    The template's graph keeps its own values except where the request overrides them or a
    binding follows the project's style. A graph that no known backend could run fails at once,
    naming the node and the value. Raises JobError (bad request) with nothing written.

    ``images`` fills the template's image parameters (``init_image=`` is ``images["init_image"]``);
    a character's job gets the character's (or its version's) primary reference in every one
    left empty, and a template input nothing fills is refused, naming it. ``phase`` defaults to
    the phase of the job's kind; a character's phase-2 or phase-3 work behind a closed gate of the
    phase before (``settings.TOWER_PHASE_CHECK``) is refused unless ``force_reason`` says why it
    runs anyway (recorded on the job).
    """
    if template.project_id not in (None, project.pk):
        raise JobError("that workflow template belongs to another project")
    images = dict(images or {})
    if init_image is not None:
        if "init_image" in images:
            raise JobError("give the init image once: init_image or images['init_image'], not both")
        images["init_image"] = init_image
    job_kind = kind or template.kind
    if phase is None:
        phase = PHASE_OF_KIND.get(job_kind, 1)
    if phase not in (1, 2, 3):
        raise JobError(f"phase must be 1, 2 or 3, not {phase!r}")
    if seeds is not None and (not isinstance(seeds, list) or not seeds):
        raise JobError("seeds must be a non-empty list of numbers")
    if seeds is not None and count is not None and count != len(seeds):
        raise JobError(
            f"give seeds (one job each) or count (jobs with drawn seeds), not both: "
            f"count {count} with {len(seeds)} seed(s)"
        )
    if count is None:
        count = 1
    if not 1 <= count <= MAX_JOBS_PER_REQUEST:
        raise JobError(f"count must be between 1 and {MAX_JOBS_PER_REQUEST}")
    cells = _grid_cells(grid)
    seed_list: list[int | None] = list(seeds) if seeds is not None else [None] * count
    if len(seed_list) * len(cells) > MAX_JOBS_PER_REQUEST:
        raise JobError(f"{len(seed_list) * len(cells)} jobs requested; at most {MAX_JOBS_PER_REQUEST} per request")
    try:
        # Every job of the request applies the same template: find its bound nodes once.
        targets = resolve_bindings(template.graph, template.bindings)
    except WorkflowError as exc:
        raise JobError(f"the template cannot take these parameters: {exc}") from None
    if len(seed_list) > 1 and "seed" not in targets:
        # ComfyUI would answer every copy of one graph from its cache: n "succeeded" jobs, one image.
        raise JobError(
            f"this template has no seed input, so {len(seed_list)} jobs would all be the same cached image: "
            "bind one (title the node that holds it 'seed' in ComfyUI before exporting, or add a 'seed' "
            "binding to the template) or ask for count 1"
        )
    overrides = dict(overrides or {})
    try:
        resolved = resolve_job_parameters(
            project=project,
            mode=mode,
            character=character,
            version=version,
            variation=variation,
            scene=scene,
            prompt=prompt,
            negative=negative,
            overrides=overrides,
            extra_loras=extra_loras,
            style_fields=style_parameters(template.bindings),
        )
    except ResolveError as exc:
        raise JobError(str(exc)) from None
    if version is not None and character is None:
        character = version.character
    if variation is not None and character is None:
        character = variation.character
    sources = _image_sources(
        template=template, targets=targets, images=images, overrides=overrides, character=character, version=version
    )
    forced = _phase_gate(project=project, character=character, phase=phase, force_reason=force_reason)
    inputs: list[dict[str, str]] = []
    base_params = resolved.as_workflow_params()
    for param, source in sources.items():
        name = upload_name(source)
        base_params[param] = name
        inputs.append({"parameter": param, "name": name, "path": source.path, "sha256": source.sha256})
    batch = uuid.uuid4() if len(seed_list) * len(cells) > 1 else None
    # What the graph itself holds for the inputs left alone, so a job records what it ran with.
    own = {
        k: v for k, v in graph_values(template.graph, targets).items() if resolved.parameters.get(k, 0) in (None, [])
    }
    pending: list[tuple[Job, list[str]]] = []
    for cell in cells:
        first: Job | None = None  # the cell's first job; the others are its copies
        for seed in seed_list:
            params = {**base_params, **cell}
            if seed is not None:
                params["seed"] = seed
            try:
                applied = apply(template.graph, template.bindings, params, resolved=targets)
            except WorkflowError as exc:
                raise JobError(f"the template cannot take these parameters: {exc}") from None
            stored = {**resolved.parameters, **own, **cell, "seed": applied.seed}
            if inputs:
                stored["inputs"] = inputs
                stored.update({item["parameter"]: item["name"] for item in inputs})
            if first is None:
                job = first = Job(
                    project=project,
                    character=character,
                    version=version,
                    variation=variation,
                    scene=scene,
                    template=template,
                    created_by_id=user.pk if user is not None else None,
                    kind=job_kind,
                    phase=phase,
                    mode=mode,
                    prompt=resolved.prompt,
                    negative_prompt=resolved.negative,
                    params=stored,
                    overrides={**resolved.overrides_applied, **cell},
                    graph=applied.graph,
                    seed=applied.seed,
                    batch=batch,
                    label=", ".join(f"{k}={v}" for k, v in cell.items()),
                    parent=parent,
                    forced_reason=force_reason if forced else "",
                )
                # Field checks only: the database enforces the constraints, and the related rows
                # are the objects in hand (checking each foreign key would read them again).
                job.full_clean(exclude=_NOT_CLEANED, validate_unique=False, validate_constraints=False)
            else:
                # A cell's jobs differ only in the seed (which apply() checked) and what the graph
                # and parameters derive from it: a copy of the first needs no checks of its own.
                job = copy.copy(first)
                job.params, job.graph, job.seed = stored, applied.graph, applied.seed
                job.overrides = dict(first.overrides)
            pending.append((job, applied.ignored))
    # Pre-flight before the transaction: a write transaction holds SQLite's one write lock, which
    # the engine's claims and completions wait for.
    infos = known_object_infos()
    problems = [graph_refusal(job.graph or {}, infos) for job, _ in pending]
    with transaction.atomic():
        created = [job for job, _ in pending]
        Job.objects.bulk_create(created)
        JobLogLine.objects.bulk_create(
            [
                JobLogLine(job=job, level=LogLevel.WARNING, message=f"the template does not use: {', '.join(ignored)}")
                for job, ignored in zip(created, (i for _, i in pending), strict=True)
                if ignored
            ]
        )
        if forced:
            JobLogLine.objects.bulk_create(
                [
                    JobLogLine(
                        job=job,
                        level=LogLevel.WARNING,
                        message=f"forced past a closed phase gate ({forced}): {force_reason}",
                    )
                    for job in created
                ]
            )
        failed_now = [(job.pk, problem) for job, problem in zip(created, problems, strict=True) if problem]
        for job in created:
            events.job_event("job_queued", job_id=job.pk, project_id=project.pk, user_id=user.pk if user else None)
        for job_id, refusal in failed_now:
            job_fail(
                job_id=job_id,
                error_type="preflight",
                message=f"pre-flight: {refusal.message}",
                node=refusal.node,
                details={"problems": refusal.problems},
                expect={JobStatus.QUEUED},
            )
        refused = {job_id for job_id, _ in failed_now}
        runnable = [j.pk for j in created if j.pk not in refused]
        transaction.on_commit(lambda: _enqueue(runnable))
        job_ids = [j.pk for j in created]
        transaction.on_commit(lambda: announce_jobs_created(job_ids))
    if refused:
        failed = {j.pk: j for j in Job.objects.filter(pk__in=refused)}
        created = [failed.get(j.pk, j) for j in created]
    return created


def job_copy(
    *,
    job: Job,
    user: User | None,
    graph: dict[str, Any] | None = None,
    seed: int | None = None,
    **links: Any,
) -> Job:
    """Queue a copy of ``job`` (the same request; optionally another graph and seed), after commit.

    ``links`` set the lineage: ``parent=`` for a retry or a regeneration, ``reproduce_of=``.
    """
    params = dict(job.params or {})
    if seed is not None:
        params["seed"] = seed
    clone = Job.objects.create(
        project_id=job.project_id,
        character_id=job.character_id,
        version_id=job.version_id,
        variation_id=job.variation_id,
        scene_id=job.scene_id,
        template_id=job.template_id,
        created_by_id=user.pk if user is not None else None,
        kind=job.kind,
        phase=job.phase,
        mode=job.mode,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        params=params,
        overrides=job.overrides,
        graph=job.graph if graph is None else graph,
        seed=job.seed if seed is None else seed,
        label=job.label,
        **links,
    )
    events.job_event("job_queued", job_id=clone.pk, project_id=clone.project_id, user_id=user.pk if user else None)
    transaction.on_commit(lambda: _enqueue([clone.pk]))
    return clone


@dataclass(frozen=True)
class RetryCheck:
    """Whether retrying a job could end differently, and a sentence saying why (for a page or API)."""

    possible: bool
    reason: str


def job_retry_check(*, job: Job) -> RetryCheck:
    """Whether :func:`job_retry` would run ``job`` again with a chance of another outcome.

    A retry runs the same graph and seed. A job refused by pre-flight is refused again until a
    backend changes (the model installed, a node pack added, another backend enabled): this
    checks the graph against the enabled backends' current ``/object_info``, as submitting does.
    """
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return RetryCheck(False, f"only failed or cancelled jobs can be retried; this one is {job.status}")
    if not job.graph:
        return RetryCheck(False, "this job has no graph to run again")
    if job.status == JobStatus.FAILED and job.error_type == "preflight":
        refusal = graph_refusal(job.graph, known_object_infos())
        if refusal is not None:
            return RetryCheck(
                False,
                "nothing has changed since it was refused: no enabled backend can run this graph "
                f"({refusal.message}); install what is missing on a backend, or change the request and generate again",
            )
        return RetryCheck(True, "a backend can run it now")
    return RetryCheck(True, "")


@transaction.atomic
def job_retry(*, job: Job, user: User | None) -> Job:
    """A new job with the same graph and seed, for a job that failed or was cancelled.

    Refused (JobError with the reason) when :func:`job_retry_check` says it would fail the same way.
    """
    check = job_retry_check(job=job)
    if not check.possible:
        raise JobError(check.reason)
    return job_copy(job=job, user=user, parent=job)


@transaction.atomic
def job_reproduce(*, job: Job, user: User | None) -> Job:
    """Run the exact stored graph and seed again; on completion the outputs' sha256 are compared."""
    if job.status != JobStatus.SUCCEEDED:
        raise JobError("only a succeeded job can be reproduced")
    if not job.graph:
        raise JobError("this job has no stored graph")
    return job_copy(job=job, user=user, reproduce_of=job)


@transaction.atomic
def job_cancel(*, job: Job, user: User | None) -> Job:
    """Queued: cancelled at once. On a backend: cancelled, then removed from its queue or interrupted."""
    # Re-read under the row lock: the engine may have moved it (submitted → running) meanwhile.
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SCORING):
        raise JobError(f"a {job.status} job cannot be cancelled")
    was_live = job.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
    moved = job_transition(job_id=job.pk, to=JobStatus.CANCELLED, expect={job.status}, worker="")
    if moved is None:  # pragma: no cover - the row lock makes this unreachable
        raise JobError("the job changed meanwhile; try again")
    who = getattr(user, "username", "someone")
    job_log(job_id=job.pk, message=f"cancelled by {who}")
    events.job_event("job_cancelled", job_id=job.pk, project_id=job.project_id, user_id=job.created_by_id)
    if was_live and moved.backend_id and moved.prompt_id:
        from generation.tasks import enqueue_abort

        transaction.on_commit(lambda: enqueue_abort(job.pk))
    return moved

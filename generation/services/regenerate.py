"""Regeneration: the same job again with a new seed, linked to the one it replaces.

Used by apps above generation (quality's post-generation gate) when an output falls short. The
stored parameters and prompts are applied to the template again, so the only difference from the
original graph is the seed (and what the template derives from it); the child's ``parent`` is the
job it replaces.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from generation.models import Job
from generation.services.jobs import JobError, job_log
from generation.workflow import PARAMETERS, WorkflowError, apply, draw_seed


@transaction.atomic
def job_regenerate(*, job: Job, seed: int | None = None, user: User | None = None, reason: str = "") -> Job:
    """Queue a copy of ``job`` with a new seed (drawn unless given; never the job's own seed).

    Raises :class:`JobError` when the job has no template any more or its template cannot take
    the stored parameters.
    """
    from generation.services.submit import job_copy

    if job.template is None:
        raise JobError("the job's workflow template was deleted; it cannot be regenerated")
    while seed is None or seed == job.seed:
        seed = draw_seed()
    params = {k: v for k, v in (job.params or {}).items() if k in PARAMETERS}
    params.update(prompt=job.prompt, negative=job.negative_prompt, seed=seed)
    try:
        applied = apply(job.template.graph, job.template.bindings, params)
    except WorkflowError as exc:
        raise JobError(f"the template cannot take this job's parameters: {exc}") from None
    child = job_copy(
        job=job,
        user=user if user is not None else job.created_by,
        graph=applied.graph,
        seed=applied.seed,
        parent=job,
    )
    job_log(
        job_id=job.pk, message=f"regenerated as job {child.pk} (seed {child.seed})" + (f": {reason}" if reason else "")
    )
    job_log(job_id=child.pk, message=f"regeneration of job {job.pk}" + (f": {reason}" if reason else ""))
    return child

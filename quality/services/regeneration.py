"""Bounded regeneration after a post-generation gate, and keeping the best attempt of a chain.

A failed gate queues the same job with a new seed (``generation.services.regenerate.job_regenerate``,
parent = the failed job) while the chain of regenerations from the original is shorter than
``project.max_regenerations``, except a job of an orchestration's phase (its attempts are
the regeneration). The gate's ``details["regenerated_as"]`` links the attempts. When a
chain ends (a pass, a not-evaluated attempt, or the limit), the best attempt (passing first, then
highest ``combined_score``: the mean over evaluated checks of value / threshold, 0 for unreadable
media) is kept: every gate of the chain records ``kept_job`` and the best one ``kept: true``.
"""

from __future__ import annotations

from generation.models import Job
from generation.services.jobs import JobError, job_log
from generation.services.regenerate import job_regenerate
from quality.models import GateStage, PhaseRun, QualityGate, Segment


def regeneration_chain(job: Job, gate: QualityGate | None = None) -> list[tuple[Job, QualityGate]]:
    """(job, gate) from the original attempt to ``job``, following ``regenerated_as`` links.

    ``gate``: the job's own post-generation gate when the caller holds it (it may not be saved yet).
    """
    chain: list[tuple[Job, QualityGate]] = []
    current: Job | None = job
    child_pk: int | None = None
    while current is not None:
        if current is job and gate is not None:
            found: QualityGate | None = gate
        else:
            found = (
                QualityGate.objects.filter(job=current, stage=GateStage.POST_GEN).order_by("created_at", "pk").first()
            )
        if found is None or (child_pk is not None and found.details.get("regenerated_as") != child_pk):
            break
        chain.append((current, found))
        child_pk = current.pk
        current = Job.objects.filter(pk=current.parent_id).first() if current.parent_id else None
    chain.reverse()
    return chain


def gate_conclude(*, job: Job, gate: QualityGate) -> None:
    """Regenerate after a failure, or end the chain keeping its best attempt: ``gate`` (the job's
    new post-generation gate, not saved yet) gets its final details here; the chain's earlier gates
    are saved. Call inside the transaction that saves ``gate``."""
    chain = regeneration_chain(job, gate)
    outcome = gate.details["outcome"]
    regenerations = len(chain) - 1
    limit = job.project.max_regenerations
    if outcome == "failed" and regenerations < limit and _in_orchestration(job):
        # An orchestration's attempts are its regeneration (quality.services.orchestration): a
        # second, automatic one here would run the phase twice and the orchestration would not see it.
        gate.details["regeneration"] = "left to its orchestration, whose attempts are the regeneration"
    elif outcome == "failed" and regenerations < limit:
        failing = ", ".join(sorted({c["metric"] for c in gate.details["checks"] if not c["passed"]}))
        try:
            # The batch loaded the job without the columns a copy needs.
            whole = Job.objects.select_related("project", "character__project", "template").get(pk=job.pk)
            child = job_regenerate(job=whole, reason=f"post-generation gate failed ({failing})")
        except JobError as exc:
            gate.details["regeneration"] = f"not possible: {exc}"
        else:
            gate.details.update(regenerated_as=child.pk, attempt=regenerations + 1, max_regenerations=limit)
            return
    elif outcome == "failed":
        gate.details["regeneration"] = f"limit reached ({limit} regenerations)"
    gate.details.update(attempt=regenerations + 1, max_regenerations=limit)
    _keep_best(chain, current=gate)


def _in_orchestration(job: Job) -> bool:
    """A phase run's or a scene segment's attempt: their engines regenerate (with their own inputs)."""
    return PhaseRun.objects.filter(jobs=job.pk).exists() or Segment.objects.filter(jobs=job.pk).exists()


def _keep_best(chain: list[tuple[Job, QualityGate]], *, current: QualityGate) -> None:
    def rank(item: tuple[Job, QualityGate]) -> tuple[bool, float]:
        details = item[1].details
        return (details["outcome"] == "passed", details.get("combined_score") or 0.0)

    best_job, _ = max(chain, key=rank)
    for attempt, gate in chain:
        gate.details.update(kept_job=best_job.pk, kept=attempt.pk == best_job.pk)
        if gate is not current:
            gate.save(update_fields=["details"])
    if len(chain) > 1:
        job_log(job_id=best_job.pk, message=f"kept as the best of {len(chain)} attempts")

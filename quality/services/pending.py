"""Scoring announced jobs in batches: one pending ``score_pending`` task for a burst of successes.

Generation calls ``quality.tasks.job_succeeded(job_id)`` in the engine's process after each
success commits. A task per job cost a pusher, a worker and Redis round trips per job, so the
announcement only makes sure that *one* run is pending, with a flag in Redis
(``<REDIS_PREFIX>:quality:score-pending``):

- announce (:func:`score_pending_request`): ``SET flag NX EX ttl``; if this set it, enqueue
  ``quality.tasks.score_pending``; if it was set already, do nothing: a run is pending.
- run (:func:`score_pending_run`): wait until no success has been announced for a moment (each
  announcement notes its time in the same round trip as its ``SET``), clear the flag, then score
  every succeeded job that has outputs and no post-generation gate, oldest first, at most
  :data:`PENDING_LIMIT`; when more remain, request another run as an announcement would.

Why no announced job is left unscored. A job is announced after its success committed. If its
``SET`` finds the flag set, the run that set it has not cleared it yet (a run clears it before it
reads anything), so that run's query starts after the job committed and sees it. If its ``SET`` sets
the flag, it enqueues a run of its own, whose query also starts later. So a job committed before a
run clears the flag is seen by the query that follows; one committed after sets the flag again
(nothing else clears it) and enqueues a new run. Extra runs are harmless: scoring is idempotent,
and a run that finds nothing does nothing.

Skipped announcements. An engine process announces at most one success per
:data:`ANNOUNCE_INTERVAL` (a quarter of a second): a success within that window of the process's
previous announcement sends nothing, as that announcement covers it. A run clears the flag only
once no success has been announced for ``GATHER_SECONDS`` (more than the window), checked in the
same atomic step as the clear (a script; an announcement writes its time before its ``SET NX``),
so every job a skipped announcement stood for has committed before the run's query starts. A run
that clears at its limit (``GATHER_MAX_SECONDS``, an endless burst) does not wait for that, and so
requests another run, which does. Runs that do not wait (``GATHER_SECONDS`` below the window)
turn the skipping off. The times compared are each process's ``time.time()``: engine hosts whose
clocks differ by more than ``GATHER_SECONDS`` minus the window could have a skipped job missed by
a run; the next run, or ``score_missing``, scores it then.

Runs at the same time (a job announced while a run is scoring has a run of its own, which another
worker may start at once) do not score the same jobs twice: a run claims the jobs it found in a
sorted set (``<REDIS_PREFIX>:quality:scoring``, job id → when), leaves out those another run has
claimed, and releases its claims when they are scored. A job seen by a run but claimed by another
is scored by that other run, which saw it too.

When things go wrong:

- the flag carries a TTL (:data:`PENDING_TTL`), so a run that never starts (its worker was killed,
  the queue was lost) holds scoring back for at most that long: the next announcement after it
  expires enqueues a run, whose query also takes the jobs announced meanwhile;
- an enqueue that fails after the ``SET`` deletes the flag again (or the TTL does);
- Redis unreachable at announcement: ``job_succeeded`` logs a warning and returns, never raising
  into the engine; ``quality.tasks.score_missing`` (reconcile, every minute) catches up. A run
  that cannot reach Redis scores what it finds without claims;
- a job whose scoring raises is logged, the others are still scored, and its claim is kept for
  :data:`CLAIM_TTL`: runs leave it alone for that long (a job that always fails cannot keep runs
  busy, or requesting runs, forever), while ``score_missing`` retries it alone. A run that dies
  leaves its claims to expire the same way.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from quality.metrics import MetricModels
from quality.services.catch_up import jobs_missing_scores
from quality.services.scoring import jobs_score

logger = logging.getLogger(__name__)

PENDING_TTL = 60  # seconds the flag outlives a run that never started
# A run waits, before it clears the flag, until no job has succeeded for GATHER_SECONDS (and at
# most GATHER_MAX_SECONDS): successes announced meanwhile join its batch instead of starting runs
# of their own (a run costs the same for one job as for twenty), and a burst of generation does
# not share the CPU with the scoring of its first jobs. The worker sleeps, it does not spin; gates
# appear that much later. bench/engine.py (zero compute, 2 cores): scoring was an eighth of the
# CPU a job cost while the burst ran.
GATHER_SECONDS = 1.0
GATHER_MAX_SECONDS = 10.0
# A success announced within this long of the process's previous announcement sends nothing: a
# run waits for GATHER_SECONDS without announcements before it reads what to score, so the jobs
# the skipped ones announce are committed by then (see the module docstring). bench/engine.py:
# the announcement's round trip was a tenth of the completion's database-thread time per job.
ANNOUNCE_INTERVAL = 0.25
_announced: dict[str, float] = {}  # the flag's key → time.monotonic() of this process's last announcement
PENDING_LIMIT = 100  # jobs one run scores
CLAIM_TTL = 600  # seconds a claim holds: longer than a run, and how long a failed job is left alone
BROKER_ERRORS = (RedisError, OSError)  # what an unreachable broker raises (redis-py, sockets)


def pending_key() -> str:
    return f"{settings.REDIS_PREFIX}:quality:score-pending"


def claims_key() -> str:
    return f"{settings.REDIS_PREFIX}:quality:scoring"


def last_success_key() -> str:
    return f"{settings.REDIS_PREFIX}:quality:last-success"


def score_pending_request(*, redis: Any, enqueue: Callable[[], None], success: bool = False) -> bool:
    """Make sure a run is pending: enqueue one unless one is already; True when this call did.

    ``success``: the call announces a job that has just succeeded (its time is noted, in the same
    round trip, for runs that wait for a quiet moment); one within :data:`ANNOUNCE_INTERVAL` of
    this process's previous announcement is covered by it and sends nothing (see the module
    docstring). ``redis``: a redis-py client (the broker's connection). Raises
    :data:`BROKER_ERRORS` when Redis or the queue cannot be reached.
    """
    key = pending_key()
    if success:
        now = time.monotonic()
        last = _announced.get(key)
        if throttled() and last is not None and 0 <= now - last < ANNOUNCE_INTERVAL:
            return False
        with redis.pipeline(transaction=False) as pipe:
            # The time before the flag: a run clears the flag only if, in the same atomic step,
            # the last announcement is old enough (_clear_when_quiet).
            pipe.set(last_success_key(), repr(time.time()), ex=PENDING_TTL)
            pipe.set(key, "1", nx=True, ex=PENDING_TTL)
            _, created = pipe.execute()
    else:
        created = redis.set(key, "1", nx=True, ex=PENDING_TTL)
    if created:
        try:
            enqueue()
        except BaseException:
            # No run is pending after all: let the next announcement enqueue one (or the TTL).
            with contextlib.suppress(*BROKER_ERRORS):
                redis.delete(key)
            raise
    if success:
        _announced[key] = now
    return bool(created)


def throttled() -> bool:
    """Whether announcements may be skipped: only while runs wait for quiet longer than the
    window a skipped announcement relies on."""
    return 0 < ANNOUNCE_INTERVAL < GATHER_SECONDS


@dataclass
class PendingRun:
    """What one run did: job ids scored (or found scored), whose scoring raised, and whether
    another run was requested for the rest."""

    scored: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    more: bool = False


def score_pending_run(
    *,
    redis: Any,
    enqueue: Callable[[], None],
    limit: int | None = None,
    models: MetricModels | None = None,
    gather: float = 0.0,
    gather_max: float | None = None,
) -> PendingRun:
    """Once no job has succeeded for ``gather`` seconds (or after ``gather_max``), clear the flag,
    then score what is pending and not claimed by another run, at most ``limit``
    (:data:`PENDING_LIMIT`) jobs (see the module docstring)."""
    limit = limit or PENDING_LIMIT
    claimed, forced = _gather_and_clear(redis, gather, GATHER_MAX_SECONDS if gather_max is None else gather_max)
    ids = jobs_missing_scores(limit=limit + 1, grace=None, exclude=claimed or ())
    mine = ids[:limit] if claimed is None else _claim(redis, ids[:limit])
    batch = jobs_score(job_ids=mine, models=models)
    run = PendingRun(scored=[pk for pk in mine if batch.gates.get(pk) is not None], failed=list(batch.failed))
    for job_id, exc in batch.failed.items():
        logger.error("scoring job %s failed; score_missing will retry it", job_id, exc_info=exc)
    if claimed is not None:
        _release(redis, [pk for pk in mine if pk not in batch.failed])
    # Cleared at the limit during a burst: announcements skipped just before the clear (their jobs
    # may have committed after this run's query) get a run of their own.
    if len(ids) > limit or (forced and throttled()):
        run.more = True
        try:
            score_pending_request(redis=redis, enqueue=enqueue)
        except BROKER_ERRORS as exc:
            logger.warning("could not request another scoring run (%s); score_missing will catch up", exc)
    return run


def _gather_and_clear(redis: Any, quiet: float, longest: float) -> tuple[list[int] | None, bool]:
    """Wait until no success has been announced for ``quiet`` seconds (at most ``longest`` in
    all), then clear the flag; returns (the other runs' claims, whether the limit forced the clear).

    The check and the clear are one atomic step (an announcement landing between them would
    otherwise be taken for covered by this run). Claims are None when Redis cannot be reached:
    the run goes on without them, and the flag expires.
    """
    deadline = time.monotonic() + max(longest, quiet)
    if quiet > 0:
        time.sleep(quiet)
    while True:
        left = deadline - time.monotonic()
        forced = quiet > 0 and left <= 0
        try:
            cleared, value = _clear_when_quiet(redis, 0.0 if forced else quiet)
        except BROKER_ERRORS as exc:
            logger.warning("could not clear the pending-scoring flag (%s); it expires within %d s", exc, PENDING_TTL)
            return None, False
        if cleared:
            return [int(member) for member in value], forced
        since = time.time() - float(value)
        time.sleep(max(0.0, min(quiet - since, left)))


# KEYS: flag, last success, claims. ARGV: now, quiet seconds, claims older than this expire.
_CLEAR_WHEN_QUIET = """
local last = redis.call('GET', KEYS[2])
if last and tonumber(ARGV[2]) > 0 and tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[2]) then
    return {0, last}
end
redis.call('DEL', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
return {1, redis.call('ZRANGE', KEYS[3], 0, -1)}
"""


def _clear_when_quiet(redis: Any, quiet: float) -> tuple[bool, Any]:
    """(True, claims) after clearing the flag; (False, the last success's time) when one was
    announced less than ``quiet`` seconds ago (nothing changed)."""
    now = time.time()
    keys = (pending_key(), last_success_key(), claims_key())
    cleared, value = redis.eval(_CLEAR_WHEN_QUIET, len(keys), *keys, repr(now), repr(quiet), repr(now - CLAIM_TTL))
    return bool(cleared), value


def _claim(redis: Any, ids: Sequence[int]) -> list[int]:
    """The ids this run claimed (``ZADD NX``): those no other run claimed since it read the claims."""
    if not ids:
        return []
    now = time.time()
    try:
        with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.zadd(claims_key(), {str(job_id): now}, nx=True)
            added = pipe.execute()
    except BROKER_ERRORS as exc:
        logger.warning("could not claim jobs to score (%s); scoring them unclaimed", exc)
        return list(ids)
    return [job_id for job_id, new in zip(ids, added, strict=True) if new]


def _release(redis: Any, ids: Sequence[int]) -> None:
    if ids:
        try:
            redis.zrem(claims_key(), *map(str, ids))
        except BROKER_ERRORS as exc:  # they expire after CLAIM_TTL; scored jobs are not found again anyway
            logger.warning("could not release scoring claims (%s)", exc)

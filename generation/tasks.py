"""django-q2 tasks: thin, idempotent, ids in, one service or engine call each."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task as _async_task

from generation.engine.driver import StoreThread, comfy_client, drive
from generation.engine.identity import owner_is_dead, worker_name
from generation.engine.session import Session
from generation.models import Job
from generation.services.claims import Claim, job_claim, job_claim_live, job_claim_next, new_client_id
from generation.services.reconcile import dispatch, reconcile

logger = logging.getLogger(__name__)

SESSION_SECONDS = 60.0  # how long a worker task keeps claiming more jobs


@functools.cache
def _broker() -> Broker:
    # django-q2 opens a new Redis connection for every async_task() without one; the engine
    # enqueues after every job, so reuse one per process (redis-py reconnects after a fork).
    return get_broker()


def async_task(func: str, *args: Any, **kwargs: Any) -> Any:
    return _async_task(func, *args, broker=_broker(), **kwargs)


def enqueue_run(job_id: int) -> None:
    async_task("generation.tasks.job_run", job_id, task_name=f"job-{job_id}", group="jobs")


def enqueue_adopt(job_id: int) -> None:
    async_task("generation.tasks.job_adopt", job_id, task_name=f"adopt-{job_id}", group="jobs")


def job_run(job_id: int) -> str:
    """Claim a queued job and drive it; a job already taken (re-delivered task) is left alone.

    While it has room, the task also claims and drives further queued jobs (a session, see
    generation/engine/session.py); it returns the outcome of the first job it drives.
    """
    worker = worker_name()
    client_id = new_client_id()
    claim = job_claim(job_id=job_id, worker=worker, client_id=client_id)
    if claim is None:
        # Taken by another worker's session (on this machine or another): join in with the next
        # queued job rather than idle until the next dispatch (a second machine otherwise did none).
        claim = job_claim_next(worker=worker, client_id=client_id)
    if claim is None:
        return "not claimed"
    try:
        if settings.TOWER_ENGINE_SESSION_JOBS <= 1:
            return asyncio.run(drive(claim, worker=worker))
        return asyncio.run(_session(claim, worker=worker, client_id=client_id))
    finally:
        dispatch(enqueue=enqueue_run, limit=1)


async def _session(first: Claim, *, worker: str, client_id: str) -> str:
    claim_next = sync_to_async(job_claim_next, thread_sensitive=True)

    async def next_claim(client_id: str, ended: frozenset[int]) -> Claim | None:
        return await claim_next(worker=worker, client_id=client_id, ended=ended)

    store = StoreThread.for_process()
    await store.ready()

    async def drive_one(claim: Claim, connection: Any, on_ended: Callable[[], None]) -> str:
        return await drive(claim, worker=worker, connection=connection, on_ended=on_ended, store=store)

    session = Session(
        connect=lambda url, cid: comfy_client(url, client_id=cid),
        claim_next=next_claim,
        drive=drive_one,
        concurrency=settings.TOWER_ENGINE_SESSION_CONCURRENCY,
        max_jobs=settings.TOWER_ENGINE_SESSION_JOBS,
        # Stop taking work after a minute (so scoring, ingest and other tasks queued meanwhile get a
        # worker between sessions) and well before django-q's timeout would kill the task mid-job.
        max_seconds=min(SESSION_SECONDS, cast(int, settings.Q_CLUSTER["timeout"]) / 4),
        client_id=client_id,
    )
    outcomes = await session.run(first)
    if len(outcomes) > 1:
        logger.info("session %s drove %d jobs", client_id, len(outcomes))
    return outcomes[first.job_id]


def job_adopt(job_id: int) -> str:
    """Follow (or collect, or resubmit) a live job whose worker died, without submitting twice."""
    worker = worker_name()
    job = Job.objects.filter(pk=job_id).values("worker", "heartbeat_at").first()
    if job is None:
        return "gone"
    stale_before: datetime | None = timezone.now() - timedelta(seconds=settings.TOWER_HEARTBEAT_STALE_SECONDS)
    if job["worker"] and owner_is_dead(job["worker"]):
        stale_before = None  # the owner is provably gone; no need to wait for its heartbeat to age
    claim = job_claim_live(job_id=job_id, worker=worker, stale_before=stale_before)
    if claim is None:
        return "not adopted"
    try:
        return asyncio.run(drive(claim, worker=worker))
    finally:
        dispatch(enqueue=enqueue_run, limit=1)


def reconcile_all() -> dict[str, Any]:
    report = reconcile(enqueue_run=enqueue_run, enqueue_adopt=enqueue_adopt)
    return report.__dict__


def enqueue_abort(job_id: int) -> None:
    async_task("generation.tasks.job_abort", job_id, task_name=f"abort-{job_id}", group="jobs")


def job_abort(job_id: int) -> str:
    """Take a cancelled job's prompt off its backend: out of the queue, or interrupted if running."""
    from generation.engine.abort import abort_prompt

    return asyncio.run(abort_prompt(job_id))


def enqueue_reconcile() -> None:
    async_task("generation.tasks.reconcile_all", task_name="reconcile", group="engine")

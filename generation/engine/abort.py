"""Removing a cancelled job's prompt from its backend."""

from __future__ import annotations

from asgiref.sync import sync_to_async

from generation.comfyui.errors import ComfyError
from generation.engine.driver import comfy_client
from generation.models import Job, JobStatus
from generation.services.jobs import job_log


def _load(job_id: int) -> tuple[str, str, str] | None:
    row = (
        Job.objects.filter(pk=job_id, status=JobStatus.CANCELLED, backend__isnull=False)
        .values_list("backend__url", "backend__name", "prompt_id")
        .first()
    )
    return row if row and row[2] else None


async def abort_prompt(job_id: int) -> str:
    row = await sync_to_async(_load)(job_id)
    if row is None:
        return "nothing to abort"
    url, name, prompt_id = row
    log = sync_to_async(job_log)
    try:
        async with comfy_client(url) as comfy:
            queue = await comfy.queue()
            if prompt_id in queue.pending:
                await comfy.delete_from_queue([prompt_id])
                await log(job_id=job_id, message=f"removed from {name}'s queue")
                return "removed"
            if prompt_id in queue.running:
                await comfy.interrupt(prompt_id)
                await log(job_id=job_id, message=f"interrupted on {name}")
                return "interrupted"
    except ComfyError as exc:
        await log(job_id=job_id, message=f"could not reach {name} to stop the prompt: {exc}", level="warning")
        return "unreachable"
    return "already finished"

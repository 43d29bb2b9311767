"""Submitting a claimed job with the input files its graph loads, uploaded to the backend first."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.core.files.storage import default_storage

from generation.comfyui import ComfyClient
from generation.comfyui.errors import ComfyRejected
from generation.services.claims import Claim
from generation.services.inputs import (
    backend_uploads_forget,
    backend_uploads_present,
    backend_uploads_record,
    missing_uploads,
)
from generation.services.jobs import job_log


class InputMissing(Exception):
    """A job's input file is no longer in Tower's storage (its reference or output was deleted)."""


def _db(fn: Any) -> Any:
    return sync_to_async(fn, thread_sensitive=True)


async def submit_with_inputs(comfy: ComfyClient, claim: Claim, prompt_id: str) -> Any:
    """Upload the job's input files the backend lacks, then submit.

    A backend keeps uploaded files in its input folder, so each content-addressed name is uploaded
    once per backend (``BackendUpload``). If the server refuses the prompt because such a file is
    gone (its input folder was cleared), the record is dropped, the file uploaded again and the
    prompt sent once more.
    """
    await _upload_inputs(comfy, claim)
    try:
        return await comfy.submit(claim.graph, prompt_id=prompt_id, extra_data=_extra_data(claim))
    except ComfyRejected as exc:
        gone = missing_uploads(claim.inputs, exc.node_errors)
        if not gone:
            raise
        await _db(backend_uploads_forget)(backend_id=claim.backend_id, names=gone)
        await _db(job_log)(
            job_id=claim.job_id,
            message=f"{claim.backend_name} no longer had {', '.join(gone)}; uploading again",
            level="warning",
        )
    await _upload_inputs(comfy, claim)
    try:
        return await comfy.submit(claim.graph, prompt_id=prompt_id, extra_data=_extra_data(claim))
    except ComfyRejected as exc:
        # Still refused: whatever the server did with the file, do not trust the record.
        if gone := missing_uploads(claim.inputs, exc.node_errors):
            await _db(backend_uploads_forget)(backend_id=claim.backend_id, names=gone)
        raise


async def _upload_inputs(comfy: ComfyClient, claim: Claim) -> None:
    if not claim.inputs:
        return
    items = {item["name"]: item for item in claim.inputs}  # two parameters may take one file
    there = await _db(backend_uploads_present)(backend_id=claim.backend_id, names=list(items))
    done: list[tuple[str, str]] = []
    for name, item in items.items():
        if name in there:
            continue
        try:
            data = await asyncio.to_thread(_read_media, item["path"])
        except OSError:
            raise InputMissing(
                f"the file for {item.get('parameter') or 'an image input'} ({item['path']}) is no longer in "
                "Tower's storage; choose another image and generate again"
            ) from None
        await comfy.upload_image(data, name, overwrite=True)
        done.append((name, item.get("sha256", "")))
    if done:
        await _db(backend_uploads_record)(backend_id=claim.backend_id, uploads=done)


def _read_media(path: str) -> bytes:
    with default_storage.open(path, "rb") as handle:
        data: bytes = handle.read()
    return data


def _extra_data(claim: Claim) -> dict[str, Any]:
    return {"tower": {"job": claim.job_id}}

"""A FramePack segment job on a server without the node pack fails at once, naming the pack and the
model files; the backend chooser says which pack a backend lacks."""

from __future__ import annotations

import pytest

from generation.models import JobStatus
from generation.pool import BackendState, choose_backend
from generation.services.inputs import ImageSource
from generation.services.submit import jobs_create
from tests.generation.engine_helpers import backend_for, shipped

FIRST_FRAME = ImageSource(path="inputs/first.png", sha256="0" * 64, extension="png")


@pytest.mark.django_db
def test_a_framepack_job_on_a_server_without_the_pack_names_it_and_the_files(fake, project, owner, enqueued):
    backend_for(fake)
    [job] = jobs_create(user=owner, project=project, template=shipped("framepack-segment"), init_image=FIRST_FRAME)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_type == "preflight"
    assert "no node class 'LoadFramePackModel'; it comes from the custom node pack ComfyUI-FramePackWrapper" in (
        job.error_message
    )
    assert "CLIP model 'clip_l.safetensors' is not on this backend" in job.error_message
    assert "sigclip_vision_patch14_384.safetensors" in job.error_message
    assert enqueued.ids == []


def test_the_chooser_names_the_pack_a_backend_lacks():
    state = BackendState(
        id=1,
        name="gpu-1",
        enabled=True,
        healthy=True,
        in_flight=0,
        max_in_flight=1,
        vram_used_fraction=None,
        vram_hold=0.9,
        node_classes=frozenset({"LoadImage", "SaveVideo"}),
    )
    choice = choose_backend([state], required_nodes=["FramePackSampler", "LoadImage", "ADE_AnimateDiffLoaderGen1"])
    assert choice.backend_id is None
    assert "FramePackSampler (node pack ComfyUI-FramePackWrapper)" in choice.reason
    assert "ADE_AnimateDiffLoaderGen1 (node pack ComfyUI-AnimateDiff-Evolved)" in choice.reason

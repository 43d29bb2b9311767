"""The whole pipeline on the fake ComfyUI: sheet → loop → video (issue 18's acceptance for item 5)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation import tasks
from generation.models import Asset, Job, JobStatus
from generation.services.inputs import image_source_from, upload_name
from generation.services.reconcile import reconcile
from quality.metrics.frames import load_frames
from quality.metrics.handoff import best_frame_index, sheet_panels
from quality.models import Orchestration, QualityGate
from quality.services.orchestration import orchestration_advance
from quality.services.scoring import job_score
from tests.quality.orchestration_helpers import character_with_reference, drive, flow_project, run_of, start
from tests.quality.scoring_helpers import listen, wait_for_event


@pytest.fixture
def project(owner):
    return flow_project(owner)


@pytest.fixture
def character(project):
    return character_with_reference(project)


pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


def loaded_images(fake, job: Job) -> list[str]:
    """The file names the graph ComfyUI received for ``job`` loads with LoadImage."""
    graph = fake.history[job.prompt_id]["prompt"][2]
    return [node["inputs"]["image"] for node in graph.values() if node["class_type"] == "LoadImage"]


def test_auto_advance_runs_sheet_loop_and_video_to_complete(fake, engine, project, character, owner, channel_layer):
    channel = listen(channel_layer, f"project.{project.pk}")

    orchestration = drive(start(project, character, owner), engine)

    assert orchestration.status == "complete", orchestration.reasons
    done = wait_for_event(channel_layer, channel, "orchestration_complete")
    assert (done["orchestration"], done["phase"], done["status"]) == (orchestration.pk, 3, "complete")
    sheet, loop, video = (run_of(orchestration, p) for p in (1, 2, 3))
    assert [r.status for r in (sheet, loop, video)] == ["passed", "passed", "passed"]
    assert [r.attempts for r in (sheet, loop, video)] == [1, 1, 1]
    best = {r.phase: Asset.objects.get(pk=r.best_asset_id) for r in (sheet, loop, video)}
    assert (best[1].width, best[1].height) == (1024, 1024)
    # An animated WebP keeps whole milliseconds a frame (41 ms, as ComfyUI writes 24 fps): read as 24.
    assert (best[2].frames, best[2].fps) == (48, 24)
    assert (best[3].frames, best[3].fps) == (120, 24)
    for run in (sheet, loop, video):
        [job] = run.jobs.all()
        assert job.phase == run.phase and job.status == JobStatus.SUCCEEDED and not job.forced_reason
        final = QualityGate.objects.get(job=job, stage="final")
        assert final.details["asset_id"] == run.best_asset_id
        assert run.gate["not_evaluated"] is True  # no weights here: passed because the project allows it
        assert "passed as not evaluated" in run.gate["reasons"][0]
    # Each phase starts from the one before: the loop from the sheet's best pose, the video from the
    # loop's best frame, each cut out as an input image of the project (the asset kept as provenance).
    assert (loop.input_asset_id, video.input_asset_id) == (sheet.best_asset_id, loop.best_asset_id)
    # No face is scored without weights: the first pose (the front view) is handed on.
    assert (loop.handoff["panel"], loop.handoff["asset"], loop.handoff["layout"]) == (0, sheet.best_asset_id, [4, 2])
    [loop_job] = loop.jobs.all()
    pose = upload_name(image_source_from(loop.input_image))
    assert loaded_images(fake, loop_job) == [pose]
    received = np.asarray(Image.open(fake.input_dir / pose).convert("RGB"))
    sheet_image = load_frames(best[1].file.path)[0]
    assert received.shape == (512, 256, 3)
    assert np.array_equal(received, sheet_panels(sheet_image, 4, 2)[loop.handoff["panel"]])
    loop_frames = load_frames(best[2].file.path)
    chosen = best_frame_index(loop_frames)
    assert (video.handoff["frame"], video.handoff["frames"]) == (chosen, 48)
    [video_job] = video.jobs.all()
    handed = upload_name(image_source_from(video.input_image))
    assert handed in {item["name"] for item in video_job.params["inputs"]}
    assert loaded_images(fake, video_job) == [handed]
    assert np.array_equal(np.asarray(Image.open(fake.input_dir / handed).convert("RGB")), loop_frames[chosen])
    # The video's first frame is the chosen loop frame, as far as the lossy WebP encoding keeps it
    # (a mean difference of about 4 of 255 here; how far the loop's other frames are depends on
    # the seed, so the file the video loaded is what shows which frame it was, above).
    first = load_frames(best[3].file.path, max_frames=120)[0].astype(float)
    assert np.abs(first - loop_frames[chosen].astype(float)).mean() < 6
    # The orchestration's attempts are its regeneration: scoring made no children of its own.
    assert not Job.objects.filter(parent__in=[j.pk for r in (sheet, loop, video) for j in r.jobs.all()]).exists()


def test_without_auto_advance_it_waits_after_phase_one_until_advanced(fake, engine, project, character, owner):
    orchestration = drive(start(project, character, owner, auto_advance=False), engine)

    assert (orchestration.status, orchestration.phase) == ("waiting", 2)
    assert run_of(orchestration, 1).status == "passed"
    waiting = run_of(orchestration, 2)
    assert waiting.status == "awaiting_approval" and waiting.input_asset_id == run_of(orchestration, 1).best_asset_id
    assert not waiting.jobs.exists()  # nothing runs before a person approves

    orchestration_advance(orchestration=orchestration, user=owner)
    orchestration = drive(orchestration, engine, until={"waiting"})

    assert (orchestration.status, orchestration.phase) == ("waiting", 3)
    assert run_of(orchestration, 2).status == "passed"
    orchestration_advance(orchestration=orchestration, user=owner)
    assert drive(orchestration, engine).status == "complete"


def test_a_killed_worker_does_not_lose_the_orchestration(fake, engine, project, character, owner, settings):
    orchestration = start(project, character, owner)
    runs, _ = engine
    [first] = run_of(orchestration, 1).jobs.all()
    assert tasks.job_run(first.pk) == "succeeded"
    # Scored, and the worker is killed before it steps the orchestration (tasks queued in the
    # broker survive it; what it held in memory does not).
    job_score(job_id=first.pk)
    assert Orchestration.objects.get(pk=orchestration.pk).phase == 1

    # A new worker starts: reconcile finds phase 1 without a live job and concludes it.
    report = reconcile(enqueue_run=runs, enqueue_adopt=lambda job_id: None)

    assert "quality.tasks.orchestrations_reconcile" in report.hooks
    orchestration.refresh_from_db()
    assert orchestration.phase == 2 and run_of(orchestration, 1).status == "passed"
    assert run_of(orchestration, 2).jobs.count() == 1
    assert drive(orchestration, engine).status == "complete"

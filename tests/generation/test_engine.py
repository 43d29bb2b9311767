"""The engine end to end against the fake ComfyUI on a real port."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generation import tasks
from generation.media import png_text_chunks
from generation.models import Asset, Backend, Job, JobStatus
from generation.services.submit import job_cancel, job_reproduce, job_retry, jobs_create
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, job, run_in_thread, shipped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

SMALL = {"width": 64, "height": 64}


@pytest.fixture(autouse=True)
def one_job_per_task(settings):
    # These tests follow one job per task; a task taking on more queued jobs is test_sessions.py's.
    settings.TOWER_ENGINE_SESSION_JOBS = 1


@pytest.fixture
def project(owner):
    return make_project(owner)


def create(project, owner, slug="weightless-image", **kw):
    overrides = {**SMALL, **kw.pop("overrides", {})}
    return jobs_create(user=owner, project=project, template=shipped(slug), overrides=overrides, **kw)


def test_success_with_several_outputs_stores_assets_with_metadata(fake, project, owner, enqueued):
    backend_for(fake)
    [created] = create(project, owner, overrides={"batch_size": 3}, prompt="silver hair")
    assert enqueued.take() == [created.pk]
    assert tasks.job_run(created.pk) == "succeeded"
    done = job(created.pk)
    assert done.status == JobStatus.SUCCEEDED
    assert done.progress == 1.0
    assert done.attempts == 1
    assert done.started_at and done.finished_at >= done.started_at
    assets = list(Asset.objects.filter(job=done).order_by("pk"))
    assert len(assets) == 3
    for asset in assets:
        data = asset.file.read()
        assert asset.sha256 and asset.size_bytes == len(data)
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (64, 64)
        chunks = png_text_chunks(data)
        # Dropped back into ComfyUI, the file restores the exact graph that was submitted.
        import json

        assert json.loads(chunks["prompt"]) == done.graph
        assert json.loads(chunks["tower"])["seed"] == done.seed
        assert json.loads(chunks["tower"])["template"] == "weightless-image"
        assert json.loads(chunks["tower"])["prompt"] == done.prompt
    messages = list(done.log_lines.values_list("message", flat=True))
    assert any(m.startswith("sent to gpu-1") for m in messages)
    # The socket saw the whole prompt, so its `executed` messages named the files: no /history.
    assert fake.counters.requests["GET /history/{prompt_id}"] == 0
    assert fake.counters.requests["GET /view"] == 3


def _another_writer_gets_in() -> bool | None:
    """On SQLite, whether another connection can take the database's write lock right now."""
    import sqlite3

    from django.db import connection

    if connection.vendor != "sqlite":
        return None
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # database is locked
        return False
    finally:
        other.close()


def test_output_files_are_written_before_the_write_transaction_begins(fake, project, owner, enqueued, monkeypatch):
    """Writing the files is the longest part of storing a job. It happens before the transaction
    that inserts their rows, so other workers' claims do not wait for it (on SQLite, a write
    transaction locks the whole database from its start)."""
    from django.core.files.storage import FileSystemStorage
    from django.db import connection

    real_save, seen = FileSystemStorage._save, []

    def save(self, name, content):
        if name.startswith("assets/"):
            seen.append((connection.in_atomic_block, _another_writer_gets_in()))
        return real_save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", save)
    backend_for(fake)
    [created] = create(project, owner, overrides={"batch_size": 2})
    assert tasks.job_run(created.pk) == "succeeded"
    assert Asset.objects.filter(job=created).count() == 2
    sqlite = connection.vendor == "sqlite"
    assert seen == [(False, True if sqlite else None)] * 2


def test_identical_graph_runs_from_cache_and_still_yields_outputs(fake, project, owner, enqueued):
    backend_for(fake)
    [first] = create(project, owner, seeds=[7])
    assert tasks.job_run(first.pk) == "succeeded"
    executed_before = sum(fake.counters.node_runs.values())
    [second] = create(project, owner, seeds=[7])
    assert tasks.job_run(second.pk) == "succeeded"
    # Every node came from ComfyUI's cache: nothing ran again, and the files are the same (named
    # by the `executed` messages ComfyUI sends for cached nodes too).
    assert sum(fake.counters.node_runs.values()) == executed_before
    assert fake.counters.requests["GET /history/{prompt_id}"] == 0
    sha = lambda pk: sorted(Asset.objects.filter(job_id=pk).values_list("sha256", flat=True))  # noqa: E731
    assert sha(first.pk) == sha(second.pk)


def test_reproduce_really_reruns_and_reports_identical_outputs(fake, project, owner, enqueued):
    backend_for(fake)
    [original] = create(project, owner, seeds=[11])
    tasks.job_run(original.pk)
    runs = sum(fake.counters.node_runs.values())
    copy = job_reproduce(job=job(original.pk), user=owner)
    assert tasks.job_run(copy.pk) == "succeeded"
    assert sum(fake.counters.node_runs.values()) > runs  # the cache was freed first
    assert job(copy.pk).seed == 11
    assert "identical outputs (sha256 equal)" in " ".join(job(copy.pk).log_lines.values_list("message", flat=True))


def test_validation_error_from_the_server_is_shown_in_words(fake, project, owner, enqueued):
    backend = backend_for(fake)
    # Without the object_info cache, pre-flight cannot catch it; the server's 400 must.
    backend.object_info.delete()
    [created] = create(project, owner, slug="txt2img-sd15", overrides={"checkpoint": "missing.safetensors"})
    assert tasks.job_run(created.pk) == "failed:rejected"
    failed = job(created.pk)
    assert failed.status == JobStatus.FAILED
    assert "missing.safetensors" in failed.error_message
    assert failed.error_node == "#4 CheckpointLoaderSimple"  # named as runtime errors name it
    assert failed.error_details["node_errors"]
    assert fake.counters.jobs_started == 0


def test_preflight_fails_the_job_before_any_gpu_time(fake, project, owner, enqueued):
    backend_for(fake)
    [created] = create(project, owner, slug="txt2img-sd15", overrides={"checkpoint": "anime/nope.safetensors"})
    failed = job(created.pk)
    assert failed.status == JobStatus.FAILED
    assert failed.error_type == "preflight"
    assert "anime/nope.safetensors" in failed.error_message
    assert "anime_v1.safetensors" in failed.error_message  # what the backend does have
    assert enqueued.take() == []
    assert fake.counters.prompts_received == 0


def test_a_backend_that_lost_a_model_before_the_claim_fails_the_job_naming_the_node(fake, project, owner, enqueued):
    from django.utils import timezone

    backend = backend_for(fake)
    [created] = create(project, owner, slug="txt2img-sd15", overrides={"checkpoint": "anime_v1.safetensors"})
    assert job(created.pk).status == JobStatus.QUEUED
    # The server's models change between submission and claim: pre-flight runs again at the claim.
    info = backend.object_info
    info.data["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["other.safetensors"]
    info.fetched_at, info.digest = timezone.now(), "0" * 64
    info.save()
    Backend.objects.filter(pk=backend.pk).update(object_info_fetched_at=info.fetched_at)  # as the health poll writes

    assert tasks.job_run(created.pk) == "not claimed"
    failed = job(created.pk)
    assert (failed.status, failed.error_type) == (JobStatus.FAILED, "preflight")
    assert failed.error_node == "#4 CheckpointLoaderSimple"
    assert fake.counters.prompts_received == 0


def test_runtime_error_records_node_type_and_message(fake, project, owner, enqueued):
    backend_for(fake)
    fake.configure(failures={"ImageBlend": ("RuntimeError", "Sizes of tensors must match")})
    [created] = create(project, owner)
    assert tasks.job_run(created.pk) == "failed:execution"
    failed = job(created.pk)
    assert (failed.status, failed.error_type) == (JobStatus.FAILED, "RuntimeError")
    assert "Sizes of tensors must match" in failed.error_message
    assert "ImageBlend" in failed.error_node


def test_cancel_a_running_job_interrupts_it_on_the_server(fake, project, owner, enqueued):
    backend_for(fake)
    fake.configure(holds={"ImageAddNoise"})
    [created] = create(project, owner)
    thread, result = run_in_thread(lambda: tasks.job_run(created.pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the job to reach its held node")
    job_cancel(job=job(created.pk), user=owner)
    assert tasks.job_abort(created.pk) == "interrupted"
    fake.release()
    thread.join(timeout=20)
    assert result == ["cancelled"]
    assert job(created.pk).status == JobStatus.CANCELLED
    assert not Asset.objects.filter(job_id=created.pk).exists()


def test_cancel_a_job_still_pending_on_the_server_removes_it(fake, project, owner, enqueued, settings):
    settings.COMFYUI_STALL_TIMEOUT = 1.0  # the removed prompt sends nothing; the queue tells
    backend_for(fake, max_in_flight=2)
    fake.configure(holds={"ImageAddNoise"})
    first, second = create(project, owner, count=2)
    t1, r1 = run_in_thread(lambda: tasks.job_run(first.pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the first job to reach its held node")
    t2, r2 = run_in_thread(lambda: tasks.job_run(second.pk))
    fake.wait_for(lambda: len(fake.queue_ids()[1]) == 1, what="the second prompt to wait in the queue")
    job_cancel(job=job(second.pk), user=owner)
    assert tasks.job_abort(second.pk) == "removed"
    t2.join(timeout=20)
    assert r2 == ["cancelled"]
    fake.release()
    t1.join(timeout=20)
    assert r1 == ["succeeded"]
    assert fake.counters.jobs_started == 1


def test_a_queued_job_is_cancelled_at_once_and_never_submitted(fake, project, owner, enqueued):
    backend_for(fake)
    [created] = create(project, owner)
    job_cancel(job=job(created.pk), user=owner)
    assert tasks.job_run(created.pk) == "not claimed"
    assert fake.counters.prompts_received == 0


def test_websocket_dropped_mid_job_still_completes(fake, project, owner, enqueued, settings):
    settings.COMFYUI_STALL_TIMEOUT = 1.0
    backend_for(fake)
    fake.configure(holds={"ImageAddNoise"})
    [created] = create(project, owner)
    thread, result = run_in_thread(lambda: tasks.job_run(created.pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the job to reach its held node")
    fake.drop_websockets()
    fake.release()
    thread.join(timeout=30)
    assert result == ["succeeded"]
    assert Asset.objects.filter(job_id=created.pk).count() == 1
    # Messages may have been missed while the socket was down: the outputs came from /history.
    assert fake.counters.requests["GET /history/{prompt_id}"] >= 1


def test_a_history_written_after_the_success_is_waited_for_not_taken_as_a_lost_prompt(
    fake, project, owner, enqueued, settings
):
    """A real ComfyUI sends execution_success before it writes the history. A worker that must
    read the outputs from /history must not read the entry missing there as a lost prompt and
    submit it again (it waits for the end marker, sent after the write)."""
    settings.COMFYUI_STALL_TIMEOUT = 1.0
    backend_for(fake)
    fake.configure(history_delay=1.0, holds={"SaveImage"})
    [created] = create(project, owner)
    thread, result = run_in_thread(lambda: tasks.job_run(created.pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the job to reach its last node")
    # The socket drops before the success: the worker cannot trust it saw every output, so it
    # will read them from /history, which the server writes a second after the success.
    fake.drop_websockets()
    fake.wait_for(lambda: fake.counters.websockets_opened >= 2, what="the worker to reconnect")
    fake.release()
    thread.join(timeout=30)
    assert result == ["succeeded"]
    done = job(created.pk)
    assert (done.status, done.attempts) == (JobStatus.SUCCEEDED, 1)
    assert Asset.objects.filter(job_id=created.pk).count() == 1
    assert fake.counters.prompts_received == 1


def test_backend_restart_mid_job_resubmits_once(fake, project, owner, enqueued, settings):
    settings.COMFYUI_STALL_TIMEOUT = 1.0
    backend_for(fake)
    fake.configure(holds={"ImageAddNoise"})
    [created] = create(project, owner)
    thread, result = run_in_thread(lambda: tasks.job_run(created.pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the job to reach its held node")
    fake.configure(holds=set())
    fake.restart()
    thread.join(timeout=30)
    assert result == ["requeued:lost"]
    requeued = job(created.pk)
    assert requeued.status == JobStatus.QUEUED
    assert "lost the prompt" in requeued.error_message
    assert tasks.job_run(created.pk) == "succeeded"
    done = job(created.pk)
    assert done.attempts == 2
    assert done.error_message == ""


def test_prompt_lost_too_often_fails_with_the_reason(fake, project, owner, enqueued, settings):
    settings.COMFYUI_STALL_TIMEOUT = 1.0
    backend_for(fake)
    [created] = create(project, owner)
    Job.objects.filter(pk=created.pk).update(max_attempts=1)
    fake.configure(holds={"ImageAddNoise"})
    thread, result = run_in_thread(lambda: tasks.job_run(created.pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the job to reach its held node")
    fake.configure(holds=set())
    fake.restart()
    thread.join(timeout=30)
    assert result == ["failed:attempts"]
    failed = job(created.pk)
    assert failed.status == JobStatus.FAILED
    assert "gave up after 1 attempts" in failed.error_message


def test_unreachable_backend_waits_and_runs_when_it_returns(project, owner, enqueued, tmp_path):
    from generation.services.reconcile import backend_refresh

    fake = FakeComfy(root=tmp_path / "comfy", checkpoints=["anime_v1.safetensors"]).start()
    backend = backend_for(fake)
    port = fake.port
    fake.stop()
    [created] = create(project, owner)
    assert enqueued.take() == [created.pk]
    assert tasks.job_run(created.pk) == "requeued:unreachable"
    waiting = job(created.pk)
    assert waiting.status == JobStatus.QUEUED
    assert "unreachable" in waiting.error_message
    assert waiting.attempts == 0  # an unreachable server does not spend an attempt
    assert Backend.objects.get(pk=backend.pk).healthy is False
    # While it is down, nothing is claimed (no busy loop of doomed submissions).
    assert tasks.job_run(created.pk) == "not claimed"
    with FakeComfy(root=tmp_path / "comfy2", port=port, checkpoints=["anime_v1.safetensors"]):
        report = tasks.reconcile_all()
        assert report["backends_up"] == ["gpu-1"]
        assert enqueued.take() == [created.pk]
        assert tasks.job_run(created.pk) == "succeeded"
    assert backend_refresh(backend=backend) is False


def test_retry_runs_the_same_graph_again_as_a_child(fake, project, owner, enqueued):
    backend_for(fake)
    fake.configure(failures={"ImageBlend": ("RuntimeError", "boom")})
    [created] = create(project, owner)
    tasks.job_run(created.pk)
    fake.configure(failures={})
    retry = job_retry(job=job(created.pk), user=owner)
    assert (retry.parent_id, retry.graph, retry.seed) == (created.pk, job(created.pk).graph, created.seed)
    assert tasks.job_run(retry.pk) == "succeeded"


def test_two_backends_keep_each_checkpoint_where_it_is_loaded(project, owner, enqueued, tmp_path):
    checkpoints = ["anime_v1.safetensors", "anime_v2.safetensors"]
    with (
        FakeComfy(root=tmp_path / "a", checkpoints=checkpoints) as gpu1,
        FakeComfy(root=tmp_path / "b", checkpoints=checkpoints) as gpu2,
    ):
        backend_for(gpu1, name="gpu-1", max_in_flight=1)
        backend_for(gpu2, name="gpu-2", max_in_flight=1)
        order = "AABBABBA"
        for letter in order:
            ckpt = checkpoints[0] if letter == "A" else checkpoints[1]
            [created] = create(project, owner, slug="txt2img-sd15", overrides={"checkpoint": ckpt})
            assert tasks.job_run(created.pk) == "succeeded"
        loads = gpu1.counters.model_loads + gpu2.counters.model_loads
        # Each checkpoint is loaded once, on one backend; round-robin would load 7 times here.
        assert sum(loads.values()) == 2
        assert set(gpu1.counters.model_loads) != set(gpu2.counters.model_loads)


def test_img2img_uploads_the_init_image_under_a_content_name_before_submitting(fake, project, owner, enqueued):
    import io as _io

    from characters.services import character_add_reference, character_create
    from generation.services.submit import init_image_from
    from tests.factories import png_bytes

    backend_for(fake)
    character = character_create(project=project, name="Kai", design_prompt="silver hair")
    reference = character_add_reference(character=character, upload=_io.BytesIO(png_bytes(96, 80)))
    [created] = create(project, owner, slug="weightless-img2img", init_image=init_image_from(reference))
    assert created.params["init_image"] == f"tower-{reference.sha256[:24]}.png"
    assert tasks.job_run(created.pk) == "succeeded", job(created.pk).error_message
    uploaded = fake.input_dir / created.params["init_image"]
    assert uploaded.read_bytes() == reference.image.open("rb").read()
    # The stored graph names the uploaded file, so a reproduction uploads and uses the same input.
    assert created.params["init_image"] in str(job(created.pk).graph)

"""A worker task that takes on more queued jobs (a session) against the fake ComfyUI on a real port."""

from __future__ import annotations

import threading

import pytest

from generation import tasks
from generation.engine.driver import StoreThread
from generation.models import Asset, JobStatus
from generation.services.submit import job_cancel, jobs_create
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, job, run_in_thread, shipped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

SMALL = {"width": 64, "height": 64}


@pytest.fixture
def project(owner):
    return make_project(owner)


def create(project, owner, slug="weightless-image", count=1, **overrides):
    return jobs_create(
        user=owner, project=project, template=shipped(slug), overrides={**SMALL, **overrides}, count=count
    )


def statuses(jobs) -> list[str]:
    return [job(j.pk).status for j in jobs]


def test_one_task_drives_a_whole_batch_over_one_websocket(fake, project, owner, enqueued, settings):
    settings.TOWER_ENGINE_SESSION_CONCURRENCY = 2
    backend_for(fake, max_in_flight=2)
    fake.configure(holds={"ImageAddNoise"})
    jobs = create(project, owner, count=6)
    thread, result = run_in_thread(lambda: tasks.job_run(jobs[0].pk))
    # Pipelined: the next prompt already waits on the server, but never more than the backend allows.
    fake.wait_for(lambda: fake.held_nodes() and len(fake.queue_ids()[1]) == 1, what="one running, one pending")
    assert fake.counters.prompts_received == 2
    fake.configure(holds=set())
    fake.release()
    thread.join(timeout=30)
    assert result == ["succeeded"]
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 6
    assert Asset.objects.filter(job__in=[j.pk for j in jobs]).count() == 6
    assert fake.counters.websockets_opened == 1
    assert fake.counters.max_queued == 2
    # The producer enqueued one task per free slot; the second finds nothing left to do.
    assert enqueued.take() == [jobs[0].pk, jobs[1].pk]
    assert tasks.job_run(jobs[1].pk) == "not claimed"


def test_a_session_stops_taking_work_at_its_limit_and_hands_the_rest_on(fake, project, owner, enqueued, settings):
    settings.TOWER_ENGINE_SESSION_JOBS = 3
    backend_for(fake, max_in_flight=1)
    jobs = create(project, owner, count=5)
    # The producer hands the batch to as many tasks as the backend has free slots: one.
    assert enqueued.take() == [jobs[0].pk]
    assert tasks.job_run(jobs[0].pk) == "succeeded"
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 3 + [JobStatus.QUEUED] * 2
    # The next queued job is handed to a fresh task, which carries on with the rest.
    assert enqueued.take() == [jobs[3].pk]
    assert tasks.job_run(jobs[3].pk) == "succeeded"
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 5


def test_a_failing_job_does_not_stop_the_others_in_its_session(fake, project, owner, enqueued, settings):
    settings.TOWER_ENGINE_SESSION_CONCURRENCY = 2
    backend_for(fake, max_in_flight=2)
    fake.configure(failures={"KSampler": ("RuntimeError", "CUDA out of memory")})
    good = create(project, owner, count=2)
    [bad] = create(project, owner, slug="txt2img-sd15", checkpoint="anime_v1.safetensors")
    more = create(project, owner, count=2)
    assert tasks.job_run(good[0].pk) == "succeeded"
    assert statuses(good + more) == [JobStatus.SUCCEEDED] * 4
    failed = job(bad.pk)
    assert failed.status == JobStatus.FAILED
    assert "CUDA out of memory" in failed.error_message


def test_cancelling_one_job_of_a_session_leaves_the_others_running(fake, project, owner, enqueued, settings):
    settings.TOWER_ENGINE_SESSION_CONCURRENCY = 2
    settings.COMFYUI_STALL_TIMEOUT = 1.0  # the removed prompt sends nothing; the queue tells
    backend_for(fake, max_in_flight=2)
    fake.configure(holds={"ImageAddNoise"})
    first, second, third = create(project, owner, count=3)
    thread, result = run_in_thread(lambda: tasks.job_run(first.pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the first job to reach its held node")
    fake.wait_for(lambda: len(fake.queue_ids()[1]) == 1, what="the second prompt to wait in the queue")
    job_cancel(job=job(second.pk), user=owner)
    assert tasks.job_abort(second.pk) == "removed"
    fake.configure(holds=set())
    fake.release()
    thread.join(timeout=30)
    assert result == ["succeeded"]
    assert statuses([first, second, third]) == [JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.SUCCEEDED]
    assert not Asset.objects.filter(job_id=second.pk).exists()


def test_a_session_survives_a_dropped_websocket(fake, project, owner, enqueued, settings):
    settings.TOWER_ENGINE_SESSION_CONCURRENCY = 2
    settings.COMFYUI_STALL_TIMEOUT = 1.0
    backend_for(fake, max_in_flight=2)
    fake.configure(holds={"ImageAddNoise"})
    jobs = create(project, owner, count=3)
    thread, result = run_in_thread(lambda: tasks.job_run(jobs[0].pk))
    fake.wait_for(lambda: fake.held_nodes(), what="the first job to reach its held node")
    fake.drop_websockets()
    fake.configure(holds=set())
    fake.release()
    thread.join(timeout=30)
    assert result == ["succeeded"]
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 3


def test_a_session_keeps_each_checkpoint_on_the_gpu_that_has_it_loaded(project, owner, enqueued, tmp_path):
    checkpoints = ["anime_v1.safetensors", "anime_v2.safetensors"]
    with (
        FakeComfy(root=tmp_path / "a", checkpoints=checkpoints, model_load_delay=0.05) as gpu1,
        FakeComfy(root=tmp_path / "b", checkpoints=checkpoints, model_load_delay=0.05) as gpu2,
    ):
        backend_for(gpu1, name="gpu-1", max_in_flight=1)
        backend_for(gpu2, name="gpu-2", max_in_flight=1)
        jobs = []
        for letter in "AABBAABBAABB":
            jobs += create(project, owner, slug="txt2img-sd15", checkpoint=checkpoints[letter == "B"])
        assert tasks.job_run(jobs[0].pk) == "succeeded"
        assert statuses(jobs) == [JobStatus.SUCCEEDED] * 12
        loads = gpu1.counters.model_loads + gpu2.counters.model_loads
        # Taking jobs in plain queue order would reload on nearly every job here.
        assert sum(loads.values()) == 2
        assert set(gpu1.counters.model_loads) != set(gpu2.counters.model_loads)


def test_with_one_job_at_a_time_a_session_works_through_the_queue_in_order(fake, project, owner, enqueued):
    backend_for(fake, max_in_flight=2)
    jobs = create(project, owner, count=4)
    assert tasks.job_run(jobs[0].pk) == "succeeded"
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 4
    # One prompt at a time: the second slot is left for another worker process's task.
    assert fake.counters.max_queued == 1
    submitted = sorted(jobs, key=lambda j: job(j.pk).submitted_at)
    assert [j.pk for j in submitted] == [j.pk for j in jobs]


def test_a_session_stops_claiming_after_its_time_so_other_tasks_get_a_worker(
    fake, project, owner, enqueued, monkeypatch
):
    monkeypatch.setattr(tasks, "SESSION_SECONDS", 0.0)
    backend_for(fake, max_in_flight=1)
    jobs = create(project, owner, count=3)
    enqueued.take()
    assert tasks.job_run(jobs[0].pk) == "succeeded"
    assert statuses(jobs) == [JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.QUEUED]
    assert enqueued.take() == [jobs[1].pk]  # the queue goes on in a fresh task


def test_a_session_sends_the_next_prompt_while_the_last_ones_outputs_are_fetched(
    fake, project, owner, enqueued, monkeypatch
):
    """A prompt the server has finished leaves its queue: the next one is sent at once, not after
    the finished job's outputs are downloaded and stored, and the server never holds more prompts
    than the backend's max_in_flight."""
    from generation.comfyui.client import ComfyClient

    backend_for(fake, max_in_flight=1)
    jobs = create(project, owner, count=3)
    enqueued.take()
    real_view, seen = ComfyClient.view, []

    async def view(self, *args, **kwargs):
        # Downloading job n's output waits for the server to have job n+1's prompt (it never
        # would, were the next prompt sent only after this download and its store).
        index = len(seen)
        if index < len(jobs) - 1:
            await fake.wait_for_async(
                lambda: fake.counters.prompts_received >= index + 2, timeout=5, what="the next prompt"
            )
        seen.append(fake.counters.prompts_received)
        return await real_view(self, *args, **kwargs)

    monkeypatch.setattr(ComfyClient, "view", view)
    assert tasks.job_run(jobs[0].pk) == "succeeded"
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 3
    assert seen == [2, 3, 3]
    assert fake.counters.max_queued == 1
    assert Asset.objects.filter(job__in=jobs).count() == 3


def test_a_finished_prompt_frees_its_place_for_every_worker_and_a_resubmission_takes_it_again(
    fake, project, owner, enqueued
):
    """A job whose prompt the server has finished, its outputs still being stored, no longer takes
    a place in the backend's queue: not for the session that drives it, nor for any other."""
    from generation.services import claims

    backend_for(fake, max_in_flight=1)
    first, second, third = create(project, owner, count=3)
    assert claims.job_claim(job_id=first.pk, worker="w:1").job_id == first.pk
    assert claims.job_claim_next(worker="w:2", client_id="c2") is None  # the one place is taken
    claim = claims.job_claim_next(worker="w:1", client_id="c1", ended=[first.pk])
    assert claim is not None and claim.job_id == second.pk
    assert job(first.pk).status == JobStatus.SUBMITTED and job(first.pk).prompt_done_at is not None
    assert claims.job_claim_next(worker="w:2", client_id="c2") is None  # the second job holds it now
    # The first job is sent again (its server lost it): it counts as in flight once more.
    claims.job_requeue(job_id=first.pk, reason="lost")
    claims.job_requeue(job_id=second.pk, reason="lost")
    again = claims.job_claim_next(worker="w:2", client_id="c2")
    assert again.job_id == first.pk and job(first.pk).prompt_done_at is None
    assert claims.job_claim_next(worker="w:3", client_id="c3") is None
    assert job(third.pk).status == JobStatus.QUEUED


def test_a_session_sends_the_next_prompts_while_earlier_outputs_are_still_being_stored(
    fake, project, owner, enqueued, monkeypatch
):
    """Storing a job's outputs runs on the session's own store thread, and a session keeps sending
    prompts while two jobs are being stored: a claim does not queue behind a store on the
    database thread, so the server gets its next prompts while Tower still writes files."""
    from generation.services import completion

    backend_for(fake, max_in_flight=1)
    jobs = create(project, owner, count=4)
    enqueued.take()
    real_complete, seen = completion.job_complete, []

    def job_complete(**kwargs):
        # Storing job n waits for the server to have received job n+2's prompt: it never would,
        # were the claims queued behind this store, or held back by the two jobs being stored.
        index = len(seen)
        if index < len(jobs) - 2:
            fake.wait_for(lambda: fake.counters.prompts_received >= index + 3, timeout=5, what="a later prompt")
        seen.append(fake.counters.prompts_received)
        return real_complete(**kwargs)

    monkeypatch.setattr(completion, "job_complete", job_complete)
    assert tasks.job_run(jobs[0].pk) == "succeeded"
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 4
    assert seen == [3, 4, 4, 4]
    assert Asset.objects.filter(job__in=jobs).count() == 4
    assert fake.counters.max_queued == 1


def test_sessions_store_on_one_thread_per_process_and_replace_a_broken_connection(
    fake, project, owner, enqueued, monkeypatch
):
    """The store thread and its database connection outlive a session (a connection per session
    cost every single-job task a connect); one that broke is replaced when the next session starts."""
    from django.db import connection

    from generation.services import completion

    backend_for(fake, max_in_flight=1)
    real_complete, used = completion.job_complete, []

    def job_complete(**kwargs):
        done = real_complete(**kwargs)
        used.append((threading.current_thread(), connection.connection))
        return done

    monkeypatch.setattr(completion, "job_complete", job_complete)
    jobs = []

    def run_one() -> str:
        # One queued job at a time, so each task is a session of its own.
        jobs.extend(create(project, owner))
        return tasks.job_run(jobs[-1].pk)

    assert [run_one(), run_one()] == ["succeeded", "succeeded"]
    assert used[0] == used[1]  # the same thread and the same open connection, two sessions apart

    def break_connection():
        # The database server went away under it: a statement failed, and it fails its check.
        connection.connection.close()
        connection.errors_occurred = True
        connection.is_usable = lambda: False

    StoreThread.for_process()._pool.submit(break_connection).result()
    assert run_one() == "succeeded"
    assert used[2][0] is used[0][0] and used[2][1] is not used[0][1]
    assert statuses(jobs) == [JobStatus.SUCCEEDED] * 3

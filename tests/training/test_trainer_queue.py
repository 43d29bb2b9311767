"""The training queue per GPU slot, live progress, cancel, and reconcile of jobs whose worker died."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from django.db import IntegrityError, transaction

from tests.training import test_trainer_helpers as helpers
from tests.training.test_trainer_helpers import run_in_thread, wait_for
from training.models import TrainingJob, TrainingStatus
from training.trainer import tasks
from training.trainer.services import (
    TrainingError,
    training_job_cancel,
    training_job_claim_next,
    training_job_create,
    training_job_run,
)

enqueued, trainer, ready_character = helpers.enqueued, helpers.trainer, helpers.ready_character


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def fresh(job: TrainingJob) -> TrainingJob:
    return TrainingJob.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_one_slot_runs_one_job_at_a_time(ready_character, owner, enqueued, trainer):
    first = training_job_create(character=ready_character, user=owner, options={"epochs": 1})
    second = training_job_create(character=ready_character, user=owner, options={"epochs": 1})
    assert (first.gpu, second.gpu) == ("0", "0")
    assert training_job_claim_next(worker="w:1").pk == first.pk
    assert training_job_claim_next(worker="w:2") is None  # the slot is busy: the second waits
    assert fresh(second).status == TrainingStatus.QUEUED
    # The database refuses a second running job on the slot even past the claim.
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingJob.objects.filter(pk=second.pk).update(status=TrainingStatus.RUNNING)
    training_job_run(job_id=first.pk, poll_interval=0.05)
    assert fresh(first).status == TrainingStatus.SUCCEEDED
    assert training_job_claim_next(worker="w:2").pk == second.pk


@pytest.mark.django_db(transaction=True)
def test_two_slots_train_in_parallel(ready_character, owner, enqueued, trainer, settings):
    settings.TOWER_TRAINING_GPUS = ["0", "1"]
    trainer("--step-delay", "0.05")
    first = training_job_create(character=ready_character, user=owner, options={"epochs": 1})
    second = training_job_create(character=ready_character, user=owner, options={"epochs": 1})
    assert {first.gpu, second.gpu} == {"0", "1"}  # least busy slot
    threads = [run_in_thread(tasks.training_dispatch) for _ in range(2)]
    wait_for(
        lambda: TrainingJob.objects.filter(status=TrainingStatus.RUNNING, pid__isnull=False).count() == 2,
        what="both jobs running at once",
    )
    for job in (first, second):
        training_job_cancel(job=job)
    for thread, _ in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert {fresh(first).status, fresh(second).status} == {TrainingStatus.CANCELLED}


@pytest.mark.django_db(transaction=True)
def test_progress_and_eta_are_visible_while_running_then_cancel_stops_the_process(
    ready_character, owner, enqueued, trainer
):
    trainer("--step-delay", "0.05")
    job = training_job_create(character=ready_character, user=owner, options={"epochs": 10})
    assert training_job_claim_next(worker="w:1").pk == job.pk
    thread, result = run_in_thread(lambda: training_job_run(job_id=job.pk, poll_interval=0.05, grace=5))

    live = wait_for(
        lambda: (row := fresh(job)).step >= 3 and row.eta_seconds and row.loss_history and row,
        what="progress with an ETA",
    )
    assert live.status == TrainingStatus.RUNNING
    assert live.total_steps == 1000 and live.total_epochs == 10 and live.epoch == 1
    assert live.it_per_second > 0 and live.loss is not None
    assert live.eta_seconds == pytest.approx((1000 - live.step) / live.it_per_second, rel=0.01)
    assert "steps:" in live.log
    pid = live.pid
    assert pid and not gone(pid)

    assert training_job_cancel(job=job) == "stopping"
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert result == ["cancelled"]
    done = fresh(job)
    assert done.status == TrainingStatus.CANCELLED
    assert done.finished_at is not None
    assert gone(pid)
    assert done.step < 1000


@pytest.mark.django_db
def test_cancel_a_queued_job_at_once(ready_character, owner, enqueued, trainer):
    first = training_job_create(character=ready_character, user=owner, options={})
    second = training_job_create(character=ready_character, user=owner, options={})
    assert training_job_cancel(job=second) == "cancelled"
    assert fresh(second).status == TrainingStatus.CANCELLED
    assert training_job_claim_next(worker="w:1").pk == first.pk
    training_job_run(job_id=first.pk, poll_interval=0.05)
    assert training_job_claim_next(worker="w:1") is None  # the cancelled one never runs
    with pytest.raises(TrainingError, match="already ended"):
        training_job_cancel(job=second)


@pytest.mark.django_db
def test_reconcile_fails_a_job_whose_worker_died_and_stops_its_trainer(ready_character, owner, enqueued, trainer):
    job = training_job_create(character=ready_character, user=owner, options={})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    training_job_claim_next(worker=f"{socket.gethostname()}:{dead.pid}")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    TrainingJob.objects.filter(pk=job.pk).update(pid=orphan.pid)

    report = tasks.training_reconcile()

    assert report["failed"] == [job.pk]
    row = fresh(job)
    assert row.status == TrainingStatus.FAILED
    assert "worker supervising this training stopped" in row.error_message
    assert orphan.wait(timeout=10) != 0  # the trainer left behind was stopped


@pytest.mark.django_db
def test_reconcile_leaves_a_live_worker_alone_and_restarts_dispatch(ready_character, owner, enqueued, trainer):
    running = training_job_create(character=ready_character, user=owner, options={})
    training_job_claim_next(worker=f"{socket.gethostname()}:{os.getpid()}")
    assert tasks.training_reconcile() == {"failed": [], "dispatched": False}
    assert fresh(running).status == TrainingStatus.RUNNING
    TrainingJob.objects.filter(pk=running.pk).update(status=TrainingStatus.FAILED)
    training_job_create(character=ready_character, user=owner, options={})
    before = enqueued.count
    assert tasks.training_reconcile()["dispatched"] is True
    assert enqueued.count == before + 1

"""Training jobs: create (snapshot + config), the per-GPU queue, the supervised run, cancel, reconcile.

Status transitions live here and only here: queued → running (a conditional claim) → succeeded |
failed | cancelled; queued → cancelled. At most one job runs per GPU slot (a DB constraint backs
the claim). The run is driven by ``training.trainer.tasks.training_dispatch`` in a worker.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.text import slugify

from characters.models import Character
from generation.engine.identity import owner_is_dead
from tower.core.errors import DomainError
from training.llm.captions import caption_with_trigger, training_caption
from training.models import DatasetImage, TrainingJob, TrainingStatus
from training.selectors import approved_dataset, training_readiness
from training.trainer.config import ConfigError, build_config
from training.trainer.layout import Entry, LayoutError, check_word, write_work_dir
from training.trainer.parse import Progress, parse_line
from training.trainer.supervisor import RunResult, kill_group, process_alive, supervise

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.25  # seconds between progress writes: a few a second at most
LOG_LINES = 500
ERROR_LINES = 20
WORKER_KEY = "tower_worker"  # bookkeeping inside TrainingJob.config, never written to the TOML
LIVE = (TrainingStatus.QUEUED, TrainingStatus.RUNNING)
TOP_LEVEL_OPTIONS = frozenset({"trigger_word", "class_word", "repeats", "base_model", "gpu", "epochs"})


class TrainingError(DomainError):
    """A training operation cannot be done as asked; the message says why."""


def _caption_for(image: DatasetImage, trigger_word: str) -> str:
    """The image's kohya caption, trigger word first (the job's trigger word may differ from the character's)."""
    if trigger_word == image.character.trigger_word:
        return training_caption(image)
    return caption_with_trigger(image.caption, trigger_word)


def work_dir_for(job_id: int) -> Path:
    root = settings.TOWER_TRAINING_WORK_DIR or Path(settings.MEDIA_ROOT) / "training"
    return Path(root) / str(job_id)


def _least_busy_gpu() -> str:
    gpus = list(settings.TOWER_TRAINING_GPUS) or ["0"]
    load = dict(
        TrainingJob.objects.filter(status__in=LIVE, gpu__in=gpus)
        .values_list("gpu")
        .annotate(n=Count("pk"))
        .values_list("gpu", "n")
    )
    return min(gpus, key=lambda gpu: (load.get(gpu, 0), gpus.index(gpu)))


def _int_option(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TrainingError(f"{name} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise TrainingError(f"{name} must be between {low} and {high}, not {number}")
    return number


def trainer_unavailable_reason() -> str:
    """Why no training can run on this installation ("" when a trainer is configured)."""
    if settings.TOWER_TRAINER_COMMAND.strip():
        return ""
    return (
        "No trainer is configured: set TOWER_TRAINER_COMMAND (for example "
        "`accelerate launch /opt/sd-scripts/train_network.py`) and restart Tower"
    )


def training_job_create(*, character: Character, user: User | None, options: dict[str, Any]) -> TrainingJob:
    """Queue a LoRA training of ``character`` on its approved images; the caller checked write access.

    ``options``: ``trigger_word`` (default: the character's), ``class_word``, ``repeats``,
    ``base_model`` (default ``TOWER_TRAINER_BASE_MODEL``), ``epochs`` and any editable kohya option
    (:data:`training.trainer.config.EDITABLE`). Refused, with nothing written, when no trainer is
    configured, below ``TOWER_TRAINING_MIN_IMAGES`` approved images or with a bad option.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None and v != ""}
    unavailable = trainer_unavailable_reason()
    if unavailable:
        raise TrainingError(unavailable)  # a queued job would only fail when it starts
    readiness = training_readiness(character)
    if not readiness.ready:
        raise TrainingError(
            f"{character.name} has {readiness.approved} approved image(s); training needs {readiness.needed}: "
            f"approve {readiness.missing} more"
        )
    trigger = str(options.pop("trigger_word", "") or character.trigger_word or "").strip()
    if not trigger:
        raise TrainingError(f"{character.name} has no trigger word: set one on the character before training")
    class_word = str(options.pop("class_word", "") or "person").strip()
    try:
        check_word("trigger word", trigger)
        check_word("class word", class_word)
    except LayoutError as exc:
        raise TrainingError(str(exc)) from None
    repeats = _int_option("repeats", options.pop("repeats", 10), 1, 1000)
    base_model = str(options.pop("base_model", "") or settings.TOWER_TRAINER_BASE_MODEL or "").strip()
    gpu = str(options.pop("gpu", "") or "")
    if gpu and gpu not in settings.TOWER_TRAINING_GPUS:
        raise TrainingError(
            f"GPU slot {gpu!r} is not one of TOWER_TRAINING_GPUS ({', '.join(settings.TOWER_TRAINING_GPUS)})"
        )
    if "epochs" in options:
        options["max_train_epochs"] = options.pop("epochs")
    images = list(approved_dataset(character))
    snapshot = [
        {"image_id": im.pk, "sha256": im.sha256, "file": im.image.name, "caption": _caption_for(im, trigger)}
        for im in images
    ]
    with transaction.atomic():
        job = TrainingJob(
            character=character,
            dataset_snapshot=snapshot,
            base_model=base_model,
            trigger_word=trigger,
            class_word=class_word,
            repeats=repeats,
            gpu=gpu or _least_busy_gpu(),
            created_by=user if user is not None and user.is_authenticated else None,
        )
        job.full_clean()
        job.save()
        output_name = f"{slugify(character.slug or character.name) or 'character'}-lora-{job.pk}"
        try:
            job.config = build_config(options, base_model=base_model, output_name=output_name)
        except ConfigError as exc:
            raise TrainingError(str(exc)) from None  # rolls the job back
        job.work_dir = str(work_dir_for(job.pk))
        job.save(update_fields=["config", "work_dir"])
        transaction.on_commit(enqueue_dispatch)
    return job


def enqueue_dispatch() -> None:
    from generation.tasks import async_task

    # The dispatcher runs the training in its worker: give it the time a training takes.
    timeout = int(settings.TOWER_TRAINING_TIMEOUT)
    async_task(
        "training.trainer.tasks.training_dispatch", task_name="training-dispatch", group="training", timeout=timeout
    )


def training_job_cancel(*, job: TrainingJob) -> str:
    """Queued: cancelled now. Running: the supervisor stops the trainer within a second or so."""
    now = timezone.now()
    if TrainingJob.objects.filter(pk=job.pk, status=TrainingStatus.QUEUED).update(
        status=TrainingStatus.CANCELLED,
        cancel_requested=True,
        finished_at=now,
        error_message="Cancelled before it started.",
    ):
        return "cancelled"
    if TrainingJob.objects.filter(pk=job.pk, status=TrainingStatus.RUNNING).update(cancel_requested=True):
        return "stopping"
    raise TrainingError(f"training #{job.pk} has already ended ({TrainingJob.objects.get(pk=job.pk).status})")


def training_job_claim_next(*, worker: str) -> TrainingJob | None:
    """Claim the oldest queued job for a free GPU slot (conditional update; the constraint backs it)."""
    gpus = list(settings.TOWER_TRAINING_GPUS) or ["0"]
    busy = set(TrainingJob.objects.filter(status=TrainingStatus.RUNNING).values_list("gpu", flat=True))
    for gpu in (g for g in gpus if g not in busy):
        # A job queued for a slot that is no longer configured may take any free one.
        waiting = (
            TrainingJob.objects.filter(status=TrainingStatus.QUEUED)
            .filter(Q(gpu=gpu) | ~Q(gpu__in=gpus))
            .order_by("created_at", "pk")
            .values_list("pk", "config")[:10]
        )
        for pk, config in waiting:
            try:
                with transaction.atomic():
                    claimed = TrainingJob.objects.filter(pk=pk, status=TrainingStatus.QUEUED).update(
                        status=TrainingStatus.RUNNING,
                        gpu=gpu,
                        started_at=timezone.now(),
                        config={**(config or {}), WORKER_KEY: worker},
                        pid=None,
                        error_message="",
                    )
            except IntegrityError:
                break  # another dispatcher took this slot a moment ago
            if claimed:
                return TrainingJob.objects.select_related("character__project").get(pk=pk)
    return None


def training_has_dispatchable() -> bool:
    gpus = list(settings.TOWER_TRAINING_GPUS) or ["0"]
    busy = set(TrainingJob.objects.filter(status=TrainingStatus.RUNNING).values_list("gpu", flat=True))
    free = [g for g in gpus if g not in busy]
    if not free:
        return False
    return TrainingJob.objects.filter(status=TrainingStatus.QUEUED).filter(Q(gpu__in=free) | ~Q(gpu__in=gpus)).exists()


def _finish(job_id: int, status: str, **fields: Any) -> bool:
    return bool(
        TrainingJob.objects.filter(pk=job_id, status=TrainingStatus.RUNNING).update(
            status=status, finished_at=timezone.now(), eta_seconds=None, **fields
        )
    )


def _tail(lines: list[str], n: int = ERROR_LINES) -> str:
    return "\n".join(lines[-n:])


class _ProgressWriter:
    """Folds trainer output into the job row, at most every FLUSH_INTERVAL seconds."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.progress = Progress()
        self.lines: list[str] = []
        self.dirty = False
        self.last_flush = 0.0

    def line(self, text: str) -> None:
        self.lines.append(text)
        if len(self.lines) > 2 * LOG_LINES:
            del self.lines[:-LOG_LINES]
        self.progress.apply(parse_line(text))
        self.dirty = True
        self.maybe_flush()

    def note(self, text: str) -> None:
        self.line(f"[tower] {text}")

    def maybe_flush(self) -> None:
        if self.dirty and time.monotonic() - self.last_flush >= FLUSH_INTERVAL:
            self.flush()

    def flush(self) -> None:
        p = self.progress
        TrainingJob.objects.filter(pk=self.job_id).update(
            step=p.step,
            total_steps=p.total_steps,
            epoch=p.epoch,
            total_epochs=p.total_epochs,
            loss=p.loss,
            loss_history=p.loss_history,
            it_per_second=p.it_per_second,
            eta_seconds=p.eta_seconds,
            log="\n".join(self.lines[-LOG_LINES:]),
        )
        self.dirty = False
        self.last_flush = time.monotonic()


def _entries(job: TrainingJob) -> list[Entry]:
    storage = DatasetImage._meta.get_field("image").storage
    entries = []
    for row in job.dataset_snapshot:
        try:
            source = Path(storage.path(row["file"]))
        except (KeyError, NotImplementedError) as exc:
            raise LayoutError(f"dataset image {row.get('image_id')} has no local file: {exc}") from None
        entries.append(Entry(source=source, stem=f"{int(row['image_id']):06d}", caption=str(row.get("caption", ""))))
    return entries


def trainer_argv(config_path: Path) -> list[str]:
    command = (settings.TOWER_TRAINER_COMMAND or "").strip()
    if not command:
        raise TrainingError(
            "No trainer is configured: set TOWER_TRAINER_COMMAND to the kohya sd-scripts command "
            "(for example: accelerate launch /opt/sd-scripts/train_network.py)"
        )
    try:
        return [*shlex.split(command), "--config_file", str(config_path)]
    except ValueError as exc:
        raise TrainingError(f"TOWER_TRAINER_COMMAND cannot be parsed ({exc}): {command}") from None


def training_job_run(*, job_id: int, poll_interval: float = 0.5, grace: float | None = None) -> str:
    """Run a claimed (running) job to its end and record how it ended. Call only after a claim."""
    job = TrainingJob.objects.select_related("character__project").get(pk=job_id)
    if job.status != TrainingStatus.RUNNING:
        return f"not running ({job.status})"
    writer = _ProgressWriter(job.pk)
    try:
        return _run(job, writer, poll_interval=poll_interval, grace=grace)
    except Exception as exc:  # the row must not stay "running" because Tower itself failed
        logger.exception("training #%s failed inside Tower", job.pk)
        writer.flush()
        _finish(job.pk, TrainingStatus.FAILED, error_message=f"Tower could not finish the run: {exc}")
        return "failed"


def _run(job: TrainingJob, writer: _ProgressWriter, *, poll_interval: float, grace: float | None) -> str:
    if job.cancel_requested:
        _finish(job.pk, TrainingStatus.CANCELLED, error_message="Cancelled before it started.")
        return "cancelled"
    work_dir = Path(job.work_dir or work_dir_for(job.pk))
    config = {k: v for k, v in job.config.items() if not k.startswith("tower_")}
    try:
        argv = trainer_argv(work_dir / "config.toml")
        work_dir.mkdir(parents=True, exist_ok=True)
        write_work_dir(
            work_dir,
            entries=_entries(job),
            repeats=job.repeats,
            trigger_word=job.trigger_word,
            class_word=job.class_word,
            config=config,
        )
    except (TrainingError, LayoutError, OSError) as exc:
        _finish(job.pk, TrainingStatus.FAILED, error_message=str(exc))
        return "failed"
    writer.note(f"dataset: {len(job.dataset_snapshot)} images × {job.repeats} repeats in {work_dir / 'img'}")
    writer.note(f"running: {shlex.join(argv)}")
    writer.flush()

    def should_cancel() -> bool:
        return TrainingJob.objects.filter(pk=job.pk, cancel_requested=True).exists()

    def record_pid(pid: int) -> None:
        TrainingJob.objects.filter(pk=job.pk).update(pid=pid)

    result: RunResult = supervise(
        argv,
        cwd=work_dir,
        env={"CUDA_VISIBLE_DEVICES": job.gpu, "PYTHONUNBUFFERED": "1"},
        on_start=record_pid,
        on_line=writer.line,
        on_idle=writer.maybe_flush,
        should_cancel=should_cancel,
        poll_interval=poll_interval,
        grace=float(grace if grace is not None else settings.TOWER_TRAINER_KILL_GRACE),
    )
    writer.flush()
    if result.error:
        _finish(job.pk, TrainingStatus.FAILED, error_message=f"{result.error} (check TOWER_TRAINER_COMMAND)")
        return "failed"
    if result.cancelled:
        _finish(job.pk, TrainingStatus.CANCELLED, error_message="Cancelled while training; the trainer was stopped.")
        return "cancelled"
    if result.returncode != 0:
        _finish(
            job.pk,
            TrainingStatus.FAILED,
            error_message=f"The trainer exited with code {result.returncode}. Last output:\n{_tail(result.tail)}",
        )
        return "failed"
    output = work_dir / "output" / f"{config['output_name']}.safetensors"
    if not output.is_file():
        _finish(
            job.pk,
            TrainingStatus.FAILED,
            error_message=(
                f"The trainer exited normally but wrote no {output.name} in {output.parent}. "
                f"Last output:\n{_tail(result.tail)}"
            ),
        )
        return "failed"
    from training.trainer.registry import RegistryError, lora_register

    try:
        with transaction.atomic():
            lora, notes = lora_register(job=job, path=output)
            for note in notes:
                writer.note(note)
            writer.flush()
            if not _finish(job.pk, TrainingStatus.SUCCEEDED, step=writer.progress.total_steps or writer.progress.step):
                raise TrainingError("the job stopped being ours while registering")  # rolls the LoRA back
    except (RegistryError, TrainingError, OSError) as exc:
        _finish(job.pk, TrainingStatus.FAILED, error_message=f"The LoRA could not be registered: {exc}")
        return "failed"
    return f"succeeded: {lora.name}"


def training_jobs_reconcile() -> list[int]:
    """Fail running jobs whose supervising worker died on this host; stop their trainer. Ids failed."""
    failed = []
    for job in TrainingJob.objects.filter(status=TrainingStatus.RUNNING).only("pk", "pid", "config"):
        owner = str((job.config or {}).get(WORKER_KEY, ""))
        if owner:
            if not owner_is_dead(owner):
                continue  # alive, or on another host (that host's reconcile decides)
        elif job.pid is None or process_alive(job.pid):
            continue
        if job.pid and process_alive(job.pid):
            kill_group(job.pid)
        if _finish(
            job.pk,
            TrainingStatus.FAILED,
            error_message="The worker supervising this training stopped (restart or crash); start it again.",
        ):
            failed.append(job.pk)
    return failed

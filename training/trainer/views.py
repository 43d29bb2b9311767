"""Training pages: a character's training (readiness, start, queue, jobs, LoRAs) and one job.

One view serves the full page and its HTMX fragment (the live part, polled every second while a
job is queued or running). Access: outsiders 404, viewers read only (403 on writes).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from characters.models import Character
from characters.selectors import character_get_for_user
from projects.selectors import project_ids_visible_to, project_user_can_write
from quality.charts import Sparkline, sparkline
from tower.core.pages import page_login_required, render_page
from tower.core.users import signed_in
from training.models import LoraModel, TrainingJob, TrainingStatus
from training.selectors import (
    gpu_queues,
    lora_get_for_user,
    queue_positions,
    training_job_get_for_user,
    training_readiness,
)
from training.trainer.registry import (
    RegistryError,
    lora_activate,
    lora_add_to_style,
    lora_deactivate,
    lora_deploy,
    lora_remove_from_style,
)
from training.trainer.services import (
    TrainingError,
    trainer_unavailable_reason,
    training_job_cancel,
    training_job_create,
)

JOBS_SHOWN = 20
LOG_TAIL = 60


class TrainingForm(forms.Form):
    trigger_word = forms.CharField(max_length=64, help_text="first word of every caption; the character's by default")
    class_word = forms.CharField(max_length=64, initial="person", required=False)
    repeats = forms.IntegerField(min_value=1, max_value=1000, initial=10)
    epochs = forms.IntegerField(min_value=1, max_value=1000, initial=10)
    learning_rate = forms.FloatField(min_value=1e-8, max_value=1.0, initial=1e-4)
    network_dim = forms.IntegerField(min_value=1, max_value=1024, initial=32, label="Network dim")
    base_model = forms.CharField(max_length=255, required=False, help_text="checkpoint path for the trainer")


def loss_chart(job: TrainingJob) -> Sparkline | None:
    history = [point[1] for point in job.loss_history or [] if len(point) == 2]
    return sparkline(history, title="loss", width=360, height=72) if len(history) >= 2 else None


def _job_view(job: TrainingJob, positions: dict[int, int]) -> dict[str, Any]:
    lines = job.log.splitlines()[-LOG_TAIL:] if job.log else []
    return {
        "job": job,
        "live": job.status in (TrainingStatus.QUEUED, TrainingStatus.RUNNING),
        "position": positions.get(job.pk),
        "percent": round(100 * job.step / job.total_steps) if job.total_steps else 0,
        "chart": loss_chart(job),
        "log_lines": lines,
    }


def _training_context(request: HttpRequest, character: Character, form: TrainingForm | None = None) -> dict[str, Any]:
    project = character.project
    gpus = list(settings.TOWER_TRAINING_GPUS) or ["0"]
    jobs = list(character.training_jobs.select_related("lora").order_by("-created_at")[:JOBS_SHOWN])
    positions: dict[int, int] = {}
    for gpu in {j.gpu for j in jobs if j.status == TrainingStatus.QUEUED}:
        positions.update(queue_positions(gpu))
    visible = set(project_ids_visible_to(request.user).values_list("pk", flat=True))
    queues = gpu_queues(gpus)
    for queue in queues:
        queue["entries"] = [
            {"job": j, "position": i, "visible": j.character.project_id in visible}
            for i, j in enumerate(([queue["running"]] if queue["running"] else []) + queue["queued"])
        ]
    views = [_job_view(job, positions) for job in jobs]
    return {
        "character": character,
        "project": project,
        "can_write": project_user_can_write(project=project, user=request.user),
        "readiness": training_readiness(character),
        "form": form
        or TrainingForm(
            initial={"trigger_word": character.trigger_word, "base_model": settings.TOWER_TRAINER_BASE_MODEL}
        ),
        "jobs": views,
        "any_live": any(v["live"] for v in views),
        "queues": queues,
        "loras": LoraModel.objects.filter(character=character).select_related("training_job").order_by("-created_at"),
        "style_lora_names": {item.get("name") for item in (project.style.loras or []) if isinstance(item, dict)},
        "trainer_unavailable": trainer_unavailable_reason(),
    }


@page_login_required
def character_training(request: HttpRequest, pk: int) -> HttpResponse:
    character = character_get_for_user(user=request.user, pk=pk, write=request.method == "POST")
    form = None
    if request.method == "POST":
        form = TrainingForm(request.POST)
        if form.is_valid():
            options = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
            try:
                job = training_job_create(character=character, user=signed_in(request.user), options=options)
            except TrainingError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Training #{job.pk} queued on GPU {job.gpu}.")
                return redirect("training-job", pk=job.pk)
    context = _training_context(request, character, form)
    status = 400 if form is not None and form.errors else 200
    return render_page(
        request, "training/trainer/character.html", "training/trainer/_character_live.html", context, status=status
    )


@page_login_required
def training_job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = training_job_get_for_user(user=request.user, pk=pk)
    positions = queue_positions(job.gpu) if job.status == TrainingStatus.QUEUED else {}
    context = {
        **_job_view(job, positions),
        "character": job.character,
        "project": job.character.project,
        "can_write": project_user_can_write(project=job.character.project, user=request.user),
        "lora": LoraModel.objects.filter(training_job=job).first(),
        "config_items": sorted((k, v) for k, v in job.config.items() if not k.startswith("tower_")),
    }
    return render_page(request, "training/trainer/job.html", "training/trainer/_job_live.html", context)


@page_login_required
@require_POST
def training_job_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    job = training_job_get_for_user(user=request.user, pk=pk, write=True)
    try:
        outcome = training_job_cancel(job=job)
    except TrainingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, "Cancelled." if outcome == "cancelled" else "Stopping the trainer; this takes a few seconds."
        )
    return redirect("training-job", pk=job.pk)


def _back(request: HttpRequest, lora: LoraModel) -> HttpResponse:
    if lora.character_id:
        return redirect("character-training", pk=lora.character_id)
    return redirect("project-detail", pk=lora.project_id)


@page_login_required
@require_POST
def lora_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    lora = lora_get_for_user(user=request.user, pk=pk, write=True)
    try:
        if action == "activate":
            lora_activate(lora=lora)
            messages.success(request, f"{lora.name} is now used by every generation of {lora.character}.")
        elif action == "deactivate":
            lora_deactivate(lora=lora)
            messages.success(request, f"{lora.name} is no longer added to {lora.character}'s generations.")
        elif action == "add-to-style":
            raw = request.POST.get("strength", "").strip()
            try:
                strength = float(raw) if raw else None
            except ValueError:
                raise RegistryError(f"strength must be a number, not {raw!r}") from None
            lora_add_to_style(lora=lora, strength=strength)
            messages.success(request, f"{lora.name} added to the project style.")
        elif action == "remove-from-style":
            lora_remove_from_style(lora=lora)
            messages.success(request, f"{lora.name} removed from the project style.")
        elif action == "deploy":
            note = lora_deploy(lora=lora)
            (messages.success if note.startswith("deployed") else messages.error)(request, note.capitalize())
        else:
            raise RegistryError(f"unknown action {action!r}")
    except RegistryError as exc:
        messages.error(request, str(exc))
    return _back(request, lora)

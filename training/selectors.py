"""Reads for curation and training; access through the project's visibility rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from characters.models import Character
from projects.selectors import AnyUser, project_ids_visible_to, project_user_can_write
from training.models import DatasetImage, LoraModel, ReviewStatus, TrainingJob, TrainingStatus


def character_active_loras(character: Character) -> list[dict[str, Any]]:
    """The character's active LoRA as generation's ``extra_loras`` (``settings.TOWER_CHARACTER_LORAS``)."""
    if character is None or character.pk is None:
        return []
    rows = LoraModel.objects.filter(character=character, active=True).values_list("name", "default_strength")
    return [{"name": name, "strength": strength} for name, strength in rows]


@dataclass(frozen=True)
class Readiness:
    approved: int
    needed: int

    @property
    def ready(self) -> bool:
        return self.approved >= self.needed

    @property
    def missing(self) -> int:
        return max(0, self.needed - self.approved)


def training_readiness(character: Character) -> Readiness:
    approved = DatasetImage.objects.filter(character=character, status=ReviewStatus.APPROVED).count()
    return Readiness(approved=approved, needed=settings.TOWER_TRAINING_MIN_IMAGES)


def approved_dataset(character: Character) -> QuerySet[DatasetImage]:
    return (
        DatasetImage.objects.filter(character=character, status=ReviewStatus.APPROVED)
        .select_related("character")
        .order_by("pk")
    )


def training_jobs_visible_to(user: AnyUser) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(character__project__in=project_ids_visible_to(user)).select_related(
        "character__project", "created_by"
    )


def training_job_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> TrainingJob:
    try:
        job = training_jobs_visible_to(user).get(pk=pk)
    except (TrainingJob.DoesNotExist, ValueError, TypeError):
        raise Http404("No such training job") from None
    if write and not project_user_can_write(project=job.character.project, user=user):
        raise PermissionDenied("You have read-only access to this project")
    return job


def loras_visible_to(user: AnyUser) -> QuerySet[LoraModel]:
    return LoraModel.objects.filter(project__in=project_ids_visible_to(user)).select_related("project", "character")


def lora_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> LoraModel:
    try:
        lora = loras_visible_to(user).get(pk=pk)
    except (LoraModel.DoesNotExist, ValueError, TypeError):
        raise Http404("No such LoRA") from None
    if write and not project_user_can_write(project=lora.project, user=user):
        raise PermissionDenied("You have read-only access to this project")
    return lora


def queue_positions(gpu: str) -> dict[int, int]:
    """{job id: 1-based place} of the queued jobs waiting for ``gpu`` (oldest first)."""
    ids = TrainingJob.objects.filter(status=TrainingStatus.QUEUED, gpu=gpu).order_by("created_at", "pk")
    return {pk: i for i, pk in enumerate(ids.values_list("pk", flat=True), start=1)}


def gpu_queues(gpus: list[str]) -> list[dict[str, Any]]:
    """Per slot: the running job and the queued ones in order (for the training page)."""
    live = list(
        TrainingJob.objects.filter(status__in=[TrainingStatus.QUEUED, TrainingStatus.RUNNING], gpu__in=gpus)
        .select_related("character")
        .order_by("created_at", "pk")
    )
    return [
        {
            "gpu": gpu,
            "running": next((j for j in live if j.gpu == gpu and j.status == TrainingStatus.RUNNING), None),
            "queued": [j for j in live if j.gpu == gpu and j.status == TrainingStatus.QUEUED],
        }
        for gpu in gpus
    ]

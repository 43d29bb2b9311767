"""The LoRA registry: register a trained file, deploy it to ComfyUI's LoRA folder, select it.

A LoRA is selectable in two ways: *active* for its character (one per character; generation adds
it to every job of that character through ``settings.TOWER_CHARACTER_LORAS``) and listed in the
project's style (``GenerationStyle.loras``, through projects' ``style_update``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from projects.models import GenerationStyle
from projects.services import style_update
from tower.core.errors import DomainError
from training.models import LoraModel, TrainingJob

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 100 * 1024 * 1024


class RegistryError(DomainError):
    """A LoRA cannot be registered, deployed or selected as asked."""


def check_safetensors(path: Path) -> None:
    """Raise :class:`RegistryError` unless ``path`` starts like a safetensors file (size + JSON header)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise RegistryError(f"{path.name} is not a safetensors file (only {size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
            raise RegistryError(f"{path.name} is not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RegistryError(f"{path.name} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise RegistryError(f"{path.name} is not a safetensors file (its header is not an object)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _unique_name(project_id: int, stem: str) -> str:
    name, n = f"{stem}.safetensors", 1
    while LoraModel.objects.filter(project_id=project_id, name=name).exists():
        n += 1
        name = f"{stem}-{n}.safetensors"
    return name


def lora_register(*, job: TrainingJob, path: Path) -> tuple[LoraModel, list[str]]:
    """Store ``path`` (a trainer's output) as the job's LoraModel and deploy it; (lora, notes for the log).

    Deployment problems (no folder configured, folder missing or unwritable) are notes, not errors:
    the LoRA is registered and can be deployed again from its page.
    """
    check_safetensors(path)
    character = job.character
    lora = LoraModel(
        project_id=character.project_id,
        character=character,
        training_job=job,
        name=_unique_name(character.project_id, path.stem),
        sha256=file_sha256(path),
        size_bytes=path.stat().st_size,
        base_model=job.base_model,
        trigger_word=job.trigger_word,
    )
    stored = None
    try:
        with transaction.atomic():
            with path.open("rb") as handle:
                lora.file.save(lora.name, File(handle), save=False)
            stored = lora.file.name
            lora.full_clean(exclude=["file"])
            lora.save()
    except ValidationError as exc:
        if stored:
            lora.file.storage.delete(stored)
        raise RegistryError("; ".join(exc.messages)) from None
    except BaseException:
        if stored:
            lora.file.storage.delete(stored)
        raise
    notes = [f"registered {lora.name} ({lora.size_bytes} bytes, sha256 {lora.sha256[:12]}…)"]
    notes.append(lora_deploy(lora=lora))
    return lora, notes


def lora_deploy(*, lora: LoraModel) -> str:
    """Copy the file into ``TOWER_COMFYUI_LORA_DIR``; say what happened (never raises for the folder)."""
    folder = (settings.TOWER_COMFYUI_LORA_DIR or "").strip()
    if not folder:
        return "not deployed: TOWER_COMFYUI_LORA_DIR is not set (copy the file to ComfyUI's models/loras yourself)"
    target_dir = Path(folder)
    if not target_dir.is_dir():
        return f"not deployed: the LoRA folder {target_dir} (TOWER_COMFYUI_LORA_DIR) does not exist"
    target = target_dir / lora.name
    tmp = target_dir / f".{lora.name}.tower-tmp"
    try:
        if target.exists() and file_sha256(target) != lora.sha256:
            return f"not deployed: {target} already exists with other content; rename this LoRA or remove that file"
        with lora.file.open("rb") as source, tmp.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                out.write(chunk)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return f"not deployed: cannot write {target}: {exc.strerror or exc}"
    LoraModel.objects.filter(pk=lora.pk).update(deployed_at=timezone.now())
    lora.deployed_at = timezone.now()
    transaction.on_commit(enqueue_backends_refresh)
    return f"deployed to {target}"


def enqueue_backends_refresh() -> None:
    from generation.tasks import async_task

    async_task("training.trainer.tasks.backends_refresh", task_name="lora-object-info", group="training")


@transaction.atomic
def lora_activate(*, lora: LoraModel) -> LoraModel:
    """Make ``lora`` the one its character's generations use."""
    if lora.character_id is None:
        raise RegistryError(f"{lora.name} belongs to no character; add it to the project style instead")
    siblings = LoraModel.objects.select_for_update().filter(character_id=lora.character_id)
    list(siblings)  # lock the character's LoRAs: two activations at once cannot both win
    siblings.filter(active=True).exclude(pk=lora.pk).update(active=False)
    LoraModel.objects.filter(pk=lora.pk).update(active=True)
    lora.active = True
    return lora


@transaction.atomic
def lora_deactivate(*, lora: LoraModel) -> LoraModel:
    LoraModel.objects.filter(pk=lora.pk).update(active=False)
    lora.active = False
    return lora


@transaction.atomic
def lora_add_to_style(*, lora: LoraModel, strength: float | None = None) -> list[dict[str, Any]]:
    """List ``lora`` in its project's style (replacing an entry of the same name); the new list."""
    strength = lora.default_strength if strength is None else strength
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not -5 <= strength <= 5:
        raise RegistryError(f"strength must be a number between -5 and 5, not {strength!r}")
    # Fresh and locked: the list is read, changed and written back.
    style = GenerationStyle.objects.select_for_update().get(project_id=lora.project_id)
    loras = [
        dict(item) for item in (style.loras or []) if not (isinstance(item, dict) and item.get("name") == lora.name)
    ]
    loras.append({"name": lora.name, "strength": float(strength)})
    try:
        return style_update(project=lora.project, loras=loras).loras
    except ValidationError as exc:
        raise RegistryError("; ".join(exc.messages)) from None


def lora_remove_from_style(*, lora: LoraModel) -> list[dict[str, Any]]:
    # Fresh and locked: the list is read, changed and written back.
    style = GenerationStyle.objects.select_for_update().get(project_id=lora.project_id)
    loras = [item for item in (style.loras or []) if not (isinstance(item, dict) and item.get("name") == lora.name)]
    return style_update(project=lora.project, loras=loras).loras

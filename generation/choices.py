"""What the enabled backends offer for a job's model and sampling choices (contract C2).

Read from each backend's cached ``/object_info`` (stored by the health poll): the combo lists of
the stock loader and sampler nodes. Pages call :func:`backend_choices` on every render, so the
answer is kept per set of (backend, digest) pairs: one small query when nothing changed.
"""

from __future__ import annotations

from typing import Any

from generation.models import BackendObjectInfo
from generation.services.reads import backend_object_info
from generation.workflow.preflight import input_specs

# choice key → the (node class, input) combos that list it, in either combo shape.
SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "checkpoints": (("CheckpointLoaderSimple", "ckpt_name"),),
    "vaes": (("VAELoader", "vae_name"),),
    "samplers": (("KSampler", "sampler_name"),),
    "schedulers": (("KSampler", "scheduler"),),
    "loras": (("LoraLoader", "lora_name"), ("LoraLoaderModelOnly", "lora_name")),
}

_cache: dict[str, Any] = {"key": None, "value": None}


def choices_from_object_info(info: dict[str, Any]) -> dict[str, set[str]]:
    """The values one backend's ``/object_info`` offers, per choice key."""
    found: dict[str, set[str]] = {key: set() for key in SOURCES}
    for key, sources in SOURCES.items():
        for class_type, name in sources:
            class_info = info.get(class_type)
            if not isinstance(class_info, dict):
                continue
            spec = input_specs(class_info).get(name)
            if spec is not None and spec.options:
                found[key].update(str(option) for option in spec.options if isinstance(option, str | int | float))
    return found


def backend_choices() -> dict[str, list[str]]:
    """The sorted union over enabled backends of checkpoints, VAEs, samplers, schedulers and LoRAs.

    Empty lists when no enabled backend has reported its nodes (a page then falls back to free text).
    """
    versions = tuple(
        BackendObjectInfo.objects.filter(backend__enabled=True)
        .order_by("backend_id")
        .values_list("backend_id", "digest", "fetched_at")
    )
    if _cache["key"] == versions:
        return {key: list(values) for key, values in _cache["value"].items()}
    union: dict[str, set[str]] = {key: set() for key in SOURCES}
    for backend_id, _digest, fetched_at in versions:
        info = backend_object_info(backend_id, fetched_at=fetched_at)
        for key, values in choices_from_object_info(info or {}).items():
            union[key] |= values
    value = {key: sorted(values, key=str.lower) for key, values in union.items()}
    _cache["key"], _cache["value"] = versions, value
    return {key: list(values) for key, values in value.items()}

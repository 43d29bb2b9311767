"""What a job will ask ComfyUI for: the project's style, the character, the scene and the request.

Precedence, lowest first: the template graph's own values, the project's
:class:`~projects.models.GenerationStyle` (with the draft or production preset for steps, CFG
and denoise) for the parameters the template says follow the style (``style_fields``; bindings
marked ``"style": true``), then the request's ``overrides``. Every
override is recorded in :attr:`Resolved.overrides_applied`, so a job says exactly where it left
the style, and reproducing it does not depend on the style staying the same.

Prompt order: trigger word, design prompt, the character's attributes by priority (highest
first; each its prompt tokens, else its value), version delta, variation delta, scene
(description, mood, camera, lighting), the scene's continuity memory
(:func:`projects.memory.memory_prompt`: its characters', story's and style's state, carried from
the episode's earlier scenes), the request's prompt, the style prompt. A variation that
``replaces`` an attribute type (an outfit variation: the outfit) leaves that attribute out, and
its tags out of the design prompt (see :mod:`characters.prompt`). Repeated tags appear once, at
their first place. Negative order: style negative,
character negative, the character's learned negatives (heaviest first, at most
``learned_negatives_limit``), version and variation negative deltas, the request's negative.

LoRAs: the style's list, with the style LoRA a scene's continuity memory names at the memory's
strength (:func:`projects.memory.memory_style_lora`; once, at the style's place, when the style has
it too), or ``overrides["loras"]``, which replaces both; followed by ``extra_loras``. The
character's trained LoRA lives in ``training``, which generation may not import: when
``extra_loras`` is None, the function named by ``settings.TOWER_CHARACTER_LORAS``
(``training.selectors.character_active_loras``) supplies the character's active LoRA.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from characters.models import Character, CharacterVersion, Variation
from characters.prompt import attribute_prompt_for, character_attributes, design_prompt_for, split_tags
from generation.workflow import STYLE_PARAMETERS, ParameterError, coerce_parameter
from projects.memory import memory_prompt, memory_style_lora
from projects.models import DEFAULT_SHEET_POSES, GenerationStyle, Mode, Project, Scene
from projects.services import model_name_problem
from tower.core.errors import DomainError

LEARNED_NEGATIVES_LIMIT = 12

# Style fields a request may override, with the range the style itself allows.
_STYLE_LIMITS: dict[str, tuple[float, float]] = {
    "steps": (1, 200),
    "cfg": (0, 30),
    "denoise": (0, 1),
    "width": (64, 8192),
    "height": (64, 8192),
    "clip_skip": (1, 12),
    "fps": (1, 120),
}
# The style fields a request may override: every style parameter but its two texts.
STYLE_OVERRIDES = STYLE_PARAMETERS - {"prompt", "negative"}
# Request parameters that have no style default.
REQUEST_PARAMETERS = frozenset(
    {
        "seed",
        "frames",
        "batch_size",
        "init_image",
        "reference_image",
        "reference_strength",
        "motion_strength",
        "motion_bucket",
        "augmentation",
        "min_cfg",
        "motion",
        "discontinuity",
    }
)
ALLOWED_OVERRIDES = STYLE_OVERRIDES | REQUEST_PARAMETERS


class ResolveError(DomainError):
    """The request cannot be resolved into job parameters."""


@dataclass(frozen=True)
class Resolved:
    prompt: str
    negative: str
    parameters: dict[str, Any]
    overrides_applied: dict[str, Any] = field(default_factory=dict)

    def as_workflow_params(self) -> dict[str, Any]:
        """Everything :func:`generation.workflow.apply` takes, without the unset values.

        An empty prompt or negative is unset too: the graph keeps the text its author wrote."""
        params = {k: v for k, v in self.parameters.items() if v is not None}
        texts = {k: v for k, v in (("prompt", self.prompt), ("negative", self.negative)) if v}
        return {**params, **texts}


def join_prompt(*pieces: str | None) -> str:
    """Join prompt pieces with ", ": no empty parts, doubled commas, stray whitespace or repeated tags."""
    seen: set[str] = set()
    tags: list[str] = []
    for piece in pieces:
        for raw in split_tags(piece or ""):
            tag = re.sub(r"\s+", " ", raw).strip()
            key = tag.lower()
            if tag and key not in seen:
                seen.add(key)
                tags.append(tag)
    return ", ".join(tags)


def _top_learned_negatives(learned: Any, limit: int) -> list[str]:
    if not isinstance(learned, dict):
        return []
    weighted = [
        (float(weight), term)
        for term, weight in learned.items()
        if isinstance(term, str) and isinstance(weight, int | float) and not isinstance(weight, bool) and weight > 0
    ]
    weighted.sort(key=lambda pair: (-pair[0], pair[1]))
    return [term for _weight, term in weighted[:limit]]


def _validate_override(name: str, value: Any) -> Any:
    if value is None:
        raise ResolveError(f"override '{name}' has no value; leave it out to use the style's")
    try:
        value = coerce_parameter(name, value)
    except ParameterError as exc:
        raise ResolveError(f"override {exc}") from exc
    if name in _STYLE_LIMITS:
        low, high = _STYLE_LIMITS[name]
        if not low <= value <= high:
            raise ResolveError(f"override {name} must be between {low} and {high}, not {value}")
    if name in ("width", "height") and value % 8:
        raise ResolveError(f"override {name} must be a multiple of 8, not {value}")
    if name == "loras":
        for item in value:
            if not -5 <= item["strength"] <= 5 or not -5 <= item["strength_clip"] <= 5:
                raise ResolveError(f"override loras: {item['name']} strength must be between -5 and 5")
    if name in ("checkpoint", "sampler", "scheduler") and not value.strip():
        raise ResolveError(f"override {name} cannot be empty")
    return value


def _merge_loras(base: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``base`` then ``extra``; a name in both keeps one entry, at its first place, with the later strength."""
    merged: dict[str, dict[str, Any]] = {}
    for item in [*base, *extra]:
        merged[item["name"]] = item
    return list(merged.values())


def _check_belongs(
    project: Project,
    character: Character | None,
    version: CharacterVersion | None,
    variation: Variation | None,
    scene: Scene | None,
) -> Character | None:
    for part in (version, variation):
        if part is None:
            continue
        if character is None:
            character = part.character
        elif part.character_id != character.pk:
            raise ResolveError(f"{part._meta.verbose_name} '{part}' is not one of {character}'s")
    if character is not None and character.project_id != project.pk:
        raise ResolveError(f"character '{character}' is not in project '{project}'")
    if scene is not None and scene.episode.project_id != project.pk:
        raise ResolveError(f"scene '{scene}' is not in project '{project}'")
    return character


def _character_loras(character: Character) -> list[dict[str, Any]]:
    """The character's own LoRAs, from the function ``settings.TOWER_CHARACTER_LORAS`` names (empty = none)."""
    path = getattr(settings, "TOWER_CHARACTER_LORAS", "")
    return list(import_string(path)(character)) if path else []


def _memory_loras(scene: Scene) -> list[dict[str, Any]]:
    """The style LoRA the scene's memory names, checked like the style's own (pre-flight then says
    whether the backend has the file)."""
    lora = memory_style_lora(scene)
    if lora is None:
        return []
    if problem := model_name_problem(lora["name"]):  # a memory written before its names were checked
        raise ResolveError(f"the scene's memory names a bad style LoRA {lora['name']!r}: it {problem}")
    return list(coerce_parameter("loras", [lora]))  # with strength_clip, like the style's


def resolve_job_parameters(
    *,
    project: Project,
    mode: str,
    character: Character | None = None,
    version: CharacterVersion | None = None,
    variation: Variation | None = None,
    scene: Scene | None = None,
    prompt: str = "",
    negative: str = "",
    overrides: dict[str, Any] | None = None,
    extra_loras: list[dict[str, Any]] | None = None,
    learned_negatives_limit: int = LEARNED_NEGATIVES_LIMIT,
    style_fields: Collection[str] | None = None,
) -> Resolved:
    """Compose the prompts and parameters of one job; see the module docstring for precedence.

    ``prompt`` and ``negative`` are the request's own text. ``overrides`` may set the style
    fields in :data:`STYLE_OVERRIDES` and the request parameters in :data:`REQUEST_PARAMETERS`;
    any other key, or an invalid value, raises :class:`ResolveError` naming it.

    ``style_fields`` names the parameters the template lets the style set
    (:func:`generation.workflow.style_parameters`; ``prompt`` and ``negative`` for the style's
    texts); the others are None, so the graph keeps its own values. None means every field (no
    template in view, e.g. a character's prompt preview).
    """
    if mode not in Mode.values:
        raise ResolveError(f"mode must be one of {', '.join(Mode.values)}, not {mode!r}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - ALLOWED_OVERRIDES)
    if unknown:
        hint = " (the request's text goes in prompt= and negative=)" if {"prompt", "negative"} & set(unknown) else ""
        raise ResolveError(
            f"unknown override(s): {', '.join(unknown)}{hint}; allowed: {', '.join(sorted(ALLOWED_OVERRIDES))}"
        )
    applied = {name: _validate_override(name, value) for name, value in overrides.items()}
    character = _check_belongs(project, character, version, variation, scene)
    if extra_loras is None and character is not None:
        extra_loras = _character_loras(character)
    try:
        extra = coerce_parameter("loras", list(extra_loras or []))
    except ParameterError as exc:
        raise ResolveError(f"extra {exc}") from exc
    try:
        style: GenerationStyle = project.style
    except GenerationStyle.DoesNotExist as exc:
        raise ResolveError(f"project '{project}' has no generation style") from exc

    try:
        style_loras = coerce_parameter("loras", list(style.loras or []))
    except ParameterError as exc:
        raise ResolveError(f"the project's style has invalid LoRAs: {exc}") from exc
    if scene is not None:
        style_loras = _merge_loras(style_loras, _memory_loras(scene))
    preset = style.preset(mode)
    parameters: dict[str, Any] = {
        "checkpoint": style.checkpoint or None,
        "vae": style.vae or None,
        "sampler": style.sampler,
        "scheduler": style.scheduler,
        "steps": preset["steps"],
        "cfg": preset["cfg"],
        "denoise": preset["denoise"],
        "width": style.width,
        "height": style.height,
        "clip_skip": style.clip_skip,
        "loras": style_loras,
        "fps": style.fps,
        "seed": None,  # drawn when the graph is built, unless the request gives one
    }
    if style_fields is not None:
        parameters = {
            name: (value if name in style_fields else ([] if name == "loras" else None))
            for name, value in parameters.items()
        }
    if style_fields is not None and "poses" in style_fields:  # a sheet's panels: the project's poses
        parameters["poses"] = list(project.sheet_poses or DEFAULT_SHEET_POSES)
    parameters.update(applied)
    if "vae" in applied and not applied["vae"]:
        parameters["vae"] = None  # an explicit "" means the checkpoint's own VAE
    parameters["loras"] = _merge_loras(parameters["loras"], extra)

    attributes = character_attributes(character) if character else []
    positive = join_prompt(
        character.trigger_word if character else "",
        design_prompt_for(character=character, variation=variation, attributes=attributes) if character else "",
        *(attribute_prompt_for(character=character, variation=variation, attributes=attributes) if character else []),
        version.prompt_delta if version else "",
        variation.prompt_delta if variation else "",
        scene.description if scene else "",
        scene.mood if scene else "",
        scene.camera if scene else "",
        scene.lighting if scene else "",
        memory_prompt(scene) if scene else "",
        prompt,
        style.style_prompt if style_fields is None or "prompt" in style_fields else "",
    )
    negative_text = join_prompt(
        style.negative_prompt if style_fields is None or "negative" in style_fields else "",
        character.negative_prompt if character else "",
        ", ".join(_top_learned_negatives(character.learned_negatives, learned_negatives_limit)) if character else "",
        version.negative_delta if version else "",
        variation.negative_delta if variation else "",
        negative,
    )
    return Resolved(prompt=positive, negative=negative_text, parameters=parameters, overrides_applied=applied)

"""The kohya sd-scripts training config: defaults, what a user may change, and validation. No Django.

The dict is stored on the job (``TrainingJob.config``) and written as the ``--config_file`` TOML;
paths (``train_data_dir``, ``output_dir``, ``logging_dir``) are filled in when the work folder
is laid out, so a stored config never points at another machine's folders.
"""

from __future__ import annotations

import re
from typing import Any


class ConfigError(ValueError):
    """An option has an unknown name or a value out of range."""


DEFAULTS: dict[str, Any] = {
    "network_module": "networks.lora",
    "network_dim": 32,
    "network_alpha": 16,
    "learning_rate": 1e-4,
    "unet_lr": 1e-4,
    "text_encoder_lr": 5e-5,
    "lr_scheduler": "cosine_with_restarts",
    "optimizer_type": "AdamW8bit",
    "max_train_epochs": 10,
    "save_every_n_epochs": 0,
    "resolution": "512,512",
    "enable_bucket": True,
    "train_batch_size": 1,
    "mixed_precision": "fp16",
    "save_precision": "fp16",
    "save_model_as": "safetensors",
    "caption_extension": ".txt",
    "seed": 42,
    "clip_skip": 2,
    "cache_latents": True,
    "gradient_checkpointing": True,
    "max_data_loader_n_workers": 1,
    "log_prefix": "tower",
}

# name → (type, low, high) for numbers, or (str, allowed values | regex) for text.
_NUMBERS: dict[str, tuple[type, float, float]] = {
    "network_dim": (int, 1, 1024),
    "network_alpha": (float, 0.01, 1024),
    "learning_rate": (float, 1e-8, 1.0),
    "unet_lr": (float, 1e-8, 1.0),
    "text_encoder_lr": (float, 0.0, 1.0),
    "max_train_epochs": (int, 1, 1000),
    "save_every_n_epochs": (int, 0, 1000),
    "train_batch_size": (int, 1, 64),
    "seed": (int, 0, 2**32 - 1),
    "clip_skip": (int, 1, 12),
    "max_data_loader_n_workers": (int, 0, 64),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "mixed_precision": ("no", "fp16", "bf16"),
    "save_precision": ("float", "fp16", "bf16"),
    "lr_scheduler": (
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant",
        "constant_with_warmup",
        "adafactor",
    ),
    "optimizer_type": ("AdamW", "AdamW8bit", "Lion", "Lion8bit", "SGDNesterov", "DAdaptation", "Prodigy", "Adafactor"),
    "network_module": ("networks.lora", "networks.dylora", "lycoris.kohya"),
}
_FLAGS = ("enable_bucket", "cache_latents", "gradient_checkpointing")
_RESOLUTION = re.compile(r"^\s*(\d{2,5})\s*(?:,\s*(\d{2,5})\s*)?$")
# Fixed by Tower: the registry expects a .safetensors next to output_name, captions in .txt files.
FIXED = {"save_model_as": "safetensors", "caption_extension": ".txt"}
EDITABLE = frozenset({*_NUMBERS, *_CHOICES, *_FLAGS, "resolution"})


def _number(name: str, value: Any) -> int | float:
    kind, low, high = _NUMBERS[name]
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, not {value!r}")
    try:
        number = kind(float(value)) if kind is int else float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, not {value!r}") from None
    if kind is int and float(value) != int(float(value)):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, not {value}")
    return number


def _resolution(value: Any) -> str:
    m = _RESOLUTION.match(str(value))
    if not m:
        raise ConfigError(f"resolution must be like 512 or 768,512, not {value!r}")
    width, height = int(m[1]), int(m[2] or m[1])
    for side in (width, height):
        if not 256 <= side <= 4096 or side % 64:
            raise ConfigError(f"resolution sides must be multiples of 64 between 256 and 4096, not {side}")
    return f"{width},{height}"


def build_config(options: dict[str, Any] | None, *, base_model: str, output_name: str) -> dict[str, Any]:
    """DEFAULTS with the user's ``options`` applied, validated; raises :class:`ConfigError` naming the option."""
    options = dict(options or {})
    unknown = sorted(set(options) - EDITABLE - set(FIXED))
    if unknown:
        raise ConfigError(f"unknown trainer option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(EDITABLE))}")
    config = dict(DEFAULTS)
    for name, value in options.items():
        if value is None or value == "":
            continue
        if name in FIXED:
            if value != FIXED[name]:
                raise ConfigError(f"{name} is fixed to {FIXED[name]!r} (Tower registers that file)")
        elif name in _NUMBERS:
            config[name] = _number(name, value)
        elif name in _CHOICES:
            if value not in _CHOICES[name]:
                raise ConfigError(f"{name} must be one of {', '.join(_CHOICES[name])}, not {value!r}")
            config[name] = value
        elif name in _FLAGS:
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, not {value!r}")
            config[name] = value
        elif name == "resolution":
            config[name] = _resolution(value)
    if not base_model.strip():
        raise ConfigError("no base model: choose one, or set TOWER_TRAINER_BASE_MODEL to the checkpoint to train on")
    config["pretrained_model_name_or_path"] = base_model.strip()
    config["output_name"] = output_name
    config.update(FIXED)
    return config

"""Typed readers for settings that come from the environment.

Each helper fails with :class:`SettingsError` naming the variable, so a bad value stops
start-up with a message a producer can act on instead of a traceback deep inside Django.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(Exception):
    """A setting read from the environment has a value Tower cannot use."""


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    value = env.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name} must be a boolean (true/false, 1/0, yes/no, on/off); got {value!r}")


def env_int(
    name: str,
    default: int,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None or value == "":
        result = default
    else:
        try:
            result = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number; got {value!r}") from None
    if min_value is not None and result < min_value:
        raise SettingsError(f"{name} must be at least {min_value}; got {result}")
    if max_value is not None and result > max_value:
        raise SettingsError(f"{name} must be at most {max_value}; got {result}")
    return result


def env_float(
    name: str,
    default: float,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    value = _raw(name, environ)
    if value is None or value == "":
        result = default
    else:
        try:
            result = float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number; got {value!r}") from None
    if min_value is not None and result < min_value:
        raise SettingsError(f"{name} must be at least {min_value}; got {result}")
    if max_value is not None and result > max_value:
        raise SettingsError(f"{name} must be at most {max_value}; got {result}")
    return result


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    value = _raw(name, environ)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path, *, environ: Mapping[str, str] | None = None) -> Path:
    value = _raw(name, environ)
    path = default if value is None or value == "" else Path(value).expanduser()
    return path.resolve()


def env_secret(name: str, *, default: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """Read ``NAME`` or the file named by ``NAME_FILE`` (Docker/K8s secrets); not both."""
    value = _raw(name, environ)
    file_name = _raw(f"{name}_FILE", environ)
    if value and file_name:
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    if value:
        return value
    if file_name:
        try:
            content = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE points at {file_name!r}, which cannot be read: {exc.strerror}") from None
        if not content:
            raise SettingsError(f"{name}_FILE points at {file_name!r}, which is empty")
        return content
    return default

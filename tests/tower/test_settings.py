"""Settings from the environment: a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tower.core.env import (
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path,
    env_secret,
    env_str,
)

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "manage.py"

# Variables of the surrounding environment that would change what a start-up sees.
_SCRUBBED = re.compile(
    r"^(DATABASE_URL|REDIS_URL|REDIS_PREFIX|SECRET_KEY(_FILE)?|DEBUG|TOWER_\w+|COMFYUI_\w+|MEDIA_ROOT|"
    r"STATIC_ROOT|ALLOWED_HOSTS|CSRF_TRUSTED_ORIGINS|DB_CONN_MAX_AGE|LOG_LEVEL|TIME_ZONE)$"
)


def clean_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not _SCRUBBED.match(name)}
    env["TOWER_VAR_DIR"] = str(tmp_path / "var")
    env.update(overrides)
    return env


def manage_check(env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MANAGE), "check"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_clean_environment_starts(tmp_path):
    result = manage_check(clean_env(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "Tower cannot start" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("TOWER_WORKERS", "lots"),
        ("TOWER_WORKERS", "0"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "postgres://tower:pw@db:notaport/tower"),
        ("DATABASE_URL", "mysql://tower:hunter2secret@db/tower"),
        ("REDIS_URL", "http://127.0.0.1:6379/0"),
        ("SECRET_KEY", "too-short"),
        ("SECRET_KEY_FILE", "/nonexistent/tower/secret_key"),
        ("COMFYUI_VRAM_HOLD", "1.5"),
        ("COMFYUI_TIMEOUT", "soon"),
        ("TOWER_HEALTH_MIN_FREE_BYTES", "-1"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, variable, value):
    result = manage_check(clean_env(tmp_path, **{variable: value}))

    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("Tower cannot start:"), message
    assert variable in message
    assert "Traceback" not in result.stderr
    assert "hunter2secret" not in result.stderr  # a password in a rejected URL is not echoed


def test_an_empty_secret_key_file_is_refused(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("\n")

    result = manage_check(clean_env(tmp_path, SECRET_KEY_FILE=str(key_file)))

    assert result.returncode == 2
    assert "SECRET_KEY_FILE" in result.stderr
    assert "empty" in result.stderr


# --- .env.example ---------------------------------------------------------------------------------

_ENV_CALL = re.compile(r"\benv_(str|bool|int|float|list|path|secret)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']")


def variables_read_by(*paths: Path) -> set[str]:
    names = set()
    for path in paths:
        for helper, name in _ENV_CALL.findall(path.read_text()):
            names.add(name)
            if helper == "secret":
                names.add(f"{name}_FILE")
    return names


def settings_variables() -> set[str]:
    return variables_read_by(ROOT / "tower" / "settings.py")


def example_variables() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            pairs[match[1]] = match[2]
    return pairs


def test_settings_are_read_with_the_env_helpers():
    # Guards the parser below: if settings stopped using the helpers, the next test would pass
    # vacuously.
    assert {"DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL", "REDIS_URL"} <= settings_variables()


def test_env_example_lists_every_variable_settings_reads():
    missing = settings_variables() - set(example_variables())

    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_lists_only_variables_tower_reads():
    commands = sorted((ROOT / "tower" / "management" / "commands").glob("*.py"))
    read = variables_read_by(ROOT / "tower" / "settings.py", *commands)

    unknown = sorted(set(example_variables()) - read)

    assert not unknown, f".env.example lists variables nothing reads: {unknown}"


def test_env_example_values_are_valid_defaults(tmp_path):
    # Copying .env.example to .env and exporting it must start Tower as if nothing were set.
    env = clean_env(tmp_path, **example_variables())  # TOWER_VAR_DIR=var: under tmp_path, the cwd

    result = manage_check(env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "secret_key").exists()


# --- tower.core.env helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("False", False), ("off", False)],
)
def test_env_bool_reads_the_usual_spellings(raw, expected):
    assert env_bool("FLAG", not expected, environ={"FLAG": raw}) is expected


def test_env_bool_falls_back_to_the_default_when_unset_or_empty():
    assert env_bool("FLAG", True, environ={}) is True
    assert env_bool("FLAG", True, environ={"FLAG": ""}) is True


def test_env_bool_rejects_anything_else():
    with pytest.raises(SettingsError, match=r"FLAG must be a boolean.*'maybe'"):
        env_bool("FLAG", False, environ={"FLAG": "maybe"})


def test_env_int_reads_and_bounds():
    assert env_int("N", 2, environ={"N": " 8 "}) == 8
    assert env_int("N", 2, environ={"N": ""}) == 2
    assert env_int("N", 2, environ={}) == 2
    with pytest.raises(SettingsError, match=r"N must be a whole number; got '2\.5'"):
        env_int("N", 2, environ={"N": "2.5"})
    with pytest.raises(SettingsError, match="N must be at least 1; got 0"):
        env_int("N", 2, min_value=1, environ={"N": "0"})
    with pytest.raises(SettingsError, match="N must be at most 64; got 65"):
        env_int("N", 2, max_value=64, environ={"N": "65"})


def test_env_int_checks_the_default_too():
    with pytest.raises(SettingsError, match="N must be at least 1"):
        env_int("N", 0, min_value=1, environ={})


def test_env_float_reads_and_bounds():
    assert env_float("F", 0.8, environ={"F": "0.5"}) == 0.5
    assert env_float("F", 0.8, environ={}) == 0.8
    with pytest.raises(SettingsError, match="F must be a number"):
        env_float("F", 0.8, environ={"F": "half"})
    with pytest.raises(SettingsError, match=r"F must be at most 1.0; got 1.5"):
        env_float("F", 0.8, max_value=1.0, environ={"F": "1.5"})
    with pytest.raises(SettingsError, match=r"F must be at least 0.0"):
        env_float("F", 0.8, min_value=0.0, environ={"F": "-0.1"})


def test_env_list_splits_on_commas_and_drops_blanks():
    assert env_list("L", ["a"], environ={"L": " x , y,,z "}) == ["x", "y", "z"]
    assert env_list("L", ["a"], environ={"L": ""}) == ["a"]
    default = ["a"]
    assert env_list("L", default, environ={}) is not default  # callers may mutate their copy


def test_env_str_treats_empty_as_unset():
    assert env_str("S", "dflt", environ={"S": ""}) == "dflt"
    assert env_str("S", "dflt", environ={"S": " value "}) == "value"


def test_env_path_expands_and_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert env_path("P", tmp_path / "d", environ={"P": "~/media"}) == (tmp_path / "media").resolve()
    assert env_path("P", tmp_path / "d", environ={}) == (tmp_path / "d").resolve()
    assert env_path("P", tmp_path / "d", environ={"P": str(tmp_path / "a" / ".." / "b")}) == tmp_path / "b"


def test_env_secret_reads_the_value_or_its_file(tmp_path):
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file\n")

    assert env_secret("KEY", environ={"KEY": "direct"}) == "direct"
    assert env_secret("KEY", environ={"KEY_FILE": str(secret_file)}) == "from-a-file"
    assert env_secret("KEY", environ={}) is None
    assert env_secret("KEY", default="fallback", environ={"KEY": ""}) == "fallback"


def test_env_secret_refuses_both_a_value_and_a_file(tmp_path):
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file")

    with pytest.raises(SettingsError, match="set KEY or KEY_FILE, not both"):
        env_secret("KEY", environ={"KEY": "direct", "KEY_FILE": str(secret_file)})


def test_env_secret_names_an_unreadable_or_empty_file(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("  \n")

    with pytest.raises(SettingsError, match=r"KEY_FILE points at .*missing.*cannot be read"):
        env_secret("KEY", environ={"KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match=r"KEY_FILE points at .* which is empty"):
        env_secret("KEY", environ={"KEY_FILE": str(empty)})


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6399/3", "redis://127.0.0.1:6399/3?health_check_interval=5"])
def test_the_task_broker_gives_up_on_a_silent_redis(tmp_path, url):
    """A Redis that hangs instead of refusing must not hold a worker (or the engine) forever."""
    code = (
        "from django_q.brokers import get_broker;"
        "kw = get_broker().connection.connection_pool.connection_kwargs;"
        "print('broker', kw['socket_timeout'], kw['socket_connect_timeout'], kw.get('health_check_interval'), kw['db'])"
    )
    result = subprocess.run(
        [sys.executable, str(MANAGE), "shell", "-c", code],
        env=clean_env(tmp_path, REDIS_URL=url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("broker "))
    timeout, connect, health, db = line.split()[1:]
    assert (float(timeout), float(connect), db) == (30.0, 5.0, "3")
    assert health == ("5" if "health" in url else "None")  # what the URL asked for is kept

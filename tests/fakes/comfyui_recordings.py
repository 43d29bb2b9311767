"""Access to the recordings of a real ComfyUI 0.3.64, kept in the repository under tests/fakes/recordings/."""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

# TOWER_COMFYUI_RECORDINGS points at a newer set of recordings when checking the fake against them.
RECORDINGS_DIR = Path(os.environ.get("TOWER_COMFYUI_RECORDINGS") or Path(__file__).resolve().parent / "recordings")


@cache
def _load(name: str) -> Any:
    path = RECORDINGS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"ComfyUI recording {path} is missing (the repository ships them under tests/fakes/recordings/)"
        )
    return json.loads(path.read_text())


def recording(name: str) -> Any:
    """A deep copy of a recorded JSON file, safe to modify."""
    return copy.deepcopy(_load(name))


def object_info_full() -> dict[str, dict]:
    return recording("object_info_full.json")


def body(name: str, key: str | None = None) -> Any:
    record = recording(name)
    if key is not None:
        record = record[key]
    return record["body"]


def ws_scenarios() -> list[dict]:
    """Each recorded WebSocket scenario: its header plus the messages received, in order."""
    scenarios: list[dict] = []
    for line in (RECORDINGS_DIR / "ws_messages.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "scenario_header" in row:
            scenarios.append({**row["scenario_header"], "messages": []})
        else:
            scenarios[-1]["messages"].append(row)
    return scenarios

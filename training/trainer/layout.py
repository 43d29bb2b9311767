"""The work folder kohya sd-scripts reads. No Django.

::

    <work_dir>/
      config.toml                 the --config_file (tomli_w)
      img/<repeats>_<trigger> <class>/
        <image id>.<ext>          each approved image, copied
        <image id>.txt            its caption, trigger word first
      output/                     <output_name>.safetensors appears here
      logs/

kohya reads the repeat count and the instance prompt from the folder name, so the trigger word and
class word must be safe as one path component; :func:`check_word` says why when they are not.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

_WORD = re.compile(r"^[\w][\w.\- ]{0,63}$")


class LayoutError(ValueError):
    """The dataset cannot be laid out (bad word, missing image file)."""


@dataclass(frozen=True)
class Entry:
    source: Path  # the stored image
    stem: str  # file name without extension in the dataset folder
    caption: str


def check_word(label: str, word: str) -> str:
    word = word.strip()
    if not word:
        raise LayoutError(f"the {label} is empty")
    if not _WORD.match(word) or ".." in word:
        raise LayoutError(
            f"the {label} {word!r} can only hold letters, digits, spaces, '.', '-' and '_' (it names a folder)"
        )
    return word


def subset_folder_name(*, repeats: int, trigger_word: str, class_word: str) -> str:
    trigger = check_word("trigger word", trigger_word)
    klass = check_word("class word", class_word) if class_word.strip() else ""
    return f"{repeats}_{trigger} {klass}".rstrip()


def write_work_dir(
    work_dir: Path,
    *,
    entries: list[Entry],
    repeats: int,
    trigger_word: str,
    class_word: str,
    config: dict[str, Any],
) -> Path:
    """Lay out ``work_dir`` (replacing an earlier dataset folder) and return the config path.

    ``config`` is completed with the folders; values that are None are left out (TOML has no null).
    """
    work_dir = Path(work_dir)
    img_root = work_dir / "img"
    if img_root.exists():
        shutil.rmtree(img_root)  # a retried run starts from the snapshot, not from leftovers
    subset = img_root / subset_folder_name(repeats=repeats, trigger_word=trigger_word, class_word=class_word)
    subset.mkdir(parents=True)
    (work_dir / "output").mkdir(exist_ok=True)
    (work_dir / "logs").mkdir(exist_ok=True)
    for entry in entries:
        if not entry.source.is_file():
            raise LayoutError(f"dataset image file {entry.source.name} is missing from storage")
        suffix = entry.source.suffix.lower() or ".png"
        shutil.copyfile(entry.source, subset / f"{entry.stem}{suffix}")
        (subset / f"{entry.stem}.txt").write_text(entry.caption.strip() + "\n", encoding="utf-8")
    full = {
        **{k: v for k, v in config.items() if v is not None},
        "train_data_dir": str(img_root),
        "output_dir": str(work_dir / "output"),
        "logging_dir": str(work_dir / "logs"),
    }
    path = work_dir / "config.toml"
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_bytes(tomli_w.dumps(full).encode())
    os.replace(tmp, path)
    return path

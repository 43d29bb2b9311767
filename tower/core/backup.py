"""Backups: a consistent copy of the database, the media files, and a manifest of both.

A backup directory holds ``database.sqlite3`` (SQLite's online backup API: one consistent
snapshot, taken while workers write) or ``database.pgdump`` (``pg_dump``'s custom format), the
media tree under ``media/``, and ``manifest.json``: every file's size and sha256, the database
vendor, Tower's version and the migrations applied. The database is copied first and the media
after it: the engine writes an output's file before it commits the row, so every row in the
copy finds its file, whatever the workers do meanwhile. The manifest is written last; a
directory without one is an unfinished backup.

Restore checks everything before it touches anything: the manifest, each file's size and
sha256, no file that the manifest does not list, the vendor, and migrations this code knows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from tower.core.errors import DomainError

FORMAT = 1
MANIFEST = "manifest.json"
MEDIA = "media"
DATABASE_FILES = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
CHUNK = 1024 * 1024

Say = Callable[[str], None]


class BackupError(DomainError):
    pass


@dataclass(frozen=True)
class Manifest:
    vendor: str
    database_file: str
    migrations: list[str]
    files: dict[str, dict[str, Any]]  # relative POSIX path → {"size", "sha256"}
    tower_version: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created_at": self.created_at,
            "tower_version": self.tower_version,
            "database": {"vendor": self.vendor, "file": self.database_file, "migrations": self.migrations},
            "files": self.files,
        }


def _tower_version() -> str:
    try:
        return metadata.version("tower")
    except metadata.PackageNotFoundError:
        return "unknown"


def _size(num: int) -> str:
    return f"{num / 1024 / 1024:.1f} MB" if num >= 1024 * 1024 else f"{num / 1024:.1f} KB"


def sha256_file(path: Path) -> str:
    with path.open("rb") as src:
        return hashlib.file_digest(src, "sha256").hexdigest()


def _copy_hashing(src: Path, dst: Path) -> dict[str, Any]:
    """Copy one file, hashing what was written (one read of the source)."""
    digest = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as reader, dst.open("wb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    shutil.copystat(src, dst)
    return {"size": size, "sha256": digest.hexdigest()}


def _entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def applied_migrations(connection: BaseDatabaseWrapper) -> list[str]:
    return sorted(f"{app}.{name}" for app, name in MigrationRecorder(connection).applied_migrations())


def known_migrations() -> set[str]:
    """The migrations this code ships (read from disk: no database needed)."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return {f"{app}.{name}" for app, name in loader.disk_migrations}


# --- database copies ---------------------------------------------------------------------------


def _pg_env(settings_dict: dict[str, Any]) -> dict[str, str]:
    """libpq's environment for the connection (keeps the password off the command line)."""
    env = dict(os.environ)
    pairs = {
        "PGHOST": settings_dict.get("HOST"),
        "PGPORT": settings_dict.get("PORT"),
        "PGUSER": settings_dict.get("USER"),
        "PGPASSWORD": settings_dict.get("PASSWORD"),
        "PGDATABASE": settings_dict.get("NAME"),
    }
    env.update({key: str(value) for key, value in pairs.items() if value})
    return env


def _run(command: list[str], env: dict[str, str]) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} not found: install PostgreSQL's client tools (postgresql-client)")
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def _database_dump(connection: BaseDatabaseWrapper, target: Path) -> None:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        with sqlite3.connect(target) as copy:
            # One step (all pages at once): a snapshot of one moment even while workers write.
            connection.connection.backup(copy)
            # The copy inherits WAL mode; a reader would leave -wal/-shm files beside it (not in the
            # manifest): one self-contained file instead.
            copy.execute("PRAGMA journal_mode=DELETE")
        copy.close()
    else:
        _run(
            ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={target}"],
            _pg_env(connection.settings_dict),
        )


def _database_load(connection: BaseDatabaseWrapper, source: Path) -> None:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as copy:
            copy.backup(connection.connection)
        copy.close()
        connection.close()  # start afresh on the restored file
    else:
        connection.close()
        _run(
            ["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
             "--exit-on-error", f"--dbname={connection.settings_dict['NAME']}", str(source)],
            _pg_env(connection.settings_dict),
        )  # fmt: skip


# --- backup ------------------------------------------------------------------------------------


def backup_create(*, target: Path, connection: BaseDatabaseWrapper, media_root: Path, say: Say) -> Manifest:
    """Write a backup into ``target`` (absent or empty)."""
    if connection.vendor not in DATABASE_FILES:
        raise BackupError(f"cannot back up a {connection.vendor} database (SQLite or PostgreSQL only)")
    if target.resolve().is_relative_to(media_root.resolve()):
        raise BackupError(f"{target} is inside MEDIA_ROOT ({media_root}): the backup would copy itself")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} is not an empty directory: choose a new one for each backup")
    target.mkdir(parents=True, exist_ok=True)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    database_file = DATABASE_FILES[connection.vendor]

    say(f"database ({connection.vendor}): copying…")
    migrations = applied_migrations(connection)
    _database_dump(connection, target / database_file)
    files = {database_file: _entry(target / database_file)}
    say(f"database: {_size(files[database_file]['size'])}")

    copied = total = 0
    if media_root.is_dir():
        for src in sorted(media_root.rglob("*")):
            if not src.is_file() or src.is_symlink():
                continue
            rel = src.relative_to(media_root).as_posix()
            try:
                files[f"{MEDIA}/{rel}"] = entry = _copy_hashing(src, target / MEDIA / rel)
            except FileNotFoundError:
                continue  # deleted since the listing (a job or asset removed meanwhile)
            copied += 1
            total += entry["size"]
            if copied % 500 == 0:
                say(f"media: {copied} files ({_size(total)})…")
    say(f"media: {copied} files ({_size(total)})")

    manifest = Manifest(connection.vendor, database_file, migrations, files, _tower_version(), created_at)
    partial = target / f"{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=True), encoding="utf-8")
    partial.replace(target / MANIFEST)
    say(f"manifest: {len(files)} files, sha256 each; backup complete in {target}")
    return manifest


# --- verify and restore ------------------------------------------------------------------------


def _safe_relative(rel: str) -> bool:
    path = PurePosixPath(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts and "\\" not in rel


def manifest_read(source: Path) -> Manifest:
    path = source / MANIFEST
    if not source.is_dir():
        raise BackupError(f"{source} is not a directory")
    if not path.is_file():
        raise BackupError(f"{source} has no {MANIFEST}: not a backup, or one that did not finish")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise BackupError(f"{MANIFEST} has format {data.get('format')!r}; this Tower reads format {FORMAT}")
        database = data["database"]
        manifest = Manifest(
            vendor=str(database["vendor"]),
            database_file=str(database["file"]),
            migrations=[str(m) for m in database["migrations"]],
            files={str(k): {"size": int(v["size"]), "sha256": str(v["sha256"])} for k, v in data["files"].items()},
            tower_version=str(data.get("tower_version", "unknown")),
            created_at=str(data.get("created_at", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"{MANIFEST} is not a valid manifest ({exc.__class__.__name__}: {exc})") from None
    unsafe = [rel for rel in manifest.files if not _safe_relative(rel)]
    if unsafe:
        raise BackupError(f"{MANIFEST} names paths outside the backup: {unsafe[:3]}")
    if manifest.database_file not in manifest.files:
        raise BackupError(f"{MANIFEST} does not list the database file {manifest.database_file}")
    return manifest


def backup_verify(*, source: Path, vendor: str, known: set[str], say: Say) -> Manifest:
    """Check a backup completely; raise BackupError naming the first problems found."""
    manifest = manifest_read(source)
    if manifest.vendor != vendor:
        raise BackupError(
            f"this backup holds a {manifest.vendor} database and this Tower runs on {vendor}: "
            "restore it with the same database (DATABASE_URL) it was made from"
        )
    newer = sorted(set(manifest.migrations) - known)
    if newer:
        raise BackupError(
            f"this backup was made by a newer Tower ({manifest.tower_version}): migrations unknown here: "
            f"{', '.join(newer[:5])}; upgrade Tower first"
        )
    problems: list[str] = []
    for rel, expected in manifest.files.items():
        path = source / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {expected['size']}")
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"{rel}: sha256 differs from the manifest (changed since the backup)")
    listed = set(manifest.files) | {MANIFEST}
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.relative_to(source).as_posix() not in listed:
            problems.append(f"{path.relative_to(source).as_posix()}: not in the manifest")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BackupError(f"backup {source} fails verification: {'; '.join(problems[:5])}{more}")
    say(
        f"verified: {len(manifest.files)} files match the manifest "
        f"(made {manifest.created_at}, Tower {manifest.tower_version})"
    )
    return manifest


def backup_restore(
    *, source: Path, manifest: Manifest, connection: BaseDatabaseWrapper, media_root: Path, say: Say
) -> None:
    """Replace the database with the backup's and copy its media files in (call after verifying)."""
    say(f"database ({manifest.vendor}): restoring…")
    _database_load(connection, source / manifest.database_file)
    say("database: restored")
    media = sorted(rel for rel in manifest.files if rel.startswith(f"{MEDIA}/"))
    for count, rel in enumerate(media, start=1):
        dst = media_root / rel.removeprefix(f"{MEDIA}/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dst)
        if count % 500 == 0:
            say(f"media: {count} of {len(media)} files…")
    say(f"media: {len(media)} files restored into {media_root}")

"""Zip archives of images, read without trusting them (no Django).

An archive is refused as a whole, before anything is added, when a member name is absolute or has
``..`` parts, a member is a symlink or encrypted, there are more members than allowed, or the
uncompressed size is over the limit. Headers can lie about sizes (a zip bomb), so ``verify``
decompresses every member once counting the bytes it really produces, and stops as soon as the
count passes the limit. Names are only labels: nothing in an archive ever reaches the filesystem
under its own name.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from tower.core.errors import DomainError

CHUNK = 1024 * 1024
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class ArchiveError(DomainError):
    """The archive is refused; the message names the offending member."""


def is_zip(head: bytes) -> bool:
    return head[:4] in ZIP_MAGIC


def _skippable(name: str) -> bool:
    # Folders and the metadata macOS and Windows add are not images anyone meant to send.
    parts = PurePosixPath(name).parts
    return name.endswith("/") or any(p == "__MACOSX" or p.startswith(".") for p in parts) or parts[-1] == "Thumbs.db"


def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive or name.startswith(("/", "\\")):
        raise ArchiveError(f"member “{name}” has an absolute path; archive refused")
    if ".." in posix.parts:
        raise ArchiveError(f"member “{name}” has '..' in its path; archive refused")
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        raise ArchiveError(f"member “{name}” is a symbolic link; archive refused")
    if info.flag_bits & 0x1:
        raise ArchiveError(f"member “{name}” is encrypted; archive refused")


def image_members(path: Path, *, max_bytes: int, max_members: int) -> list[zipfile.ZipInfo]:
    """The members to read, after checking names and declared sizes. Raises ``ArchiveError``."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"not a readable zip archive ({exc})") from None
    if len(infos) > max_members:
        raise ArchiveError(f"the archive has {len(infos):,} members; the limit is {max_members:,}")
    declared = 0
    members = []
    for info in infos:
        _check_name(info)
        declared += info.file_size
        if declared > max_bytes:
            raise ArchiveError(
                f"the archive unpacks to more than {max_bytes:,} bytes (at member “{info.filename}”); archive refused"
            )
        if not _skippable(info.filename):
            members.append(info)
    return members


def verify(path: Path, members: list[zipfile.ZipInfo], *, max_bytes: int) -> None:
    """Decompress every member once, counting real bytes (headers can lie), and check CRCs."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in members:
            produced = 0
            try:
                with archive.open(info) as stream:
                    while chunk := stream.read(CHUNK):
                        produced += len(chunk)
                        total += len(chunk)
                        if produced > info.file_size or total > max_bytes:
                            raise ArchiveError(
                                f"member “{info.filename}” unpacks to more than its header says "
                                f"or past the {max_bytes:,}-byte limit (zip bomb); archive refused"
                            )
            except ArchiveError:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
                raise ArchiveError(f"member “{info.filename}” cannot be read ({exc}); archive refused") from None


def read_members(path: Path, members: list[zipfile.ZipInfo], *, max_member_bytes: int) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each member, at most ``max_member_bytes`` + 1 bytes each (the image check refuses more)."""
    with zipfile.ZipFile(path) as archive:
        for info in members:
            with archive.open(info) as stream:
                yield info.filename, stream.read(max_member_bytes + 1)

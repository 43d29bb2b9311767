"""Downloads through yt-dlp: YouTube or any URL it supports (a direct file URL through its generic extractor).

One entry point, ``download``; its own error type; a socket timeout; a size bound; no playlist
unless asked; a progress hook the caller turns into the batch's progress.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tower.core.errors import DomainError
from tower.core.netguard import BlockedAddressError, check_public_url, public_connections_only

# At most 1080p, one file (no merge step, so no ffmpeg needed): frames are all that is used.
FORMAT = "best[height<=1080]/bestvideo[height<=1080]/best/bestvideo"
SOCKET_TIMEOUT = 30.0


class DownloadError(DomainError):
    """The URL could not be downloaded; the message says why."""


class _Log:
    """yt-dlp's logger: keep the last error for the user's message, stay quiet otherwise."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.errors.append(msg.removeprefix("ERROR: ").strip())


def check_url(url: str) -> str:
    """The URL, stripped, when it is http(s) and its host is a public address (or allowed by
    TOWER_INGEST_ALLOWED_HOSTS); otherwise DownloadError saying why. Checked when a batch is
    submitted and again by the worker (the host's DNS answer may have changed)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DownloadError("enter an http:// or https:// address")
    try:
        check_public_url(url)
    except BlockedAddressError as exc:
        raise DownloadError(str(exc)) from None
    return url


def download(
    url: str,
    *,
    dest: Path,
    max_bytes: int,
    playlist: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = SOCKET_TIMEOUT,
) -> list[Path]:
    """Download ``url`` into ``dest`` (created) and return the files, in playlist order."""
    import yt_dlp

    url = check_url(url)
    dest.mkdir(parents=True, exist_ok=True)
    log = _Log()

    def hook(status: dict[str, Any]) -> None:
        if progress and status.get("status") in ("downloading", "finished"):
            total = status.get("total_bytes") or status.get("total_bytes_estimate")
            progress(int(status.get("downloaded_bytes") or 0), int(total) if total else None)

    options: dict[str, Any] = {
        "format": FORMAT,
        # Generated names only: the title of a video never becomes a path.
        "outtmpl": {"default": str(dest / "%(autonumber)03d.%(ext)s")},
        "restrictfilenames": True,
        "noplaylist": not playlist,
        "playlistend": 50 if playlist else None,
        "max_filesize": max_bytes,
        "socket_timeout": timeout,
        "retries": 1,
        "fragment_retries": 1,
        "noprogress": True,
        "quiet": True,
        "no_warnings": True,
        "logger": log,
        "progress_hooks": [hook],
        "overwrites": True,
        "cachedir": False,
        # Downloads stay in this thread and in Python, where public_connections_only sees every
        # connection: no parallel fragment threads, no ffmpeg for HLS.
        "concurrent_fragment_downloads": 1,
        "hls_prefer_native": True,
    }
    try:
        # Every connection yt-dlp makes (each redirect, each fragment, the page and the media it
        # names) is checked again at connect time.
        with public_connections_only(), yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as exc:
        message = log.errors[-1] if log.errors else str(exc).removeprefix("ERROR: ")
        raise DownloadError(f"could not download {url}: {message}") from None
    except (OSError, ValueError) as exc:
        raise DownloadError(f"could not download {url}: {exc}") from None
    entries = (info or {}).get("entries") or [info]
    files = []
    for entry in entries:
        if not entry:
            continue
        for item in entry.get("requested_downloads") or [entry]:
            path = item.get("filepath") or item.get("_filename")
            if path and Path(path).is_file():
                files.append(Path(path))
    if not files:
        # yt-dlp skips a file over max_filesize without an error.
        raise DownloadError(f"nothing was downloaded from {url} (larger than {max_bytes:,} bytes, or no media)")
    return files

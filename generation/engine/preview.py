"""Live preview frames of a running job: the latest sampler frame on disk, at most twice a second.

ComfyUI sends a preview image with every sampler step (binary WebSocket frames, JPEG or PNG).
Only the newest matters to a person watching, so the driver offers each frame here and writes
the pending one when :meth:`PreviewFile.due`; the file is ``MEDIA_ROOT/previews/job-<id>.<ext>``
(a generated name, replaced atomically so a reader never sees half a frame), and its URL carries
a counter so browsers do not show a cached older frame. The file goes when the job ends.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from generation.comfyui.events import Preview

PREVIEW_MIN_INTERVAL = 0.5  # seconds between two writes (at most ~2 frames a second)
PREVIEW_DIR = "previews"
_EXTENSIONS = {"jpeg": "jpg", "png": "png"}
_REMOVE_ORDER = tuple(sorted(set(_EXTENSIONS.values())))


@dataclass
class PreviewFile:
    job_id: int
    media_root: Path
    media_url: str
    pending: Preview | None = None
    written_at: float | None = None
    count: int = 0
    url: str | None = None

    def offer(self, frame: Preview) -> None:
        self.pending = frame

    def due(self, now: float) -> bool:
        if self.pending is None:
            return False
        return self.written_at is None or now - self.written_at >= PREVIEW_MIN_INTERVAL

    def relative_path(self, extension: str) -> str:
        return f"{PREVIEW_DIR}/job-{int(self.job_id)}.{extension}"

    def write(self, now: float) -> str | None:
        """Write the pending frame (blocking file I/O); returns the URL to announce."""
        frame, self.pending = self.pending, None
        if frame is None or not frame.image:
            return self.url
        extension = _EXTENSIONS.get(frame.format, "jpg")
        relative = self.relative_path(extension)
        target = self.media_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".job-{int(self.job_id)}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(frame.image)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self.written_at = now
        self.count += 1
        self.url = f"{self.media_url.rstrip('/')}/{relative}?v={self.count}"
        return self.url

    def remove(self) -> None:
        """Delete every preview file of this job (the outputs replace it). Runs after every job,
        mostly for files that do not exist, so it stays on plain strings rather than Path objects."""
        root = os.fspath(self.media_root)
        for extension in _REMOVE_ORDER:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(root, self.relative_path(extension)))

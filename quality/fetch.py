"""Fetching the scoring models, in the foreground or in the background, with progress a page can show.

``manage.py fetch_models`` and ``manage.py serve`` (its first start fetches what is missing unless
``TOWER_FETCH_MODELS=0``) both run :func:`fetch_missing`. It downloads with
:func:`quality.weights.download` (resumed from a ``.part`` file, SHA-256 checked before anything is
installed) and writes its progress to ``<models dir>/.fetch-status.json``, so the web process (the
dashboard) can show it without talking to the process that downloads.

Django-free: callers pass the models directory (``settings.MODELS_DIR``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from quality import weights

logger = logging.getLogger(__name__)

STATUS_NAME = ".fetch-status.json"
LOCK_NAME = ".fetch.lock"
# A "running" file not touched for this long was left by a process that is gone (a download with
# no data for its timeout, 60 s, fails and says so well before this).
STALE_AFTER = 180.0
# Byte progress is written at most this often; state changes are written at once.
WRITE_INTERVAL = 0.5
FETCH_ALL = "python manage.py fetch_models"

OnProgress = Callable[[str, int, int | None], None]  # (model id, bytes done, total or None)


class FetchStopped(Exception):
    """The fetch was asked to stop; the ``.part`` file stays for the next run to resume."""


class FetchBusy(weights.WeightsError):
    """Another process is fetching into the same models directory (two writers would mix one ``.part``)."""


@dataclass
class ModelFetch:
    id: str
    state: str = "waiting"  # waiting | downloading | done | present | failed | stopped
    done: int = 0
    total: int | None = None
    error: str = ""

    @property
    def percent(self) -> int | None:
        if self.state in ("done", "present"):
            return 100
        if not self.total:
            return None
        return min(100, int(self.done * 100 / self.total))


@dataclass
class FetchStatus:
    state: str  # running | done | failed | stopped
    models: list[ModelFetch] = field(default_factory=list)
    started: float = 0.0
    updated: float = 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def failed(self) -> list[ModelFetch]:
        return [m for m in self.models if m.state == "failed"]

    @property
    def fetched(self) -> list[ModelFetch]:
        return [m for m in self.models if m.state != "present"]

    @property
    def percent(self) -> int | None:
        """Bytes done over bytes to fetch, over the models whose size is known."""
        known = [m for m in self.fetched if m.total]
        if not known:
            return None
        done = sum((m.total or 0) if m.state == "done" else m.done for m in known)
        return min(100, int(done * 100 / sum(m.total or 0 for m in known)))


def status_path(models_dir: Path) -> Path:
    return Path(models_dir) / STATUS_NAME


def read_status(models_dir: Path, *, now: float | None = None) -> FetchStatus | None:
    """The last fetch's progress, or None when no fetch has written one (or the file is unreadable).

    A "running" status that has not been updated for :data:`STALE_AFTER` seconds is reported as
    "stopped": the process that wrote it is gone, and its ``.part`` files resume next time.
    """
    try:
        raw = json.loads(status_path(models_dir).read_text())
        status = FetchStatus(
            state=str(raw["state"]),
            models=[ModelFetch(**m) for m in raw["models"]],
            started=float(raw.get("started", 0.0)),
            updated=float(raw.get("updated", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if status.running and (now if now is not None else time.time()) - status.updated > STALE_AFTER:
        status.state = "stopped"
        for model in status.models:
            if model.state in ("waiting", "downloading"):
                model.state = "stopped"
    return status


def missing_models(models_dir: Path) -> list[str]:
    """Ids of the models that are not usable (presence and size only: no hashing of gigabytes)."""
    return [i for i in weights.MODELS if not weights.model_status(i, models_dir, verify=False).usable]


class _Writer:
    """Writes the status file atomically, byte progress at most every :data:`WRITE_INTERVAL`."""

    def __init__(self, models_dir: Path, status: FetchStatus) -> None:
        self.path = status_path(models_dir)
        self.status = status
        self.last = 0.0

    def write(self, *, force: bool = True) -> None:
        now = time.time()
        if not force and now - self.last < WRITE_INTERVAL:
            return
        self.last = now
        self.status.updated = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(asdict(self.status)))
        os.replace(tmp, self.path)


def fetch_missing(
    models_dir: Path,
    *,
    ids: Sequence[str] | None = None,
    force: bool = False,
    mirror: str = "",
    timeout: float = 60.0,
    stop: threading.Event | None = None,
    on_progress: OnProgress | None = None,
) -> FetchStatus:
    """Download the models in ``ids`` (default: all) that are not usable yet, one after the other.

    A model that fails (unreachable, HTTP error, checksum mismatch: the file is discarded) is
    recorded with its error and the others still run. ``stop`` ends the fetch between two blocks
    (state "stopped"); ``mirror`` is a base URL serving the files under their registry names.
    """
    models_dir = Path(models_dir)
    ids = list(ids) if ids else list(weights.MODELS)
    for model_id in ids:
        weights.get_spec(model_id)  # an unknown id fails before anything starts
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / LOCK_NAME).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
        except BlockingIOError:
            raise FetchBusy(
                "another fetch of the scoring models is running (its progress is on the dashboard)"
            ) from None
        return _fetch_locked(models_dir, ids, force, mirror, timeout, stop, on_progress)


def _fetch_locked(
    models_dir: Path,
    ids: list[str],
    force: bool,
    mirror: str,
    timeout: float,
    stop: threading.Event | None,
    on_progress: OnProgress | None,
) -> FetchStatus:
    status = FetchStatus(state="running", started=time.time())
    for model_id in ids:
        usable = weights.model_status(model_id, models_dir, verify=False).usable
        status.models.append(ModelFetch(model_id, "present" if usable and not force else "waiting"))
    writer = _Writer(models_dir, status)
    writer.write()
    for entry in status.models:
        if entry.state == "present":
            continue
        if stop is not None and stop.is_set():
            break
        spec = weights.get_spec(entry.id)
        entry.state, entry.total = "downloading", spec.size
        writer.write()

        def progress(done: int, total: int | None, entry: ModelFetch = entry) -> None:
            if stop is not None and stop.is_set():
                raise FetchStopped(entry.id)
            entry.done, entry.total = done, total or entry.total
            writer.write(force=False)
            if on_progress is not None:
                on_progress(entry.id, done, entry.total)

        url = f"{mirror.rstrip('/')}/{spec.filename}" if mirror else None
        try:
            weights.download(entry.id, models_dir, url=url, progress=progress, timeout=timeout)
        except FetchStopped:
            break
        except weights.WeightsError as exc:
            entry.state, entry.error = "failed", str(exc)
            logger.warning("scoring model not fetched: %s", exc)
        else:
            entry.state = "done"
        writer.write()
    if stop is not None and stop.is_set():
        status.state = "stopped"
        for entry in status.models:
            if entry.state in ("waiting", "downloading"):
                entry.state = "stopped"
    else:
        status.state = "failed" if status.failed else "done"
    writer.write()
    return status


class BackgroundFetch:
    """:func:`fetch_missing` on a daemon thread; :meth:`stop` ends it between two blocks."""

    def __init__(self, models_dir: Path, ids: Sequence[str], **options: object) -> None:
        self.stop_event = threading.Event()
        self.result: FetchStatus | None = None
        self.thread = threading.Thread(
            target=self._run, args=(Path(models_dir), list(ids), options), daemon=True, name="fetch-models"
        )

    def _run(self, models_dir: Path, ids: list[str], options: dict) -> None:
        try:
            self.result = fetch_missing(models_dir, ids=ids, stop=self.stop_event, **options)
        except FetchBusy as exc:  # the other fetch reports its own progress; leave its file alone
            logger.info("%s", exc)
        except Exception as exc:
            # Whatever went wrong, the studio keeps running and the dashboard must not show a
            # download "running" forever: record the failure where the page reads it.
            logger.exception("fetching the scoring models failed")
            _record_failure(models_dir, ids, f"{exc.__class__.__name__}: {exc}")

    def start(self) -> BackgroundFetch:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)

    def join(self, timeout: float | None = None) -> FetchStatus | None:
        self.thread.join(timeout)
        return self.result


def _record_failure(models_dir: Path, ids: Sequence[str], error: str) -> None:
    status = FetchStatus(state="failed", models=[ModelFetch(i, "failed", error=error) for i in ids])
    try:
        _Writer(models_dir, status).write()
    except OSError:
        logger.warning("cannot write %s", status_path(models_dir))


def start_background_fetch(models_dir: Path, *, enabled: bool, **options: object) -> tuple[BackgroundFetch | None, str]:
    """What ``manage.py serve`` does at start: fetch the missing models in the background.

    Returns the running fetch (None when there is nothing to do or fetching is off) and one line
    for the console.
    """
    missing = missing_models(models_dir)
    if not missing:
        return None, "all present"
    if not enabled:
        return None, f"{len(missing)} missing, not fetched (TOWER_FETCH_MODELS=0); run: {FETCH_ALL}"
    fetch = BackgroundFetch(models_dir, missing, **options).start()
    return fetch, f"fetching {len(missing)} missing in the background (progress on the dashboard)"


@dataclass(frozen=True)
class ScoringModels:
    """What a page says about the scoring models: which are missing, and the last fetch's progress."""

    missing: tuple[str, ...]
    status: FetchStatus | None
    command: str = FETCH_ALL

    @property
    def downloading(self) -> bool:
        return self.status is not None and self.status.running

    @property
    def failed(self) -> list[ModelFetch]:
        """The models the last fetch could not get (and that are still missing)."""
        if self.status is None or self.downloading:
            return []
        return [m for m in self.status.failed if m.id in self.missing]

    @property
    def current(self) -> ModelFetch | None:
        """The model being downloaded now."""
        if not self.downloading:
            return None
        return next((m for m in self.status.models if m.state == "downloading"), None)  # type: ignore[union-attr]  # downloading implies a status

    @property
    def off_metrics(self) -> list[str]:
        """The metrics the missing models turn off or limit, in plain words."""
        names: list[str] = []
        for model_id in self.missing:
            for used in weights.get_spec(model_id).used_by:
                name = metric_label(used.split(" (")[0])
                if name not in names:
                    names.append(name)
        return names


def metric_label(metric: str) -> str:
    """A metric's name in plain words: ``temporal_lpips`` → "temporal LPIPS"."""
    return metric.replace("_", " ").replace("lpips", "LPIPS").replace("ssim", "SSIM")


def scoring_models(models_dir: Path) -> ScoringModels:
    """Cheap enough for every page view: a stat per model file and one small JSON file."""
    return ScoringModels(missing=tuple(missing_models(models_dir)), status=read_status(models_dir))

"""``manage.py comfy_status [--refresh] [--json] [--timeout S]``: the state of every ComfyUI backend.

For each backend, enabled or not: its URL (credentials left out), whether it answers now, its
ComfyUI version, VRAM per device and live queue (asked of every server at once, with a short
timeout), Tower's jobs in flight on it, the last checkpoint it loaded and its last stored error.
``--refresh`` first runs the health poll that the engine runs (stored health and object_info).

Exit status: 0 when every enabled backend answers, 1 otherwise (or when none is registered).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count

from generation.comfyui import ComfyClient, ComfyError
from generation.models import LIVE_STATUSES, Backend, Job
from generation.services.reconcile import backend_refresh

DEFAULT_TIMEOUT = 3.0
GIB = 1024**3
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def safe_url(url: str) -> str:
    """``url`` without ``user:password@``."""
    try:
        parts = urlsplit(url)
        if not (parts.username or parts.password):
            return url
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return _USERINFO.sub("", url)


def scrub(text: str) -> str:
    """Error text without the credentials of any URL it quotes."""
    return _USERINFO.sub("", text)


@dataclass
class Device:
    name: str
    type: str
    vram_used: int
    vram_total: int


@dataclass
class Probe:
    reachable: bool
    comfyui_version: str = ""
    devices: list[Device] = field(default_factory=list)
    running: int | None = None
    pending: int | None = None
    error: str = ""


async def _probe(url: str, timeout: float) -> Probe:
    try:
        async with ComfyClient(url, timeout=timeout) as comfy:
            stats, queue = await asyncio.gather(comfy.system_stats(), comfy.queue())
    except ComfyError as exc:
        return Probe(reachable=False, error=scrub(str(exc) or exc.__class__.__name__))
    devices = [Device(d.name, d.type, max(0, d.vram_total - d.vram_free), d.vram_total) for d in stats.devices]
    return Probe(True, stats.comfyui_version, devices, len(queue.running), len(queue.pending))


async def probe_all(urls: list[str], timeout: float) -> list[Probe]:
    """Ask every server at once; each gets ``timeout`` seconds per request and a little over overall."""

    async def bounded(url: str) -> Probe:
        try:
            return await asyncio.wait_for(_probe(url, timeout), timeout * 2)
        except TimeoutError:
            return Probe(reachable=False, error=f"no answer within {timeout * 2:g} s")

    return list(await asyncio.gather(*(bounded(url) for url in urls)))


class Command(BaseCommand):
    help = "Show every ComfyUI backend: reachable, version, VRAM, queue, Tower's jobs, last error."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--refresh", action="store_true", help="update stored health and object_info first")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument(
            "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds per server (default {DEFAULT_TIMEOUT:g})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        backends = list(Backend.objects.order_by("name"))
        refreshed: dict[int, bool] = {}
        if options["refresh"]:
            for backend in backends:
                refreshed[backend.pk] = backend_refresh(backend=backend, force_object_info=True)
                backend.refresh_from_db()
        probes = asyncio.run(probe_all([b.url for b in backends], options["timeout"])) if backends else []
        in_flight = dict(
            Job.objects.filter(status__in=LIVE_STATUSES, backend__isnull=False)
            .values_list("backend")
            .annotate(n=Count("pk"))
            .values_list("backend", "n")
        )
        rows = [
            _row(backend, probe, in_flight.get(backend.pk, 0), refreshed.get(backend.pk))
            for backend, probe in zip(backends, probes, strict=True)
        ]
        ok = bool(rows) and all(row["reachable"] for row in rows if row["enabled"])
        if options["json"]:
            self.stdout.write(json.dumps({"ok": ok, "backends": rows}, indent=2))
        elif not rows:
            self.stdout.write("No ComfyUI backends registered: add one in the admin, or set COMFYUI_URLS.")
        else:
            self.stdout.write(table(rows))
            down = [row["name"] for row in rows if row["enabled"] and not row["reachable"]]
            if down:
                self.stdout.write(self.style.ERROR(f"Unreachable: {', '.join(down)}"))
            else:
                self.stdout.write(self.style.SUCCESS("Every enabled backend is reachable."))
        if not ok:
            sys.exit(1)


def _row(backend: Backend, probe: Probe, jobs: int, refreshed: bool | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": backend.name,
        "url": safe_url(backend.url),
        "enabled": backend.enabled,
        "reachable": probe.reachable,
        "comfyui_version": probe.comfyui_version or backend.comfyui_version,
        "devices": [asdict(d) for d in probe.devices],
        "queue": {"running": probe.running, "pending": probe.pending},
        "tower_jobs_in_flight": jobs,
        "last_checkpoint": backend.last_checkpoint,
        "error": probe.error,
        "last_error": scrub(backend.last_error),
        "healthy": backend.healthy,
        "last_seen_at": backend.last_seen_at.isoformat() if backend.last_seen_at else None,
        "node_classes": len(backend.node_classes or []),
    }
    if refreshed is not None:
        row["refreshed"] = refreshed
    return row


def _vram(devices: list[dict[str, Any]]) -> str:
    if not devices:
        return "-"
    parts = []
    for d in devices:
        label = (d["name"].split() or [d["type"] or "?"])[0]
        parts.append(f"{label} {d['vram_used'] / GIB:.1f}/{d['vram_total'] / GIB:.1f} GiB")
    return ", ".join(parts)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[dict[str, Any]]) -> str:
    header = ["BACKEND", "URL", "ENABLED", "REACHABLE", "COMFYUI", "VRAM", "QUEUE R/P", "JOBS", "CHECKPOINT", "ERROR"]
    lines = [header]
    for row in rows:
        queue = row["queue"]
        error = row["error"] or (f"last: {row['last_error']}" if row["last_error"] else "")
        lines.append(
            [
                row["name"],
                row["url"],
                "yes" if row["enabled"] else "no",
                "yes" if row["reachable"] else "NO",
                row["comfyui_version"] or "-",
                _vram(row["devices"]),
                "-" if queue["running"] is None else f"{queue['running']}/{queue['pending']}",
                str(row["tower_jobs_in_flight"]),
                _cut(row["last_checkpoint"], 40) or "-",
                _cut(error, 80) or "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)

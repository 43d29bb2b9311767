"""What a studio's start needs from generation: the backends of ``COMFYUI_URLS`` on first start
and the shipped workflow templates (``manage.py serve`` calls both and prints their lines)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from generation.models import Backend
from generation.services.backends import BackendError
from generation.services.templates import TemplateError, template_sync_shipped


def seed_backends(*, urls: list[str]) -> list[str]:
    """Register ``urls`` as backends named ``host:port`` when there are none yet; return names.

    Raises :class:`BackendError` naming the first URL that cannot be registered (none is then).
    """
    if not urls or Backend.objects.exists():
        return []
    names = []
    with transaction.atomic():
        for url in urls:
            try:
                parts = urlsplit(url)
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                parts, port = None, None
            if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
                raise BackendError(f"COMFYUI_URLS: {url!r} is not an http:// or https:// URL")
            name = f"{parts.hostname}:{port}"
            backend = Backend(name=name, url=url.rstrip("/"), vram_hold_threshold=settings.COMFYUI_VRAM_HOLD)
            try:
                backend.full_clean()
            except ValidationError as exc:
                raise BackendError(f"COMFYUI_URLS: cannot register {name}: {' '.join(exc.messages)}") from None
            backend.save()
            names.append(name)
    return names


def sync_shipped_templates(*, folder: Path | None = None) -> str:
    """Load the shipped workflow templates; one line saying how it went. Never fails start-up:
    an invalid file is named and skipped, and the other templates still load."""
    try:
        report = template_sync_shipped(folder=folder)
    except TemplateError as exc:
        return " ".join(f"not loaded: {exc}".split())
    loaded = len(report.created) + len(report.updated) + len(report.unchanged)
    line = f"{loaded} shipped templates"
    if report.created or report.updated:
        line += f" ({len(report.created)} new, {len(report.updated)} updated)"
    if report.invalid:
        names = ", ".join(name for name, _ in report.invalid)
        line += f"; {len(report.invalid)} invalid, skipped: {names} (manage.py sync_workflows says why)"
    return line

"""``manage.py sync_workflows [--folder PATH] [--strict]``: load the shipped workflow templates.

Creates or updates the global templates from the JSON files in ``workflows/`` (or ``--folder``)
and prints what happened to each. Running it twice changes nothing the second time. A file that
does not validate is reported and skipped; ``--strict`` then makes the command fail (for CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.services.templates import TemplateError, template_sync_shipped


class Command(BaseCommand):
    help = "Create or update the shipped ComfyUI workflow templates from the workflows folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--folder", type=Path, default=None, help="folder of template JSON files")
        parser.add_argument("--strict", action="store_true", help="exit with an error if any file is invalid")

    def handle(self, *args: Any, folder: Path | None = None, strict: bool = False, **options: Any) -> None:
        try:
            report = template_sync_shipped(folder=folder)
        except TemplateError as exc:
            raise CommandError(str(exc)) from exc
        for label, slugs in (("created", report.created), ("updated", report.updated), ("unchanged", report.unchanged)):
            for slug in slugs:
                self.stdout.write(f"{label:<10} {slug}")
        for slug in report.orphaned:
            self.stdout.write(f"{'orphaned':<10} {slug} (its file is gone; the template is kept)")
        for name, why in report.invalid:
            self.stderr.write(f"{'invalid':<10} {name}: {why}")
        summary = (
            f"{len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged, {len(report.invalid)} invalid"
        )
        self.stdout.write(self.style.SUCCESS(summary) if report.ok else self.style.WARNING(summary))
        if strict and not report.ok:
            raise CommandError(f"{len(report.invalid)} workflow file(s) are invalid")

"""manage.py models: which quality-metric weights are present, missing or corrupt."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from quality import weights


class Command(BaseCommand):
    help = "List the quality metrics' model weights: present, unverified, missing or corrupt."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="check presence and size only (no SHA-256)")
        parser.add_argument("--check", action="store_true", help="exit 1 unless every model is usable")

    def handle(self, *args: Any, **options: Any) -> None:
        root = settings.MODELS_DIR
        self.stdout.write(f"models directory: {root}")
        rows = []
        for model_id in weights.MODELS:
            status = weights.model_status(model_id, root, verify=not options["quick"])
            note = status.detail
            if not status.usable:
                note = f"{note}; fix: {weights.fetch_command(model_id)} --force"
                if status.state is weights.State.MISSING:
                    note = f"fix: {weights.fetch_command(model_id)}"
            rows.append((model_id, str(status.state), ", ".join(status.spec.used_by), note))
        widths = [max(len(r[i]) for r in [("id", "state", "used by", ""), *rows]) for i in range(3)]
        for model_id, state, used_by, note in [("id", "state", "used by", "note / fix"), *rows]:
            self.stdout.write(f"{model_id:<{widths[0]}}  {state:<{widths[1]}}  {used_by:<{widths[2]}}  {note}".rstrip())
        bad = [r[0] for r in rows if r[1] in (weights.State.MISSING, weights.State.CORRUPT)]
        if options["check"] and bad:
            raise CommandError(f"not usable: {', '.join(bad)}")

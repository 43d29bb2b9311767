"""manage.py fetch_models [ID ...]: download the quality metrics' weights into MODELS_DIR."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from quality import fetch, weights


class Command(BaseCommand):
    help = "Download model weights (progress, SHA-256 check, resume of interrupted downloads)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", help=f"model ids (default: all missing): {', '.join(weights.MODELS)}")
        parser.add_argument("--force", action="store_true", help="download again even when present")
        parser.add_argument("--mirror", default="", help="base URL serving the files under their registry file names")
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")

    def handle(self, *args: Any, **options: Any) -> None:
        from tqdm import tqdm

        root = settings.MODELS_DIR
        ids = options["ids"] or list(weights.MODELS)
        unknown = [i for i in ids if i not in weights.MODELS]
        if unknown:
            raise CommandError(f"unknown model id(s): {', '.join(unknown)}; known: {', '.join(weights.MODELS)}")
        bars: dict[str, Any] = {}

        def progress(model_id: str, done: int, total: int | None) -> None:
            bar = bars.get(model_id)
            if bar is None:
                for other in bars.values():
                    other.close()
                bar = bars[model_id] = tqdm(
                    desc=model_id, unit="B", unit_scale=True, unit_divisor=1024, total=total, file=self.stderr._out
                )
            if total and bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        # The same code path as the background fetch of `manage.py serve`: the dashboard shows
        # this run's progress too.
        try:
            result = fetch.fetch_missing(
                root,
                ids=ids,
                force=options["force"],
                mirror=options["mirror"],
                timeout=options["timeout"],
                on_progress=progress,
            )
        except fetch.FetchBusy as exc:
            raise CommandError(f"{exc}; run this again when it has finished") from None
        for bar in bars.values():
            bar.close()
        for entry in result.models:
            if entry.state == "present":
                self.stdout.write(f"{entry.id}: already present")
            elif entry.state == "failed":
                self.stderr.write(self.style.ERROR(entry.error))
            else:
                status = weights.model_status(entry.id, root, verify=False)
                paths = ", ".join(str(p) for p in status.paths)
                self.stdout.write(self.style.SUCCESS(f"{entry.id}: {status.state} ({paths})"))
        if result.failed:
            raise CommandError(f"could not fetch: {', '.join(m.id for m in result.failed)}")

"""manage.py fetch_models [ID ...]: download the quality metrics' weights into MODELS_DIR."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from quality import weights


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
        failed = []
        for model_id in ids:
            status = weights.model_status(model_id, root, verify=False)
            if status.usable and not options["force"]:
                self.stdout.write(f"{model_id}: already present")
                continue
            spec = weights.MODELS[model_id]
            url = f"{options['mirror'].rstrip('/')}/{spec.filename}" if options["mirror"] else None
            bar = tqdm(
                desc=model_id, unit="B", unit_scale=True, unit_divisor=1024, total=spec.size, file=self.stderr._out
            )

            def progress(done: int, total: int | None, bar: Any = bar) -> None:
                if total and bar.total != total:
                    bar.total = total
                bar.n = done
                bar.refresh()

            try:
                result = weights.download(model_id, root, url=url, progress=progress, timeout=options["timeout"])
            except weights.WeightsError as exc:
                bar.close()
                self.stderr.write(self.style.ERROR(str(exc)))
                failed.append(model_id)
                continue
            bar.close()
            self.stdout.write(
                self.style.SUCCESS(f"{model_id}: {result.state} ({', '.join(str(p) for p in result.paths)})")
            )
        if failed:
            raise CommandError(f"could not fetch: {', '.join(failed)}")

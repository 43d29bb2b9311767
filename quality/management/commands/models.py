"""manage.py models: which quality-metric weights are present, missing or corrupt, and where each runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from quality import fetch, weights
from quality.metrics.runtime import CUDA_PROVIDER, model_device, onnx_providers, torch_cuda_available


class Command(BaseCommand):
    help = "List the quality metrics' model weights (present, unverified, missing or corrupt) and their device."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="check presence and size only (no SHA-256)")
        parser.add_argument("--check", action="store_true", help="exit 1 unless every model is usable")

    def handle(self, *args: Any, **options: Any) -> None:
        root = settings.MODELS_DIR
        self.stdout.write(f"models directory: {root}")
        providers = onnx_providers()
        cuda = torch_cuda_available()
        rows = []
        for model_id in weights.MODELS:
            status = weights.model_status(model_id, root, verify=not options["quick"])
            device = model_device(status.spec.runtime, onnx_available=providers, cuda=cuda)
            note = status.detail
            if not status.usable:
                note = f"{note}; fix: {weights.fetch_command(model_id)} --force"
                if status.state is weights.State.MISSING:
                    note = f"fix: {weights.fetch_command(model_id)}"
            rows.append((model_id, str(status.state), device, ", ".join(status.spec.used_by), note))
        header = ("id", "state", "device", "used by", "note / fix")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            cells = "  ".join(f"{cell:<{width}}" for cell, width in zip(row[:4], widths, strict=True))
            self.stdout.write(f"{cells}  {row[4]}".rstrip())
        self.stdout.write(
            f"torch: {'CUDA' if cuda else 'CPU'}; onnxruntime: {', '.join(providers) or 'no provider'}"
            + ("" if CUDA_PROVIDER in providers else " (CPU build; on a CUDA machine see the README: make run GPU=1)")
        )
        bad = [r[0] for r in rows if r[1] in (weights.State.MISSING, weights.State.CORRUPT)]
        if bad:
            self.stdout.write(f"to fetch every missing model: {fetch.FETCH_ALL}")
        if options["check"] and bad:
            raise CommandError(f"not usable: {', '.join(bad)}")

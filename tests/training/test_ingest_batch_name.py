"""The admin names ingest batches in good English ("Ingest batchs" before)."""

from __future__ import annotations

from training.models import IngestBatch


def test_ingest_batches_plural():
    assert str(IngestBatch._meta.verbose_name_plural) == "ingest batches"

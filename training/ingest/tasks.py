"""Ingestion tasks: thin, take ids, claim the batch with a conditional update."""

from __future__ import annotations

from training.ingest import services


def ingest_run(batch_id: int) -> str:
    """Run a queued batch; a batch already claimed (a re-delivered task) is left alone."""
    if not services.ingest_batch_claim(batch_id=batch_id):
        return "not claimed"
    batch = services.ingest_batch_run(batch_id=batch_id)
    return batch.status

"""A worker for ``POST /quality/evaluate`` in tests: its task runs on a thread of its own, as a
django-q worker would run it in another process, with the thread that decoded media recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.db import connection

from quality import tasks
from quality.services import evaluate


@dataclass
class Worker:
    enqueued: list[int] = field(default_factory=list)
    decoded_on: set[int] = field(default_factory=set)  # idents of the threads that decoded media
    threads: list[threading.Thread] = field(default_factory=list)
    running: bool = True

    def run(self, evaluation_id: int) -> None:
        try:
            tasks.evaluate_media(evaluation_id)
        finally:
            connection.close()  # this thread's own connection, as a worker process would hold


@pytest.fixture
def evaluation_worker(transactional_db, monkeypatch, settings) -> Iterator[Worker]:
    """Evaluations enqueued after commit run on a worker thread (the web request waits for it).

    Transactional: the worker's connection must see the committed row. Set ``running = False`` to
    have nothing pick the tasks up (they are only recorded)."""
    worker = Worker()
    # A loaded test machine may take longer than the default 20 s; the wait ends when the worker does.
    settings.EVALUATE_WAIT_SECONDS = 300.0
    read_media = evaluate.read_media

    def spy(*args, **kwargs):
        worker.decoded_on.add(threading.get_ident())
        return read_media(*args, **kwargs)

    def enqueue(evaluation_id: int) -> None:
        worker.enqueued.append(evaluation_id)
        if worker.running:
            thread = threading.Thread(target=worker.run, args=(evaluation_id,), daemon=True)
            worker.threads.append(thread)
            thread.start()

    monkeypatch.setattr(evaluate, "read_media", spy)
    monkeypatch.setattr(tasks, "enqueue_evaluation", enqueue)
    yield worker
    for thread in worker.threads:
        thread.join(timeout=60)

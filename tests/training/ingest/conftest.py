"""For every ingestion test here: small-image settings and loopback sources; characters, and stand-ins
for the classifier and the broker."""

from __future__ import annotations

import pytest

from tests.factories import CharacterFactory
from tests.training.ingest.helpers import FakeClassifier
from training.ingest import services


@pytest.fixture(autouse=True)
def _ingest_settings(settings):
    settings.TOWER_DATASET_MIN_SIDE = 64
    settings.TOWER_DATASET_PHASH_DISTANCE = 6
    settings.TOWER_INGEST_ALLOWED_HOSTS = ["127.0.0.1"]  # the fake file servers are on loopback


@pytest.fixture
def hana(project):
    return CharacterFactory(project=project, name="Hana")


@pytest.fixture
def kai(project):
    return CharacterFactory(project=project, name="Kai")


@pytest.fixture
def classifier(monkeypatch):
    fake = FakeClassifier()
    monkeypatch.setattr("training.llm.classify.classify_image", fake)
    return fake


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(services, "enqueue_run", calls.append)
    return calls

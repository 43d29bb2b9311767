"""A real django-q2 cluster assembles the film: ``POST /episodes/{id}/assemble`` pushes the task after
commit, a worker process runs it (reading the segments through settings.TOWER_EPISODE_FOOTAGE), and
the API then shows the film."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings
from django.db import connection
from django_q.brokers import get_broker
from django_q.conf import Conf

from generation import tasks
from projects.models import Episode
from tests.generation.test_assembly_task import clip_asset, scene_with_segments
from tests.support.processes import running_qcluster, wait_until, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def cluster_prefix(redis_url, tmp_path, monkeypatch):
    """A qcluster (1 worker) on the test database and Redis, and this process's pushes going to its queue."""
    prefix = f"assembly-{uuid.uuid4().hex[:8]}"
    # django-q2 names the queue and salts the task's signature with the cluster's name: the worker's.
    monkeypatch.setattr(Conf, "PREFIX", f"{prefix}-q")
    broker = get_broker(list_key=f"{prefix}-q")
    broker.connection = redis.Redis.from_url(redis_url)
    monkeypatch.setattr(tasks, "_broker", lambda: broker)
    env = worker_env(
        settings_dict=connection.settings_dict,
        redis_url=redis_url,
        prefix=prefix,
        secret_key=settings.SECRET_KEY,
        media_root=settings.MEDIA_ROOT,
        var_dir=tmp_path / "var",
        TOWER_WORKERS="1",
    )
    with running_qcluster(env=env, log_path=tmp_path / "qcluster.log") as cluster:
        yield cluster
    broker.delete_queue()
    broker.connection.close()


def test_the_cluster_assembles_the_film_the_api_asked_for(cluster_prefix, api_owner, project, tmp_path):
    episode = Episode.objects.create(project=project, number=1, title="Pilot")
    for number in (1, 2):
        first = clip_asset(project, tmp_path, f"s{number}a.mp4", range(0, 6))
        second = clip_asset(project, tmp_path, f"s{number}b.mp4", range(5, 10))
        scene_with_segments(episode, number, [first, second], title=f"Part {number}")

    response = api_owner.post(f"/api/v1/episodes/{episode.pk}/assemble", {"container": "mp4"}, format="json")
    assert response.status_code == 202, response.content
    assembly_id = response.json()["id"]

    done = wait_until(
        lambda: (
            (a := api_owner.get(f"/api/v1/assemblies/{assembly_id}").json())["status"] in ("succeeded", "failed") and a
        ),
        timeout=90,
        interval=0.2,
        what=f"the worker to assemble the film (log: {cluster_prefix.log_path})",
    )
    assert (done["status"], done["progress"], done["error_message"]) == ("succeeded", 1.0, "")
    assert [c["title"] for c in done["chapters"]] == ["Part 1", "Part 2"]
    assert api_owner.get(f"/api/v1/episodes/{episode.pk}").json()["film"] == done["asset"]
    film = api_owner.get(f"/api/v1/assets/{done['asset']}").json()
    assert (film["frames"], film["mime"]) == (2 * (6 + 5 - 1), "video/mp4")

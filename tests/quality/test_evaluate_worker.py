"""POST /api/v1/quality/evaluate scores uploads on a worker, not in the web process (issue 17, item 12)."""

from __future__ import annotations

import hashlib
import io
import threading

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from generation import tasks as generation_tasks
from quality import tasks
from quality.models import Evaluation
from quality.services.evaluations import upload_path

EVALUATE = "/api/v1/quality/evaluate"


def big_png(size: int = 1536) -> bytes:
    """A still well inside the bounds, but one no web process should decode for scoring."""
    image = Image.new("RGB", (size, size), (200, 40, 40))
    image.paste(Image.new("RGB", (size // 3, size // 3), (20, 200, 90)), (size // 3, size // 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(data: bytes) -> dict:
    return {"file": SimpleUploadedFile("big.png", data, content_type="image/png")}


def test_an_upload_is_scored_by_the_worker_and_answered_as_before(api_member, project, models, evaluation_worker):
    data = big_png()

    response = api_member.post(EVALUATE, {"project": project.pk, **upload(data)}, format="multipart")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"asset", "character", "frames", "results"}
    assert (body["asset"], body["character"], body["frames"]) == (None, None, 1)
    aesthetic = next(r for r in body["results"] if r["metric"] == "aesthetic")
    assert aesthetic["status"] == "ok" and aesthetic["threshold"] == project.threshold_aesthetic
    # Decoded on the worker's thread only; the request (this thread, in the test client) never did.
    assert evaluation_worker.decoded_on and threading.get_ident() not in evaluation_worker.decoded_on
    assert len(evaluation_worker.enqueued) == 1
    # The stored upload is gone once no evaluation waits for it.
    assert not upload_path(hashlib.sha256(data).hexdigest()).exists()


def test_a_slow_worker_gets_a_202_whose_url_gives_the_answer(api_owner, project, models, evaluation_worker, settings):
    settings.EVALUATE_WAIT_SECONDS = 0
    evaluation_worker.running = False  # nothing picks the task up yet

    response = api_owner.post(EVALUATE, {"project": project.pk, **upload(big_png(256))}, format="multipart")

    assert response.status_code == 202, response.content
    pending = response.json()
    assert pending["status"] == "pending"
    assert pending["url"] == f"/api/v1/quality/evaluations/{pending['id']}"
    assert evaluation_worker.enqueued == [pending["id"]]
    assert api_owner.get(pending["url"]).status_code == 202
    assert evaluation_worker.decoded_on == set()  # the web request decoded nothing

    worker = threading.Thread(target=evaluation_worker.run, args=(pending["id"],))
    worker.start()
    worker.join(timeout=60)

    answer = api_owner.get(pending["url"])
    assert answer.status_code == 200, answer.content
    assert answer.json()["frames"] == 1
    assert any(r["metric"] == "aesthetic" and r["status"] == "ok" for r in answer.json()["results"])
    assert tasks.evaluate_media(pending["id"]) == "not claimed"  # a re-delivered task does nothing


def test_a_failed_evaluation_reads_as_the_400_it_would_have_been(
    api_owner, project, models, evaluation_worker, settings
):
    settings.EVALUATE_WAIT_SECONDS = 0
    evaluation_worker.running = False
    data = {"project": project.pk, "file": SimpleUploadedFile("x.png", b"definitely not media")}
    pending = api_owner.post(EVALUATE, data, format="multipart").json()

    evaluation_worker.run(pending["id"])

    answer = api_owner.get(pending["url"])
    assert answer.status_code == 400
    assert "not an image or video" in str(answer.json())


def test_only_the_requester_reads_an_evaluation(
    api_owner, api_member, api_outsider, api_anonymous, project, models, evaluation_worker
):
    response = api_owner.post(EVALUATE, {"project": project.pk, **upload(big_png(128))}, format="multipart")
    assert response.status_code == 200, response.content
    url = f"/api/v1/quality/evaluations/{Evaluation.objects.get().pk}"

    assert api_owner.get(url).status_code == 200
    assert api_member.get(url).status_code == 404  # same project, someone else's evaluation
    assert api_outsider.get(url).status_code == 404
    assert api_anonymous.get(url).status_code in (401, 403)
    assert api_owner.get("/api/v1/quality/evaluations/999999").status_code == 404


def test_the_task_is_pushed_to_the_workers_by_its_path(monkeypatch):
    pushed = []
    monkeypatch.setattr(generation_tasks, "async_task", lambda path, *args, **kw: pushed.append((path, *args)))

    tasks.enqueue_evaluation(7)

    assert pushed == [("quality.tasks.evaluate_media", 7)]


def test_an_unreachable_task_queue_is_a_503_that_says_so_not_a_500(
    api_owner, project, models, transactional_db, monkeypatch
):
    import socket

    import redis
    from django_q.brokers import get_broker

    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = get_broker()
    broker.connection = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    monkeypatch.setattr(generation_tasks, "_broker", lambda: broker)
    data = big_png(256)

    response = api_owner.post(EVALUATE, {"project": project.pk, **upload(data)}, format="multipart")

    assert response.status_code == 503, response.content
    assert response.json()["detail"].startswith("the task queue cannot be reached")
    assert Evaluation.objects.get().status == "failed"  # not pending forever
    assert not upload_path(hashlib.sha256(data).hexdigest()).exists()  # nothing left behind

"""A URL ingest never fetches from Tower's own host, the LAN or the cloud's metadata service (SSRF).

The fake servers here listen on loopback, so the tests that need one to be reachable allow it by
TOWER_INGEST_ALLOWED_HOSTS, exactly as a studio allows a LAN host.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.factories import CharacterFactory
from tests.fakes.http_files import FileServer
from tower.core.netguard import BlockedAddressError, check_public_url
from training.ingest import download as download_module
from training.ingest import services, tasks
from training.models import DatasetImage, IngestBatch, IngestStatus

pytestmark = pytest.mark.django_db

BLOCKED = [
    "http://127.0.0.1:8000/internal/secret.png",
    "http://localhost/x.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/x.png",
    "http://0x7f000001/x.png",
    "http://2130706433/x.png",
    "http://[::ffff:127.0.0.1]/x.png",
    "http://10.1.2.3/x.png",
    "http://192.168.0.10/x.png",
    "http://172.16.5.4/x.png",
    "http://0.0.0.0/x.png",
    "http://224.0.0.1/x.png",
    "http://[fe80::1]/x.png",
    "http://[fd00::1]/x.png",
    "http://240.0.0.1/x.png",
]


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(services, "enqueue_run", calls.append)
    return calls


@pytest.mark.parametrize("url", BLOCKED)
def test_submitting_a_url_to_a_non_public_address_is_refused_and_nothing_is_written(
    project, owner, enqueued, settings, url
):
    settings.TOWER_INGEST_ALLOWED_HOSTS = []
    with pytest.raises(services.IngestError, match="does not fetch from it"):
        services.ingest_batch_start(project=project, user=owner, url=url)
    assert not IngestBatch.objects.exists() and enqueued == []


def test_the_ingest_page_answers_400_with_the_reason(client, project, owner, settings):
    settings.TOWER_INGEST_ALLOWED_HOSTS = []
    client.force_login(owner)
    response = client.post(
        "/ingest/", {"project": project.pk, "url": "http://169.254.169.254/latest/meta-data/", "frames_per_shot": 3}
    )
    assert response.status_code == 400
    assert "169.254.169.254 is 169.254.169.254, a link-local address" in response.content.decode()
    assert not IngestBatch.objects.exists()


def test_the_allow_list_takes_hosts_and_ranges(settings):
    settings.TOWER_INGEST_ALLOWED_HOSTS = ["localhost", "10.0.0.0/8"]
    check_public_url("http://localhost:8080/clip.mp4")
    check_public_url("http://10.20.30.40/clip.mp4")
    with pytest.raises(BlockedAddressError):
        check_public_url("http://192.168.1.1/clip.mp4")


def test_the_worker_checks_again_before_fetching(project, owner, enqueued, settings, tmp_path):
    """A batch accepted while a host was allowed (or resolved elsewhere) is refused by the worker."""
    served = tmp_path / "secret.png"
    served.write_bytes(b"internal answer")
    with FileServer({"/internal/secret.png": served}) as server:
        settings.TOWER_INGEST_ALLOWED_HOSTS = ["127.0.0.1"]
        batch = services.ingest_batch_start(
            project=project,
            user=owner,
            character=CharacterFactory(project=project),
            url=server.url("/internal/secret.png"),
        )
        settings.TOWER_INGEST_ALLOWED_HOSTS = []
        assert tasks.ingest_run(batch.pk) == IngestStatus.FAILED
        assert server.requests == []
    batch.refresh_from_db()
    assert "loopback address" in batch.error_message
    assert not DatasetImage.objects.exists()


class _Redirector:
    """A server on an allowed address that redirects every request to ``target``."""

    def __init__(self, target: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/clip.mp4"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _InternalServer(ThreadingHTTPServer):
    """An "internal service" on 127.0.0.2 (loopback, not allowed) that records what reaches it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"abc")

            do_HEAD = do_GET

        super().__init__(("127.0.0.2", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_a_redirect_to_a_non_public_address_is_refused_at_connect_time(settings, tmp_path):
    settings.TOWER_INGEST_ALLOWED_HOSTS = ["127.0.0.1/32"]
    internal = _InternalServer()
    redirector = _Redirector(f"http://127.0.0.2:{internal.server_address[1]}/internal/secret.png")
    try:
        with pytest.raises(download_module.DownloadError, match=r"refused to connect to 127\.0\.0\.2"):
            download_module.download(redirector.url, dest=tmp_path / "dl", max_bytes=10_000, timeout=5)
    finally:
        redirector.close()
        internal.shutdown()
        internal.server_close()
    assert internal.hits == []
    assert not list((tmp_path / "dl").glob("*"))

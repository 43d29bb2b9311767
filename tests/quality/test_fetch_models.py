"""manage.py fetch_models against a local HTTP server on a real port: checksum, resume, mirrors, archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from quality import weights

PAYLOAD = os.urandom(300_000)


class Server:
    """Serves files from a dict; honours Range unless told not to; records what it was asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.sent = 0
        self.honour_range = True
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                outer.ranges.append(wanted)
                start = 0
                if wanted and outer.honour_range:
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                # Counted before writing: the client may finish reading (and the test assert)
                # before this handler thread runs another line.
                outer.sent += len(body) - start
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def models_dir(settings, tmp_path) -> Path:
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def register(monkeypatch, server: Server, *, body: bytes = PAYLOAD, sha256: str | None = "auto", **extra) -> str:
    server.files["/files/tiny.bin"] = body
    spec = weights.ModelSpec(
        id="tiny",
        filename=extra.pop("filename", "tiny/tiny.bin"),
        url=f"{server.url}/files/tiny.bin",
        sha256=hashlib.sha256(body).hexdigest() if sha256 == "auto" else sha256,
        size=len(body),
        used_by=("tests",),
        description="a test file",
        **extra,
    )
    monkeypatch.setitem(weights.MODELS, "tiny", spec)
    return "tiny"


def test_fetch_downloads_and_verifies(monkeypatch, server, models_dir):
    register(monkeypatch, server)
    out = io.StringIO()
    call_command("fetch_models", "tiny", stdout=out, stderr=io.StringIO())
    assert (models_dir / "tiny/tiny.bin").read_bytes() == PAYLOAD
    assert "tiny: present" in out.getvalue()
    assert weights.model_status("tiny", models_dir).state is weights.State.PRESENT
    # already there: nothing is downloaded again
    sent = server.sent
    call_command("fetch_models", "tiny", stdout=out, stderr=io.StringIO())
    assert server.sent == sent


def test_fetch_resumes_a_partial_download_with_range(monkeypatch, server, models_dir):
    register(monkeypatch, server)
    part = models_dir / "tiny/tiny.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:100_000])
    call_command("fetch_models", "tiny", stdout=io.StringIO(), stderr=io.StringIO())
    assert server.ranges == ["bytes=100000-"]
    assert server.sent == len(PAYLOAD) - 100_000
    assert (models_dir / "tiny/tiny.bin").read_bytes() == PAYLOAD
    assert not part.exists()


def test_a_server_ignoring_range_restarts_cleanly(monkeypatch, server, models_dir):
    register(monkeypatch, server)
    server.honour_range = False
    part = models_dir / "tiny/tiny.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)
    call_command("fetch_models", "tiny", stdout=io.StringIO(), stderr=io.StringIO())
    assert (models_dir / "tiny/tiny.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_installs_nothing(monkeypatch, server, models_dir):
    register(monkeypatch, server, sha256="0" * 64)
    err = io.StringIO()
    with pytest.raises(CommandError, match="could not fetch: tiny"):
        call_command("fetch_models", "tiny", stdout=io.StringIO(), stderr=err)
    assert "does not match" in err.getvalue()
    assert not (models_dir / "tiny/tiny.bin").exists()
    assert not (models_dir / "tiny/tiny.bin.part").exists()


def test_unreachable_server_and_unknown_id_are_clear_errors(monkeypatch, server, models_dir):
    register(monkeypatch, server)
    server.stop()
    with pytest.raises(CommandError, match="tiny"):
        call_command("fetch_models", "tiny", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="unknown model"):
        call_command("fetch_models", "nope", stdout=io.StringIO(), stderr=io.StringIO())


def test_mirror_and_unpinned_file_records_its_digest(monkeypatch, server, models_dir):
    register(monkeypatch, server, sha256=None)
    server.files["/mirror/tiny/tiny.bin"] = PAYLOAD
    call_command("fetch_models", "tiny", mirror=f"{server.url}/mirror", stdout=io.StringIO(), stderr=io.StringIO())
    assert weights.model_status("tiny", models_dir).state is weights.State.PRESENT  # against the recorded digest
    (models_dir / "tiny/tiny.bin").write_bytes(b"tampered" + PAYLOAD[8:])
    assert weights.model_status("tiny", models_dir).state is weights.State.CORRUPT


def test_archive_members_are_unpacked(monkeypatch, server, models_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("pack/a.onnx", b"AAA")
        zf.writestr("pack/b.onnx", b"BBB")
        zf.writestr("pack/unused.onnx", b"CCC")
    register(
        monkeypatch,
        server,
        body=buffer.getvalue(),
        filename="z/pack.zip",
        members=("a.onnx", "b.onnx"),
        unpack_to="z/pack",
    )
    call_command("fetch_models", "tiny", stdout=io.StringIO(), stderr=io.StringIO())
    assert (models_dir / "z/pack/a.onnx").read_bytes() == b"AAA"
    assert (models_dir / "z/pack/b.onnx").read_bytes() == b"BBB"
    assert not (models_dir / "z/pack/unused.onnx").exists()
    assert not (models_dir / "z/pack.zip").exists()
    assert weights.model_status("tiny", models_dir).state is weights.State.PRESENT

"""Every answer carries a Content-Security-Policy that allows scripts only from Tower's own files."""

from __future__ import annotations

import re

import pytest

from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

PAGES = ["/", "/projects/", "/characters/", "/generate/", "/jobs/", "/gallery/", "/ingest/", "/api/docs/"]


@pytest.mark.parametrize("path", [*PAGES, "/login/", "/admin/login/"])
def test_pages_carry_a_policy_with_scripts_from_self_only(client, owner, project, path):
    if path not in ("/login/", "/admin/login/"):
        client.force_login(owner)
    response = client.get(path)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]*)", policy).group(1).split()
    assert script_src[0] == "'self'" and all(s.startswith("'nonce-") for s in script_src[1:])
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_no_inline_script_or_handler_attribute(client, owner, project, path):
    JobFactory(project=project)
    client.force_login(owner)
    html = client.get(path).content.decode()
    inline = [m for m in re.findall(r"<script\b([^>]*)>", html) if "src=" not in m and "nonce=" not in m]
    assert inline == [], f"{path} has an inline script without the nonce"
    assert not re.search(r"\son[a-z]+\s*=", html), f"{path} has an on…= handler attribute"


def test_each_answer_has_its_own_nonce(client, owner):
    client.force_login(owner)
    first = client.get("/")["Content-Security-Policy"]
    second = client.get("/")["Content-Security-Policy"]
    assert re.search(r"'nonce-([^']+)'", first).group(1) != re.search(r"'nonce-([^']+)'", second).group(1)


def test_media_keep_their_own_sandbox_policy(client, owner, project):
    from django.core.files.base import ContentFile

    from generation.models import Asset
    from tests.factories import png_bytes

    asset = Asset(project=project, job=JobFactory(project=project), mime="image/png", sha256="a" * 64)
    asset.file.save("x.png", ContentFile(png_bytes()), save=True)
    client.force_login(owner)
    assert "sandbox" in client.get(asset.file.url)["Content-Security-Policy"]

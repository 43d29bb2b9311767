"""``manage.py token create|list|revoke``: a first API token without a browser."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tests.factories import make_project
from tower.models import ApiToken


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_create_prints_a_key_once_that_authenticates_as_the_user(owner, outsider):
    make_project(owner, "Mine")
    out, err = _run("create", "owner", "--name", "render farm")
    key = out.strip()
    assert key.startswith("twr_") and "\n" not in key  # alone on stdout: KEY=$(manage.py token create …)
    assert "shown only now" in err
    response = _bearer(key).get("/api/v1/projects/")
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["results"]] == ["Mine"]
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (owner, "render farm")
    # The key is never shown again.
    listed, _ = _run("list")
    assert key not in listed and token.prefix in listed


def test_create_without_a_name_can_run_twice(owner):
    first, _ = _run("create", "owner")
    second, _ = _run("create", "owner")
    assert first != second
    assert ApiToken.objects.filter(user=owner).count() == 2


def test_unknown_user_and_duplicate_name_are_clear_errors(owner):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        _run("create", "nobody")
    _run("create", "owner", "--name", "ci")
    with pytest.raises(CommandError, match="already has a token named 'ci'"):
        _run("create", "owner", "--name", "ci")
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        _run("list", "nobody")


def test_list_shows_one_users_or_everyones_tokens(owner, outsider):
    _run("create", "owner", "--name", "owner-ci")
    _run("create", "outsider", "--name", "outsider-ci")
    everyone, _ = _run("list")
    assert "owner-ci" in everyone and "outsider-ci" in everyone
    mine, _ = _run("list", "owner")
    assert "owner-ci" in mine and "outsider-ci" not in mine
    ApiToken.objects.all().delete()
    assert "owner has no tokens" in _run("list", "owner")[0]


@pytest.mark.parametrize("by", ["id", "prefix", "key"])
def test_revoke_stops_the_key(owner, by):
    key = _run("create", "owner", "--name", "old")[0].strip()
    other = _run("create", "owner", "--name", "kept")[0].strip()
    token = ApiToken.objects.get(name="old")
    ref = {"id": str(token.pk), "prefix": f"{token.prefix}…", "key": key}[by]
    assert _bearer(key).get("/api/v1/projects/").status_code == 200
    out, _ = _run("revoke", ref)
    assert f"Revoked token #{token.pk} 'old'" in out
    assert _bearer(key).get("/api/v1/projects/").status_code == 401
    assert _bearer(other).get("/api/v1/projects/").status_code == 200


@pytest.mark.parametrize("ref", ["999", "twr_nothing", "twr_" + "x" * 40, "hello", "99999999999999999999999", "²"])
def test_revoking_an_unknown_token_is_a_clear_error(owner, ref):
    _run("create", "owner")
    with pytest.raises(CommandError, match="No token"):
        _run("revoke", ref)
    assert ApiToken.objects.count() == 1


def test_an_ambiguous_prefix_is_refused(owner):
    _run("create", "owner", "--name", "a")
    _run("create", "owner", "--name", "b")
    with pytest.raises(CommandError, match="No token"):
        _run("revoke", "twr_")  # every key starts so: the public prefix alone names none
    ApiToken.objects.filter(name="b").update(prefix=ApiToken.objects.get(name="a").prefix)
    with pytest.raises(CommandError, match="matches several tokens"):
        _run("revoke", ApiToken.objects.get(name="a").prefix)
    assert ApiToken.objects.count() == 2


def test_the_command_exits_non_zero_from_the_shell(db, tmp_path):
    """A typo in a script must stop it: manage.py exits with status 1 and says why."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    env = {**os.environ, "TOWER_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "token", "revoke", "nothing-like-a-token"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "No token 'nothing-like-a-token'" in result.stderr

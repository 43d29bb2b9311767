"""Sign-in throttle: wrong passwords lock the account and the address for a while, with a clear message."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import UserFactory
from tower import signin
from tower.models import SignInFailure

PASSWORD = "correct horse battery"


@pytest.fixture
def alice(db):
    user = UserFactory(username="alice", is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def bob(db):
    user = UserFactory(username="bob", is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    return user


def _sign_in(username: str, password: str, *, address: str = "10.0.0.1", url: str = "/login/") -> tuple[Client, str]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(url, {"username": username, "password": password})
    return client, response.content.decode()


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _fail(username: str, times: int, *, address: str = "10.0.0.1", url: str = "/login/") -> None:
    for _ in range(times):
        client, _html = _sign_in(username, "wrong password", address=address, url=url)
        assert not _signed_in(client)


def _let_the_window_pass() -> None:
    """Every recorded failure becomes as old as the window (the clock moving on, without waiting)."""
    for failure in SignInFailure.objects.all():
        failure.at -= signin.WINDOW
        failure.save(update_fields=["at"])


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_after_the_limit_the_right_password_is_refused_with_a_message(alice, url):
    _fail("alice", signin.ACCOUNT_LIMIT, url=url)
    client, html = _sign_in("alice", PASSWORD, url=url)
    assert not _signed_in(client)
    assert "Too many failed sign-ins for this account; try again in 15 minutes." in html
    # The same account from elsewhere is locked too: the limit is the account's.
    client, html = _sign_in("alice", PASSWORD, address="10.9.9.9", url=url)
    assert not _signed_in(client) and "Too many failed sign-ins for this account" in html


def test_one_failure_short_of_the_limit_still_signs_in(alice):
    _fail("alice", signin.ACCOUNT_LIMIT - 1)
    client, _html = _sign_in("alice", PASSWORD)
    assert _signed_in(client)


def test_another_account_from_another_address_is_not_affected(alice, bob):
    _fail("alice", 20)
    client, _html = _sign_in("bob", PASSWORD, address="10.0.0.2")
    assert _signed_in(client)


def test_after_the_window_the_right_password_works_again(alice):
    _fail("alice", 20)
    assert not _signed_in(_sign_in("alice", PASSWORD)[0])
    _let_the_window_pass()
    client, _html = _sign_in("alice", PASSWORD)
    assert _signed_in(client)


def test_a_success_clears_the_accounts_failures(alice):
    _fail("alice", signin.ACCOUNT_LIMIT - 1)
    assert _signed_in(_sign_in("alice", PASSWORD)[0])
    _fail("alice", signin.ACCOUNT_LIMIT - 1)
    assert _signed_in(_sign_in("alice", PASSWORD)[0])


def test_an_address_guessing_many_accounts_is_locked_out_but_others_are_not(alice, bob):
    for n in range(signin.ADDRESS_LIMIT):
        _fail(f"guess{n}", 1, address="10.6.6.6")
    client, html = _sign_in("bob", PASSWORD, address="10.6.6.6")
    assert not _signed_in(client)
    assert "Too many failed sign-ins for your network address; try again in 15 minutes." in html
    assert _signed_in(_sign_in("bob", PASSWORD, address="10.0.0.2")[0])


def test_failures_are_kept_only_as_hashes_and_pruned_after_the_window(alice):
    _fail("alice", 3)
    assert not SignInFailure.objects.filter(key__contains="alice").exists()
    _let_the_window_pass()
    _fail("bob", 1)
    assert SignInFailure.objects.count() == 2  # bob's account and address rows; alice's are gone

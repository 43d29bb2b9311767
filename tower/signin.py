"""Sign-in throttle: too many wrong passwords lock an account, and an address, for a while.

Every password sign-in (the login page, ``/admin/login/``, anything calling ``authenticate()``)
goes through :class:`ThrottledModelBackend`. Failures are rows in the database
(:class:`tower.models.SignInFailure`), so the web process and any other process count together and
a restart forgets nothing. While an account has ``ACCOUNT_LIMIT`` failures within ``WINDOW``, or
an address ``ADDRESS_LIMIT``, the password is not even checked and the form says when to try again.
A lock ends when enough of those failures are older than ``WINDOW``. A successful sign-in clears
its account's failures (not its address's: one's own account must not reset a guessing address).

The address is ``REMOTE_ADDR``: behind a reverse proxy every client shares the proxy's address,
which is why the address limit is higher than the account's.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.utils import timezone

from tower.models import SignInFailure

ACCOUNT_LIMIT = 10
ADDRESS_LIMIT = 30
WINDOW = timedelta(minutes=15)


class SignInThrottled(ValidationError):
    """Raised from ``authenticate()``; login forms show it as their error (it is a ValidationError)."""


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode(errors="replace")).hexdigest()


def _keys(*, username: str, address: str | None) -> dict[str, str]:
    keys = {"account": _key("account", username)}
    if address:
        keys["address"] = _key("address", address)
    return keys


def signin_locked_until(
    *, username: str, address: str | None, now: datetime | None = None
) -> tuple[str, datetime] | None:
    """``(what, until)`` when the account or the address is locked now (what: "account"/"address")."""
    now = now or timezone.now()
    keys = _keys(username=username, address=address)
    limits = {"account": ACCOUNT_LIMIT, "address": ADDRESS_LIMIT}
    locks = []
    for kind, key in keys.items():
        # The limit-th newest failure in the window: the lock lasts until it leaves the window.
        times = list(
            SignInFailure.objects.filter(key=key, at__gt=now - WINDOW)
            .order_by("-at")
            .values_list("at", flat=True)[: limits[kind]]
        )
        if len(times) >= limits[kind]:
            locks.append((kind, times[-1] + WINDOW))
    return max(locks, key=lambda lock: lock[1]) if locks else None


def signin_failed(*, username: str, address: str | None, now: datetime | None = None) -> None:
    now = now or timezone.now()
    # Rows older than the window count for nothing; dropping them here keeps the table small.
    SignInFailure.objects.filter(at__lte=now - WINDOW).delete()
    SignInFailure.objects.bulk_create(
        [SignInFailure(key=key, at=now) for key in _keys(username=username, address=address).values()]
    )


def signin_succeeded(*, username: str) -> None:
    SignInFailure.objects.filter(key=_key("account", username)).delete()


def throttled_message(what: str, until: datetime, *, now: datetime | None = None) -> str:
    minutes = max(1, math.ceil((until - (now or timezone.now())).total_seconds() / 60))
    subject = "this account" if what == "account" else "your network address"
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed sign-ins for {subject}; try again in {minutes} {unit}."


def client_address(request: HttpRequest | None) -> str | None:
    return (request.META.get("REMOTE_ADDR") or None) if request is not None else None


class ThrottledModelBackend(ModelBackend):
    """Django's username/password backend, refusing to check passwords while locked."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        username = str(username)
        address = client_address(request)
        lock = signin_locked_until(username=username, address=address)
        if lock is not None:
            raise SignInThrottled(throttled_message(*lock), code="throttled")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            signin_failed(username=username, address=address)
            # Ends the attempt: the plain ModelBackend listed after this one must not check again.
            raise PermissionDenied
        signin_succeeded(username=username)
        return user

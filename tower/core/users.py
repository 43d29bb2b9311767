"""The signed-in user of a request, as the type the services take."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied


def signed_in(user: AbstractBaseUser | AnonymousUser) -> User:
    """``request.user`` where a login is required (page_login_required, the API's IsAuthenticated,
    the admin): a ``User``; an anonymous one that got this far is refused (403), never passed on."""
    if not isinstance(user, User):
        raise PermissionDenied("sign in first")
    return user

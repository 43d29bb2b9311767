"""``manage.py ensure_admin``: make sure someone can log in to a fresh Tower.

* ``TOWER_ADMIN_USER`` set: that user must exist; it is created as a superuser if missing, with
  ``TOWER_ADMIN_PASSWORD`` (or the file named by ``TOWER_ADMIN_PASSWORD_FILE``) or, if neither is
  set, a generated password.
* ``TOWER_ADMIN_USER`` not set: if there is already a superuser, nothing is done; otherwise
  ``admin`` is created the same way.

A generated password is printed once and stored nowhere but as Django's hash. An existing user's
password is never changed: a restart must not undo a password the producer chose.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tower.core.env import env_secret, env_str

DEFAULT_USERNAME = "admin"


@dataclass(frozen=True)
class AdminAccount:
    username: str
    created: bool
    generated_password: str | None = None  # set only when created with a generated password
    ignored_password: bool = False  # a password was configured for a user that already exists


def ensure_admin() -> AdminAccount:
    """Create the admin account if it is missing; see the module docstring for the rules."""
    user_model = get_user_model()
    configured_name = env_str("TOWER_ADMIN_USER", "")
    password = env_secret("TOWER_ADMIN_PASSWORD")
    manager = user_model._default_manager
    with transaction.atomic():
        if configured_name:
            existing = manager.filter(**{user_model.USERNAME_FIELD: configured_name}).first()
        else:
            existing = manager.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            return AdminAccount(username=existing.get_username(), created=False, ignored_password=bool(password))
        username = configured_name or DEFAULT_USERNAME
        generated = None
        if password:
            candidate = user_model(**{user_model.USERNAME_FIELD: username})
            try:
                validate_password(password, candidate)
            except ValidationError as exc:
                raise CommandError("TOWER_ADMIN_PASSWORD is too weak: " + " ".join(exc.messages)) from None
        else:
            password = generated = secrets.token_urlsafe(12)
        manager.create_superuser(**{user_model.USERNAME_FIELD: username, "password": password})
    return AdminAccount(username=username, created=True, generated_password=generated)


def describe(account: AdminAccount, *, admin_url: str = "/admin/") -> list[str]:
    """Short lines telling the producer how to log in."""
    if account.generated_password:
        return [
            f"Created the admin user {account.username!r} with password: {account.generated_password}",
            f"  This is shown once and stored nowhere. Log in and change it at {admin_url}password_change/",
        ]
    if account.created:
        return [f"Created the admin user {account.username!r} with the configured password."]
    lines = [f"Admin user: {account.username} (existing account; its password is unchanged)"]
    if account.ignored_password:
        lines.append("  TOWER_ADMIN_PASSWORD is ignored: Tower never resets an existing password.")
    return lines


class Command(BaseCommand):
    help = "Create the admin user if missing (TOWER_ADMIN_USER, TOWER_ADMIN_PASSWORD[_FILE])."

    def handle(self, *args: object, **options: object) -> None:
        for line in describe(ensure_admin()):
            self.stdout.write(line)

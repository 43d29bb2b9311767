"""``manage.py seed_demo [--owner USERNAME]``: create the two example projects (safe to run again)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from characters.demo import demo_projects_seed


class Command(BaseCommand):
    help = (
        "Create the example projects (Cyberpunk Goblin Slayer, Tokyo Debt Desire) with their styles, story "
        "bibles and a character each. Projects the owner already has are kept as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="username who will own them (default: the first superuser)")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = _owner(options["owner"])
        for outcome in demo_projects_seed(owner=owner):
            self.stdout.write(outcome.describe())
        self.stdout.write(f"Owner: {owner.get_username()}.")


def _owner(username: str | None) -> User:
    users = get_user_model()._default_manager
    if username:
        user = users.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        return user
    user = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
    if user is None:
        raise CommandError(
            "there is no superuser to own the example projects: create one with `manage.py ensure_admin` "
            "(or `manage.py createsuperuser`), or name an owner with --owner USERNAME"
        )
    return user

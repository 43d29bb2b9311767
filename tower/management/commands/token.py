"""``manage.py token create|list|revoke``: API tokens without a browser.

``create USERNAME [--name NAME]`` prints the raw key once, alone on stdout (so
``KEY=$(manage.py token create alice)`` works); only its SHA-256 is stored. ``list [USERNAME]``
shows tokens by id and prefix, never a key. ``revoke ID|PREFIX|KEY`` deletes one token; requests
and sockets that use it are refused from then on.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from tower.api_v1 import api_token_create, api_token_revoke
from tower.models import TOKEN_PREFIX, ApiToken, hash_token

PREFIX_LENGTH = 12  # characters of the key kept as ApiToken.prefix (see api_token_create)


class Command(BaseCommand):
    help = "Create, list or revoke API tokens (the key is printed once, at creation)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,list,revoke}")
        create = actions.add_parser("create", help="create a token for USERNAME and print its key once")
        create.add_argument("username")
        create.add_argument("--name", default="", help="a label to recognise it by (default: 'cli', 'cli 2', …)")
        listing = actions.add_parser("list", help="list tokens (of USERNAME, or everyone's)")
        listing.add_argument("username", nargs="?")
        revoke = actions.add_parser("revoke", help="revoke a token by its id, its prefix or the key itself")
        revoke.add_argument("token")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            self._create(options["username"], options["name"])
        elif action == "list":
            self._list(options["username"])
        else:
            self._revoke(options["token"])

    def _create(self, username: str, name: str) -> None:
        user = _user(username)
        name = name.strip() or _free_name(user)
        try:
            token, raw = api_token_create(user=user, name=name)
        except ValidationError as error:
            raise CommandError(f"{username} already has a token named {name!r}; choose another --name.") from error
        self.stdout.write(raw)
        self.stderr.write(
            f"Token #{token.pk} {name!r} for {username}. This key is shown only now; "
            "send it as 'Authorization: Bearer <key>'."
        )

    def _list(self, username: str | None) -> None:
        tokens: QuerySet[ApiToken] = ApiToken.objects.select_related("user").order_by("user__username", "pk")
        if username:
            tokens = tokens.filter(user=_user(username))
        rows = [
            (
                str(t.pk),
                t.user.get_username(),
                t.name,
                f"{t.prefix}…",
                f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
            )
            for t in tokens
        ]
        if not rows:
            self.stdout.write("No tokens." if not username else f"{username} has no tokens.")
            return
        header = ("id", "user", "name", "prefix", "created", "last used")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def _revoke(self, ref: str) -> None:
        token = _token(ref)
        described = f"#{token.pk} {token.name!r} ({token.prefix}…) of {token.user.get_username()}"
        api_token_revoke(token=token)
        self.stdout.write(f"Revoked token {described}.")


def _user(username: str) -> Any:
    user_model = get_user_model()
    user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"No user named {username!r}.")
    return user


def _free_name(user: Any) -> str:
    taken = set(ApiToken.objects.filter(user=user, name__startswith="cli").values_list("name", flat=True))
    return next(name for n in range(1, len(taken) + 2) if (name := "cli" if n == 1 else f"cli {n}") not in taken)


def _token(ref: str) -> ApiToken:
    """The one token ``ref`` names: an id, a prefix as ``token list`` shows it, or the raw key."""
    tokens = ApiToken.objects.select_related("user")
    ref = ref.strip().rstrip("…")
    if ref.isascii() and ref.isdigit():
        matches = list(tokens.filter(pk=int(ref))) if len(ref) < 19 else []  # past 2^63 is no id
    elif ref.startswith(TOKEN_PREFIX) and len(ref) > PREFIX_LENGTH:
        matches = list(tokens.filter(key_hash=hash_token(ref)))  # longer than a prefix: the key itself
    elif ref.startswith(TOKEN_PREFIX) and len(ref) > len(TOKEN_PREFIX):
        matches = list(tokens.filter(prefix__startswith=ref))
    else:
        matches = []
    if not matches:
        raise CommandError(f"No token {ref!r}; 'manage.py token list' shows ids and prefixes.")
    if len(matches) > 1:
        ids = ", ".join(f"#{t.pk}" for t in matches)
        raise CommandError(f"{ref!r} matches several tokens ({ids}); revoke by id.")
    return matches[0]

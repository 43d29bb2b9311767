from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

TOKEN_PREFIX = "twr_"  # noqa: S105 - a public prefix, not a secret


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiToken(models.Model):
    """A named API token. Only its SHA-256 is stored; the raw key is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise it")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="apitoken_unique_name_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class SignInFailure(models.Model):
    """One failed password sign-in, kept while it counts towards a throttle (see tower/signin.py)."""

    # SHA-256 of "account:<username>" or "address:<ip>": bounded, and no typed password-like
    # usernames kept in the clear.
    key = models.CharField(max_length=64)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["key", "at"], name="signinfailure_key_at"),
            models.Index(fields=["at"], name="signinfailure_at"),
        ]

    def __str__(self) -> str:
        return f"{self.key[:8]}… at {self.at:%Y-%m-%d %H:%M:%S}"

"""The one base of every app's domain errors, so the API maps a single class to a 400."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal a person can act on (bad input, a state that forbids the action); the message is shown as is."""

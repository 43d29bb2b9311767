"""What one review session remembers: the undo stack, skipped images and how many were reviewed.

It lives in the Django session (JSON), so a reload or a second tab of the same login shares it,
and another person's session never undoes your actions.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends.base import SessionBase

SESSION_KEY = "training_review"
MAX_UNDO = 100
MAX_SKIPPED = 1000


class ReviewSession:
    def __init__(self, session: SessionBase) -> None:
        self._session = session
        data = session.get(SESSION_KEY) or {}
        self.stack: list[dict[str, Any]] = list(data.get("stack") or [])
        self.skipped: list[int] = [int(i) for i in data.get("skipped") or []]
        self.reviewed: int = int(data.get("reviewed") or 0)

    def save(self) -> None:
        self._session[SESSION_KEY] = {
            "stack": self.stack[-MAX_UNDO:],
            "skipped": self.skipped[-MAX_SKIPPED:],
            "reviewed": self.reviewed,
        }

    def push(self, entry: dict[str, Any]) -> None:
        self.stack.append(entry)
        if entry["action"] == "skip":
            self.skipped.append(entry["image"])
        else:
            self.reviewed += 1
            # A reviewed image may be shown again later (under another filter): it is no longer "skipped".
            self.skipped = [i for i in self.skipped if i != entry["image"]]
        self.save()

    def pop(self) -> dict[str, Any] | None:
        if not self.stack:
            return None
        entry = self.stack.pop()
        if entry["action"] == "skip":
            self.skipped = [i for i in self.skipped if i != entry["image"]]
        else:
            self.reviewed = max(0, self.reviewed - 1)
        self.save()
        return entry

    def peek(self) -> dict[str, Any] | None:
        return self.stack[-1] if self.stack else None

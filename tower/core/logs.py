"""Logging filters the settings' LOGGING refers to by dotted path (kept free of models and apps:
logging is configured before the apps load)."""

from __future__ import annotations

import logging
from collections.abc import Iterable


class ExpectedAnswers(logging.Filter):
    """Drops ``django.request``'s line for a view whose error status is its answer, not a failure.

    The health check answers 503 while Tower is degraded: a monitor polling during an outage would
    log an ERROR per request; the view logs the change once instead.
    """

    def __init__(self, url_names: Iterable[str], status_codes: Iterable[int]) -> None:
        super().__init__()
        self.url_names = frozenset(url_names)
        self.status_codes = frozenset(status_codes)

    def filter(self, record: logging.LogRecord) -> bool:
        # Django documents both extras on django.request's records.
        match = getattr(getattr(record, "request", None), "resolver_match", None)
        expected = match is not None and match.url_name in self.url_names
        return not (expected and getattr(record, "status_code", None) in self.status_codes)

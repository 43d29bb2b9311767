"""A consumer's recheck of the credentials that let its socket in, without importing the wiring.

The ASGI authentication stack (``tower.ws_auth``) knows how a socket was authenticated (a session
or an API token) and puts its check in the scope under :data:`CREDENTIALS_CHECK`; consumers in the
apps call :func:`credentials_hold` before forwarding each event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Scope key of the stack's check: a callable taking the scope, True while the credentials hold.
CREDENTIALS_CHECK = "tower_credentials_check"


def credentials_hold(scope: Mapping[str, Any]) -> bool:
    """Whether what authenticated the socket still does (sync: it queries the database).

    A scope that did not come through the authentication stack has no check and never holds.
    """
    check: Callable[[Mapping[str, Any]], bool] | None = scope.get(CREDENTIALS_CHECK)
    return check is not None and check(scope)

"""drf-spectacular hooks: every operation documents the errors it can answer.

The views answer 400 (invalid input, field by field), 401 (no or bad credentials), 403 (a
viewer's write, or not staff), 404 (missing or invisible), 413 (body over the limit) and 429
(throttled) with DRF's JSON error body; spectacular documents only the success. This hook adds
those answers to every operation that does not document them itself.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "description": "DRF's error body: 'detail' for one message, or a list of messages per field.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}

ERRORS = {
    "400": "invalid input: 'detail', or the messages per field",
    "401": "no credentials, or a bad or revoked token",
    "403": "signed in but not allowed (a viewer's write: 'read-only access')",
    "404": "no such object, or one you may not see",
    "413": "the request body is larger than the limit",
    "429": "too many requests: wait and retry",
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for code, description in ERRORS.items():
                if code == "413" and method not in {"post", "put", "patch"}:
                    continue
                responses.setdefault(code, {"content": reference, "description": description})
    return result

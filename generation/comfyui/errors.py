"""Errors raised by the ComfyUI client, with messages a producer can act on."""

from __future__ import annotations

from typing import Any


class ComfyError(Exception):
    """Base class of every error the ComfyUI client raises."""


class ComfyUnreachable(ComfyError):
    """The server could not be reached, or did not answer in time."""


class ComfyProtocolError(ComfyError):
    """The server answered something this client does not understand."""


class ComfyNotFound(ComfyError):
    """A file asked from /view does not exist on the server."""


class ComfyRejected(ComfyError):
    """The server refused a request (POST /prompt validation, a bad upload or /view request)."""

    def __init__(
        self,
        status: int,
        error: dict[str, Any] | None = None,
        node_errors: dict[str, Any] | None = None,
        text: str | None = None,
    ) -> None:
        self.status = status
        self.error = error or {}
        self.node_errors = node_errors or {}
        self.text = text
        super().__init__(describe_rejection(status, self.error, self.node_errors, text))

    @property
    def error_type(self) -> str:
        return str(self.error.get("type", ""))


class ComfyExecutionError(ComfyError):
    """A node failed while the prompt ran."""

    def __init__(
        self,
        prompt_id: str,
        node_id: str | None,
        node_type: str | None,
        exception_type: str,
        message: str,
        traceback: list[str] | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.message = message.strip()
        self.traceback = traceback or []
        where = f"node {node_id} ({node_type})" if node_id else "the prompt"
        super().__init__(f"{where} failed: {exception_type}: {self.message}")

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> ComfyExecutionError:
        return cls(
            prompt_id=str(data.get("prompt_id", "")),
            node_id=_opt_str(data.get("node_id")),
            node_type=_opt_str(data.get("node_type")),
            exception_type=str(data.get("exception_type", "Exception")),
            message=str(data.get("exception_message", "")),
            traceback=[str(line) for line in data.get("traceback") or []],
        )


class ComfyInterrupted(ComfyError):
    """The prompt was interrupted (POST /interrupt) before it finished."""

    def __init__(self, prompt_id: str, node_id: str | None = None, node_type: str | None = None) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        at = f" at node {node_id} ({node_type})" if node_id else ""
        super().__init__(f"prompt {prompt_id} was interrupted{at}")


class ComfyPromptLost(ComfyError):
    """The server knows nothing of a prompt it accepted: restarted, or its history was cleared."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        super().__init__(
            f"prompt {prompt_id} is neither queued nor in the server's history (server restarted or history cleared)"
        )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def describe_node_error(node_id: str, class_type: str, error: dict[str, Any]) -> str:
    """One validation error of one node, in words: what is wrong with which input."""
    extra = error.get("extra_info") or {}
    name = extra.get("input_name") or error.get("details") or "?"
    where = f"node {node_id} ({class_type})"
    kind = error.get("type")
    value = extra.get("received_value")
    config = extra.get("input_config") or [None, {}]
    limits = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
    if kind == "value_not_in_list":
        return f"{where}: {name} {value!r} not in the server's list"
    if kind == "required_input_missing":
        return f"{where}: required input {name} is missing"
    if kind == "invalid_input_type":
        return f"{where}: {name} {value!r} is not a valid {config[0]}"
    if kind == "value_smaller_than_min":
        return f"{where}: {name} {value!r} is below the minimum {limits.get('min')}"
    if kind == "value_bigger_than_max":
        return f"{where}: {name} {value!r} is above the maximum {limits.get('max')}"
    if kind == "return_type_mismatch":
        return f"{where}: {name} receives {extra.get('received_type')} but expects {config[0]}"
    if kind in ("exception_during_validation", "exception_during_inner_validation", "bad_linked_input"):
        return f"{where}: broken link ({error.get('details')})"
    if kind == "custom_validation_failed":
        return f"{where}: {error.get('details')}"
    return f"{where}: {error.get('message')}: {error.get('details')}"


def describe_node_errors(node_errors: dict[str, Any]) -> list[str]:
    lines = []
    for node_id, entry in node_errors.items():
        class_type = str(entry.get("class_type", "?")) if isinstance(entry, dict) else "?"
        for error in (entry.get("errors") if isinstance(entry, dict) else None) or []:
            lines.append(describe_node_error(str(node_id), class_type, error))
    return lines


def describe_rejection(status: int, error: dict[str, Any], node_errors: dict[str, Any], text: str | None) -> str:
    lines = describe_node_errors(node_errors)
    if lines:
        return "; ".join(lines)
    if error:
        message = str(error.get("message", "rejected"))
        details = error.get("details")
        return f"{message} ({details})" if details else message
    body = (text or "").strip().splitlines()
    return f"HTTP {status}" + (f": {body[0]}" if body else "")

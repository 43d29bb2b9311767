"""POST /prompt validation with the error shapes of ComfyUI 0.3.64 (see prompt_invalid.json).

Python exceptions raised while walking a bad link (KeyError for a missing node, IndexError for
a bad output slot) are deliberately left to surface, because the real server reports them as
``exception_during_validation`` with the exception's text.
"""

from __future__ import annotations

import hashlib
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# The real server collects output nodes in Python sets, whose order is hash-seeded per process.
# The fake uses a fixed salted hash instead; salt 92 reproduces the recorded orders.
_SET_ORDER_SALT = "92"


def set_order(ids: Iterable[str]) -> list[str]:
    """Order node ids the way a Python set of them might iterate (fixed, arbitrary)."""
    return sorted(ids, key=lambda s: hashlib.sha256(f"{_SET_ORDER_SALT}:{s}".encode()).digest())


CustomCheck = Callable[[str, Any], "str | bool"]


@dataclass
class Validation:
    ok: bool
    error: dict | None
    outputs: list[str]
    node_errors: dict[str, dict]


def _error(kind: str, message: str, details: str = "") -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _types_match(received: Any, expected: Any) -> bool:
    if received == expected or received == "*" or expected == "*":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


class PromptValidator:
    def __init__(self, object_info: dict[str, dict], custom_checks: dict[str, dict[str, CustomCheck]]):
        self.object_info = object_info
        self.custom_checks = custom_checks  # class -> input -> check(value) -> True | message

    def validate(self, prompt: Any, partial_targets: list[str] | None = None) -> Validation:
        outputs: list[str] = []
        for node_id in prompt:
            node = prompt[node_id]
            if "class_type" not in node:
                err = _error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
                return Validation(False, err, [], {})
            class_type = node["class_type"]
            info = self.object_info.get(class_type)
            if info is None:
                err = _error(
                    "invalid_prompt",
                    f"Cannot execute because node {class_type} does not exist.",
                    f"Node ID '#{node_id}'",
                )
                return Validation(False, err, [], {})
            if info.get("output_node") is True and (partial_targets is None or node_id in partial_targets):
                outputs.append(node_id)
        if not outputs:
            return Validation(False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {})

        good: list[str] = []
        failures: list[tuple[str, list[dict]]] = []
        node_errors: dict[str, dict] = {}
        validated: dict[str, tuple[bool, list[dict]]] = {}
        for out in set_order(outputs):
            try:
                valid, reasons = self._node(prompt, out, validated)
            except Exception as ex:
                valid = False
                reasons = [
                    {
                        "type": "exception_during_validation",
                        "message": "Exception when validating node",
                        "details": str(ex),
                        "extra_info": {
                            "exception_type": _type_name(ex),
                            "traceback": traceback.format_tb(sys.exc_info()[2]),
                        },
                    }
                ]
                validated[out] = (False, reasons)
            if valid:
                good.append(out)
                continue
            failures.append((out, reasons))
            for node_id, (node_valid, node_reasons) in validated.items():
                if node_valid or not node_reasons:
                    continue
                entry = node_errors.setdefault(
                    node_id,
                    {"errors": node_reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
                )
                entry["dependent_outputs"].append(out)
        if not good:
            details = "\n".join(f"{r['message']}: {r['details']}" for _, rs in failures for r in rs)
            err = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return Validation(False, err, [], node_errors)
        return Validation(True, None, set_order(good), node_errors)

    def _node(self, prompt: dict, node_id: str, validated: dict) -> tuple[bool, list[dict]]:
        if node_id in validated:
            return validated[node_id]
        node = prompt[node_id]
        inputs = node["inputs"]
        class_type = node["class_type"]
        spec = self.object_info[class_type]["input"]
        checks = self.custom_checks.get(class_type, {})
        errors: list[dict] = []
        valid = True
        declared = list(spec.get("required", {})) + [
            k for k in spec.get("optional", {}) if k not in spec.get("required", {})
        ]
        for name in declared:
            category = "required" if name in spec.get("required", {}) else "optional"
            entry = spec[category][name]
            input_type = entry[0]
            extra = entry[1] if len(entry) > 1 else {}
            info = [input_type, extra]
            if name not in inputs:
                if category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            value = inputs[name]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(
                        {
                            "type": "bad_linked_input",
                            "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            "details": name,
                            "extra_info": {"input_name": name, "input_config": info, "received_value": value},
                        }
                    )
                    continue
                source_id = value[0]
                source_class = prompt[source_id]["class_type"]
                returned = tuple(self.object_info[source_class]["output"])
                received = returned[value[1]]
                if not _types_match(received, input_type):
                    errors.append(
                        {
                            "type": "return_type_mismatch",
                            "message": "Return type mismatch between linked nodes",
                            "details": f"{name}, received_type({received}) mismatch input_type({input_type})",
                            "extra_info": {
                                "input_name": name,
                                "input_config": info,
                                "received_type": received,
                                "linked_node": value,
                            },
                        }
                    )
                    continue
                try:
                    upstream_ok, _ = self._node(prompt, source_id, validated)
                except Exception as ex:
                    valid = False
                    validated[source_id] = (
                        False,
                        [
                            {
                                "type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": str(ex),
                                "extra_info": {
                                    "input_name": name,
                                    "input_config": info,
                                    "exception_message": str(ex),
                                    "exception_type": _type_name(ex),
                                    "traceback": traceback.format_tb(sys.exc_info()[2]),
                                    "linked_node": value,
                                },
                            }
                        ],
                    )
                    continue
                if not upstream_ok:
                    valid = False
                continue
            error = self._constant(inputs, name, value, input_type, extra, info, name in checks)
            if error is not None:
                errors.append(error)
        for name, check in checks.items():
            verdict = check(class_type, inputs.get(name))
            if verdict is not True:
                details = name if verdict is False else f"{name} - {verdict}"
                errors.append(
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": details,
                        "extra_info": {"input_name": name},
                    }
                )
        result = (not errors and valid, errors)
        validated[node_id] = result
        return result

    @staticmethod
    def _constant(
        inputs: dict, name: str, value: Any, input_type: Any, extra: dict, info: list, custom: bool
    ) -> dict | None:
        if isinstance(value, dict) and "__value__" in value:
            value = value["__value__"]
            inputs[name] = value
        converters: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
        convert = converters.get(input_type) if isinstance(input_type, str) else None
        if convert is not None:
            try:
                value = convert(value)
                inputs[name] = value
            except Exception as ex:
                return {
                    "type": "invalid_input_type",
                    "message": f"Failed to convert an input value to a {input_type} value",
                    "details": f"{name}, {value}, {ex}",
                    "extra_info": {
                        "input_name": name,
                        "input_config": info,
                        "received_value": value,
                        "exception_message": str(ex),
                    },
                }
        if custom:
            return None
        if "min" in extra and value < extra["min"]:
            return {
                "type": "value_smaller_than_min",
                "message": "Value {} smaller than min of {}".format(value, extra["min"]),
                "details": name,
                "extra_info": {"input_name": name, "input_config": info, "received_value": value},
            }
        if "max" in extra and value > extra["max"]:
            return {
                "type": "value_bigger_than_max",
                "message": "Value {} bigger than max of {}".format(value, extra["max"]),
                "details": name,
                "extra_info": {"input_name": name, "input_config": info, "received_value": value},
            }
        if isinstance(input_type, list) and value not in input_type:
            if len(input_type) > 20:
                listing, config = f"(list of length {len(input_type)})", None
            else:
                listing, config = str(input_type), info
            return {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"{name}: '{value}' not in {listing}",
                "extra_info": {"input_name": name, "input_config": config, "received_value": value},
            }
        return None


def _type_name(ex: BaseException) -> str:
    cls = type(ex)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"

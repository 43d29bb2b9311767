"""ComfyUI workflow templates as pure data: validation, bindings, parameter injection, preflight.

Django-free on purpose: everything here is plain functions on dicts, so it is easy to test and
reusable from the worker, the API and management commands alike.
"""

from __future__ import annotations

from generation.workflow.apply import (
    MAX_DRAWN_SEED,
    MAX_SEED,
    Applied,
    ParameterError,
    apply,
    coerce_parameter,
    draw_seed,
)
from generation.workflow.bindings import (
    PARAMETERS,
    STYLE_PARAMETERS,
    TRANSFORMS,
    BindingError,
    Target,
    normalize_bindings,
    pose_count,
    resolve_bindings,
    style_parameters,
)
from generation.workflow.graph import (
    UI_FORMAT_HELP,
    Graph,
    GraphFormatError,
    WorkflowError,
    is_link,
    parse_graph,
    required_nodes,
    validate_graph,
)
from generation.workflow.infer import infer_bindings
from generation.workflow.preflight import ComboRequirement, Problem, combo_requirements, preflight
from generation.workflow.template_file import (
    KINDS,
    WEIGHTLESS_NODES,
    TemplateFormatError,
    TemplateSpec,
    load_template_file,
    parse_template,
    sheet_layout,
)

__all__ = [
    "KINDS",
    "MAX_DRAWN_SEED",
    "MAX_SEED",
    "PARAMETERS",
    "STYLE_PARAMETERS",
    "TRANSFORMS",
    "UI_FORMAT_HELP",
    "WEIGHTLESS_NODES",
    "Applied",
    "BindingError",
    "ComboRequirement",
    "Graph",
    "GraphFormatError",
    "ParameterError",
    "Problem",
    "Target",
    "TemplateFormatError",
    "TemplateSpec",
    "WorkflowError",
    "apply",
    "coerce_parameter",
    "combo_requirements",
    "draw_seed",
    "infer_bindings",
    "is_link",
    "load_template_file",
    "normalize_bindings",
    "parse_graph",
    "parse_template",
    "pose_count",
    "preflight",
    "required_nodes",
    "resolve_bindings",
    "sheet_layout",
    "style_parameters",
    "validate_graph",
]

"""Writes for workflow templates: importing a user's graph, syncing the shipped ones."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from generation.models import JobKind, WorkflowTemplate
from generation.services.submit import known_object_infos
from generation.workflow import (
    WEIGHTLESS_NODES,
    BindingError,
    GraphFormatError,
    TemplateFormatError,
    TemplateSpec,
    infer_bindings,
    load_template_file,
    normalize_bindings,
    parse_graph,
    required_nodes,
    resolve_bindings,
    style_parameters,
)
from generation.workflow.apply import graph_values
from generation.workflow.bindings import STYLE_PARAMETERS, Bindings, bindings_to_json
from generation.workflow.preflight import node_pack_hint
from projects.models import Project
from projects.services import unique_slug
from tower.core.errors import DomainError


class TemplateError(DomainError):
    """A template cannot be imported or stored as asked."""


def _validation_text(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    return "; ".join(exc.messages)


def _mark_style(bindings: Bindings, names: list[str]) -> Bindings:
    unknown = sorted(set(names) - STYLE_PARAMETERS)
    if unknown:
        raise TemplateError(
            f"the project style has no value for {', '.join(unknown)} "
            f"(it can set: {', '.join(sorted(STYLE_PARAMETERS))})"
        )
    unbound = sorted(set(names) - set(bindings))
    if unbound:
        raise TemplateError(
            f"cannot follow the style for {', '.join(unbound)}: this workflow has no binding for it "
            f"(bound: {', '.join(sorted(bindings)) or 'nothing'})"
        )
    return {
        param: [replace(t, style=True) for t in targets] if param in names else targets
        for param, targets in bindings.items()
    }


@transaction.atomic
def template_import(
    *,
    project: Project,
    name: str,
    graph_json: str | bytes | dict[str, Any],
    kind: str,
    user: User | None,
    bindings: dict[str, Any] | None = None,
    description: str = "",
    follows_style: list[str] | None = None,
) -> WorkflowTemplate:
    """Store a user's exported ComfyUI graph as a template of ``project``.

    With no ``bindings``, they are inferred from the graph (:func:`infer_bindings`); given
    bindings must resolve on it. Every bound input keeps the graph's value unless its binding
    says ``"style": true``; ``follows_style`` names parameters to mark so (they must be bound).
    The caller has checked that ``user`` may edit the project.
    """
    if kind not in JobKind.values:
        raise TemplateError(f"kind must be one of {', '.join(JobKind.values)}, not {kind!r}")
    if not isinstance(name, str) or not name.strip():
        raise TemplateError("a template needs a name")
    try:
        graph = parse_graph(graph_json)
    except GraphFormatError as exc:
        raise TemplateError(f"this is not a usable ComfyUI workflow: {exc}") from exc
    if bindings is None:
        bindings = infer_bindings(graph)
    try:
        normalized = normalize_bindings(bindings)
        resolve_bindings(graph, normalized)
    except BindingError as exc:
        raise TemplateError(f"the bindings do not fit this workflow: {exc}") from exc
    normalized = _mark_style(normalized, follows_style or [])
    classes = required_nodes(graph)
    template = WorkflowTemplate(
        project=project,
        name=name.strip(),
        slug=unique_slug(WorkflowTemplate, name, scope={"project": project}),
        kind=kind,
        description=description,
        graph=graph,
        bindings=bindings_to_json(normalized),
        required_nodes=classes,
        source=WorkflowTemplate.Source.IMPORTED,
        weightless=set(classes) <= WEIGHTLESS_NODES,
        created_by=user,
    )
    try:
        template.full_clean()
    except ValidationError as exc:
        raise TemplateError(_validation_text(exc)) from exc
    template.save()
    return template


def template_node_warnings(*, template: WorkflowTemplate) -> list[str]:
    """Node classes of ``template`` that no enabled backend has, by their cached ``/object_info``.

    Warnings, not refusals: the pack may be installed later, or the backend is just not enabled yet.
    """
    infos = known_object_infos()
    if not infos:
        return ["no enabled backend has reported its node classes yet, so this workflow's nodes were not checked"]
    names = ", ".join(name for name, _ in infos)
    return [
        f"no enabled backend ({names}) has the node class '{class_type}': {node_pack_hint(class_type)}"
        for class_type in template.required_nodes or []
        if all(class_type not in info for _, info in infos)
    ]


def template_follows_style(*, template: WorkflowTemplate) -> list[str]:
    """The parameters of ``template`` that take the project style's values, sorted."""
    try:
        return sorted(style_parameters(template.bindings or {}))
    except BindingError:
        return []  # bindings edited by hand in the admin that no longer parse follow nothing


@dataclass(frozen=True)
class BindingRow:
    """One bound parameter of a template, as its page lists it."""

    parameter: str
    targets: list[str]  # "node 5 (EmptyLatentImage) · width", with the transform if any
    value: Any  # what the graph itself holds (None: structural, transformed or unresolved)
    follows_style: bool


def template_binding_rows(*, template: WorkflowTemplate) -> list[BindingRow]:
    """Each bound parameter with where it goes, the graph's own value and whether the style sets it."""
    try:
        normalized = normalize_bindings(template.bindings or {})
    except BindingError:
        return []
    try:
        own = graph_values(template.graph, resolve_bindings(template.graph, normalized))
    except BindingError:
        own = {}
    rows = []
    for param, targets in normalized.items():
        described = []
        for target in targets:
            text = target.describe() + (f" · {target.input}" if target.input else "")
            text += f" (pose {target.pose + 1})" if target.pose is not None else ""
            described.append(text + (f" ({target.transform})" if target.transform else ""))
        rows.append(BindingRow(param, described, own.get(param), any(t.style for t in targets)))
    return rows


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)
    orphaned: list[str] = field(default_factory=list)  # shipped rows whose file is gone

    @property
    def ok(self) -> bool:
        return not self.invalid


_SYNCED_FIELDS = ("name", "kind", "description", "graph", "bindings", "weightless", "required_nodes")


def default_workflows_folder() -> Path:
    return Path(settings.BASE_DIR) / "workflows"


def template_sync_shipped(*, folder: Path | str | None = None) -> SyncReport:
    """Create or update the shipped templates (global, ``source=shipped``) from ``folder``'s files.

    Upserts by slug. A file that does not validate is reported and changes nothing; the other
    files still sync. Rows whose file has gone are reported as orphaned, not deleted, since jobs
    may refer to them.
    """
    folder = Path(folder) if folder is not None else default_workflows_folder()
    if not folder.is_dir():
        raise TemplateError(f"no workflows folder at {folder}")
    report = SyncReport()
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            spec = load_template_file(path)
        except TemplateFormatError as exc:
            report.invalid.append((path.name, str(exc)))
            continue
        if spec.slug in seen:
            report.invalid.append((path.name, f"slug '{spec.slug}' is already used by {seen[spec.slug]}"))
            continue
        seen[spec.slug] = path.name
        try:
            outcome = _upsert_shipped(spec)
        except TemplateError as exc:
            report.invalid.append((path.name, str(exc)))
            continue
        getattr(report, outcome).append(spec.slug)
    report.orphaned = sorted(
        WorkflowTemplate.objects.filter(project__isnull=True, source=WorkflowTemplate.Source.SHIPPED)
        .exclude(slug__in=seen)
        .values_list("slug", flat=True)
    )
    return report


@transaction.atomic
def _upsert_shipped(spec: TemplateSpec) -> str:
    values = {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "graph": spec.graph,
        "bindings": spec.bindings,
        "weightless": spec.weightless,
        "required_nodes": required_nodes(spec.graph),
    }
    existing = WorkflowTemplate.objects.select_for_update().filter(project__isnull=True, slug=spec.slug).first()
    if existing is None:
        template = WorkflowTemplate(project=None, slug=spec.slug, source=WorkflowTemplate.Source.SHIPPED, **values)
        outcome = "created"
    else:
        if existing.source != WorkflowTemplate.Source.SHIPPED:
            raise TemplateError(f"slug '{spec.slug}' belongs to a global template that was not shipped")
        changed = [name for name in _SYNCED_FIELDS if getattr(existing, name) != values[name]]
        if not changed:
            return "unchanged"
        template = existing
        for name in changed:
            setattr(template, name, values[name])
        outcome = "updated"
    try:
        template.full_clean()
    except ValidationError as exc:
        raise TemplateError(_validation_text(exc)) from exc
    if outcome == "created":
        template.save()
    else:
        template.save(update_fields=[*changed, "updated_at"])
    return outcome


@transaction.atomic
def template_delete(*, template: WorkflowTemplate) -> None:
    """Remove an imported template; jobs keep the exact graph they ran, so nothing is lost."""
    if template.source == WorkflowTemplate.Source.SHIPPED:
        raise TemplateError("shipped templates cannot be deleted")
    template.delete()

"""The Generate page: its form, image pickers, resolved-prompt preview with pre-flight, output pane,
and the character page's resolved-prompt panel."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods

from characters.models import Character
from characters.selectors import (
    character_get_for_user,
    references_visible_to,
    variations_visible_to,
    versions_visible_to,
)
from generation.forms import GenerateForm
from generation.models import Asset, AssetKind, BackendObjectInfo, InputImage, Job, JobStatus, WorkflowTemplate
from generation.selectors import assets_visible_to, input_images_visible_to, jobs_visible_to
from generation.services.inputs import input_image_create
from generation.services.jobs import JobError
from generation.services.requests import submit_request
from generation.services.resolve import Resolved, ResolveError, resolve_job_parameters
from generation.workflow import WorkflowError, apply, preflight, style_parameters
from projects.models import Project
from projects.selectors import project_get_for_user, project_user_can_write
from tower.core.pages import form_add_service_errors, page_login_required, render_page
from tower.core.thumbnails import thumb_name
from tower.core.users import signed_in

# --- Resolved prompt and pre-flight -------------------------------------------------------------


def preflight_report(template: WorkflowTemplate, resolved: Resolved, seed: int | None) -> dict[str, Any]:
    """What each enabled backend (by its cached ``/object_info``) would say about this graph."""
    params = resolved.as_workflow_params()
    if seed is not None:
        params["seed"] = seed
    try:
        applied = apply(template.graph, template.bindings, params)
    except WorkflowError as exc:
        return {"error": f"the template cannot take these parameters: {exc}", "backends": []}
    infos = BackendObjectInfo.objects.filter(backend__enabled=True).select_related("backend").order_by("backend__name")
    backends = [
        {"name": info.backend.name, "problems": preflight(applied.graph, info.data)[:8], "fetched_at": info.fetched_at}
        for info in infos
    ]
    return {
        "error": "",
        "backends": backends,
        "ignored": applied.ignored,
        "runnable": any(not b["problems"] for b in backends) if backends else None,
    }


def _resolve(**kwargs: Any) -> tuple[Resolved | None, str]:
    try:
        return resolve_job_parameters(**kwargs), ""
    except ResolveError as exc:
        return None, str(exc)


@page_login_required
@require_GET
def character_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """The prompt a character resolves to with a version / variation / mode (the character page's panel)."""
    character: Character = character_get_for_user(user=request.user, pk=pk)
    version = versions_visible_to(request.user).filter(character=character, pk=_int(request.GET.get("version"))).first()
    variation = (
        variations_visible_to(request.user).filter(character=character, pk=_int(request.GET.get("variation"))).first()
    )
    mode = request.GET.get("mode") if request.GET.get("mode") in ("draft", "production") else "draft"
    resolved, error = _resolve(
        project=character.project, mode=mode, character=character, version=version, variation=variation
    )
    context = {"character": character, "resolved": resolved, "resolve_error": error, "section": "characters"}
    return render_page(request, "generation/character_preview.html", "generation/_resolved.html", context)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, str) and value.isdigit() else -1


# --- Generate -------------------------------------------------------------------------------------


@page_login_required
@require_http_methods(["GET", "POST"])
def generate(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and request.POST.get("upload_for"):
        return _upload_input_image(request)
    if request.method == "POST":
        form = GenerateForm(request.POST, user=request.user)
        if form.is_valid():
            try:
                data = form.request_data()
                uploaded = _store_uploads(request, form)  # files sent with the form (no script)
                data["images"].update({param: {"upload": image.pk} for param, image in uploaded.items()})
                jobs = submit_request(user=signed_in(request.user), data=data)
            except JobError as exc:
                _add_submit_error(form, str(exc))
            except ValidationError as exc:
                form_add_service_errors(form, exc)
            else:
                _say_submitted(request, jobs)
                chosen = {f"image_{param}": f"upload:{image.pk}" for param, image in uploaded.items()}
                return HttpResponseRedirect(_after_submit_url(request, jobs, chosen))
    elif request.GET.get("pane"):
        # The output pane alone, re-read on a socket (re)connect: events sent meanwhile are lost.
        return render(request, "generation/_generate_output.html", {**_output_pane(request), "oob": True})
    elif request.GET:
        form = GenerateForm(request.GET, user=request.user, lenient=True)
        form.is_valid()  # for cleaned_data; a GET shows choices, not errors
        form.errors.clear()
    else:
        form = GenerateForm(user=request.user, initial={"count": 1, "mode": "draft"})
    context = {
        "section": "generate",
        "form": form,
        **_generate_preview(request, form),
        "pickers": image_pickers(request.user, form),
        **_output_pane(request),
    }
    if request.method == "GET":
        changed = request.GET.get("changed")
        context["refreshed_fields"] = [form[name] for name in _refreshed_by(changed)]
        context["refresh_controls"] = changed in (None, "project", "mode")
        context["refresh_images"] = changed in (None, "project", "template", "character", "version")
        return render_page(request, "generation/generate.html", "generation/_generate_update.html", context)
    return render_page(request, "generation/generate.html", None, context, status=400)


def _add_submit_error(form: GenerateForm, message: str) -> None:
    """A refusal that names an image input goes next to its picker; anything else above the form."""
    for param in form.image_parameters:
        if f"'{param}'" in message or f"images.{param}" in message:
            form.add_error(f"image_{param}", message)
            return
    form.add_error(None, message)


# Jobs listed in the output pane after a submission (the form allows at most 16 per request).
MAX_PANE_JOBS = 64


def _store_uploads(request: HttpRequest, form: GenerateForm) -> dict[str, InputImage]:
    """The images sent in the form's upload fields, stored as the project's input images.

    A ValidationError names the picker's field (``image_<param>``) so the reason shows beside it.
    """
    files = {
        param: upload for param in form.image_parameters if (upload := request.FILES.get(f"upload_{param}")) is not None
    }
    if not files:
        return {}
    project = project_get_for_user(user=request.user, pk=form.cleaned_data["project"].pk, write=True)
    stored = {}
    for param, upload in files.items():
        try:
            stored[param], _ = input_image_create(
                project=project, user=signed_in(request.user), upload=upload, original_name=upload.name or ""
            )
        except ValidationError as exc:
            raise ValidationError({f"image_{param}": " ".join(exc.messages)}) from None
    return stored


def _upload_input_image(request: HttpRequest) -> HttpResponse:
    """A file chosen in a picker, uploaded at once (the picker's own request): the picker comes
    back with it among the uploads and chosen, and the preview follows."""
    param = request.POST["upload_for"]
    query = request.POST.copy()
    form = GenerateForm(query, user=request.user, lenient=True)
    form.is_valid()
    form.errors.clear()
    upload = request.FILES.get(f"upload_{param}")
    project = form.cleaned_data.get("project")
    if param not in form.image_parameters or project is None or upload is None:
        raise Http404("No such image input")
    project = project_get_for_user(user=request.user, pk=project.pk, write=True)
    try:
        image, _ = input_image_create(
            project=project, user=signed_in(request.user), upload=upload, original_name=upload.name or ""
        )
    except ValidationError as exc:
        form.add_error(f"image_{param}", " ".join(exc.messages))
    else:
        query[f"image_{param}"] = f"upload:{image.pk}"
        form = GenerateForm(query, user=request.user, lenient=True)
        form.is_valid()
        form.errors.clear()
    context = {"form": form, "pickers": image_pickers(request.user, form), "oob": True}
    context.update(_generate_preview(request, form))
    return render(request, "generation/_generate_upload.html", context)


def _after_submit_url(request: HttpRequest, jobs: list[Job], chosen: dict[str, str]) -> str:
    """Back to the Generate page with the same choices, its output pane showing the new jobs."""
    query = request.POST.copy()
    for key in ("csrfmiddlewaretoken", "changed", "pane"):
        query.pop(key, None)
    query.update(chosen)
    query["submitted"] = ",".join(str(job.pk) for job in jobs)
    return f"{_url('generate')}?{query.urlencode()}#generate-output"


def submitted_ids(params: Any) -> list[int]:
    """The job ids an output pane shows (``?submitted=12,13``), bounded."""
    raw = params.get("submitted") or ""
    return [int(part) for part in raw.split(",") if part.isdigit() and int(part) < 2**63][:MAX_PANE_JOBS]


def output_pane_jobs(user: Any, params: Any) -> list[Job]:
    ids = submitted_ids(params)
    if not ids:
        return []
    return list(
        jobs_visible_to(user).filter(pk__in=ids).select_related("project", "character", "template").order_by("pk")
    )


def output_pane_context(job: Job, context: dict[str, Any]) -> dict[str, Any]:
    return {**context, "job_assets": list(Asset.objects.filter(job=job).order_by("pk"))}


def _output_pane(request: HttpRequest) -> dict[str, Any]:
    jobs = output_pane_jobs(request.user, request.GET)
    assets: dict[int | None, list[Asset]] = {job.pk: [] for job in jobs}  # job_id is nullable
    for asset in Asset.objects.filter(job__in=jobs).order_by("pk"):
        assets[asset.job_id].append(asset)
    return {
        "pane_jobs": [{"job": job, "job_assets": assets[job.pk]} for job in jobs],
        "pane_ids": ",".join(str(job.pk) for job in jobs),
    }


def render_output_pane_event(job: Job, kind: Any, context: dict[str, Any]) -> str:
    """A Generate page's output pane for one event of its jobs: the job's row, and its outputs
    when it ends (``tower.page_consumer`` sends it to pages connected with ``view=generate``)."""
    parts = [render_to_string("partials/_job_row.html", context)]
    if kind in ("job_complete", "job_failed", "job_cancelled"):
        parts.append(render_to_string("partials/_job_outputs.html", output_pane_context(job, context)))
    return "".join(parts)


# --- The image picker -------------------------------------------------------------------------------

PICKER_LIMIT = 24


def image_pickers(user: Any, form: GenerateForm) -> list[dict[str, Any]]:
    """One picker per image input of the chosen template, with the project's own images to choose from."""
    if not form.image_parameters:
        return []
    data = getattr(form, "cleaned_data", {}) or {}
    project = data.get("project")
    if project is None:
        return []
    character, version = data.get("character"), data.get("version")
    references = references_visible_to(user).filter(character__project=project)
    if character is not None:
        references = references.filter(character=character)
        # The base design's references, and the chosen version's own.
        references = references.filter(Q(version__isnull=True) | Q(version=version))
    references = references.select_related("character", "version").order_by("character__name", "-is_primary", "pk")
    assets = (
        assets_visible_to(user)
        .filter(project=project, kind=AssetKind.IMAGE)
        .select_related(None)
        .order_by("-created_at", "-pk")[:PICKER_LIMIT]
    )
    uploads = input_images_visible_to(user).filter(project=project).order_by("-created_at", "-pk")[:PICKER_LIMIT]
    groups = [
        (
            "references",
            "References",
            [
                {
                    "value": f"reference:{ref.pk}",
                    "url": _thumb_url(ref.image),
                    "title": f"{ref.character.name}{f' · {ref.version.name}' if ref.version else ''}"
                    f"{' · primary' if ref.is_primary else ''} (reference #{ref.pk})",
                }
                for ref in references[:PICKER_LIMIT]
            ],
        ),
        (
            "assets",
            "Recent outputs",
            [
                {
                    "value": f"asset:{asset.pk}",
                    "url": asset.thumbnail.url if asset.thumbnail else _url("asset-thumb", asset.pk),
                    "title": f"output #{asset.pk}" + (f" of job #{asset.job_id}" if asset.job_id else ""),
                }
                for asset in assets
            ],
        ),
        (
            "uploads",
            "Uploads",
            [
                {"value": f"upload:{image.pk}", "url": _thumb_url(image.file), "title": f"upload #{image.pk}"}
                for image in uploads
            ],
        ),
    ]
    pickers = []
    for param in form.image_parameters:
        bound = form[f"image_{param}"]
        pickers.append(
            {
                "param": param,
                "field": bound,
                "value": bound.value() or "",
                "automatic": "the character's primary reference" if character is not None else "",
                "groups": groups,
            }
        )
    return pickers


def _thumb_url(file: Any) -> str:
    """The JPEG thumbnail stored beside an uploaded image or reference, else the image itself."""
    name = thumb_name(file.name)
    return file.storage.url(name) if file.storage.exists(name) else file.url


# Which choices depend on a field: a project has its characters and workflows, a character its
# versions and variations. Only these are re-rendered when it changes; nothing else is replaced.
REFRESHED_BY: dict[str, tuple[str, ...]] = {
    "project": ("character", "version", "variation", "template"),
    "character": ("version", "variation"),
}


def _refreshed_by(changed: str | None) -> tuple[str, ...]:
    """The dependent selects to re-render; all of them when the change's origin is unknown."""
    if changed is None:
        return REFRESHED_BY["project"]
    return REFRESHED_BY.get(changed, ())


def _say_submitted(request: HttpRequest, jobs: list[Job]) -> None:
    """Say "queued" (green) only of jobs that are; those refused at once (pre-flight) say so, with why."""
    refused = [job for job in jobs if job.status == JobStatus.FAILED]
    queued = len(jobs) - len(refused)
    if refused:
        first = refused[0]
        why = first.error_message or first.error_type or "refused"
        if len(jobs) == 1:
            messages.error(request, f"Job #{first.pk} was refused: {why}")
        else:
            messages.error(request, f"{len(refused)} of {len(jobs)} jobs were refused (#{first.pk}: {why}).")
    if queued:
        messages.success(request, f"Job #{jobs[0].pk} queued." if len(jobs) == 1 else f"{queued} jobs queued.")


def _generate_preview(request: HttpRequest, form: GenerateForm) -> dict[str, Any]:
    data = getattr(form, "cleaned_data", {}) or {}
    project: Project | None = data.get("project")
    if project is None:
        return {"resolved": None}
    template = data.get("template")
    resolved, error = _resolve(
        project=project,
        mode=data.get("mode") or "draft",
        character=data.get("character"),
        version=data.get("version"),
        variation=data.get("variation"),
        prompt=data.get("prompt") or "",
        negative=data.get("negative") or "",
        overrides=form.overrides(),  # the controls a person changed, as the job will record them
        # The preview shows what the job will get: the style reaches only the inputs the template marks.
        style_fields=style_parameters(template.bindings) if template is not None else None,
    )
    context: dict[str, Any] = {"resolved": resolved, "resolve_error": error, "preview_project": project}
    if resolved is not None and template is not None:
        context["preflight"] = preflight_report(template, resolved, data.get("seed"))
    context["can_write"] = project_user_can_write(project=project, user=request.user)
    return context


def _url(name: str, *args: Any) -> str:
    from django.urls import reverse

    return reverse(name, args=args)

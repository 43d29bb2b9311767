"""Character pages: list, create, and one page for design, references, versions and variations.

The resolved-prompt preview is generation's (characters may not import generation); the page
loads it from ``character-preview``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from characters.forms import (
    CharacterForm,
    ReferenceForm,
    VariationForm,
    VersionForm,
    VersionStateForm,
    attribute_formset,
)
from characters.models import Character
from characters.selectors import (
    character_get_for_user,
    characters_with_summary_visible_to,
    palette_suggestion,
    similarity_threshold,
    version_get_for_user,
)
from characters.services import (
    CharacterError,
    character_add_reference,
    character_create,
    character_update,
    character_use_palette_suggestion,
    variation_create,
    version_create,
    version_update,
)
from projects.selectors import project_get_for_user, project_user_can_write, projects_visible_to
from tower.core.pages import (
    form_add_service_errors,
    page_login_required,
    paginate,
    querystring_without_page,
    render_page,
)


@page_login_required
def character_list(request: HttpRequest) -> HttpResponse:
    characters = characters_with_summary_visible_to(request.user)
    project_id = request.GET.get("project", "")
    if project_id.isdigit():
        # project__pk, not project_id: a pk lookup copes with a number past the database's range.
        characters = characters.filter(project__pk=int(project_id))
    page_obj = paginate(request, characters)
    for character in page_obj:
        character.similarity_threshold = similarity_threshold(character)
    context = {
        "section": "characters",
        "page_obj": page_obj,
        "projects": list(projects_visible_to(request.user).order_by("name")[:200]),
        "project_id": project_id,
        "querystring_base": querystring_without_page(request),
    }
    return render_page(request, "characters/list.html", "characters/_list.html", context)


@page_login_required
@require_http_methods(["GET", "POST"])
def character_create_view(request: HttpRequest, pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=pk, write=request.method == "POST")
    form = CharacterForm(request.POST or None, project=project)
    attributes = attribute_formset(data=request.POST or None)
    if request.method == "POST" and form.is_valid() and attributes.is_valid():
        fields = form.character_fields()
        try:
            character = character_create(
                project=project,
                name=fields.pop("name"),
                design_prompt=fields.pop("design_prompt"),
                attributes=attributes.rows(),
                **fields,
            )
        except (ValidationError, CharacterError) as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(request, f"Character “{character.name}” created.")
            return redirect("character-detail", pk=character.pk)
    failed = request.method == "POST"
    context = {"section": "characters", "project": project, "form": form, "attribute_formset": attributes}
    return render_page(request, "characters/create.html", None, context, status=400 if failed else 200)


def _learned_negatives(character: Character) -> list[tuple[str, Any]]:
    """Curation's learned negative terms, heaviest first (the order resolution appends them in)."""
    learned = character.learned_negatives if isinstance(character.learned_negatives, dict) else {}
    rows = [(t, w) for t, w in learned.items() if isinstance(w, int | float) and not isinstance(w, bool)]
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def _detail_context(request: HttpRequest, character: Character, **forms: Any) -> dict[str, Any]:
    learned = _learned_negatives(character)
    versions = list(character.versions.prefetch_related("references"))
    for version in versions:
        version.state_form = VersionStateForm(  # type: ignore[attr-defined]  # for the template
            initial={"age_state": version.age_state, "emotional_state": version.emotional_state},
            prefix=f"v{version.pk}",
        )
    return {
        "section": "characters",
        "character": character,
        "project": character.project,
        "can_write": project_user_can_write(project=character.project, user=request.user),
        "form": forms.get("form") or CharacterForm(instance=character),
        "attribute_formset": forms.get("attribute_formset") or attribute_formset(character),
        "reference_form": forms.get("reference_form") or ReferenceForm(character=character),
        "version_form": forms.get("version_form") or VersionForm(),
        "variation_form": forms.get("variation_form") or VariationForm(),
        "references": list(character.references.filter(version__isnull=True)[:48]),
        "versions": versions,
        "variations": list(character.variations.all()),
        "similarity_threshold": similarity_threshold(character),
        "palette_suggestion": palette_suggestion(character=character),
        "learned_negatives": learned,
        "learned_negatives_text": "\n".join(f"{term}: {weight:g}" for term, weight in learned),
    }


@page_login_required
@require_http_methods(["GET", "POST"])
def character_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """GET the character page; POST saves the design (prompt, attributes, palette, threshold)."""
    character = character_get_for_user(user=request.user, pk=pk, write=request.method == "POST")
    form = attributes = None
    if request.method == "POST":
        form = CharacterForm(request.POST, instance=character)
        attributes = attribute_formset(character, data=request.POST)
        if form.is_valid() and attributes.is_valid():
            try:
                character_update(character=character, attributes=attributes.rows(), **form.character_fields())
            except (ValidationError, CharacterError) as exc:
                form_add_service_errors(form, exc)
            else:
                messages.success(request, "Character saved.")
                return redirect("character-detail", pk=character.pk)
        character = character_get_for_user(user=request.user, pk=pk)  # as stored, not as typed
    context = _detail_context(request, character, form=form, attribute_formset=attributes)
    return render_page(request, "characters/detail.html", None, context, status=400 if form else 200)


@page_login_required
@require_POST
def reference_add(request: HttpRequest, pk: int) -> HttpResponse:
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    form = ReferenceForm(request.POST, request.FILES, character=character)
    if form.is_valid():
        upload = form.cleaned_data["image"]
        try:
            character_add_reference(
                character=character,
                upload=upload,
                original_name=upload.name,
                note=form.cleaned_data["note"],
                primary=True if form.cleaned_data["primary"] else None,
                version=form.cleaned_data["version"],
            )
        except (ValidationError, CharacterError) as exc:
            form_add_service_errors(form, exc)
        else:
            kept = " Palette kept; see the suggested colours." if palette_suggestion(character=character) else ""
            messages.success(request, f"Reference added.{kept}")
            return redirect("character-detail", pk=character.pk)
    context = _detail_context(request, character, reference_form=form)
    return render_page(request, "characters/detail.html", None, context, status=400)


def _add_child(request: HttpRequest, pk: int, form_class: type, create: Any, what: str, form_key: str) -> HttpResponse:
    """Create a version or variation from its form; on error the page comes back with the form."""
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    form = form_class(request.POST)
    if form.is_valid():
        try:
            create(character=character, **form.cleaned_data)
        except (ValidationError, CharacterError) as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(request, f"{what} added.")
            return redirect("character-detail", pk=character.pk)
    context = _detail_context(request, character, **{form_key: form})
    return render_page(request, "characters/detail.html", None, context, status=400)


@page_login_required
@require_POST
def version_add(request: HttpRequest, pk: int) -> HttpResponse:
    return _add_child(request, pk, VersionForm, version_create, "Version", "version_form")


@page_login_required
@require_POST
def version_states(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a version's age and emotional state (its row on the character page)."""
    version = version_get_for_user(user=request.user, pk=pk, write=True)
    form = VersionStateForm(request.POST, prefix=f"v{version.pk}")
    if form.is_valid():
        try:
            version_update(version=version, **form.cleaned_data)
        except (ValidationError, CharacterError) as exc:
            messages.error(request, f"Version not changed: {exc}")
        else:
            messages.success(request, f"Version “{version.name}” saved.")
    else:
        errors = "; ".join(f"{field}: {' '.join(str(m) for m in e)}" for field, e in form.errors.items())
        messages.error(request, f"Version not changed: {errors}")
    return redirect("character-detail", pk=version.character_id)


@page_login_required
@require_POST
def variation_add(request: HttpRequest, pk: int) -> HttpResponse:
    return _add_child(request, pk, VariationForm, variation_create, "Variation", "variation_form")


@page_login_required
@require_POST
def palette_use_suggestion(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Use these colours": the palette becomes the primary reference's colours (never done silently)."""
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    try:
        character_use_palette_suggestion(character=character)
    except (ValidationError, CharacterError) as exc:
        messages.error(request, f"Palette not changed: {exc}")
    else:
        messages.success(request, "Palette replaced with the primary reference's colours.")
    return redirect("character-detail", pk=character.pk)

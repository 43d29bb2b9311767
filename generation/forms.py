"""Page forms for generation: the Generate form and the list filters."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.db.models import Q
from django.forms.utils import flatatt
from django.http import QueryDict
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from characters.models import Character, CharacterVersion, Variation
from characters.selectors import characters_visible_to, variations_visible_to, versions_visible_to
from generation.choices import backend_choices
from generation.models import AssetKind, Backend, JobKind, JobStatus, WorkflowTemplate
from generation.selectors import templates_visible_to
from generation.services.inputs import template_image_inputs
from generation.workflow import MAX_SEED
from projects.models import Mode, Project
from projects.selectors import AnyUser, projects_visible_to
from tower.core.forms import choice_queryset, model_choice
from tower.core.limits import TEXT_MAX_LENGTH

MAX_COUNT = 16
DEPENDENT = ("character", "version", "variation", "template")
# Per-job controls: each defaults to the project's style (the mode's preset for steps and CFG);
# only those a person changes become the job's recorded overrides.
NAMED_CONTROLS = {"checkpoint": "checkpoints", "vae": "vaes", "sampler": "samplers", "scheduler": "schedulers"}
NUMBER_CONTROLS = ("steps", "cfg", "width", "height")
CONTROLS = (*NAMED_CONTROLS, *NUMBER_CONTROLS)
MAX_LORAS = 12
IMAGE_CHOICE = re.compile(r"^(reference|version|asset|upload):(\d{1,18})$")
NOT_OFFERED = "not offered by any enabled backend"


def style_defaults(project: Any, mode: str) -> dict[str, Any]:
    """What the job gets from the project's style when a control is left alone."""
    style = project.style
    preset = style.preset(mode if mode in Mode.values else Mode.DRAFT)
    return {
        "checkpoint": style.checkpoint,
        "vae": style.vae,
        "sampler": style.sampler,
        "scheduler": style.scheduler,
        "steps": preset["steps"],
        "cfg": float(preset["cfg"]),
        "width": style.width,
        "height": style.height,
        "loras": lora_rows(style.loras or []),
    }


def lora_rows(loras: list[Any]) -> list[dict[str, Any]]:
    """LoRAs as the page edits them: a name and one strength each."""
    rows = []
    for item in loras:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
            strength = item.get("strength", 1.0)
            rows.append({"name": item["name"].strip(), "strength": float(strength) if _number(strength) else 1.0})
    return rows


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def named_choices(offered: list[str], keep: list[str], *, blank: str | None = None) -> list[tuple[str, str]]:
    """A select's options: what the backends offer, plus each value in ``keep`` (the current one,
    the style's) marked when it is not offered (a backend offline, a file removed): kept
    selectable, never silently dropped."""
    choices = [("", blank)] if blank is not None else []
    for value in dict.fromkeys(keep):
        if value and value not in offered:
            choices.append((value, f"{value} ({NOT_OFFERED})"))
    return [*choices, *((name, name) for name in offered)]


def _same(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return abs(float(a) - float(b)) < 1e-9
    return (a if a is not None else "") == (b if b is not None else "")


class GenerateForm(forms.Form):
    """Project → character (version, variation) → template → mode → seed and count.

    Every choice is limited to rows the user may see, so a forged id is an invalid choice. Built
    ``lenient`` (a GET that re-renders the form as the user picks), a dependent choice that no
    longer fits the chosen project is dropped instead of reported.
    """

    project: forms.ModelChoiceField[Project] = forms.ModelChoiceField(queryset=None, empty_label="Choose a project")
    character: forms.ModelChoiceField[Character] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="No character"
    )
    version: forms.ModelChoiceField[CharacterVersion] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="Base design"
    )
    variation: forms.ModelChoiceField[Variation] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="No variation"
    )
    # The metaclass moves the field into base_fields; on an instance, ``template`` is the one picked.
    template: WorkflowTemplate | None = forms.ModelChoiceField(  # type: ignore[assignment]  # see above
        queryset=None, empty_label="Choose a workflow"
    )
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.DRAFT)
    seed = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_SEED, help_text="empty: a random seed per image"
    )
    count = forms.IntegerField(min_value=1, max_value=MAX_COUNT, initial=1, label="Images")
    prompt = forms.CharField(
        required=False,
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="added after the character's prompt",
    )
    negative = forms.CharField(
        required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 1}), label="Extra negative"
    )

    steps = forms.IntegerField(required=False, min_value=1, max_value=200)
    cfg = forms.FloatField(
        required=False, min_value=0, max_value=30, label="CFG", widget=forms.NumberInput(attrs={"step": "0.1"})
    )
    width = forms.IntegerField(
        required=False, min_value=64, max_value=8192, widget=forms.NumberInput(attrs={"step": 8})
    )
    height = forms.IntegerField(
        required=False, min_value=64, max_value=8192, widget=forms.NumberInput(attrs={"step": 8})
    )
    loras = forms.CharField(required=False, widget=forms.HiddenInput)  # rows come as lora_name / lora_strength

    def __init__(
        self,
        *args: Any,
        user: AnyUser,
        lenient: bool = False,
        choices: dict[str, list[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        fields = self.fields
        model_choice(self, "project").queryset = projects_visible_to(user).order_by("name")
        project_id = self._picked("project")
        characters = characters_visible_to(user).filter(project_id=project_id or -1)
        model_choice(self, "character").queryset = characters.order_by("name")
        character_id = self._picked("character")
        model_choice(self, "version").queryset = versions_visible_to(user).filter(character_id=character_id or -1)
        model_choice(self, "variation").queryset = variations_visible_to(user).filter(character_id=character_id or -1)
        model_choice(self, "template").queryset = (
            templates_visible_to(user)
            .filter(Q(project__isnull=True) | Q(project_id=project_id or -1))
            .order_by("-weightless", "name")
        )
        if lenient and self.is_bound:
            data = self._query()
            data.setdefault("count", "1")
            data.setdefault("mode", Mode.DRAFT)
            if not data.get("count"):
                data["count"] = "1"
            for name in DEPENDENT:
                value = data.get(name)
                if value and not (value.isdigit() and choice_queryset(self, name).filter(pk=value).exists()):
                    data[name] = ""
            self.data = data
        self.backend_choices = backend_choices() if choices is None else choices
        project = (
            choice_queryset(self, "project").filter(pk=project_id).select_related("style").first()
            if project_id
            else None
        )
        template_id = self._picked("template")
        self.template = choice_queryset(self, "template").filter(pk=template_id).first() if template_id else None
        raw_mode = self.data.get("mode") if self.is_bound else self.initial.get("mode")
        self.preset_mode = raw_mode if raw_mode in Mode.values else Mode.DRAFT
        styled = project is not None and hasattr(project, "style")  # a project without a style has no defaults
        self.defaults: dict[str, Any] = style_defaults(project, self.preset_mode) if styled else {}
        if lenient and self.is_bound and self.defaults:
            self._follow_defaults()
        elif not self.is_bound and self.defaults:
            self.initial.update({name: self.defaults[name] for name in CONTROLS})
        for name, key in NAMED_CONTROLS.items():
            fields[name] = self._named_field(name, key)
            note = str(fields[name].help_text)  # free text: why there is no list
            style_note = f"style: {self.defaults[name] or '—'}" if self.defaults else ""
            fields[name].help_text = "; ".join(part for part in (style_note, note) if part)
        for name in NUMBER_CONTROLS:
            fields[name].help_text = f"style: {self.defaults[name]}" if self.defaults else ""
        self.image_parameters = template_image_inputs(self.template) if self.template is not None else []
        for param in self.image_parameters:
            fields[f"image_{param}"] = forms.RegexField(
                regex=IMAGE_CHOICE, required=False, label=param.replace("_", " ").capitalize()
            )

    def _query(self) -> QueryDict:
        """A mutable copy of the submitted data (a lenient form is built from request.GET or POST)."""
        if not isinstance(self.data, QueryDict):
            raise TypeError("a lenient GenerateForm takes a QueryDict")
        return self.data.copy()

    # --- per-job controls

    def _follow_defaults(self) -> None:
        """On a re-render (project or mode changed), a control still showing the default it was
        shown with takes the new default; one a person changed keeps its value."""
        data = self._query()
        for name in CONTROLS:
            if name not in data or data.get(name) == data.get(f"shown_{name}"):
                data[name] = _text(self.defaults[name])
        if "lora_name" not in data or self._submitted_rows_text() == data.get("shown_loras"):
            rows = self.defaults["loras"]
            data.setlist("lora_name", [row["name"] for row in rows])
            data.setlist("lora_strength", [_text(row["strength"]) for row in rows])
        self.data = data

    def _named_field(self, name: str, key: str) -> forms.Field:
        offered = self.backend_choices.get(key) or []
        label = "VAE" if name == "vae" else name.capitalize()
        if not offered:
            noun = {"vae": "VAEs", "checkpoint": "checkpoints"}.get(name, f"{name}s")
            return forms.CharField(
                required=False, max_length=255, label=label, help_text=f"no enabled backend has listed its {noun} yet"
            )
        current = self.data.get(name) if self.is_bound else None
        keep = [v for v in (current, self.defaults.get(name)) if v]
        blank = (
            "the checkpoint's own" if name == "vae" else "the workflow's own" if not self.defaults.get(name) else None
        )
        return forms.ChoiceField(required=False, label=label, choices=named_choices(offered, keep, blank=blank))

    def _submitted_rows(self) -> list[tuple[str, str]]:
        getlist = getattr(self.data, "getlist", None)
        if getlist is None:
            return []
        names, strengths = getlist("lora_name"), getlist("lora_strength")
        strengths = strengths + [""] * (len(names) - len(strengths))
        return [(n.strip(), s.strip()) for n, s in zip(names, strengths, strict=False) if n.strip()]

    def _submitted_rows_text(self) -> str:
        return json.dumps([[n, _text(_float(s))] for n, s in self._submitted_rows()])

    def shown_loras(self) -> str:
        """The style's LoRAs as the page shows them, to tell later whether a person changed them."""
        return json.dumps([[row["name"], _text(row["strength"])] for row in self.defaults.get("loras", [])])

    def lora_table(self) -> list[dict[str, Any]]:
        """The LoRA rows to render: as submitted, else the style's."""
        if self.is_bound:
            rows: list[dict[str, Any]] = [{"name": n, "strength": s} for n, s in self._submitted_rows()]
        else:
            rows = [{"name": r["name"], "strength": _text(r["strength"])} for r in self.defaults.get("loras", [])]
        offered = self.backend_choices.get("loras") or []
        for row in rows:
            row["offered"] = row["name"] in offered
        return rows

    def clean_loras(self) -> list[dict[str, Any]] | None:
        rows = self._submitted_rows()
        if len(rows) > MAX_LORAS:
            raise forms.ValidationError(f"at most {MAX_LORAS} LoRAs")
        loras = []
        for name, strength in rows:
            value = _float(strength)
            if value is None or not -5 <= value <= 5:
                raise forms.ValidationError(f"{name}: the strength must be a number between -5 and 5")
            loras.append({"name": name, "strength": value})
        return loras

    def controls(self) -> list[dict[str, Any]]:
        """Each control's bound field with the default it shows (re-sent as ``shown_<name>``)."""
        return [{"field": self[name], "shown": _text(self.defaults.get(name, ""))} for name in CONTROLS]

    def overrides(self) -> dict[str, Any]:
        """The controls a person changed from the style's default: what the job records as overrides."""
        data, defaults = self.cleaned_data, self.defaults
        changed: dict[str, Any] = {}
        for name in CONTROLS:
            value = data.get(name)
            if name not in self.data or value is None or (value == "" and name != "vae"):
                continue
            if not _same(value, defaults.get(name)):
                changed[name] = value
        loras = data.get("loras")
        if "lora_name" in self.data and loras is not None:
            before = [(r["name"], r["strength"]) for r in defaults.get("loras", [])]
            if [(r["name"], r["strength"]) for r in loras] != before:
                changed["loras"] = loras
        return changed

    def images(self) -> dict[str, dict[str, int]]:
        """The C1 ``images`` mapping from the picker's choices ("asset:12" → {"asset": 12})."""
        chosen = {}
        for param in self.image_parameters:
            match = IMAGE_CHOICE.match(self.cleaned_data.get(f"image_{param}") or "")
            if match:
                chosen[param] = {match[1]: int(match[2])}
        return chosen

    def _picked(self, name: str) -> int | None:
        raw = self.data.get(name) if self.is_bound else self.initial.get(name)
        raw = getattr(raw, "pk", raw)
        # Past 2**63 an id lookup on a foreign key overflows the database driver (a 500).
        return int(raw) if isinstance(raw, int | str) and str(raw).isdigit() and int(raw) < 2**63 else None

    def request_data(self) -> dict[str, Any]:
        """What generation.services.requests.submit_request takes."""
        data = self.cleaned_data
        seed, count = data["seed"], data["count"]
        return {
            "project": data["project"].pk,
            "template": data["template"].pk,
            "mode": data["mode"],
            "character": data["character"].pk if data["character"] else None,
            "version": data["version"].pk if data["version"] else None,
            "variation": data["variation"].pk if data["variation"] else None,
            "prompt": data["prompt"],
            "negative": data["negative"],
            "seeds": [seed + i for i in range(count)] if seed is not None else None,
            "count": count,
            "overrides": self.overrides(),
            "images": self.images(),
        }


def _text(value: Any) -> str:
    """A value as a form shows it (1.0 stays "1.0"; None is "")."""
    return "" if value is None else str(value)


def _float(raw: str) -> float | None:
    try:
        value = float(raw) if raw.strip() else 1.0
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _choices(choices: list[tuple[str, str]], empty: str) -> list[tuple[str, str]]:
    return [("", empty), *choices]


class JobFilterForm(forms.Form):
    project: forms.ModelChoiceField[Project] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="All projects"
    )
    status = forms.ChoiceField(choices=_choices(JobStatus.choices, "Any status"), required=False)
    kind = forms.ChoiceField(choices=_choices(JobKind.choices, "Any kind"), required=False)
    batch = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_choice(self, "project").queryset = projects_visible_to(user).order_by("name")


class PlainSelect(forms.Select):
    """A single select whose options are built in Python: the default widget renders a template
    per option, most of the gallery's time with a studio's 200 characters."""

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        chosen = {str(v) for v in self.format_value(value)}

        def option(value: Any, label: Any) -> SafeString:
            if str(value) in chosen:
                return format_html('<option value="{}" selected>{}</option>', value, label)
            return format_html('<option value="{}">{}</option>', value, label)

        options = format_html_join("", "{}", ((option(v, label),) for v, label in self.choices))
        attributes = flatatt(self.build_attrs(self.attrs, attrs))
        return format_html('<select name="{}"{}>{}</select>', name, attributes, options)


class GalleryFilterForm(forms.Form):
    project: forms.ModelChoiceField[Project] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="All projects"
    )
    character: forms.ModelChoiceField[Character] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="All characters", widget=PlainSelect
    )
    kind = forms.ChoiceField(choices=_choices(AssetKind.choices, "Any kind"), required=False)

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_choice(self, "project").queryset = projects_visible_to(user).order_by("name")
        # An option needs only the name (its label): no project row, no JSON columns.
        characters = characters_visible_to(user).select_related(None).only("pk", "name")
        characters = characters.order_by("project__name", "name")
        project = self.data.get("project") if self.is_bound else None
        if project and str(project).isdigit():
            # project__pk, not project_id: a pk lookup copes with a number past the database's range.
            characters = characters.filter(project__pk=int(project))
        model_choice(self, "character").queryset = characters


class BackendForm(forms.ModelForm):
    """A ComfyUI server as staff add or edit it in the studio (its health fields are Tower's)."""

    url = forms.URLField(
        max_length=300, assume_scheme="http", label="URL", help_text="e.g. http://gpu-1.local:8188"
    )  # ComfyUI speaks plain HTTP

    class Meta:
        model = Backend
        fields = ["name", "url", "enabled", "max_in_flight", "vram_hold_threshold"]
        labels = {"max_in_flight": "Prompts at once", "vram_hold_threshold": "Hold above VRAM use"}

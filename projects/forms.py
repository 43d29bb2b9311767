"""Page forms for projects: they validate input; the writes happen in projects.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from projects.models import DEFAULT_PHASE_TEMPLATES, GenerationStyle, Project
from projects.services import (
    PHASE_TEMPLATE_KEYS,
    SHEET_POSES_MAX,
    THRESHOLD_RANGES,
    validate_phase_templates,
    validate_sheet_poses,
)
from tower.core.limits import TEXT_MAX_LENGTH, bounded_formfield

PRODUCTION_THRESHOLDS = ("threshold_palette", "threshold_face_quality", "threshold_overall")
PHASE_TEMPLATE_FIELDS = {key: f"phase_template_{key}" for key in PHASE_TEMPLATE_KEYS}
PHASE_KINDS_SAID = {"sheet": "character_sheet", "loop": "loop", "video": "video"}


class ProjectForm(forms.ModelForm):
    sheet_poses_text = forms.CharField(
        label="Character sheet poses",
        required=False,
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text=f"one pose per line, 1 to {SHEET_POSES_MAX}: each is one panel of the phase-1 sheet",
    )
    phase_template_sheet = forms.CharField(label="Sheet template", required=False, max_length=80)
    phase_template_loop = forms.CharField(label="Loop template", required=False, max_length=80)
    phase_template_video = forms.CharField(label="Video template", required=False, max_length=80)

    class Meta:
        model = Project
        formfield_callback = bounded_formfield
        fields = ["name", "description", "art_kind", "advance_unevaluated", *PRODUCTION_THRESHOLDS]
        labels = {
            "threshold_palette": "Palette threshold (ΔE)",
            "threshold_face_quality": "Sheet face quality threshold",
            "threshold_overall": "Video overall quality threshold",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args: Any, template_choices: dict[str, list[str]] | None = None, **kwargs: Any) -> None:
        """``template_choices``: per phase (sheet, loop, video), the slugs of the templates of its
        kind, given by the view (projects does not import generation); the slug inputs become selects."""
        super().__init__(*args, **kwargs)
        for name in PRODUCTION_THRESHOLDS:
            # The service's ranges, said by the field; not required: absent from a POST, the stored value stays.
            low, high, _ = THRESHOLD_RANGES[name]
            field = self.fields[name]
            self.fields[name] = forms.FloatField(
                min_value=low,
                max_value=high,
                required=False,
                label=field.label,
                help_text=field.help_text,
                initial=field.initial,  # the model's default, shown on the New project page
            )
            self.fields[name].widget.attrs["step"] = "any"
        self.initial.setdefault("sheet_poses_text", "\n".join(self.instance.sheet_poses or []))
        stored = {**DEFAULT_PHASE_TEMPLATES, **(self.instance.phase_templates or {})}
        for key, name in PHASE_TEMPLATE_FIELDS.items():
            self.initial.setdefault(name, stored.get(key, ""))
            self.fields[name].help_text = f"slug of a {PHASE_KINDS_SAID[key]} template"
            if template_choices is not None and key in template_choices:
                current = [self.data.get(name) if self.is_bound else None, stored.get(key)]
                missing = [v for v in dict.fromkeys(current) if v and v not in template_choices[key]]
                choices = [(v, f"{v} (no {PHASE_KINDS_SAID[key]} template of this slug)") for v in missing]
                choices += [(slug, slug) for slug in template_choices[key]]
                field = self.fields[name]
                self.fields[name] = forms.ChoiceField(
                    choices=choices, required=False, label=field.label, help_text=field.help_text
                )

    def clean(self) -> dict[str, Any]:
        """A production field absent from the POST keeps its stored value; given, it is checked as
        projects.services checks it (poses trimmed, empty lines dropped; slugs by shape only)."""
        super().clean()
        cleaned = self.cleaned_data
        for name in PRODUCTION_THRESHOLDS:
            if name not in self.data:
                cleaned.pop(name, None)
            elif cleaned.get(name) is None and name not in self.errors:
                self.add_error(name, "Enter a number.")
        poses_text = cleaned.pop("sheet_poses_text", None)
        if "sheet_poses_text" in self.data and poses_text is not None:
            try:
                poses = [line for line in poses_text.splitlines() if line.strip()]
                cleaned["sheet_poses"] = validate_sheet_poses(poses)
            except ValidationError as exc:
                self.add_error("sheet_poses_text", exc.message_dict["sheet_poses"])
        slugs = {key: cleaned.pop(name, None) for key, name in PHASE_TEMPLATE_FIELDS.items()}
        given = {key: slugs[key] or "" for key, name in PHASE_TEMPLATE_FIELDS.items() if name in self.data}
        if given:
            try:
                cleaned["phase_templates"] = validate_phase_templates(
                    {**(self.instance.phase_templates or {}), **given}
                )
            except ValidationError as exc:
                self.add_error(None, exc.message_dict["phase_templates"])
        return cleaned


# Style fields that name what a backend offers → the key of the backends' choices.
OFFERED_FIELDS = {"checkpoint": "checkpoints", "vae": "vaes", "sampler": "samplers", "scheduler": "schedulers"}
NOT_OFFERED = "not offered by any enabled backend"


class StyleForm(forms.ModelForm):
    loras_text = forms.CharField(
        label="LoRAs",
        required=False,
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "style_a.safetensors: 0.8"}),
        help_text="one per line: file name, then ':' and a strength between -5 and 5 (default 1.0)",
    )

    class Meta:
        model = GenerationStyle
        formfield_callback = bounded_formfield
        fields = [
            "checkpoint",
            "vae",
            "sampler",
            "scheduler",
            "width",
            "height",
            "clip_skip",
            "fps",
            "style_prompt",
            "negative_prompt",
            "draft_steps",
            "draft_cfg",
            "draft_denoise",
            "production_steps",
            "production_cfg",
            "production_denoise",
        ]
        labels = {
            "vae": "VAE",
            "fps": "FPS",
            "draft_cfg": "Draft CFG",
            "production_cfg": "Production CFG",
        }
        widgets = {
            "style_prompt": forms.Textarea(attrs={"rows": 2}),
            "negative_prompt": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args: Any, offered: dict[str, list[str]] | None = None, **kwargs: Any) -> None:
        """``offered``: what the enabled backends list (``generation.choices.backend_choices``,
        given by the view: projects does not import generation); the names become selects."""
        super().__init__(*args, **kwargs)
        self.offered = offered or {}
        if not self.is_bound and self.instance and self.instance.pk:
            self.initial["loras_text"] = "\n".join(
                f"{item.get('name')}: {item.get('strength', 1.0)}" for item in self.instance.loras or []
            )
        for name, key in OFFERED_FIELDS.items():
            if self.offered.get(key):
                self._as_select(name, self.offered[key])

    def _as_select(self, name: str, offered: list[str]) -> None:
        """The field as a select of what the backends offer; the stored (or typed) value stays
        selectable, marked, when no backend offers it (a backend offline): never silently dropped."""
        field = self.fields[name]
        current = [self.data.get(name) if self.is_bound else None, getattr(self.instance, name, "")]
        choices = [("", "the checkpoint's own")] if name == "vae" else [] if field.required else [("", "—")]
        for value in dict.fromkeys(v for v in current if v):
            if value not in offered:
                choices.append((value, f"{value} ({NOT_OFFERED})"))
        choices.extend((value, value) for value in offered)
        self.fields[name] = forms.ChoiceField(
            choices=choices, required=field.required, label=field.label, help_text=field.help_text
        )

    def lora_table(self) -> list[dict[str, Any]]:
        """The LoRA rows to render: as submitted, else as stored."""
        getlist = getattr(self.data, "getlist", None)
        if self.is_bound and getlist is not None and "lora_name" in self.data:
            names, strengths = getlist("lora_name"), getlist("lora_strength")
            strengths = strengths + [""] * (len(names) - len(strengths))
            rows = [{"name": n.strip(), "strength": s} for n, s in zip(names, strengths, strict=False) if n.strip()]
        else:
            rows = [
                {"name": item.get("name", ""), "strength": item.get("strength", 1.0)}
                for item in (self.instance.loras if self.instance else None) or []
                if isinstance(item, dict)
            ]
        offered = self.offered.get("loras") or []
        for row in rows:
            row["offered"] = row["name"] in offered
        return rows

    @property
    def backend_choices(self) -> dict[str, list[str]]:
        return self.offered  # the name the shared LoRA row template reads

    def clean_loras_text(self) -> list[dict[str, Any]]:
        if "lora_name" in self.data:  # the page's rows (a select and a strength each)
            return self._clean_rows()
        loras = []
        for n, line in enumerate(self.cleaned_data["loras_text"].splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            name, _, strength = line.rpartition(":") if ":" in line else (line, "", "1.0")
            try:
                value = float(strength.strip() or "1.0")
            except ValueError:
                raise forms.ValidationError(f"line {n}: '{strength.strip()}' is not a number") from None
            if not name.strip():
                raise forms.ValidationError(f"line {n}: a LoRA file name is needed")
            loras.append({"name": name.strip(), "strength": value})
        return loras

    def _clean_rows(self) -> list[dict[str, Any]]:
        loras = []
        for n, row in enumerate(self.lora_table(), start=1):
            try:
                value = float(str(row["strength"]).strip() or "1.0")
            except ValueError:
                raise forms.ValidationError(f"LoRA {n}: '{row['strength']}' is not a number") from None
            loras.append({"name": row["name"], "strength": value})
        return loras

    def style_fields(self) -> dict[str, Any]:
        """The changed fields, named as style_update takes them."""
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["loras"] = self.cleaned_data["loras_text"]
        return data


def _lines(value: Any) -> str:
    return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value or "")


class StoryBibleForm(forms.Form):
    premise = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))
    tone = forms.CharField(required=False, max_length=500)
    world = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))
    themes = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, help_text="comma separated")
    episode_outline = forms.CharField(
        required=False,
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="one episode per line",
    )
    notes = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))

    @classmethod
    def from_bible(cls, bible: dict[str, Any]) -> StoryBibleForm:
        initial = {key: bible.get(key, "") for key in ("premise", "tone", "world", "notes")}
        initial["themes"] = ", ".join(bible.get("themes") or []) if isinstance(bible.get("themes"), list) else ""
        initial["episode_outline"] = _lines(bible.get("episode_outline") or [])
        return cls(initial=initial)

    def bible(self, previous: dict[str, Any]) -> dict[str, Any]:
        """The new bible: the edited keys replaced, any other keys (from the API or the LLM) kept."""
        data = self.cleaned_data
        return {
            **previous,
            "premise": data["premise"],
            "tone": data["tone"],
            "world": data["world"],
            "notes": data["notes"],
            "themes": [t.strip() for t in data["themes"].split(",") if t.strip()],
            "episode_outline": [line.strip() for line in data["episode_outline"].splitlines() if line.strip()],
        }

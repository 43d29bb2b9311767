"""Page forms for projects: they validate input; the writes happen in projects.services."""

from __future__ import annotations

from typing import Any

from django import forms

from projects.models import GenerationStyle, Project
from tower.limits import TEXT_MAX_LENGTH, bounded_formfield


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        formfield_callback = bounded_formfield
        fields = ["name", "description", "art_kind", "advance_unevaluated"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


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

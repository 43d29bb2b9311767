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
        fields = ["name", "description", "art_kind"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and self.instance and self.instance.pk:
            self.initial["loras_text"] = "\n".join(
                f"{item.get('name')}: {item.get('strength', 1.0)}" for item in self.instance.loras or []
            )

    def clean_loras_text(self) -> list[dict[str, Any]]:
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

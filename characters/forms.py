"""Page forms for characters: they validate input; the writes happen in characters.services."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from characters.models import Character, VariationKind
from tower.limits import TEXT_MAX_LENGTH, bounded_formfield

_HEX = re.compile(r"#[0-9a-fA-F]{6}")


class CharacterForm(forms.ModelForm):
    attributes_text = forms.CharField(
        label="Attributes",
        required=False,
        max_length=TEXT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "hair: silver, short\neyes: amber"}),
        help_text="one per line as name: value",
    )
    palette_text = forms.CharField(
        label="Palette",
        required=False,
        max_length=TEXT_MAX_LENGTH,
        help_text=(
            "#rrggbb colours separated by spaces or commas; filled from the first reference when empty,"
            " never replaced by an upload"
        ),
    )

    class Meta:
        model = Character
        formfield_callback = bounded_formfield
        fields = ["name", "design_prompt", "trigger_word", "negative_prompt", "consistency_threshold"]
        widgets = {
            "design_prompt": forms.Textarea(attrs={"rows": 4}),
            "negative_prompt": forms.Textarea(attrs={"rows": 2}),
            "consistency_threshold": forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and self.instance.pk:
            attributes = self.instance.attributes or {}
            self.initial["attributes_text"] = "\n".join(f"{k}: {v}" for k, v in attributes.items())
            self.initial["palette_text"] = " ".join(self.instance.palette or [])

    def clean_consistency_threshold(self) -> float:
        value = self.cleaned_data["consistency_threshold"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("must be between 0 and 1")
        return value

    def clean_attributes_text(self) -> dict[str, str]:
        attributes: dict[str, str] = {}
        for n, line in enumerate(self.cleaned_data["attributes_text"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise forms.ValidationError(f"line {n} needs the form name: value")
            attributes[name.strip()] = value.strip()
        return attributes

    def clean_palette_text(self) -> list[str]:
        parts = [p for p in re.split(r"[\s,]+", self.cleaned_data["palette_text"]) if p]
        bad = [p for p in parts if not _HEX.fullmatch(p)]
        if bad:
            raise forms.ValidationError(f"not a #rrggbb colour: {', '.join(bad[:3])}")
        return [p.lower() for p in parts]

    def character_fields(self) -> dict[str, Any]:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["attributes"] = self.cleaned_data["attributes_text"]
        data["palette"] = self.cleaned_data["palette_text"]
        return data


class ReferenceForm(forms.Form):
    # A plain FileField: the service validates the content (not the name) and bounds its size.
    image = forms.FileField(label="Reference image", help_text="PNG, JPEG or WebP")
    note = forms.CharField(required=False, max_length=255)
    primary = forms.BooleanField(required=False, label="Make it the primary reference")


class VersionForm(forms.Form):
    name = forms.CharField(max_length=120)
    prompt_delta = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}))
    negative_delta = forms.CharField(
        required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 1})
    )
    description = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 1}))


class VariationForm(forms.Form):
    kind = forms.ChoiceField(choices=VariationKind.choices)
    name = forms.CharField(max_length=120)
    prompt_delta = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}))
    negative_delta = forms.CharField(
        required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 1})
    )

"""Page forms for characters: they validate input; the writes happen in characters.services."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from characters.models import AgeState, AttributeType, Character, CharacterVersion, EmotionalState, VariationKind
from characters.selectors import attributes_of
from projects.models import Project
from tower.core.forms import model_choice
from tower.core.limits import TEXT_MAX_LENGTH, bounded_formfield

_HEX = re.compile(r"#[0-9a-fA-F]{6}")


class CharacterForm(forms.ModelForm):
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
        fields = [
            "name",
            "design_prompt",
            "trigger_word",
            "negative_prompt",
            "consistency_threshold",
            "palette_gated",
            "palette_threshold",
        ]
        labels = {
            "consistency_threshold": "Similarity threshold",
            "palette_gated": "Gate outputs on the palette",
            "palette_threshold": "Palette ΔE threshold",
        }
        widgets = {
            "design_prompt": forms.Textarea(attrs={"rows": 4}),
            "negative_prompt": forms.Textarea(attrs={"rows": 2}),
            "consistency_threshold": forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1"}),
            "palette_threshold": forms.NumberInput(attrs={"step": "0.5", "min": "0", "max": "100"}),
        }

    def __init__(self, *args: Any, project: Project | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        project = project or (self.instance.project if self.instance.pk else None)
        if project is not None:
            # Said with the number, so nobody has to look the project's value up.
            self.fields[
                "consistency_threshold"
            ].help_text = (
                f"face similarity outputs must reach, 0..1; empty = the project's ({project.threshold_similarity:.2f})"
            )
            self.fields["palette_threshold"].help_text = (
                f"largest mean ΔE (Lab) from the palette when gated; empty = the project's "
                f"({project.threshold_palette:g})"
            )
        if not self.is_bound and self.instance.pk:
            self.initial["palette_text"] = " ".join(self.instance.palette or [])

    def clean_consistency_threshold(self) -> float | None:
        value = self.cleaned_data["consistency_threshold"]
        if value is not None and not 0 <= value <= 1:
            raise forms.ValidationError("must be between 0 and 1")
        return value

    def clean_palette_threshold(self) -> float | None:
        value = self.cleaned_data["palette_threshold"]
        if value is not None and not 0 <= value <= 100:
            raise forms.ValidationError("must be between 0 and 100")
        return value

    def clean_palette_text(self) -> list[str]:
        parts = [p for p in re.split(r"[\s,]+", self.cleaned_data["palette_text"]) if p]
        bad = [p for p in parts if not _HEX.fullmatch(p)]
        if bad:
            raise forms.ValidationError(f"not a #rrggbb colour: {', '.join(bad[:3])}")
        return [p.lower() for p in parts]

    def character_fields(self) -> dict[str, Any]:
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["palette"] = self.cleaned_data["palette_text"]
        return data


class AttributeForm(forms.Form):
    """One attribute row of the design form; a row left blank is no attribute."""

    id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    type = forms.ChoiceField(choices=[("", "—"), *AttributeType.choices], required=False)
    value = forms.CharField(max_length=200, required=False)
    prompt_tokens = forms.CharField(
        max_length=500, required=False, label="Prompt tokens", help_text="empty: the value itself"
    )
    priority = forms.IntegerField(min_value=0, max_value=100, initial=50, required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("type") and not (data.get("value") or "").strip():
            self.add_error("value", "an attribute needs a value")
        elif (data.get("value") or "").strip() and not data.get("type"):
            self.add_error("type", "choose the attribute's type")
        return data


class BaseAttributeFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        if any(self.errors):
            return
        types = [row["type"] for row in self.rows()]
        repeated = sorted({t for t in types if types.count(t) > 1})
        if repeated:
            raise forms.ValidationError(f"one attribute per type: {', '.join(repeated)} appears more than once")

    def rows(self) -> list[dict[str, Any]]:
        """The attributes as the service takes them: filled rows, less the ones marked for deletion."""
        rows = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            if not data.get("type") or data.get("DELETE"):
                continue
            row = {
                "type": data["type"],
                "value": data["value"],
                "prompt_tokens": data.get("prompt_tokens") or "",
                "priority": 50 if data.get("priority") is None else data["priority"],
            }
            if data.get("id"):
                row["id"] = data["id"]
            rows.append(row)
        return rows


AttributeFormSet = forms.formset_factory(
    AttributeForm, formset=BaseAttributeFormSet, extra=2, can_delete=True, max_num=len(AttributeType.choices)
)


def attribute_formset(character: Character | None = None, data: Any = None) -> BaseAttributeFormSet:
    """The design form's attribute rows: the character's attributes, then two blank rows."""
    initial = [
        {"id": a.pk, "type": a.type, "value": a.value, "prompt_tokens": a.prompt_tokens, "priority": a.priority}
        for a in (attributes_of(character) if character is not None and character.pk else [])
    ]
    formset = AttributeFormSet(data, prefix="attr", initial=initial)
    assert isinstance(formset, BaseAttributeFormSet)  # formset_factory(formset=BaseAttributeFormSet)
    return formset


class ReferenceForm(forms.Form):
    # A plain FileField: the service validates the content (not the name) and bounds its size.
    image = forms.FileField(label="Reference image", help_text="PNG, JPEG or WebP")
    note = forms.CharField(required=False, max_length=255)
    primary = forms.BooleanField(required=False, label="Make it the primary reference")
    version = forms.ModelChoiceField(
        queryset=CharacterVersion.objects.none(),
        required=False,
        empty_label="The character itself",
        label="Reference of",
        help_text="a version's own references condition and score that version's jobs",
    )

    def __init__(self, *args: Any, character: Character | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only this character's versions: another one's is "not a valid choice".
        if character is not None:
            model_choice(self, "version").queryset = CharacterVersion.objects.filter(character=character)


class VersionStateForm(forms.Form):
    age_state = forms.ChoiceField(choices=AgeState.choices, initial=AgeState.ADULT, label="Age")
    emotional_state = forms.ChoiceField(choices=EmotionalState.choices, initial=EmotionalState.NEUTRAL, label="Emotion")


class VersionForm(VersionStateForm):
    name = forms.CharField(max_length=120)
    prompt_delta = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}))
    negative_delta = forms.CharField(
        required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 1})
    )
    description = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 1}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("age_state", "emotional_state"):
            self.fields[name].required = False  # left out: the model's default (adult, neutral)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        for name in ("age_state", "emotional_state"):
            if not data.get(name):
                data.pop(name, None)
        return data


class VariationForm(forms.Form):
    kind = forms.ChoiceField(choices=VariationKind.choices)
    name = forms.CharField(max_length=120)
    prompt_delta = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 2}))
    negative_delta = forms.CharField(
        required=False, max_length=TEXT_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 1})
    )
    replaces = forms.ChoiceField(
        choices=[("", "Default: an outfit replaces the outfit"), ("-", "Nothing"), *AttributeType.choices],
        required=False,
        label="Replaces",
        help_text="the attribute this variation is worn instead of: left out of the prompt, with its design tags",
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        choice = data.pop("replaces", "")
        if choice:  # else the service's default for the kind
            data["replaces"] = "" if choice == "-" else choice
        return data

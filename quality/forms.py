"""The gallery's filter form: generation's filters plus verdict and score thresholds."""

from __future__ import annotations

from typing import Any

from django import forms

from generation.forms import GalleryFilterForm
from quality.selectors import Verdict


class ScoredGalleryFilterForm(GalleryFilterForm):
    status = forms.ChoiceField(choices=[("", "Any verdict"), *Verdict.choices], required=False, label="Quality")
    min_aesthetic = forms.FloatField(
        required=False,
        min_value=0,
        max_value=10,
        label="Aesthetic ≥",
        widget=forms.NumberInput(attrs={"step": "0.5", "placeholder": "e.g. 6", "inputmode": "decimal"}),
    )
    min_similarity = forms.FloatField(
        required=False,
        min_value=-1,
        max_value=1,
        label="Similarity ≥",
        widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "e.g. 0.6", "inputmode": "decimal"}),
    )

    def selector_kwargs(self) -> dict[str, Any]:
        """The valid filters as ``gallery_assets`` arguments; an invalid one is shown, not applied."""
        if not self.is_bound:
            return {}
        self.is_valid()
        data = self.cleaned_data
        return {
            "project": data.get("project"),
            "character": data.get("character"),
            "kind": data.get("kind") or "",
            "verdict": data.get("status") or "",
            "min_aesthetic": data.get("min_aesthetic"),
            "min_similarity": data.get("min_similarity"),
        }

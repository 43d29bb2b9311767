"""The gallery's filter form: generation's filters plus verdict and score thresholds."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.functional import cached_property

from generation.forms import GalleryFilterForm
from projects.selectors import AnyUser
from quality.selectors import AESTHETIC, SIMILARITY, Verdict, gallery_scores_present


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

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, user=user, **kwargs)
        self.user = user

    @cached_property
    def unscored(self) -> dict[str, bool]:
        """Per score filter: True when no output the user can see has that score yet (the page
        says so beside the field). Only the full page reads it: a grid refresh costs no query."""
        present = gallery_scores_present(user=self.user)
        return {"min_aesthetic": AESTHETIC not in present, "min_similarity": SIMILARITY not in present}

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

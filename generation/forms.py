"""Page forms for generation: the Generate form and the list filters."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Q

from characters.selectors import characters_visible_to, variations_visible_to, versions_visible_to
from generation.models import AssetKind, Backend, JobKind, JobStatus
from generation.selectors import templates_visible_to
from generation.workflow import MAX_SEED
from projects.models import Mode
from projects.selectors import AnyUser, projects_visible_to
from tower.limits import TEXT_MAX_LENGTH

MAX_COUNT = 16
DEPENDENT = ("character", "version", "variation", "template")


class GenerateForm(forms.Form):
    """Project → character (version, variation) → template → mode → seed and count.

    Every choice is limited to rows the user may see, so a forged id is an invalid choice. Built
    ``lenient`` (a GET that re-renders the form as the user picks), a dependent choice that no
    longer fits the chosen project is dropped instead of reported.
    """

    project = forms.ModelChoiceField(queryset=None, empty_label="Choose a project")
    character = forms.ModelChoiceField(queryset=None, required=False, empty_label="No character")
    version = forms.ModelChoiceField(queryset=None, required=False, empty_label="Base design")
    variation = forms.ModelChoiceField(queryset=None, required=False, empty_label="No variation")
    template = forms.ModelChoiceField(queryset=None, empty_label="Choose a workflow")
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

    def __init__(self, *args: Any, user: AnyUser, lenient: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fields = self.fields
        fields["project"].queryset = projects_visible_to(user).order_by("name")
        project_id = self._picked("project")
        characters = characters_visible_to(user).filter(project_id=project_id or -1)
        fields["character"].queryset = characters.order_by("name")
        character_id = self._picked("character")
        fields["version"].queryset = versions_visible_to(user).filter(character_id=character_id or -1)
        fields["variation"].queryset = variations_visible_to(user).filter(character_id=character_id or -1)
        fields["template"].queryset = (
            templates_visible_to(user)
            .filter(Q(project__isnull=True) | Q(project_id=project_id or -1))
            .order_by("-weightless", "name")
        )
        if lenient and self.is_bound:
            self.data = self.data.copy()
            self.data.setdefault("count", "1")
            self.data.setdefault("mode", Mode.DRAFT)
            if not self.data.get("count"):
                self.data["count"] = "1"
            for name in DEPENDENT:
                value = self.data.get(name)
                if value and not (value.isdigit() and fields[name].queryset.filter(pk=value).exists()):
                    self.data[name] = ""

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
        }


def _choices(choices: list[tuple[str, str]], empty: str) -> list[tuple[str, str]]:
    return [("", empty), *choices]


class JobFilterForm(forms.Form):
    project = forms.ModelChoiceField(queryset=None, required=False, empty_label="All projects")
    status = forms.ChoiceField(choices=_choices(JobStatus.choices, "Any status"), required=False)
    kind = forms.ChoiceField(choices=_choices(JobKind.choices, "Any kind"), required=False)
    batch = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_visible_to(user).order_by("name")


class GalleryFilterForm(forms.Form):
    project = forms.ModelChoiceField(queryset=None, required=False, empty_label="All projects")
    character = forms.ModelChoiceField(queryset=None, required=False, empty_label="All characters")
    kind = forms.ChoiceField(choices=_choices(AssetKind.choices, "Any kind"), required=False)

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_visible_to(user).order_by("name")
        characters = characters_visible_to(user).order_by("project__name", "name")
        project = self.data.get("project") if self.is_bound else None
        if project and str(project).isdigit():
            # project__pk, not project_id: a pk lookup copes with a number past the database's range.
            characters = characters.filter(project__pk=int(project))
        self.fields["character"].queryset = characters


class BackendForm(forms.ModelForm):
    """A ComfyUI server as staff add or edit it in the studio (its health fields are Tower's)."""

    url = forms.URLField(
        max_length=300, assume_scheme="http", label="URL", help_text="e.g. http://gpu-1.local:8188"
    )  # ComfyUI speaks plain HTTP

    class Meta:
        model = Backend
        fields = ["name", "url", "enabled", "max_in_flight", "vram_hold_threshold"]
        labels = {"max_in_flight": "Prompts at once", "vram_hold_threshold": "Hold above VRAM use"}

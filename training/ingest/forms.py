"""The ingest page's form: it validates input; training.ingest.services does the work."""

from __future__ import annotations

from typing import Any

from django import forms

from characters.models import Character
from characters.selectors import characters_visible_to
from projects.models import Project
from projects.selectors import projects_visible_to
from tower.core.forms import choice, model_choice
from training.ingest.services import MAX_FRAMES_PER_SHOT
from training.ingest.sources import allowed_output_dirs


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data if item]
        return [single(data, initial)] if data else []


class CharacterChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Character) -> str:
        return f"{obj.project.name} · {obj.name}"


class IngestForm(forms.Form):
    project: forms.ModelChoiceField[Project] = forms.ModelChoiceField(queryset=None, empty_label=None)
    character = CharacterChoiceField(
        queryset=None, required=False, empty_label="Classify automatically", label="Target character"
    )
    # The metaclass moves declared fields into base_fields: BaseForm.files (the uploads) stays as it is.
    files = MultipleFileField(  # type: ignore[assignment]  # a field named like BaseForm.files
        required=False,
        label="Images, a zip archive or a video",
        help_text="PNG, JPEG or WebP images (several at once), one .zip of images, or one video",
    )
    url = forms.URLField(
        required=False, assume_scheme="https", label="Or a URL", help_text="YouTube or any page yt-dlp supports"
    )
    playlist = forms.BooleanField(required=False, label="Whole playlist")
    folder = forms.ChoiceField(required=False, label="Or a ComfyUI output folder")
    subfolder = forms.CharField(required=False, max_length=300, help_text="relative to the folder, e.g. 2025-06-01")
    frames_per_shot = forms.IntegerField(min_value=1, max_value=MAX_FRAMES_PER_SHOT, initial=3, label="Frames per shot")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_choice(self, "project").queryset = projects_visible_to(user).order_by("name")
        model_choice(self, "character").queryset = characters_visible_to(user).order_by("project__name", "name")
        choice(self, "folder").choices = [("", "—")] + [(d, d) for d in allowed_output_dirs()]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        given = [bool(data.get("files")), bool(data.get("url")), bool(data.get("folder"))]
        if sum(given) != 1:
            raise forms.ValidationError("Choose one source: files to upload, a URL, or a ComfyUI folder.")
        character, project = data.get("character"), data.get("project")
        if character is not None and project is not None and character.project_id != project.pk:
            self.add_error("character", "That character belongs to another project.")
        return data

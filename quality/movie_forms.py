"""Page forms of the storyboard and the scene timeline: they validate input; writes go through services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Q, QuerySet

from characters.models import Character
from generation.models import JobKind, WorkflowTemplate
from projects.models import Project

SEGMENTS_MAX = 64  # as the segment plan bounds an explicit count (quality.movie.plan)
TEXT_MAX = 2000


class SceneForm(forms.Form):
    """A scene's storyboard card: what happens, who is in it, and how long it runs."""

    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, max_length=TEXT_MAX, widget=forms.Textarea(attrs={"rows": 3}))
    duration_seconds = forms.FloatField(
        label="Duration (seconds)", min_value=0.1, max_value=600, initial=5.0, help_text="more than 0, at most 600"
    )
    characters = forms.ModelMultipleChoiceField(
        queryset=Character.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one character for the scene."},
    )
    mood = forms.CharField(required=False, max_length=100)
    camera = forms.CharField(required=False, max_length=100)
    lighting = forms.CharField(required=False, max_length=100)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["characters"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = Character.objects.filter(project=project).order_by("name", "pk")

    def scene_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if k != "characters"}


def segment_templates(project: Project) -> QuerySet[WorkflowTemplate]:
    """The segment templates a scene of ``project`` can run: the shared ones and the project's own."""
    return WorkflowTemplate.objects.filter(Q(project__isnull=True) | Q(project=project), kind=JobKind.SEGMENT).order_by(
        "name", "pk"
    )


class GenerateForm(forms.Form):
    """Generate a scene: which segment template, and optionally how many segments (else planned)."""

    template = forms.ChoiceField(label="Segment template")
    segments = forms.IntegerField(
        required=False, min_value=1, max_value=SEGMENTS_MAX, help_text="empty: planned from the scene's duration"
    )
    motion_prompt = forms.CharField(required=False, max_length=TEXT_MAX, widget=forms.Textarea(attrs={"rows": 2}))
    force_reason = forms.CharField(
        label="Reason to go ahead",
        required=False,
        max_length=500,
        help_text="only when a character's animation phase is still closed: why generate anyway (recorded)",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["template"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(t.slug, f"{t.name} ({t.slug})") for t in segment_templates(project)]


class EpisodeForm(forms.Form):
    title = forms.CharField(max_length=200)
    synopsis = forms.CharField(required=False, max_length=TEXT_MAX, widget=forms.Textarea(attrs={"rows": 2}))


class AssembleForm(forms.Form):
    """Assemble the episode's film: the container, and a crossfade at segment joins (0: a cut)."""

    container = forms.ChoiceField(choices=[("mp4", "MP4 (H.264)"), ("webm", "WebM (VP9)")], initial="mp4")
    crossfade_frames = forms.IntegerField(label="Crossfade (frames)", required=False, min_value=0, initial=0)

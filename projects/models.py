from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

# Automatic regenerations of a failed output, per job: each is a full generation on a GPU. On the
# field as validators, so every ModelForm (the admin's too) refuses more, not only the service.
MAX_REGENERATIONS = 10


class ArtKind(models.TextChoices):
    ANIME = "anime", "Anime / illustration"
    PHOTOREAL = "photoreal", "Photoreal"


class Phase(models.IntegerChoices):
    STILLS = 1, "1 · Stills and character sheets"
    LOOPS = 2, "2 · Animation loops"
    VIDEO = 3, "3 · Video"


# The eight poses of a phase-1 character sheet (the designs' list); editable per project.
DEFAULT_SHEET_POSES = [
    "front view",
    "three-quarter view from the left",
    "three-quarter view from the right",
    "profile from the left",
    "profile from the right",
    "back view",
    "close-up of the face",
    "full-body action pose",
]
# The workflow template (slug) each phase uses when an orchestration names none.
DEFAULT_PHASE_TEMPLATES = {"sheet": "character-sheet", "loop": "animatediff-loop", "video": "svd-video"}


def default_sheet_poses() -> list[str]:
    return list(DEFAULT_SHEET_POSES)


def default_phase_templates() -> dict[str, str]:
    return dict(DEFAULT_PHASE_TEMPLATES)


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="member_projects", blank=True
    )
    art_kind = models.CharField(max_length=16, choices=ArtKind.choices, default=ArtKind.ANIME)
    story_bible = models.JSONField(
        default=dict, blank=True, help_text="premise, tone, world, episode_outline (list), notes"
    )
    phase = models.PositiveSmallIntegerField(choices=Phase.choices, default=Phase.STILLS)
    # Quality gate thresholds (the seeds from the studio's own pipeline).
    threshold_similarity = models.FloatField(default=0.70)
    threshold_aesthetic = models.FloatField(default=5.5)
    threshold_temporal = models.FloatField(default=0.85)
    threshold_motion = models.FloatField(default=0.80)
    threshold_palette = models.FloatField(default=25.0, help_text="largest mean ΔE (Lab) from a character's palette")
    threshold_face_quality = models.FloatField(default=0.80, help_text="phase 1 gate: character sheet face quality")
    threshold_overall = models.FloatField(default=0.80, help_text="phase 3 gate: the clip's overall quality")
    advance_unevaluated = models.BooleanField(
        default=False, help_text="let an orchestration pass a phase gate that could not be evaluated"
    )
    sheet_poses = models.JSONField(default=default_sheet_poses, blank=True, help_text="the character sheet's poses")
    phase_templates = models.JSONField(
        default=default_phase_templates, blank=True, help_text='{"sheet": slug, "loop": slug, "video": slug}'
    )
    phase_pass_ratio = models.FloatField(default=0.80)
    phase_window = models.PositiveIntegerField(default=10)
    max_regenerations = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(0), MaxValueValidator(MAX_REGENERATIONS)]
    )
    # Join gates of movie production: a join (segment k → k+1, scene → scene) passes when its SSIM is at
    # least join_ssim_min and its flow discontinuity (1 = like anywhere else in the clip) at most join_flow_max.
    join_ssim_min = models.FloatField(default=0.50, validators=[MinValueValidator(0), MaxValueValidator(1)])
    join_flow_max = models.FloatField(default=3.0, validators=[MinValueValidator(0)])
    max_join_regenerations = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(0), MaxValueValidator(MAX_REGENERATIONS)],
        help_text="how often a segment whose join fails is generated again",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(phase__gte=1, phase__lte=3), name="project_phase_range"),
            models.CheckConstraint(
                condition=Q(threshold_similarity__gte=0, threshold_similarity__lte=1),
                name="project_similarity_range",
            ),
            models.CheckConstraint(
                condition=Q(threshold_aesthetic__gte=0, threshold_aesthetic__lte=10),
                name="project_aesthetic_range",
            ),
            models.CheckConstraint(
                condition=Q(threshold_temporal__gte=0, threshold_temporal__lte=1),
                name="project_temporal_range",
            ),
            models.CheckConstraint(
                condition=Q(threshold_motion__gte=0, threshold_motion__lte=1),
                name="project_motion_range",
            ),
            models.CheckConstraint(
                condition=Q(threshold_palette__gte=0, threshold_palette__lte=100), name="project_palette_range"
            ),
            models.CheckConstraint(
                condition=Q(
                    threshold_face_quality__gte=0,
                    threshold_face_quality__lte=1,
                    threshold_overall__gte=0,
                    threshold_overall__lte=1,
                ),
                name="project_phase_thresholds_range",
            ),
            models.CheckConstraint(
                condition=Q(phase_pass_ratio__gt=0, phase_pass_ratio__lte=1),
                name="project_pass_ratio_range",
            ),
            models.CheckConstraint(condition=Q(phase_window__gte=1), name="project_phase_window_min"),
        ]

    def __str__(self) -> str:
        return self.name


class MemberRole(models.TextChoices):
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=MemberRole.choices, default=MemberRole.EDITOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique"),
            models.CheckConstraint(condition=Q(role__in=MemberRole.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Mode(models.TextChoices):
    DRAFT = "draft", "Draft"
    PRODUCTION = "production", "Production"


class GenerationStyle(models.Model):
    """The project's one look: every job uses it unless a request overrides a field explicitly."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="style")
    checkpoint = models.CharField(max_length=255, blank=True, help_text="as listed by ComfyUI, subfolder included")
    vae = models.CharField(max_length=255, blank=True, help_text="empty: the checkpoint's own VAE")
    sampler = models.CharField(max_length=64, default="euler_ancestral")
    scheduler = models.CharField(max_length=64, default="normal")
    width = models.PositiveIntegerField(default=768)
    height = models.PositiveIntegerField(default=1024)
    style_prompt = models.TextField(blank=True, help_text="appended to every positive prompt")
    negative_prompt = models.TextField(blank=True, default="lowres, bad anatomy, bad hands, watermark, text")
    loras = models.JSONField(default=list, blank=True, help_text='[{"name": "x.safetensors", "strength": 0.8}]')
    clip_skip = models.PositiveSmallIntegerField(default=2)
    fps = models.PositiveSmallIntegerField(default=12)
    draft_steps = models.PositiveSmallIntegerField(default=15)
    draft_cfg = models.FloatField(default=7.0)
    draft_denoise = models.FloatField(default=0.8)
    production_steps = models.PositiveSmallIntegerField(default=25)
    production_cfg = models.FloatField(default=8.0)
    production_denoise = models.FloatField(default=1.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(width__gte=64, width__lte=8192, height__gte=64, height__lte=8192),
                name="style_size_range",
            ),
            models.CheckConstraint(
                condition=Q(
                    draft_steps__gte=1, draft_steps__lte=200, production_steps__gte=1, production_steps__lte=200
                ),
                name="style_steps_range",
            ),
            models.CheckConstraint(
                condition=Q(draft_cfg__gte=0, draft_cfg__lte=30, production_cfg__gte=0, production_cfg__lte=30),
                name="style_cfg_range",
            ),
            models.CheckConstraint(
                condition=Q(
                    draft_denoise__gte=0, draft_denoise__lte=1, production_denoise__gte=0, production_denoise__lte=1
                ),
                name="style_denoise_range",
            ),
            models.CheckConstraint(condition=Q(clip_skip__gte=1, clip_skip__lte=12), name="style_clip_skip_range"),
            models.CheckConstraint(condition=Q(fps__gte=1, fps__lte=120), name="style_fps_range"),
        ]

    def __str__(self) -> str:
        return f"Style of {self.project}"

    def preset(self, mode: str) -> dict[str, float | int]:
        if mode == Mode.DRAFT:
            return {"steps": self.draft_steps, "cfg": self.draft_cfg, "denoise": self.draft_denoise}
        return {"steps": self.production_steps, "cfg": self.production_cfg, "denoise": self.production_denoise}


class Episode(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="episodes")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    synopsis = models.TextField(blank=True)
    soundtrack = models.FileField(upload_to="soundtracks/", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="episode_unique_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="episode_number_min"),
        ]

    def __str__(self) -> str:
        return f"{self.project} · E{self.number} {self.title}"


class SceneStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class Scene(models.Model):
    episode = models.ForeignKey(Episode, on_delete=models.CASCADE, related_name="scenes")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    mood = models.CharField(max_length=100, blank=True)
    camera = models.CharField(max_length=100, blank=True)
    lighting = models.CharField(max_length=100, blank=True)
    duration_seconds = models.FloatField(default=5.0)
    continuity = models.JSONField(
        default=dict, blank=True, help_text="state carried to the next scene (positions, outfits, time of day…)"
    )
    # Continuity memory set on this scene: {"characters": {id: {...}}, "story": {...}, "style": {...}}; what a
    # scene leaves unset is carried from the scenes before it (projects.memory computes the effective memory).
    memory = models.JSONField(default=dict, blank=True, help_text="continuity memory set on this scene")
    status = models.CharField(max_length=10, choices=SceneStatus.choices, default=SceneStatus.PENDING, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["episode", "number"]
        constraints = [
            models.UniqueConstraint(fields=["episode", "number"], name="scene_unique_number"),
            models.CheckConstraint(
                condition=Q(duration_seconds__gt=0, duration_seconds__lte=600), name="scene_duration_range"
            ),
            models.CheckConstraint(condition=Q(status__in=SceneStatus.values), name="scene_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.episode} · S{self.number}"


class SceneMemoryChange(models.Model):
    """One edit of a scene's continuity memory: who, when, and each changed path's old and new value."""

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="memory_changes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changes = models.JSONField(default=list, help_text='[{"path": "story.tension", "old": 3, "new": 7}, …]')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scene", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"memory change {self.pk} of {self.scene}"

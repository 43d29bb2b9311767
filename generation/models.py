from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from characters.models import Character, CharacterVersion, Variation
from projects.models import Episode, Mode, Phase, Project, Scene


class Backend(models.Model):
    """A ComfyUI server Tower may send work to."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=300, unique=True, help_text="e.g. http://gpu-1.local:8188")
    enabled = models.BooleanField(default=True)
    max_in_flight = models.PositiveSmallIntegerField(
        default=2, help_text="prompts queued on the server at once (one running, the next waiting)"
    )
    vram_hold_threshold = models.FloatField(
        default=0.80, help_text="hold new work while used VRAM is above this fraction"
    )
    # Machine-maintained state, refreshed by the health poller.
    healthy = models.BooleanField(default=False, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    comfyui_version = models.CharField(max_length=40, blank=True, editable=False)
    stats = models.JSONField(default=dict, blank=True, editable=False, help_text="last /system_stats")
    node_classes = models.JSONField(default=list, blank=True, editable=False)
    object_info_fetched_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_checkpoint = models.CharField(max_length=255, blank=True, editable=False)
    last_assigned_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="when the engine last sent it a prompt"
    )
    supports_prompt_id = models.BooleanField(
        null=True, blank=True, editable=False, help_text="honours a client-chosen prompt_id (newer ComfyUI)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(vram_hold_threshold__gt=0, vram_hold_threshold__lte=1), name="backend_vram_hold_range"
            ),
            models.CheckConstraint(
                condition=Q(max_in_flight__gte=1, max_in_flight__lte=64), name="backend_in_flight_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BackendObjectInfo(models.Model):
    """The backend's last ``/object_info`` (node classes and their combo values), for pre-flight.

    Kept apart from Backend because it is large (hundreds of nodes) and most reads do not need it.
    """

    backend = models.OneToOneField(Backend, on_delete=models.CASCADE, related_name="object_info")
    data = models.JSONField(default=dict)
    digest = models.CharField(max_length=64, blank=True)
    fetched_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"object_info of {self.backend}"


class BackendUpload(models.Model):
    """A file Tower has put in a backend's input folder, under its content-addressed name."""

    backend = models.ForeignKey(Backend, on_delete=models.CASCADE, related_name="uploads")
    name = models.CharField(max_length=200, help_text="the name LoadImage takes: tower-<sha256 prefix>.<ext>")
    sha256 = models.CharField(max_length=64)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["backend", "name"], name="backend_upload_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} on {self.backend}"


def input_image_upload_to(instance: InputImage, filename: str) -> str:
    # The caller has already replaced the user's file name with a content-addressed one.
    return f"inputs/{instance.project_id}/{filename}"


class InputImage(models.Model):
    """An image a person uploaded to feed a template's image input (init image, reference, first frame)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="input_images")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    file = models.ImageField(upload_to=input_image_upload_to, max_length=300)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    original_name = models.CharField(max_length=255, blank=True, help_text="as uploaded; display only")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "sha256"], name="input_image_unique_content")]

    def __str__(self) -> str:
        return f"input image #{self.pk}"


class JobKind(models.TextChoices):
    IMAGE = "image", "Image"
    IMG2IMG = "img2img", "Image to image"
    CHARACTER_SHEET = "character_sheet", "Character sheet"
    LOOP = "loop", "Animation loop"
    VIDEO = "video", "Video"
    SEGMENT = "segment", "Video segment"


class WorkflowTemplate(models.Model):
    """A ComfyUI API-format graph plus the bindings that say where each parameter goes."""

    class Source(models.TextChoices):
        SHIPPED = "shipped", "Shipped with Tower"
        IMPORTED = "imported", "Imported by a user"

    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="templates",
        help_text="empty: available to every project",
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    kind = models.CharField(max_length=20, choices=JobKind.choices, default=JobKind.IMAGE)
    description = models.TextField(blank=True)
    graph = models.JSONField(help_text="ComfyUI API format: {node_id: {class_type, inputs, _meta}}")
    bindings = models.JSONField(default=dict, blank=True, help_text="parameter → [{node, input}]")
    required_nodes = models.JSONField(default=list, blank=True, editable=False)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.IMPORTED)
    weightless = models.BooleanField(default=False, help_text="runs with no model files")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["slug"], condition=Q(project__isnull=True), name="template_unique_global_slug"
            ),
            models.UniqueConstraint(
                fields=["project", "slug"], condition=Q(project__isnull=False), name="template_unique_project_slug"
            ),
            models.CheckConstraint(condition=Q(kind__in=JobKind.values), name="template_kind_valid"),
        ]

    def __str__(self) -> str:
        return self.name


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUBMITTED = "submitted", "Submitted"
    RUNNING = "running", "Running"
    SCORING = "scoring", "Scoring"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
LIVE_STATUSES = frozenset({JobStatus.SUBMITTED, JobStatus.RUNNING})

# The job status machine; services.job_transition is the only writer of Job.status.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.QUEUED: frozenset({JobStatus.SUBMITTED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUBMITTED: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.SCORING,
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        }
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SCORING, JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.SCORING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class Job(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    character = models.ForeignKey(Character, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    version = models.ForeignKey(CharacterVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    variation = models.ForeignKey(Variation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    scene = models.ForeignKey(Scene, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    template = models.ForeignKey(
        WorkflowTemplate, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    kind = models.CharField(max_length=20, choices=JobKind.choices, default=JobKind.IMAGE)
    phase = models.PositiveSmallIntegerField(choices=Phase.choices, default=Phase.STILLS)
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.DRAFT)
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    # Live progress, written by the worker.
    progress = models.FloatField(default=0.0)
    current_node = models.CharField(max_length=200, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    queue_position = models.PositiveIntegerField(null=True, blank=True)
    # What was asked and what was sent: enough to reproduce the output exactly.
    prompt = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="resolved parameters")
    overrides = models.JSONField(default=dict, blank=True, help_text="fields the request set over the style")
    graph = models.JSONField(null=True, blank=True, help_text="the exact graph submitted")
    seed = models.BigIntegerField(null=True, blank=True)
    # Where it ran.
    backend = models.ForeignKey(Backend, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    prompt_id = models.CharField(max_length=64, blank=True, db_index=True)
    client_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=120, blank=True, help_text="worker holding the job")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    # What went wrong.
    error_node = models.CharField(max_length=200, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    error_details = models.JSONField(null=True, blank=True)
    # Timings.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When the server reported the prompt done (its outputs are then fetched and stored): from
    # then on the job no longer takes a place in the backend's queue. Cleared on every submission.
    prompt_done_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="per-node seconds and milestones")
    # Lineage.
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
        help_text="regeneration or chaining source",
    )
    reproduce_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reproductions"
    )
    batch = models.UUIDField(null=True, blank=True, db_index=True, help_text="jobs submitted together")
    forced_reason = models.TextField(
        blank=True, help_text="why an editor ran this past a closed phase gate (empty: not forced)"
    )
    label = models.CharField(max_length=200, blank=True, help_text="e.g. the grid cell: cfg=7, steps=20")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "status"]),
            models.Index(fields=["backend", "status"]),
            # A project's job list, newest first.
            models.Index(fields=["project", "-created_at", "-id"], name="job_project_newest"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=JobStatus.values), name="job_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=JobKind.values), name="job_kind_valid"),
            models.CheckConstraint(condition=Q(mode__in=Mode.values), name="job_mode_valid"),
            models.CheckConstraint(condition=Q(progress__gte=0, progress__lte=1), name="job_progress_range"),
            models.CheckConstraint(condition=Q(phase__gte=1, phase__lte=3), name="job_phase_range"),
        ]

    def __str__(self) -> str:
        return f"Job #{self.pk} ({self.kind}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class LogLevel(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class JobLogLine(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_lines")
    created_at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"


class AssetKind(models.TextChoices):
    IMAGE = "image", "Image"
    ANIMATION = "animation", "Animation (WebP/APNG/GIF)"
    VIDEO = "video", "Video"


class AssetVerdict(models.TextChoices):
    """What quality's current scores of an asset say (quality.selectors explains the rule)."""

    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    UNSCORED = "unscored", "Unscored"


def asset_upload_to(instance: Asset, filename: str) -> str:
    return f"assets/{instance.project_id}/{filename}"


class Asset(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assets")
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="assets")
    file = models.FileField(upload_to=asset_upload_to, max_length=300)
    kind = models.CharField(max_length=12, choices=AssetKind.choices, default=AssetKind.IMAGE)
    mime = models.CharField(max_length=100)
    size_bytes = models.PositiveBigIntegerField(default=0)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    frames = models.PositiveIntegerField(default=1)
    fps = models.FloatField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    node_id = models.CharField(max_length=64, blank=True, help_text="ComfyUI node that produced it")
    comfy_filename = models.CharField(max_length=300, blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="generation parameters")
    thumbnail = models.ImageField(upload_to="thumbs/", blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Copies of its current scores' verdict and gated values, written by quality's scoring in the
    # transaction that writes the scores: the gallery filters on them without a subquery a row.
    verdict = models.CharField(
        max_length=8, choices=AssetVerdict.choices, default=AssetVerdict.UNSCORED, editable=False
    )
    aesthetic = models.FloatField(null=True, blank=True, editable=False, help_text="current aesthetic score")
    similarity = models.FloatField(
        null=True, blank=True, editable=False, help_text="current character similarity score"
    )

    class Meta:
        ordering = ["-created_at"]
        # The gallery's order (newest first), whole, per project and per verdict.
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="asset_newest"),
            models.Index(fields=["project", "-created_at", "-id"], name="asset_project_newest"),
            models.Index(fields=["verdict", "-created_at", "-id"], name="asset_verdict_newest"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=AssetKind.values), name="asset_kind_valid"),
            models.CheckConstraint(condition=Q(frames__gte=1), name="asset_frames_min"),
        ]

    def __str__(self) -> str:
        return f"Asset #{self.pk} ({self.kind})"


class AssemblyStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Assembly(models.Model):
    """Joining a scene's segments, or an episode's scenes, into one film: a worker's task with progress."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assemblies")
    episode = models.ForeignKey(Episode, on_delete=models.CASCADE, related_name="assemblies")
    scene = models.ForeignKey(
        Scene,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="assemblies",
        help_text="empty: the episode",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=10, choices=AssemblyStatus.choices, default=AssemblyStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    container = models.CharField(max_length=8, default="mp4", help_text="mp4 (H.264) or webm (VP9)")
    crossfade_frames = models.PositiveSmallIntegerField(default=0)
    stream_copy = models.BooleanField(default=False, editable=False, help_text="joined without re-encoding")
    asset = models.ForeignKey(Asset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    chapters = models.JSONField(default=list, blank=True, help_text='[{"title", "start", "end"}] in seconds')
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=AssemblyStatus.values), name="assembly_status_valid"),
            models.CheckConstraint(condition=Q(progress__gte=0, progress__lte=1), name="assembly_progress_range"),
        ]

    def __str__(self) -> str:
        return f"assembly {self.pk} of {self.scene or self.episode} ({self.status})"

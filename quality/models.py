from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from characters.models import Character
from generation.models import Asset, InputImage, Job, WorkflowTemplate
from projects.models import Mode, Phase, Project, Scene


class ScoreStatus(models.TextChoices):
    OK = "ok", "Scored"
    UNAVAILABLE = "unavailable", "Unavailable (model missing)"
    NO_SUBJECT = "no_subject", "No face / subject found"
    ERROR = "error", "Error"


class QualityScore(models.Model):
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="scores")
    metric = models.CharField(max_length=64, db_index=True)
    value = models.FloatField(null=True, blank=True, help_text="empty when the metric could not run")
    threshold = models.FloatField(null=True, blank=True)
    passed = models.BooleanField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=ScoreStatus.choices, default=ScoreStatus.OK)
    model_id = models.CharField(max_length=120, blank=True)
    character = models.ForeignKey(Character, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["asset", "metric"]
        # The gallery reads an asset's newest row of a metric for each tile it shows.
        indexes = [models.Index(fields=["asset", "metric", "id"], name="score_asset_metric_newest")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ScoreStatus.values), name="score_status_valid"),
            # An unscored metric never pretends to a value.
            models.CheckConstraint(
                condition=Q(status="ok", value__isnull=False) | ~Q(status="ok"), name="score_ok_has_value"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric}={self.value} on asset {self.asset_id}"


class GateStage(models.TextChoices):
    PRE_GEN = "pre_gen", "Pre-generation"
    POST_GEN = "post_gen", "Post-generation"
    FINAL = "final", "Final"


class QualityGate(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="gates")
    stage = models.CharField(max_length=10, choices=GateStage.choices)
    passed = models.BooleanField(null=True, blank=True, help_text="empty: nothing could be evaluated")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(stage__in=GateStage.values), name="gate_stage_valid"),
        ]

    def __str__(self) -> str:
        verdict = "not evaluated" if self.passed is None else "pass" if self.passed else "fail"
        return f"{self.stage} gate of job {self.job_id}: {verdict}"


class PhaseGate(models.Model):
    """Whether a project (or one of its characters) may leave a phase for the next."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="phase_gates")
    character = models.ForeignKey(
        Character, on_delete=models.CASCADE, null=True, blank=True, related_name="phase_gates"
    )
    phase = models.PositiveSmallIntegerField(choices=Phase.choices)
    is_open = models.BooleanField(default=False, help_text="the next phase may start")
    pass_ratio = models.FloatField(null=True, blank=True)
    sample_size = models.PositiveIntegerField(default=0)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    overridden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    override_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["project", "phase"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "phase"], condition=Q(character__isnull=True), name="phasegate_unique_project"
            ),
            models.UniqueConstraint(
                fields=["project", "character", "phase"],
                condition=Q(character__isnull=False),
                name="phasegate_unique_character",
            ),
            models.CheckConstraint(condition=Q(phase__gte=1, phase__lte=3), name="phasegate_phase_range"),
            models.CheckConstraint(
                condition=Q(pass_ratio__isnull=True) | Q(pass_ratio__gte=0, pass_ratio__lte=1),
                name="phasegate_ratio_range",
            ),
            # An override is always explained.
            models.CheckConstraint(
                condition=Q(overridden_by__isnull=True) | ~Q(override_reason=""), name="phasegate_override_reason"
            ),
        ]

    def __str__(self) -> str:
        who = self.character or self.project
        return f"{who} phase {self.phase}: {'open' if self.is_open else 'closed'}"


class EvaluationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Evaluation(models.Model):
    """One ``POST /quality/evaluate``: scored by a worker; its answer is kept for the requester."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    character = models.ForeignKey(Character, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    upload_sha256 = models.CharField(
        max_length=64, blank=True, help_text="the stored upload (MEDIA_ROOT/evaluations/<sha256>), if not an asset"
    )
    status = models.CharField(max_length=8, choices=EvaluationStatus.choices, default=EvaluationStatus.PENDING)
    result = models.JSONField(default=dict, blank=True, help_text="the answer's body when done")
    error = models.TextField(blank=True, help_text="why the media could not be scored, when failed")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=EvaluationStatus.values), name="evaluation_status_valid"),
            models.CheckConstraint(
                condition=Q(asset__isnull=False) | ~Q(upload_sha256=""), name="evaluation_has_media"
            ),
        ]

    def __str__(self) -> str:
        return f"evaluation {self.pk}: {self.status}"


class OrchestrationStatus(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for approval"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Orchestration(models.Model):
    """One request that runs a character through sheet → loop → video, each phase behind its gate."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="orchestrations")
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="orchestrations")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    prompt = models.TextField(blank=True)
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.DRAFT)
    auto_advance = models.BooleanField(default=True)
    templates = models.JSONField(default=dict, blank=True, help_text='{"sheet": slug, "loop": slug, "video": slug}')
    status = models.CharField(
        max_length=10, choices=OrchestrationStatus.choices, default=OrchestrationStatus.RUNNING, db_index=True
    )
    phase = models.PositiveSmallIntegerField(choices=Phase.choices, default=Phase.STILLS)
    reasons = models.JSONField(default=list, blank=True, help_text="why it failed or was stopped")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=OrchestrationStatus.values), name="orchestration_status_valid"
            ),
            models.CheckConstraint(condition=Q(phase__gte=1, phase__lte=3), name="orchestration_phase_range"),
        ]

    def __str__(self) -> str:
        return f"orchestration {self.pk} ({self.status}, phase {self.phase})"


class PhaseRunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class PhaseRun(models.Model):
    """One phase of an orchestration: its attempts (jobs), its gate verdict and its best output."""

    orchestration = models.ForeignKey(Orchestration, on_delete=models.CASCADE, related_name="phase_runs")
    phase = models.PositiveSmallIntegerField(choices=Phase.choices)
    status = models.CharField(max_length=20, choices=PhaseRunStatus.choices, default=PhaseRunStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    jobs = models.ManyToManyField(Job, related_name="phase_runs", blank=True)
    input_asset = models.ForeignKey(
        Asset,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="handed on by the phase before",
    )
    input_image = models.ForeignKey(
        InputImage,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="what this phase loads: the best pose cut from the sheet, the best frame of the loop",
    )
    handoff = models.JSONField(
        default=dict, blank=True, help_text="which panel or frame of input_asset was handed on, and why"
    )
    best_asset = models.ForeignKey(Asset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    gate = models.JSONField(default=dict, blank=True, help_text="the phase gate's last verdict and its reasons")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["orchestration", "phase"]
        constraints = [
            models.UniqueConstraint(fields=["orchestration", "phase"], name="phaserun_unique_phase"),
            models.CheckConstraint(condition=Q(status__in=PhaseRunStatus.values), name="phaserun_status_valid"),
            models.CheckConstraint(condition=Q(phase__gte=1, phase__lte=3), name="phaserun_phase_range"),
        ]

    def __str__(self) -> str:
        return f"phase {self.phase} of orchestration {self.orchestration_id}: {self.status}"


class SegmentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class SceneRun(models.Model):
    """One request to generate a scene: its engine template and planned segments, stepped like an orchestration."""

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="runs")
    template = models.ForeignKey(WorkflowTemplate, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    segments_planned = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=10, choices=SegmentStatus.choices, default=SegmentStatus.RUNNING, db_index=True
    )
    reasons = models.JSONField(default=list, blank=True, help_text="why it failed")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=SegmentStatus.values), name="scenerun_status_valid"),
            models.CheckConstraint(condition=Q(segments_planned__gte=1), name="scenerun_segments_min"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.scene} ({self.status})"


class Segment(models.Model):
    """One short generated clip of a scene; segment k+1 starts from segment k's last frame."""

    run = models.ForeignKey(SceneRun, on_delete=models.CASCADE, related_name="segments")
    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="segments")
    number = models.PositiveSmallIntegerField(help_text="1-based position in the scene")
    status = models.CharField(max_length=10, choices=SegmentStatus.choices, default=SegmentStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    job = models.ForeignKey(
        Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="the current attempt"
    )
    jobs = models.ManyToManyField(Job, related_name="segments", blank=True, help_text="every attempt")
    motion_prompt = models.TextField(blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    prompt_id = models.CharField(max_length=64, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="the overrides of the current attempt")
    first_frame = models.ForeignKey(
        InputImage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="what it starts from"
    )
    last_frame = models.ForeignKey(
        InputImage,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="its last frame, cut out",
    )
    output = models.ForeignKey(Asset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    frame_consistency = models.FloatField(null=True, blank=True, help_text="mean SSIM of consecutive frames")
    motion_smoothness = models.FloatField(null=True, blank=True)
    overall = models.FloatField(null=True, blank=True)
    join_ssim = models.FloatField(null=True, blank=True, help_text="across the join into this segment")
    join_flow = models.FloatField(null=True, blank=True, help_text="flow discontinuity across the join into it")
    join_passed = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="segment_unique_number"),
            models.CheckConstraint(condition=Q(status__in=SegmentStatus.values), name="segment_status_valid"),
            models.CheckConstraint(condition=Q(number__gte=1), name="segment_number_min"),
        ]

    def __str__(self) -> str:
        return f"segment {self.number} of {self.scene}"


class JoinKind(models.TextChoices):
    SEGMENT = "segment", "Segment → segment"
    SCENE = "scene", "Scene → scene"


class JoinEvaluation(models.Model):
    """One scored join: the last frames of one clip against the first of the next, with the project's gate."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="join_evaluations")
    scene = models.ForeignKey(
        Scene, on_delete=models.CASCADE, related_name="join_evaluations", help_text="the later side"
    )
    kind = models.CharField(max_length=8, choices=JoinKind.choices)
    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="join_evaluations",
        help_text="the later side",
    )
    before = models.ForeignKey(Asset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    after = models.ForeignKey(Asset, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    attempt = models.PositiveSmallIntegerField(default=1)
    ssim = models.FloatField(null=True, blank=True)
    flow_discontinuity = models.FloatField(null=True, blank=True)
    passed = models.BooleanField(null=True, blank=True, help_text="empty: could not be evaluated")
    details = models.JSONField(default=dict, blank=True, help_text="thresholds and reasons")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(kind__in=JoinKind.values), name="join_kind_valid")]

    def __str__(self) -> str:
        return f"{self.kind} join into {self.scene} ({self.passed})"


class QualityFeedback(models.Model):
    """One attempt at a segment, remembered: what it was asked, how it scored, and a person's rating."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="quality_feedback")
    template = models.ForeignKey(
        WorkflowTemplate, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="the engine"
    )
    segment = models.ForeignKey(Segment, on_delete=models.SET_NULL, null=True, blank=True, related_name="feedback")
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="quality_feedback")
    attempt = models.PositiveSmallIntegerField(default=1)
    scores = models.JSONField(default=dict, blank=True, help_text="per-dimension scores")
    prompt = models.TextField(blank=True, help_text="the full resolved prompt")
    params = models.JSONField(default=dict, blank=True)
    successful_elements = models.JSONField(default=list, blank=True)
    failed_elements = models.JSONField(default=list, blank=True)
    passed = models.BooleanField(null=True, blank=True)
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="a person's rating, 1–5")
    rated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "template", "passed"], name="feedback_engine_passed")]
        constraints = [
            models.CheckConstraint(
                condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=5), name="feedback_rating_range"
            )
        ]

    def __str__(self) -> str:
        return f"feedback {self.pk} (attempt {self.attempt})"

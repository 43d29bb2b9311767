from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from characters.models import Character
from generation.models import Asset, InputImage, Job
from projects.models import Mode, Phase, Project


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

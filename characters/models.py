from __future__ import annotations

from django.db import models
from django.db.models import Q

from projects.models import Project, Scene


class Character(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="characters")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    design_prompt = models.TextField(help_text="the one source of truth for how this character is described")
    trigger_word = models.CharField(max_length=64, blank=True)
    negative_prompt = models.TextField(blank=True, help_text="character-specific negative terms")
    learned_negatives = models.JSONField(
        default=dict, blank=True, help_text="term → weight, grown by curation feedback"
    )
    attributes = models.JSONField(default=dict, blank=True, help_text="hair, eyes, outfit, height…")
    palette = models.JSONField(default=list, blank=True, help_text="hex colours from the references")
    consistency_threshold = models.FloatField(default=0.70)
    bible = models.JSONField(default=dict, blank=True, help_text="personality, backstory, voice, relationships")
    scenes = models.ManyToManyField(Scene, related_name="characters", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "slug"], name="character_unique_slug"),
            models.CheckConstraint(
                condition=Q(consistency_threshold__gte=0, consistency_threshold__lte=1),
                name="character_threshold_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


def reference_upload_to(instance: ReferenceImage, filename: str) -> str:
    # The caller has already replaced the user's file name with a generated one.
    return f"references/{instance.character_id}/{filename}"


class ReferenceImage(models.Model):
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="references")
    image = models.ImageField(upload_to=reference_upload_to, max_length=300)
    width = models.PositiveIntegerField(default=0, editable=False)
    height = models.PositiveIntegerField(default=0, editable=False)
    sha256 = models.CharField(max_length=64, editable=False)
    original_name = models.CharField(max_length=255, blank=True, help_text="as uploaded; display only")
    is_primary = models.BooleanField(default=False)
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_primary", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["character"], condition=Q(is_primary=True), name="reference_one_primary"),
            models.UniqueConstraint(fields=["character", "sha256"], name="reference_unique_content"),
        ]

    def __str__(self) -> str:
        return f"{self.character} reference #{self.pk}"


class ReferenceEmbedding(models.Model):
    """A reference image's embedding under one model (ArcFace, CCIP, CLIP…), float32 bytes."""

    reference = models.ForeignKey(ReferenceImage, on_delete=models.CASCADE, related_name="embeddings")
    model_id = models.CharField(max_length=120)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField()
    face_box = models.JSONField(null=True, blank=True, help_text="[x, y, w, h] of the face used")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reference", "model_id"], name="embedding_unique_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} embedding of {self.reference}"


class CharacterVersion(models.Model):
    """An age or emotional state of a character: a prompt delta on top of the design prompt."""

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="versions")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    prompt_delta = models.TextField(blank=True)
    negative_delta = models.TextField(blank=True)
    description = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["character", "order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["character", "slug"], name="version_unique_slug"),
        ]

    def __str__(self) -> str:
        return f"{self.character} · {self.name}"


class VariationKind(models.TextChoices):
    OUTFIT = "outfit", "Outfit"
    EXPRESSION = "expression", "Expression"
    POSE = "pose", "Pose"


class Variation(models.Model):
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="variations")
    kind = models.CharField(max_length=16, choices=VariationKind.choices)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    prompt_delta = models.TextField(blank=True)
    negative_delta = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["character", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["character", "kind", "slug"], name="variation_unique_slug"),
            models.CheckConstraint(condition=Q(kind__in=VariationKind.values), name="variation_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.character} · {self.kind}: {self.name}"

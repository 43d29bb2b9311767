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
    consistency_threshold = models.FloatField(
        null=True, blank=True, help_text="face similarity a job must reach; empty: the project's threshold_similarity"
    )
    palette_gated = models.BooleanField(default=False, help_text="fail outputs whose colours stray from the palette")
    palette_threshold = models.FloatField(
        null=True, blank=True, help_text="largest mean ΔE (Lab) allowed; empty: the project's threshold_palette"
    )
    bible = models.JSONField(default=dict, blank=True, help_text="personality, backstory, voice, relationships")
    scenes = models.ManyToManyField(Scene, related_name="characters", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "slug"], name="character_unique_slug"),
            models.CheckConstraint(
                condition=Q(consistency_threshold__isnull=True)
                | Q(consistency_threshold__gte=0, consistency_threshold__lte=1),
                name="character_threshold_range",
            ),
            models.CheckConstraint(
                condition=Q(palette_threshold__isnull=True) | Q(palette_threshold__gte=0, palette_threshold__lte=100),
                name="character_palette_threshold_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class AttributeType(models.TextChoices):
    HAIR = "hair", "Hair"
    EYES = "eyes", "Eyes"
    SKIN = "skin", "Skin"
    FACE = "face", "Face"
    BODY = "body", "Body"
    OUTFIT = "outfit", "Outfit"
    ACCESSORY = "accessory", "Accessory"
    OTHER = "other", "Other"


class CharacterAttribute(models.Model):
    """One structured trait; its prompt tokens join the resolved prompt, highest priority first."""

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="attribute_set")
    type = models.CharField(max_length=16, choices=AttributeType.choices)
    value = models.CharField(max_length=200)
    prompt_tokens = models.CharField(max_length=500, blank=True, help_text="empty: the value itself")
    priority = models.PositiveSmallIntegerField(default=50, help_text="higher comes first in the prompt")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["character", "-priority", "type"]
        constraints = [
            models.UniqueConstraint(fields=["character", "type"], name="attribute_unique_type"),
            models.CheckConstraint(condition=Q(type__in=AttributeType.values), name="attribute_type_valid"),
            models.CheckConstraint(condition=Q(priority__lte=100), name="attribute_priority_range"),
        ]

    def __str__(self) -> str:
        return f"{self.character} · {self.type}: {self.value}"


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
    version = models.ForeignKey(
        "CharacterVersion",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="references",
        help_text="empty: a reference of the character itself",
    )
    is_primary = models.BooleanField(default=False)
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_primary", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["character"], condition=Q(is_primary=True, version__isnull=True), name="reference_one_primary"
            ),
            models.UniqueConstraint(
                fields=["version"],
                condition=Q(is_primary=True, version__isnull=False),
                name="reference_one_version_primary",
            ),
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


class AgeState(models.TextChoices):
    CHILD = "child", "Child"
    TEEN = "teen", "Teen"
    ADULT = "adult", "Adult"
    ELDER = "elder", "Elder"
    OTHER = "other", "Other"


class EmotionalState(models.TextChoices):
    NEUTRAL = "neutral", "Neutral"
    HAPPY = "happy", "Happy"
    SAD = "sad", "Sad"
    ANGRY = "angry", "Angry"
    AFRAID = "afraid", "Afraid"
    SURPRISED = "surprised", "Surprised"
    CALM = "calm", "Calm"
    DETERMINED = "determined", "Determined"
    OTHER = "other", "Other"


class CharacterVersion(models.Model):
    """An age or emotional state of a character: a prompt delta on top of the design prompt."""

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="versions")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80)
    prompt_delta = models.TextField(blank=True)
    negative_delta = models.TextField(blank=True)
    description = models.TextField(blank=True)
    age_state = models.CharField(max_length=8, choices=AgeState.choices, default=AgeState.ADULT)
    emotional_state = models.CharField(max_length=12, choices=EmotionalState.choices, default=EmotionalState.NEUTRAL)
    order = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["character", "order", "name"]
        constraints = [
            models.UniqueConstraint(fields=["character", "slug"], name="version_unique_slug"),
            models.CheckConstraint(condition=Q(age_state__in=AgeState.values), name="version_age_state_valid"),
            models.CheckConstraint(
                condition=Q(emotional_state__in=EmotionalState.values), name="version_emotional_state_valid"
            ),
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
    replaces = models.CharField(
        max_length=16, choices=AttributeType.choices, blank=True, help_text="the attribute type this variation replaces"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["character", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["character", "kind", "slug"], name="variation_unique_slug"),
            models.CheckConstraint(condition=Q(kind__in=VariationKind.values), name="variation_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.character} · {self.kind}: {self.name}"

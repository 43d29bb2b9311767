"""Review writes beyond approve/reject: promotion to references and regeneration with the refined prompt."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from characters.models import ReferenceImage
from characters.services import character_add_reference
from generation.models import Job, JobLogLine
from generation.services.jobs import JobError, job_log
from generation.services.resolve import ALLOWED_OVERRIDES
from generation.services.submit import InitImage, jobs_create
from tower.core.files import stored_name
from training.models import DatasetImage, ReviewStatus
from training.review.feedback import all_category_terms
from training.services import CurationError, dataset_images_approve

REGENERATION_LOG_KEY = "review_regeneration_of_image"
_INIT_NAME = re.compile(r"tower-(?P<sha>[0-9a-f]{24})\.(?P<ext>[a-z0-9]+)")


@transaction.atomic
def dataset_image_promote(*, image: DatasetImage, reviewer: User | None) -> ReferenceImage:
    """Make an approved (or pending: it is approved first) image a reference of its character.

    The reference is a copy checked by content (``character_add_reference``); the same image twice
    is refused with a message, and then nothing changes (the approval rolls back too).
    """
    image = DatasetImage.objects.select_related("character").get(pk=image.pk)
    if image.status == ReviewStatus.REJECTED:
        raise CurationError("a rejected image cannot become a reference; approve it first")
    if image.status == ReviewStatus.PENDING:
        dataset_images_approve(image_ids=[image.pk], reviewer=reviewer)
    try:
        with image.image.open("rb") as handle:
            reference = character_add_reference(
                character=image.character,
                upload=handle,
                original_name=f"dataset-{image.pk}.{stored_name(image.image).rsplit('.', 1)[-1]}",
                note=f"promoted from dataset image #{image.pk}",
            )
    except FileNotFoundError:
        raise CurationError(f"the file of dataset image #{image.pk} is missing from storage") from None
    except ValidationError as exc:
        messages = exc.message_dict.get("image") if hasattr(exc, "error_dict") else exc.messages
        text = "; ".join(messages or exc.messages)
        if "already a reference" in text:
            text = f"this image is already a reference of {image.character.name}"
        raise CurationError(text) from None
    return reference


def _depth(job: Job) -> int:
    """How many regenerations (parent links) lead from the original request to ``job``."""
    depth, seen, parent_id = 0, {job.pk}, job.parent_id
    while parent_id is not None and parent_id not in seen:
        seen.add(parent_id)
        depth += 1
        parent_id = Job.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return depth


def _tags(text: str) -> list[str]:
    """Comma-separated tags, keeping ``(a, b:1.2)`` groups whole."""
    tags: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        depth += (char in "([{<") - (char in ")]}>" and depth > 0)
        if char == "," and depth == 0:
            tags.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    tags.append("".join(current).strip())
    return [tag for tag in tags if tag]


def _request_negative(job: Job) -> str:
    """The part of the job's negative prompt that was the request's own text, as far as it can be told.

    Learned terms are removed (they are re-resolved: weights move, terms get edited away); the
    style's and the character's own negatives come back through resolution anyway, and
    ``join_prompt`` drops repeats.
    """
    learned = set()
    if job.character is not None and isinstance(job.character.learned_negatives, dict):
        learned = {str(t).strip().lower() for t in job.character.learned_negatives}
    learned |= {t.lower() for t in all_category_terms()}
    return ", ".join(tag for tag in _tags(job.negative_prompt or "") if tag.lower() not in learned)


def _init_image(job: Job) -> InitImage | None:
    inputs = (job.params or {}).get("inputs") or []
    name = (job.params or {}).get("init_image")
    if not inputs or not isinstance(name, str):
        return None
    match = _INIT_NAME.fullmatch(name)
    path = inputs[0].get("path") if isinstance(inputs[0], dict) else None
    if match is None or not path:
        raise CurationError(f"job {job.pk}'s init image cannot be found again")
    # jobs_create names the upload after the first 24 hex digits; the same name comes back.
    return InitImage(path=path, sha256=match["sha"], extension=match["ext"])


def regeneration_of(image: DatasetImage) -> Job | None:
    """The job a review regeneration of ``image`` queued, if any."""
    line = (
        JobLogLine.objects.filter(**{f"data__{REGENERATION_LOG_KEY}": image.pk})
        .select_related("job")
        .order_by("pk")
        .first()
    )
    return line.job if line else None


@transaction.atomic
def dataset_image_regenerate(*, image: DatasetImage, user: User | None) -> Job:
    """Queue the rejected image's job again, with the prompt resolved afresh (so the character's new
    learned negatives apply) and a new seed; the new job's ``parent`` is the origin job.

    Bounded: at most ``project.max_regenerations`` regenerations in a chain from the original
    request, and one per rejected image. The caller has checked that the user may edit the project.
    """
    image = DatasetImage.objects.select_related("character").get(pk=image.pk)
    if image.status != ReviewStatus.REJECTED:
        raise CurationError("only a rejected image is regenerated")
    if image.origin_job_id is None:
        raise CurationError("this image was not generated by Tower; there is no job to run again")
    job = (
        Job.objects.select_for_update(of=("self",))
        .select_related("project", "template", "character", "version", "variation", "scene")
        .get(pk=image.origin_job_id)
    )
    earlier = regeneration_of(image)
    if earlier is not None:
        raise CurationError(f"this image was already regenerated as job {earlier.pk}")
    if job.template is None:
        raise CurationError("the job's workflow template was deleted; it cannot be regenerated")
    limit = job.project.max_regenerations
    depth = _depth(job)
    if depth >= limit:
        raise CurationError(
            f"regeneration limit reached ({limit} for this project; job {job.pk} is already attempt {depth + 1})"
        )
    overrides = {k: v for k, v in (job.overrides or {}).items() if k in ALLOWED_OVERRIDES and k != "seed"}
    try:
        [child] = jobs_create(
            user=user,
            project=job.project,
            template=job.template,
            mode=job.mode,
            character=job.character,
            version=job.version,
            variation=job.variation,
            scene=job.scene,
            # The stored prompt already holds the design and scene; resolution drops the repeats.
            prompt=job.prompt,
            negative=_request_negative(job),
            overrides=overrides,
            init_image=_init_image(job),
            kind=job.kind,
            parent=job,
        )
    except JobError as exc:
        raise CurationError(f"cannot regenerate job {job.pk}: {exc}") from None
    categories = ", ".join(image.rejection_categories or [])
    reason = f"dataset image {image.pk} rejected ({categories}); prompt resolved again with the learned negatives"
    job_log(job_id=job.pk, message=f"regenerated as job {child.pk}: {reason}")
    job_log(job_id=child.pk, message=f"regeneration of job {job.pk}: {reason}", data={REGENERATION_LOG_KEY: image.pk})
    return child

"""Captions: one per dataset image (the ``.txt`` kohya reads next to it), the trigger word first.

- :func:`training_caption` (what the kohya folder writer calls) and :func:`caption_with_trigger` are
  pure: the stored caption with the character's trigger word put first, never twice.
- :func:`clean_tags` turns a generation prompt into training tags (weights, embeddings, LoRA tags
  and emphasis brackets stripped, duplicates dropped).
- Writes: :func:`dataset_image_caption_set` (by hand), :func:`captions_auto` (vision LLM or tags),
  :func:`captions_add_tag` (prepend / append to selected images) and :func:`captions_find_replace`
  (preview, then apply). Bulk writes return the changes, which :func:`captions_restore` undoes
  without clobbering a caption edited since.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from characters.models import Character
from training.llm.client import LLMClient, LLMError, LLMUnavailable
from training.models import CaptionSource, DatasetImage

MAX_CAPTION_CHARS = 2000
CAPTION_STYLES = ("tags", "sentence")
CAPTION_METHODS = ("llm", "tags")

# --- pure text ------------------------------------------------------------------------------

_ANGLE = re.compile(r"<[^<>]*>")  # <lora:name:0.8>, <lyco:…>, <hypernet:…>
_EMBEDDING = re.compile(r"\bembedding:[^\s,()\[\]{}]+", re.IGNORECASE)
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d+)?\s*(?=[)\]])")  # (word:1.2) → (word)
_BRACKETS = re.compile(r"[()\[\]{}]")
_SEPARATORS = re.compile(r",|\n|\bBREAK\b")
_ESCAPED_OPEN, _ESCAPED_CLOSE = "\x00", "\x01"


def clean_tags(text: str) -> str:
    """A prompt as training tags: ``(red hair:1.2), <lora:x:1>, embedding:bad, red hair`` → ``red hair``.

    Escaped parentheses (``hatsune miku \\(vocaloid\\)``) are part of a tag and kept. Idempotent.
    """
    text = text.replace("\\(", _ESCAPED_OPEN).replace("\\)", _ESCAPED_CLOSE)
    text = _ANGLE.sub(",", text)
    text = _EMBEDDING.sub(",", text)
    text = _WEIGHT.sub("", text)
    text = _BRACKETS.sub("", text)
    tags: list[str] = []
    seen: set[str] = set()
    for raw in _SEPARATORS.split(text):
        tag = " ".join(raw.split()).strip(" .:;|")
        tag = tag.replace(_ESCAPED_OPEN, "\\(").replace(_ESCAPED_CLOSE, "\\)")
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
    return ", ".join(tags)


def caption_with_trigger(caption: str, trigger_word: str) -> str:
    """``caption`` on one line with ``trigger_word`` as its first tag, present once. Idempotent."""
    text = " ".join(caption.split())
    trigger = " ".join(trigger_word.split())
    if not trigger:
        return text
    folded = trigger.casefold()
    if text.casefold().startswith(folded) and text[len(trigger) : len(trigger) + 1] in ("", " ", ",", ":"):
        text = text[len(trigger) :].lstrip(" ,:")
    rest = [part.strip() for part in text.split(",")]
    rest = [part for part in rest if part and part.casefold() != folded]
    return ", ".join([trigger, *rest])


def training_caption(image: DatasetImage) -> str:
    """The text of ``image``'s kohya ``.txt``: its caption with the character's trigger word first."""
    return caption_with_trigger(image.caption, image.character.trigger_word)


def _without_names(tags: str, names: Sequence[str]) -> str:
    """Drop tags that name the character (the trigger word stands for it)."""
    folded = [n.casefold() for n in names if n and n.strip()]
    kept = [t for t in (p.strip() for p in tags.split(",")) if t and not any(n in t.casefold() for n in folded)]
    return ", ".join(kept)


def _normalise(caption: str) -> str:
    caption = " ".join(caption.split())
    if len(caption) > MAX_CAPTION_CHARS:
        raise ValidationError({"caption": f"a caption is at most {MAX_CAPTION_CHARS} characters"})
    return caption


# --- sources of captions ----------------------------------------------------------------------


def caption_from_tags(image: DatasetImage) -> str:
    """Tags from the prompt that made the image (its Tower job's, or the one stored at ingestion)."""
    prompt = image.origin_job.prompt if image.origin_job_id and image.origin_job else image.caption
    return _without_names(clean_tags(prompt), [image.character.trigger_word])


def llm_caption_prompt(style: str) -> str:
    if style == "sentence":
        return (
            "Describe this image in one or two plain sentences for training an image model: the subject, "
            "clothing, pose, expression, background and framing. Do not name the character, the series or "
            "the artist. Answer with the description only."
        )
    return (
        "Describe this image as a comma-separated list of 10 to 25 lowercase booru-style tags for training "
        "an image model (for example: 1girl, red hair, school uniform, smiling, outdoors, upper body). Cover "
        "the subject, clothing, pose, expression, background and framing. Do not name the character, the "
        "series or the artist. Answer with the tags only."
    )


def caption_from_llm(image: DatasetImage, *, client: LLMClient, style: str = "tags") -> str:
    """A caption by the vision LLM, the character's name and trigger word removed if it said them anyway."""
    with image.image.open("rb") as handle:
        data = handle.read()
    answer = client.ask_image(llm_caption_prompt(style), data, max_tokens=200).content
    text = re.sub(r"```[a-zA-Z]*", "", answer).strip().strip("\"'")
    text = re.sub(r"^(tags|caption|description)\s*:\s*", "", text, flags=re.IGNORECASE)
    character = image.character
    if style == "sentence":
        text = " ".join(text.split())
        for name in (character.name, character.trigger_word):
            if name:
                text = re.sub(re.escape(name), "the character", text, flags=re.IGNORECASE)
    else:
        text = _without_names(clean_tags(text), [character.name, character.trigger_word])
    if not text:
        raise LLMError("the LLM answered with an empty caption")
    return text[:MAX_CAPTION_CHARS]


# --- writes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionChange:
    image_id: int
    before: str
    after: str
    before_source: str

    def as_list(self) -> list[object]:
        return [self.image_id, self.before, self.after, self.before_source]

    @classmethod
    def from_list(cls, row: Sequence[object]) -> CaptionChange:
        image_id, before, after, source = row
        return cls(int(image_id), str(before), str(after), str(source))  # type: ignore[call-overload]  # a stored row: the id is an int


def dataset_image_caption_set(*, image: DatasetImage, caption: str) -> DatasetImage:
    """A caption typed by hand (one line; at most ``MAX_CAPTION_CHARS``)."""
    image.caption = _normalise(caption)
    image.caption_source = CaptionSource.MANUAL if image.caption else CaptionSource.NONE
    image.save(update_fields=["caption", "caption_source"])
    return image


def _images(
    character: Character, image_ids: Iterable[int] | None, statuses: Sequence[str] | None
) -> QuerySet[DatasetImage]:
    images = DatasetImage.objects.filter(character=character).order_by("pk")
    if image_ids is not None:
        images = images.filter(pk__in=list(image_ids))
    if statuses:
        images = images.filter(status__in=list(statuses))
    return images


@transaction.atomic
def _apply(changes: list[CaptionChange], source: str) -> None:
    for change in changes:
        DatasetImage.objects.filter(pk=change.image_id).update(caption=change.after, caption_source=source)


def captions_add_tag(
    *, character: Character, image_ids: Iterable[int], tag: str, position: str = "prepend"
) -> list[CaptionChange]:
    """Put ``tag`` at the start (``prepend``) or end (``append``) of the selected captions that lack it."""
    tag = " ".join(tag.split()).strip(" ,")
    if not tag:
        raise ValidationError({"tag": "type the tag to add"})
    if "," in tag:
        raise ValidationError({"tag": "one tag at a time (no commas)"})
    if position not in ("prepend", "append"):
        raise ValidationError({"position": "prepend or append"})
    changes = []
    for image in _images(character, image_ids, None).only("pk", "caption", "caption_source"):
        tags = [t.strip() for t in image.caption.split(",") if t.strip()]
        if any(t.casefold() == tag.casefold() for t in tags):
            continue
        tags = [tag, *tags] if position == "prepend" else [*tags, tag]
        changes.append(CaptionChange(image.pk, image.caption, _normalise(", ".join(tags)), image.caption_source))
    _apply(changes, CaptionSource.MANUAL)
    return changes


@dataclass
class FindReplace:
    images: int  # captions that contain the text
    occurrences: int
    changes: list[CaptionChange] = field(default_factory=list)  # empty for a preview


def captions_find_replace(
    *,
    character: Character,
    find: str,
    replace: str,
    case_sensitive: bool = False,
    statuses: Sequence[str] | None = None,
    apply: bool = False,
) -> FindReplace:
    """Plain-text find and replace across the character's captions; ``apply=False`` only counts."""
    if not find:
        raise ValidationError({"find": "type the text to find"})
    if find == replace:
        raise ValidationError({"replace": "the replacement is the same text"})
    pattern = re.compile(re.escape(find), 0 if case_sensitive else re.IGNORECASE)
    result = FindReplace(images=0, occurrences=0)
    pending = []
    for image in _images(character, None, statuses).only("pk", "caption", "caption_source"):
        after, count = pattern.subn(lambda _m: replace, image.caption)
        if not count:
            continue
        result.images += 1
        result.occurrences += count
        after = ", ".join(p.strip() for p in " ".join(after.split()).split(",") if p.strip())
        pending.append(CaptionChange(image.pk, image.caption, _normalise(after), image.caption_source))
    if apply:
        _apply(pending, CaptionSource.MANUAL)
        result.changes = pending
    return result


@transaction.atomic
def captions_restore(*, character: Character, changes: Iterable[CaptionChange]) -> tuple[int, int]:
    """Undo bulk changes: each caption goes back unless it was edited since. Returns (restored, skipped)."""
    restored = skipped = 0
    for change in changes:
        done = DatasetImage.objects.filter(pk=change.image_id, character=character, caption=change.after).update(
            caption=change.before, caption_source=change.before_source
        )
        restored += done
        skipped += 1 - done
    return restored, skipped


@dataclass
class AutoCaptionReport:
    total: int = 0
    captioned: int = 0
    skipped: int = 0  # already had a caption and overwrite was off, or hand-edited
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "captioned": self.captioned,
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": list(self.errors),
        }


Progress = Callable[[AutoCaptionReport], None]


def captions_auto(
    *,
    character: Character,
    method: str = "llm",
    style: str = "tags",
    statuses: Sequence[str] | None = ("approved",),
    overwrite: bool = False,
    progress: Progress | None = None,
) -> AutoCaptionReport:
    """Caption the character's images (by status) with the vision LLM or from tags.

    Without ``overwrite`` only images with no caption, or with the raw prompt stored at ingestion
    (``caption_source`` empty), are captioned; hand-edited captions are never replaced. The LLM is
    not asked again once it is unreachable: the rest count as failed with that reason. ``progress``
    is called after each image.
    """
    if method not in CAPTION_METHODS:
        raise ValidationError({"method": f"one of {', '.join(CAPTION_METHODS)}"})
    if style not in CAPTION_STYLES:
        raise ValidationError({"style": f"one of {', '.join(CAPTION_STYLES)}"})
    client = LLMClient.from_settings() if method == "llm" else None
    if method == "llm" and client is None:
        raise ValidationError({"method": "no vision LLM is configured (TOWER_LLM_BASE_URL); caption from tags"})
    images = list(_images(character, None, statuses).select_related("character", "origin_job"))
    report = AutoCaptionReport(total=len(images))
    down = ""
    try:
        for image in images:
            down = _caption_one(image, method, style, overwrite, client, report, down) or down
            if progress is not None:
                progress(report)
    finally:
        if client is not None:
            client.close()
    return report


def _caption_one(
    image: DatasetImage,
    method: str,
    style: str,
    overwrite: bool,
    client: LLMClient | None,
    report: AutoCaptionReport,
    down: str,
) -> str:
    """Caption one image into ``report``; returns why the LLM is down when it just found out."""
    if image.caption and (
        image.caption_source == CaptionSource.MANUAL or (not overwrite and image.caption_source != CaptionSource.NONE)
    ):
        report.skipped += 1
        return ""
    if down:
        report.failed += 1
        return ""
    try:
        if method == "llm":
            assert client is not None
            caption, source = caption_from_llm(image, client=client, style=style), CaptionSource.LLM
        else:
            caption, source = caption_from_tags(image), CaptionSource.TAGS
    except LLMUnavailable as exc:
        report.failed += 1
        report.errors.append(f"LLM unavailable: {exc}")
        return report.errors[-1]
    except (LLMError, OSError) as exc:
        report.failed += 1
        if len(report.errors) < 10:
            report.errors.append(f"image #{image.pk}: {exc}")
        return ""
    if not caption:
        report.skipped += 1
        return ""
    # Only if nobody edited it meanwhile (the page stays usable while the task runs).
    updated = DatasetImage.objects.filter(pk=image.pk, caption=image.caption).update(
        caption=caption[:MAX_CAPTION_CHARS], caption_source=source
    )
    if updated:
        report.captioned += 1
    else:
        report.skipped += 1
    return ""

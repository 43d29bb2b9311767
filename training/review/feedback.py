"""Feedback into prompts: what a rejection teaches the character's negative prompt.

Each rejection category stands for negative-prompt terms. A rejected image adds 1 to the weight of
each of its terms in ``Character.learned_negatives`` (term → weight), so a weight counts how many
currently rejected images asked for it; generation's resolve appends the heaviest terms to every
prompt for that character. Withdrawing a rejection (undo, back to pending, approve) subtracts
exactly what it added; a term whose weight reaches 0 is dropped.

"duplicate" and "other" teach nothing: a duplicate is not a visual defect, and the note of "other"
is free text meant for a person, not a prompt. "wrong character" teaches the *other* character's
trigger word when the classifier named one (so the prompt steers away from it).

The terms are the negative-prompt vocabulary checkpoints are trained on (booru tags and the common
SD negatives), never the category's label: "off-model colours" or "wrong outfit" in a negative
prompt means nothing to a model. Category → terms:

=====================  =========================================================================
wrong character        the other character's trigger word (when the classifier named one)
off-model colours      bad colors, inconsistent colors, color bleeding, oversaturated
bad anatomy or hands   bad anatomy, bad hands, extra fingers, missing fingers
wrong outfit           mismatched clothing, inconsistent clothing, extra accessories
low quality or blurry  low quality, worst quality, blurry, out of focus
artifacts              jpeg artifacts, compression artifacts, glitch, distorted
style mismatch         anime projects: 3d, realistic, photorealistic, western cartoon;
                       photoreal projects: anime, cartoon, illustration, 3d render, painting
duplicate, other       nothing
=====================  =========================================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from django.db import transaction

from characters.models import Character
from projects.models import ArtKind
from training.models import DatasetImage, RejectionCategory

CATEGORY_TERMS: dict[str, tuple[str, ...]] = {
    RejectionCategory.WRONG_CHARACTER: (),  # the other character's trigger word, see terms_for_image
    RejectionCategory.OFF_MODEL_COLOURS: ("bad colors", "inconsistent colors", "color bleeding", "oversaturated"),
    RejectionCategory.BAD_ANATOMY: ("bad anatomy", "bad hands", "extra fingers", "missing fingers"),
    RejectionCategory.WRONG_OUTFIT: ("mismatched clothing", "inconsistent clothing", "extra accessories"),
    RejectionCategory.LOW_QUALITY: ("low quality", "worst quality", "blurry", "out of focus"),
    RejectionCategory.ARTIFACTS: ("jpeg artifacts", "compression artifacts", "glitch", "distorted"),
    RejectionCategory.DUPLICATE: (),
    RejectionCategory.STYLE_MISMATCH: ("3d", "realistic", "photorealistic", "western cartoon"),
    RejectionCategory.OTHER: (),
}
# A photoreal project's style mismatch is the opposite drift: towards drawn styles.
PHOTOREAL_TERMS: dict[str, tuple[str, ...]] = {
    RejectionCategory.STYLE_MISMATCH: ("anime", "cartoon", "illustration", "3d render", "painting"),
}


def category_terms(category: str, *, art_kind: str = ArtKind.ANIME) -> tuple[str, ...]:
    """The negative terms one rejection in ``category`` teaches a character of an ``art_kind`` project."""
    if art_kind == ArtKind.PHOTOREAL and category in PHOTOREAL_TERMS:
        return PHOTOREAL_TERMS[category]
    return CATEGORY_TERMS.get(category, ())


# Taught before the terms above replaced them (migration 0006 rewrote learned negatives); jobs
# made back then still carry them in their negative prompt.
RETIRED_TERMS = (
    "wrong hair colour",
    "wrong eye colour",
    "off-model colours",
    "wrong outfit",
    "wrong clothes",
    "artifacts",
)


def all_category_terms() -> set[str]:
    """Every term any category teaches or taught (to tell learned terms from a person's own text)."""
    return {t for terms in (*CATEGORY_TERMS.values(), *PHOTOREAL_TERMS.values(), RETIRED_TERMS) for t in terms}


MAX_TERM_LENGTH = 80


def terms_for(
    categories: Iterable[str], *, other_character: Character | None = None, character: Character | None = None
) -> Counter[str]:
    """The terms (with their weight) one rejection with ``categories`` adds to ``character``."""
    added: Counter[str] = Counter()
    art_kind = character.project.art_kind if character is not None else ArtKind.ANIME
    for category in sorted(set(categories)):
        for term in category_terms(category, art_kind=art_kind):
            added[term] = 1
        if (
            category == RejectionCategory.WRONG_CHARACTER
            and other_character is not None
            and (character is None or other_character.pk != character.pk)
            and other_character.trigger_word.strip()
        ):
            added[other_character.trigger_word.strip()] = 1
    return added


def terms_for_image(image: DatasetImage, categories: Iterable[str] | None = None) -> Counter[str]:
    """What rejecting ``image`` (with its stored categories, unless given) teaches its character."""
    return terms_for(
        image.rejection_categories if categories is None else categories,
        other_character=image.classified_character,
        character=image.character,
    )


def _apply(character_id: int, delta: Mapping[str, int], sign: int) -> dict[str, int | float]:
    """Add (sign=+1) or remove (-1) ``delta`` under the character's row lock; returns the new mapping."""
    if not delta:
        return {}
    locked = Character.objects.select_for_update().get(pk=character_id)
    learned = dict(locked.learned_negatives) if isinstance(locked.learned_negatives, dict) else {}
    for term, weight in delta.items():
        current = learned.get(term, 0)
        if not isinstance(current, int | float) or isinstance(current, bool):
            current = 0
        value = current + sign * weight
        if value > 0:
            learned[term] = int(value) if float(value).is_integer() else value
        else:
            learned.pop(term, None)
    locked.learned_negatives = learned
    locked.save(update_fields=["learned_negatives", "updated_at"])
    return learned


@transaction.atomic
def learned_negatives_add(*, character_id: int, terms: Mapping[str, int]) -> dict[str, int | float]:
    return _apply(character_id, terms, +1)


@transaction.atomic
def learned_negatives_remove(*, character_id: int, terms: Mapping[str, int]) -> dict[str, int | float]:
    """Remove exactly ``terms``' weights (never below zero; a term at zero is dropped)."""
    return _apply(character_id, terms, -1)


class LearnedNegativesError(ValueError):
    """The edited terms are not a valid term → weight list."""


def parse_learned_negatives(text: str) -> dict[str, int | float]:
    """Parse the character page's editor: one ``term: weight`` per line (weight optional, default 1).

    A weight of 0 removes the term. Raises :class:`LearnedNegativesError` naming the bad line.
    """
    parsed: dict[str, int | float] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        term, sep, raw_weight = line.rpartition(":")
        if not sep:
            term, raw_weight = line, "1"
        term = " ".join(term.split())
        if not term:
            raise LearnedNegativesError(f"line {n}: a term is missing before the colon")
        if "," in term:
            raise LearnedNegativesError(f"line {n}: one term per line (no commas): {term!r}")
        if len(term) > MAX_TERM_LENGTH:
            raise LearnedNegativesError(f"line {n}: a term is at most {MAX_TERM_LENGTH} characters")
        try:
            weight = float(raw_weight.strip())
        except ValueError:
            raise LearnedNegativesError(f"line {n}: the weight must be a number, not {raw_weight.strip()!r}") from None
        if weight < 0 or weight != weight or weight > 1_000_000:
            raise LearnedNegativesError(f"line {n}: the weight must be between 0 and 1000000")
        if weight > 0:
            parsed[term] = int(weight) if weight.is_integer() else weight
    return parsed


def format_learned_negatives(learned: object) -> str:
    """The editor's text: heaviest first, one ``term: weight`` per line."""
    if not isinstance(learned, dict):
        return ""
    rows = [(t, w) for t, w in learned.items() if isinstance(w, int | float) and not isinstance(w, bool)]
    rows.sort(key=lambda row: (-row[1], row[0]))
    return "\n".join(f"{term}: {weight:g}" for term, weight in rows)

"""The character's part of a prompt: its design prompt and its structured attributes.

A character's :class:`~characters.models.CharacterAttribute` rows join the prompt after the design
prompt, highest priority first, each as its ``prompt_tokens`` (or else its ``value``).

A variation that ``replaces`` an attribute type is worn instead of that attribute, not beside it:
the attribute is left out, and so are its tags where the design prompt repeats them. An outfit
variation saved without ``replaces`` replaces the outfit (as it always did). Which design-prompt
tags are the replaced attribute's:

- the tags of the character's attribute of that type (its tokens and its value) when it has one —
  the explicit answer;
- otherwise, for the outfit only, every design-prompt tag naming a garment (``black tactical
  vest``, ``school uniform``…); any other type without an attribute leaves the design prompt whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from characters.models import AttributeType, Character, CharacterAttribute, Variation, VariationKind

GARMENTS = frozenset(
    {
        "apron",
        "armor",
        "armour",
        "blazer",
        "blouse",
        "bodysuit",
        "boots",
        "cape",
        "cardigan",
        "cloak",
        "clothes",
        "coat",
        "costume",
        "dress",
        "gown",
        "hakama",
        "hoodie",
        "jacket",
        "jeans",
        "jumpsuit",
        "kimono",
        "leggings",
        "outfit",
        "overalls",
        "pants",
        "parka",
        "robe",
        "robes",
        "shirt",
        "shorts",
        "skirt",
        "sneakers",
        "socks",
        "suit",
        "sweater",
        "swimsuit",
        "t-shirt",
        "thighhighs",
        "trousers",
        "tunic",
        "uniform",
        "vest",
        "yukata",
    }
)
_WEIGHT = re.compile(r"^[(\[{]+(.*?)(?::[\d.]+)?[)\]}]+$")


def split_tags(text: str) -> list[str]:
    """Split on commas outside brackets, so ``(red hair, blue eyes:1.2)`` stays one tag."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text or "":
        if char in "([{<":
            depth += 1
        elif char in ")]}>" and depth:
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _bare(tag: str) -> str:
    """A tag without emphasis brackets or weight, lower case, single spaces: for comparing."""
    tag = re.sub(r"\s+", " ", tag).strip()
    match = _WEIGHT.match(tag)
    return (match.group(1) if match else tag).strip().lower()


def replaced_type(variation: Variation | None) -> str:
    """The attribute type ``variation`` is worn instead of ("" for none)."""
    if variation is None:
        return ""
    if variation.replaces:
        return variation.replaces
    # Outfit variations made before ``replaces`` existed keep replacing the outfit.
    return AttributeType.OUTFIT if variation.kind == VariationKind.OUTFIT else ""


def attribute_tokens(attribute: CharacterAttribute) -> str:
    return attribute.prompt_tokens.strip() or attribute.value.strip()


def character_attributes(character: Character) -> list[CharacterAttribute]:
    """The character's attributes in prompt order: highest priority first, then by type."""
    return sorted(character.attribute_set.all(), key=lambda a: (-a.priority, a.type))


def is_outfit_tag(tag: str, *, outfit: str = "") -> bool:
    """Whether ``tag`` describes the outfit: one of ``outfit``'s tags, or (without one) a garment."""
    bare = _bare(tag)
    if outfit:
        return bare in {_bare(t) for t in split_tags(outfit)}
    return any(word in GARMENTS for word in re.findall(r"[a-z][a-z-]*", bare))


def design_prompt_for(
    *,
    character: Character,
    variation: Variation | None = None,
    attributes: Sequence[CharacterAttribute] | None = None,
) -> str:
    """The design prompt as a job uses it: without the attribute the variation replaces.

    ``attributes`` saves the query when the caller already holds :func:`character_attributes`."""
    replaced = replaced_type(variation)
    if not replaced:
        return character.design_prompt
    rows = character_attributes(character) if attributes is None else attributes
    attribute = next((a for a in rows if a.type == replaced), None)
    if attribute is not None:
        own = {_bare(t) for text in (attribute.prompt_tokens, attribute.value) for t in split_tags(text)}
        kept = [tag for tag in split_tags(character.design_prompt) if _bare(tag) not in own]
    elif replaced == AttributeType.OUTFIT:
        kept = [tag for tag in split_tags(character.design_prompt) if not is_outfit_tag(tag)]
    else:
        return character.design_prompt
    return ", ".join(kept)


def attribute_prompt_for(
    *,
    character: Character,
    variation: Variation | None = None,
    attributes: Sequence[CharacterAttribute] | None = None,
) -> list[str]:
    """The attributes' prompt pieces in priority order, less the one the variation replaces."""
    replaced = replaced_type(variation)
    rows = character_attributes(character) if attributes is None else attributes
    return [attribute_tokens(a) for a in rows if a.type != replaced and attribute_tokens(a)]

"""The character's part of a prompt (Django-free apart from the model types).

An outfit variation replaces the base outfit rather than adding a second one: the design prompt's
outfit tags are left out when a variation of kind ``outfit`` is chosen. Which tags are the outfit:

- the tags of the character's ``outfit`` attribute (also ``clothes``, ``clothing``, ``costume``,
  ``attire``) when it has one — the explicit answer;
- otherwise every design-prompt tag naming a garment (``black tactical vest``, ``school uniform``…).
"""

from __future__ import annotations

import re

from characters.models import Character, Variation, VariationKind

OUTFIT_ATTRIBUTES = ("outfit", "clothes", "clothing", "costume", "attire")
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
    parts, depth, current = [], 0, []
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


def _outfit_attribute(character: Character) -> str:
    attributes = character.attributes if isinstance(character.attributes, dict) else {}
    for key, value in attributes.items():
        if str(key).strip().lower() in OUTFIT_ATTRIBUTES and isinstance(value, str) and value.strip():
            return value
    return ""


def is_outfit_tag(tag: str, *, outfit: str = "") -> bool:
    """Whether ``tag`` describes the outfit: one of ``outfit``'s tags, or (without one) a garment."""
    bare = _bare(tag)
    if outfit:
        return bare in {_bare(t) for t in split_tags(outfit)}
    return any(word in GARMENTS for word in re.findall(r"[a-z][a-z-]*", bare))


def design_prompt_for(*, character: Character, variation: Variation | None = None) -> str:
    """The design prompt as a job uses it: without the base outfit when an outfit variation replaces it."""
    if variation is None or variation.kind != VariationKind.OUTFIT:
        return character.design_prompt
    outfit = _outfit_attribute(character)
    kept = [tag for tag in split_tags(character.design_prompt) if not is_outfit_tag(tag, outfit=outfit)]
    return ", ".join(kept)

"""The two example projects a fresh studio can start from (``manage.py seed_demo``, the dashboard).

Each gets its style, story bible and one character with structured attributes and a version (an
age and emotional state), whose reference portraits are drawn by ``characters.demo_art`` and added
through ``character_add_reference``, exactly as an upload is.

This lives in ``characters`` because it writes projects and characters and nothing above them
(characters may import projects, not the reverse); ``tower`` only wires it to a command and a button.

Seeding is idempotent per owner: an example project the owner already has (found by its slug,
``cyberpunk-goblin-slayer`` or ``cyberpunk-goblin-slayer-2``…, or by its name) is kept untouched,
whatever was edited or deleted in it since.
"""

from __future__ import annotations

import copy
import io
import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q

from characters.demo_art import Figure, draw_figure
from characters.models import Character
from characters.services import character_add_reference, character_create, version_create
from projects.models import ArtKind, Project
from projects.services import project_create, style_update
from tower.core.files import stored_name


@dataclass(frozen=True)
class DemoVersion:
    name: str
    age_state: str
    emotional_state: str
    prompt_delta: str
    description: str = ""


@dataclass(frozen=True)
class DemoCharacter:
    name: str
    design_prompt: str
    negative_prompt: str
    trigger_word: str
    # Structured attributes (type, value, prompt_tokens, priority): their tokens repeat the design
    # prompt's own tags, so the resolved prompt says them once, and a variation that replaces one
    # (an outfit) takes those tags out of the design as well.
    attributes: tuple[dict[str, Any], ...]
    bible: dict[str, Any]
    figure: Figure
    versions: tuple[DemoVersion, ...] = ()


@dataclass(frozen=True)
class DemoProject:
    name: str
    slug: str  # the slug it gets on a studio where it is free
    description: str
    art_kind: str
    story_bible: dict[str, Any]
    style: dict[str, Any]
    character: DemoCharacter


@dataclass
class DemoOutcome:
    project: Project
    created: bool
    characters: list[Character] = field(default_factory=list)
    references: int = 0

    def describe(self) -> str:
        if not self.created:
            return f"Kept “{self.project.name}” ({self.project.slug}): it already exists, left as it is."
        names = ", ".join(c.name for c in self.characters)
        return (
            f"Created “{self.project.name}” ({self.project.slug}): style, story bible, "
            f"character {names} with {self.references} reference image{'s' if self.references != 1 else ''}."
        )


CYBERPUNK = DemoProject(
    name="Cyberpunk Goblin Slayer",
    slug="cyberpunk-goblin-slayer",
    description="Anime. A rain-soaked neon city, a lone hunter, and the goblins in its undercity.",
    art_kind=ArtKind.ANIME,
    story_bible={
        "premise": (
            "In a megacity that never sees the sun, goblins have learned to hack. Kai Nakamura, a former "
            "corporate security operative with one cybernetic eye, hunts the goblin crews that raid the "
            "undercity's data vaults, and no one pays him enough for it."
        ),
        "tone": "gritty, kinetic, dry humour between bursts of violence; neon against darkness",
        "world": (
            "Neo-Kabukicho, 2089: stacked arcologies above, flooded service tunnels below. Rain every night. "
            "Goblins are small, clever and organised, wearing scavenged tech; corporations pretend they do not exist."
        ),
        "themes": ["what is left of a person after the upgrades", "debts owed to the dead", "the city as a monster"],
        "episode_outline": [
            "1. Rain Check: a goblin raid on a noodle stand's server leads Kai to the tunnels.",
            "2. Vault Nine: Kai guards a data vault the goblins want and learns who hired them.",
            "3. Ghost Signal: his cybernetic eye starts showing him goblin traffic no one else sees.",
            "4. Undercity: Kai goes below the waterline to end the raids at their source.",
        ],
        "notes": "Keep the palette to black, electric blue, cyan and magenta; rain in every exterior shot.",
    },
    style={
        "checkpoint": "counterfeit_v3.safetensors",
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "production_steps": 28,
        "production_cfg": 7.5,
        # Draft: the fewer steps and lower CFG a quick look needs (DESIGN: draft/production presets).
        "draft_steps": 14,
        "draft_cfg": 6.5,
        "width": 768,
        "height": 768,
        "style_prompt": "cyberpunk aesthetic, neon lighting, rain effects",
    },
    character=DemoCharacter(
        name="Kai Nakamura",
        design_prompt=(
            "young man, dark black hair with electric neon blue streaks, left eye bright blue natural human eye, "
            "right eye cyan cybernetic eye with pink magenta technological glow, sharp angular face, cybernetic "
            "circuit patterns, black tactical military vest with glowing blue circuit patterns"
        ),
        negative_prompt="female, feminine features, cartoon, chibi, child",
        trigger_word="kaiNkm",
        attributes=(
            {
                "type": "hair",
                "value": "dark black with electric neon blue streaks",
                "prompt_tokens": "dark black hair with electric neon blue streaks",
                "priority": 90,
            },
            {
                "type": "eyes",
                "value": "left: bright blue, natural; right: cyan cybernetic with a pink magenta glow",
                "prompt_tokens": (
                    "left eye bright blue natural human eye, "
                    "right eye cyan cybernetic eye with pink magenta technological glow"
                ),
                "priority": 85,
            },
            {
                "type": "face",
                "value": "sharp, angular, cybernetic circuit patterns",
                "prompt_tokens": "sharp angular face, cybernetic circuit patterns",
                "priority": 70,
            },
            {
                "type": "outfit",
                "value": "black tactical military vest with glowing blue circuit patterns",
                "priority": 50,
            },
        ),
        versions=(
            DemoVersion(
                name="Before the eye",
                age_state="teen",
                emotional_state="determined",
                prompt_delta="teenage boy, 17 years old, both eyes bright blue natural human eyes",
                description="the cadet he was before the corporate job that cost him his right eye",
            ),
        ),
        bible={
            "personality": "quiet, precise, stubborn; jokes only when things are at their worst",
            "backstory": "lost his right eye on a corporate job that went wrong; the replacement sees too much",
            "voice": "low and flat, short sentences",
            "relationships": "owes a favour to every fixer in the district and trusts none of them",
        },
        figure=Figure(
            skin="#e9c6a8",
            hair="#0b0b10",
            hair_style="spiky",
            hair_streaks="#00b8ff",
            eye_left="#2f7bff",
            eye_right="#12f4ff",
            eye_right_glow="#ff2bd6",
            outfit="#121418",
            shirt="#24282e",
            circuits="#1e9bff",
            angular=True,
            scene="neon-rain",
        ),
    ),
)

TOKYO = DemoProject(
    name="Tokyo Debt Desire",
    slug="tokyo-debt-desire",
    description="Photoreal drama. Debts, favours and the people who collect them in present-day Tokyo.",
    art_kind=ArtKind.PHOTOREAL,
    story_bible={
        "premise": (
            "Reiko Tanaka collects debts for a small Shinjuku loan office. When a client she has been chasing "
            "for months disappears and leaves his ledger with her, she has to decide whose debts are real."
        ),
        "tone": "quiet, tense, humane; long silences, city noise, small kindnesses",
        "world": (
            "Present-day Tokyo: narrow alleys behind Shinjuku's main streets, late-night trains, "
            "fluorescent-lit offices, rented rooms above shuttered shops."
        ),
        "themes": ["obligation", "dignity", "what people owe each other"],
        "episode_outline": [
            "1. Interest: Reiko's rounds on a rainy Monday, and the client who is not home.",
            "2. The Ledger: a notebook of names, some of them people she knows.",
            "3. Last Train: Reiko follows the ledger to a man who has been paying someone else's debt.",
        ],
        "notes": "Natural light and practical lamps; muted colours; no glamour.",
    },
    style={
        "checkpoint": "realisticVision_v51.safetensors",
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "production_steps": 25,
        "production_cfg": 7.0,
        "draft_steps": 12,
        "draft_cfg": 6.0,
        "width": 512,
        "height": 768,
        "negative_prompt": "worst quality, low quality, blurry",
    },
    character=DemoCharacter(
        name="Reiko Tanaka",
        design_prompt=(
            "woman in her mid-thirties, debt collector, shoulder-length straight black hair with a side fringe, "
            "tired dark brown eyes, thin silver-rimmed glasses, charcoal grey business suit over a white collared "
            "shirt, worn leather briefcase, calm serious expression"
        ),
        negative_prompt="child, teenager, cartoon, anime, 3d render",
        trigger_word="reikoTn",
        attributes=(
            {
                "type": "hair",
                "value": "shoulder-length, straight, black, side fringe",
                "prompt_tokens": "shoulder-length straight black hair with a side fringe",
                "priority": 90,
            },
            {"type": "eyes", "value": "dark brown, tired", "prompt_tokens": "tired dark brown eyes", "priority": 80},
            {
                "type": "accessory",
                "value": "thin silver-rimmed glasses, worn leather briefcase",
                "priority": 60,
            },
            {
                "type": "outfit",
                "value": "charcoal grey business suit, white collared shirt",
                "prompt_tokens": "charcoal grey business suit over a white collared shirt",
                "priority": 50,
            },
        ),
        versions=(
            DemoVersion(
                name="Last train",
                age_state="adult",
                emotional_state="sad",
                prompt_delta="exhausted, rain-soaked hair, looking down",
                description="episode 3: the night she follows the ledger to its end",
            ),
        ),
        bible={
            "personality": "patient, observant, firm; keeps her own small notebook of who was kind to her",
            "backstory": "took the job to pay off her father's loans and stayed after they were paid",
            "voice": "polite, formal, never raised",
            "relationships": "a younger colleague she is training; a landlady who feeds her on Sundays",
        },
        figure=Figure(
            skin="#dcb89c",
            hair="#1d1612",
            hair_style="bob",
            eye_left="#4a2e1c",
            eye_right="#4a2e1c",
            outfit="#3b3e44",
            shirt="#f1f0ec",
            glasses="#c4c8cc",
            lapels=True,
            scene="alley-dusk",
        ),
    ),
)

DEMO_PROJECTS: tuple[DemoProject, ...] = (CYBERPUNK, TOKYO)


def demo_project_of(*, owner: User, demo: DemoProject) -> Project | None:
    """The owner's copy of an example project, if there is one (by slug, or by name if re-slugged)."""
    same_slug = rf"^{re.escape(demo.slug)}(-[0-9]+)?$"
    mine = Project.objects.filter(owner=owner)
    return mine.filter(Q(slug__regex=same_slug) | Q(name=demo.name)).order_by("pk").first()


def demo_projects_seed(*, owner: User) -> list[DemoOutcome]:
    """Create the example projects the owner does not have yet; keep the ones they have."""
    outcomes = []
    for demo in DEMO_PROJECTS:
        # Drawn before the transaction, which on SQLite holds the database's write lock.
        images = None if demo_project_of(owner=owner, demo=demo) else _draw(demo.character)
        stored: list[tuple[Any, str]] = []
        try:
            with transaction.atomic():
                # One seeding at a time per owner (a double-clicked button): the second waits, then keeps.
                get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
                existing = demo_project_of(owner=owner, demo=demo)
                if existing is not None:
                    outcomes.append(DemoOutcome(project=existing, created=False))
                    continue
                images = images or _draw(demo.character)  # deleted since the first look: rare
                outcomes.append(_create(owner=owner, demo=demo, images=images, stored=stored))
        except BaseException:
            # The rows rolled back; the reference files written meanwhile must not outlive them.
            for storage, name in stored:
                storage.delete(name)
            raise
    return outcomes


def _draw(spec: DemoCharacter) -> list[tuple[str, bytes, str]]:
    """The character's reference images: (file name shown, PNG bytes, note)."""
    slug = re.sub(r"[^a-z0-9]+", "-", spec.name.lower()).strip("-")
    return [
        (f"{slug}-portrait.png", draw_figure(spec.figure), "example portrait drawn by Tower; replace with real art"),
        (f"{slug}-scene.png", draw_figure(spec.figure, scene=True), "example portrait in its setting"),
    ]


def _create(
    *,
    owner: User,
    demo: DemoProject,
    images: list[tuple[str, bytes, str]],
    stored: list[tuple[Any, str]],
) -> DemoOutcome:
    project = project_create(
        owner=owner,
        name=demo.name,
        description=demo.description,
        art_kind=demo.art_kind,
        # Copies: the rows' JSON must not share (and let a caller mutate) these module constants.
        story_bible=copy.deepcopy(demo.story_bible),
    )
    style_update(project=project, **demo.style)
    spec = demo.character
    character = character_create(
        project=project,
        name=spec.name,
        design_prompt=spec.design_prompt,
        negative_prompt=spec.negative_prompt,
        trigger_word=spec.trigger_word,
        attributes=[dict(row) for row in spec.attributes],
        bible=copy.deepcopy(spec.bible),
    )
    for order, version in enumerate(spec.versions):
        version_create(
            character=character,
            name=version.name,
            age_state=version.age_state,
            emotional_state=version.emotional_state,
            prompt_delta=version.prompt_delta,
            description=version.description,
            order=order,
        )
    for original_name, data, note in images:
        reference = character_add_reference(
            character=character, upload=io.BytesIO(data), original_name=original_name, note=note
        )
        stored.append((reference.image.storage, stored_name(reference.image)))
    return DemoOutcome(project=project, created=True, characters=[character], references=len(images))

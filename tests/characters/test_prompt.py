"""An outfit variation replaces the base outfit in the resolved prompt; other variations add to it."""

from __future__ import annotations

import pytest

from characters.models import AttributeType, CharacterAttribute, VariationKind
from characters.prompt import design_prompt_for, split_tags
from characters.services import attribute_create, variation_create
from generation.services.resolve import resolve_job_parameters
from tests.factories import CharacterFactory, VariationFactory, make_project

pytestmark = pytest.mark.django_db

KAI = (
    "young man, dark black hair with electric neon blue streaks, sharp angular face, "
    "cybernetic circuit patterns, black tactical military vest with glowing blue circuit patterns"
)


@pytest.fixture
def kai(owner):
    return CharacterFactory(project=make_project(owner, name="Goblin"), design_prompt=KAI, attributes={})


def test_an_outfit_variation_replaces_the_garments_of_the_design(kai):
    swimsuit = VariationFactory(character=kai, kind=VariationKind.OUTFIT, prompt_delta="red swimsuit, sandals")
    resolved = resolve_job_parameters(project=kai.project, mode="draft", character=kai, variation=swimsuit)

    tags = split_tags(resolved.prompt)
    assert "red swimsuit" in tags and "cybernetic circuit patterns" in tags and "young man" in tags
    assert not any("vest" in tag for tag in tags)


def test_the_outfit_attribute_says_exactly_what_the_outfit_is(kai):
    kai.design_prompt = "young man, (long red scarf:1.2), black tactical military vest, combat boots"
    kai.save()
    CharacterAttribute.objects.create(
        character=kai, type=AttributeType.OUTFIT, value="long red scarf, black tactical military vest"
    )
    coat = VariationFactory(character=kai, kind=VariationKind.OUTFIT, prompt_delta="white lab coat")

    assert design_prompt_for(character=kai, variation=coat) == "young man, combat boots"
    resolved = resolve_job_parameters(project=kai.project, mode="draft", character=kai, variation=coat)
    assert "white lab coat" in resolved.prompt and "scarf" not in resolved.prompt and "vest" not in resolved.prompt


@pytest.mark.parametrize("kind", [VariationKind.EXPRESSION, VariationKind.POSE])
def test_other_variations_add_to_the_design(kai, kind):
    variation = VariationFactory(character=kai, kind=kind, prompt_delta="smiling")
    resolved = resolve_job_parameters(project=kai.project, mode="draft", character=kai, variation=variation)
    assert "black tactical military vest with glowing blue circuit patterns" in resolved.prompt
    assert "smiling" in resolved.prompt
    assert design_prompt_for(character=kai) == KAI


def test_the_character_page_says_what_an_outfit_variation_does(owner, kai):
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(owner)
    page = client.get(reverse("character-detail", args=[kai.pk])).content.decode()
    assert (
        "An outfit replaces the design&#x27;s own outfit" in page
        or "An outfit replaces the design's own outfit" in page
    )


def test_a_variation_replacing_an_attribute_drops_its_tokens_and_adds_its_own(kai):
    attribute_create(character=kai, type="hair", value="black", prompt_tokens="dark black hair", priority=90)
    attribute_create(character=kai, type="eyes", value="blue", prompt_tokens="glowing cyan eyes", priority=10)
    wig = variation_create(character=kai, kind="pose", name="Wig", prompt_delta="long pink wig", replaces="hair")

    tags = split_tags(resolve_job_parameters(project=kai.project, mode="draft", character=kai, variation=wig).prompt)
    assert "dark black hair" not in tags and "long pink wig" in tags
    assert "glowing cyan eyes" in tags and "black tactical military vest with glowing blue circuit patterns" in tags
    # Without the variation the hair is there, before the eyes (priority 90 over 10).
    plain = split_tags(resolve_job_parameters(project=kai.project, mode="draft", character=kai).prompt)
    assert plain.index("dark black hair") < plain.index("glowing cyan eyes")


def test_an_outfit_variation_drops_the_outfit_attribute_and_its_design_tags(kai):
    attribute_create(
        character=kai,
        type="outfit",
        value="vest",
        prompt_tokens="black tactical military vest with glowing blue circuit patterns",
    )
    attribute_create(character=kai, type="accessory", value="red scarf")
    coat = variation_create(character=kai, kind="outfit", name="Coat", prompt_delta="white lab coat")
    assert coat.replaces == "outfit"  # the default for an outfit variation

    tags = split_tags(resolve_job_parameters(project=kai.project, mode="draft", character=kai, variation=coat).prompt)
    assert "white lab coat" in tags and "red scarf" in tags
    assert not any("vest" in tag for tag in tags)


def test_an_outfit_variation_can_replace_nothing(kai):
    attribute_create(character=kai, type="outfit", value="black tactical military vest")
    layer = variation_create(character=kai, kind="outfit", name="Cape", prompt_delta="long cape", replaces="")
    prompt = resolve_job_parameters(project=kai.project, mode="draft", character=kai, variation=layer).prompt
    assert "long cape" in prompt and "black tactical military vest" in prompt

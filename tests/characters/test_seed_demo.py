"""The example projects: ``manage.py seed_demo`` and the empty dashboard's button."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from PIL import Image

from characters.models import Character, ReferenceImage
from projects.models import ArtKind, Project
from projects.services import project_update, style_update, validate_story_bible
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BUTTON = b"Create the example projects"


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, int, int]:
    return Project.objects.count(), Character.objects.count(), ReferenceImage.objects.count()


@pytest.fixture
def admin(db):
    return UserFactory(username="admin", is_superuser=True, is_staff=True)


def test_seed_demo_creates_both_projects_with_the_designed_styles(admin):
    out = seed()

    cyber = Project.objects.get(slug="cyberpunk-goblin-slayer")
    tokyo = Project.objects.get(slug="tokyo-debt-desire")
    assert (cyber.name, cyber.owner, cyber.art_kind) == ("Cyberpunk Goblin Slayer", admin, ArtKind.ANIME)
    assert (tokyo.name, tokyo.owner, tokyo.art_kind) == ("Tokyo Debt Desire", admin, ArtKind.PHOTOREAL)
    s = cyber.style
    assert (s.checkpoint, s.sampler, s.scheduler) == ("counterfeit_v3.safetensors", "dpmpp_2m", "karras")
    assert (s.production_steps, s.production_cfg, s.width, s.height) == (28, 7.5, 768, 768)
    assert s.style_prompt == "cyberpunk aesthetic, neon lighting, rain effects"
    s = tokyo.style
    assert (s.checkpoint, s.sampler, s.scheduler) == ("realisticVision_v51.safetensors", "dpmpp_2m", "karras")
    assert (s.production_steps, s.production_cfg, s.width, s.height) == (25, 7.0, 512, 768)
    assert s.negative_prompt == "worst quality, low quality, blurry"
    for project in (cyber, tokyo):
        # Draft is the quick look: fewer steps and a lower CFG than production.
        assert project.style.draft_steps < project.style.production_steps
        assert project.style.draft_cfg < project.style.production_cfg
        bible = validate_story_bible(project.story_bible)
        assert all(bible[key].strip() for key in ("premise", "tone", "world"))
        assert len(bible["episode_outline"]) >= 3
    assert "Created “Cyberpunk Goblin Slayer” (cyberpunk-goblin-slayer)" in out
    assert "character Kai Nakamura with 2 reference images" in out
    assert "Created “Tokyo Debt Desire” (tokyo-debt-desire)" in out
    assert "Owner: admin." in out


def test_the_characters_are_as_designed_with_drawn_references(admin):
    seed()

    kai = Character.objects.get(project__slug="cyberpunk-goblin-slayer")
    reiko = Character.objects.get(project__slug="tokyo-debt-desire")
    assert (kai.name, kai.slug) == ("Kai Nakamura", "kai-nakamura")
    assert kai.design_prompt == (
        "young man, dark black hair with electric neon blue streaks, left eye bright blue natural human eye, "
        "right eye cyan cybernetic eye with pink magenta technological glow, sharp angular face, cybernetic "
        "circuit patterns, black tactical military vest with glowing blue circuit patterns"
    )
    assert kai.negative_prompt == "female, feminine features, cartoon, chibi, child"
    assert "mid-thirties" in reiko.design_prompt and "suit" in reiko.design_prompt
    hashes = set()
    for character in (kai, reiko):
        references = list(character.references.all())
        assert len(references) == 2
        assert [r.is_primary for r in references] == [True, False]
        for reference in references:
            with Image.open(reference.image.path) as image:
                assert (image.format, image.size) == ("PNG", (512, 512))
                assert (reference.width, reference.height) == image.size
            hashes.add(reference.sha256)
    assert len(hashes) == 4  # each character drawn differently, portrait and scene
    # The references went in as uploads do: the first one filled the empty palette, in each one's colours.
    assert kai.palette and reiko.palette and kai.palette != reiko.palette


def test_running_it_again_creates_nothing_and_keeps_what_a_person_edited(admin):
    seed()
    before = counts()
    cyber = Project.objects.get(slug="cyberpunk-goblin-slayer")
    project_update(project=cyber, name="Goblin Slayer 2089", story_bible={"premise": "rewritten"})
    style_update(project=cyber, production_steps=40)
    Character.objects.filter(slug="kai-nakamura").update(design_prompt="my own Kai")
    ReferenceImage.objects.filter(character__project__slug="tokyo-debt-desire", is_primary=False).delete()

    out = seed()

    assert counts() == (before[0], before[1], before[2] - 1)
    cyber.refresh_from_db()
    assert (cyber.name, cyber.story_bible, cyber.style.production_steps) == (
        "Goblin Slayer 2089",
        {"premise": "rewritten"},
        40,
    )
    assert Character.objects.get(slug="kai-nakamura").design_prompt == "my own Kai"
    assert "Kept “Goblin Slayer 2089” (cyberpunk-goblin-slayer)" in out
    assert "Kept “Tokyo Debt Desire” (tokyo-debt-desire)" in out
    assert "Created" not in out


def test_another_owner_gets_their_own_copies(admin):
    seed()
    UserFactory(username="yuki")

    out = seed("--owner", "yuki")

    mine = Project.objects.filter(owner__username="yuki").order_by("name")
    assert [(p.name, p.slug) for p in mine] == [
        ("Cyberpunk Goblin Slayer", "cyberpunk-goblin-slayer-2"),
        ("Tokyo Debt Desire", "tokyo-debt-desire-2"),
    ]
    assert "Owner: yuki." in out
    assert "Kept" in seed("--owner", "yuki") and Project.objects.count() == 4


def test_without_a_superuser_it_says_how_to_get_one(db):
    UserFactory(username="plain")

    with pytest.raises(CommandError, match=r"no superuser.*ensure_admin.*--owner USERNAME"):
        seed()

    assert not Project.objects.exists()


def test_an_unknown_owner_is_refused(admin):
    with pytest.raises(CommandError, match="no user 'ghost'"):
        seed("--owner", "ghost")

    assert not Project.objects.exists()


# --- the dashboard's button -----------------------------------------------------------------------


@pytest.fixture
def newcomer(db):
    return UserFactory(username="newcomer")


def test_a_user_without_projects_creates_the_examples_from_the_dashboard(newcomer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(newcomer)
    page = client.get(reverse("dashboard"))
    assert BUTTON in page.content
    token = page.cookies["csrftoken"].value

    response = client.post(reverse("project-examples"), {"csrfmiddlewaretoken": token}, follow=True)

    assert response.redirect_chain == [(reverse("dashboard"), 302)]
    assert set(Project.objects.filter(owner=newcomer).values_list("name", flat=True)) == {
        "Cyberpunk Goblin Slayer",
        "Tokyo Debt Desire",
    }
    html = response.content.decode()
    assert "Created the example projects: Cyberpunk Goblin Slayer, Tokyo Debt Desire." in html
    assert BUTTON not in response.content  # they have projects now
    assert ReferenceImage.objects.filter(character__project__owner=newcomer).count() == 4


def test_the_button_is_hidden_from_a_user_who_sees_any_project(project, viewer):
    client = Client()
    client.force_login(viewer)  # a viewer of someone else's project, owning nothing

    page = client.get(reverse("dashboard"))

    assert page.status_code == 200
    assert BUTTON not in page.content


def test_a_post_without_the_csrf_token_is_refused(newcomer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(newcomer)

    assert client.post(reverse("project-examples")).status_code == 403
    assert not Project.objects.exists()


def test_anonymous_users_cannot_create_them(client):
    response = client.post(reverse("project-examples"))

    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert not Project.objects.exists()


def test_a_get_changes_nothing(newcomer):
    client = Client()
    client.force_login(newcomer)

    assert client.get(reverse("project-examples")).status_code == 405
    assert not Project.objects.exists()


def test_an_outsider_gets_only_their_own_copies(project, owner, outsider):
    client = Client()
    client.force_login(outsider)

    client.post(reverse("project-examples"))
    client.post(reverse("project-examples"))  # a second click keeps them

    theirs = Project.objects.filter(owner=outsider)
    assert theirs.count() == 2
    assert not theirs.filter(memberships__isnull=False).exists()
    assert list(Project.objects.filter(owner=owner)) == [project]
    owner_client = Client()
    owner_client.force_login(owner)
    assert b"Cyberpunk Goblin Slayer" not in owner_client.get(reverse("dashboard")).content


def test_the_demo_characters_have_structured_attributes_and_a_version(admin):
    from characters.prompt import split_tags
    from generation.services.resolve import resolve_job_parameters

    seed()
    kai = Character.objects.get(project__slug="cyberpunk-goblin-slayer")
    reiko = Character.objects.get(project__slug="tokyo-debt-desire")
    assert list(kai.attribute_set.order_by("-priority").values_list("type", "priority")) == [
        ("hair", 90),
        ("eyes", 85),
        ("face", 70),
        ("outfit", 50),
    ]
    assert {"hair", "eyes", "accessory", "outfit"} == set(reiko.attribute_set.values_list("type", flat=True))
    young = kai.versions.get()
    assert (young.name, young.age_state, young.emotional_state) == ("Before the eye", "teen", "determined")
    assert reiko.versions.get().emotional_state == "sad"

    # The attributes repeat the design's own tags: the resolved prompt says each once.
    tags = split_tags(resolve_job_parameters(project=kai.project, mode="draft", character=kai).prompt)
    assert len(tags) == len({t.lower() for t in tags})
    assert tags.count("black tactical military vest with glowing blue circuit patterns") == 1

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from projects.models import GenerationStyle, Membership
from projects.selectors import project_get_for_user, project_role, projects_visible_to
from projects.services import (
    ProjectError,
    project_create,
    project_member_remove,
    project_member_set,
    project_update,
    style_update,
)
from tests.factories import make_project


@pytest.mark.django_db
def test_visibility_owner_member_outsider(project, owner, member, viewer, outsider):
    other = make_project(outsider, "Outsider's own")
    assert set(projects_visible_to(owner)) == {project}
    assert set(projects_visible_to(member)) == {project}
    assert set(projects_visible_to(outsider)) == {other}
    with pytest.raises(Http404):
        project_get_for_user(user=outsider, pk=project.pk)
    with pytest.raises(Http404):
        project_get_for_user(user=owner, pk="not-a-number")
    assert project_get_for_user(user=member, pk=project.pk, write=True) == project
    with pytest.raises(PermissionDenied):
        project_get_for_user(user=viewer, pk=project.pk, write=True)
    assert [project_role(project=project, user=u) for u in (owner, member, viewer, outsider)] == [
        "owner",
        "editor",
        "viewer",
        None,
    ]


@pytest.mark.django_db
def test_inactive_users_see_nothing(project, member):
    member.is_active = False
    member.save()
    assert not projects_visible_to(member).exists()


@pytest.mark.django_db
def test_project_slug_is_generated_and_unique(owner):
    a = project_create(owner=owner, name="Skyline Academy!")
    b = project_create(owner=owner, name="Skyline Academy")
    assert (a.slug, b.slug) == ("skyline-academy", "skyline-academy-2")


@pytest.mark.django_db
def test_story_bible_shape_is_checked(owner):
    project = make_project(owner)
    with pytest.raises(ValidationError):
        project_update(project=project, story_bible={"episode_outline": "not a list"})
    with pytest.raises(ValidationError):
        project_update(project=project, story_bible=["not", "an", "object"])
    project_update(project=project, story_bible={"premise": "A tower of dreams", "episode_outline": ["Pilot"]})
    project.refresh_from_db()
    assert project.story_bible["episode_outline"] == ["Pilot"]
    with pytest.raises(ProjectError, match="unknown project fields: owner"):
        project_update(project=project, owner=None)


@pytest.mark.django_db
def test_style_update_validates_and_keeps_other_fields(owner):
    project = make_project(owner)
    style_update(project=project, checkpoint="anime/aniverse_v5.safetensors", draft_steps=12)
    style = GenerationStyle.objects.get(project=project)
    assert (style.checkpoint, style.draft_steps, style.production_steps) == ("anime/aniverse_v5.safetensors", 12, 25)
    for bad in (
        {"width": 770},
        {"draft_cfg": 99},
        {"loras": [{"name": ""}]},
        {"loras": [{"name": "a", "strength": "x"}]},
    ):
        with pytest.raises(ValidationError):
            style_update(project=project, **bad)
    style.refresh_from_db()
    assert style.width == 768
    assert style.loras == []


@pytest.mark.django_db
def test_membership_management(project, owner, outsider):
    project_member_set(project=project, username=outsider.username, role="viewer")
    assert Membership.objects.get(project=project, user=outsider).role == "viewer"
    project_member_set(project=project, username=outsider.username, role="editor")
    assert Membership.objects.get(project=project, user=outsider).role == "editor"
    with pytest.raises(ValidationError):
        project_member_set(project=project, username=owner.username)
    with pytest.raises(ValidationError):
        project_member_set(project=project, username="nobody")
    with pytest.raises(ValidationError):
        project_member_set(project=project, username=outsider.username, role="god")
    project_member_remove(project=project, user_id=outsider.pk)
    with pytest.raises(ProjectError):
        project_member_remove(project=project, user_id=outsider.pk)


@pytest.mark.django_db(transaction=True)
def test_deleting_a_project_removes_every_file_it_stored(owner, settings):
    import io
    from pathlib import Path

    from django.core.files.base import ContentFile

    from characters.services import character_add_reference, character_create
    from generation.models import Asset
    from projects.services import project_delete
    from tests.factories import png_bytes

    project, keep = make_project(owner, "Doomed"), make_project(owner, "Kept")
    paths = []
    for target in (project, keep):
        character = character_create(project=target, name="Kai", design_prompt="x")
        ref = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(target.pk, 0, 0))))
        asset = Asset(project=target, mime="image/png", sha256="c" * 64)
        asset.file.save("out.png", ContentFile(b"png"), save=True)
        paths.append((Path(ref.image.path), Path(asset.file.path)))
    project_delete(project=project)
    assert not any(p.exists() for p in paths[0])
    assert all(p.exists() for p in paths[1])

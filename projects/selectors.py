"""Reads for projects, and the one access rule every view, API and consumer goes through."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from projects.models import Episode, MemberRole, Membership, Project, Scene

AnyUser = AbstractBaseUser | AnonymousUser


def projects_visible_to(user: AnyUser) -> QuerySet[Project]:
    """Projects the user owns or belongs to; nothing for anonymous or inactive users."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    return Project.objects.filter(Q(owner=user) | Q(memberships__user=user)).distinct().select_related("owner", "style")


def project_ids_visible_to(user: AnyUser) -> QuerySet:
    """A subquery of visible project ids, for filtering other apps' rows without joins fan-out."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none().values("pk")
    return Project.objects.filter(Q(owner=user) | Q(memberships__user=user)).values("pk")


def in_visible_project(user: AnyUser, field: str = "project") -> Exists:
    """A filter for rows whose ``field`` is a project ``user`` may see, for lists read newest
    first: as a correlated EXISTS, SQLite walks the list's date index and stops at a page, where
    ``IN (project ids)`` made it read every visible row through the project index and sort them."""
    return Exists(project_ids_visible_to(user).filter(pk=OuterRef(field)))


def project_ids_writable_by(user: AnyUser) -> QuerySet:
    """Ids of projects the user may change (owned, or joined as an editor), for bulk writes."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none().values("pk")
    return Project.objects.filter(
        Q(owner=user) | Q(memberships__user=user, memberships__role=MemberRole.EDITOR)
    ).values("pk")


def project_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> Project:
    """The project, or 404 when the user may not see it (or may not change it, with ``write``)."""
    try:
        project = projects_visible_to(user).get(pk=pk)
    except (Project.DoesNotExist, ValueError, TypeError):
        raise Http404("No such project") from None
    if write and not project_user_can_write(project=project, user=user):
        # A viewer knows the project exists, so this is a permission error, not a 404.
        raise PermissionDenied("You have read-only access to this project")
    return project


def project_role(*, project: Project, user: AnyUser) -> str | None:
    """'owner', 'editor', 'viewer' or None."""
    if not isinstance(user, User):  # anonymous
        return None
    if project.owner_id == user.pk:
        return "owner"
    membership = Membership.objects.filter(project=project, user=user).only("role").first()
    return membership.role if membership else None


def project_user_can_write(*, project: Project, user: AnyUser) -> bool:
    return project_role(project=project, user=user) in {"owner", MemberRole.EDITOR}


def episodes_visible_to(user: AnyUser) -> QuerySet[Episode]:
    return Episode.objects.filter(project__in=project_ids_visible_to(user)).select_related("project")


def scenes_visible_to(user: AnyUser) -> QuerySet[Scene]:
    return Scene.objects.filter(episode__project__in=project_ids_visible_to(user)).select_related(
        "episode", "episode__project"
    )


def project_get_for_owner(*, user: AnyUser, pk: int | str) -> Project:
    """The project, or 404 when invisible, or 403 when the user sees it but does not own it."""
    project = project_get_for_user(user=user, pk=pk)
    if project.owner_id != user.pk:
        raise PermissionDenied("Only the project's owner can do this")
    return project


def episode_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> Episode:
    try:
        episode = episodes_visible_to(user).get(pk=pk)
    except (Episode.DoesNotExist, ValueError, TypeError):
        raise Http404("No such episode") from None
    if write and not project_user_can_write(project=episode.project, user=user):
        raise PermissionDenied("You have read-only access to this project")
    return episode


def scene_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> Scene:
    try:
        scene = scenes_visible_to(user).get(pk=pk)
    except (Scene.DoesNotExist, ValueError, TypeError):
        raise Http404("No such scene") from None
    if write and not project_user_can_write(project=scene.episode.project, user=user):
        raise PermissionDenied("You have read-only access to this project")
    return scene


def memberships_of(project: Project) -> QuerySet[Membership]:
    memberships = Membership.objects.filter(project=project).select_related("user")
    return memberships.order_by("user__username")

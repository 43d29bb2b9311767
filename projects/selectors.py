"""Reads for projects, and the one access rule every view, API and consumer goes through."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.core.exceptions import PermissionDenied
from django.http import Http404

from projects.models import Episode, MemberRole, Membership, Project, Scene

AnyUser = AbstractBaseUser | AnonymousUser


def projects_visible_to(user: AnyUser) -> QuerySet[Project]:
    """Projects the user owns or belongs to; nothing for anonymous or inactive users."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    return (
        Project.objects.filter(Q(owner=user) | Q(memberships__user=user))
        .distinct()
        .select_related("owner", "style")
    )


def project_ids_visible_to(user: AnyUser) -> QuerySet:
    """A subquery of visible project ids, for filtering other apps' rows without joins fan-out."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none().values("pk")
    return Project.objects.filter(Q(owner=user) | Q(memberships__user=user)).values("pk")


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
    if not user.is_authenticated:
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

"""The personas every endpoint test meets: an owner, a member (editor), a viewer, an outsider."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from projects.models import Project
from tests.factories import UserFactory, make_project

OWNER, MEMBER, VIEWER, OUTSIDER = "owner", "member", "viewer", "outsider"


def persona(username: str) -> User:
    """The user called ``username`` (created once; the same row on a second call)."""
    user: User = UserFactory(username=username)
    return user


def team_project(owner: User, *, member: User | None = None, viewer: User | None = None, **fields: Any) -> Project:
    """A project of ``owner`` with ``member`` as an editor and ``viewer`` as a viewer."""
    from projects.services import project_member_set

    project = make_project(owner, **fields)
    if member is not None:
        project_member_set(project=project, username=member.username, role="editor")
    if viewer is not None:
        project_member_set(project=project, username=viewer.username, role="viewer")
    return project


def api_client_for(user: User | None) -> APIClient:
    """An API client authenticated as ``user`` (anonymous for None)."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user=user)
    return client

"""GET /media/<path>: stored files, served only to people who may see what owns them.

The first folder of a media path says who owns the file (see the models' ``upload_to``):
``assets/<project>/``, ``loras/<project>/``, ``inputs/<project>/`` (input images: uploads, a
segment's first and last frames), ``references/<character>/``,
``datasets/<character>/``, ``previews/job-<id>.*``, ``thumbs/`` (an asset's thumbnail) and
``soundtracks/`` (an episode's). Anything else, anything outside MEDIA_ROOT, and anything the user
may not see is a 404, the same answer as a missing file.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from characters.selectors import characters_visible_to
from generation.selectors import assets_visible_to, jobs_visible_to
from projects.selectors import episodes_visible_to, projects_visible_to

_PREVIEW = re.compile(r"job-(\d+)\.(jpg|jpeg|png|webp)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _may_see(user: User, parts: tuple[str, ...], name: str) -> bool:
    if user.is_superuser:
        return True
    folder = parts[0]
    if folder in {"assets", "loras", "inputs"} and len(parts) >= 3 and parts[1].isdigit():
        return projects_visible_to(user).filter(pk=int(parts[1])).exists()
    if folder in {"references", "datasets"} and len(parts) >= 3 and parts[1].isdigit():
        return characters_visible_to(user).filter(pk=int(parts[1])).exists()
    if folder == "previews" and len(parts) == 2 and (m := _PREVIEW.fullmatch(parts[1])):
        return jobs_visible_to(user).filter(pk=int(m.group(1))).exists()
    if folder == "thumbs":
        return assets_visible_to(user).filter(thumbnail=name).exists()
    if folder == "soundtracks":
        return episodes_visible_to(user).filter(soundtrack=name).exists()
    return False


def _user(request: HttpRequest) -> User | None:
    """The session user, or the owner of a valid API token (scripts download outputs too)."""
    if isinstance(request.user, User):  # signed in
        return request.user
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.request import Request

    from tower.auth import ApiTokenAuthentication

    try:
        found = ApiTokenAuthentication().authenticate(Request(request))
    except AuthenticationFailed:
        return None
    return found[0] if found else None


@require_GET
def media_view(request: HttpRequest, path: str) -> HttpResponseBase:
    user = _user(request)
    if user is None:
        return redirect_to_login(request.get_full_path())
    relative = PurePosixPath(path)
    # A NUL (or other control character) is never part of a stored name; the filesystem calls
    # would raise ValueError on it.
    if relative.is_absolute() or ".." in relative.parts or not relative.parts or _CONTROL.search(path):
        raise Http404("No such file")
    root = Path(settings.MEDIA_ROOT).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise Http404("No such file")
    if not _may_see(user, relative.parts, str(relative)):
        raise Http404("No such file")
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    response = FileResponse(target.open("rb"), content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"
    return response

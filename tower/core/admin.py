"""Admin helpers every app's console uses: thumbnails, JSON, links, read-only admins."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db import models
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object

THUMB_PX = 96
PREVIEW_PX = 384


# --- Display helpers ---------------------------------------------------------------------------


def thumbnail(file: FieldFile | None, *, alt: str = "", size: int = THUMB_PX) -> str:
    """An ``<img>`` of a stored image at most ``size`` pixels on its longer side, or a dash."""
    if not file or not file.name:
        return "—"
    try:
        url = file.url
    except ValueError:
        return "—"
    return thumbnail_url(url, alt=alt, size=size)


def thumbnail_url(url: str, *, alt: str = "", size: int = THUMB_PX) -> str:
    """An ``<img>`` of ``url`` (a thumbnail view or file) at most ``size`` pixels on its longer side."""
    return format_html(
        '<img loading="lazy" src="{}" alt="{}" class="tower-thumb" '
        'style="max-width:{}px;max-height:{}px;width:auto;height:auto;object-fit:contain">',
        url,
        alt,
        size,
        size,
    )


def pretty_json(value: Any) -> str:
    """JSON indented in a scrollable ``<pre>``; escaped like any other text."""
    if value in (None, {}, []):
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="max-height:24em;overflow:auto;margin:0">{}</pre>', text)


def admin_link(model: type[models.Model], pk: Any, label: Any | None = None) -> str:
    """A link to a row's change page built from its id alone (no query for the related row)."""
    if pk is None:
        return "—"
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else f"#{pk}")


class ReadOnlyInline(admin.TabularInline):
    """An inline that only shows rows (logs, embeddings, outputs): no add, change or delete."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdminMixin(_AdminBase):
    """Rows written only by machines (scores, gates, logs): viewable and deletable, never edited."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

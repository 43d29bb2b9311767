"""Bounds shared by every entry point, so a page form and the API refuse the same input."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models

# The longest free text (a description, a prompt, a synopsis) Tower accepts in one field, through the
# API and the page forms alike. Model TextFields have no bound of their own.
TEXT_MAX_LENGTH = 20_000


def bounded_formfield(model_field: models.Field, **kwargs: Any) -> forms.Field | None:
    """A ModelForm's ``Meta.formfield_callback``: a model TextField takes at most TEXT_MAX_LENGTH characters."""
    if isinstance(model_field, models.TextField):
        kwargs.setdefault("max_length", TEXT_MAX_LENGTH)
    return model_field.formfield(**kwargs)

"""Typed access to a form's fields where a view narrows them per request."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet


def model_choice(form: forms.BaseForm, name: str) -> forms.ModelChoiceField[Any]:
    """``form.fields[name]``, a model choice whose queryset the form sets for its user."""
    field = form.fields[name]
    if not isinstance(field, forms.ModelChoiceField):
        raise TypeError(f"{type(form).__name__}.{name} is a {type(field).__name__}, not a ModelChoiceField")
    return field


def choice(form: forms.BaseForm, name: str) -> forms.ChoiceField:
    """``form.fields[name]``, a choice whose choices the form sets at run time."""
    field = form.fields[name]
    if not isinstance(field, forms.ChoiceField):
        raise TypeError(f"{type(form).__name__}.{name} is a {type(field).__name__}, not a ChoiceField")
    return field


def choice_queryset(form: forms.BaseForm, name: str) -> QuerySet[Any]:
    """The rows ``form.fields[name]`` offers (set by the form for its user)."""
    queryset = model_choice(form, name).queryset
    if queryset is None:
        raise TypeError(f"{type(form).__name__}.{name} has no queryset yet")
    return queryset

"""Shared REST plumbing: pagination, the router, the error mapping and the token auth scheme."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions, permissions, routers, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from tower.core.errors import DomainError
from tower.core.limits import TEXT_MAX_LENGTH


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class Router(routers.DefaultRouter):
    """DefaultRouter whose routes answer with and without the trailing slash (no redirects)."""

    include_format_suffixes = False

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


# The range of a database integer (SQLite and PostgreSQL bigint). A larger number in a foreign-key
# lookup overflows in the database driver (a 500), so filters refuse it first.
MAX_INT = 2**63 - 1


class IntFilter(filters.NumberFilter):
    """A whole number a database integer can hold; anything else is a 400 naming the parameter.

    Use it for ids (``project``, ``job``…): numbers, not model choices, so an invisible row looks
    exactly like a missing one.
    """

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", -MAX_INT - 1)
        kwargs.setdefault("max_value", MAX_INT)
        super().__init__(*args, **kwargs)


class FilterSet(filters.FilterSet):
    """The base of every API filter set: integer and foreign-key fields filter through IntFilter."""

    FILTER_DEFAULTS = {
        **filters.FilterSet.FILTER_DEFAULTS,
        **{
            field: {"filter_class": IntFilter}
            for field in (
                models.ForeignKey,
                models.OneToOneField,
                models.AutoField,
                models.BigAutoField,
                models.SmallAutoField,
                models.IntegerField,
                models.BigIntegerField,
                models.SmallIntegerField,
                models.PositiveIntegerField,
                models.PositiveBigIntegerField,
                models.PositiveSmallIntegerField,
            )
        },
    }


class FilterBackend(filters.DjangoFilterBackend):
    """DjangoFilterBackend whose generated filter sets (``filterset_fields``) use :class:`FilterSet`."""

    filterset_base = FilterSet


# The base of the API's model serializers: a model TextField accepts at most TEXT_MAX_LENGTH
# characters (DRF gives it no bound; the page forms share the bound, a body's size is bounded by
# DATA_UPLOAD_MAX_MEMORY_SIZE). A comment, not a docstring: the schema would show it for
# every serializer without a docstring of its own.
class ModelSerializer(serializers.ModelSerializer):
    def build_standard_field(self, field_name: str, model_field: models.Field) -> tuple[type, dict[str, Any]]:
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        if isinstance(model_field, models.TextField) and not kwargs.get("read_only"):
            kwargs.setdefault("max_length", TEXT_MAX_LENGTH)
        return field_class, kwargs


# One value of a row: (output name, column, the field's to_representation).
RowPlan = tuple[tuple[str, str, Callable[[Any], Any]], ...]


@cache
def row_plan(serializer_class: type[serializers.Serializer[Any]]) -> RowPlan:
    """How a :class:`RowListSerializer` writes a row of ``serializer_class``: its readable fields,
    each reading the column named by its source (``backend.name`` as ``backend__name``).

    Built once a process: building a model serializer's fields was 13 % of a job page's CPU.
    The fields' ``to_representation`` keep no state between calls (the time zone is read per call).
    """
    plan = []
    for name, field in serializer_class().fields.items():
        if field.write_only:
            continue
        if not field.source or field.source == "*" or isinstance(field, serializers.SerializerMethodField):
            raise ImproperlyConfigured(f"{name}: a row serializer reads columns, not the object")
        plan.append((name, field.source.replace(".", "__"), field.to_representation))
    return tuple(plan)


def row_columns(serializer_class: type[serializers.Serializer[Any]]) -> list[str]:
    """The ``QuerySet.values()`` columns a list of ``serializer_class`` rows reads."""
    return [column for _, column, _ in row_plan(serializer_class)]


class RowListSerializer(serializers.ListSerializer):
    """A list of rows read with ``QuerySet.values(*row_columns(child class))``, not model instances.

    Each value goes through its own field's ``to_representation``, as DRF's serializer does, so the
    JSON is the same; what a page no longer pays is a model instance per row and DRF's attribute
    lookup per value (see bench/README.md, API throughput). Rows only: a model instance has no
    column named like a dotted source.
    """

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        rows = list(data)
        if not isinstance(self.child, serializers.Serializer) or not all(isinstance(row, dict) for row in rows):
            raise TypeError("RowListSerializer serialises QuerySet.values() rows of a Serializer")
        plan = row_plan(type(self.child))
        return [
            {name: None if (value := row[column]) is None else convert(value) for name, column, convert in plan}
            for row in rows
        ]


def _field_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    """Django's ``{field: [messages]}`` with ``__all__`` renamed to DRF's non-field key."""
    if not hasattr(exc, "error_dict"):
        return {api_settings.NON_FIELD_ERRORS_KEY: list(exc.messages)}
    return {
        (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): list(messages)
        for field, messages in exc.message_dict.items()
    }


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: model/service ``ValidationError`` and domain errors become 400s."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_field_errors(exc))
    elif isinstance(exc, DomainError):
        exc = exceptions.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]})
    return drf_exception_handler(exc, context)


def parse_id(value: Any) -> int:
    """A path id as an int, or 404 (never a 500 for ``/things/abc``)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Http404("Not found") from None
    if not 0 < number < 2**63:
        raise Http404("Not found")
    return number


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents :class:`tower.auth.ApiTokenAuthentication` as HTTP bearer auth."""

    target_class = "tower.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Bearer",  # noqa: S106 - the scheme name, not a secret
            bearer_format="twr_…",
        )


class ParentIdField(serializers.IntegerField):
    """The id of the row's parent (project, episode, character): set when the row is created.

    A PUT repeats it (it is part of the representation) but cannot change it.
    """

    def run_validation(self, data: Any = serializers.empty) -> Any:
        value = super().run_validation(data)
        instance = getattr(self.parent, "instance", None)
        if instance is not None and self.source and value != getattr(instance, self.source):
            raise serializers.ValidationError("cannot be changed")
        return value


class AccessViewSetMixin:
    """Objects come from the entity's access helper: 404 when invisible, 403 on a viewer's write.

    ``access_helper(user=, pk=, write=)`` is the app's selector. Writes go through
    ``perform_create`` / ``perform_update`` / ``perform_destroy``, which call one service each.
    """

    access_helper: Any = None

    @property
    def is_write(self) -> bool:
        return self.request.method not in permissions.SAFE_METHODS  # type: ignore[attr-defined]  # a mixin: the viewset has request

    def get_object(self) -> Any:
        pk = self.kwargs[self.lookup_url_kwarg or self.lookup_field]  # type: ignore[attr-defined]  # a mixin: the viewset has these
        helper = type(self).access_helper
        return helper(user=self.request.user, pk=pk, write=self.is_write)  # type: ignore[attr-defined]  # a mixin: the viewset has request

    @staticmethod
    def changes(serializer: serializers.BaseSerializer[Any], parent: str) -> dict[str, Any]:
        """The validated fields of an update, without the (unchanged) parent id."""
        return {k: v for k, v in serializer.validated_data.items() if k != parent}

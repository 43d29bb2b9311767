"""Removing the stored files of rows a delete takes with it, once the delete has committed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from django.core.files.storage import Storage
from django.db import models, router, transaction
from django.db.models.deletion import Collector
from django.db.models.fields.files import FieldFile


def stored_name(file: FieldFile) -> str:
    """The storage name of a file a row holds; a row without one is a bug, not a case to handle."""
    if not file.name:
        raise ValueError(f"{file.instance!r} has no stored {file.field.name}")
    return file.name


def files_of_cascade(objs: Iterable[models.Model]) -> list[tuple[Storage, str]]:
    """Every (storage, name) of FileFields on the rows that deleting ``objs`` would delete."""
    objs = list(objs)
    if not objs:
        return []
    collector = Collector(using=router.db_for_write(type(objs[0])))
    collector.collect(objs)
    batches: list[Iterable[models.Model]] = [list(instances) for instances in collector.data.values()]
    batches.extend(qs for qs in collector.fast_deletes if isinstance(qs, models.QuerySet))
    found: list[tuple[Storage, str]] = []
    for batch in batches:
        for instance in batch:
            for field in instance._meta.concrete_fields:
                if isinstance(field, models.FileField):
                    value = getattr(instance, field.attname)
                    if value:
                        found.append((field.storage, str(value)))
    return found


def delete_files_after_commit(files: list[tuple[Storage, str]]) -> None:
    def remove() -> None:
        for storage, name in files:
            with contextlib.suppress(OSError):
                storage.delete(name)

    transaction.on_commit(remove)

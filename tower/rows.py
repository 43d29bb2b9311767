"""Inserting rows on hot paths without compiling the statement through the ORM on every call."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models, transaction


def insert_rows(objs: Sequence[models.Model]) -> None:
    """Insert unsaved instances of one model and set their primary keys: ``bulk_create`` for
    models whose keys the database assigns, with the statement written from the model's metadata.

    Each value is what the ORM would send (the field's ``pre_save`` for an insert, then its
    ``get_db_prep_save``), rows go in batches of the backend's ``bulk_batch_size``, one
    multi-row ``INSERT … RETURNING`` each, and the keys come back in row order (as
    ``bulk_create`` relies on, on SQLite and PostgreSQL). Like ``bulk_create``, no signals are
    sent and ``save()`` is not called. Through the ORM, compiling the statement cost more than
    running it (bench/engine.py: 60 jobs of one request, and each stored output).
    """
    if not objs:
        return
    model = type(objs[0])
    connection = transaction.get_connection()
    if not connection.features.can_return_rows_from_bulk_insert:
        model._default_manager.bulk_create(objs)
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key and not getattr(f, "generated", False)]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(quote(f.column) for f in fields)
    # Identifiers come from the model's metadata; every value is a parameter.
    head = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "  # noqa: S608
    tail = f" RETURNING {quote(meta.pk.column)}"
    size = max(1, connection.ops.bulk_batch_size(fields, objs))
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            batch = objs[start : start + size]
            params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in batch for f in fields]
            cursor.execute(head + ", ".join([row] * len(batch)) + tail, params)
            for obj, (pk,) in zip(batch, cursor.fetchall(), strict=True):
                obj.pk = pk
                obj._state.adding, obj._state.db = False, connection.alias

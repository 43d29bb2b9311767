"""``manage.py restore DIR``: put a backup made by ``manage.py backup`` back.

Everything is checked before anything is touched: the manifest, every file's size and sha256,
files the manifest does not list, the database vendor, migrations this code does not know. A
database that already holds users, projects or jobs is refused unless ``--force``: then the
database is replaced by the backup's whole, and the backup's media files are copied over
MEDIA_ROOT (files of the same name replaced, others left). Stop the web and worker processes
first: they would keep writing to what is being replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from tower.core.backup import BackupError, applied_migrations, backup_restore, backup_verify, known_migrations

# Rows that mean "someone's data is here" (a fresh, migrated database holds none of them).
DATA_MODELS = ("auth.User", "projects.Project", "generation.Job")


def _holds_data() -> list[str]:
    tables = set(connection.introspection.table_names())
    found = []
    for label in DATA_MODELS:
        model = apps.get_model(label)
        if model._meta.db_table in tables and model.objects.exists():
            found.append(str(model._meta.verbose_name_plural))
    return found


class Command(BaseCommand):
    help = "Verify a backup made by `manage.py backup`, then restore its database and media files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path, help="the backup's directory")
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace a database that already holds data (it is replaced whole by the backup's)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source: Path = options["dir"].resolve()
        try:
            manifest = backup_verify(
                source=source, vendor=connection.vendor, known=known_migrations(), say=self.stdout.write
            )
            if connection.vendor == "sqlite":  # a fresh Tower: its var dir may not exist yet
                Path(connection.settings_dict["NAME"]).parent.mkdir(parents=True, exist_ok=True)
            found = _holds_data()
            if found and not options["force"]:
                raise CommandError(
                    f"the database already holds {', '.join(found)}: restoring replaces it whole. "
                    "Back it up first if it matters, then run restore again with --force"
                )
            if found:
                self.stdout.write(f"--force: replacing a database that holds {', '.join(found)}")
            backup_restore(
                source=source,
                manifest=manifest,
                connection=connection,
                media_root=Path(settings.MEDIA_ROOT),
                say=self.stdout.write,
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        behind = known_migrations() - set(applied_migrations(connection))
        if behind:
            self.stdout.write(f"the backup predates {len(behind)} migration(s) of this Tower: run `manage.py migrate`")
        self.stdout.write(self.style.SUCCESS(f"restored from {source}"))

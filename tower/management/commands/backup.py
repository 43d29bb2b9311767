"""``manage.py backup DIR``: a consistent copy of the database, the media files and a manifest.

Safe while Tower runs (web and workers): SQLite is copied with its online backup API in one
snapshot, PostgreSQL with ``pg_dump`` (one transaction); the media after the database, so every
row in the copy has its file. DIR must be new or empty. Not included: the secret key (sessions
sign in again after a restore elsewhere) and the scoring models (fetched again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from tower.core.backup import BackupError, backup_create


class Command(BaseCommand):
    help = "Back up the database, the media files and a manifest (sha256 of every file) into DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path, help="a new or empty directory")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            backup_create(
                target=options["dir"].resolve(),
                connection=connection,
                media_root=Path(settings.MEDIA_ROOT),
                say=self.stdout.write,
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None

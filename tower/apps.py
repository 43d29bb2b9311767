from __future__ import annotations

from django.apps import AppConfig


class TowerConfig(AppConfig):
    name = "tower"
    verbose_name = "Tower"
    default_auto_field = "django.db.models.BigAutoField"

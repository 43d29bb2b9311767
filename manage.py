#!/usr/bin/env python
"""Django's command-line utility for Tower."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tower.settings")
    from django.core.management import execute_from_command_line

    from tower.core.env import SettingsError

    try:
        execute_from_command_line(sys.argv)
    except SettingsError as exc:
        sys.stderr.write(f"Tower cannot start: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()

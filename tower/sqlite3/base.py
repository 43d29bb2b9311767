"""Django's SQLite backend, with a write transaction that waits for the lock in small steps.

On SQLite a write transaction (``BEGIN IMMEDIATE``, see settings) takes the database's one write
lock, and a connection that finds it taken sleeps in SQLite's own steps: 1, 2, 5, 10, 15 ms…
(``sqliteDefaultBusyCallback``). The engine's transactions hold the lock for a millisecond or
two, so a claim that found it taken slept up to 8 ms for a lock that was free after one
(bench/engine.py, zero compute: a claim is on the path from one prompt's end to the next one's
start). Here ``BEGIN IMMEDIATE`` first retries every 0.1–1 ms for up to ``QUICK_WAIT`` seconds,
then waits in SQLite's own busy handler for the configured ``timeout``.
"""

from __future__ import annotations

import sqlite3
import time

from django.db.backends.sqlite3 import base

QUICK_WAIT = 0.05  # seconds of fine-grained retries before SQLite's own busy handler takes over
FIRST_STEP, LONGEST_STEP = 0.0001, 0.001


class DatabaseWrapper(base.DatabaseWrapper):
    def _start_transaction_under_autocommit(self) -> None:
        if self.transaction_mode != "IMMEDIATE":
            super()._start_transaction_under_autocommit()
            return
        with self.wrap_database_errors:  # errors as Django's, like every other statement's
            self._begin_immediate(self.connection)

    def _begin_immediate(self, raw: sqlite3.Connection) -> None:
        timeout_ms = int(float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5)) * 1000)
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            deadline, step = time.monotonic() + QUICK_WAIT, FIRST_STEP
            while True:
                try:
                    raw.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                if time.monotonic() >= deadline:
                    break
                time.sleep(step)
                step = min(step * 2, LONGEST_STEP)
        finally:
            raw.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        raw.execute("BEGIN IMMEDIATE")  # then SQLite's own busy handler, for the configured timeout

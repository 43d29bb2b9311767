"""Tower's SQLite backend: a write transaction waits for the database's write lock in fine steps."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from django.db import OperationalError, connections

from tower.sqlite3 import base as backend


@pytest.fixture
def database(tmp_path, django_db_blocker):
    """A WAL database file of its own (not the test database), a connection to it through Tower's
    backend, and a plain one to hold the lock."""
    settings_dict = {
        **connections["default"].settings_dict,
        "ENGINE": "tower.sqlite3",
        "NAME": str(tmp_path / "lock.sqlite3"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 5, "init_command": "PRAGMA journal_mode=WAL;"},
    }
    tower = backend.DatabaseWrapper(settings_dict, alias="lock-test")
    with django_db_blocker.unblock():
        tower.ensure_connection()
        tower.connection.execute("CREATE TABLE t (v INTEGER)")
        holder = sqlite3.connect(settings_dict["NAME"], check_same_thread=False, isolation_level=None)
        yield tower, holder
        holder.close()
        tower.close()


def _busy_timeout(tower) -> int:
    return tower.connection.execute("PRAGMA busy_timeout").fetchone()[0]


def test_a_briefly_held_write_lock_is_retried_in_sub_millisecond_steps(database, monkeypatch):
    """SQLite's own busy handler sleeps 1, 2, 5, 10 ms… between tries; a lock held for half a
    millisecond cost a waiting claim up to 8 ms. Tower's backend tries again after 0.1, 0.2, 0.4 ms."""
    tower, holder = database
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    steps = []

    def sleep(seconds):
        steps.append(seconds)
        if len(steps) == 3:
            holder.execute("COMMIT")  # the holder lets go during the third wait

    monkeypatch.setattr(backend.time, "sleep", sleep)
    tower._start_transaction_under_autocommit()
    assert tower.connection.in_transaction
    assert steps == [0.0001, 0.0002, 0.0004]
    assert tower.connection.execute("SELECT v FROM t").fetchall() == [(1,)]
    tower.connection.execute("ROLLBACK")
    assert _busy_timeout(tower) == 5000  # the configured timeout is back for every other statement


def test_a_lock_held_longer_falls_back_to_sqlites_busy_timeout_and_still_gets_in(database):
    tower, holder = database
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (2)")
    release = threading.Timer(backend.QUICK_WAIT + 0.2, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        tower._start_transaction_under_autocommit()  # no "database is locked": it waited its turn
        assert tower.connection.in_transaction
        assert tower.connection.execute("SELECT v FROM t").fetchall() == [(2,)]
        tower.connection.execute("INSERT INTO t VALUES (3)")
        tower.connection.execute("COMMIT")
    finally:
        release.join()
    assert holder.execute("SELECT v FROM t ORDER BY v").fetchall() == [(2,), (3,)]
    assert _busy_timeout(tower) == 5000


def test_a_lock_never_released_still_ends_in_sqlites_error_after_the_timeout(database):
    tower, holder = database
    tower.settings_dict["OPTIONS"]["timeout"] = 0.3
    tower.close()
    tower.ensure_connection()
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"):  # Django's, as from any statement
            tower._start_transaction_under_autocommit()
        assert not tower.connection.in_transaction
    finally:
        holder.execute("ROLLBACK")

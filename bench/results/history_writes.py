"""Many writers, one history: SQLite set up so that writers queue for the write lock, and a
transaction that lost a race with another process (PostgreSQL, or a connection not set up
so) rolled back and run again after a random, growing wait. ``bench.results.history``
writes every transaction through ``retried``.

SQLAlchemy is imported inside the functions: ``import bench`` stays light.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

# How long an SQLite write waits for another process's write to end (its busy timeout). A
# write holds the lock for milliseconds; a long wait means a stuck process, not a queue.
BUSY_TIMEOUT_S = 30.0
# A transaction that lost a race is tried this many times in all, waiting a random time
# up to FIRST_WAIT_S, doubling each try, at most MAX_WAIT_S: processes released together
# (8 CI jobs ending at once) spread out instead of colliding again (about 5 s at worst).
ATTEMPTS = 8
FIRST_WAIT_S = 0.05
MAX_WAIT_S = 2.0
WRITE = "bench_history_write"  # the execution option that makes SQLite's BEGIN IMMEDIATE

T = TypeVar("T")


def sqlite_writes_lock_first(engine) -> None:
    """SQLite, set up so that writers queue instead of failing ("database is locked").

    SQLAlchemy's recipe for pysqlite ("Serializable isolation / Savepoints / Transactional
    DDL"): the driver's own transaction handling is off (it begins a transaction before an
    INSERT but not before CREATE TABLE, and a deferred one), and SQLAlchemy's begin emits
    the BEGIN itself. A write transaction begins IMMEDIATE: it takes the write lock before
    its first read, waiting up to the busy timeout for it. A deferred one reads first (the
    tables there? the schema row?) and then must upgrade its read lock to write; two doing
    so at once deadlock, and SQLite fails one at once, without waiting. Taking the lock
    first also makes "check, then create the tables" atomic: no "table already exists".
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None
        # WAL: readers (`bench history`) and a writer do not wait for each other, and a
        # commit is one append to the log. It needs the file on a local disk (the log's
        # index is shared memory): a fleet of machines shares a PostgreSQL history instead.
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(conn) -> None:
        write = conn.get_execution_options().get(WRITE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# Errors of a transaction that lost a race with another process, rolled back whole and
# safe to run again. PostgreSQL (SQLSTATE): a serialization failure, a deadlock, and what
# two processes creating one table at once get (the loser's CREATE TABLE waits for the
# winner's, then fails on the catalog's unique index, or finds the table there) or
# inserting one schema row. SQLite: "locked" without waiting out the busy timeout (a lock
# SQLite does not wait for, as a read lock's upgrade); and what a connection that does not
# take the write lock first gets when racing to create tables (``bench tune``'s Optuna
# storage, on the same file): here, one list of the races for both.
RACE_SQLSTATES = {"40001", "40P01", "23505", "42P07", "42710"}
RACE_MESSAGES = ("database is locked", "already exists", "UNIQUE constraint failed")


def lost_a_race(error: BaseException) -> bool:
    """Whether ``error`` (SQLAlchemy's, the driver's, or a library's wrapping either, such
    as Optuna's storage) is a transaction losing a race with another process, worth
    running again."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if getattr(e, "sqlstate", None) in RACE_SQLSTATES:
            return True
        if "sqlite" in type(e).__module__ and any(m in str(e) for m in RACE_MESSAGES):
            return True
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return False


def retried(once: Callable[[], T]) -> T:
    """``once()``, run again after a random, growing wait while it loses a race (at most
    ATTEMPTS tries in all); any other error, or the last try's, stands."""
    import sqlalchemy as sa

    attempt = 1
    while True:
        began = time.monotonic()
        try:
            return once()
        except sa.exc.DBAPIError as e:
            # SQLite's busy timeout waited out: a process holds the lock (a stuck one, a
            # shell's open transaction); waiting again would only delay the error
            waited_out = "locked" in str(e) and time.monotonic() - began >= BUSY_TIMEOUT_S
            if attempt == ATTEMPTS or waited_out or not lost_a_race(e):
                raise
        time.sleep(random.uniform(0, min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (attempt - 1))))
        attempt += 1

"""The history database: one row per run x case x metric of every run marked as part of a
named history (``bench run --history NAME``), so that ``bench history`` can look for change
points over nights without reading hundreds of run folders.

SQLite under the results folder by default; the same schema on PostgreSQL (or any database
SQLAlchemy speaks) when given a URL, so that a fleet of machines writes one history. The run
folders stay the source of truth: ``rebuild`` re-derives every row from them. Each write is
one transaction, so a run killed while writing leaves the history as it was.

Many runs may finish at once into one history (a matrix of CI jobs, several ``bench run``
on one machine): on SQLite a write takes the write lock up front and waits for it (WAL, a
busy timeout, ``BEGIN IMMEDIATE``); on PostgreSQL a transaction that lost a race (two
processes creating the tables, a deadlock) is rolled back and run again (``history_writes``).

SQLAlchemy is imported inside the functions: ``import bench`` stays light.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import UserError
from bench.results import history_writes as writes
from bench.results.history_rows import believed_rows

SCHEMA_VERSION = 1
SQLITE_NAME = "history.sqlite"

T = TypeVar("T")


def default_url(results: Path) -> str:
    return f"sqlite:///{Path(results).resolve() / SQLITE_NAME}"


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


@dataclass(frozen=True)
class RunRow:
    run_id: str
    suite: str
    started: str  # ISO 8601, UTC
    commit: str | None
    dirty: bool | None
    env_key: str  # what must match for two runs to be in one series
    env: dict[str, Any]  # the facts env_key was made from, for the report
    path: str
    gates: dict[str, Any]  # metric -> tolerance (JSON) from the run's suite: what is judged
    suite_text: str = ""  # so that a suspect night can be re-run (``bench history --confirm``)


@dataclass(frozen=True)
class PointRow:
    """One case and metric of one run: the per-run statistic over its process runs."""

    case_id: str
    metric: str
    unit: str
    method: str
    value: float  # the run's center: the geometric mean of its process runs
    low: float | None  # 95% interval of the run's center; None below 3 process runs
    high: float | None
    n: int  # process runs
    values: Sequence[float]  # each process run's value, for tests across runs


@functools.cache
def _tables():
    import sqlalchemy as sa

    md = sa.MetaData()
    meta = sa.Table(
        "bench_meta",
        md,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    runs = sa.Table(
        "bench_runs",
        md,
        sa.Column("history", sa.String(200), primary_key=True),
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("started", sa.String(40), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean),
        sa.Column("env_key", sa.String(64), nullable=False),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("gates", sa.Text, nullable=False),
        sa.Column("suite_text", sa.Text, nullable=False),
    )
    points = sa.Table(
        "bench_points",
        md,
        sa.Column("history", sa.String(200), primary_key=True),
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("case_id", sa.String(500), primary_key=True),
        sa.Column("metric", sa.String(200), primary_key=True),
        sa.Column("unit", sa.String(100), nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("low", sa.Float),
        sa.Column("high", sa.Float),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("run_values", sa.Text, nullable=False),  # JSON list
        sa.ForeignKeyConstraint(
            ["history", "run_id"], ["bench_runs.history", "bench_runs.run_id"], ondelete="CASCADE"
        ),
    )
    sa.Index("bench_points_series", points.c.history, points.c.case_id, points.c.metric)
    acks = sa.Table(  # a regression someone accepted: its series stops alarming until a new one
        "bench_acks",
        md,
        sa.Column("history", sa.String(200), primary_key=True),
        sa.Column("case_id", sa.String(500), primary_key=True),
        sa.Column("metric", sa.String(200), primary_key=True),
        sa.Column("env_key", sa.String(64), primary_key=True),
        sa.Column("acked_at", sa.String(40), nullable=False),  # ISO 8601, UTC
        sa.Column("note", sa.Text, nullable=False),
    )
    return md, meta, runs, points, acks


class History:
    """An open history database. ``url``: an SQLAlchemy URL (``sqlite:///…``,
    ``postgresql://user@host/db``)."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        # psycopg (3) is the driver bench's "postgres" extra installs; SQLAlchemy's default
        # for a bare postgresql:// is psycopg2.
        driver_url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
        sqlite = driver_url.startswith("sqlite")
        try:
            self.engine = sa.create_engine(
                driver_url, connect_args={"timeout": writes.BUSY_TIMEOUT_S} if sqlite else {}
            )
        except ImportError as e:
            raise UserError(
                f"no driver for this database ({e}); for PostgreSQL: "
                "pip install 'llm-opt-bench[postgres]'",
                where=shown(url),
            ) from None
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
            raise UserError(f"not a usable database URL ({e})", where=shown(url)) from None
        if sqlite:
            writes.sqlite_writes_lock_first(self.engine)
        md, *_ = _tables()

        # Reading first: opening a history that is all there (every table, its schema row)
        # writes nothing, so a reader does not queue behind writers for the write lock.
        # Retried like a write: while another process creates the database, SQLite can
        # refuse the read (or the switch to WAL) as "locked" without waiting (seen in CI, 1
        # of 8 writers released together).
        def read_schema():
            with self.engine.connect() as conn:
                missing = set(md.tables) - set(sa.inspect(conn).get_table_names())
                return None if missing else conn.execute(_schema_query()).first()

        with self._errors():
            row = writes.retried(read_schema)
        schema = row[0] if row else self._write(_create_schema)
        if schema != str(SCHEMA_VERSION):
            raise UserError(
                f"history schema {schema}, this bench reads {SCHEMA_VERSION}: "
                "`bench history rebuild` into a new database re-derives it",
                where=shown(url),
            )

    def _errors(self):
        return _database_errors(self.url)

    def _write(self, work: Callable[[Any], T]) -> T:
        """``work(connection)`` in one write transaction, run again if it lost a race."""

        def once() -> T:
            with self.engine.connect() as conn:
                conn.execution_options(**{writes.WRITE: True})  # SQLite: BEGIN IMMEDIATE
                with conn.begin():
                    return work(conn)

        with self._errors():
            return writes.retried(once)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, history: str, run: RunRow, points: Iterable[PointRow]) -> None:
        """Add (or replace) one run of ``history`` and its points, in one transaction."""
        points = list(points)  # read once: a retried transaction writes them again

        def write(conn) -> None:
            _delete(conn, history, [run.run_id])
            _insert(conn, history, run, points)

        self._write(write)

    def replace(self, history: str, runs: Iterable[tuple[RunRow, list[PointRow]]]) -> int:
        """Make ``history`` hold exactly ``runs``, in one transaction; the number of runs."""
        import sqlalchemy as sa

        _, _, runs_t, points_t, _ = _tables()
        runs = list(runs)  # read once: a retried transaction writes them again

        def write(conn) -> None:
            conn.execute(sa.delete(points_t).where(points_t.c.history == history))
            conn.execute(sa.delete(runs_t).where(runs_t.c.history == history))
            for run, points in runs:
                _insert(conn, history, run, points)

        self._write(write)
        return len(runs)

    def names(self) -> list[str]:
        import sqlalchemy as sa

        _, _, runs_t, _, _ = _tables()
        with self._errors(), self.engine.connect() as conn:
            q = sa.select(runs_t.c.history).distinct().order_by(runs_t.c.history)
            return [r[0] for r in conn.execute(q)]

    def ack(self, history: str, series: tuple[str, str, str], when: str, note: str) -> None:
        """Accept the changes of a series (case, metric, env key) up to ``when``."""
        import sqlalchemy as sa

        *_, acks_t = _tables()
        case_id, metric, env_key = series
        key = (
            (acks_t.c.history == history)
            & (acks_t.c.case_id == case_id)
            & (acks_t.c.metric == metric)
            & (acks_t.c.env_key == env_key)
        )

        def write(conn) -> None:
            conn.execute(sa.delete(acks_t).where(key))
            conn.execute(
                acks_t.insert().values(
                    history=history,
                    case_id=case_id,
                    metric=metric,
                    env_key=env_key,
                    acked_at=when,
                    note=note,
                )
            )

        self._write(write)

    def acks(self, history: str) -> dict[tuple[str, str, str], tuple[str, str]]:
        """(case, metric, env key) -> (when, note) of every accepted series."""
        import sqlalchemy as sa

        *_, acks_t = _tables()
        q = sa.select(acks_t).where(acks_t.c.history == history)
        with self._errors(), self.engine.connect() as conn:
            return {(r.case_id, r.metric, r.env_key): (r.acked_at, r.note) for r in conn.execute(q)}

    def suite_text(self, history: str, run_id: str) -> str:
        import sqlalchemy as sa

        _, _, runs_t, _, _ = _tables()
        q = sa.select(runs_t.c.suite_text).where(
            runs_t.c.history == history, runs_t.c.run_id == run_id
        )
        with self._errors(), self.engine.connect() as conn:
            row = conn.execute(q).first()
        return row[0] if row else ""

    def frame(self, history: str) -> Any:
        """Every point of ``history`` with its run's facts: a pandas DataFrame, one row per
        run x case x metric, in run start order. A row that does not parse is a UserError."""
        import pandas as pd
        import sqlalchemy as sa

        _, _, runs_t, points_t, _ = _tables()
        q = (
            sa.select(
                runs_t.c.run_id,
                runs_t.c.started,
                runs_t.c.git_commit,
                runs_t.c.git_dirty,
                runs_t.c.env_key,
                runs_t.c.env,
                runs_t.c.gates,
                points_t.c.case_id,
                points_t.c.metric,
                points_t.c.unit,
                points_t.c.method,
                points_t.c.value,
                points_t.c.low,
                points_t.c.high,
                points_t.c.n,
                points_t.c.run_values,
            )
            .join(
                points_t,
                sa.and_(
                    points_t.c.history == runs_t.c.history, points_t.c.run_id == runs_t.c.run_id
                ),
            )
            .where(runs_t.c.history == history)
            .order_by(runs_t.c.started, runs_t.c.run_id)
        )
        with self._errors(), self.engine.connect() as conn:
            df = pd.DataFrame(conn.execute(q).mappings().all())
        if df.empty:
            return df
        good, bad = believed_rows(df)
        for run_id, (count, why) in bad.items():
            warnings.warn(
                f"{shown(self.url)}: history {history!r}, run {run_id}: {count} row(s) cannot "
                f"be believed ({why}); skipped (`bench history rebuild` re-derives them)",
                stacklevel=2,
            )
        df = df[good].reset_index(drop=True)
        if df.empty:
            return df
        df["started"] = pd.to_datetime(df["started"], utc=True, format="ISO8601")
        for column in ("run_values", "env", "gates"):
            df[column] = [json.loads(v) for v in df[column]]
        return df


def _schema_query():
    import sqlalchemy as sa

    _, meta, *_ = _tables()
    return sa.select(meta.c.value).where(meta.c.key == "schema")


def _create_schema(conn) -> str:
    """Create what is missing of the schema; the schema version the database holds."""
    md, meta, *_ = _tables()
    md.create_all(conn)  # checks first: creates only the tables not there
    row = conn.execute(_schema_query()).first()
    if row is not None:
        return row[0]
    conn.execute(meta.insert().values(key="schema", value=str(SCHEMA_VERSION)))
    return str(SCHEMA_VERSION)


def _delete(conn, history: str, run_ids: list[str]) -> None:
    import sqlalchemy as sa

    _, _, runs_t, points_t, _ = _tables()
    for t in (points_t, runs_t):
        conn.execute(sa.delete(t).where(t.c.history == history, t.c.run_id.in_(run_ids)))


def _insert(conn, history: str, run: RunRow, points: list[PointRow]) -> None:
    _, _, runs_t, points_t, _ = _tables()
    conn.execute(
        runs_t.insert().values(
            history=history,
            run_id=run.run_id,
            suite=run.suite,
            started=run.started,
            git_commit=run.commit,
            git_dirty=run.dirty,
            env_key=run.env_key,
            env=json.dumps(run.env, sort_keys=True),
            path=run.path,
            gates=json.dumps(run.gates, sort_keys=True),
            suite_text=run.suite_text,
        )
    )
    if points:
        conn.execute(
            points_t.insert(),
            [
                {
                    "history": history,
                    "run_id": run.run_id,
                    "case_id": p.case_id,
                    "metric": p.metric,
                    "unit": p.unit,
                    "method": p.method,
                    "value": p.value,
                    "low": p.low,
                    "high": p.high,
                    "n": p.n,
                    "run_values": json.dumps(list(p.values)),
                }
                for p in points
            ],
        )


@contextlib.contextmanager
def _database_errors(url: str):
    """Turns a database that cannot be reached or read into one UserError line."""
    import sqlalchemy as sa

    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
        first = str(e.orig if getattr(e, "orig", None) else e).strip().splitlines()[0]
        raise UserError(f"cannot use the history database ({first})", where=shown(url)) from None
    except sa.exc.DatabaseError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"history database error ({first})", where=shown(url)) from None

"""Property-based fuzzing of every kind of input bench reads (Hypothesis), shared by the unit
tests (a small sample, ``tests/test_fuzz.py``) and the benchmark (``benchmarks/fuzz.py``,
at least 1,000 cases a kind, with the counts).

Each kind starts from a real file bench (or pytest-benchmark) wrote, breaks it the ways a
disk, an editor or another tool breaks files (truncation, wrong types, missing and extra
keys, huge numbers, NaN and infinities, bytes that are not text), and runs the command that
reads it, in process. The oracle, per case:

- ``refused``: exit 2, and the error is one line naming the broken file;
- ``skipped``: the command went on, and a warning line names the broken file;
- ``accepted``: the command went on without a word: the break left the file valid (an
  extra key, a value of the right type) — and then no figure it printed is NaN or inf;
- anything else is a failure: ``traceback`` (an exception escaped), ``unclear`` (exit 2
  without naming the file, or more than one line), ``garbage`` (a NaN or inf printed).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.conftest import selftest_suite

FAILURES = ("traceback", "unclear", "garbage", "hang")
HANG_S = 60  # a case still running after this long is a failure of its own
NON_FINITE = re.compile(r"(?<![\w.])(-?inf|nan)(?![\w.])", re.IGNORECASE)


# --- running a command and judging what it did ---------------------------------------


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str
    exception: str | None = None  # the traceback of an exception that escaped

    def verdict(self, names: list[str]) -> str:
        """``names``: how the broken file may be named (its path, or a part of it); none:
        the input is the command line, and any one-line refusal is clear."""
        if self.exception is not None or "Traceback (most recent call last)" in self.err:
            return "traceback"
        lines = [line for line in self.err.splitlines() if line.strip()]
        named = [line for line in lines if any(n in line for n in names)]
        if self.code == 2:
            errors = [line for line in lines if "error:" in line]
            named_error = not names or any(n in errors[0] for n in names) if errors else False
            if len(errors) == 1 and (named_error or _argparse(lines)):
                return "refused"
            return "unclear"
        # A line naming the broken file describes the input ("NaN is not JSON"): not a figure.
        printed = "\n".join(x for x in f"{self.out}\n{self.err}".splitlines() if x not in named)
        if NON_FINITE.search(printed):
            return "garbage"
        if any("warning:" in line for line in named) or "skipped" in " ".join(named):
            return "skipped"
        return "accepted"


def _argparse(lines: list[str]) -> bool:
    """argparse's own refusal: a usage line, then 'bench ...: error: ...'."""
    return bool(lines) and lines[0].startswith("usage:")


def invoke(argv: list[str], cwd: Path) -> Outcome:
    """``bench ARGV`` in this process, with its output captured."""
    import os

    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse refuses with exit 2
                code = e.code if isinstance(e.code, int) else 2
    except Exception:
        return Outcome(None, out.getvalue(), err.getvalue(), traceback.format_exc())
    finally:
        os.chdir(here)
    return Outcome(code, out.getvalue(), err.getvalue())


# --- breaking a JSON file ---------------------------------------------------------------

HUGE = 10**400  # no float holds it
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([HUGE, -HUGE, 2**63, -1, 0]),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN, Infinity
    st.text(max_size=12),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


def _walk(data: st.DataObject, root: Any) -> tuple[Any, Any]:
    """A random (container, key) inside ``root``, top-level keys as likely as deep ones."""
    node, key = None, None
    current = root
    while True:
        keys = _children(current)
        if not keys:
            break
        pick = data.draw(st.sampled_from(keys))
        node, key = current, pick
        current = current[pick]
        if data.draw(st.booleans()):
            break
    return node, key


def broken_json(data: st.DataObject, raw: bytes) -> tuple[str, bytes]:
    """One way of breaking the JSON document ``raw``: (what was done, the new bytes)."""
    how = data.draw(
        st.sampled_from(["truncate", "replace", "replace", "delete", "extra", "bytes", "retype"])
    )
    if how == "truncate":
        return how, raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "bytes":
        return how, data.draw(st.binary(max_size=64))
    doc = json.loads(raw)
    if how == "retype":  # the whole document of another type
        return how, json.dumps(data.draw(json_value)).encode()
    node, key = _walk(data, doc)
    if node is None:
        return "retype", json.dumps(data.draw(json_value)).encode()
    if how == "replace":
        node[key] = data.draw(json_value)
    elif how == "delete":
        del node[key]
    else:
        target = node[key] if isinstance(node[key], dict) else node
        if isinstance(target, dict):
            target[data.draw(st.text(max_size=8))] = data.draw(json_value)
        else:
            target.append(data.draw(json_value))
    return f"{how} {key!r}", json.dumps(doc).encode()


# --- the kinds ----------------------------------------------------------------------------


@dataclass
class Kind:
    """One kind of input: ``case(data, seed, tmp)`` breaks a copy of the seed under ``tmp``
    and returns (what was done, argv, cwd, names the broken file goes by)."""

    name: str
    case: Callable[[st.DataObject, Seed, Path], tuple[str, list[str], Path, list[str]]]


@dataclass
class Seed:
    """The real files every kind starts from, made once (``make_seed``)."""

    root: Path
    run: Path  # a finished run folder (three case results)
    other: Path  # another run of the same suite, for the other side of a comparison
    save: Path  # a pytest-benchmark save file
    perf: Path  # a .perf/ baseline the pytest plugin wrote
    history: Path  # a results folder with a history database of five nights
    checkpoint: Path  # a transformers checkpoint folder (config.json, model.safetensors)
    extra: dict[str, Any] = field(default_factory=dict)


def make_seed(root: Path) -> Seed:
    """Real files, written by the real writers (a real ``bench run``, pytest-benchmark,
    the pytest plugin, ``bench history rebuild``, transformers' ``save_pretrained``)."""
    root.mkdir(parents=True, exist_ok=True)
    suite = root / "fz.toml"
    suite.write_text(selftest_suite("fz", repeats=3))
    results = root / "results"
    subprocess.run(
        [sys.executable, "-m", "bench", "run", str(suite), "--results", str(results), "--history", "nightly"],
        check=True, capture_output=True, cwd=root,
    )  # fmt: skip
    (run,) = (d for d in results.iterdir() if d.is_dir())
    other = _renamed_copy(run, results, "20990101-000000-fz-other")
    for night in range(4):  # a history of five nights: the run and copies of it
        _renamed_copy(run, results, f"2099010{night + 2}-000000-fz-n{night}")
    assert invoke(["history", "rebuild", "--results", str(results)], root).code == 0
    return Seed(root, run, other, _pytest_benchmark_save(root), _perf_baseline(root), results,
                _checkpoint(root))  # fmt: skip


def _renamed_copy(run: Path, results: Path, run_id: str) -> Path:
    from bench.results import store

    dst = results / run_id
    shutil.copytree(run, dst)
    for path in [dst / store.MANIFEST, *(dst / store.CASES).glob("*.json")]:
        data = json.loads(path.read_text())
        data["run_id"] = run_id
        if path.name == store.MANIFEST:
            data["started"] = f"2099-01-0{int(run_id[7]) or 1}T00:00:00+00:00"
        path.write_text(json.dumps(data))
    return dst


def _pytest_benchmark_save(root: Path) -> Path:
    folder = root / "pb"
    folder.mkdir()
    (folder / "test_pb.py").write_text(
        "def test_sum(benchmark):\n    benchmark(sum, range(100))\n"
        "def test_sorted(benchmark):\n    benchmark(sorted, range(100))\n"
    )
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-autosave",
         "--benchmark-storage", str(folder / "saves"), "--benchmark-min-rounds=3",
         "--benchmark-max-time=0.05", str(folder / "test_pb.py")],
        check=True, capture_output=True, cwd=folder,
    )  # fmt: skip
    (save,) = (folder / "saves").rglob("0001_*.json")
    return save


def _perf_baseline(root: Path) -> Path:
    from types import SimpleNamespace

    from bench.pytest_baseline import Measurement, PerfSession

    options = {"--perf-save": "base", "--perf-compare": None, "--perf-dir": str(root / ".perf"),
               "--perf-repeats": 3, "--perf-beyond-tolerance": False}  # fmt: skip
    session = PerfSession(SimpleNamespace(getoption=options.__getitem__))
    for name, values in (("t::a", [1.0, 1.1, 0.9]), ("t::b", [2.0, 2.2, 2.1])):
        session.measured[name] = Measurement("latency_median", "s", values, "perf_counter")
    return session.write()


def _checkpoint(root: Path) -> Path:
    from bench.run.context import CaseContext
    from bench.spec.registry import models

    folder = root / "ckpt"
    from bench.models.quiet import quiet

    entry = models.get("gpt2-tiny")
    with quiet():  # transformers' first import: torchao's log lines
        model = entry.fn(entry.params.model_validate({}), CaseContext("cpu", "float32", 0, 1, 2))
        model.hf.save_pretrained(folder, safe_serialization=True)
    return folder


def _json_file_case(pick: Callable[[Seed, Path], tuple[Path, list[str], list[str]]]):
    """A kind that breaks one JSON file in copies of seed files, then runs a command on it.
    ``pick(seed, tmp)`` copies what it needs under ``tmp`` and names the file to break,
    the argv and the names the file goes by."""

    def case(data: st.DataObject, seed: Seed, tmp: Path):
        target, argv, names = pick(seed, tmp)
        how, raw = broken_json(data, target.read_bytes())
        target.write_bytes(raw)
        return how, argv, tmp, names

    return case


def _two_runs(seed: Seed, tmp: Path) -> tuple[Path, Path]:
    run, other = tmp / seed.run.name, tmp / seed.other.name
    shutil.copytree(seed.run, run, ignore=shutil.ignore_patterns("logs"))
    shutil.copytree(seed.other, other, ignore=shutil.ignore_patterns("logs"))
    return run, other


def _case_result(seed: Seed, tmp: Path):
    from bench.results import store

    run, other = _two_runs(seed, tmp)
    target = sorted((run / store.CASES).glob("*.json"))[1]
    return target, ["compare", str(other), str(run)], [target.name]


def _case_result_report(seed: Seed, tmp: Path):
    from bench.results import store

    run, _ = _two_runs(seed, tmp)
    target = sorted((run / store.CASES).glob("*.json"))[1]
    return target, ["report", str(run), "--reports", str(tmp / "reports")], [target.name]


def _manifest(seed: Seed, tmp: Path):
    from bench.results import store

    run, other = _two_runs(seed, tmp)
    return run / store.MANIFEST, ["compare", str(other), str(run)], [run.name]


def _manifest_report(seed: Seed, tmp: Path):
    from bench.results import store

    run, _ = _two_runs(seed, tmp)
    return run / store.MANIFEST, ["report", str(run), "--reports", str(tmp / "reports")], [run.name]


def _pytest_benchmark(seed: Seed, tmp: Path):
    save, good = tmp / seed.save.name, tmp / "0002_good.json"
    shutil.copy(seed.save, save)
    shutil.copy(seed.save, good)
    return save, ["compare", str(good), str(save)], [save.name]


def _gates_case(data: st.DataObject, seed: Seed, tmp: Path):
    import tomli_w

    from bench.results.metric_info import HIGHER_IS_BETTER

    metric = st.sampled_from(sorted(HIGHER_IS_BETTER)) | st.text(max_size=10)
    tolerance = st.one_of(
        st.floats(), st.integers(), st.sampled_from([HUGE, 0, -1, "exact", "off", "EXACT", ""]),
        st.text(max_size=8), st.booleans(),
        st.dictionaries(st.sampled_from(["relative", "absolute", "x"]), st.floats() | st.text(max_size=4),
                        max_size=2),
        st.lists(st.floats(), max_size=2),
    )  # fmt: skip
    table = data.draw(st.dictionaries(metric, tolerance, max_size=4))
    doc = {"gates": table} if data.draw(st.integers(0, 9)) else {"gate": table}
    try:
        raw = tomli_w.dumps(doc).encode()
    except (TypeError, ValueError):  # a value TOML cannot hold (a huge integer)
        raw = f"[gates]\nlatency_median = {HUGE}\n".encode()
    if data.draw(st.integers(0, 4)) == 0:
        raw = raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    path = tmp / "gates.toml"
    path.write_bytes(raw)
    argv = ["compare", str(seed.other), str(seed.run), "--gates", str(path)]
    return f"gates {table!r}"[:200], argv, tmp, [path.name]


def _perf_case(data: st.DataObject, seed: Seed, tmp: Path):
    path = tmp / ".perf" / seed.perf.name
    path.parent.mkdir()
    how, raw = broken_json(data, seed.perf.read_bytes())
    path.write_bytes(raw)
    return how, ["__perf__", str(tmp / ".perf"), "base"], tmp, [path.name]


def perf_baseline_outcome(folder: str, name: str) -> Outcome:
    """What the pytest plugin does with a baseline, as ``pytest --perf-compare NAME`` would:
    read it (or the reason all perf tests are skipped), then judge a session against each
    saved test."""
    from types import SimpleNamespace

    from bench.analysis import verdicts
    from bench.pytest_baseline import Measurement, PerfSession, sessions_of
    from bench.results.metric_info import Tolerance

    options = {"--perf-save": None, "--perf-compare": name, "--perf-dir": folder,
               "--perf-repeats": 3, "--perf-beyond-tolerance": False}  # fmt: skip
    try:
        session = PerfSession(SimpleNamespace(getoption=options.__getitem__))
        tests, why = session.baseline()
        lines = []
        for key, entry in (tests or {}).items():
            change = verdicts.between_runs(
                sessions_of(entry), [[1.0, 1.05, 0.95]], entry["metric"], False,
                Tolerance("relative", 0.1),
            )  # fmt: skip
            lines.append(f"{key}: {change.describe()}")
        # and ``pytest --perf-save NAME`` over it: this session's measurement added
        save = {**options, "--perf-save": name, "--perf-compare": None}
        saving = PerfSession(SimpleNamespace(getoption=save.__getitem__))
        saving.measured["t::a"] = Measurement("latency_median", "s", [1.0, 1.1], "perf_counter")
        saving.write()
        if why:
            return Outcome(0, "", f"warning: every perf test skipped: {why}")
        return Outcome(0, "\n".join(lines), "")
    except Exception:
        return Outcome(None, "", "", traceback.format_exc())


def _history_case(data: st.DataObject, seed: Seed, tmp: Path):
    from bench.results.history import SQLITE_NAME

    results = tmp / "results"
    shutil.copytree(seed.history, results)
    db = sqlite3.connect(results / SQLITE_NAME)
    tables = ["bench_runs", "bench_points", "bench_acks", "bench_meta"]
    table = data.draw(st.sampled_from(tables[:2] * 4 + tables[2:]))
    columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    rows = db.execute(f"SELECT rowid FROM {table}").fetchall()
    sql_value = st.one_of(
        st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=12),
        st.binary(max_size=8), st.sampled_from(["[", "{}", "[1, NaN]", '{"a": 1}', "null", "[]"]),
    )  # fmt: skip
    if table == "bench_acks" or not rows or data.draw(st.integers(0, 9)) == 0:
        # a row of this table made up whole (acks start empty)
        values = [data.draw(sql_value) for _ in columns]
        keys = ", ".join(columns)
        with contextlib.suppress(sqlite3.Error):
            db.execute(f"INSERT INTO {table} ({keys}) VALUES ({', '.join('?' * len(columns))})",
                       values)  # fmt: skip
        how = f"insert into {table}"
    else:
        rowid = data.draw(st.sampled_from(rows))[0]
        column = data.draw(st.sampled_from(columns))
        value = data.draw(sql_value)
        with contextlib.suppress(sqlite3.Error):  # a key collision: the table refuses it
            db.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (value, rowid))
        how = f"{table}.{column} = {value!r}"[:200]
    db.commit()
    db.close()
    argv = ["history", "show", "nightly", "--results", str(results), "--reports", str(tmp / "rep")]
    return how, argv, tmp, [SQLITE_NAME, str(results)]


def _checkpoint_suite(tmp: Path, folder: Path) -> Path:
    suite = tmp / "ck.toml"
    suite.write_text(
        textwrap.dedent(f"""
        name = "ck"
        [[models]]
        name = "hf-local"
        path = "{folder}"
        [[workloads]]
        name = "forward"
        batch = 1
        seq_len = 8
        """)
    )
    return suite


def _config_case(data: st.DataObject, seed: Seed, tmp: Path):
    folder = tmp / "ckpt"
    shutil.copytree(seed.checkpoint, folder)
    how, raw = broken_json(data, (folder / "config.json").read_bytes())
    (folder / "config.json").write_bytes(raw)
    return how, ["validate", str(_checkpoint_suite(tmp, folder))], tmp, ["config.json", str(folder)]


def _safetensors_case(data: st.DataObject, seed: Seed, tmp: Path):
    folder = tmp / "ckpt"
    shutil.copytree(seed.checkpoint, folder)
    (file,) = folder.glob("*.safetensors")
    raw = file.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header, body = raw[8 : 8 + size], raw[8 + size :]
    how = data.draw(st.sampled_from(["header", "header", "length", "body"]))
    if how == "header":
        how, header = broken_json(data, header)
    elif how == "length":
        size = data.draw(
            st.integers(0, 2**64 - 1) | st.sampled_from([0, size - 1, size + 1, len(raw)])
        )
    else:
        body = body[: data.draw(st.integers(0, max(0, len(body) - 1)))]
    if how != "length":
        size = len(header)
    file.write_bytes(size.to_bytes(8, "little") + header + body)
    return f"safetensors {how}", ["validate", str(_checkpoint_suite(tmp, folder))], tmp, [
        file.name, str(folder)]  # fmt: skip


def _cli_case(data: st.DataObject, seed: Seed, tmp: Path):
    from bench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    command = data.draw(st.sampled_from(sorted(sub.choices)))
    flags = sorted(
        s
        for a in sub.choices[command]._actions
        for s in a.option_strings
        if s not in ("-h", "--help")
    )
    junk = tmp / "junk.toml"
    junk.write_bytes(data.draw(st.binary(max_size=40)))
    token = st.one_of(
        st.sampled_from(flags or ["--x"]),
        st.sampled_from(["0", "-1", "1e999", "nan", "inf", "", "=", "--", "../..", "/nonexistent",
                         str(junk), "x" * 300, "a,b", "3:4", "10m", "5%", "NAME=", "1/0"]),
        st.text(max_size=10),
    )  # fmt: skip
    argv = [command, *data.draw(st.lists(token, max_size=5))]
    # Nothing here may start real work: no suite exists under tmp but the junk one.
    return f"argv {argv!r}"[:200], argv, tmp, []


KINDS = {
    "case_result": Kind("case_result", _json_file_case(_case_result)),
    "case_result_report": Kind("case_result_report", _json_file_case(_case_result_report)),
    "manifest": Kind("manifest", _json_file_case(_manifest)),
    "manifest_report": Kind("manifest_report", _json_file_case(_manifest_report)),
    "pytest_benchmark_save": Kind("pytest_benchmark_save", _json_file_case(_pytest_benchmark)),
    "perf_baseline": Kind("perf_baseline", _perf_case),
    "history_rows": Kind("history_rows", _history_case),
    "gates_table": Kind("gates_table", _gates_case),
    "checkpoint_config": Kind("checkpoint_config", _config_case),
    "safetensors_header": Kind("safetensors_header", _safetensors_case),
    "cli_arguments": Kind("cli_arguments", _cli_case),
}


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)


class Hang(BaseException):
    """Raised in a case that runs past ``HANG_S`` (a BaseException: no ``except Exception``
    in the code under test swallows it)."""


def _hang(signum, frame):
    raise Hang


def run_one(kind: Kind, data: st.DataObject, seed: Seed, tmp: Path, tally: Tally) -> str:
    """One case of ``kind``: break, run, judge; counted in ``tally``."""
    import signal

    how, argv, cwd, names = kind.case(data, seed, tmp)
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        if argv[0] == "__perf__":
            outcome = perf_baseline_outcome(argv[1], argv[2])
        else:
            outcome = invoke(argv, cwd)
        verdict = outcome.verdict(names)
    except Hang:
        outcome = Outcome(None, "", "", traceback.format_exc())
        verdict = "hang"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    tally.counts[verdict] += 1
    if verdict in FAILURES:
        tally.failures.append({
            "kind": kind.name, "verdict": verdict, "how": how, "argv": " ".join(argv)[:300],
            "code": str(outcome.code), "err": outcome.err[-1500:],
            "exception": (outcome.exception or "")[-3000:],
        })  # fmt: skip
    return verdict

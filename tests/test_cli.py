import subprocess
import sys

from bench.cli import main
from tests.conftest import TINY_MODEL


def test_validate_and_list(write_suite, capsys):
    path = write_suite(
        'name = "t"\n'
        + TINY_MODEL
        + '[[workloads]]\nname = "forward"\nbatch = [1, 2]\nseq_len = 8\n'
    )
    assert main(["validate", str(path)]) == 0
    assert "ok, 2 cases x 3 repeats" in capsys.readouterr().out
    assert main(["list", str(path), "--shard", "2/2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("tinygpt-s-L1-H2-E32-T64/forward-b2-s8/baseline  [")


def test_user_errors_exit_2_with_one_line(write_suite, capsys):
    path = write_suite('name = "t"\n' + TINY_MODEL + '[[workloads]]\nname = "forward"\nbatch = 0\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"bench: error: {path}: workloads[0].batch: 0 is out of range: "
        "Input should be greater than or equal to 1\n"
    )


def test_a_path_no_file_system_takes_is_one_line_and_exit_2(capsys):
    """Found by benchmarks/fuzz.py: both raised from the standard library."""
    assert main(["compare", "x" * 300, "y"]) == 2
    assert capsys.readouterr().err.endswith(": File name too long\n")
    assert main(["validate", "a\0b.toml"]) == 2
    assert capsys.readouterr().err == "bench: error: an argument holds a NUL byte\n"


def test_bad_filter_and_shard_are_user_errors(write_suite, capsys):
    path = write_suite('name = "t"\n' + TINY_MODEL + '[[workloads]]\nname = "forward"\n')
    assert main(["list", str(path), "--filter", "*generate*"]) == 2
    assert main(["list", str(path), "--shard", "3/2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "bench: error: --filter '*generate*' matches no case; see `bench list`",
        "bench: error: --shard '3/2': expected K/N with 1 <= K <= N, e.g. 2/4",
    ]


def test_console_script_prints_no_traceback(tmp_path):
    """The installed entry point, as a user runs it: one line on stderr, exit code 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"bench: error: {tmp_path / 'missing.toml'}: no such suite file\n"


def test_import_bench_is_light():
    code = (
        "import sys, bench, bench.spec, bench.run, bench.results, bench.analysis, "
        "bench.telemetry, bench.models, bench.techniques, bench.workloads; bench.load_results; "
        "heavy = [m for m in ('torch', 'transformers', 'pandas', 'matplotlib') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# What each stage must never import (DESIGN.md, "Arrows"): the folders are the flow.
FORBIDDEN = {
    "telemetry": ("bench.models", "bench.techniques", "bench.workloads", "bench.run"),
    "techniques": ("bench.run",),
    "analysis": ("bench.run", "bench.telemetry"),
    "spec": ("bench.run", "bench.analysis"),
    "results": ("bench.run", "bench.analysis", "bench.telemetry"),
}


def test_no_import_points_back_up_the_flow():
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1] / "bench"
    found = []
    for stage, banned in FORBIDDEN.items():
        for path in (root / stage).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                found += [f"{path.relative_to(root)}: {n}" for n in names if n.startswith(banned)]
    assert found == []

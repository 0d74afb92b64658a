"""One grammar for every command: --version, results on stdout and progress on stderr,
--json that parses, history subcommands any name can live beside, exit codes in every
--help, `bench names NAME`, `bench show RUN`, `bench schema`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import build_parser, main
from bench.results import store
from tests.test_compare import sides

# A suite of one fast case on the built-in model as shipped (no shape of its own).
SUITE = """
name = "grammar"
[run]
warmup = 1
iterations = 3
repeats = 2
idle_s = 0
energy = false
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "selftest"
"""


def _commands(parser):
    """(argv, parser) of every command and history subcommand."""
    sub = next(a for a in parser._actions if isinstance(a.choices, dict))
    for name, p in sub.choices.items():
        yield [name], p
        nested = [a for a in p._actions if isinstance(a.choices, dict)]
        for a in nested:
            for inner, q in a.choices.items():
                yield [name, inner], q


def test_version_prints_the_name_and_version_on_stdout(capsys):
    from bench import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"bench {__version__}\n"


def test_every_command_has_help_and_the_exit_codes(capsys):
    parser = build_parser()
    seen = []
    for argv, p in _commands(parser):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = capsys.readouterr().out
        seen.append(" ".join(argv))
        assert "exit status:" in text and "74" in text and "130" in text, argv
        for action in p._actions:  # the docs site prints these: none may be missing
            assert action.help, (argv, action.dest)
    assert {"show", "schema", "names", "history show", "history ack"} <= set(seen)


def test_one_meaning_per_flag_name():
    """--reports is always a folder of pages, --results always the results root; the old
    spellings are gone."""
    for argv, p in _commands(build_parser()):
        flags = {s for a in p._actions for s in a.option_strings}
        assert not flags & {"--out", "--force", "--base", "--candidate"}, argv


def test_list_and_validate_json_is_one_document_on_stdout(write_suite, capsys):
    path = write_suite(SUITE)
    assert main(["list", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    (case,) = json.loads(out)
    assert case["id"].endswith("/baseline") and case["baseline"] and err == ""
    assert main(["validate", str(path), "--json", "--set", "run.repeats=5"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "suite": str(path), "ok": True, "cases": 1, "repeats": 5}  # fmt: skip


def test_set_overrides_a_suite_key_and_a_bad_one_is_one_line(write_suite, capsys):
    path = write_suite(SUITE)
    assert main(["validate", str(path), "--set", "run.repeats=4"]) == 0
    assert "1 cases x 4 repeats" in capsys.readouterr().out
    assert main(["validate", str(path), "--set", "run.repeats"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench: error:") and "run.repeats" in err


def test_compare_json_parses_and_the_table_is_on_stdout(tmp_path, capsys):
    base, cand = sides(tmp_path, slow=1.3)
    argv = ["compare", str(base[0]), str(cand[0])]
    argv += [a for b in base[1:] for a in ("--base-run", str(b))]
    argv += [a for c in cand[1:] for a in ("--candidate-run", str(c))]
    assert main([*argv, "--json", "--reports", str(tmp_path / "o")]) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)  # nothing else on stdout
    assert data["verdicts"]["REGRESSION"] == 1 and "REGRESSION" not in err
    assert data["written"] and (tmp_path / "o" / "compare.json").is_file()
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "1 REGRESSION" in out and err == ""


def test_run_prints_the_summary_on_stdout_and_progress_on_stderr_then_show(
    tmp_path, write_suite, capsys
):
    path = write_suite(SUITE)
    results = tmp_path / "results"
    argv = ["run", str(path), "--results", str(results), "--no-report", "--inline"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    (run_dir,) = results.iterdir()
    (case_id,) = {r["case_id"] for r in store.run_results(run_dir)}
    assert "Summary" in out and f"results: {run_dir}" in out and case_id in out
    assert "Summary" not in err and f"ok {case_id} r1" in err  # progress
    # show: by id under --results, or by folder; the same table, and the environment
    assert main(["show", run_dir.name, "--results", str(results)]) == 0
    out, err = capsys.readouterr()
    assert (
        f"Run: {run_dir.name}, started" in out
        and ", complete" in out
        and "Python 3." in out
        and "CPU: " in out
    )
    assert "Quiet: " in out and "Idle power: " in out
    assert "Summary" in out and case_id in out and err == ""
    assert main(["show", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (case,) = data["cases"]
    assert data["status"] == "complete" and data["environment"]["python"]
    assert case["status"] == "ok" and case["metric"] and case["value"] > 0 and case["unit"]
    assert main(["show", "nope", "--results", str(results)]) == 2
    assert "no run folder or run id 'nope'" in capsys.readouterr().err
    # run --json: one document, the same rows
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cases"][0]["case_id"] == case_id and "Summary" not in out


def test_a_history_named_like_a_subcommand_works(tmp_path, capsys):
    from tests.test_history import nightly

    results = tmp_path / "results"
    nightly(results, 3)
    for run in (p.parent for p in results.glob("*/manifest.json")):
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["history"] = "ack"
        (run / "manifest.json").write_text(json.dumps(manifest))
    assert main(["history", "rebuild", "ack", "--results", str(results)]) == 0
    assert "history ack: 3 runs re-derived" in capsys.readouterr().out
    assert main(["history", "show", "ack", "--results", str(results)]) == 0
    assert "history ack: 3 runs" in capsys.readouterr().out
    assert main(["history", "show", "ack", "--results", str(results), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["history"] == "ack" and data["runs"] == 3 and data["open_alarms"] == 0
    assert main(["history", "ack", "ack", "--results", str(results)]) == 0
    assert "history ack: 0 alarm(s) accepted" in capsys.readouterr().out


def test_names_lists_everything_and_one_name_shows_its_docs_and_parameters(capsys):
    assert main(["names"]) == 0
    assert "techniques: " in capsys.readouterr().out
    assert main(["names", "prune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("technique prune\n") and "parameters:" in out and "amount:" in out
    assert main(["names", "prune", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "technique" and data["doc"] and "amount" in data["parameters"]
    assert main(["names", "prnue"]) == 2
    assert "did you mean 'prune'?" in capsys.readouterr().err


def test_schema_is_a_json_schema_of_the_suite(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["type"] == "object" and {"name", "models", "workloads"} <= set(
        schema["properties"]
    )


def test_every_shipped_suite_is_valid_under_the_schema_and_a_typo_is_not(capsys):
    """What an editor does with `bench schema`: every suite in suites/ passes, and a
    misspelt key, model or workload is flagged."""
    import tomllib

    import jsonschema

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    suites = sorted((Path(__file__).parents[1] / "suites").glob("*.toml"))
    assert len(suites) >= 10
    for path in suites:
        errors = [e.message for e in validator.iter_errors(tomllib.loads(path.read_text()))]
        assert errors == [], path.name
    good = {"name": "x", "models": [{"name": "tinygpt-s"}], "workloads": [{"name": "forward"}]}
    assert validator.is_valid(good)
    for typo in ({"run": {"repeat": 3}}, {"models": [{"name": "tinygpt-s", "weigths": "random"}]},
                 {"workloads": [{"name": "forwad"}]}):  # fmt: skip
        assert not validator.is_valid({**good, **typo}), typo


def test_llm_opt_bench_is_the_same_command():
    import importlib.metadata as md

    scripts = {e.name: e.value for e in md.entry_points(group="console_scripts")}
    if "llm-opt-bench" not in scripts:
        pytest.skip("the installed metadata predates the llm-opt-bench script: reinstall")
    assert scripts["llm-opt-bench"] == scripts["bench"] == "bench.cli:main"


def test_python_dash_m_bench_cli_still_runs():
    done = subprocess.run([sys.executable, "-m", "bench.cli", "--version"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("bench ")

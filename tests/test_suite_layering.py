"""Suites without footguns: --set overrides, extends, [defaults], the baseline rule, chains
spelled `chain`, the default repeats and weights, and the JSON Schema."""

import textwrap
import tomllib
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.spec.suite import json_schema, load_suite, parse_suite

SUITE = """
name = "t"
[run]
iterations = 3
[[models]]
name = "tinygpt-s"
weights = "random"
[[workloads]]
name = "forward"
batch = 1
seq_len = 16
[[techniques]]
name = "baseline"
[[techniques]]
name = "prune"
amount = 0.5
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    line = str(info.value)
    assert "\n" not in line
    return line


# --- --set -------------------------------------------------------------------------------


def test_overrides_are_toml_values_applied_before_validation(tmp_path):
    path = write(tmp_path, "s.toml", SUITE)
    suite = load_suite(
        path,
        ["run.repeats=5", "run.device=cpu", "workloads.0.batch=[1, 2]", "run.quality=true"],
    )
    assert suite.run.repeats == 5 and suite.run.device == "cpu" and suite.run.quality is True
    assert [c.workload.params["batch"] for c in suite.cases] == [1, 1, 2, 2]  # a list: an axis
    assert suite.overrides == (
        "run.repeats=5",
        "run.device=cpu",
        "workloads.0.batch=[1, 2]",
        "run.quality=true",
    )


def test_the_effective_suite_is_what_another_process_reads(tmp_path, monkeypatch):
    path = write(tmp_path, "s.toml", SUITE)
    suite = load_suite(path, ["run.repeats=4"])
    assert "--set" in suite.text and tomllib.loads(suite.text)["run"]["repeats"] == 4
    again = parse_suite(suite.text, where=str(path))  # e.g. a manifest's text, re-read
    assert again.sha256 == suite.sha256
    assert [c.hash for c in again.cases] == [c.hash for c in suite.cases]
    plain = load_suite(path)
    assert plain.text == path.read_text() and plain.overrides == ()  # no layers: as written
    assert plain.sha256 != suite.sha256
    # one text however the file is named (a shard job reads it by its absolute path)
    monkeypatch.chdir(tmp_path)
    assert load_suite("s.toml", ["run.repeats=4"]).sha256 == suite.sha256


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "run.repets=5",
            "S: --set run.repets=5: run.repets: unknown key (did you mean 'repeats'?); allowed "
            "keys: count_iterations, counters, country, device, dtype, energy, energy_min_s, "
            "idle_s, iterations, profile, profile_calls, profile_python, profile_stack, quality, "
            "repeats, sample_hz, seed, threads, timeout_s, warmup",
        ),
        (
            "run.repeats=0",
            "S: --set run.repeats=0: run.repeats: 0 is out of range: Input should be greater "
            "than or equal to 1",
        ),
        (
            "run.repeats",
            "S: --set 'run.repeats': expected KEY=VALUE with a dotted TOML key, e.g. run.repeats=5",
        ),
        (
            "a..b=1",
            "S: --set 'a..b=1': expected KEY=VALUE with a dotted TOML key, e.g. run.repeats=5",
        ),
        (
            "workloads.3.batch=2",
            "S: --set workloads.3.batch=2: workloads has 1 entries; name one by its index 0..0",
        ),
        ("name.x=1", "S: --set name.x=1: name is a value, not a table"),
        ("extends=other.toml", "S: --set extends=other.toml: extends cannot be overridden"),
        (
            "workloads.0.batchh=2",
            "S: --set workloads.0.batchh=2: workloads[0].batchh: unknown key (did you mean "
            "'batch'?); allowed keys: batch, seq_len",
        ),
    ],
)
def test_a_bad_override_is_one_line_naming_it(tmp_path, override, expected):
    path = write(tmp_path, "s.toml", SUITE)
    assert error_of(load_suite, path, [override]) == expected.replace("S", str(path), 1)


# --- extends -----------------------------------------------------------------------------


def test_extends_merges_tables_and_replaces_arrays_and_chains(tmp_path):
    write(tmp_path, "root.toml", 'description = "root"\n[run]\niterations = 7\nseed = 3\n')
    (tmp_path / "sub").mkdir()
    write(tmp_path, "sub/base.toml", 'extends = "../root.toml"\n' + SUITE)
    child = write(
        tmp_path,
        "sub/child.toml",
        """
        extends = "base.toml"
        name = "child"
        [run]
        seed = 5
        [[techniques]]
        name = "baseline"
        """,
    )
    suite = load_suite(child)
    assert suite.name == "child" and suite.description == "root"
    assert (suite.run.iterations, suite.run.seed) == (3, 5)  # base's 3 over root's 7
    assert [c.id for c in suite.cases] == ["tinygpt-s/forward-b1-s16/baseline"]  # replaced
    assert "extends" not in tomllib.loads(suite.text)
    # --set applies after the whole chain
    assert load_suite(child, ["run.seed=9"]).run.seed == 9


def test_extends_cycles_and_missing_bases_are_refused(tmp_path):
    a = write(tmp_path, "a.toml", 'extends = "b.toml"\n' + SUITE)
    write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    assert error_of(load_suite, a) == f"{tmp_path / 'b.toml'}: extends: extends makes a cycle: " \
        "a.toml -> b.toml -> a.toml"  # fmt: skip
    lone = write(tmp_path, "c.toml", 'extends = "nope.toml"\n' + SUITE)
    assert error_of(load_suite, lone) == (
        f"{lone}: extends: no such base suite {str(tmp_path / 'nope.toml')!r}"
    )


# --- [defaults] --------------------------------------------------------------------------


def test_defaults_fill_every_entry_of_a_name_and_entries_win(tmp_path):
    path = write(
        tmp_path,
        "s.toml",
        """
        name = "d"
        [defaults.workloads.generate]
        prompt_len = 8
        new_tokens = 4
        [defaults.techniques.prune]
        amount = 0.25
        [[models]]
        name = "tinygpt-s"
        weights = "random"
        [[workloads]]
        name = "generate"
        [[workloads]]
        name = "generate"
        new_tokens = 6
        [[workloads]]
        name = "forward"
        seq_len = 16
        [[techniques]]
        name = "baseline"
        [[techniques]]
        name = "prune"
        [[techniques]]
        chain = ["prune", { name = "prune", method = "random_unstructured" }]
        [[matrix.include]]
        model = { name = "tinygpt-s", weights = "random" }
        workload = { name = "generate", kv_cache = false }
        [[matrix.include]]
        model = { name = "tinygpt-s", weights = "random" }
        workload = [{ name = "generate", new_tokens = 3 }]
        """,
    )
    suite = load_suite(path)
    workloads = sorted({c.workload.label for c in suite.cases})
    assert workloads == [
        "forward-b1-s16",
        "generate-b1-p8-n3",
        "generate-b1-p8-n4",
        "generate-b1-p8-n4-nocache",
        "generate-b1-p8-n6",
    ]
    assert "tinygpt-s/generate-b1-p8-n4/prune-l1-0.25+prune-rand-0.25" in {
        c.id for c in suite.cases
    }
    assert "defaults" not in tomllib.loads(suite.text)
    # an override of a default reaches every entry that does not set the key
    again = load_suite(path, ["defaults.workloads.generate.new_tokens=2"])
    assert "generate-b1-p8-n2" in {c.workload.label for c in again.cases}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            "[defaults.workload.generate]\nx = 1",
            "defaults.workload: unknown key; allowed keys: models, workloads, techniques",
        ),
        (
            "[defaults.workloads.generat]\nnew_tokens = 1",
            "defaults.workloads.generat: unknown "
            "workload 'generat' (did you mean 'generate'?); known: eval, forward, generate, "
            "selftest, train",
        ),
        (
            "[defaults.workloads.forward]\nbatchh = 1",
            "defaults.workloads.forward.batchh: unknown "
            "key for forward; allowed keys: batch, seq_len",
        ),
    ],
)
def test_bad_defaults_name_their_key(table, expected):
    assert error_of(parse_suite, table + "\n" + SUITE, where="s.toml") == f"s.toml: {expected}"


def test_the_decoding_suite_shares_its_workload_keys():
    path = Path(__file__).parents[1] / "suites/decoding.toml"
    text = path.read_text()
    assert text.count("prompt_len") == 1 and "[defaults.workloads.generate]" in text
    assert len(load_suite(path).cases) == 30


# --- the baseline rule, chains -----------------------------------------------------------


def test_a_group_without_a_baseline_is_refused_in_one_line():
    no_baseline = SUITE.replace('[[techniques]]\nname = "baseline"\n', "")
    assert error_of(parse_suite, no_baseline, where="x.toml") == (
        "x.toml: workloads[0]: group tinygpt-s/forward-b1-s16 has no baseline case; add "
        'technique "baseline" to [[techniques]] or set baseline = false'
    )
    include = SUITE + (
        '[[matrix.include]]\nmodel = "tinygpt-s"\nworkload = "forward"\n'
        'technique = { name = "prune", amount = 0.5 }\n'
    )
    assert error_of(parse_suite, include, where="x.toml") == (
        "x.toml: matrix.include[0]: group tinygpt-s-pydoc/forward-b1-s128 has no baseline "
        'case; add an include with technique "baseline" or set baseline = false'
    )
    # opted out, on the workload and on the include
    opted = no_baseline.replace("seq_len = 16\n", "seq_len = 16\nbaseline = false\n")
    assert [c.id for c in parse_suite(opted).cases] == ["tinygpt-s/forward-b1-s16/prune-l1-0.5"]
    assert len(parse_suite(include + "baseline = false\n").cases) == 3


def test_the_old_chain_spelling_in_an_include_says_the_new_one():
    text = SUITE + (
        '[[matrix.include]]\nmodel = "tinygpt-s"\nworkload = "forward"\n'
        'technique = [{ name = "prune", amount = 0.5 }, "compile"]\n'
    )
    assert error_of(parse_suite, text, where="x.toml") == (
        "x.toml: matrix.include[0].technique: a list here is no longer a chain; write chain = "
        '["prune", "compile"] (a list is an axis everywhere; for several techniques write one '
        "include each)"
    )
    both = SUITE + (
        '[[matrix.include]]\nmodel = "tinygpt-s"\nworkload = "forward"\n'
        'technique = "baseline"\nchain = ["compile"]\n'
    )
    assert error_of(parse_suite, both, where="x.toml") == (
        "x.toml: matrix.include[0]: give 'technique' or 'chain', not both"
    )


def test_a_list_of_models_in_an_include_is_an_axis():
    text = SUITE + (
        '[[matrix.include]]\nmodel = ["tinygpt-s", "tinygpt-m"]\n'
        'workload = { name = "forward", seq_len = 16 }\n'
    )
    added = [c.id for c in parse_suite(text).cases][2:]
    assert added == [
        "tinygpt-s-pydoc/forward-b1-s16/baseline",
        "tinygpt-m-pydoc/forward-b1-s16/baseline",
    ]


# --- defaults that changed -----------------------------------------------------------------


def test_three_repeats_and_the_shipped_weights_by_default():
    suite = parse_suite('name = "m"\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\n'
                        'name = "forward"\n')  # fmt: skip
    assert suite.run.repeats == 3  # enough for an interval
    (case,) = suite.cases
    assert case.model.params["weights"] == "pydoc" and case.model.label == "tinygpt-s-pydoc"
    tiny_l = parse_suite(
        'name = "m"\n[[models]]\nname = "tinygpt-l"\n[[workloads]]\nname = "forward"\n'
    )
    assert tiny_l.cases[0].model.params["weights"] == "random"  # none shipped: never trained


def test_a_reshaped_shipped_model_must_say_which_weights():
    text = (
        'name = "m"\n[[models]]\nname = "tinygpt-s"\nn_layer = 2\n[[workloads]]\nname = "forward"\n'
    )
    assert error_of(parse_suite, text, where="x.toml") == (
        "x.toml: models[0]: a changed shape (n_layer) has no shipped weights; say weights = "
        '"random", or weights = "pydoc" to train them (minutes, cached)'
    )
    random = parse_suite(text.replace("n_layer = 2", 'n_layer = 2\nweights = "random"'))
    assert random.cases[0].model.label == "tinygpt-s-L2"


# --- the schema --------------------------------------------------------------------------


def test_the_json_schema_describes_every_key():
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    missing = []

    def walk(node, where):
        for key, prop in (node.get("properties") or {}).items():
            if not prop.get("description"):
                missing.append(f"{where}.{key}")
        for name, sub in (node.get("$defs") or {}).items():
            walk(sub, name)

    walk(schema, "suite")
    assert not missing
    props = schema["properties"]
    assert {"extends", "defaults", "run", "models", "matrix"} <= set(props)
    run = schema["$defs"]["RunSettings"]["properties"]
    assert (
        run["repeats"]["default"] == 3 and "additionalProperties" in schema["$defs"]["RunSettings"]
    )
    include = schema["$defs"]["Include"]["properties"]
    assert {"model", "workload", "technique", "chain", "baseline"} <= set(include)
    # entries: one alternative per registered name, each key also a list (an axis)
    models = {o["title"]: o for o in props["models"]["items"]["anyOf"]}
    assert {"tinygpt-s", "llama-tiny"} <= set(models)
    weights = models["tinygpt-s"]["properties"]["weights"]
    assert weights["default"] == "pydoc" and weights["anyOf"][1]["type"] == "array"
    workload = next(o for o in props["workloads"]["items"]["anyOf"] if o["title"] == "forward")
    assert {"batch", "seq_len", "baseline"} <= set(workload["properties"])
    assert workload["additionalProperties"] is False


# --- every process runs the effective suite ----------------------------------------------


def test_the_manifest_keeps_the_effective_text_and_its_overrides(tmp_path):
    from bench.run.suite_driver import RunOptions, _open_run

    suite = load_suite(write(tmp_path, "s.toml", SUITE), ["run.repeats=2"])
    _, _, manifest = _open_run(suite, RunOptions(results=tmp_path / "r"))
    assert manifest["suite"]["overrides"] == ["run.repeats=2"]
    assert parse_suite(manifest["suite"]["text"]).run.repeats == 2  # merge, history --confirm


def test_shard_jobs_and_side_servers_get_the_overrides(tmp_path, monkeypatch):
    from bench.run import ab, executors, suite_driver

    seen = []

    def fake_run(suite, opts, console=None):
        seen.append((suite.run.repeats, opts.shard))
        return suite_driver.RunOutcome("id", tmp_path, [], 0)

    monkeypatch.setattr(suite_driver, "run_suite", fake_run)
    path = write(tmp_path, "s.toml", SUITE)
    executors.shard_job(str(path), "1/2", str(tmp_path), {}, ("run.repeats=7",))
    assert seen == [(7, "1/2")]

    started = []

    class Stop(Exception):
        pass

    def popen(cmd, **kwargs):
        started.append(cmd)
        raise Stop

    monkeypatch.setattr(ab.subprocess, "Popen", popen)
    side = ab.SideSpec("base", path, None, overrides=("run.repeats=7",))
    with pytest.raises(Stop):
        ab.SideServer(side, tmp_path / "r", tmp_path / "log")
    assert started[0][-2:] == ["--set", "run.repeats=7"]

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.errors import UserError
from bench.spec.suite import Case, load_suite, parse_suite

BASE = """
name = "t"
[[models]]
name = "tinygpt-s"
weights = "random"
[[workloads]]
name = "forward"
batch = [1, 8]
seq_len = 16
"""


def parse(text: str):
    return parse_suite(textwrap.dedent(text), where="s.toml")


def test_matrix_is_the_cartesian_product_in_suite_order():
    suite = parse(
        BASE
        + """
[[techniques]]
name = "baseline"
[[techniques]]
name = "prune"
amount = [0.5, 0.9]
"""
    )
    assert [c.id for c in suite.cases] == [
        "tinygpt-s/forward-b1-s16/baseline",
        "tinygpt-s/forward-b1-s16/prune-l1-0.5",
        "tinygpt-s/forward-b1-s16/prune-l1-0.9",
        "tinygpt-s/forward-b8-s16/baseline",
        "tinygpt-s/forward-b8-s16/prune-l1-0.5",
        "tinygpt-s/forward-b8-s16/prune-l1-0.9",
    ]


def test_techniques_default_to_baseline_and_defaults_are_filled():
    suite = parse(BASE)
    case = suite.cases[0]
    assert case.is_baseline
    assert case.workload.params == {"batch": 1, "seq_len": 16}
    assert case.run["iterations"] == 10


def test_chain_expands_each_step_in_order():
    suite = parse(
        BASE
        + """
[[techniques]]
name = "baseline"
[[techniques]]
chain = [{name = "prune", amount = [0.1, 0.2]}, {name = "prune", method = "random_unstructured", amount = 0.3}]
[[techniques]]
chain = ["compile", {name = "prune", amount = 0.5}]
"""
    )
    ids = [c.id for c in suite.cases if "-b1-" in c.id and "+" in c.id]
    assert ids == [
        "tinygpt-s/forward-b1-s16/prune-l1-0.1+prune-rand-0.3",
        "tinygpt-s/forward-b1-s16/prune-l1-0.2+prune-rand-0.3",
        "tinygpt-s/forward-b1-s16/compile-default+prune-l1-0.5",
    ]
    assert [t.name for t in suite.cases[1].techniques] == ["prune", "prune"]


def test_exclude_and_include_rules():
    suite = parse(
        BASE
        + """
[[techniques]]
name = "baseline"
[[techniques]]
name = "prune"
amount = [0.5, 0.9]
[matrix]
exclude = [{"workload.batch" = 8, "prune.amount" = 0.9}, {"prune.amount" = 0.5, "workload.batch" = 1}]
include = [
  {model = "tinygpt-s", workload = {name = "generate", new_tokens = 4}, technique = {name = "prune", amount = 0.7}, baseline = false},
  {model = {name = "tinygpt-s", weights = "random"}, workload = {name = "forward", batch = 1, seq_len = 16}, chain = [{name = "prune", amount = 0.5}, "compile"]},
]
"""
    )
    assert [c.id for c in suite.cases] == [
        "tinygpt-s/forward-b1-s16/baseline",
        "tinygpt-s/forward-b1-s16/prune-l1-0.9",
        "tinygpt-s/forward-b8-s16/baseline",
        "tinygpt-s/forward-b8-s16/prune-l1-0.5",
        "tinygpt-s-pydoc/generate-b1-p32-n4/prune-l1-0.7",
        "tinygpt-s/forward-b1-s16/prune-l1-0.5+compile-default",
    ]


def test_case_hash_is_stable_and_content_based():
    a, b = parse(BASE).cases[0], parse(BASE).cases[0]
    assert a.hash == b.hash and len(a.hash) == 12
    other = parse(BASE.replace("seq_len = 16", "seq_len = 17")).cases[0]
    assert other.hash != a.hash
    # The suite's name is not part of what is measured.
    assert parse(BASE.replace('name = "t"', 'name = "u"')).cases[0].hash == a.hash


def test_case_json_round_trip():
    case = parse(BASE).cases[1]
    again = Case.from_json(case.to_json())
    assert again == case and again.id == case.id and again.hash == case.hash


def test_model_overrides_change_the_label():
    suite = parse(BASE.replace('name = "tinygpt-s"', 'name = "tinygpt-s"\nn_layer = [1, 2]'))
    assert {c.model.label for c in suite.cases} == {"tinygpt-s-L1", "tinygpt-s-L2"}


# Every user error: (suite text, the exact line bench prints after "bench: error: ").
BAD_SUITES = [
    pytest.param(
        'name = "t"\n[[models]\n',
        "s.toml: invalid TOML: Expected ']]' at the end of an array declaration (at line 2, column 9)",
        id="toml-syntax",
    ),
    pytest.param(
        BASE + "[run]\niteratons = 5\n",
        "s.toml: run.iteratons: unknown key (did you mean 'iterations'?); allowed keys: "
        "count_iterations, counters, country, "
        "device, dtype, energy, energy_min_s, idle_s, iterations, profile, profile_calls, profile_python, "
        "profile_stack, quality, repeats, sample_hz, seed, threads, timeout_s, warmup",
        id="unknown-key",
    ),
    pytest.param(
        BASE + "[run]\niterations = 'many'\n",
        "s.toml: run.iterations: 'many' is not allowed: Input should be a valid integer, "
        "unable to parse string as an integer",
        id="wrong-type",
    ),
    pytest.param(
        BASE + "[[techniques]]\nname = 'prune'\namount = [0.5, 1.5]\n",
        "s.toml: techniques[0].amount[1]: 1.5 is out of range: Input should be less than or equal to 1",
        id="out-of-range-in-axis",
    ),
    pytest.param(
        BASE + "[[techniques]]\nname = 'prune'\nmethod = 'l3'\namount = 0.5\n",
        "s.toml: techniques[0].method: 'l3' is not allowed: Input should be 'l1_unstructured', "
        "'random_unstructured', 'global_l1', 'ln_structured' or 'semi_structured_2_4'",
        id="bad-literal",
    ),
    pytest.param(
        BASE.replace('"tinygpt-s"', '"tinygpt-x"'),
        "s.toml: models[0].name: unknown model 'tinygpt-x' (did you mean 'tinygpt-s'?); "
        "known: gpt2-small-shape, gpt2-tiny, hf-local, llama-12m-shape, llama-1b-shape, "
        "llama-8b-shape, llama-tiny, tinygpt-l, tinygpt-m, tinygpt-s",
        id="unknown-model",
    ),
    pytest.param(
        BASE + "[[techniques]]\nname = 'quantise'\n",
        "s.toml: techniques[0].name: unknown technique 'quantise' (did you mean 'quantize'?); "
        "known: baseline, compile, delay, distill, lr_schedule, optimizer, parallel, precision, "
        "prune, quantize",
        id="unknown-technique",
    ),
    pytest.param(
        BASE.replace('"forward"', '"forwrd"'),
        "s.toml: workloads[0].name: unknown workload 'forwrd' (did you mean 'forward'?); "
        "known: eval, forward, generate, selftest, train",
        id="unknown-workload",
    ),
    pytest.param(
        BASE + "[[techniques]]\nname = 'prune'\namount = 0.5\nlevel = 2\n",
        "s.toml: techniques[0].level: unknown key; allowed keys: amount, execution, method, n, "
        "over, shrink",
        id="unknown-technique-key",
    ),
    pytest.param(
        BASE + "[[techniques]]\nname = 'prune'\n",
        "s.toml: techniques[0]: method 'l1_unstructured' needs an 'amount' between 0 and 1",
        id="missing-param",
    ),
    pytest.param(
        BASE + "[[techniques]]\nname = 'baseline'\n[[techniques]]\nname = 'baseline'\n",
        "s.toml: duplicate case 'tinygpt-s/forward-b1-s16/baseline' (from models[0], workloads[0], "
        "techniques[0] and models[0], workloads[0], techniques[1]); entries must differ in name or parameters",
        id="duplicate",
    ),
    pytest.param(
        BASE + "[matrix]\nexclude = [{model = 'tinygpt-s'}]\n",
        "s.toml: matrix: the matrix is empty: every case was excluded",
        id="empty-matrix",
    ),
    pytest.param(
        BASE + "[matrix]\nexclude = [{modle = 'tinygpt-s'}]\n",
        "s.toml: matrix.exclude[0].modle: unknown selector 'modle' (did you mean 'model'?); use "
        "model, workload, technique, or <model|workload|technique-name>.<parameter>",
        id="bad-selector",
    ),
    pytest.param(
        BASE.replace("batch = [1, 8]", "batch = []"),
        "s.toml: workloads[0].batch: an empty list leaves no values to run",
        id="empty-axis",
    ),
    pytest.param(
        'name = "t"\n[[workloads]]\nname = "forward"\n',
        "s.toml: models: required key is missing",
        id="no-models",
    ),
    pytest.param(
        BASE + "[[techniques]]\nchain = [{name = 'prune', amount = 2}]\n",
        "s.toml: techniques[0].chain[0].amount: 2 is out of range: Input should be less than or equal to 1",
        id="bad-chain-step",
    ),
    pytest.param(
        'name = "bad name!"\n' + BASE.split("\n", 2)[2],
        "s.toml: name: 'bad name!' is not allowed: String should match pattern "
        "'^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
        id="bad-suite-name",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SUITES)
def test_bad_suites_give_one_exact_line(text, expected):
    with pytest.raises(UserError) as info:
        parse_suite(text, where="s.toml")
    assert str(info.value) == expected
    assert "\n" not in str(info.value)


def test_missing_suite_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.toml: no such suite file"):
        load_suite(tmp_path / "nope.toml")


def test_shipped_suites_validate():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].glob("suites/*.toml")):
        assert load_suite(path).cases, path


def test_the_readme_suite_example_is_valid():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("## A suite, and what it prints", 1)[1].split("```toml\n", 1)[1]
    suite = parse_suite(example.split("```", 1)[0], where="README.md")
    assert [c.id for c in suite.cases] == [
        "tinygpt-s-pydoc/forward-b8-s128/baseline",
        "tinygpt-s-pydoc/forward-b8-s128/prune-l1-0.5",
        "tinygpt-s-pydoc/forward-b8-s128/prune-l1-0.9",
    ]


def test_the_docs_annotated_suite_example_is_valid():
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "suites.md").read_text()
    example = page.split("## An annotated suite", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    suite = parse_suite(example, where="docs/suites.md")
    ids = [c.id for c in suite.cases]
    assert "tinygpt-s-L2-pydoc/forward-b8-s128/prune-l1-0.5" in ids
    assert "tinygpt-s-pydoc/forward-b64-s128/baseline" in ids  # the shipped weights
    assert "tinygpt-s-L2-pydoc/forward-b8-s128/prune-l1-0.9" not in ids  # excluded


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.integers(1, 64), min_size=1, max_size=4, unique=True),
    amounts=st.lists(
        st.floats(0, 1).map(lambda x: round(x, 3)), min_size=1, max_size=4, unique=True
    ),
    layers=st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True),
)
def test_matrix_size_is_the_product_of_the_axes(batches, amounts, layers):
    text = f"""
name = "h"
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = {layers}
[[workloads]]
name = "forward"
batch = {batches}
baseline = false
[[techniques]]
name = "prune"
amount = {amounts}
"""
    cases = parse_suite(text).cases
    assert len(cases) == len(batches) * len(amounts) * len(layers)
    assert len({c.id for c in cases}) == len(cases) == len({c.hash for c in cases})


def test_union_values_explain_every_alternative():
    with pytest.raises(UserError) as info:
        parse_suite(BASE + "[run]\nwarmup = 'sometimes'\n", where="s.toml")
    assert str(info.value) == (
        "s.toml: run.warmup: 'sometimes' is not allowed: Input should be a valid integer, unable "
        "to parse string as an integer; or Input should be 'auto'"
    )
    assert parse_suite(BASE + "[run]\nwarmup = 'auto'\n").run.warmup == "auto"

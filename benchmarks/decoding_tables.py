"""The decoding tables of docs/findings.md, from a run of suites/decoding.toml: per strategy and
technique, tokens/s over process runs (geometric mean, 95% t interval), its ratio to greedy
decoding of the same model (interval; "~": within noise), and the quality figures of the
output (the same in every run: fixed weights, fixed prompts, seeded sampling); then, per
strategy, each technique against the unoptimized model decoding the same way.

    python benchmarks/decoding_tables.py results/<decoding run>
"""

from __future__ import annotations

import json
import sys

import numpy as np
from cells import interval, median, ratio, row

from bench import load_results
from bench.analysis import tables
from bench.analysis.decoding_plots import short_labels


def _greedy_of(df) -> dict[tuple[str, str], str]:
    """(model, technique) -> the case id of greedy decoding with the cache."""
    out = {}
    for case_id, g in df.groupby("case_id", sort=False):
        w = json.loads(g.parameters.iloc[0])["workload"]
        if w.get("strategy", "greedy") == "greedy" and w.get("kv_cache", True):
            out[(g.model.iloc[0], g.techniques.iloc[0])] = case_id
    return out


def decoding(run_dir: str) -> str:
    df = load_results(run_dir)
    values = tables.run_values(df)
    (run,) = tables.ok_rows(df).run_id.unique()
    greedy = _greedy_of(df)
    names = short_labels(list(df.workload.unique()))
    head = ["model", "strategy", "technique", "tokens/s [95%]", "× greedy [95%]",
            "log p (nats)", "greedy agreement", "byte match", "acceptance",
            "tokens/target pass"]  # fmt: skip
    out = [row(head), row(["---"] * len(head))]
    for case_id, g in df.groupby("case_id", sort=False):

        def get(metric: str, case: str = case_id):
            return values.get((run, case, metric))

        model, technique = g.model.iloc[0], g.techniques.iloc[0]
        base = greedy.get((model, technique))
        tokens = get("throughput_tokens")
        out.append(row([
            model,
            names[g.workload.iloc[0]],
            technique,
            interval(tokens, digits=".0f"),
            "1" if case_id == base else ratio(tokens, get("throughput_tokens", base)),
            median(get("sequence_logprob"), ".1f"),
            median(get("greedy_agreement"), ".2f"),
            median(get("continuation_byte_match"), ".3f"),
            median(get("draft_acceptance_rate"), ".2f"),
            median(get("tokens_per_target_forward"), ".2f"),
        ]))  # fmt: skip
    bits = {
        f"{m} {t}": np.median(values.get((run, c, "continuation_bits_per_byte")))
        for (m, t), c in greedy.items()
    }
    out.append(
        "\nTrue continuation, bits per byte under each model: "
        + ", ".join(f"{k} {b:.3f}" for k, b in bits.items())
    )
    return "\n".join(out) + "\n"


def techniques(run_dir: str) -> str:
    """Per strategy, each technique against the unoptimized model decoding the same way."""
    df = load_results(run_dir)
    values = tables.run_values(df)
    (run,) = tables.ok_rows(df).run_id.unique()
    names = short_labels(list(df.workload.unique()))
    cases = df.groupby(["model", "workload", "techniques"], sort=False).case_id.first()
    head = ["strategy", "technique", "tokens/s × unoptimized [95%]", "greedy agreement",
            "log p (nats)", "acceptance"]  # fmt: skip
    out = [row(head), row(["---"] * len(head))]
    for (model, workload, technique), case_id in cases.items():
        base = cases.get((model, workload, "baseline"))
        if technique == "baseline" or base is None:
            continue

        def get(metric: str, case: str = case_id):
            return values.get((run, case, metric))

        out.append(row([
            names[workload],
            technique,
            ratio(get("throughput_tokens"), get("throughput_tokens", base)),
            median(get("greedy_agreement"), ".2f"),
            median(get("sequence_logprob"), ".1f"),
            median(get("draft_acceptance_rate"), ".2f"),
        ]))  # fmt: skip
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(decoding(path))
        print(techniques(path))
        runs = load_results(path).groupby("case_id").repeat.nunique()
        print(f"(`{path}`, {runs.min()}–{runs.max()} process runs a case)\n")

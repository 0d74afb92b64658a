"""The README's decoding tables, from a run of suites/decoding.toml: per strategy and
technique, tokens/s over process runs (geometric mean, 95% t interval), its ratio to greedy
decoding of the same model (interval; "~": within noise), and the quality figures of the
output (the same in every run: fixed weights, fixed prompts, seeded sampling).

    python benchmarks/decoding_tables.py results/<decoding run>
"""

from __future__ import annotations

import json
import sys

import numpy as np
from cells import interval, median, ratio, row

from bench import load_results
from bench.analysis import tables


def _greedy_of(df) -> dict[str, str]:
    """Technique -> the case id of greedy decoding with the cache, for that technique."""
    out = {}
    for case_id, g in df.groupby("case_id", sort=False):
        w = json.loads(g.parameters.iloc[0])["workload"]
        if w.get("strategy", "greedy") == "greedy" and w.get("kv_cache", True):
            out[g.techniques.iloc[0]] = case_id
    return out


def decoding(run_dir: str) -> str:
    df = load_results(run_dir)
    values = tables.run_values(df)
    (run,) = tables.ok_rows(df).run_id.unique()
    greedy = _greedy_of(df)
    head = ["strategy", "technique", "tokens/s [95%]", "× greedy [95%]", "log p (nats)",
            "greedy agreement", "byte match", "acceptance", "tokens/target pass"]  # fmt: skip
    out = [row(head), row(["---"] * len(head))]
    prefix = "generate-b1-p128-n64-"
    for case_id, g in df.groupby("case_id", sort=False):

        def get(metric: str, case: str = case_id):
            return values.get((run, case, metric))

        technique = g.techniques.iloc[0]
        base = greedy.get(technique)
        workload = g.workload.iloc[0].removeprefix(prefix).removesuffix("heldout").strip("-")
        tokens = get("throughput_tokens")
        out.append(row([
            workload or "greedy",
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
        t: np.median(values.get((run, c, "continuation_bits_per_byte"))) for t, c in greedy.items()
    }
    out.append(
        "\nTrue continuation, bits per byte under each model: "
        + ", ".join(f"{t} {b:.3f}" for t, b in bits.items())
    )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(decoding(path))
        print(f"(`{path}`, {load_results(path).repeat.nunique()} process runs a case)\n")

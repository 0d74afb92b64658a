"""Apache Otava's change points for benchmarks/nightly.py, run in Otava's own environment
(it pins numpy 2.2 and scipy < 1.17, so it cannot sit beside bench).

stdin: JSON list of {"id", "y": [night values], "prefixes": [lengths]}; stdout: JSON
{id: {length: [[index, pvalue, mean_before, mean_after], ...]}}, from
``otava.analysis.compute_change_points`` with Otava's defaults (window 50, p < 0.001).
"""

import json
import sys

from otava.analysis import compute_change_points


def main() -> None:
    out = {}
    for req in json.load(sys.stdin):
        y = req["y"]
        res = {}
        for t in req["prefixes"]:
            cps, _ = compute_change_points(y[:t], window_len=50, max_pvalue=0.001)
            res[t] = [
                [int(c.index), float(c.stats.pvalue), float(c.stats.mean_1), float(c.stats.mean_2)]
                for c in cps
            ]
        out[req["id"]] = res
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

"""Where bench keeps what it computes once per machine (trained weights, bandwidth)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """BENCH_CACHE, else $XDG_CACHE_HOME/llm-bench, else ~/.cache/llm-bench."""
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-bench"

"""Benchmarking and profiling harness for LLM optimization techniques.

Importing bench is cheap: no torch, no CUDA, no transformers. Heavy modules load inside
the functions that need them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_results"]


def load_results(*paths: Any) -> Any:
    """Results (files, run folders or a results root) as a long pandas DataFrame."""
    from bench.results.store import load_results as _load

    return _load(*paths)

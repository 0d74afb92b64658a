"""Did CUDA graphs run? Under ``mode="reduce-overhead"`` inductor skips them for many
reasons (a CPU tensor among the inputs, an input mutated, dynamic shapes, ...) and carries
on without them: the case still says CUDA graphs while every step launches its kernels one
by one, about half as fast for a decoder. Inductor's only signs are a counter
(``counters["inductor"]["cudagraph_skips"]``) and a warning on its "cudagraphs" log; the
watch reads both around a workload, so a skip is recorded with its reason.
"""

from __future__ import annotations

import logging


class _Reasons(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


class CudaGraphWatch:
    """``with CudaGraphWatch() as w: ...``; then ``w.skips`` (graphs inductor chose not to
    capture) and ``w.reasons`` (its messages, in order)."""

    def __init__(self) -> None:
        self.skips = self.partitions = 0
        self.reasons: list[str] = []

    def __enter__(self) -> CudaGraphWatch:
        from torch._dynamo.utils import counters
        from torch._inductor import cudagraph_utils

        self._counters = counters["inductor"]
        self._start = self._counters["cudagraph_skips"]
        self._partitions = self._counters["cudagraph_partitions"]
        self._log = cudagraph_utils.cudagraphs_log
        self._handler = _Reasons(self.reasons)
        self._log.addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self._log.removeHandler(self._handler)
        self.skips = self._counters["cudagraph_skips"] - self._start
        # graph partitioning splits off what cannot be graphed without calling it a skip
        self.partitions = self._counters["cudagraph_partitions"] - self._partitions

    @property
    def ran(self) -> bool:
        """No skip was logged: graphs were not refused (whether they were recorded, a
        compile that fell back to eager would not say)."""
        return self.skips == 0

    def to_json(self) -> dict:
        reasons = list(dict.fromkeys(self.reasons))
        return {"skipped": self.skips, "partitions": self.partitions, "reasons": reasons}

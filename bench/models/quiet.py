"""What third-party imports say while bench checks a checkpoint, kept off the console.

Validating a local checkpoint imports transformers' modeling code, which imports torchao,
which on most machines says (through ``logging``, not ``warnings``):

- logger ``torchao``: "Failed to load .../_C_mxfp8...so" and "..._C_cutlass_90a...so"
  (optional kernels built for other GPUs or Python versions; with no handler configured,
  Python's last-resort handler prints them bare on stderr);
- logger ``torchao.kernel.intmm``: "Detected no triton" (muted by its NullHandler);
- logger ``torch.utils._pytree`` (through the ``torch`` logger's own stderr handler):
  "<enum ...> is an Enum subclass ... register_constant() on Enum subclasses is
  deprecated", once per torchao enum.

None of it concerns the user's suite. ``quiet()`` keeps these records, and any Python
``warnings``, in memory for the length of the calls it wraps; ``bench run`` writes them to
the run folder's ``logs/bench.log``, ``bench validate --verbose`` shows them. Nothing is
changed at ``import bench`` and loggers are restored on leaving.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Loggers whose records are kept (children included: they propagate to these).
NOISY_LOGGERS = ("torchao", "torch.utils._pytree")

kept: list[str] = []  # formatted records and warnings, in order, for this process


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kept.append(self.format(record))
        except Exception:  # a record that cannot be formatted must not break validation
            self.handleError(record)


@contextmanager
def quiet() -> Iterator[None]:
    """Keep, rather than print, what ``NOISY_LOGGERS`` log and what ``warnings`` would show
    while the body runs (in practice: the first import of transformers' modeling code)."""
    handler = _Keep()
    saved = []
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
        kept.extend(f"{w.category.__name__} {w.filename}:{w.lineno}: {w.message}" for w in caught)


def write_kept(path: Path) -> None:
    """Append what was kept so far to ``path`` (a run's log); nothing if nothing was."""
    if not kept:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write("".join(f"{line}\n" for line in kept))
    except OSError:  # a full disk: the run's own stop says so; this log is not worth a failure
        return
    kept.clear()  # written once: a process that runs several suites logs each line once

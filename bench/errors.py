"""Errors a user can cause. The CLI prints them as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for: a bad suite, an unknown name, a missing file.

    ``where`` is the file (and, when known, ``key`` the dotted key path inside it), so the
    message can point at exactly what to fix.
    """

    def __init__(self, message: str, *, where: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.key = key

    def __str__(self) -> str:
        parts = [p for p in (self.where, self.key) if p]
        return ": ".join([*parts, self.message])


class UnsupportedHere(Exception):
    """A case cannot run on this machine (e.g. a CUDA case without a GPU): status `skipped`."""


class Diverged(Exception):
    """A training loss stopped being a finite number: the case's outcome (status
    ``diverged``), not a fault of the harness."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"the training loss became {loss} at step {step}")
        self.step, self.loss = step, loss

"""A commit of this code whose built-in model sleeps a fraction of its forward time: a real,
known slowdown of every workload that runs the model (prefill and each decoding step), for
measuring whether the verdicts catch it. Used by benchmarks/verdicts.py.

``slowed_worktree(0.5, path)`` checks HEAD out as a detached git worktree at ``path``, makes
``GPT.forward`` sleep ``0.5 x`` its own compute time after each call, and commits that, so
``bench ab --candidate <that commit>`` and ``PYTHONPATH=path python -m bench run`` measure it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

TARGET = Path("bench/models/tinygpt.py")
START = "        T = idx.shape[1]\n"
END = "        return self.lm_head(self.ln_f(x))\n"


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=bench@localhost", "-c", "user.name=bench", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def patch(text: str, fraction: float) -> str:
    """``tinygpt.py``'s text with ``GPT.forward`` sleeping ``fraction`` of its compute time."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise RuntimeError(f"{TARGET}: GPT.forward changed; update benchmarks/slowed.py")
    text = text.replace(START, "        _t0 = __import__('time').perf_counter()\n" + START)
    return text.replace(
        END,
        "        _out = self.lm_head(self.ln_f(x))\n"
        f"        __import__('time').sleep({fraction!r} * "
        "(__import__('time').perf_counter() - _t0))\n"
        "        return _out\n",
    )


def slowed_worktree(fraction: float, into: Path, ref: str = "HEAD") -> str:
    """A detached worktree of ``ref`` at ``into`` with the slowed model committed; its commit."""
    top = Path(_git("rev-parse", "--show-toplevel", cwd=Path.cwd()))
    _git("worktree", "add", "--detach", str(into), ref, cwd=top)
    path = into / TARGET
    path.write_text(patch(path.read_text(), fraction))
    _git(
        "commit",
        "-qam",
        f"benchmark only: the built-in model sleeps {fraction:g}x its forward time",
        cwd=into,
    )
    return _git("rev-parse", "HEAD", cwd=into)


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], capture_output=True)

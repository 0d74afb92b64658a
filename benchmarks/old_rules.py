"""The verdict rules as they were before the two-level error model (commit ``OLD_REF``),
loaded from git, so that the benchmarks put the old rule's figures beside the new ones on
the same data: ``stats``, ``verdicts`` (process runs pooled as if independent, Welch t,
Holm) and ``changepoints`` (PELT, Mann-Whitney U, Holm, "lasted 2 nights", any later
IMPROVED closes an alarm).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

OLD_REF = "228c01b"  # the last commit with the old rules
MODULES = ("stats", "verdicts", "changepoints")


def load(ref: str = OLD_REF) -> SimpleNamespace:
    """The old modules, importable side by side with today's ``bench``."""
    top = Path(__file__).resolve().parent.parent
    root = Path(tempfile.mkdtemp(prefix="old-rules-"))
    package = root / "old_rules"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        text = subprocess.run(
            ["git", "show", f"{ref}:bench/analysis/{name}.py"],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        text = text.replace(
            "from bench.analysis import stats, verdicts", "from old_rules import stats, verdicts"
        )
        text = text.replace("from bench.analysis.stats import", "from old_rules.stats import")
        text = text.replace("from bench.analysis import verdicts", "from old_rules import verdicts")
        (package / f"{name}.py").write_text(text)
    modules: dict[str, ModuleType] = {}
    sys.path.insert(0, str(root))
    try:
        for name in MODULES:
            spec = importlib.util.spec_from_file_location(
                f"old_rules.{name}", package / f"{name}.py"
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[f"old_rules.{name}"] = module
            spec.loader.exec_module(module)
            modules[name] = module
    finally:
        sys.path.remove(str(root))
    return SimpleNamespace(**modules, ref=ref)

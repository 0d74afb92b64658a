"""Nothing is ever fetched from a model hub: the environment of the harness's own processes.

huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is first imported, so the switch
must be in a process's environment before anything imports transformers. Only processes
the harness starts get it (case processes, the fork server they come from, A/B side
servers, the counting server): the process that imports ``bench`` (a notebook, a user's
script) keeps its hub, and where the harness loads a checkpoint there (validation,
``--inline`` runs) every load passes ``local_files_only=True`` instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# TRANSFORMERS_OFFLINE too: older transformers read it rather than the hub's switch.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a harness process started with ``subprocess``: ``base`` (this
    process's environment by default) with the hub switched off."""
    return {**(os.environ if base is None else base), **OFFLINE_ENV}


def enter() -> None:
    """Switch the hub off in this process: only for a process the harness started itself
    (a case process's entry module calls it before importing torch or transformers)."""
    os.environ.update(OFFLINE_ENV)

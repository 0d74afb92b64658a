"""User strings that become file names (model labels, case ids, suite names, run ids):
encoded so that none climbs out of its folder and no two share a file."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def path_component(text: str) -> str:
    """``text`` as one file-name component that cannot leave its folder, one-to-one.

    Names made only of safe characters stay as they are (and never contain '~'); any other
    name has its unsafe characters replaced and a hash of the original appended after a
    '~', so two different names never share a file and '../' never climbs out."""
    if _UNSAFE.search(text) is None and text and not text.startswith("."):
        return text
    return hashed_name(text, text)


def hashed_name(readable: str, original: str) -> str:
    digest = hashlib.sha256(original.encode()).hexdigest()[:12]
    return f"{_UNSAFE.sub('_', readable).lstrip('.') or '_'}~{digest}"

"""User strings that become file names (model labels, case ids, suite names, run ids):
encoded so that none climbs out of its folder and no two share a file."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")
# File systems allow 255 bytes a name; a case file adds ".r12.json" and an atomic write's
# temporary name a prefix and a random tail, so a readable part is kept well under it.
MAX_READABLE = 160


def path_component(text: str) -> str:
    """``text`` as one file-name component that cannot leave its folder, one-to-one.

    Short names made only of safe characters stay as they are (and never contain '~'); any
    other name has its unsafe characters replaced, is cut short, and gets a hash of the
    original after a '~', so two different names never share a file, '../' never climbs
    out, and no name is too long for the file system."""
    if (
        _UNSAFE.search(text) is None
        and text
        and not text.startswith(".")
        and (len(text) <= MAX_READABLE)
    ):
        return text
    return hashed_name(text, text)


def hashed_name(readable: str, original: str) -> str:
    """``readable`` made safe and cut to ``MAX_READABLE``, then '~' and a hash of
    ``original``: one-to-one, and never too long for a file system."""
    digest = hashlib.sha256(original.encode()).hexdigest()[:12]
    return f"{_UNSAFE.sub('_', readable).lstrip('.')[:MAX_READABLE] or '_'}~{digest}"

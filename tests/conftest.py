from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write a suite file from an indented TOML string; returns its path."""

    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


TINY_MODEL = """
[[models]]
name = "tinygpt-s"
n_layer = 1
n_embd = 32
n_head = 2
block_size = 64
"""

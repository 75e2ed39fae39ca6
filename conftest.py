"""Root pytest configuration: fail early, with the command to run, when the environment is not the book's."""

from __future__ import annotations

import sys

import pytest

_HOW = "Install and test with:  python3.11 make.py test"


def pytest_configure(config: pytest.Config) -> None:
    if sys.version_info[:2] != (3, 11):
        raise pytest.UsageError(f"noether-book needs Python 3.11, this is {sys.version.split()[0]}. {_HOW}")
    missing = []
    for module in ("noether_lib", "torch", "sympy", "nbval", "myst_nb"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise pytest.UsageError(f"missing packages: {', '.join(missing)}. {_HOW}")


def pytest_ignore_collect(collection_path, config):
    """Never collect build output or checkpoints, whatever the command line says."""
    parts = set(collection_path.parts)
    if parts & {"_build", ".venv", ".ipynb_checkpoints"}:
        return True
    return None

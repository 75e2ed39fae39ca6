"""Every module of the library compiles and imports cleanly with warnings turned into errors."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import noether_lib

PACKAGE = Path(noether_lib.__file__).resolve().parent


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_names() -> list[str]:
    names = []
    for path in _sources():
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":  # running it is the command line, not an import
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_sources_compile_without_warnings():
    """Compiled afresh (a cached .pyc would hide them): invalid escapes and other syntax warnings fail."""
    for path in _sources():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_every_module_imports_under_W_error():
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, *_module_names()], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_control_a_bad_escape_fails(tmp_path):
    """The compile check can fail: a source with an invalid escape is rejected."""
    bad = 'x = "\\e"\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            compile(bad, "bad.py", "exec")
        except SyntaxError:
            return
    raise AssertionError("an invalid escape compiled without a warning")

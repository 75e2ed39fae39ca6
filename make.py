#!/usr/bin/env python3
"""One entry point for readers and CI: install, build the book, run the tests.

    python3.11 make.py book     # install into .venv, execute every notebook, build _build/html
    python3.11 make.py test     # install into .venv, lint and type-check, run the unit tests and nbval over every notebook
    python3.11 make.py lint     # install into .venv, run ruff (lint and format check) and mypy only
    python3.11 make.py lab      # install into .venv and open JupyterLab on book/
    python3.11 make.py book --fresh   # forget the execution cache and re-run every notebook

Everything is installed into a project-local virtual environment (``.venv``) from
``pyproject.toml`` with the versions pinned in ``requirements/constraints.txt``.
Re-running a command re-installs only when one of those two files changed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".noether-book-installed"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
REQUIRED = (3, 11)

PYTEST_ARGS = ["-n", "2", "--dist", "loadfile", "--nbval-lax", "--nbval-current-env"]
BOOK_ARGS = ["build", ".", "-W", "-n", "--keep-going"]


def fail(message: str) -> None:
    print(f"make.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_python() -> None:
    if sys.version_info[:2] != REQUIRED:
        fail(
            f"this project needs Python {REQUIRED[0]}.{REQUIRED[1]}, but make.py runs under "
            f"Python {sys.version.split()[0]} ({sys.executable}).\n"
            f"Run it as: python{REQUIRED[0]}.{REQUIRED[1]} make.py ..."
        )


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT, **kwargs)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def install_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", CONSTRAINTS):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install() -> None:
    """Create ``.venv`` and install the library with everything the book needs."""
    check_python()
    fingerprint = install_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        return
    if not (BIN / "python").exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    python = str(BIN / "python")
    run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip", "setuptools", "wheel"])
    run([python, "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS), "-e", ".[book,dev]"])
    STAMP.write_text(fingerprint + "\n")


def env() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PATH"] = f"{BIN}{os.pathsep}{environment.get('PATH', '')}"
    environment["VIRTUAL_ENV"] = str(VENV)
    environment.pop("MPLBACKEND", None)  # notebooks need IPython's inline backend to display figures
    environment.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return environment


def book(fresh: bool) -> None:
    install()
    if fresh:
        shutil.rmtree(ROOT / "_build", ignore_errors=True)
    run([str(BIN / "jupyter-book"), *BOOK_ARGS], env=env())
    print(f"\nThe book is in {ROOT / '_build' / 'html' / 'index.html'}")


#: The developer checks the test command runs first: lint, formatting and types (configured in pyproject.toml).
LINT_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("mypy",),
)


def lint() -> None:
    install()
    for command in LINT_COMMANDS:
        run([str(BIN / command[0]), *command[1:]], env=env())


def test(extra: list[str]) -> None:
    lint()
    run([str(BIN / "python"), "-m", "pytest", *PYTEST_ARGS, *extra], env=env())


def lab() -> None:
    install()
    run([str(BIN / "jupyter"), "lab", "book"], env=env())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="create .venv and install everything")
    p_book = sub.add_parser("book", help="install, execute the notebooks and build _build/html")
    p_book.add_argument("--fresh", action="store_true", help="drop _build (and its execution cache) first")
    p_test = sub.add_parser("test", help="install and run the unit tests and nbval over every notebook")
    p_test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments passed to pytest")
    sub.add_parser("lint", help="install and run ruff (lint, format check) and mypy")
    sub.add_parser("lab", help="install and start JupyterLab on book/")
    args = parser.parse_args(argv)
    if args.command == "install":
        install()
    elif args.command == "book":
        book(args.fresh)
    elif args.command == "test":
        test(args.pytest_args)
    elif args.command == "lint":
        lint()
    elif args.command == "lab":
        lab()


if __name__ == "__main__":
    main()

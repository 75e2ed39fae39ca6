"""What a run leaves on disk, where it came from, and how it is read back.

A run's folder ``<out>/<name>-<key>/`` (the key: :func:`~noether_lib.experiments.keys.run_key`) holds

* ``config.json``: the full configuration, its hash and the fingerprints of code, torch and data;
* ``metrics.csv``: one row per optimiser step (learning rate, training loss and accuracy of the batch), appended
  while the run goes;
* ``evaluation.csv``: test loss and accuracy after each evaluated epoch, appended likewise;
* ``charges/part-*.npz``: the tracked Noether charges per unit (the columns of
  ``noether_lib.schema.CHARGES_COLUMNS``, float32, compressed numpy), one part per stretch of the run;
  ``layers/part-*.npz`` the same columns summed over the units of each group (one row per step and group);
* ``result.json``: status (``finished`` or ``diverged``) with its message, final test accuracy and loss, the
  configuration, the names it was asked for under, library version, git commit, hardware and timings;
* ``checkpoint.pt`` (and the one before, ``checkpoint.prev.pt``) while the run is unfinished.

:class:`RunResult` reads such a folder back; its tables are read when first used, so that a sweep's results stay
light. Every file is written atomically under a unique temporary name.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import noether_lib
from noether_lib.experiments.config import ExperimentConfig

__all__ = [
    "RunResult",
    "book_results",
    "CsvLog",
    "write_part",
    "read_parts",
    "is_complete",
    "add_name",
    "provenance",
    "git_commit",
    "hardware",
    "write_json",
    "atomic_write",
]

CONFIG, METRICS, EVALUATION, CHARGES, LAYERS, RESULT, CHECKPOINT, PREVIOUS = (
    "config.json",
    "metrics.csv",
    "evaluation.csv",
    "charges",
    "layers",
    "result.json",
    "checkpoint.pt",
    "checkpoint.prev.pt",
)
METRICS_COLUMNS = ("step", "epoch", "lr", "loss", "accuracy")
EVALUATION_COLUMNS = ("epoch", "step", "test_loss", "test_accuracy")


def book_results() -> Path:
    """The experiment folder the book's notebooks share: ``$NOETHER_BOOK_RUNS`` if set, else ``_build/experiments``
    of the book's checkout (so that nbval and the book build of one CI run train each configuration once), else
    a folder under the system's temporary directory. Runs are keyed by code and data, so sharing is safe."""
    if os.environ.get("NOETHER_BOOK_RUNS"):
        return Path(os.environ["NOETHER_BOOK_RUNS"])
    root = Path(noether_lib.__file__).resolve().parents[1]
    if (root / "_config.yml").is_file() and os.access(root, os.W_OK):
        return root / "_build" / "experiments"
    return Path(tempfile.gettempdir()) / "noether-book-experiments"


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(handle)`` on a uniquely named temporary file beside ``path``, then move it into place."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as indented JSON atomically (a crash never leaves half a file)."""
    text = (json.dumps(values, indent=2, sort_keys=True, default=str) + "\n").encode()
    atomic_write(path, lambda stream: stream.write(text))


def _cell(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class CsvLog:
    """A CSV table appended row by row while a run goes; ``truncate`` rewinds it to a checkpoint's size."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path, self.columns = path, tuple(columns)
        if not path.is_file() or path.stat().st_size == 0:
            path.write_text(",".join(self.columns) + "\n")

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append ``rows`` and flush them to the file."""
        if rows:
            with self.path.open("a") as stream:
                stream.write("".join(",".join(_cell(v) for v in row) + "\n" for row in rows))

    def size(self) -> int:
        """The file's size in bytes (what a checkpoint remembers)."""
        return self.path.stat().st_size

    def truncate(self, size: int) -> None:
        """Drop everything after the first ``size`` bytes (rows written after the checkpoint being resumed)."""
        with self.path.open("r+b") as stream:
            stream.truncate(size)


def write_part(folder: Path, index: int, table: pd.DataFrame) -> None:
    """Write ``table`` as part ``index`` of ``folder``: floats as float32, integers as int32, booleans as they are,
    the rest as strings, compressed."""
    folder.mkdir(exist_ok=True)
    columns = {}
    for name in table.columns:
        values = table[name].to_numpy()
        if values.dtype.kind == "f":
            values = values.astype(np.float32)
        elif values.dtype.kind in "iu":
            values = values.astype(np.int32)
        elif values.dtype.kind != "b":
            values = values.astype(str)
        columns[name] = values
    atomic_write(folder / f"part-{index:06d}.npz", lambda stream: np.savez_compressed(stream, **columns))


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.npz")) if folder.is_dir() else []


def remove_parts(folder: Path, keep: int) -> None:
    """Delete the parts of ``folder`` from index ``keep`` on (written after the checkpoint being resumed)."""
    for path in _parts(folder)[keep:]:
        path.unlink()


def read_parts(folder: Path) -> pd.DataFrame | None:
    """The parts of ``folder`` as one table (``None`` if there are none)."""
    frames = []
    for path in _parts(folder):
        with np.load(path) as stored:
            frames.append(pd.DataFrame({name: stored[name] for name in stored.files}))
    return pd.concat(frames, ignore_index=True) if frames else None


def is_complete(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` has ended (finished or diverged), so that it need not run again."""
    path = run_dir / RESULT
    try:
        return path.is_file() and json.loads(path.read_text()).get("status") in ("finished", "diverged")
    except json.JSONDecodeError:
        return False


def add_name(run_dir: Path, name: str) -> None:
    """Record that the completed run in ``run_dir`` also answers to ``name`` (another sweep's name for it)."""
    path = run_dir / RESULT
    summary = json.loads(path.read_text())
    if name not in summary["names"]:
        summary["names"].append(name)
        write_json(path, summary)


def git_commit() -> dict[str, Any]:
    """The commit of the library's checkout and whether it had uncommitted changes (``None`` outside git)."""
    repo = Path(noether_lib.__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def hardware(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """The machine a run used: processor, device name, process count, library versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "world_size": world_size,
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


@functools.cache
def _cached_commit() -> tuple[tuple[str, Any], ...]:
    return tuple(git_commit().items())


def provenance(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Library version, git commit and hardware, saved beside every result."""
    return {
        "library_version": noether_lib.__version__,
        "git": dict(_cached_commit()),
        "hardware": hardware(device, world_size),
    }


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


@dataclass
class RunResult:
    """A run's saved results, read back from its folder; the tables are read when first used."""

    run_dir: Path
    config: ExperimentConfig
    summary: dict[str, Any]

    @property
    def status(self) -> str:
        """``"finished"`` or ``"diverged"``."""
        return str(self.summary["status"])

    @property
    def message(self) -> str:
        """Why the run ended."""
        return str(self.summary["message"])

    @functools.cached_property
    def metrics(self) -> pd.DataFrame:
        """One row per optimiser step, with the columns ``step, epoch, lr, loss, accuracy``."""
        return _read_csv(self.run_dir / METRICS)

    @functools.cached_property
    def evaluation(self) -> pd.DataFrame:
        """One row per evaluated epoch, with the columns ``epoch, step, test_loss, test_accuracy``."""
        return _read_csv(self.run_dir / EVALUATION)

    @functools.cached_property
    def charges(self) -> pd.DataFrame | None:
        """The per-unit charges table (``None`` without tracking)."""
        return read_parts(self.run_dir / CHARGES)

    @functools.cached_property
    def layer_charges(self) -> pd.DataFrame | None:
        """The charges table summed over the units of each group (``unit`` 0 stands for the whole layer)."""
        return read_parts(self.run_dir / LAYERS)

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResult:
        """Read a finished or diverged run's folder."""
        run_dir = Path(run_dir)
        if not is_complete(run_dir):
            raise FileNotFoundError(f"{str(run_dir)!r} holds no completed run (no {RESULT} with a final status)")
        summary = json.loads((run_dir / RESULT).read_text())
        return cls(run_dir, ExperimentConfig.from_dict(summary["config"]), summary)

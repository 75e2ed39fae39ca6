"""What a run leaves on disk, and where it came from.

A run's folder ``<out>/<name>-<hash>/`` holds

* ``config.json``: the full configuration and its hash;
* ``metrics.csv``: one row per optimiser step (learning rate, training loss and accuracy of the batch);
* ``evaluation.csv``: test loss and accuracy after each evaluated epoch;
* ``charges.csv``: the tracked Noether charges (one row per recorded step, group and unit);
* ``result.json``: status (``finished`` or ``diverged``) with its message, final test accuracy and loss, the
  configuration, the names it was asked for under, library version, git commit, hardware and timings;
* ``checkpoint.pt`` while the run is unfinished.

:class:`RunResult` reads such a folder back.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import noether_lib
from noether_lib.experiments.config import ExperimentConfig, config_hash

__all__ = ["RunResult", "run_directory", "add_name", "is_complete", "provenance", "git_commit", "hardware",
           "write_json"]

CONFIG, METRICS, EVALUATION, CHARGES, RESULT, CHECKPOINT = (
    "config.json", "metrics.csv", "evaluation.csv", "charges.csv", "result.json", "checkpoint.pt",
)


def run_directory(out_dir: str | Path, config: ExperimentConfig) -> Path:
    """The folder of ``config``'s results under ``out_dir``: an existing ``*-<hash>`` folder (the same run under
    another name), else ``<name>-<hash>``."""
    digest = config_hash(config)
    existing = sorted(p for p in Path(out_dir).glob(f"*-{digest}") if p.is_dir())
    return existing[0] if existing else Path(out_dir) / f"{config.name}-{digest}"


def add_name(run_dir: Path, name: str) -> None:
    """Record that the completed run in ``run_dir`` also answers to ``name`` (another sweep's name for it)."""
    path = run_dir / RESULT
    summary = json.loads(path.read_text())
    if name not in summary["names"]:
        summary["names"].append(name)
        write_json(path, summary)


def is_complete(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` has ended (finished or diverged), so that it need not run again."""
    path = run_dir / RESULT
    return path.is_file() and json.loads(path.read_text()).get("status") in ("finished", "diverged")


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as indented JSON atomically (a crash never leaves half a file)."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(values, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(partial, path)


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


def provenance(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Library version, git commit and hardware, saved beside every result."""
    return {"library_version": noether_lib.__version__, "git": git_commit(), "hardware": hardware(device, world_size)}


@dataclass
class RunResult:
    """A run's saved results, read back from its folder."""

    run_dir: Path
    config: ExperimentConfig
    summary: dict[str, Any]
    metrics: pd.DataFrame
    evaluation: pd.DataFrame
    charges: pd.DataFrame | None

    @property
    def status(self) -> str:
        """``"finished"`` or ``"diverged"``."""
        return str(self.summary["status"])

    @property
    def message(self) -> str:
        """Why the run ended."""
        return str(self.summary["message"])

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResult:
        """Read a finished or diverged run's folder."""
        run_dir = Path(run_dir)
        if not is_complete(run_dir):
            raise FileNotFoundError(f"{str(run_dir)!r} holds no completed run (no {RESULT} with a final status)")
        summary = json.loads((run_dir / RESULT).read_text())

        def table(name: str) -> pd.DataFrame | None:
            path = run_dir / name
            if not path.is_file():
                return None
            try:
                return pd.read_csv(path)
            except pd.errors.EmptyDataError:
                return pd.DataFrame()

        return cls(
            run_dir, ExperimentConfig.from_dict(summary["config"]), summary,
            table(METRICS), table(EVALUATION) if (run_dir / EVALUATION).is_file() else pd.DataFrame(), table(CHARGES),
        )

"""What a run's results depend on beyond its configuration, and the key that names its folder.

A result is valid for a configuration (:func:`~noether_lib.experiments.config.config_hash`) *and* the code that
computed it, the torch that ran it, the data it read, and, when batch norm is not synchronised, the number of
processes (each normalises its own share of the batch). :func:`run_fingerprint` collects these and :func:`run_key`
hashes them with the configuration, so a code change, another data folder or another process count never finds
an old result.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

import noether_lib
from noether_lib.data import data_fingerprint
from noether_lib.experiments.config import ExperimentConfig, config_hash

__all__ = ["source_fingerprint", "code_fingerprint", "run_fingerprint", "run_key"]


def source_fingerprint(package_dir: str | Path) -> str:
    """A hash of the names and bytes of every ``.py`` file under ``package_dir``."""
    digest = hashlib.blake2b(digest_size=8)
    root = Path(package_dir)
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """:func:`source_fingerprint` of the library this process imported, computed once per process (the code a
    process runs is the code it imported)."""
    return source_fingerprint(Path(noether_lib.__file__).parent)


def run_fingerprint(config: ExperimentConfig, world_size: int = 1) -> dict[str, Any]:
    """Everything besides the configuration that a run's results depend on: the library's code, the torch
    version, the data's content and (batch norm per process) the number of processes."""
    shares_batch_norm = config.batch_norm and world_size > 1 and not config.sync_batch_norm
    return {
        "code": code_fingerprint(),
        "torch": torch.__version__,
        "data": data_fingerprint(config.dataset, config.data_dir),
        "batch_norm_processes": world_size if shares_batch_norm else 1,
    }


def run_key(config: ExperimentConfig, fingerprint: dict[str, Any]) -> str:
    """The short hash naming a run's folder: the configuration and its :func:`run_fingerprint`."""
    payload = json.dumps({"config": config_hash(config), **fingerprint}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]

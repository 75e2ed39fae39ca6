"""Experiments at laptop and paper scale: configurations and presets, the runner, its command line and reports.

* :mod:`~noether_lib.experiments.config`: typed configurations and sweeps, validated field by field.
* :mod:`~noether_lib.experiments.presets`: the presets ``ci``, ``cifar10`` and ``paper``.
* :mod:`~noether_lib.experiments.inputs`: the data on the device, the model, seeded batches.
* :mod:`~noether_lib.experiments.keys`: what a result depends on besides its configuration (code, torch, data).
* :mod:`~noether_lib.experiments.runner`: caching, locking, and the result of a run.
* :mod:`~noether_lib.experiments.training`: one training session: data, model, loop, checkpoints, resume.
* :mod:`~noether_lib.experiments.charges`: the charge recorder, written to disk in stretches.
* :mod:`~noether_lib.experiments.records`: the files a run leaves, and their provenance.
* :mod:`~noether_lib.experiments.distributed`: data-parallel runs under ``torchrun``.
* :mod:`~noether_lib.experiments.statistics`: differences over seeds, Welch intervals, equivalence, contrasts.
* :mod:`~noether_lib.experiments.report`: replicate groups, summary tables and comparisons from saved results.
* :mod:`~noether_lib.experiments.figures`: their figures (seaborn).
* :mod:`~noether_lib.experiments.cli`: ``python -m noether_lib.experiments run|sweep|report|show``.
"""

from __future__ import annotations

from noether_lib.experiments.config import (
    ConfigError,
    ExperimentConfig,
    Sweep,
    apply_overrides,
    config_hash,
    parse_overrides,
)
from noether_lib.experiments.presets import PRESETS, Preset, get_preset
from noether_lib.experiments.records import RunResult
from noether_lib.experiments.runner import run_experiment, run_sweep
from noether_lib.experiments.training import CheckpointError, RunInterrupted

__all__ = [
    "ExperimentConfig",
    "ConfigError",
    "Sweep",
    "Preset",
    "PRESETS",
    "get_preset",
    "apply_overrides",
    "parse_overrides",
    "config_hash",
    "RunResult",
    "RunInterrupted",
    "CheckpointError",
    "run_experiment",
    "run_sweep",
]

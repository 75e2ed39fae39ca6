"""Experiments at laptop and paper scale: configurations and presets, the runner, its command line and reports.

* :mod:`~noether_lib.experiments.config`: typed configurations, sweeps and the presets ``ci``, ``cifar10``, ``paper``.
* :mod:`~noether_lib.experiments.runner`: training with checkpoints, resume, caching and divergence handling.
* :mod:`~noether_lib.experiments.records`: the files a run leaves, and their provenance.
* :mod:`~noether_lib.experiments.distributed`: data-parallel runs under ``torchrun``.
* :mod:`~noether_lib.experiments.hooks`: the runner's interface to symmetry discovery, the filter-norm
  constraint and the charge recorder.
* :mod:`~noether_lib.experiments.report`: summary tables and figures from saved results.
* :mod:`~noether_lib.experiments.cli`: ``python -m noether_lib.experiments run|sweep|report``.
"""
from __future__ import annotations

from noether_lib.experiments.config import (
    PRESETS, ExperimentConfig, Preset, Sweep, apply_overrides, config_hash, get_preset,
)
from noether_lib.experiments.records import RunResult
from noether_lib.experiments.runner import RunInterrupted, run_experiment, run_sweep

__all__ = [
    "ExperimentConfig", "Sweep", "Preset", "PRESETS", "get_preset", "apply_overrides", "config_hash",
    "RunResult", "RunInterrupted", "run_experiment", "run_sweep",
]

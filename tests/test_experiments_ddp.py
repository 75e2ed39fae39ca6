"""The runner under ``torchrun``: two CPU processes (gloo) track the same charges as one process.

Batch norm makes the comparison subtle: each DDP process normalises its own half of the global batch, so a
single process on the whole batch is *not* the same computation. The same computation is one process that
splits each global batch into two micro-batches (``micro_batches=2``: batch norm per micro-batch, gradients
summed), which is what the test compares against: charges and training losses agree to float32 rounding.
Only batch norm's running statistics (used at test time) differ: DDP broadcasts rank 0's, computed on its own
half-batches. (``SyncBatchNorm``, which normalises over the global batch, exists only for GPUs.)
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from noether_lib.experiments import apply_overrides, get_preset, run_experiment
from noether_lib.experiments.records import RunResult
from noether_lib.tolerances import DDP_REPRODUCTION

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = {"epochs": 1, "batch_size": 128, "lr_drops": (), "track_every": 1}


@pytest.mark.slow
def test_two_gloo_processes_track_what_one_process_tracks(tmp_path):
    out = tmp_path / "ddp"
    overrides = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in OVERRIDES.items()]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "noether_lib.experiments",
        "run",
        "ci",
        *overrides,
        "--out",
        str(out),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    ddp = RunResult.load(run_dir)
    assert ddp.summary["hardware"]["world_size"] == 2

    single = run_experiment(
        apply_overrides(get_preset("ci").base, {**OVERRIDES, "micro_batches": 2}),
        tmp_path / "single",
        progress=False,
        threads=1,
    )
    assert len(ddp.metrics) == len(single.metrics) == 11
    a, b = ddp.charges, single.charges
    keys = ["step", "group", "unit"]
    assert list(a[keys].itertuples(index=False)) == list(b[keys].itertuples(index=False))
    deviation = np.max(np.abs(a["charge"].to_numpy() - b["charge"].to_numpy()) / np.maximum(np.abs(b["charge"]), 1e-3))
    assert deviation <= DDP_REPRODUCTION, f"charges differ by {deviation:.2e} (relative)"
    loss_deviation = np.max(np.abs(ddp.metrics["loss"] - single.metrics["loss"]) / single.metrics["loss"])
    assert loss_deviation <= DDP_REPRODUCTION, f"losses differ by {loss_deviation:.2e} (relative)"
    # test accuracy uses batch norm's running statistics, which DDP takes from rank 0's half-batches only
    assert 0.0 <= ddp.summary["final_test_accuracy"] <= 1.0

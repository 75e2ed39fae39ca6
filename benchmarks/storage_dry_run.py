"""Storage and memory of the ``paper`` preset, measured on a short dry run and extrapolated to a whole run.

    python benchmarks/storage_dry_run.py [--json results.json]

The ``paper`` preset's network (VGG-11 with batch norm, 200 classes) trains on synthetic 64x64 images for a few
steps with the preset's recording settings (per-unit charges of ``track_units`` units per layer, per-layer sums of
all units). What is stored per recorded step, per optimiser step and per evaluation does not depend on the batch
size, so the dry run uses batches of 8 and records every step of a dozen; the sizes are then scaled to the paper's run: 100,000 training images, batch 128, 30 epochs, a record every ``track_every`` steps.

Measured against the issue's targets:

* records (metrics, evaluations, charges, layer sums) of one run: <= 100 MB;
* a checkpoint, at its largest (a full open stretch of the recorder): <= 3x the model and optimiser state;
* host memory of a sweep beyond one run: the results a sweep keeps (read lazily) times the sweep's runs, <= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import tempfile
import time
from pathlib import Path

import torch

from noether_lib.experiments import apply_overrides, config_hash, get_preset, run_experiment
from noether_lib.experiments.charges import STRETCH_ROWS
from noether_lib.experiments.records import CHECKPOINT, RunResult

PAPER_TRAIN_EXAMPLES, PAPER_TEST_EXAMPLES = 100_000, 10_000


def folder_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def state_bytes(state: object) -> int:
    """Bytes of the tensors in a (nested) state dictionary."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, list | tuple):
        return sum(state_bytes(v) for v in state)
    return 0


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args()
    paper = get_preset("paper").base
    steps = 12  # a record per step; the recorder's buffer has its full size (STRETCH_ROWS rows) from the start
    batch = 8
    dry = apply_overrides(
        paper,
        {
            "name": "dry",
            "dataset": "synthetic",
            "image_size": 64,
            "synthetic_examples": batch * steps,
            "epochs": 1,
            "batch_size": batch,
            "track_every": 1,
            "checkpoint_every": steps - 2,
            "augment": True,
        },
    )
    out = Path(tempfile.mkdtemp(prefix="noether-storage-"))
    started = time.perf_counter()
    result = run_experiment(dry, out, device="cpu", progress=False, threads=2, keep_checkpoint=True)
    run_dir = result.run_dir
    seconds = time.perf_counter() - started

    # per recorded step: the one part holds steps + 1 records (step 0 included)
    per_record = (folder_bytes(run_dir / "charges", "part-*.npz") + folder_bytes(run_dir / "layers", "part-*.npz")) / (
        steps + 1
    )
    metrics_per_step = (run_dir / "metrics.csv").stat().st_size / steps
    evaluation_per_epoch = (run_dir / "evaluation.csv").stat().st_size
    paper_steps = PAPER_TRAIN_EXAMPLES // paper.batch_size * paper.epochs
    paper_records = paper_steps // paper.track_every + 1
    records_total = per_record * paper_records + metrics_per_step * paper_steps + evaluation_per_epoch * paper.epochs
    fixed = folder_bytes(run_dir, "*.json")

    # the checkpoint: the recorder's buffer holds STRETCH_ROWS rows at every step, so any checkpoint is its largest
    saved = torch.load(run_dir / CHECKPOINT, weights_only=True)
    checkpoint_file = (run_dir / CHECKPOINT).stat().st_size
    model_optimizer = state_bytes(saved["model"]) + state_bytes(saved["optimizer"])
    recorder = state_bytes(saved["recorder"])

    # a sweep keeps light results (their tables are read when used): what one finished run costs its host memory
    kept = len(pickle.dumps(RunResult.load(run_dir)))
    sweep_runs = len({config_hash(c) for s in get_preset("paper").sweeps for c in s.configs(paper)})
    measured = {
        "dry_run_seconds": round(seconds, 1),
        "units_tracked": int(result.charges["unit"].max() + 1) if result.charges is not None else 0,
        "groups": int(result.layer_charges["group"].nunique()),
        "paper_units": sum(g["units"] for g in result.summary["symmetry_groups"]),
        "bytes_per_record": round(per_record),
        "paper_steps": paper_steps,
        "paper_records": paper_records,
        "records_mb_per_run": round((records_total + fixed) / 1e6, 2),
        "records_target_mb": 100,
        "checkpoint_mb": round(checkpoint_file / 1e6, 1),
        "model_optimizer_mb": round(model_optimizer / 1e6, 1),
        "recorder_state_mb": round(recorder / 1e6, 2),
        "checkpoint_ratio": round(checkpoint_file / model_optimizer, 3),
        "checkpoint_target_ratio": 3.0,
        "sweep_result_kb": round(kept / 1e3, 1),
        "sweep_runs": sweep_runs,
        "sweep_results_mb": round(kept * sweep_runs / 1e6, 2),
        "sweep_target_mb": 4000,
        "stretch_rows": STRETCH_ROWS,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3),
    }
    measured["meets_targets"] = bool(
        measured["records_mb_per_run"] <= 100
        and measured["checkpoint_ratio"] <= 3
        and measured["sweep_results_mb"] <= 4000
    )
    print(json.dumps(measured, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(measured, indent=2) + "\n")
    return measured


if __name__ == "__main__":
    main()

"""The experiment runner: trains one configuration, records it, checkpoints it, resumes it, caches it.

:func:`run_experiment` trains a :class:`~noether_lib.models.VGG` with SGD (heavy-ball momentum, weight decay,
step learning-rate drops through a scheduler) on the configured data, applies the paper's interventions (x10
initial filter scaling, constrained filter norms), records the Noether charges online, and writes everything to
the run's folder (:mod:`noether_lib.experiments.records`). Its guarantees:

* **Never a stale result**: a run's folder is named by its key (:func:`~noether_lib.experiments.keys.run_key`): the
  configuration plus the fingerprints of the library's code, torch, the data and (batch norm per process) the
  number of processes. A completed folder of the same key is read instead of training (``cached: <folder>``);
  anything else trains. ``rerun=True`` (``--rerun``) deletes the folder and starts over.
* **Shared output folders**: a per-run file lock (``filelock``) lets several sweeps share one ``out_dir``; a
  run is trained once, the others wait for it and read it.
* **Resume**: with ``checkpoint_every`` set, an interrupted run continues from its last checkpoint and produces
  the same files as an uninterrupted one (byte for byte on CPU). SIGTERM saves a checkpoint and stops the run
  (:class:`~noether_lib.experiments.training.RunInterrupted`). An unreadable checkpoint falls back to the one
  before it, or stops with :class:`~noether_lib.experiments.training.CheckpointError` naming the file.
* **Durability**: metrics, evaluations and charges are appended while the run goes; a crash loses at most the rows
  since the last flush (every step on CPU).
* **Divergence**: a non-finite loss, or one above ``max_loss_factor`` times the first loss, ends the run with
  status ``diverged`` and a message; what was recorded up to that step is kept. :func:`run_sweep` goes on.
* **Devices**: the GPU of the process when there is one, the CPU otherwise; ``bf16`` autocast as an option;
  data-parallel under ``torchrun`` (:mod:`noether_lib.experiments.distributed`), charges recorded on rank 0.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from noether_lib.experiments.config import ConfigError, ExperimentConfig, config_hash
from noether_lib.experiments.distributed import Distributed
from noether_lib.experiments.inputs import build_model, load_split  # noqa: F401 (their former address)
from noether_lib.experiments.keys import run_fingerprint, run_key
from noether_lib.experiments.records import (
    CHECKPOINT,
    CONFIG,
    PREVIOUS,
    RESULT,
    RunResult,
    add_name,
    is_complete,
    provenance,
    write_json,
)
from noether_lib.experiments.training import CheckpointError, RunInterrupted, Training  # noqa: F401 (re-exported)
from noether_lib.reproducibility import seed_everything

__all__ = ["run_directory", "run_experiment", "run_sweep"]


def run_directory(out_dir: str | Path, config: ExperimentConfig, key: str) -> Path:
    """The folder of the run with ``key`` under ``out_dir``: an existing ``*-<key>`` folder (the same run under
    another name), else ``<name>-<key>``."""
    existing = sorted(p for p in Path(out_dir).glob(f"*-{key}") if p.is_dir())
    return existing[0] if existing else Path(out_dir) / f"{config.name}-{key}"


def _check_layout(config: ExperimentConfig, ctx: Distributed) -> None:
    world, micro = ctx.world_size, config.micro_batches
    if config.batch_size % (world * micro):
        raise ConfigError(
            f"batch_size={config.batch_size}: must be divisible by processes x micro_batches = {world} x {micro}"
        )


@contextlib.contextmanager
def _run_lock(out_dir: Path, key: str, ctx: Distributed) -> Iterator[None]:
    """Hold the run's lock on rank 0 (the other ranks follow rank 0's decisions)."""
    if not ctx.is_main:
        yield
        return
    locks = out_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{key}.lock")):
        yield


def _older_versions(out_dir: Path, config: ExperimentConfig, key: str) -> list[Path]:
    """Folders holding this configuration under another key (other code, torch, data or process count)."""
    digest, found = config_hash(config), []
    for path in Path(out_dir).glob(f"*/{CONFIG}"):
        if path.parent.name.endswith(f"-{key}"):
            continue
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):
            if json.loads(path.read_text())["config_hash"] == digest:
                found.append(path.parent)
    return found


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path = "runs",
    *,
    device: str | None = None,
    progress: bool = True,
    verbose: bool = True,
    threads: int | None = None,
    deterministic: bool | None = None,
    keep_checkpoint: bool = False,
    rerun: bool = False,
    data_cache_dir: str | Path | None = None,
    sync_every: int | None = None,
    interrupt_at_step: int | None = None,
    tensorboard: bool = False,
) -> RunResult:
    """Train ``config`` and save its results under ``out_dir``, or read them if this run has already ended.

    Args:
        config: the run.
        out_dir: the folder of all runs; this one's results go to ``<out_dir>/<name>-<key>`` (:func:`run_directory`).
        device: ``"cpu"``, ``"cuda"``, ... (default: this process's GPU if there is one, else the CPU).
        progress: show a progress bar (rank 0 only) with loss and accuracy.
        verbose: print ``cached: <folder>`` for a run read from ``out_dir``, and notes on older versions.
        threads: CPU threads for PyTorch (default: leave PyTorch's choice).
        deterministic: deterministic kernels (default: on the CPU only; on GPUs they cost speed and resumed runs
            agree to floating-point reordering rather than bit for bit).
        keep_checkpoint: keep the last checkpoint after the run has ended.
        rerun: delete this run's folder first and train it from the start.
        data_cache_dir: where decoded Tiny ImageNet arrays are cached (default ``<out_dir>/_data``).
        sync_every: read losses back from the device every this many steps (default 1 on CPU, 50 on GPU).
        interrupt_at_step: stop after this step as if killed (for tests and wall-clock-limited jobs).
        tensorboard: also log the training and test metrics as TensorBoard scalars to ``<run>/tensorboard``
            (needs the ``tensorboard`` package: ``pip install 'noether-book[tensorboard]'``).

    Returns:
        The run's :class:`~noether_lib.experiments.records.RunResult` (status ``finished`` or ``diverged``).

    Raises:
        ConfigError: a configuration this run cannot take (raised before any folder is created).
        RunInterrupted: ``interrupt_at_step`` or SIGTERM; the checkpoints stay for a resume.
        CheckpointError: an unreadable checkpoint (and no readable one before it).
    """
    ctx, dev = Distributed.from_environment(device)
    _check_layout(config, ctx)
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--tensorboard: needs the tensorboard package: pip install 'noether-book[tensorboard]'")
    fingerprint = ctx.broadcast(run_fingerprint(config, ctx.world_size) if ctx.is_main else None)
    key = run_key(config, fingerprint)
    out = Path(out_dir)
    with _run_lock(out, key, ctx):
        run_dir = ctx.broadcast(run_directory(out, config, key) if ctx.is_main else None)
        if rerun and ctx.is_main and run_dir.exists():
            shutil.rmtree(run_dir)
        if ctx.broadcast(is_complete(run_dir) if ctx.is_main else None):
            if ctx.is_main:
                add_name(run_dir, config.name)
                if verbose:
                    print(f"cached: {run_dir}", file=sys.stderr)
            ctx.barrier()
            return RunResult.load(run_dir)
        if ctx.is_main and verbose:
            for older in _older_versions(out, config, key):
                print(
                    f"note: {older} holds this configuration from other code, torch, data or process count; "
                    f"training it again in {run_dir}",
                    file=sys.stderr,
                )
        return _train(
            config,
            run_dir,
            out,
            ctx,
            dev,
            fingerprint,
            key,
            progress=progress,
            verbose=verbose,
            threads=threads,
            deterministic=deterministic,
            keep_checkpoint=keep_checkpoint,
            data_cache_dir=data_cache_dir,
            sync_every=sync_every,
            interrupt_at_step=interrupt_at_step,
            tensorboard=tensorboard,
        )


def _train(
    config: ExperimentConfig,
    run_dir: Path,
    out: Path,
    ctx: Distributed,
    dev: Any,
    fingerprint: dict[str, Any],
    key: str,
    *,
    progress: bool,
    verbose: bool,
    threads: int | None,
    deterministic: bool | None,
    keep_checkpoint: bool,
    data_cache_dir: str | Path | None,
    sync_every: int | None,
    interrupt_at_step: int | None,
    tensorboard: bool,
) -> RunResult:
    """Train the run in ``run_dir`` (from its checkpoint, if any) and write its result."""
    session_start = time.perf_counter()
    seed_everything(
        config.seed, deterministic=dev.type == "cpu" if deterministic is None else deterministic, threads=threads
    )
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            run_dir / CONFIG,
            {"config": config.to_dict(), "config_hash": config_hash(config), "key": key, "fingerprint": fingerprint},
        )
    ctx.barrier()
    training = Training(
        config,
        run_dir,
        ctx,
        dev,
        data_cache_dir=Path(data_cache_dir or out / "_data"),
        sync_every=sync_every,
        progress=progress,
        verbose=verbose,
        tensorboard=tensorboard,
    )
    status, message, last_step = training.train(interrupt_at_step)
    if ctx.is_main:
        if status == "diverged":
            print(message, file=sys.stderr)
        training.close(last_step)
        timings = {
            "data_seconds_last_session": training.data_seconds,
            "wall_seconds_last_session": time.perf_counter() - session_start,
        }
        _write_result(run_dir, config, training, status, message, last_step, timings, fingerprint, key)
        if not keep_checkpoint:
            for name in (CHECKPOINT, PREVIOUS):
                (run_dir / name).unlink(missing_ok=True)
    ctx.barrier()
    return RunResult.load(run_dir)


def _write_result(
    run_dir: Path,
    config: ExperimentConfig,
    training: Training,
    status: str,
    message: str,
    last_step: int,
    session: dict[str, float],
    fingerprint: dict[str, Any],
    key: str,
) -> None:
    """Write ``result.json``: outcome, configuration, keys, timings, symmetry groups and provenance."""
    state = training.state
    final = state.last_evaluation if status == "finished" else None
    write_json(
        run_dir / RESULT,
        {
            "status": status,
            "message": message,
            "config": config.to_dict(),
            "config_hash": config_hash(config),
            "replicate_hash": config_hash(config, without=("seed",)),
            "key": key,
            "fingerprint": fingerprint,
            "names": [config.name],
            "steps": last_step,
            "total_steps": training.total_steps,
            "steps_per_epoch": training.steps_per_epoch,
            "test_examples": len(training.split.y_test),
            "final_test_loss": final[2] if final else None,
            "final_test_accuracy": final[3] if final else None,
            "final_train_loss": state.last_metrics[3] if state.last_metrics else None,
            "timings": {
                "train_seconds": state.train_seconds,
                "train_cpu_seconds": state.train_cpu_seconds,
                "eval_seconds": state.eval_seconds,
                "sessions": state.sessions,
                **session,
                "examples_per_second": state.step * config.batch_size / max(state.train_seconds, 1e-9),
            },
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "symmetry_groups": [{"kind": g.kind, "name": g.name, "units": g.num_units} for g in training.groups],
            **provenance(training.device, training.ctx.world_size),
        },
    )


def run_sweep(configs: Sequence[ExperimentConfig], out_dir: str | Path = "runs", **options: Any) -> list[RunResult]:
    """Run (or read from the cache) every configuration in turn; a diverged run is reported and the sweep goes on,
    and so does it past a run with an unreadable checkpoint (reported on stderr, left out of the results).

    ``options`` are passed to :func:`run_experiment`. The results are light: their tables are read when used.
    """
    results = []
    for config in configs:
        try:
            results.append(run_experiment(config, out_dir, **options))
        except CheckpointError as error:
            print(f"skipped: {error}", file=sys.stderr)
    return results

"""The experiment runner: trains one configuration, records it, checkpoints it, resumes it, caches it.

:func:`run_experiment` trains a :class:`~noether_lib.models.VGG` with SGD (heavy-ball momentum, weight decay,
step learning-rate drops) on the configured data, applies the paper's interventions (x10 initial filter scaling,
constrained filter norms), records the Noether charges online, and writes everything to the run's folder
(:mod:`noether_lib.experiments.records`). Its guarantees:

* **Caching**: a configuration whose folder holds a completed result is not run again; the saved result is read
  (also when another sweep asks for the same configuration under another name).
* **Resume**: with ``checkpoint_every`` set, an interrupted run continues from its last checkpoint and produces
  the same results as an uninterrupted one (bit for bit on CPU). Everything random is a function of the seed and
  the step (data order per epoch, augmentation per step), so a checkpoint holds only the model, the optimiser,
  the recorder and the records so far.
* **Divergence**: a non-finite loss, or one above ``max_loss_factor`` times the first loss, ends the run with
  status ``diverged`` and a message; what was recorded up to that step is kept. :func:`run_sweep` goes on.
* **Devices**: the GPU of the process when there is one (chosen at run time), the CPU otherwise; ``bf16``
  autocast as an option; data-parallel under ``torchrun`` (:mod:`noether_lib.experiments.distributed`), with the
  charges recorded on rank 0 from the all-reduced gradients.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from noether_lib.data import Split, load_digits
from noether_lib.datasets import (
    channel_statistics,
    load_cifar10,
    load_tiny_imagenet,
    random_crop_flip,
    synthetic_images,
)
from noether_lib.experiments import hooks
from noether_lib.experiments.config import ExperimentConfig, config_hash
from noether_lib.experiments.distributed import Distributed
from noether_lib.experiments.records import (
    CHARGES, CHECKPOINT, CONFIG, EVALUATION, METRICS, RESULT, RunResult, add_name, is_complete, provenance,
    run_directory, write_json,
)
from noether_lib.models import VGG
from noether_lib.reproducibility import make_generator, seed_everything
from noether_lib.symmetry import SymmetryGroup

__all__ = ["RunInterrupted", "load_split", "build_model", "run_experiment", "run_sweep"]


class RunInterrupted(RuntimeError):
    """Raised when a run stops at ``interrupt_at_step``, as if killed; its checkpoints stay for a resume."""


def load_split(config: ExperimentConfig, cache_dir: str | Path | None = None) -> Split:
    """The configured data set (``data_dir`` is needed for CIFAR-10 and Tiny ImageNet)."""
    if config.dataset == "digits":
        return load_digits(images=True)
    if config.dataset == "synthetic":
        return synthetic_images(config.synthetic_examples, max(64, config.synthetic_examples // 8),
                                size=config.image_size, seed=config.seed)
    if config.data_dir is None:
        raise ValueError(f"dataset {config.dataset!r} is read from a local folder: give data_dir (--data-dir DIR)")
    if config.dataset == "cifar10":
        return load_cifar10(config.data_dir)
    return load_tiny_imagenet(config.data_dir, cache_dir=cache_dir)


def build_model(config: ExperimentConfig, split: Split) -> VGG:
    """The configured VGG for ``split``'s channels and classes (initialised from the global random state)."""
    return VGG(config.model, in_channels=split.input_shape[0], num_classes=split.num_classes,
               batch_norm=config.batch_norm, conv_bias=config.conv_bias, width=config.width)


class _DeviceData:
    """The whole data set on the training device; batches are gathered by index and standardised there."""

    def __init__(self, split: Split, device: torch.device) -> None:
        self.device = device
        self.x_train, self.y_train = split.x_train.to(device), split.y_train.to(device)
        self.x_test, self.y_test = split.x_test.to(device), split.y_test.to(device)
        self.raw = split.x_train.dtype == torch.uint8
        if self.raw:
            mean, std = channel_statistics(split.x_train)
            self.mean, self.std = mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std if self.raw else x

    def train_batch(self, index: torch.Tensor, shifts: torch.Tensor | None, flips: torch.Tensor | None):
        x = self.x_train[index]
        if shifts is not None:
            x = random_crop_flip(x, shifts.to(self.device), flips.to(self.device))
        return self.standardise(x), self.y_train[index]


@dataclass
class _Progress:
    """Everything a checkpoint carries besides model, optimiser and recorder."""

    step: int = 0
    metrics: list[tuple[int, int, float, float, float]] = field(default_factory=list)
    evaluation: list[tuple[int, int, float, float]] = field(default_factory=list)
    reference_loss: float | None = None
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    eval_seconds: float = 0.0
    sessions: int = 0


def _autocast(config: ExperimentConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if config.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def _evaluate(model: nn.Module, data: _DeviceData, ctx: Distributed, config: ExperimentConfig) -> tuple[float, float]:
    """Test loss and accuracy; under DDP each process evaluates a slice and the sums are all-reduced."""
    model.eval()
    n = len(data.y_test)
    lo, hi = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    sums = torch.zeros(3, dtype=torch.float64, device=data.device)
    chunk = max(512, config.batch_size)
    for start in range(lo, hi, chunk):
        x, y = data.standardise(data.x_test[start:min(start + chunk, hi)]), data.y_test[start:min(start + chunk, hi)]
        with _autocast(config, data.device):
            out = model(x)
        sums[0] += F.cross_entropy(out.float(), y, reduction="sum")
        sums[1] += (out.argmax(1) == y).sum()
        sums[2] += len(y)
    ctx.all_reduce_sum(sums)
    model.train()
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def _seeded(config: ExperimentConfig, stream: int, index: int) -> torch.Generator:
    """A private generator for one epoch's order (stream 0) or one step's augmentation (stream 1)."""
    return make_generator((config.seed * 2 + stream) * 1_000_003 + index)


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     recorder: hooks.Recorder | None, progress: _Progress) -> None:
    partial = path.with_suffix(".partial")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "recorder": recorder.state_dict() if recorder is not None else None,
                "progress": progress.__dict__}, partial)
    os.replace(partial, path)


def _write_tables(run_dir: Path, progress: _Progress, recorder: hooks.Recorder | None, last_step: int) -> None:
    pd.DataFrame(progress.metrics, columns=["step", "epoch", "lr", "loss", "accuracy"]).to_csv(
        run_dir / METRICS, index=False)
    pd.DataFrame(progress.evaluation, columns=["epoch", "step", "test_loss", "test_accuracy"]).to_csv(
        run_dir / EVALUATION, index=False)
    if recorder is not None:
        charges = recorder.table()
        if "step" in charges:
            charges = charges[charges["step"] <= last_step]
        charges.to_csv(run_dir / CHARGES, index=False)



@dataclass
class _Parts:
    """What a run trains: the model (and its DDP wrapper), the optimiser, and the chapters' instruments."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.SGD
    groups: list[SymmetryGroup]
    constraint: hooks.Constraint | None
    recorder: hooks.Recorder | None


def _build(config: ExperimentConfig, split: Split, data: _DeviceData, dev: torch.device, ctx: Distributed) -> _Parts:
    """Initialise the model from the (already seeded) global random state, find its symmetries, apply the x10
    scaling, and attach the optimiser and the filter-norm constraint (the recorder comes after a resume)."""
    model = build_model(config, split).to(dev)
    groups = hooks.discover(model, data.standardise(data.x_train[: max(2, min(8, config.batch_size))]))
    if (config.init_scale != 1.0 or config.constrain_filter_norms) and not any(g.kind == "scale" for g in groups):
        raise ValueError(f"{config.name}: init_scale and constrain_filter_norms need scale-invariant filters "
                         "(conv layers feeding batch norm), and this model has none")
    hooks.scale_initial_filters(model, groups, config.init_scale)
    if ctx.world_size > 1 and config.sync_batch_norm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    constraint = hooks.make_constraint(model, groups) if config.constrain_filter_norms else None
    net = model
    if ctx.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    return _Parts(model, net, optimizer, groups, constraint, None)


def _batch(config: ExperimentConfig, data: _DeviceData, order: torch.Tensor, step: int, steps_per_epoch: int,
           ctx: Distributed) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's share of the global batch of ``step`` (and its augmentation, drawn for the global batch)."""
    batch, local = config.batch_size, config.batch_size // ctx.world_size
    mine = slice(ctx.rank * local, (ctx.rank + 1) * local)
    within = step % steps_per_epoch
    rows = order[within * batch:(within + 1) * batch][mine]
    shifts = flips = None
    if config.augment:
        generator = _seeded(config, 1, step)
        shifts = torch.randint(0, 9, (batch, 2), generator=generator)[mine]
        flips = (torch.rand(batch, generator=generator) < 0.5)[mine]
    return data.train_batch(rows, shifts, flips)


def _train_step(parts: _Parts, x: torch.Tensor, y: torch.Tensor, lr: float, config: ExperimentConfig,
                dev: torch.device, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step (gradients accumulated over the micro-batches, all-reduced under DDP), then the constraint and
    the recorder; returns the batch's mean loss and correct count, left on the device."""
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    parts.optimizer.zero_grad(set_to_none=True)
    micro = config.micro_batches
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev)
    for j, (xm, ym) in enumerate(zip(x.chunk(micro), y.chunk(micro))):
        quiet = parts.net.no_sync() if world > 1 and j < micro - 1 else contextlib.nullcontext()
        with quiet:
            with _autocast(config, dev):
                out = parts.net(xm)
            loss = F.cross_entropy(out.float(), ym)
            (loss / micro).backward()
        loss_sum += loss.detach() / micro
        correct += (out.argmax(1) == ym).sum()
    parts.optimizer.step()
    if parts.constraint is not None:
        parts.constraint.apply()
    if parts.recorder is not None:
        parts.recorder.step()
    return loss_sum, correct


def _write_result(run_dir: Path, config: ExperimentConfig, state: _Progress, status: str, message: str,
                  last_step: int, total_steps: int, steps_per_epoch: int, session: dict[str, float],
                  groups: list[SymmetryGroup], dev: torch.device, world: int) -> None:
    """Write ``result.json``: outcome, configuration, timings, symmetry groups and provenance."""
    final = state.evaluation[-1] if status == "finished" else None
    write_json(run_dir / RESULT, {
        "status": status, "message": message, "config": config.to_dict(), "config_hash": config_hash(config),
        "names": [config.name], "steps": last_step, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
        "final_test_loss": final[2] if final else None, "final_test_accuracy": final[3] if final else None,
        "final_train_loss": state.metrics[-1][3] if state.metrics else None,
        "timings": {"train_seconds": state.train_seconds, "train_cpu_seconds": state.train_cpu_seconds,
                    "eval_seconds": state.eval_seconds, "sessions": state.sessions, **session,
                    "examples_per_second": state.step * config.batch_size / max(state.train_seconds, 1e-9)},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "symmetry_groups": [{"kind": g.kind, "name": g.name, "units": g.num_units} for g in groups],
        **provenance(dev, world),
    })


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path = "runs",
    *,
    device: str | None = None,
    progress: bool = True,
    threads: int | None = None,
    deterministic: bool | None = None,
    keep_checkpoint: bool = False,
    data_cache_dir: str | Path | None = None,
    sync_every: int | None = None,
    interrupt_at_step: int | None = None,
) -> RunResult:
    """Train ``config`` and save its results under ``out_dir``, or read them if it has already run.

    Args:
        config: the run.
        out_dir: the folder of all runs; this one's results go to ``<out_dir>/<name>-<hash>``
            (:func:`~noether_lib.experiments.records.run_directory`).
        device: ``"cpu"``, ``"cuda"``, ... (default: this process's GPU if there is one, else the CPU).
        progress: show a progress bar (rank 0 only) with loss, accuracy and throughput.
        threads: CPU threads for PyTorch (default: leave PyTorch's choice).
        deterministic: deterministic kernels (default: on the CPU only; on GPUs they cost speed, PyTorch lacks
            some, e.g. adaptive average pooling's backward, and resumed runs agree to floating-point reordering
            rather than bit for bit).
        keep_checkpoint: keep the last checkpoint after the run has ended.
        data_cache_dir: where decoded Tiny ImageNet arrays are cached (default ``<out_dir>/_data``).
        sync_every: read losses back from the device every this many steps (default 1 on CPU, 50 on GPU).
        interrupt_at_step: stop after this step as if killed (for tests and wall-clock-limited jobs): raises
            :class:`RunInterrupted`; rerunning the same call resumes from the last checkpoint.

    Returns:
        The run's :class:`~noether_lib.experiments.records.RunResult` (status ``finished`` or ``diverged``).
    """
    ctx, dev = Distributed.from_environment(device)
    run_dir = run_directory(out_dir, config)
    if ctx.broadcast(is_complete(run_dir) if ctx.is_main else None):
        if ctx.is_main:
            add_name(run_dir, config.name)
        ctx.barrier()
        return RunResult.load(run_dir)
    session_start = time.perf_counter()
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, {"config": config.to_dict(), "config_hash": config_hash(config)})
    batch, world, micro = config.batch_size, ctx.world_size, config.micro_batches
    if batch % (world * micro):
        raise ValueError(f"batch_size {batch} must be divisible by processes x micro_batches = {world} x {micro}")
    if not ctx.is_main:
        ctx.barrier()  # rank 0 reads (and caches) the data first; the others then read its cache
    split = load_split(config, data_cache_dir if data_cache_dir is not None else Path(out_dir) / "_data")
    if ctx.is_main:
        ctx.barrier()
    data = _DeviceData(split, dev)
    steps_per_epoch = len(split.y_train) // batch
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch} exceeds the {len(split.y_train)} training examples")
    total_steps = steps_per_epoch * config.epochs
    data_seconds = time.perf_counter() - session_start

    seed_everything(config.seed, deterministic=dev.type == "cpu" if deterministic is None else deterministic,
                    threads=threads)
    parts = _build(config, split, data, dev, ctx)
    model, optimizer = parts.model, parts.optimizer

    state = _Progress()
    checkpoint = run_dir / CHECKPOINT
    saved = None
    if ctx.broadcast(checkpoint.is_file() if ctx.is_main else None):
        saved = torch.load(checkpoint, map_location=dev, weights_only=False)  # our own file
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = _Progress(**saved["progress"])
    state.sessions += 1
    if config.track_charges and ctx.is_main:  # built on the restored optimiser, whose state it reads every step
        parts.recorder = hooks.make_recorder(model, optimizer, parts.groups, config.track_every)
        if saved is not None and saved["recorder"] is not None:
            parts.recorder.load_state_dict(saved["recorder"])
    recorder = parts.recorder

    sync_every = sync_every or (1 if dev.type == "cpu" else 50)
    status, message, last_step = "finished", f"finished {total_steps} steps", total_steps
    bar = tqdm(total=total_steps, initial=state.step, desc=config.name, unit="step", file=sys.stderr,
               disable=not (progress and ctx.is_main), dynamic_ncols=True)
    pending: list[tuple[int, int, float, torch.Tensor, torch.Tensor]] = []
    order: torch.Tensor | None = None
    order_epoch = -1
    tick, cpu_tick = time.perf_counter(), time.process_time()

    def flush() -> int | None:
        """Bring the pending losses to the host; return the first diverging step, if any."""
        nonlocal tick, cpu_tick
        values = ctx.all_reduce_sum(torch.stack([torch.stack([l, c]) for *_, l, c in pending]).double())
        elapsed = time.perf_counter() - tick
        state.train_seconds += elapsed
        state.train_cpu_seconds += time.process_time() - cpu_tick
        bad = None
        for (step, epoch, lr, _, _), (loss_sum, correct) in zip(pending, values.tolist()):
            loss = loss_sum / world
            state.metrics.append((step, epoch, lr, loss, correct / batch))
            if state.reference_loss is None:
                state.reference_loss = loss
            if not (loss == loss and abs(loss) < float("inf")) or loss > config.max_loss_factor * state.reference_loss:
                bad = step
                break
        done = len(pending)
        pending.clear()
        bar.update(done)
        _, _, _, loss, accuracy = state.metrics[-1]
        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.3f}", refresh=False,
                        img_s=f"{done * batch / max(elapsed, 1e-9):.0f}")
        tick, cpu_tick = time.perf_counter(), time.process_time()
        return bad

    try:
        while state.step < total_steps:
            epoch = state.step // steps_per_epoch
            if epoch != order_epoch:
                order = torch.randperm(len(split.y_train), generator=_seeded(config, 0, epoch)).to(dev)
                order_epoch = epoch
            lr = config.lr_at_epoch(epoch)
            x, y = _batch(config, data, order, state.step, steps_per_epoch, ctx)
            loss_sum, correct = _train_step(parts, x, y, lr, config, dev, world)
            state.step += 1
            pending.append((state.step, epoch, lr, loss_sum, correct))

            end_of_epoch = state.step % steps_per_epoch == 0
            saving = config.checkpoint_every and state.step % config.checkpoint_every == 0 and state.step < total_steps
            if (state.step % sync_every == 0 or end_of_epoch or saving or state.step == total_steps
                    or state.step == interrupt_at_step):
                bad = flush()
                if bad is not None:
                    last_step = bad
                    state.metrics = [row for row in state.metrics if row[0] <= bad]
                    status = "diverged"
                    message = (f"{config.name}: diverged at step {bad} of {total_steps}: training loss "
                               f"{state.metrics[-1][3]:.4g} is not finite or exceeds {config.max_loss_factor:g} x the "
                               f"first loss {state.reference_loss:.4g}; the records up to that step are kept")
                    break
            if end_of_epoch and ((epoch + 1) % config.eval_every == 0 or state.step == total_steps):
                started = time.perf_counter()
                test_loss, test_accuracy = _evaluate(model, data, ctx, config)
                state.eval_seconds += time.perf_counter() - started
                state.evaluation.append((epoch + 1, state.step, test_loss, test_accuracy))
                tick, cpu_tick = time.perf_counter(), time.process_time()
            if saving:
                if ctx.is_main:
                    _save_checkpoint(checkpoint, model, optimizer, recorder, state)
                ctx.barrier()
                tick, cpu_tick = time.perf_counter(), time.process_time()
            if interrupt_at_step is not None and state.step >= interrupt_at_step:
                raise RunInterrupted(f"{config.name}: interrupted after step {state.step}; rerun to resume")
    finally:
        bar.close()

    if ctx.is_main:
        if status == "diverged":
            print(message, file=sys.stderr)
        _write_tables(run_dir, state, recorder, last_step)
        timings = {"data_seconds_last_session": data_seconds,
                   "wall_seconds_last_session": time.perf_counter() - session_start}
        _write_result(run_dir, config, state, status, message, last_step, total_steps, steps_per_epoch, timings,
                      parts.groups, dev, world)
        if not keep_checkpoint and checkpoint.is_file():
            checkpoint.unlink()
    ctx.barrier()
    return RunResult.load(run_dir)


def run_sweep(configs: Sequence[ExperimentConfig], out_dir: str | Path = "runs", **options: Any) -> list[RunResult]:
    """Run (or read from the cache) every configuration in turn; a diverged run is reported and the sweep goes on.

    ``options`` are passed to :func:`run_experiment`.
    """
    results = []
    for config in configs:
        results.append(run_experiment(config, out_dir, **options))
    return results

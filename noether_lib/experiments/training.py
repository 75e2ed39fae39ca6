"""One training session of a run: data on the device, the model and its instruments, the loop, checkpoints.

:class:`Training` is what :func:`~noether_lib.experiments.runner.run_experiment` drives once it has decided that a
run must train: it loads the data, builds the model (symmetry discovery, the x10 scaling, the filter-norm
constraint), restores the last checkpoint if there is one, trains while appending metrics, evaluations and charges
to the run's files, and checkpoints. Everything random is a function of the seed and the step (data order per
epoch, augmentation per step), so a checkpoint holds only the model, the optimiser, the learning-rate schedule,
the open stretch of the charge recorder and the sizes of the files written so far.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from noether_lib.experiments.charges import ChargeRecorder
from noether_lib.experiments.config import ConfigError, ExperimentConfig
from noether_lib.experiments.distributed import Distributed
from noether_lib.experiments.inputs import DeviceData, autocast, build_model, load_split, seeded
from noether_lib.experiments.records import (
    CHARGES,
    CHECKPOINT,
    EVALUATION,
    EVALUATION_COLUMNS,
    LAYERS,
    METRICS,
    METRICS_COLUMNS,
    PREVIOUS,
    CsvLog,
    atomic_write,
    remove_parts,
)
from noether_lib.normalization import FilterNormConstraint
from noether_lib.symmetry import SymmetryGroup, find_symmetries, scale_filter_norms

__all__ = ["RunInterrupted", "CheckpointError", "Progress", "Training"]


class RunInterrupted(RuntimeError):
    """A run stopped before its end (``interrupt_at_step``, or SIGTERM, which saves a checkpoint first); running
    the same command again resumes it from its last checkpoint."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file and the way out."""


@dataclass
class Progress:
    """What a checkpoint carries besides model, optimiser, schedule and recorder: plain numbers only."""

    step: int = 0
    reference_loss: float | None = None
    last_metrics: list[Any] = field(default_factory=list)
    last_evaluation: list[Any] = field(default_factory=list)
    metrics_bytes: int = 0
    evaluation_bytes: int = 0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    eval_seconds: float = 0.0
    sessions: int = 0


class _StopSignal:
    """Notes a SIGTERM (cluster pre-emption) while installed, so that the loop checkpoints and stops."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> _StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.received = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Training:
    """One session of one run in ``run_dir``: set up (data, model, resume), then :meth:`train`."""

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: Path,
        ctx: Distributed,
        device: torch.device,
        *,
        data_cache_dir: Path,
        sync_every: int | None,
        progress: bool,
        verbose: bool,
        tensorboard: bool = False,
    ) -> None:
        self.config, self.run_dir, self.ctx, self.device = config, run_dir, ctx, device
        self.progress_bar, self.verbose = progress, verbose
        started = time.perf_counter()
        if not ctx.is_main:
            ctx.barrier()  # rank 0 reads (and caches) the data first; the others then read its cache
        split = load_split(config, data_cache_dir)
        if ctx.is_main:
            ctx.barrier()
        self.split, self.data = split, DeviceData(split, device)
        self.steps_per_epoch = len(split.y_train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size={config.batch_size}: exceeds the {len(split.y_train)} training examples")
        self.total_steps = self.steps_per_epoch * config.epochs
        self.data_seconds = time.perf_counter() - started
        self.sync_every = sync_every or (1 if device.type == "cpu" else 50)
        self._build()
        self.state = Progress()
        saved = self._restore()
        self.state.sessions += 1
        self.writer: Any = None
        if tensorboard and ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=self.state.step + 1)
        self.recorder: ChargeRecorder | None = None
        if config.track_charges and ctx.is_main:  # built on the restored optimiser, whose state it reads
            self.recorder = ChargeRecorder(
                self.model,
                self.optimizer,
                self.groups,
                run_dir,
                every=config.track_every,
                units=config.track_units,
                state=saved.get("recorder") if saved else None,
            )

    # -- set-up ---------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        """Initialise the model from the (already seeded) global random state, find its symmetries, apply the x10
        scaling, attach the optimiser, its schedule and the filter-norm constraint."""
        config, ctx = self.config, self.ctx
        model = build_model(config, self.split).to(self.device)
        example = self.data.standardise(self.data.x_train[: max(2, min(8, config.batch_size))])
        self.groups: list[SymmetryGroup] = find_symmetries(copy.deepcopy(model), example)
        scale_groups = [g for g in self.groups if g.kind == "scale"]
        if (config.init_scale != 1.0 or config.constrain_filter_norms) and not scale_groups:
            raise ConfigError(
                f"init_scale={config.init_scale:g}, constrain_filter_norms="
                f"{config.constrain_filter_norms}: need scale-invariant filters (conv layers feeding "
                "batch norm), and this model has none"
            )
        if config.init_scale != 1.0:
            scale_filter_norms(model, self.groups, config.init_scale)
        if ctx.world_size > 1 and config.sync_batch_norm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, config.drop_steps(self.total_steps), gamma=config.lr_drop_factor
        )
        if config.constrain_filter_norms:  # projected inside optimizer.step(), before the recorder reads the weights
            constraint = FilterNormConstraint(model, scale_groups)
            self.optimizer.register_step_post_hook(lambda *_: constraint.apply())
        self.net: nn.Module = model
        if ctx.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _read_checkpoint(self) -> dict[str, Any] | None:
        """The newest readable checkpoint; the previous one if the newest is unreadable; ``None`` if there is none."""
        latest, previous = self.run_dir / CHECKPOINT, self.run_dir / PREVIOUS
        failure = None
        for path in (latest, previous):
            if not path.is_file():
                continue
            try:
                saved = torch.load(path, map_location=self.device, weights_only=True)
            except Exception as error:
                failure = failure or f"{path}: cannot be read ({type(error).__name__}: {str(error)[:200]})"
                continue
            if failure and self.verbose:
                print(f"{failure}; resuming from the checkpoint before it, {path}", file=sys.stderr)
            return saved
        if failure:
            raise CheckpointError(f"{failure}; run again with --rerun (rerun=True) to start this run over")
        return None

    def _restore(self) -> dict[str, Any] | None:
        """Continue from the last checkpoint (rewinding the files to it), or start the files afresh."""
        saved = self.ctx.broadcast(self._read_checkpoint() if self.ctx.is_main else None)
        if self.ctx.is_main:
            metrics, evaluation = self.run_dir / METRICS, self.run_dir / EVALUATION
            if saved is None:
                metrics.unlink(missing_ok=True)
                evaluation.unlink(missing_ok=True)
                for name in (CHARGES, LAYERS):
                    remove_parts(self.run_dir / name, 0)
            self.metrics_log = CsvLog(metrics, METRICS_COLUMNS)
            self.evaluation_log = CsvLog(evaluation, EVALUATION_COLUMNS)
        if saved is None:
            return None
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = Progress(**saved["progress"])
        if self.ctx.is_main:
            self.metrics_log.truncate(self.state.metrics_bytes)
            self.evaluation_log.truncate(self.state.evaluation_bytes)
        return saved

    def checkpoint(self) -> None:
        """Save a checkpoint (rank 0), keeping the one before it as a fallback."""
        if self.ctx.is_main:
            self.state.metrics_bytes, self.state.evaluation_bytes = self.metrics_log.size(), self.evaluation_log.size()
            payload = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "recorder": self.recorder.state_dict() if self.recorder is not None else None,
                "progress": asdict(self.state),
            }
            latest = self.run_dir / CHECKPOINT
            if latest.is_file():
                latest.replace(self.run_dir / PREVIOUS)
            atomic_write(latest, lambda stream: torch.save(payload, stream))
            if self.writer is not None:
                self.writer.flush()
        self.ctx.barrier()

    # -- the loop -------------------------------------------------------------------------------------------------
    def _batch(self, order: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of the global batch of ``step`` (and its augmentation, drawn for the global batch)."""
        config, ctx = self.config, self.ctx
        batch, local = config.batch_size, config.batch_size // ctx.world_size
        mine = slice(ctx.rank * local, (ctx.rank + 1) * local)
        within = step % self.steps_per_epoch
        rows = order[within * batch : (within + 1) * batch][mine]
        shifts = flips = None
        if config.augment:
            generator = seeded(config, 1, step)
            shifts = torch.randint(0, 9, (batch, 2), generator=generator)[mine]
            flips = (torch.rand(batch, generator=generator) < 0.5)[mine]
        return self.data.train_batch(rows, shifts, flips)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step (gradients accumulated over the micro-batches, all-reduced under DDP; the constraint and the
        recorder act inside ``optimizer.step()``), then the schedule; returns the batch's mean loss and correct count, left on the device."""
        micro, world = self.config.micro_batches, self.ctx.world_size
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for j, (xm, ym) in enumerate(zip(x.chunk(micro), y.chunk(micro))):
            quiet = self.net.no_sync() if world > 1 and j < micro - 1 else contextlib.nullcontext()  # type: ignore[operator]
            with quiet:
                with autocast(self.config, self.device):
                    out = self.net(xm)
                loss = F.cross_entropy(out.float(), ym)
                (loss / micro).backward()
            loss_sum += loss.detach() / micro
            correct += (out.argmax(1) == ym).sum()
        self.optimizer.step()
        if self.recorder is not None:
            self.recorder.step(self.state.step + 1)
        self.scheduler.step()
        return loss_sum, correct

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Test loss and accuracy; under DDP each process evaluates a slice and the sums are all-reduced."""
        model, data, ctx = self.model, self.data, self.ctx
        model.eval()
        n = len(data.y_test)
        lo, hi = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
        sums = torch.zeros(3, dtype=torch.float64, device=data.device)
        chunk = max(512, self.config.batch_size)
        for start in range(lo, hi, chunk):
            end = min(start + chunk, hi)
            with autocast(self.config, data.device):
                out = model(data.standardise(data.x_test[start:end]))
            sums[0] += F.cross_entropy(out.float(), data.y_test[start:end], reduction="sum")
            sums[1] += (out.argmax(1) == data.y_test[start:end]).sum()
            sums[2] += end - start
        ctx.all_reduce_sum(sums)
        model.train()
        return float(sums[0] / sums[2]), float(sums[1] / sums[2])

    def _flush(
        self,
        pending: list[tuple[int, int, float, torch.Tensor, torch.Tensor]],
        stop: _StopSignal,
    ) -> tuple[int | None, bool]:
        """Bring the pending losses to the host and append them to ``metrics.csv``; return the first diverging step
        (if any) and whether any process received SIGTERM."""
        config, world = self.config, self.ctx.world_size
        stacked = torch.stack([torch.stack([loss, c]) for *_, loss, c in pending]).double()
        flags = torch.tensor([[float(stop.received), 0.0]], dtype=torch.float64, device=stacked.device)
        values = self.ctx.all_reduce_sum(torch.cat([stacked, flags]))
        rows, bad = [], None
        for (step, epoch, lr, _, _), (loss_sum, correct) in zip(pending, values[:-1].tolist()):
            loss = loss_sum / world
            rows.append((step, epoch, lr, loss, correct / config.batch_size))
            if self.state.reference_loss is None:
                self.state.reference_loss = loss
            if (
                not (loss == loss and abs(loss) < float("inf"))
                or loss > config.max_loss_factor * self.state.reference_loss
            ):
                bad = step
                break
        if self.ctx.is_main:
            self.metrics_log.append(rows)
            if self.writer is not None:
                for step, _, lr, loss, accuracy in rows:
                    for tag, value in (("train/loss", loss), ("train/accuracy", accuracy), ("train/lr", lr)):
                        self.writer.add_scalar(tag, value, step)
        self.state.last_metrics = list(rows[-1])
        pending.clear()
        return bad, bool(values[-1, 0] > 0)

    def train(self, interrupt_at_step: int | None = None) -> tuple[str, str, int]:
        """Train to the end (or divergence); returns ``(status, message, last step)``.

        Raises:
            RunInterrupted: at ``interrupt_at_step`` (as if killed), or after SIGTERM (with a checkpoint saved).
        """
        config, state, total = self.config, self.state, self.total_steps
        bar = tqdm(
            total=total,
            initial=state.step,
            desc=config.name,
            unit="step",
            file=sys.stderr,
            disable=not (self.progress_bar and self.ctx.is_main),
            dynamic_ncols=True,
        )
        pending: list[tuple[int, int, float, torch.Tensor, torch.Tensor]] = []
        order, order_epoch = torch.empty(0), -1
        tick, cpu_tick = time.perf_counter(), time.process_time()
        try:
            with _StopSignal() as stop:
                while state.step < total:
                    epoch = state.step // self.steps_per_epoch
                    if epoch != order_epoch:
                        order = torch.randperm(len(self.split.y_train), generator=seeded(config, 0, epoch))
                        order, order_epoch = order.to(self.device), epoch
                    lr = float(self.optimizer.param_groups[0]["lr"])
                    loss_sum, correct = self._train_step(*self._batch(order, state.step))
                    state.step += 1
                    pending.append((state.step, epoch, lr, loss_sum, correct))
                    end_of_epoch = state.step % self.steps_per_epoch == 0
                    saving = bool(config.checkpoint_every) and state.step % config.checkpoint_every == 0
                    if (
                        state.step % self.sync_every == 0
                        or end_of_epoch
                        or saving
                        or state.step == total
                        or state.step == interrupt_at_step
                    ):
                        bad, stopping = self._flush(pending, stop)
                        now, cpu_now = time.perf_counter(), time.process_time()
                        state.train_seconds += now - tick
                        state.train_cpu_seconds += cpu_now - cpu_tick
                        bar.n = state.step
                        bar.set_postfix(loss=f"{state.last_metrics[3]:.4f}", acc=f"{state.last_metrics[4]:.3f}")
                        if bad is not None:
                            return "diverged", self._divergence(bad), bad
                        if end_of_epoch and ((epoch + 1) % config.eval_every == 0 or state.step == total):
                            self._evaluation(epoch + 1)
                        if stopping:
                            self.checkpoint()
                            raise RunInterrupted(
                                f"{config.name}: stopped by SIGTERM after step {state.step}; "
                                f"checkpoint saved in {self.run_dir}; run again to resume"
                            )
                        if saving and state.step < total:
                            self.checkpoint()
                        tick, cpu_tick = time.perf_counter(), time.process_time()
                    if interrupt_at_step is not None and state.step >= interrupt_at_step:
                        raise RunInterrupted(f"{config.name}: interrupted after step {state.step}; rerun to resume")
        finally:
            bar.close()
        return "finished", f"finished {total} steps", total

    def _evaluation(self, epoch: int) -> None:
        started = time.perf_counter()
        test_loss, test_accuracy = self.evaluate()
        self.state.eval_seconds += time.perf_counter() - started
        self.state.last_evaluation = [epoch, self.state.step, test_loss, test_accuracy]
        if self.ctx.is_main:
            self.evaluation_log.append([self.state.last_evaluation])
            if self.writer is not None:
                self.writer.add_scalar("test/loss", test_loss, self.state.step)
                self.writer.add_scalar("test/accuracy", test_accuracy, self.state.step)

    def _divergence(self, bad: int) -> str:
        return (
            f"{self.config.name}: diverged at step {bad} of {self.total_steps}: training loss "
            f"{self.state.last_metrics[3]:.4g} is not finite or exceeds {self.config.max_loss_factor:g} x the "
            f"first loss {self.state.reference_loss:.4g}; the records up to that step are kept"
        )

    def close(self, last_step: int) -> None:
        """Write the recorder's last stretch (up to ``last_step``) and detach it; close the TensorBoard log."""
        if self.writer is not None:
            self.writer.close()
        if self.recorder is not None:
            self.recorder.write(last_step, final=True)
            self.recorder.close()

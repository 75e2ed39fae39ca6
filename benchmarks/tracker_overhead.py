"""Cost of the online Noether tracker (noether_lib.tracking): memory added by constructing it, and time per step.

Memory: the bytes of every tensor the tracker holds after construction (the weight snapshot, the record buffers),
as a multiple of the tracked parameters' bytes; on CPU also the process's resident-memory growth during
construction and its growth during the tracker's own steps (its temporaries); on CUDA the allocator's
``memory_allocated`` and ``max_memory_allocated`` deltas.

Time, two ways: (1) the tracker's own work per step, timed directly (its pre-step hook and the measurement of the
update, on the model's real weights, gradients and optimizer state), as a fraction of a plain training step; (2)
the end-to-end ratio of a tracked to a plain training step, two identical models trained side by side on the same
batch, blocks of steps alternating (the order flips every repetition); the median over repetitions, with quartiles.

    python benchmarks/tracker_overhead.py                          # vgg11 on CPU (+ vgg16-bn-bf16 if CUDA)
    python benchmarks/tracker_overhead.py --case tiny-cnn --reps 200
    python benchmarks/tracker_overhead.py --case vgg16-bn-bf16 --device cuda --reps 50

Cases: ``vgg11`` (VGG-11 with batch norm, full width, 3x32x32 synthetic inputs, 10 classes, batch 128, float32,
CPU; targets: construction <= 2x the tracked parameters, tracker <= 3 % of a step), ``vgg16-bn-bf16`` (VGG-16 with
batch norm, full width, bfloat16 weights, 200 classes, batch 128, GPU; target <= 1 % of a step; ``--cuda-graph``
is not implemented: the per-step work is a fixed number of kernels per tracked tensor), ``tiny-cnn`` (the
chapter-3 CNN on 8x8 digits, batch 128, CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import torch
import torch.nn.functional as F

from noether_lib.data import load_digits
from noether_lib.models import VGG
from noether_lib.symmetry import find_symmetries
from noether_lib.tracking import NoetherTracker

CASES = ("vgg11", "vgg16-bn-bf16", "tiny-cnn")


def make_case(
    case: str, device: torch.device, batch: int
) -> tuple[Callable[[], torch.nn.Module], torch.Tensor, torch.Tensor, torch.dtype]:
    if case == "tiny-cnn":
        data = load_digits(images=True)
        x, y = data.x_train[:batch], data.y_train[:batch]
        return (
            (lambda: VGG("tiny", in_channels=1, num_classes=10, batch_norm=True)),
            x.to(device),
            y.to(device),
            torch.float32,
        )
    gen = torch.Generator().manual_seed(0)
    config, classes, dtype = ("vgg11", 10, torch.float32) if case == "vgg11" else ("vgg16", 200, torch.bfloat16)
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, classes, (batch,), generator=gen)
    return (
        (lambda: VGG(config, in_channels=3, num_classes=classes, batch_norm=True)),
        x.to(device, dtype),
        y.to(device),
        dtype,
    )


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def _held_bytes(tracker: NoetherTracker) -> int:
    """Every tensor the tracker holds: per parameter the snapshot and partial sums, the tiles, the record rows."""
    tensors = [tracker._buffer, tracker._work, tracker._next]
    extra = tracker._workspace.nbytes + sum(pl.nbytes for pl in tracker._plans)
    if tracker._window is not None:
        tensors.append(tracker._window)
    return extra + sum(t.numel() * t.element_size() for t in tensors)


def measure(
    case: str, device: torch.device, *, batch: int, reps: int, steps: int, warmup: int, kernel: str = "auto"
) -> dict:
    build, x, y, dtype = make_case(case, device, batch)
    torch.manual_seed(0)
    plain_model, tracked_model = build().to(device, dtype), build().to(device, dtype)
    tracked_model.load_state_dict(plain_model.state_dict())
    settings = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
    plain_opt = torch.optim.SGD(plain_model.parameters(), **settings)
    tracked_opt = torch.optim.SGD(tracked_model.parameters(), **settings)
    groups = find_symmetries(build(), x[:8].float().cpu())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def block(model, optimizer, count=steps) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(count):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        sync()
        return time.perf_counter() - start

    for _ in range(warmup):  # momentum buffers exist before the tracker is attached, as in a resumed run
        block(plain_model, plain_opt)
        block(tracked_model, tracked_opt)

    # memory
    sync()
    rss0 = _rss_bytes()
    cuda0 = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    tracker = NoetherTracker(tracked_model, tracked_opt, groups, kernel=kernel)
    sync()
    rss_construct = _rss_bytes() - rss0
    cuda_construct = torch.cuda.memory_allocated(device) - cuda0 if device.type == "cuda" else 0
    tracked_params = {id(pl.param): pl.param for pl in tracker._plans}
    param_bytes = sum(p.numel() * p.element_size() for p in tracked_params.values())
    block(tracked_model, tracked_opt, 1)
    tracker.step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before_step = torch.cuda.memory_allocated(device)

    # the tracker's own work per step, timed directly on the real state: its pre-step hook, which measures the
    # step before (the update) and this step's gradients in one pass; and, for loops that call tracker.step()
    # after optimizer.step(), the two passes that pattern takes (the update at tracker.step(), then the gradients)
    tracked_opt.zero_grad(set_to_none=True)
    F.cross_entropy(tracked_model(x), y).backward()
    rss1 = _rss_bytes()  # the snapshot's pages are touched, the gradients exist: what the tracker adds comes next

    def own_work(explicit_step: bool) -> tuple[list[float], list[float]]:
        wall, cpu = [], []
        tracker._before_step(tracked_opt, (), {})
        tracker._after_step(tracked_opt, (), {})
        for _ in range(max(5, reps // 2)):
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            if explicit_step:
                tracker.step()
            tracker._before_step(tracked_opt, (), {})
            tracker._after_step(tracked_opt, (), {})
            sync()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        return wall, cpu

    own, own_cpu = own_work(explicit_step=False)
    _, own_explicit_cpu = own_work(explicit_step=True)
    tracker.step()
    peak_step = (
        (torch.cuda.max_memory_allocated(device) - before_step) if device.type == "cuda" else _rss_bytes() - rss1
    )
    tracked_opt.zero_grad(set_to_none=True)
    plain_cpu = []
    for _ in range(5):
        start_cpu = time.process_time()
        block(plain_model, plain_opt, 1)
        plain_cpu.append(time.process_time() - start_cpu)

    # end to end, interleaved
    ratios, plain_times, tracked_times = [], [], []
    for rep in range(reps):
        if rep % 2 == 0:
            p = block(plain_model, plain_opt)
            t = block(tracked_model, tracked_opt)
        else:
            t = block(tracked_model, tracked_opt)
            p = block(plain_model, plain_opt)
        ratios.append(t / p)
        plain_times.append(p / steps)
        tracked_times.append(t / steps)
    table = tracker.table()
    quartiles = statistics.quantiles(ratios, n=4) if reps > 1 else [ratios[0]] * 3
    plain = statistics.median(plain_times)
    return {
        "case": case,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "kernel": tracker.kernel,
        "batch": batch,
        "dtype": str(dtype),
        "reps": reps,
        "steps_per_rep": steps,
        "tracked_parameters": sum(p.numel() for p in tracked_params.values()),
        "units": int(table.groupby("group").unit.nunique().sum()),
        "groups": len(groups),
        "held_ratio": _held_bytes(tracker) / param_bytes,
        "construction_ratio": (cuda_construct if device.type == "cuda" else rss_construct) / param_bytes,
        "own_steps_ratio": peak_step / param_bytes,
        "plain_ms": 1e3 * plain,
        "tracked_ms": 1e3 * statistics.median(tracked_times),
        "median_ratio": statistics.median(ratios),
        "ratio_q1": quartiles[0],
        "ratio_q3": quartiles[2],
        "tracker_ms": 1e3 * statistics.median(own),
        "tracker_fraction": statistics.median(own) / plain,
        "plain_cpu_ms": 1e3 * statistics.median(plain_cpu),
        "tracker_cpu_ms": 1e3 * statistics.median(own_cpu),
        "tracker_cpu_fraction": statistics.median(own_cpu) / statistics.median(plain_cpu),
        "explicit_step_cpu_ms": 1e3 * statistics.median(own_explicit_cpu),
        "explicit_step_cpu_fraction": statistics.median(own_explicit_cpu) / statistics.median(plain_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--case",
        choices=CASES,
        action="append",
        help="what to measure (repeatable); default: vgg11 on CPU, plus vgg16-bn-bf16 with CUDA",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, cuda for vgg16-bn-bf16)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=10, help="interleaved repetitions (one ratio each)")
    parser.add_argument("--steps", type=int, default=1, help="training steps per block")
    parser.add_argument("--warmup", type=int, default=1, help="blocks before measuring")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--kernel", default="auto", choices=("auto", "compiled", "torch"), help="the tracker's pass (NoetherTracker)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = args.case or (["vgg11"] + (["vgg16-bn-bf16"] if torch.cuda.is_available() else []))
    results = []
    for case in cases:
        default = "cuda" if case == "vgg16-bn-bf16" else "cpu"
        device = torch.device(args.device or default)
        r = measure(
            case, device, batch=args.batch, reps=args.reps, steps=args.steps, warmup=args.warmup, kernel=args.kernel
        )
        results.append(r)
        print(
            f"{case} ({r['dtype']}) on {r['device_name']} ({r['threads']} thread(s)), {r['kernel']} pass, batch {r['batch']}, "
            f"{r['tracked_parameters'] / 1e6:.2f} M tracked weights in {r['groups']} groups / {r['units']} units\n"
            f"  memory: tracker holds {r['held_ratio']:.2f}x the tracked parameters; construction added "
            f"{r['construction_ratio']:.2f}x, the tracker's own steps {r['own_steps_ratio']:.2f}x more\n"
            f"  time: plain step {r['plain_ms']:.1f} ms; the tracker's work {r['tracker_ms']:.2f} ms = "
            f"{100 * r['tracker_fraction']:.2f} % of it (CPU time: {r['tracker_cpu_ms']:.2f} of {r['plain_cpu_ms']:.1f} ms "
            f"= {100 * r['tracker_cpu_fraction']:.2f} %); end to end median ratio {r['median_ratio']:.4f} "
            f"(quartiles {r['ratio_q1']:.4f}-{r['ratio_q3']:.4f})\n"
            f"  with tracker.step() after each optimizer.step() (two passes): CPU time "
            f"{r['explicit_step_cpu_ms']:.2f} ms = {100 * r['explicit_step_cpu_fraction']:.2f} %"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()

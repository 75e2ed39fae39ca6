"""Overhead of the online Noether tracker (noether_lib.tracking) relative to a plain training step.

Two identical models train side by side on the same batches, one plain and one with a NoetherTracker recording
every step. Blocks of steps of the two alternate (the order flips every repetition), and each repetition gives one
ratio tracked/plain; the median ratio over many repetitions is reported, with its quartiles.

    python benchmarks/tracker_overhead.py                    # the chapter's CNN on CPU; VGG-16-BN too if CUDA is there
    python benchmarks/tracker_overhead.py --case vgg16-bn --device cuda --reps 50

Cases: ``tiny-cnn`` (the chapter-3 CNN with batch norm on 8x8 digits, batch 128, float32) and ``vgg16-bn``
(VGG-16 with batch norm, 32x32 synthetic inputs, 200 classes, batch 128). Targets: overhead <= 3 % on CPU for the
CNN and <= 1 % on a GPU for VGG-16-BN.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from noether_lib.data import load_digits
from noether_lib.models import VGG
from noether_lib.symmetry import find_symmetries
from noether_lib.tracking import NoetherTracker


def make_case(case: str, device: torch.device, batch: int) -> tuple[Callable[[], torch.nn.Module], torch.Tensor,
                                                                      torch.Tensor]:
    if case == "tiny-cnn":
        data = load_digits(images=True)
        x, y = data.x_train[:batch], data.y_train[:batch]
        return (lambda: VGG("tiny", in_channels=1, num_classes=10, batch_norm=True)), x.to(device), y.to(device)
    if case == "vgg16-bn":
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, 32, 32, generator=gen)
        y = torch.randint(0, 200, (batch,), generator=gen)
        return (lambda: VGG("vgg16", in_channels=3, num_classes=200, batch_norm=True)), x.to(device), y.to(device)
    raise ValueError(f"unknown case {case!r}; use tiny-cnn or vgg16-bn")


def measure(case: str, device: torch.device, *, batch: int, reps: int, steps: int, warmup: int) -> dict:
    build, x, y = make_case(case, device, batch)
    torch.manual_seed(0)
    plain_model, tracked_model = build().to(device), build().to(device)
    tracked_model.load_state_dict(plain_model.state_dict())
    settings = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
    plain_opt = torch.optim.SGD(plain_model.parameters(), **settings)
    tracked_opt = torch.optim.SGD(tracked_model.parameters(), **settings)
    groups = find_symmetries(tracked_model, x[:8])

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    inside: list[float] = []  # host time spent in tracker.step() (on a GPU: launch time only)

    def block(model, optimizer, tracker) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if tracker is not None:
                enter = time.perf_counter()
                tracker.step()
                inside.append(time.perf_counter() - enter)
        sync()
        return time.perf_counter() - start

    for _ in range(warmup):  # momentum buffers exist before the tracker is attached, as in a resumed run
        block(plain_model, plain_opt, None)
        block(tracked_model, tracked_opt, None)
    tracker = NoetherTracker(tracked_model, tracked_opt, groups)
    block(tracked_model, tracked_opt, tracker)
    inside.clear()
    ratios, plain_times, tracked_times = [], [], []
    for rep in range(reps):
        if rep % 2 == 0:
            p = block(plain_model, plain_opt, None)
            t = block(tracked_model, tracked_opt, tracker)
        else:
            t = block(tracked_model, tracked_opt, tracker)
            p = block(plain_model, plain_opt, None)
        ratios.append(t / p)
        plain_times.append(p / steps)
        tracked_times.append(t / steps)
    table = tracker.table()  # includes the final device-to-host copy
    quartiles = statistics.quantiles(ratios, n=4)
    return {
        "case": case, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "batch": batch, "reps": reps, "steps_per_rep": steps,
        "units": int(table.groupby("group").unit.nunique().sum()), "groups": len(groups),
        "plain_ms": 1e3 * statistics.median(plain_times), "tracked_ms": 1e3 * statistics.median(tracked_times),
        "median_ratio": statistics.median(ratios), "ratio_q1": quartiles[0], "ratio_q3": quartiles[2],
        "tracker_ms": 1e3 * statistics.median(inside),
        "tracker_fraction": statistics.median(inside) / statistics.median(plain_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["tiny-cnn", "vgg16-bn"], action="append",
                        help="what to measure (repeatable); default: tiny-cnn on CPU, plus vgg16-bn with CUDA")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu for tiny-cnn, cuda for vgg16-bn)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=40, help="interleaved repetitions (one ratio each)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per block")
    parser.add_argument("--warmup", type=int, default=3, help="blocks before measuring")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = args.case or (["tiny-cnn"] + (["vgg16-bn"] if torch.cuda.is_available() else []))
    results = []
    for case in cases:
        default = "cuda" if case == "vgg16-bn" and torch.cuda.is_available() else "cpu"
        device = torch.device(args.device or default)
        result = measure(case, device, batch=args.batch, reps=args.reps, steps=args.steps, warmup=args.warmup)
        results.append(result)
        print(f"{case} on {result['device_name']} ({result['threads']} thread(s)), batch {args.batch}, "
              f"{result['groups']} groups / {result['units']} units: plain {result['plain_ms']:.2f} ms/step, "
              f"tracked {result['tracked_ms']:.2f} ms/step; median ratio {result['median_ratio']:.4f} "
              f"(quartiles {result['ratio_q1']:.4f}-{result['ratio_q3']:.4f}), "
              f"overhead {100 * (result['median_ratio'] - 1):+.2f} %; time inside tracker.step() "
              f"{result['tracker_ms']:.3f} ms/step = {100 * result['tracker_fraction']:.2f} % of a plain step")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()

"""Time of proving a MobileNetV2's symmetry groups (noether_lib.symmetry.verify_symmetries) on one CPU thread.

The model is the zoo's MobileNetV2 (:mod:`noether_lib.zoo`: width 1.0, inverted residuals, 2.2 M parameters, ten
classes, for 32x32 images); one batch of 16 synthetic images. ``find_symmetries`` runs once, then
``verify_symmetries`` (float64 copy, two gradients, the joint loss test) ``--reps`` times; the median is the
measure. Target: <= 10 s on one core.

    python benchmarks/verify_speed.py                  # joint loss test (the default)
    python benchmarks/verify_speed.py --alone          # also one forward pass per group, for comparison
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from noether_lib.symmetry import find_symmetries, verify_symmetries, weight_coverage
from noether_lib.zoo import MobileNetV2

TARGET_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--alone", action="store_true", help="also time one forward pass per group")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MobileNetV2(num_classes=10)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    start = time.perf_counter()
    groups = find_symmetries(model, x)
    found = time.perf_counter() - start
    covered, weights = weight_coverage(model, groups)
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        table = verify_symmetries(model, groups, x, y)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"MobileNetV2: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {len(groups)} groups, "
        f"{covered}/{weights} conv/linear weights in a group; batch {args.batch}, 1 thread"
    )
    print(
        f"find_symmetries: {found:.2f} s; verify_symmetries (joint): median {median:.2f} s over {args.reps} "
        f"(all {', '.join(f'{t:.2f}' for t in times)}); target <= {TARGET_SECONDS:.0f} s: "
        f"{'met' if median <= TARGET_SECONDS else 'MISSED'}; largest loss change {table['loss_change'].max():.1e}"
    )
    if args.alone:
        start = time.perf_counter()
        verify_symmetries(model, groups, x, y, joint=False)
        print(f"verify_symmetries (one forward pass per group): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()

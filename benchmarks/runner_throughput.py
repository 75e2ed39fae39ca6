"""Training throughput of the experiment runner against a bare PyTorch loop, same model, data and device.

    python benchmarks/runner_throughput.py          # CPU: the ci preset (small VGG with batch norm, digits)
    python benchmarks/runner_throughput.py --gpu    # GPU: the paper preset's VGG-11 with batch norm on synthetic
                                                    #      64x64 images, bf16 autocast, batch 128, peak GPU memory

The bare loop does only what any training loop must: gather a batch on the device, standardise it, forward,
cross-entropy, backward, SGD step. The runner does the same plus its bookkeeping (learning-rate schedule, seeded
augmentation streams, loss read-back, progress, divergence checks); it is measured without charge tracking (its
own overhead; the target is >= 97% of the bare loop's throughput) and with tracking (for reference). Each
variant runs ``--repeats`` times, interleaved, after one warm-up of each; the median ratio is reported, per
wall-clock second and (on CPU) per CPU second of the process, which a machine shared with other jobs disturbs
far less.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from noether_lib.data import channel_statistics
from noether_lib.experiments import ExperimentConfig, apply_overrides, get_preset, run_experiment
from noether_lib.experiments.distributed import choose_device
from noether_lib.experiments.inputs import build_model, load_split
from noether_lib.reproducibility import make_generator, seed_everything


def bare_loop(config: ExperimentConfig, device: torch.device, threads: int | None) -> tuple[float, float]:
    """Examples per second of a plain loop over ``config.epochs`` epochs (no evaluation), per wall-clock second
    and per CPU second of the process."""
    split = load_split(config)
    seed_everything(config.seed, deterministic=device.type == "cpu", threads=threads)
    model = build_model(config, split).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    x_train, y_train = split.x_train.to(device), split.y_train.to(device)
    raw = x_train.dtype == torch.uint8
    if raw:
        mean, std = (t.view(1, -1, 1, 1).to(device) for t in channel_statistics(split.x_train))
    batch = config.batch_size
    steps = len(y_train) // batch
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(config.epochs):
        order = torch.randperm(len(y_train), generator=make_generator(epoch)).to(device)
        for i in range(steps):
            index = order[i * batch : (i + 1) * batch]
            x = (x_train[index].float() / 255.0 - mean) / std if raw else x_train[index]
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                out = model(x)
            F.cross_entropy(out.float(), y_train[index]).backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    examples = steps * config.epochs * batch
    return examples / (time.perf_counter() - start), examples / (time.process_time() - cpu_start)


def runner_loop(config: ExperimentConfig, device: torch.device, threads: int | None) -> tuple[float, float]:
    """Examples per wall-clock and per CPU second of the runner's training loop (a fresh output folder)."""
    with tempfile.TemporaryDirectory() as out:
        result = run_experiment(config, out, device=str(device), progress=True, verbose=False, threads=threads)
    timings = result.summary["timings"]
    examples = result.summary["steps"] * config.batch_size
    return timings["examples_per_second"], examples / timings["train_cpu_seconds"]


def measure(config: ExperimentConfig, device: torch.device, repeats: int, threads: int | None) -> dict:
    variants = {
        "bare": lambda: bare_loop(config, device, threads),
        "runner": lambda: runner_loop(apply_overrides(config, {"track_charges": False}), device, threads),
        "runner+tracking": lambda: runner_loop(apply_overrides(config, {"track_charges": True}), device, threads),
    }
    for run in variants.values():  # warm-up: kernels, allocator, imports
        run()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    peak: dict[str, int] = {}
    for _ in range(repeats):
        for name, run in variants.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            samples[name].append(run())
            if device.type == "cuda":
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated(device))
    out = {
        "model": config.model,
        "dataset": config.dataset,
        "batch_size": config.batch_size,
        "precision": config.precision,
        "repeats": repeats,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "peak_gpu_memory_mb": {name: round(b / 2**20) for name, b in peak.items()},
    }
    for clock, i in (("wall", 0), ("cpu", 1)):
        if clock == "cpu" and device.type == "cuda":
            continue  # a GPU's work is not the process's CPU time
        ratios = {
            name: [s[i] / b[i] for s, b in zip(samples[name], samples["bare"])]
            for name in ("runner", "runner+tracking")
        }
        out[clock] = {
            "examples_per_second_median": {name: statistics.median(s[i] for s in v) for name, v in samples.items()},
            "ratio_to_bare_median": {name: statistics.median(v) for name, v in ratios.items()},
            "ratios": ratios,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU variant (VGG-11/16-BN, synthetic 64x64, bf16)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = []
    if args.gpu:
        device = choose_device("cuda")
        config = apply_overrides(
            get_preset("paper").base,
            {
                "name": "bench-paper",
                "dataset": "synthetic",
                "image_size": 64,
                "synthetic_examples": 128 * 100,
                "epochs": 2,
                "precision": "bf16",
                "checkpoint_every": 0,
            },
        )
        results.append(measure(config, device, args.repeats, args.threads))
    else:
        config = apply_overrides(get_preset("ci").base, {"name": "bench-ci", "epochs": 5})
        results.append(measure(config, torch.device("cpu"), args.repeats, args.threads))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()

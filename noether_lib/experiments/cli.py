"""The command line: ``python -m noether_lib.experiments {run,sweep,report,show}``.

Examples::

    python -m noether_lib.experiments run ci lr=0.03 momentum=0.9
    python -m noether_lib.experiments sweep ci --only learning-rate --out runs/ci
    python -m noether_lib.experiments sweep paper --data-dir ~/data --out runs/paper
    torchrun --nproc_per_node=4 -m noether_lib.experiments sweep paper --data-dir ~/data --out runs/paper
    python -m noether_lib.experiments report runs/paper
    python -m noether_lib.experiments show paper

Finished runs of the same code and data are read from ``--out`` instead of being trained again (``cached: <folder>``;
``--rerun`` trains them again), and an interrupted command picks up from the last checkpoint when it is run again.
A mistake in the command is reported in one line naming the field and the value (exit status 2); a run stopped by
SIGTERM saves a checkpoint and exits with status 143.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from noether_lib.data import DatasetError, DatasetNotFoundError
from noether_lib.experiments.config import ConfigError, apply_overrides, parse_overrides
from noether_lib.experiments.presets import PRESETS, get_preset

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    """The argument parser of the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m noether_lib.experiments",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def training(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("preset", choices=sorted(PRESETS))
        sub.add_argument("overrides", nargs="*", help="configuration fields, e.g. lr=0.03 momentum=0.9 lr_drops=0.5")
        sub.add_argument("--data-dir", help="folder holding CIFAR-10 or Tiny ImageNet (standard layouts)")
        sub.add_argument("--out", default="runs", help="folder of the results (default: runs)")
        sub.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the GPU if there is one)")
        sub.add_argument("--threads", type=int, help="CPU threads for PyTorch")
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
        sub.add_argument("--keep-checkpoints", action="store_true", help="keep the last checkpoint of each run")
        sub.add_argument("--rerun", action="store_true", help="train again even if a result exists (starts over)")
        sub.add_argument("--tensorboard", action="store_true", help="also log TensorBoard scalars to <run>/tensorboard")
        return sub

    training("run", "train the preset's base configuration (with overrides)")
    sweep = training("sweep", "run the preset's sweeps (cached runs are skipped)")
    sweep.add_argument("--only", action="append", help="run only this sweep (repeatable)")
    sweep.add_argument("--seeds", help="comma-separated seeds instead of the preset's")
    report = commands.add_parser("report", help="summary table and figures from saved results")
    report.add_argument("out", help="the folder given as --out to run or sweep")
    report.add_argument("--to", help="where to write the report (default: OUT/report)")
    show = commands.add_parser("show", help="print a preset: base configuration, sweeps, the book's choices")
    show.add_argument("preset", choices=sorted(PRESETS))
    return parser


def _seeds(text: str) -> list[int]:
    seeds = []
    for item in text.split(","):
        if not item.strip().isdigit():
            raise ConfigError(f"--seeds {text}: {item.strip()!r} is not a non-negative integer")
        seeds.append(int(item))
    return seeds


def _show(name: str) -> int:
    preset = get_preset(name)
    print(
        json.dumps(
            {
                "description": preset.description,
                "base": preset.base.to_dict(),
                "sweeps": {
                    s.name: {
                        "grid": {k: list(v) for k, v in s.grid.items()},
                        "fixed": dict(s.fixed),
                        "effective_lr": s.effective_lr,
                        "seeds": list(s.seeds),
                        "runs": len(s.configs(preset.base)),
                    }
                    for s in preset.sweeps
                },
                "book_choices": list(preset.book_choices),
            },
            indent=2,
            default=list,
        )
    )
    return 0


def _train(args: argparse.Namespace, extra: list[str]) -> int:
    from noether_lib.experiments.runner import RunInterrupted, run_experiment, run_sweep

    preset = get_preset(args.preset)
    changes = parse_overrides(list(args.overrides) + extra + ([f"data_dir={args.data_dir}"] if args.data_dir else []))
    base = apply_overrides(preset.base, changes)
    options = {
        "device": args.device,
        "progress": not args.no_progress,
        "threads": args.threads,
        "keep_checkpoint": args.keep_checkpoints,
        "rerun": args.rerun,
        "tensorboard": args.tensorboard,
    }
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, only rank 0 reports
    if args.command == "run":
        configs = [base]
    else:  # everything is checked before the first run starts
        sweeps = [preset.sweep(name) for name in args.only] if args.only else list(preset.sweeps)
        seeds = _seeds(args.seeds) if args.seeds else None
        for s in sweeps:
            s.check_overrides(changes)
        configs = [c for s in sweeps for c in s.configs(base, seeds=seeds)]
    try:
        if args.command == "run":
            result = run_experiment(base, args.out, **options)
            if main_process:
                print(f"{result.status}: {result.message}; results in {result.run_dir}")
            return 0
        results = run_sweep(configs, args.out, **options)
    except RunInterrupted as stop:
        print(stop, file=sys.stderr)
        return 143
    diverged = [r for r in results if r.status == "diverged"]
    if main_process:
        print(
            f"{len(results)} of {len(configs)} runs ({len(diverged)} diverged); results in {args.out}", file=sys.stderr
        )
        for r in diverged:
            print(f"  {r.message}", file=sys.stderr)
    return 0 if len(results) == len(configs) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)  # overrides may follow the options
    if extra and (args.command not in ("run", "sweep") or any(e.startswith("-") or "=" not in e for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "show":
            return _show(args.preset)
        if args.command == "report":
            from noether_lib.experiments.report import collect, summarise, write_report

            target = write_report(args.out, args.to)
            print(summarise(collect(args.out)).to_string(index=False))
            print(f"report written to {target}")
            return 0
        return _train(args, extra)
    except (ConfigError, DatasetError, DatasetNotFoundError) as error:
        print(f"error: {str(error).splitlines()[0] if isinstance(error, ConfigError) else error}", file=sys.stderr)
        return 2
    except Exception as error:
        from noether_lib.experiments.report import ReportError
        from noether_lib.experiments.runner import CheckpointError

        if isinstance(error, ReportError | CheckpointError):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise

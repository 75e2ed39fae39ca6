"""Summary tables and figures from saved results (nothing is trained here).

* :func:`collect` reads every completed run under a folder into one table (configuration, outcome, provenance).
* :func:`summarise` averages the final test accuracy and loss over seeds, per sweep point.
* :func:`constraint_gaps` compares free and constrained filter norms at each point of a sweep: the gap in final
  test accuracy and loss with its standard error over seeds (the paper's claims 18--21 are statements about
  these gaps).
* :func:`verdict` says how a measured difference bears on a claim, given its standard error.
* :func:`plot_sweep` draws a sweep: final test accuracy against the swept value and the loss curves.
* :func:`write_report` does all of it for ``python -m noether_lib.experiments report OUT``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from noether_lib.experiments.config import PRESETS
from noether_lib.experiments.records import METRICS, RESULT
from noether_lib.tolerances import SIGNIFICANCE_Z

__all__ = ["SWEPT", "collect", "summarise", "constraint_gaps", "verdict", "loss_curves", "plot_sweep", "write_report"]

#: The field each sweep varies besides the constraint.
SWEPT: dict[str, str] = {
    "init-scale": "init_scale", "learning-rate": "lr", "momentum": "momentum", "weight-decay": "weight_decay",
}


def _sweep_of(name: str) -> str | None:
    for preset in PRESETS.values():
        for sweep in preset.sweeps:
            if name.startswith(f"{preset.base.name}-{sweep.name}-"):
                return sweep.name
    return None


def collect(out_dir: str | Path) -> pd.DataFrame:
    """One row per completed run under ``out_dir``: its configuration, sweep, status, final test accuracy and
    loss, timings and provenance (library version, commit, device)."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{RESULT}")):
        summary = json.loads(path.read_text())
        if summary.get("status") not in ("finished", "diverged"):
            continue
        config = summary["config"]
        for name in summary.get("names", [config["name"]]):  # a run shared by two sweeps appears under each name
            rows.append({
                **{k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}, "name": name,
                "sweep": _sweep_of(name), "run_dir": str(path.parent), "status": summary["status"],
                "final_test_accuracy": summary["final_test_accuracy"], "final_test_loss": summary["final_test_loss"],
                "final_train_loss": summary["final_train_loss"], "steps": summary["steps"],
                "train_seconds": summary["timings"]["train_seconds"],
                "examples_per_second": summary["timings"]["examples_per_second"],
                "library_version": summary["library_version"], "commit": summary["git"]["commit"],
                "device": summary["hardware"].get("device_name", summary["hardware"]["device"]),
                "world_size": summary["hardware"]["world_size"], "finished_at": summary["finished_at"],
            })
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count over seeds of the final test accuracy and loss, per sweep point
    (diverged runs count as accuracy 0 and are listed in ``diverged``)."""
    if runs.empty:
        return pd.DataFrame()
    keys = ["sweep", "init_scale", "lr", "momentum", "weight_decay", "constrain_filter_norms"]
    frame = runs.assign(
        final_test_accuracy=runs["final_test_accuracy"].fillna(0.0),
        diverged=(runs["status"] == "diverged").astype(int),
    )
    grouped = frame.groupby(keys, dropna=False)
    table = grouped.agg(
        accuracy_mean=("final_test_accuracy", "mean"), accuracy_std=("final_test_accuracy", "std"),
        loss_mean=("final_test_loss", "mean"), loss_std=("final_test_loss", "std"),
        seeds=("seed", "count"), diverged=("diverged", "sum"),
    )
    return table.reset_index()


def constraint_gaps(runs: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """Free minus constrained filter norms at each value of ``sweep``'s swept field: mean gaps in final test
    accuracy (positive: free norms are better) and loss (negative: free norms are better), each with its
    standard error over seeds :math:`\\sqrt{s_1^2/n_1+s_2^2/n_2}`."""
    field = SWEPT[sweep]
    part = runs[runs["sweep"] == sweep].assign(final_test_accuracy=lambda d: d["final_test_accuracy"].fillna(0.0))
    rows = []
    for value, at in part.groupby(field):
        free = at[~at["constrain_filter_norms"]]
        fixed = at[at["constrain_filter_norms"]]
        row: dict[str, float] = {field: value}
        for metric, name in (("final_test_accuracy", "accuracy"), ("final_test_loss", "loss")):
            a, b = free[metric].astype(float), fixed[metric].astype(float)
            row[f"{name}_gap"] = a.mean() - b.mean()
            row[f"{name}_gap_se"] = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(difference: float, standard_error: float, expect: Literal["positive", "none"],
            z: float = SIGNIFICANCE_Z) -> str:
    """How a measured ``difference`` (with its ``standard_error`` over seeds) bears on a claim that it is positive
    (``expect="positive"``) or absent (``expect="none"``): ``"supports"``, ``"points the same way, within noise"``
    (positive but below ``z`` standard errors) or ``"does not support"``."""
    if expect not in ("positive", "none"):
        raise ValueError(f"expect must be 'positive' or 'none', got {expect!r}")
    if not standard_error >= 0:
        raise ValueError(f"standard_error must be non-negative, got {standard_error}")
    if expect == "none":
        return "supports" if abs(difference) <= z * standard_error else "does not support"
    if difference > z * standard_error:
        return "supports"
    return "points the same way, within noise" if difference > 0 else "does not support"


def loss_curves(runs: pd.DataFrame, every: int = 1) -> pd.DataFrame:
    """The training-loss curves of ``runs`` in one long table (``run_dir, step, loss`` plus the run's fields)."""
    frames = []
    for _, run in runs.iterrows():
        metrics = pd.read_csv(Path(run["run_dir"]) / METRICS)
        metrics = metrics[metrics["step"] % every == 0]
        frames.append(metrics.assign(**{k: run[k] for k in ("run_dir", "seed", "constrain_filter_norms",
                                                              "init_scale", "lr", "momentum", "weight_decay")}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_sweep(runs: pd.DataFrame, sweep: str, axes, *, smooth: int = 1) -> None:
    """Draw ``sweep`` on two axes: final test accuracy against the swept value (mean and every seed, free and
    constrained), and the training loss (mean over seeds, shaded between the lowest and highest seed)."""
    from noether_lib.plotting import PALETTE

    field = SWEPT[sweep]
    part = runs[runs["sweep"] == sweep]
    ax_acc, ax_loss = axes
    values = sorted(part[field].unique())
    conditions = [(False, "free norms")] if sweep == "init-scale" else [(False, "free norms"), (True, "constrained")]
    for c, (constrained, label) in enumerate(conditions):
        at = part[part["constrain_filter_norms"] == constrained]
        x = np.arange(len(values)) + (0.08 * (2 * c - 1) if len(conditions) > 1 else 0.0)
        accuracy = [at[at[field] == v]["final_test_accuracy"].fillna(0.0) for v in values]
        ax_acc.plot(x, [a.mean() for a in accuracy], "o-", color=PALETTE[c], label=label)
        for xi, a in zip(x, accuracy):
            ax_acc.plot(np.full(len(a), xi), a, ".", color=PALETTE[c], alpha=0.4)
    ax_acc.set_xticks(range(len(values)), [f"{v:g}" for v in values])
    ax_acc.set_xlabel(field.replace("_", " "))
    ax_acc.set_ylabel("final test accuracy")
    ax_acc.legend()
    curves = loss_curves(part)
    styles = ["-", "--", ":", "-."]
    for c, (constrained, label) in enumerate(conditions):
        for s, value in enumerate(values):
            at = curves[(curves["constrain_filter_norms"] == constrained) & (curves[field] == value)]
            wide = at.pivot_table(index="step", columns="seed", values="loss")
            if smooth > 1:
                wide = wide.rolling(smooth, min_periods=1).mean()
            ax_loss.plot(wide.index, wide.mean(axis=1), styles[s % len(styles)], color=PALETTE[c])
            ax_loss.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=PALETTE[c], alpha=0.15)
    for s, value in enumerate(values):  # the colours are those of the accuracy panel; the styles mark the values
        ax_loss.plot([], [], styles[s % len(styles)], color="0.4", label=f"{field.replace('_', ' ')} {value:g}")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend(fontsize=6, loc="lower left")


def write_report(out_dir: str | Path, report_dir: str | Path | None = None) -> Path:
    """Write ``runs.csv``, ``summary.csv``, ``gaps-<sweep>.csv`` and a figure per sweep (PDF, SVG, PNG) to
    ``report_dir`` (default ``<out_dir>/report``); returns that folder."""
    import matplotlib.pyplot as plt

    from noether_lib.plotting import export_figure, new_figure, use_book_style

    runs = collect(out_dir)
    if runs.empty:
        raise FileNotFoundError(f"no completed runs under {str(out_dir)!r}")
    target = Path(report_dir) if report_dir is not None else Path(out_dir) / "report"
    target.mkdir(parents=True, exist_ok=True)
    runs.to_csv(target / "runs.csv", index=False)
    summarise(runs).to_csv(target / "summary.csv", index=False)
    use_book_style()
    for sweep in SWEPT:
        if not (runs["sweep"] == sweep).any():
            continue
        if sweep != "init-scale":
            constraint_gaps(runs, sweep).to_csv(target / f"gaps-{sweep}.csv", index=False)
        fig, axes = new_figure(2, width="double", aspect=0.4)
        plot_sweep(runs, sweep, axes, smooth=10)
        export_figure(fig, f"fig-report-{sweep}", target)
        plt.close(fig)
    return target


"""Figures of saved results: per-seed outcomes with intervals (seaborn), claims with their intervals, loss curves.

Nothing is trained here; the tables come from :mod:`noether_lib.experiments.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noether_lib.experiments.records import METRICS
from noether_lib.experiments.report import METRICS_OF_RUNS, SWEPT, replicates

__all__ = ["plot_sweep", "plot_claims", "plot_loss_curves", "loss_curves"]


def plot_claims(claims: pd.DataFrame, axes: Sequence[Any]) -> None:
    """Each claim's estimate with its interval (:func:`~noether_lib.experiments.report.ablation_claims`), accuracy and loss on their own axes."""
    from noether_lib.plotting import PALETTE

    for ax, metric, unit in zip(axes, METRICS_OF_RUNS, ("test loss", "accuracy points")):
        part = claims[claims["metric"] == metric].reset_index(drop=True)
        scale = 100.0 if metric == "final_test_accuracy" else 1.0
        y = np.arange(len(part))[::-1]
        ax.errorbar(
            part["estimate"] * scale,
            y,
            xerr=[(part["estimate"] - part["low"]) * scale, (part["high"] - part["estimate"]) * scale],
            fmt="o",
            color=PALETTE[0],
            capsize=3,
        )
        ax.axvline(0.0, color="0.5", lw=0.8)
        ax.set_yticks(y, [f"claim {c}: {d}" for c, d in zip(part["claim"], part["design"])], fontsize=6)
        ax.set_xlabel(f"better with free norms or weight decay ({unit})")


def loss_curves(runs: pd.DataFrame, every: int = 1) -> pd.DataFrame:
    """The training-loss curves of ``runs`` in one long table (``run_dir, step, loss`` plus the run's fields)."""
    frames = []
    for _, run in runs.iterrows():
        metrics = pd.read_csv(Path(run["run_dir"]) / METRICS)
        metrics = metrics[metrics["step"] % every == 0]
        frames.append(
            metrics.assign(
                **{
                    k: run[k]
                    for k in (
                        "run_dir",
                        "seed",
                        "constrain_filter_norms",
                        "init_scale",
                        "lr",
                        "momentum",
                        "weight_decay",
                    )
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _conditions(sweep: str) -> Mapping[bool, str]:
    return {False: "free norms"} if sweep == "init-scale" else {False: "free norms", True: "constrained"}


def plot_sweep(runs: pd.DataFrame, sweep: str, axes: Sequence[Any]) -> None:
    """Draw ``sweep`` on two axes with seaborn: the final test loss and the final test accuracy against the
    swept value, every seed as a point and each condition's mean with its 95 % bootstrap interval."""
    import seaborn as sns

    from noether_lib.plotting import PALETTE

    field = SWEPT[sweep]
    names = _conditions(sweep)
    part = replicates(runs[runs["sweep"] == sweep]).assign(
        condition=lambda d: d["constrain_filter_norms"].map(names),
        final_test_accuracy=lambda d: d["final_test_accuracy"].fillna(0.0),
        value=lambda d: d[field].map(lambda v: f"{v:g}"),
    )
    order = [f"{v:g}" for v in sorted(part[field].unique())]
    palette = dict(zip(names.values(), PALETTE))
    for ax, metric, label in zip(axes, METRICS_OF_RUNS, ("final test loss", "final test accuracy")):
        common = {
            "data": part,
            "x": "value",
            "y": metric,
            "hue": "condition",
            "order": order,
            "hue_order": list(names.values()),
            "palette": palette,
            "ax": ax,
        }
        sns.stripplot(**common, dodge=True, alpha=0.5, size=4, jitter=0.12, legend=False, zorder=1)
        sns.pointplot(
            **common, dodge=0.4, errorbar=("ci", 95), seed=0, linestyle="none", markers="D", markersize=4, capsize=0.1
        )
        ax.set_xlabel(field.replace("_", " ") + (" (lr/(1-momentum) fixed)" if sweep == "effective-step" else ""))
        ax.set_ylabel(label)
        ax.legend(fontsize=6, title=None)
    axes[0].set_yscale("log")


def plot_loss_curves(runs: pd.DataFrame, sweep: str, ax: Any, *, smooth: int = 1) -> None:
    """The training loss of ``sweep``: mean over seeds, shaded between the lowest and highest seed."""
    from noether_lib.plotting import PALETTE

    field = SWEPT[sweep]
    part = runs[runs["sweep"] == sweep]
    values = sorted(part[field].unique())
    curves = loss_curves(part)
    styles = ["-", "--", ":", "-."]
    for c, (constrained, _) in enumerate(_conditions(sweep).items()):
        for s, value in enumerate(values):
            at = curves[(curves["constrain_filter_norms"] == constrained) & (curves[field] == value)]
            wide = at.pivot_table(index="step", columns="seed", values="loss").rolling(smooth, min_periods=1).mean()
            ax.plot(wide.index, wide.mean(axis=1), styles[s % len(styles)], color=PALETTE[c])
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=PALETTE[c], alpha=0.15)
    for s, value in enumerate(values):  # the colours are the conditions; the styles mark the values
        ax.plot([], [], styles[s % len(styles)], color="0.4", label=f"{field.replace('_', ' ')} {value:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=6, loc="lower left")

"""Summary tables, comparisons and figures from saved results (nothing is trained here).

* :func:`collect` reads every completed run under a folder into one table (configuration, outcome, provenance).
* :func:`replicates` groups the runs into *conditions*: runs of one sweep whose configurations differ only in the
  seed, computed by the same code on the same data. It refuses (:class:`ReportError`) a condition with a seed
  twice or with runs of different code, torch or data, which no average may pool.
* :func:`summarise` gives each condition's seeds and the mean and spread of its final test loss and accuracy,
  with the test set's sampling error of the accuracy.
* :func:`compare` and :func:`constraint_gaps` estimate differences between conditions with Welch t intervals
  (:mod:`noether_lib.experiments.statistics`); :func:`interaction` the difference of two free-minus-constrained
  gaps (the paper's claim 20 is such an interaction).
* :mod:`~noether_lib.experiments.figures` draws them: per-seed outcomes and intervals with seaborn, the claims.
* :func:`write_report` does all of it for ``python -m noether_lib.experiments report OUT``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from noether_lib.experiments.presets import PRESETS
from noether_lib.experiments.records import RESULT
from noether_lib.experiments.statistics import Difference, accuracy_sampling_variance, contrast

__all__ = [
    "SWEPT",
    "METRICS_OF_RUNS",
    "ReportError",
    "collect",
    "replicates",
    "summarise",
    "select",
    "compare",
    "constraint_gaps",
    "interaction",
    "ablation_claims",
    "filter_norm_growth",
    "write_report",
]

#: The field each sweep varies besides the constraint.
SWEPT: dict[str, str] = {
    "init-scale": "init_scale",
    "learning-rate": "lr",
    "momentum": "momentum",
    "effective-step": "momentum",
    "weight-decay": "weight_decay",
}

#: The outcomes compared across conditions, the final test loss and final test accuracy.
METRICS_OF_RUNS: tuple[str, ...] = ("final_test_loss", "final_test_accuracy")


class ReportError(ValueError):
    """Runs that cannot be summarised together (duplicate seeds, mixed code or data), or too few to compare."""


def _sweep_of(name: str) -> str | None:
    for preset in PRESETS.values():
        for sweep in preset.sweeps:
            if f"-{sweep.name}-" in name:
                return sweep.name
    return None


def collect(out_dir: str | Path) -> pd.DataFrame:
    """One row per completed run and name under ``out_dir``: its configuration, sweep, status, final test loss
    and accuracy, the fingerprint of its code, torch and data, timings and provenance."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{RESULT}")):
        summary = json.loads(path.read_text())
        if summary.get("status") not in ("finished", "diverged"):
            continue
        config, fingerprint = summary["config"], summary.get("fingerprint", {})
        for name in summary.get("names", [config["name"]]):  # a run shared by two sweeps appears under each name
            rows.append(
                {
                    **{k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()},
                    "name": name,
                    "sweep": _sweep_of(name),
                    "run_dir": str(path.parent),
                    "status": summary["status"],
                    "final_test_accuracy": summary["final_test_accuracy"],
                    "final_test_loss": summary["final_test_loss"],
                    "final_train_loss": summary["final_train_loss"],
                    "steps": summary["steps"],
                    "test_examples": summary.get("test_examples"),
                    "replicate": summary.get("replicate_hash"),
                    "code": fingerprint.get("code"),
                    "versions": json.dumps(fingerprint, sort_keys=True),
                    "train_seconds": summary["timings"]["train_seconds"],
                    "examples_per_second": summary["timings"]["examples_per_second"],
                    "library_version": summary["library_version"],
                    "commit": summary["git"]["commit"],
                    "device": summary["hardware"].get("device_name", summary["hardware"]["device"]),
                    "world_size": summary["hardware"]["world_size"],
                    "finished_at": summary["finished_at"],
                }
            )
    return pd.DataFrame(rows)


def replicates(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``condition`` column (sweep and configuration without the seed); raises
    :class:`ReportError` for a condition holding a seed twice or runs of different code, torch or data."""
    if runs.empty:
        return runs.assign(condition=pd.Series(dtype=str))
    frame = runs.assign(condition=runs["sweep"].fillna("-").astype(str) + ":" + runs["replicate"].astype(str))
    for condition, group in frame.groupby("condition"):
        if group["versions"].nunique() > 1:
            raise ReportError(
                f"condition {condition} mixes runs of different code, torch or data "
                f"({group['run_dir'].nunique()} runs, {group['versions'].nunique()} versions): rerun "
                "them with one version, or report the versions from separate --out folders"
            )
        repeated = group["seed"][group["seed"].duplicated()].unique()
        if len(repeated):
            raise ReportError(
                f"condition {condition} holds seed {int(repeated[0])} more than once "
                f"({', '.join(sorted(group['run_dir']))}): these runs are not replicates"
            )
    return frame


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per condition (:func:`replicates`): distinct seeds, mean and standard deviation over seeds of the final
    test loss and accuracy, and the test set's sampling error of the mean accuracy (diverged runs count as
    accuracy 0 and are listed in ``diverged``)."""
    if runs.empty:
        return pd.DataFrame()
    frame = replicates(runs).assign(
        final_test_accuracy=lambda d: d["final_test_accuracy"].fillna(0.0),
        diverged=(runs["status"] == "diverged").astype(int),
    )
    keys = ["sweep", "init_scale", "lr", "momentum", "weight_decay", "constrain_filter_norms", "epochs", "condition"]
    table = (
        frame.groupby(keys, dropna=False)
        .agg(
            seeds=("seed", "nunique"),
            loss_mean=("final_test_loss", "mean"),
            loss_std=("final_test_loss", "std"),
            accuracy_mean=("final_test_accuracy", "mean"),
            accuracy_std=("final_test_accuracy", "std"),
            test_examples=("test_examples", "first"),
            diverged=("diverged", "sum"),
        )
        .reset_index()
    )
    p = table["accuracy_mean"]
    table["accuracy_sampling_se"] = np.sqrt(p * (1 - p) / table["test_examples"])
    return table.drop(columns=["condition"])


def select(runs: pd.DataFrame, sweep: str, **fields: Any) -> pd.DataFrame:
    """The runs of ``sweep`` whose fields equal ``fields`` (floats compared to 1e-12 relative)."""
    part = runs[runs["sweep"] == sweep]
    for key, value in fields.items():
        column = part[key]
        part = (
            part[np.isclose(column.astype(float), float(value), rtol=1e-12, atol=0)]
            if isinstance(value, float)
            else part[column == value]
        )
    return part


def compare(
    conditions: Sequence[pd.DataFrame], weights: Sequence[float], metric: str, confidence: float = 0.95
) -> Difference:
    """The contrast :math:`\\sum_i w_i\\bar x_i` of ``metric`` over the conditions (each one condition's runs; one
    value per seed), with its Welch t interval; for accuracy, the test set's sampling variance is added."""
    if metric not in METRICS_OF_RUNS:
        raise ValueError(f"metric must be one of {METRICS_OF_RUNS}, got {metric!r}")
    samples, extra = [], 0.0
    for frame, w in zip(conditions, weights):
        checked = replicates(frame)
        if checked["condition"].nunique() != 1:
            raise ReportError(
                f"each condition must be one configuration without its seed; got {checked['condition'].nunique()}"
            )
        values = frame[metric].astype(float)
        if metric == "final_test_accuracy":
            values = values.fillna(0.0)
            extra += w**2 * accuracy_sampling_variance(values, int(frame["test_examples"].iloc[0]))
        samples.append(values.to_numpy())
    return contrast(samples, weights, extra_variance=extra, confidence=confidence)


def _free_and_fixed(runs: pd.DataFrame, sweep: str, value: float) -> list[pd.DataFrame]:
    field = SWEPT[sweep]
    return [select(runs, sweep, **{field: value, "constrain_filter_norms": c}) for c in (False, True)]


def constraint_gaps(runs: pd.DataFrame, sweep: str, confidence: float = 0.95) -> pd.DataFrame:
    """Free minus constrained filter norms at each value of ``sweep``'s swept field, for the final test loss
    (negative: free norms are better) and accuracy (positive: free norms are better): estimate, standard error,
    degrees of freedom, interval and p-value (:func:`compare`)."""
    field = SWEPT[sweep]
    rows = []
    for value in sorted(runs.loc[runs["sweep"] == sweep, field].unique()):
        free, fixed = _free_and_fixed(runs, sweep, float(value))
        for metric in METRICS_OF_RUNS:
            d = compare([free, fixed], [1.0, -1.0], metric, confidence)
            rows.append({field: value, "lr": free["lr"].iloc[0], "metric": metric, **d.columns("gap")})
    return pd.DataFrame(rows)


def interaction(
    runs: pd.DataFrame, sweep: str, high: float, low: float, metric: str, confidence: float = 0.95
) -> Difference:
    """The gap (free minus constrained) at ``high`` minus the gap at ``low`` of ``sweep``'s swept field."""
    return compare(
        [*_free_and_fixed(runs, sweep, high), *_free_and_fixed(runs, sweep, low)],
        [1.0, -1.0, -1.0, 1.0],
        metric,
        confidence,
    )


def ablation_claims(runs: pd.DataFrame, margin: float, confidence: float = 0.95) -> pd.DataFrame:
    """The paper's claims 18--21 measured on ``runs`` (the sweeps ``learning-rate``, ``momentum``,
    ``effective-step`` and ``weight-decay``), for the final test accuracy and the final test loss, each oriented so
    that a positive estimate means what the claim says is better does better (free norms, or weight decay):

    * 18: free minus constrained at the smallest learning rate, claimed absent: equivalence within ``margin``
      (in accuracy; in loss, relative to the constrained runs' mean loss);
    * 19: the same at the largest learning rate, claimed positive;
    * 20: the interaction gap(momentum 0.9) - gap(momentum 0) at a fixed learning rate (``momentum``) and at a
      fixed effective step lr/(1 - momentum) (``effective-step``), claimed positive;
    * 21: free networks with the largest weight decay minus without, claimed positive.

    Columns: ``claim, design, metric, estimate, se, dof, low, high, p, seeds, expect, verdict``.
    """
    from noether_lib.experiments.statistics import verdict

    lrs = sorted(runs.loc[runs["sweep"] == "learning-rate", "lr"].unique())
    decays = sorted(runs.loc[runs["sweep"] == "weight-decay", "weight_decay"].unique())
    rows = []
    for metric in METRICS_OF_RUNS:
        sign = 1.0 if metric == "final_test_accuracy" else -1.0  # a lower loss is better
        designs: list[tuple[str, str, list[pd.DataFrame], list[float]]] = [
            ("18", f"lr {lrs[0]:g}", _free_and_fixed(runs, "learning-rate", float(lrs[0])), [1.0, -1.0]),
            ("19", f"lr {lrs[-1]:g}", _free_and_fixed(runs, "learning-rate", float(lrs[-1])), [1.0, -1.0]),
        ]
        for sweep, name in (("momentum", "fixed lr"), ("effective-step", "fixed lr/(1-momentum)")):
            groups = [*_free_and_fixed(runs, sweep, 0.9), *_free_and_fixed(runs, sweep, 0.0)]
            designs.append(("20", f"interaction, {name}", groups, [1.0, -1.0, -1.0, 1.0]))
        free = [
            select(runs, "weight-decay", weight_decay=float(k), constrain_filter_norms=False)
            for k in (decays[-1], decays[0])
        ]
        designs.append(("21", f"weight decay {decays[-1]:g} vs 0, free", free, [1.0, -1.0]))
        for claim, design, groups, weights in designs:
            d = compare(groups, [sign * w for w in weights], metric, confidence)
            expect = "none" if claim == "18" else "positive"
            scale = 1.0 if metric == "final_test_accuracy" else float(groups[1][metric].mean())
            rows.append(
                {
                    "claim": claim,
                    "design": design,
                    "metric": metric,
                    **d.columns(),
                    "expect": expect,
                    "verdict": verdict(d, "positive") if expect == "positive" else verdict(d, "none", margin * scale),
                }
            )
    return pd.DataFrame(rows)


def filter_norm_growth(runs: pd.DataFrame) -> float:
    """Mean over ``runs`` and their scale-invariant filters of :math:`r^2(\text{end})/r^2(0)`, from the recorded
    charges (the squared filter norms)."""
    from noether_lib.experiments.records import RunResult

    ratios = []
    for run_dir in runs["run_dir"].unique():
        table = RunResult.load(run_dir).charges
        if table is None:
            raise ReportError(f"{run_dir} recorded no charges (track_charges=false)")
        filters = table[table["kind"] == "scale"]
        first, last = filters[filters["step"] == 0], filters[filters["step"] == filters["step"].max()]
        ratios.append(float(np.mean(last["charge"].to_numpy() / first["charge"].to_numpy())))
    return float(np.mean(ratios))


def write_report(out_dir: str | Path, report_dir: str | Path | None = None) -> Path:
    """Write ``runs.csv``, ``summary.csv``, ``gaps-<sweep>.csv`` and a figure per sweep (PDF, SVG, PNG) to
    ``report_dir`` (default ``<out_dir>/report``); returns that folder."""
    import matplotlib.pyplot as plt

    from noether_lib.experiments.figures import plot_loss_curves, plot_sweep
    from noether_lib.plotting import export_figure, new_figure, use_book_style

    runs = collect(out_dir)
    if runs.empty:
        raise ReportError(f"no completed runs under {str(out_dir)!r}")
    summary = summarise(runs)  # refuses non-replicates before anything is written
    target = Path(report_dir) if report_dir is not None else Path(out_dir) / "report"
    target.mkdir(parents=True, exist_ok=True)
    runs.to_csv(target / "runs.csv", index=False)
    summary.to_csv(target / "summary.csv", index=False)
    use_book_style()
    for sweep in SWEPT:
        part = runs[runs["sweep"] == sweep]
        if part.empty:
            continue
        if sweep != "init-scale" and part.groupby("constrain_filter_norms")["seed"].nunique().min() >= 2:
            constraint_gaps(runs, sweep).to_csv(target / f"gaps-{sweep}.csv", index=False)
        fig, axes = new_figure(3, width="double", aspect=0.33)
        row = cast(Any, axes)
        plot_sweep(runs, sweep, row[:2])
        plot_loss_curves(runs, sweep, row[2], smooth=10)
        export_figure(fig, f"fig-report-{sweep}", target)
        plt.close(fig)
    return target


def __getattr__(name: str) -> object:
    """The figures, which live in :mod:`noether_lib.experiments.figures`, under their former address here."""
    if name in ("plot_sweep", "plot_claims", "plot_loss_curves", "loss_curves"):
        from noether_lib.experiments import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

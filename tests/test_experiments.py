"""The experiment runner: configurations, presets, caching, resume, divergence, the command line, reports."""
import json

import pandas as pd
import pytest
import torch

from noether_lib.experiments import (
    PRESETS, ExperimentConfig, RunInterrupted, apply_overrides, config_hash, get_preset, run_experiment, run_sweep,
)
from noether_lib.experiments import cli, report, runner
from noether_lib.experiments.records import CHECKPOINT, RunResult
from noether_lib.symmetry import conserved_quantity

from test_datasets import make_cifar

#: A run of a few seconds: the ci model on digits, 11 steps per epoch.
SMALL = ExperimentConfig(name="small", dataset="digits", model="tiny", epochs=2, batch_size=128, lr=0.05,
                         momentum=0.9, weight_decay=5e-4)
OPTIONS = {"progress": False, "threads": 1}


# ----------------------------------------------------------------------------------------------- configurations
def test_config_round_trips_through_json():
    config = apply_overrides(SMALL, {"lr_drops": (1,), "constrain_filter_norms": True})
    again = ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and config_hash(again) == config_hash(config)


def test_hash_ignores_only_result_neutral_fields():
    neutral = {"data_dir": "/x", "checkpoint_every": 3, "name": "other"}
    assert config_hash(SMALL) == config_hash(apply_overrides(SMALL, neutral))
    assert config_hash(SMALL) != config_hash(apply_overrides(SMALL, {"lr": 0.051}))
    assert config_hash(SMALL) != config_hash(apply_overrides(SMALL, {"seed": 1}))


def test_overrides_from_strings():
    config = apply_overrides(SMALL, ["lr=0.03", "momentum=0.5", "lr_drops=1", "augment=true", "epochs=3",
                                     "data_dir=/data"])
    assert (config.lr, config.momentum, config.lr_drops, config.augment, config.epochs, config.data_dir) == (
        0.03, 0.5, (1,), True, 3, "/data")
    with pytest.raises(ValueError, match="unknown configuration field 'learning_rate'"):
        apply_overrides(SMALL, ["learning_rate=0.1"])
    with pytest.raises(ValueError, match="name=value"):
        apply_overrides(SMALL, ["lr"])
    with pytest.raises(ValueError, match="true or false"):
        apply_overrides(SMALL, ["augment=maybe"])


@pytest.mark.parametrize("change, message", [
    ({"lr": 0.0}, "lr must be positive"), ({"momentum": 1.0}, "momentum"), ({"weight_decay": -1e-4}, "weight_decay"),
    ({"lr_drops": (2,)}, "lr_drops"), ({"dataset": "mnist"}, "dataset"), ({"model": "vgg99"}, "model"),
    ({"batch_size": 10, "micro_batches": 3}, "divisible"), ({"init_scale": 0.0}, "init_scale"),
    ({"precision": "fp16"}, "precision"), ({"seed": -1}, "seed"),
])
def test_bad_hyperparameters_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(SMALL, change)


def test_learning_rate_drops():
    config = apply_overrides(SMALL, {"epochs": 6, "lr_drops": (2, 4), "lr": 1.0})
    assert [config.lr_at_epoch(e) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_presets_describe_the_paper():
    paper = get_preset("paper")
    assert (paper.base.dataset, paper.base.model, paper.base.batch_norm) == ("tiny-imagenet", "vgg11", True)
    assert {s.name for s in paper.sweeps} == {"init-scale", "learning-rate", "momentum", "weight-decay"}
    assert paper.sweep("learning-rate").grid["lr"][0] == 0.001 and paper.sweep("learning-rate").grid["lr"][-1] == 0.03
    assert paper.sweep("momentum").grid["momentum"] == (0.0, 0.5, 0.9)
    assert paper.sweep("init-scale").grid["init_scale"] == (1.0, 10.0)
    assert all(p.book_choices for p in PRESETS.values())
    configs = paper.sweep("momentum").configs(paper.base)
    assert len(configs) == 3 * 2 * len(paper.sweep("momentum").seeds)
    assert len({c.name for c in configs}) == len(configs) and all(c.lr_drops for c in configs)
    with pytest.raises(ValueError, match="no sweep"):
        paper.sweep("dropout")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("imagenet")


# ----------------------------------------------------------------------------------------------- the runner
def test_run_saves_results_with_provenance(tmp_path):
    result = run_experiment(SMALL, tmp_path, **OPTIONS)
    assert result.status == "finished" and len(result.metrics) == 22
    assert list(result.evaluation["epoch"]) == [1, 2]
    summary = result.summary
    assert summary["final_test_accuracy"] == result.evaluation["test_accuracy"].iloc[-1]
    assert summary["library_version"] and "commit" in summary["git"] and summary["hardware"]["device"] == "cpu"
    assert summary["config"] == SMALL.to_dict() and summary["timings"]["train_seconds"] > 0
    assert not (result.run_dir / CHECKPOINT).exists()
    charges = result.charges
    assert set(charges["kind"]) >= {"scale", "translation"} and charges["step"].max() == 22


def test_a_finished_run_is_not_run_again(tmp_path, monkeypatch):
    first = run_experiment(SMALL, tmp_path, **OPTIONS)
    monkeypatch.setattr(runner, "build_model", lambda *a, **k: pytest.fail("a cached run was trained again"))
    second = run_experiment(SMALL, tmp_path, **OPTIONS)
    assert second.summary == first.summary
    pd.testing.assert_frame_equal(second.metrics, first.metrics)
    # the same configuration under another name (another sweep's) is the same run, listed under both names
    third = run_experiment(apply_overrides(SMALL, {"name": "alias"}), tmp_path, **OPTIONS)
    assert third.run_dir == first.run_dir and third.summary["names"] == ["small", "alias"]
    assert sorted(report.collect(tmp_path)["name"]) == ["alias", "small"]


@pytest.mark.parametrize("constrained", [False, True])
def test_an_interrupted_run_resumes_exactly(tmp_path, constrained):
    config = apply_overrides(SMALL, {"epochs": 3, "lr_drops": (2,), "checkpoint_every": 5, "track_every": 2,
                                     "constrain_filter_norms": constrained, "augment": True})
    whole = run_experiment(config, tmp_path / "whole", **OPTIONS)
    with pytest.raises(RunInterrupted, match="after step 18"):
        run_experiment(config, tmp_path / "parts", interrupt_at_step=18, **OPTIONS)
    run_dir = tmp_path / "parts" / whole.run_dir.name
    assert (run_dir / CHECKPOINT).is_file() and not (run_dir / "result.json").exists()
    resumed = run_experiment(config, tmp_path / "parts", **OPTIONS)
    assert resumed.summary["timings"]["sessions"] == 2
    for name in ("metrics.csv", "evaluation.csv", "charges.csv"):
        assert (run_dir / name).read_bytes() == (whole.run_dir / name).read_bytes(), name
    assert resumed.summary["final_test_accuracy"] == whole.summary["final_test_accuracy"]


def test_constraint_and_initial_scaling_act_on_the_filters(tmp_path):
    free = run_experiment(apply_overrides(SMALL, {"name": "free"}), tmp_path, **OPTIONS).charges
    scaled = run_experiment(apply_overrides(SMALL, {"name": "scaled", "init_scale": 10.0}), tmp_path, **OPTIONS)
    fixed = run_experiment(apply_overrides(SMALL, {"name": "fixed", "constrain_filter_norms": True}), tmp_path,
                           **OPTIONS).charges
    scale = lambda t, step: t[(t["kind"] == "scale") & (t["step"] == step)]["charge"].to_numpy()  # noqa: E731
    # x10 multiplies each squared filter norm by 100 at initialisation, and the initial loss is unchanged
    assert scale(scaled.charges, 0) == pytest.approx(100 * scale(free, 0), rel=1e-6)
    first = run_experiment(apply_overrides(SMALL, {"name": "free"}), tmp_path, **OPTIONS).metrics["loss"].iloc[0]
    assert scaled.metrics["loss"].iloc[0] == pytest.approx(first, rel=1e-5)
    # constrained norms stay at their initial values; free ones move
    assert scale(fixed, 22) == pytest.approx(scale(fixed, 0), rel=1e-5)
    assert abs(scale(free, 22) - scale(free, 0)).max() > 1e-3


def test_no_scale_symmetry_no_constraint(tmp_path):
    with pytest.raises(ValueError, match="scale-invariant filters"):
        run_experiment(apply_overrides(SMALL, {"batch_norm": False, "constrain_filter_norms": True}), tmp_path,
                       **OPTIONS)


def test_divergence_stops_the_run_and_the_sweep_goes_on(tmp_path, capsys):
    exploding = apply_overrides(SMALL, {"name": "exploding", "lr": 1e4, "batch_norm": False, "momentum": 0.0})
    results = run_sweep([exploding, apply_overrides(SMALL, {"epochs": 1})], tmp_path, **OPTIONS)
    diverged, fine = results
    assert diverged.status == "diverged" and "diverged at step" in diverged.message
    assert "diverged at step" in capsys.readouterr().err
    assert diverged.summary["final_test_accuracy"] is None
    last = diverged.metrics["step"].max()
    assert len(diverged.metrics) == last == diverged.summary["steps"] and last < 22
    assert diverged.charges["step"].max() <= last
    assert fine.status == "finished"
    # a diverged run is a result too: it is not repeated
    assert RunResult.load(diverged.run_dir).status == "diverged"


def test_micro_batches_accumulate_the_full_batch_gradient(tmp_path):
    plain = apply_overrides(SMALL, {"batch_norm": False, "epochs": 1})
    one = run_experiment(plain, tmp_path, **OPTIONS)
    two = run_experiment(apply_overrides(plain, {"micro_batches": 4}), tmp_path, **OPTIONS)
    assert one.charges["charge"].to_numpy() == pytest.approx(two.charges["charge"].to_numpy(), rel=1e-4, abs=1e-6)


def test_image_folder_data_through_the_runner(tmp_path):
    make_cifar(tmp_path / "data", per_batch=8)
    config = ExperimentConfig(name="cifar", dataset="cifar10", data_dir=str(tmp_path / "data"), model="tiny",
                              augment=True, epochs=1, batch_size=8)
    result = run_experiment(config, tmp_path / "runs", **OPTIONS)
    assert result.status == "finished" and len(result.metrics) == 5
    with pytest.raises(ValueError, match="data_dir"):
        run_experiment(apply_overrides(config, {"data_dir": None}), tmp_path / "other", **OPTIONS)


def test_device_is_chosen_at_run_time():
    from noether_lib.experiments.distributed import choose_device

    assert choose_device() == torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert choose_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            choose_device("cuda")


# ----------------------------------------------------------------------------------------------- CLI and report
def test_command_line_and_report(tmp_path, capsys):
    out = tmp_path / "runs"
    assert cli.main(["sweep", "ci", "--only", "learning-rate", "--seeds", "0,1", "--out", str(out),
                     "--no-progress", "--threads", "1", "epochs=1", "batch_size=128"]) == 0
    runs = report.collect(out)
    assert len(runs) == 3 * 2 * 2 and set(runs["sweep"]) == {"learning-rate"}
    gaps = report.constraint_gaps(runs, "learning-rate")
    assert len(gaps) == 3 and {"accuracy_gap", "accuracy_gap_se", "loss_gap"} <= set(gaps)
    summary = report.summarise(runs)
    assert (summary["seeds"] == 2).all()
    assert cli.main(["report", str(out)]) == 0
    assert {"runs.csv", "summary.csv", "gaps-learning-rate.csv", "fig-report-learning-rate.png"} <= {
        p.name for p in (out / "report").iterdir()}
    assert cli.main(["show", "paper"]) == 0 and "book_choices" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "ci", "--bogus"])
    with pytest.raises(ValueError, match="unknown configuration field"):
        cli.main(["run", "ci", "nonsense=1", "--out", str(out)])


def test_conserved_quantity_is_what_is_recorded(tmp_path):
    result = run_experiment(apply_overrides(SMALL, {"epochs": 1, "checkpoint_every": 0}), tmp_path,
                            keep_checkpoint=False, **OPTIONS)
    from noether_lib.experiments import hooks

    torch.manual_seed(0)
    split = runner.load_split(SMALL)
    from noether_lib.reproducibility import seed_everything

    seed_everything(SMALL.seed, threads=1)
    model = runner.build_model(SMALL, split)
    groups = hooks.discover(model, split.x_train[:8])
    params = dict(model.named_parameters())
    initial = result.charges[result.charges["step"] == 0]
    for group in groups:
        recorded = initial[initial["group"] == group.name]["charge"].to_numpy()
        expected = conserved_quantity(group, params).detach().double().numpy()
        assert recorded == pytest.approx(expected, rel=1e-6)


def test_verdict_reads_a_difference_against_its_standard_error():
    assert report.verdict(0.5, 0.1, "positive") == "supports"
    assert report.verdict(0.1, 0.1, "positive") == "points the same way, within noise"
    assert report.verdict(-0.1, 0.1, "positive") == "does not support"
    assert report.verdict(0.1, 0.1, "none") == "supports"
    assert report.verdict(0.5, 0.1, "none") == "does not support"
    with pytest.raises(ValueError, match="expect"):
        report.verdict(0.1, 0.1, "negative")
    with pytest.raises(ValueError, match="standard_error"):
        report.verdict(0.1, -1.0, "positive")

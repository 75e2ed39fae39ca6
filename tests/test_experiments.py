"""The experiment runner: configurations, presets, keys, caching, resume, SIGTERM, locks, the command line."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_datasets import make_cifar

from noether_lib.experiments import (
    PRESETS,
    CheckpointError,
    ConfigError,
    ExperimentConfig,
    RunInterrupted,
    apply_overrides,
    charges,
    cli,
    config_hash,
    get_preset,
    inputs,
    keys,
    report,
    run_experiment,
    run_sweep,
    training,
)
from noether_lib.experiments.records import CHECKPOINT, PREVIOUS, RunResult
from noether_lib.symmetry import conserved_quantity, find_symmetries

ROOT = Path(__file__).resolve().parents[1]

#: A run of a second: the ci model on digits, 11 steps per epoch.
SMALL = ExperimentConfig(
    name="small", dataset="digits", model="tiny", epochs=2, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4
)
OPTIONS = {"progress": False, "threads": 1}


def trained_again(monkeypatch) -> list[int]:
    """Count the models built (one per run that trains)."""
    built = []
    original = inputs.build_model
    monkeypatch.setattr(training, "build_model", lambda *a, **k: built.append(1) or original(*a, **k))
    return built


def same_records(a: RunResult, b: RunResult) -> None:
    for name in ("metrics.csv", "evaluation.csv"):
        assert (a.run_dir / name).read_bytes() == (b.run_dir / name).read_bytes(), name
    pd.testing.assert_frame_equal(a.charges, b.charges)
    pd.testing.assert_frame_equal(a.layer_charges, b.layer_charges)


# ----------------------------------------------------------------------------------------------- configurations
def test_config_round_trips_through_json():
    config = apply_overrides(SMALL, {"lr_drops": (0.5,), "constrain_filter_norms": True})
    again = ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and config_hash(again) == config_hash(config)


def test_hash_ignores_only_result_neutral_fields():
    neutral = {"data_dir": "/x", "checkpoint_every": 3, "name": "other"}
    assert config_hash(SMALL) == config_hash(apply_overrides(SMALL, neutral))
    assert config_hash(SMALL) != config_hash(apply_overrides(SMALL, {"lr": 0.051}))
    assert config_hash(SMALL) != config_hash(apply_overrides(SMALL, {"seed": 1}))
    assert config_hash(SMALL, without=("seed",)) == config_hash(apply_overrides(SMALL, {"seed": 1}), without=("seed",))


def test_overrides_from_strings():
    config = apply_overrides(
        SMALL, ["lr=0.03", "momentum=0.5", "lr_drops=0.5,0.8", "augment=true", "epochs=3", "data_dir=/data"]
    )
    assert (config.lr, config.momentum, config.lr_drops, config.augment, config.epochs, config.data_dir) == (
        0.03,
        0.5,
        (0.5, 0.8),
        True,
        3,
        "/data",
    )


@pytest.mark.parametrize(
    "override, names",
    [
        ("lr=abc", "lr=abc"),
        ("epochs=1.5", "epochs=1.5"),
        ("lr_drops=a,b", "lr_drops=a,b"),
        ("lr=inf", "lr=inf"),
        ("max_loss_factor=inf", "max_loss_factor=inf"),
        ("name=../../x", "name='../../x'"),
        ("name=a/b", "name='a/b'"),
        ("augment=maybe", "augment=maybe"),
        ("learning_rate=0.1", "learning_rate"),
        ("lr", "lr"),
        ("momentum=1", "momentum=1.0"),
        ("lr_drops=0.5,1.5", "lr_drops=(0.5, 1.5)"),
        ("seed=-1", "seed=-1"),
        ("micro_batches=3", "micro_batches=3"),
        ("precision=fp16", "precision='fp16'"),
        ("model=vgg99", "model='vgg99'"),
    ],
)
def test_every_bad_value_is_one_line_naming_field_and_value(override, names):
    with pytest.raises(ConfigError) as caught:
        apply_overrides(SMALL, [override])
    message = str(caught.value)
    assert message.startswith(names) and "\n" not in message, message


def test_learning_rate_drops_are_fractions_of_any_run(tmp_path):
    config = apply_overrides(SMALL, {"lr_drops": (0.5,), "lr": 1.0, "batch_norm": True})
    assert config.drop_steps(22) == [11]
    for preset in PRESETS.values():  # a one-epoch smoke run of every sweep is a valid configuration
        short = apply_overrides(preset.base, {"epochs": 1})
        for sweep in preset.sweeps:
            assert all(1 <= s <= 10 for c in sweep.configs(short, seeds=[0]) for s in c.drop_steps(10))
    lrs = run_experiment(apply_overrides(config, {"lr": 0.05}), tmp_path, **OPTIONS).metrics["lr"].to_numpy()
    assert lrs[:11] == pytest.approx([0.05] * 11) and lrs[11:] == pytest.approx([0.005] * 11)


def test_presets_describe_the_paper():
    paper = get_preset("paper")
    assert (paper.base.dataset, paper.base.model, paper.base.batch_norm) == ("tiny-imagenet", "vgg11", True)
    assert {s.name for s in paper.sweeps} == {
        "init-scale",
        "learning-rate",
        "momentum",
        "effective-step",
        "weight-decay",
    }
    assert paper.sweep("learning-rate").grid["lr"][0] == 0.001 and paper.sweep("learning-rate").grid["lr"][-1] == 0.03
    assert paper.sweep("momentum").grid["momentum"] == (0.0, 0.5, 0.9)
    assert len(paper.sweep("momentum").seeds) >= 5 and len(get_preset("ci").sweep("momentum").seeds) >= 10
    effective = paper.sweep("effective-step").configs(paper.base, seeds=[0])
    assert [c.lr / (1 - c.momentum) for c in effective] == pytest.approx([0.01] * len(effective))
    assert all(p.book_choices for p in PRESETS.values())
    configs = paper.sweep("momentum").configs(paper.base)
    assert len({c.name for c in configs}) == len(configs) and all(c.lr_drops for c in configs)
    with pytest.raises(ConfigError, match="no such sweep"):
        paper.sweep("dropout")
    with pytest.raises(ConfigError, match="unknown"):
        get_preset("imagenet")


def test_a_sweep_refuses_overrides_it_would_ignore():
    sweep = get_preset("ci").sweep("learning-rate")
    with pytest.raises(ConfigError, match=r"lr=1000000.0: the sweep 'learning-rate' sets lr"):
        sweep.check_overrides({"lr": 1e6})
    with pytest.raises(ConfigError, match="--seeds"):
        sweep.check_overrides({"seed": 3})
    with pytest.raises(ConfigError, match="sets lr"):
        get_preset("ci").sweep("effective-step").check_overrides({"lr": 0.1})
    sweep.check_overrides({"epochs": 1})


# ----------------------------------------------------------------------------------------------- keys and caching
def test_run_saves_results_with_provenance(tmp_path):
    result = run_experiment(SMALL, tmp_path, **OPTIONS)
    assert result.status == "finished" and len(result.metrics) == 22
    assert list(result.evaluation["epoch"]) == [1, 2]
    summary = result.summary
    assert summary["final_test_accuracy"] == result.evaluation["test_accuracy"].iloc[-1]
    assert summary["library_version"] and "commit" in summary["git"] and summary["hardware"]["device"] == "cpu"
    assert summary["config"] == SMALL.to_dict() and summary["timings"]["train_seconds"] > 0
    assert set(summary["fingerprint"]) == {"code", "torch", "data", "batch_norm_processes"}
    assert not (result.run_dir / CHECKPOINT).exists()
    table = result.charges
    assert set(table["kind"]) >= {"scale", "translation"} and table["step"].max() == 22
    assert table["charge"].dtype == np.float32
    layers = result.layer_charges
    sums = table.groupby(["step", "group"], sort=False)["charge"].sum().to_numpy()
    assert layers["charge"].to_numpy() == pytest.approx(sums, rel=1e-5)


def test_a_finished_run_is_read_not_run_again(tmp_path, monkeypatch, capsys):
    first = run_experiment(SMALL, tmp_path, **OPTIONS)
    built = trained_again(monkeypatch)
    second = run_experiment(SMALL, tmp_path, **OPTIONS)
    assert not built and second.summary == first.summary
    assert f"cached: {first.run_dir}" in capsys.readouterr().err
    pd.testing.assert_frame_equal(second.metrics, first.metrics)
    # the same configuration under another name (another sweep's) is the same run, listed under both names
    third = run_experiment(apply_overrides(SMALL, {"name": "alias"}), tmp_path, **OPTIONS)
    assert third.run_dir == first.run_dir and third.summary["names"] == ["small", "alias"]
    assert sorted(report.collect(tmp_path)["name"]) == ["alias", "small"]
    run_experiment(SMALL, tmp_path, rerun=True, **OPTIONS)
    assert built == [1], "rerun trains again"


def test_a_code_change_never_returns_the_old_result(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "noether_lib", copy / "noether_lib", ignore=shutil.ignore_patterns("__pycache__"))
    before = keys.source_fingerprint(copy / "noether_lib")
    assert before == keys.source_fingerprint(copy / "noether_lib")
    changed = copy / "noether_lib" / "models.py"
    changed.write_text(changed.read_text() + "\n# a change\n")
    assert keys.source_fingerprint(copy / "noether_lib") != before

    old = run_experiment(SMALL, tmp_path / "runs", **OPTIONS)
    built = trained_again(monkeypatch)
    monkeypatch.setattr(keys, "code_fingerprint", lambda: "other code")
    new = run_experiment(SMALL, tmp_path / "runs", **OPTIONS)
    assert built == [1] and new.run_dir != old.run_dir and new.summary["fingerprint"]["code"] == "other code"
    assert f"note: {old.run_dir} holds this configuration from other code" in capsys.readouterr().err
    with pytest.raises(report.ReportError, match="mixes runs of different code"):
        report.summarise(report.collect(tmp_path / "runs"))


def test_another_data_folder_never_returns_the_old_result(tmp_path, monkeypatch):
    make_cifar(tmp_path / "a", per_batch=8)
    shutil.copytree(tmp_path / "a", tmp_path / "same")
    make_cifar(tmp_path / "b", per_batch=8, seed=1)
    config = ExperimentConfig(
        name="cifar",
        dataset="cifar10",
        data_dir=str(tmp_path / "a"),
        model="tiny",
        augment=True,
        epochs=1,
        batch_size=8,
    )
    first = run_experiment(config, tmp_path / "runs", **OPTIONS)
    assert first.status == "finished" and len(first.metrics) == 5
    built = trained_again(monkeypatch)
    other = run_experiment(apply_overrides(config, {"data_dir": str(tmp_path / "b")}), tmp_path / "runs", **OPTIONS)
    assert built == [1] and other.run_dir != first.run_dir
    copied = run_experiment(apply_overrides(config, {"data_dir": str(tmp_path / "same")}), tmp_path / "runs", **OPTIONS)
    assert built == [1] and copied.run_dir == first.run_dir, "the same files are the same data"


def test_the_process_count_is_part_of_the_key_when_batch_norm_is_per_process():
    def key(config: ExperimentConfig, world: int) -> str:
        return keys.run_key(config, keys.run_fingerprint(config, world))

    assert key(SMALL, 1) != key(SMALL, 2)
    synced = apply_overrides(SMALL, {"sync_batch_norm": True})
    assert key(synced, 1) == key(synced, 2)
    plain = apply_overrides(SMALL, {"batch_norm": False})
    assert key(plain, 1) == key(plain, 4)


def test_validation_comes_before_any_folder(tmp_path, capsys):
    out = tmp_path / "runs"
    assert cli.main(["sweep", "ci", "--out", str(out), "lr=abc"]) == 2
    assert cli.main(["sweep", "ci", "--out", str(out), "--only", "learning-rate", "lr=0.1"]) == 2
    assert cli.main(["sweep", "ci", "--out", str(out), "--seeds", "0,x"]) == 2
    assert cli.main(["run", "ci", "--out", str(out), "name=../../escape"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert [e.split(":")[0] for e in errors] == ["error"] * 4 and "lr=abc" in errors[0] and "'x'" in errors[2]
    assert "sets lr itself" in errors[1] and "name='../../escape'" in errors[3]
    with pytest.raises(ConfigError, match="micro_batches=5: must divide batch_size=12"):
        ExperimentConfig(**{**SMALL.to_dict(), "batch_size": 12, "micro_batches": 5})
    with pytest.raises(ValueError, match="data_dir"):
        run_experiment(ExperimentConfig(dataset="cifar10"), out, **OPTIONS)
    assert not out.exists() and not (tmp_path.parent / "escape").exists()


# ----------------------------------------------------------------------------------------------- resume and faults
@pytest.mark.parametrize("constrained", [False, True])
def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch, constrained):
    monkeypatch.setattr(charges, "STRETCH_ROWS", 4)  # several stretches of the recorder, across the checkpoints
    config = apply_overrides(
        SMALL,
        {
            "epochs": 3,
            "lr_drops": (0.6,),
            "checkpoint_every": 5,
            "track_every": 2,
            "constrain_filter_norms": constrained,
            "augment": True,
        },
    )
    whole = run_experiment(config, tmp_path / "whole", **OPTIONS)
    with pytest.raises(RunInterrupted, match="after step 18"):
        run_experiment(config, tmp_path / "parts", interrupt_at_step=18, **OPTIONS)
    run_dir = tmp_path / "parts" / whole.run_dir.name
    assert (run_dir / CHECKPOINT).is_file() and not (run_dir / "result.json").exists()
    torch.load(run_dir / CHECKPOINT, weights_only=True)
    resumed = run_experiment(config, tmp_path / "parts", **OPTIONS)
    assert resumed.summary["timings"]["sessions"] == 2
    same_records(resumed, whole)
    assert resumed.summary["final_test_accuracy"] == whole.summary["final_test_accuracy"]
    monkeypatch.setattr(charges, "STRETCH_ROWS", 1000)  # one stretch: the same table
    single = run_experiment(config, tmp_path / "single", **OPTIONS)
    pd.testing.assert_frame_equal(single.charges, whole.charges, rtol=1e-6)


def test_sigterm_checkpoints_and_stops_cleanly(tmp_path, monkeypatch):
    config = apply_overrides(SMALL, {"checkpoint_every": 0})
    whole = run_experiment(config, tmp_path / "whole", **OPTIONS)
    original = training.Training._train_step

    def step_then_signal(self, x, y):
        out = original(self, x, y)
        if self.state.step + 1 == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(training.Training, "_train_step", step_then_signal)
    with pytest.raises(RunInterrupted, match="SIGTERM after step 7; checkpoint saved"):
        run_experiment(config, tmp_path / "parts", **OPTIONS)
    run_dir = tmp_path / "parts" / whole.run_dir.name
    assert torch.load(run_dir / CHECKPOINT, weights_only=True)["progress"]["step"] == 7
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    monkeypatch.setattr(training.Training, "_train_step", original)
    same_records(run_experiment(config, tmp_path / "parts", **OPTIONS), whole)


def test_an_unreadable_checkpoint_names_its_file(tmp_path, capsys):
    config = apply_overrides(SMALL, {"checkpoint_every": 5})
    whole = run_experiment(config, tmp_path / "whole", **OPTIONS)
    with pytest.raises(RunInterrupted):
        run_experiment(config, tmp_path / "parts", interrupt_at_step=12, **OPTIONS)
    run_dir = tmp_path / "parts" / whole.run_dir.name
    assert (run_dir / PREVIOUS).is_file()
    (run_dir / CHECKPOINT).write_bytes(b"not a checkpoint")  # the newest is broken: the one before it is used
    resumed = run_experiment(config, tmp_path / "parts", keep_checkpoint=True, **OPTIONS)
    assert f"{run_dir / CHECKPOINT}: cannot be read" in capsys.readouterr().err
    same_records(resumed, whole)

    with pytest.raises(RunInterrupted):
        run_experiment(config, tmp_path / "broken", interrupt_at_step=7, **OPTIONS)
    broken = tmp_path / "broken" / whole.run_dir.name
    (broken / CHECKPOINT).write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=rf"{broken / CHECKPOINT}: cannot be read .*--rerun"):
        run_experiment(config, tmp_path / "broken", **OPTIONS)
    results = run_sweep([config, apply_overrides(SMALL, {"epochs": 1})], tmp_path / "broken", **OPTIONS)
    assert len(results) == 1 and results[0].config.epochs == 1 and "skipped:" in capsys.readouterr().err
    assert run_experiment(config, tmp_path / "broken", rerun=True, **OPTIONS).status == "finished"


@pytest.mark.slow
def test_concurrent_sweeps_share_runs_safely(tmp_path):
    command = [
        sys.executable,
        "-m",
        "noether_lib.experiments",
        "sweep",
        "ci",
        "--only",
        "init-scale",
        "--seeds",
        "0",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--threads",
        "1",
        "epochs=1",
        "batch_size=128",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    folders = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    assert len(folders) == 2
    assert all(json.loads((f / "result.json").read_text())["timings"]["sessions"] == 1 for f in folders)
    assert sum(e.count("cached:") for e in errors) == 2, "each run trained once, read once"
    assert not list(tmp_path.rglob("*.partial"))


# ----------------------------------------------------------------------------------------------- training itself
def test_constraint_and_initial_scaling_act_on_the_filters(tmp_path):
    free_run = run_experiment(apply_overrides(SMALL, {"name": "free"}), tmp_path, **OPTIONS)
    free = free_run.charges
    scaled = run_experiment(apply_overrides(SMALL, {"name": "scaled", "init_scale": 10.0}), tmp_path, **OPTIONS)
    fixed = run_experiment(
        apply_overrides(SMALL, {"name": "fixed", "constrain_filter_norms": True}), tmp_path, **OPTIONS
    ).charges
    scale = lambda t, step: t[(t["kind"] == "scale") & (t["step"] == step)]["charge"].to_numpy()  # noqa: E731
    # x10 multiplies each squared filter norm by 100 at initialisation, and the initial loss is unchanged
    assert scale(scaled.charges, 0) == pytest.approx(100 * scale(free, 0), rel=1e-6)
    assert scaled.metrics["loss"].iloc[0] == pytest.approx(free_run.metrics["loss"].iloc[0], rel=1e-5)
    # constrained norms stay at their initial values; free ones move
    assert scale(fixed, 22) == pytest.approx(scale(fixed, 0), rel=1e-5)
    assert abs(scale(free, 22) - scale(free, 0)).max() > 1e-3


def test_no_scale_symmetry_no_constraint(tmp_path):
    with pytest.raises(ConfigError, match="scale-invariant filters"):
        run_experiment(
            apply_overrides(SMALL, {"batch_norm": False, "constrain_filter_norms": True}), tmp_path, **OPTIONS
        )


def test_divergence_stops_the_run_and_the_sweep_goes_on(tmp_path, capsys):
    exploding = apply_overrides(SMALL, {"name": "exploding", "lr": 1e4, "batch_norm": False, "momentum": 0.0})
    diverged, fine = run_sweep([exploding, apply_overrides(SMALL, {"epochs": 1})], tmp_path, **OPTIONS)
    assert diverged.status == "diverged" and "diverged at step" in diverged.message
    assert "diverged at step" in capsys.readouterr().err
    assert diverged.summary["final_test_accuracy"] is None
    last = diverged.metrics["step"].max()
    assert len(diverged.metrics) == last == diverged.summary["steps"] and last < 22
    assert diverged.charges["step"].max() <= last
    assert fine.status == "finished"
    assert RunResult.load(diverged.run_dir).status == "diverged"


def test_micro_batches_accumulate_the_full_batch_gradient(tmp_path):
    plain = apply_overrides(SMALL, {"batch_norm": False, "epochs": 1})
    one = run_experiment(plain, tmp_path, **OPTIONS)
    two = run_experiment(apply_overrides(plain, {"micro_batches": 4}), tmp_path, **OPTIONS)
    assert one.charges["charge"].to_numpy() == pytest.approx(two.charges["charge"].to_numpy(), rel=1e-4, abs=1e-6)


def test_device_is_chosen_at_run_time():
    from noether_lib.experiments.distributed import choose_device

    assert choose_device() == torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert choose_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            choose_device("cuda")


def test_conserved_quantity_is_what_is_recorded(tmp_path):
    result = run_experiment(apply_overrides(SMALL, {"epochs": 1}), tmp_path, **OPTIONS)
    split = inputs.load_split(SMALL)
    from noether_lib.reproducibility import seed_everything

    seed_everything(SMALL.seed, threads=1)
    model = inputs.build_model(SMALL, split)
    groups = find_symmetries(model, split.x_train[:8])
    seed_everything(SMALL.seed + 1, threads=1)
    other = inputs.build_model(SMALL, split)  # the control: the same network from another seed
    params, control = ({name: p.detach().double() for name, p in m.named_parameters()} for m in (model, other))
    initial = result.charges[result.charges["step"] == 0]
    misses, control_misses = [], []
    for group in groups:
        rows = initial[initial["group"] == group.name]
        recorded, scale = rows["charge"].to_numpy(), float(rows["norm_sq"].max())
        # a rescale charge is a difference of squared norms: float32 products err on the norms' scale
        misses.append(np.abs(recorded - conserved_quantity(group, params).numpy()).max() / scale)
        control_misses.append(np.abs(recorded - conserved_quantity(group, control).numpy()).max() / scale)
    print(
        f"recorded initial charges miss float64 ones by {max(misses):.1e} of the squared norm; "
        f"another seed's by {min(control_misses):.1e}"
    )
    assert max(misses) <= 1e-6 < min(control_misses)


# ----------------------------------------------------------------------------------------------- CLI and report
def test_command_line_and_report(tmp_path, capsys):
    out = tmp_path / "runs"
    assert (
        cli.main(
            [
                "sweep",
                "ci",
                "--only",
                "learning-rate",
                "--seeds",
                "0,1",
                "--out",
                str(out),
                "--no-progress",
                "--threads",
                "1",
                "epochs=1",
                "batch_size=128",
            ]
        )
        == 0
    )
    runs = report.collect(out)
    assert len(runs) == 2 * 2 * 2 and set(runs["sweep"]) == {"learning-rate"}
    gaps = report.constraint_gaps(runs, "learning-rate")
    assert len(gaps) == 2 * 2 and {"gap", "se", "dof", "low", "high", "p"} <= set(gaps)
    summary = report.summarise(runs)
    assert (summary["seeds"] == 2).all() and (summary["accuracy_sampling_se"] > 0).all()
    assert cli.main(["report", str(out)]) == 0
    assert {"runs.csv", "summary.csv", "gaps-learning-rate.csv", "fig-report-learning-rate.png"} <= {
        p.name for p in (out / "report").iterdir()
    }
    assert cli.main(["show", "paper"]) == 0 and "book_choices" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "ci", "--bogus"])


def test_report_refuses_non_replicates(tmp_path):
    one = run_experiment(apply_overrides(SMALL, {"epochs": 1}), tmp_path, **OPTIONS)
    run_experiment(SMALL, tmp_path, **OPTIONS)
    runs = report.collect(tmp_path)
    summary = report.summarise(runs)  # a 1-epoch and a 2-epoch run of seed 0: two conditions, one seed each
    assert len(summary) == 2 and (summary["seeds"] == 1).all()
    twice = pd.concat([runs, runs.iloc[:1].assign(run_dir=str(one.run_dir) + "-copy")], ignore_index=True)
    with pytest.raises(report.ReportError, match="seed 0 more than once"):
        report.summarise(twice)
    with pytest.raises(report.ReportError, match="one configuration"):
        report.compare([runs, runs], [1.0, -1.0], "final_test_loss")


def test_stored_charges_keep_their_types_and_the_predictions_hold(tmp_path):
    from noether_lib import noether

    table = run_experiment(apply_overrides(SMALL, {"epochs": 1}), tmp_path, **OPTIONS).charges
    assert table["nesterov"].dtype == bool and table["charge"].dtype == np.float32
    errors = noether.prediction_errors(noether.predict_charges(table))
    assert errors["exact"].notna().all() and errors["exact"].max() < 2e-3


def test_tensorboard_scalars_are_optional(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ConfigError, match=r"--tensorboard: needs the tensorboard package"):
            run_experiment(SMALL, tmp_path / "runs", tensorboard=True, **OPTIONS)
        assert not (tmp_path / "runs").exists()
    else:
        result = run_experiment(apply_overrides(SMALL, {"epochs": 1}), tmp_path, tensorboard=True, **OPTIONS)
        assert list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))

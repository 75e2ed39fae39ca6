"""Figure export: the data CSV holds exactly the plotted numbers, and the JSON describes the axes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from noether_lib import plotting


@pytest.fixture()
def figure():
    plotting.use_book_style()
    fig, (left, right) = plotting.new_figure(2)
    yield fig, left, right
    import matplotlib.pyplot as plt

    plt.close(fig)


def _read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_kind_of_series_is_exported(figure, tmp_path):
    fig, left, right = figure
    x = np.linspace(0.0, 1.0, 5)
    left.plot(x, x**2, label=r"$q^2$")
    left.plot(x, -x)  # unlabelled
    left.axhline(0.5)  # a reference line spanning the axes: not data
    left.scatter([0.2, 0.4], [1.0, 2.0], label="points")
    left.errorbar([1.0, 2.0], [3.0, 4.0], yerr=[0.1, 0.2], label="measured")
    right.bar([0, 1, 2], [5.0, 6.0, 7.0], label="counts")
    right.fill_between([0.0, 1.0], [0.0, 0.0], [1.0, 2.0], label="band")
    right.imshow(np.arange(6.0).reshape(2, 3))
    right.set_yscale("linear")
    left.set_xlabel("step $n$")
    left.set_yscale("log")

    paths = plotting.export_figure(fig, "fig-test-kinds", tmp_path)

    assert sorted(paths) == ["csv", "json", "pdf", "png", "svg"]
    rows = _read(paths["csv"])
    assert tuple(rows[0]) == plotting.DATA_COLUMNS
    by_series = {}
    for row in rows:
        by_series.setdefault((row["axis"], row["series"], row["kind"]), []).append(row)
    assert set(by_series) == {
        ("0", "$q^2$", "line"),
        ("0", "line1", "line"),
        ("0", "points", "scatter"),
        ("0", "measured", "errorbar"),
        ("1", "counts", "bar"),
        ("1", "band", "area"),
        ("1", "image1", "image"),
    }
    line = by_series[("0", "$q^2$", "line")]
    np.testing.assert_array_equal([float(r["x"]) for r in line], x)
    np.testing.assert_array_equal([float(r["y"]) for r in line], x**2)
    errorbar = by_series[("0", "measured", "errorbar")]
    np.testing.assert_allclose([float(r["y_low"]) for r in errorbar], [2.9, 3.8])
    np.testing.assert_allclose([float(r["y_high"]) for r in errorbar], [3.1, 4.2])
    bars = by_series[("1", "counts", "bar")]
    assert [(float(r["x"]), float(r["y"])) for r in bars] == [(0.0, 5.0), (1.0, 6.0), (2.0, 7.0)]
    pixels = by_series[("1", "image1", "image")]
    assert sorted(float(r["value"]) for r in pixels) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert {(float(r["x"]), float(r["y"])) for r in pixels if r["value"] == "4.0"} == {(1.0, 1.0)}

    description = json.loads(paths["json"].read_text())
    assert description["label"] == "fig-test-kinds"
    assert description["axes"][0] == {
        "axis": 0,
        "xlabel": "step $n$",
        "ylabel": "",
        "xscale": "linear",
        "yscale": "log",
    }
    assert len(description["series"]) == 7


def test_a_figure_without_data_still_gets_a_csv_header(figure, tmp_path):
    fig, _, _ = figure
    paths = plotting.export_figure(fig, "fig-test-empty", tmp_path)
    assert paths["csv"].read_text().strip() == ",".join(plotting.DATA_COLUMNS)


def test_masked_values_are_exported_as_nan(figure, tmp_path):
    fig, left, _ = figure
    left.plot([0.0, 1.0, 2.0], np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]))
    rows = _read(plotting.export_figure(fig, "fig-test-masked", tmp_path)["csv"])
    assert [r["y"] for r in rows] == ["1.0", "nan", "3.0"]


@pytest.mark.parametrize("label", ["figure-1", "fig with space", "fig-a/b"])
def test_export_refuses_labels_that_are_not_figure_labels(figure, tmp_path, label):
    with pytest.raises(ValueError, match="label"):
        plotting.export_figure(figure[0], label, tmp_path)

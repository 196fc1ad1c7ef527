"""The loss-vs-parameters panel of ``loss_scaling``: which column of points is which model, the note's band, the
model-size trend across widths. Drawn from a small hand-made runs table (no training)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

from jetscale.config import load_config
from jetscale.fit.forms import JOINT_LAW
from jetscale.report.figures import Figures
from tiny_config import default_raw_config

SIZES = (100, 300, 1000, 3000, 10000, 30000)
# the default study: one width per architecture (ParT is the smallest, not ParticleNet)
DEFAULT = {("particlenet", 16): 25_303, ("part", 16): 17_163, ("bbt_neutron", 32): 111_307}
NOTE = "not applicable: one width per architecture"


def loss_rows(models: dict, *, baseline: bool = True) -> pd.DataFrame:
    """Two seeds of test log-loss for each (model, width) -> n_params at every size, plus the bdt baseline."""
    rng = np.random.default_rng(0)
    rows = [
        {
            "model": model,
            "width": width,
            "compute": "auto",
            "n_train": n_train,
            "seed": seed,
            "n_params": float(n_params),
            "train_flops": 1e9 * n_params * n_train,
            "metric": "log_loss",
            "value": 2.6 - 0.25 * np.log10(n_train) - 0.05 * np.log10(n_params / 1e4) + 0.02 * rng.normal(),
        }
        for (model, width), n_params in models.items()
        for n_train in SIZES
        for seed in (0, 1)
    ]
    if baseline:  # a fitted model: no width, no parameter count, no training FLOPs
        rows += [
            {"model": "bdt", "width": None, "compute": None, "n_train": n_train, "seed": 0, "n_params": np.nan,
             "train_flops": np.nan, "metric": "log_loss", "value": 2.3 - 0.15 * np.log10(n_train)}
            for n_train in SIZES
        ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("loss_figures")
    raw = default_raw_config(tmp / "results")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def params_panel(cfg: dict, runs: pd.DataFrame, laws=(), why: str = NOTE):
    """(figures, figure, axes) of the loss-vs-parameters panel drawn alone, the axes made logarithmic as
    ``loss_scaling`` does."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = Figures(cfg, {"runs": runs}, [], Path(cfg["results"]) / "figures")
    fig, ax = plt.subplots(figsize=(6.7, 6.2))
    loss = runs[runs["metric"] == "log_loss"]
    figures._loss_vs_params(ax, loss, list(laws), why)
    ax.set_xscale("log")
    ax.set_yscale("log")
    fig.canvas.draw()
    return figures, fig, ax


def point_markers(ax, runs: pd.DataFrame) -> dict[str, set[str]]:
    """model -> the markers of its points (each errorbar's marker line, matched to a model by its N)."""
    by_n = runs.dropna(subset=["n_params"]).groupby("n_params")["model"].first()
    out: dict[str, set[str]] = {}
    for container in ax.containers:
        line = container.lines[0]
        for x in line.get_xdata():
            model = by_n.iloc[int(np.argmin(np.abs(np.log(by_n.index.to_numpy() / x))))]
            out.setdefault(model, set()).add(line.get_marker())
    return out


def test_each_model_is_named_and_has_its_own_marker(cfg):
    runs = loss_rows(DEFAULT)
    figures, fig, ax = params_panel(cfg, runs)
    legend = ax.get_legend()
    assert legend is not None, "the loss-vs-parameters panel names no model"
    names = [t.get_text() for t in legend.get_texts()]
    assert names == ["particlenet", "part", "bbt_neutron"]  # the baseline has no N: not on this panel
    markers = point_markers(ax, runs)
    assert set(markers) == {"particlenet", "part", "bbt_neutron"}
    assert all(len(m) == 1 for m in markers.values()), markers  # one shape per model
    shapes = {model: next(iter(m)) for model, m in markers.items()}
    assert len(set(shapes.values())) == 3, shapes  # different models, different shapes
    legend_shapes = dict(zip(names, (h.get_marker() for h in legend.legend_handles)))
    assert legend_shapes == shapes
    # the middle and right panels draw each model with the same shape
    for series in figures.series:
        if not figures.is_baseline(series):
            assert figures.model_style(series) == {"marker": shapes[series["model"]], "fillstyle": "full"}
    matplotlib.pyplot.close(fig)


def test_colour_still_encodes_the_training_size(cfg):
    runs = loss_rows(DEFAULT)
    _, fig, ax = params_panel(cfg, runs)
    faces = {}
    for container in ax.containers:
        line = container.lines[0]
        faces.setdefault(line.get_marker(), set()).add(matplotlib.colors.to_hex(line.get_markerfacecolor()))
    matplotlib.pyplot.close(fig)
    assert all(len(colours) == len(SIZES) for colours in faces.values()), faces


def test_the_no_joint_law_note_and_the_legend_hide_no_point(cfg):
    """Without an L(N, D) fit the panel carries a note; it and the legend of models sit in a band below the
    points, and one model's points at different n_train do not sit on top of one another."""
    runs = loss_rows(DEFAULT)
    _, fig, ax = params_panel(cfg, runs)
    assert "no $L(N,D)$ fit" in ax.texts[0].get_text()
    points = np.vstack([ax.transData.transform(line.get_xydata()) for line in ax.lines if len(line.get_xydata())])
    for box in (ax.texts[0].get_window_extent(), ax.get_legend().get_window_extent()):
        inside = (
            (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)
        )
        assert not inside.any()
    centres = np.vstack([ax.transData.transform(c.lines[0].get_xydata()) for c in ax.containers])
    columns = [ax.transData.transform((n_params, 2.0))[0] for n_params in DEFAULT.values()]
    matplotlib.pyplot.close(fig)
    assert len(points) >= 18 and len(centres) == len(DEFAULT) * len(SIZES)
    for x in columns:  # equal losses at one N stay apart: one N's points spread over more than one x
        near = centres[np.abs(centres[:, 0] - x) < 20, 0]
        assert len(near) == len(SIZES) and len(np.unique(np.round(near))) > 1


def test_a_model_with_several_widths_is_joined_in_n_unless_its_law_is_drawn(cfg):
    widths = {("particlenet", 8): 8_000, ("particlenet", 16): 25_303, ("particlenet", 32): 90_000}
    runs = loss_rows({**widths, ("part", 16): 17_163})
    _, fig, ax = params_panel(cfg, runs)
    joins = [line for line in ax.lines if line.get_linestyle() == "-" and len(line.get_xdata()) > 1]
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    matplotlib.pyplot.close(fig)
    assert len(joins) == len(SIZES)  # particlenet at each n_train; ParT has one width: nothing to join
    assert all(len(line.get_xdata()) == 3 for line in joins)
    assert all(np.all(np.diff(np.log(line.get_xdata())) > 0) for line in joins)  # in order of N
    assert names == ["particlenet", "part", "one $n_{train}$ across widths"]

    law = {
        "kind": JOINT_LAW,
        "series": {"model": "particlenet", "compute": "auto"},
        "points": {"x": list(widths.values())},
        "fits": {JOINT_LAW: {"params": {"E": 1.0, "A": 10.0, "alpha": 0.3, "B": 5.0, "beta": 0.3}}},
    }
    _, fig, ax = params_panel(cfg, runs, laws=[law])
    curves = [line for line in ax.lines if len(line.get_xdata()) == 100]
    joins = [line for line in ax.lines if line.get_linestyle() == "-" and 1 < len(line.get_xdata()) < 100]
    matplotlib.pyplot.close(fig)
    assert len(curves) == len(SIZES) and not joins  # the L(N, D) curves show the trend: no second line


def test_every_panel_draws_a_model_with_its_shape_and_its_widths_with_their_fills(cfg, monkeypatch):
    """The middle and right panels keep the left panel's shape of each model; one model's widths (one colour when
    colour is by model) differ in fill, never hollow."""
    widths = {("particlenet", 8): 8_000, ("particlenet", 16): 25_303, ("part", 16): 17_163}
    figures = Figures(cfg, {"runs": loss_rows(widths)}, [], Path(cfg["results"]) / "figures")
    drawn = {}
    monkeypatch.setattr(Figures, "save", lambda self, fig, name: drawn.setdefault(name, fig) and [])
    figures.loss_scaling()
    from matplotlib.container import ErrorbarContainer

    fig = drawn["loss_scaling"]
    left, middle, right = fig.axes[:3]
    legend = dict(zip((t.get_text() for t in left.get_legend().get_texts()), left.get_legend().legend_handles))
    for ax in (middle, right):
        handles, labels = ax.get_legend_handles_labels()
        lines = [h[0] if isinstance(h, ErrorbarContainer) else h for h in handles]
        styles = {label: (line.get_marker(), line.get_fillstyle()) for label, line in zip(labels, lines)}
        styles = {label.replace(".0", ""): style for label, style in styles.items() if style[0] not in ("None", "")}
        assert (
            styles["particlenet, width=8"][0]
            == styles["particlenet, width=16"][0]
            == legend["particlenet"].get_marker()
        )
        assert styles["part, width=16"][0] == legend["part"].get_marker() != legend["particlenet"].get_marker()
        assert styles["particlenet, width=8"][1] != styles["particlenet, width=16"][1]
        assert "none" not in {fill for _, fill in styles.values()}
    matplotlib.pyplot.close(fig)

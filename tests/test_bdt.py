"""The physics baseline ``bdt``: a fitted catalog model (no width, optimiser or FLOPs), its cells, its jet
observables, its fit on tiny synthetic splits, and its rows through collect, fits and report."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from jetscale.config import load_config
from jetscale.data.observables import OBSERVABLES, jet_observables
from jetscale.data.schema import FEATURE_NAMES
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import ConfigError
from jetscale.grid import cell_id, cell_ids, cells, parse_cell_id
from jetscale.models import catalog
from jetscale.settings import resolve_settings, settings_hash
from tiny_config import tiny_config

CELL = "model~bdt/n_train~440/seed~0"
NULL_KEYS = ("width", "compute", "n_params", "flops_per_jet", "train_flops", "samples_seen", "steps", "batch_size")


@pytest.fixture
def raw(default_config_dict):
    return copy.deepcopy(default_config_dict)


def _err(raw) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    return str(info.value)


# ------------------------------------------------------------------------------------------ catalog
def test_the_spec_says_what_a_fitted_model_has_and_lacks():
    spec = catalog.get("bdt")
    assert spec.fitted and spec.kind == "fitted"
    assert spec.default_lr is None and spec.reference_width is None and spec.input_kind is None
    assert "bdt" in catalog.names() and "bdt" not in catalog.networks()
    assert "no width" in spec.width_problem(16)
    with pytest.raises(ValueError, match="fitted model"):
        spec.build(16, 11, 19)
    with pytest.raises(ValueError, match="fitted model"):
        spec.inputs  # noqa: B018
    assert callable(catalog.resolve(spec.builder))
    with pytest.raises(ValueError, match="a fitted model has no"):
        catalog.ModelSpec("x", builder="m:f", options=catalog.BDTOptions, kind="fitted", default_lr=1e-3)
    with pytest.raises(ValueError, match="a network needs"):
        catalog.ModelSpec("x", builder="m:f", options=catalog.BDTOptions)


# ------------------------------------------------------------------------------------ grid + config
def test_cells_have_no_width_or_compute_and_ids_round_trip(raw):
    raw["grid"]["axes"]["compute"] = ["auto", 100000]
    raw["grid"]["extra_axes"] = {"lr": {"values": [1e-3, 3e-3], "default": 1e-3, "sets": "training.lr"}}
    cfg = load_config(raw)
    ours = [c for c in cells(cfg) if c["model"] == "bdt"]
    # one cell per n_train x seed: no width, no compute budget, the default learning rate only
    assert len(ours) == 6 * 2
    assert all(c["width"] is None and c["compute"] is None and c["lr"] == 1e-3 for c in ours)
    ids = [cell_id(cfg, c) for c in ours]
    assert "model~bdt/n_train~30000/seed~1" in ids
    for i in ids:
        assert parse_cell_id(cfg, i)["width"] is None
    with pytest.raises(ConfigError, match="fitted model: it has no width"):
        parse_cell_id(cfg, "model~bdt/width~16/n_train~100/seed~0")
    assert len(set(cell_ids(cfg))) == len(cell_ids(cfg))


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda r: r["grid"]["per_model"].update(bdt={"width": [16, 32]}), "grid.per_model.bdt.width: bdt is a fitted"),
        (lambda r: r["grid"]["per_model"].update(bdt={"compute": [1000]}), "grid.per_model.bdt.compute"),
        (lambda r: r["inputs"].update(bdt="physics"), "inputs.bdt: bdt is a fitted model"),
        (lambda r: r["models"].update(bdt={"num_leaves": 1}), "models.bdt.num_leaves: 1 must be at least 2"),
        (lambda r: r["models"].update(bdt={"n_layers": 3}), "models.bdt.n_layers: unknown option"),
    ],
)
def test_nonsense_for_a_fitted_model_is_refused_in_one_line(raw, change, needle):
    change(raw)
    message = _err(raw)
    assert needle in message and "\n" not in message


def test_a_training_axis_limited_per_model_must_keep_its_default(raw):
    raw["grid"]["extra_axes"] = {"lr": {"values": [1e-3, 3e-3], "default": 1e-3, "sets": "training.lr"}}
    raw["grid"]["per_model"]["bdt"] = {"lr": [3e-3]}
    assert "grid.per_model.bdt.lr: bdt is a fitted model" in _err(raw)
    raw["grid"]["per_model"]["bdt"] = {"lr": [1e-3]}
    load_config(raw)


def test_settings_hash_covers_the_options_and_nothing_of_the_networks_recipe(raw):
    cell = {"model": "bdt", "width": None, "n_train": 1000, "compute": None, "seed": 0}
    base = settings_hash(resolve_settings(load_config(raw), cell))
    settings = resolve_settings(load_config(raw), cell)
    assert "training" not in settings and "width" not in settings and settings["kind"] == "fitted"
    changed = copy.deepcopy(raw)
    changed["models"]["bdt"] = {"learning_rate": 0.1}
    assert settings_hash(resolve_settings(load_config(changed), cell)) != base
    recipe = copy.deepcopy(raw)
    recipe["training"].update(batch_size=64, weight_decay=0.05, threads=2)
    assert settings_hash(resolve_settings(load_config(recipe), cell)) == base
    assert settings_hash(resolve_settings(load_config(raw), {**cell, "seed": 1})) != base


def test_a_model_option_axis_sets_the_baselines_options(raw):
    raw["grid"]["extra_axes"] = {"leaves": {"values": [15, 63], "default": 15, "sets": "model.num_leaves"}}
    for model in ("particlenet", "part", "bbt_neutron"):
        raw["grid"]["per_model"][model]["leaves"] = [15]
    cfg = load_config(raw)
    big = [c for c in cells(cfg) if c["leaves"] == 63]
    assert big and {c["model"] for c in big} == {"bdt"}
    assert resolve_settings(cfg, big[0])["model_options"] == {"num_leaves": 63}


# -------------------------------------------------------------------------------------- observables
def _jets(particles: list[list[dict]], n_particles: int = 6):
    """Split arrays for hand-made jets: each particle a dict of feature values + 'p' = (px, py, pz, e)."""
    n = len(particles)
    features = np.zeros((n, n_particles, len(FEATURE_NAMES)), np.float32)
    vectors = np.zeros((n, n_particles, 4), np.float32)
    mask = np.zeros((n, n_particles), bool)
    for j, jet in enumerate(particles):
        for i, part in enumerate(jet):
            mask[j, i] = True
            vectors[j, i] = part["p"]
            for name, value in part.items():
                if name != "p":
                    features[j, i, FEATURE_NAMES.index(name)] = value
    return features, mask, vectors, mask.sum(1)


def test_observables_of_a_hand_made_jet():
    kaon = {"p": (10.0, 0.0, 0.0, 10.0), "charge": -1, "is_charged_kaon": 1, "d0": 0.045, "d0_err": 0.01}
    pion = {"p": (4.0, 3.0, 0.0, 5.0), "charge": 1, "is_charged_pion": 1, "d0": 0.001, "d0_err": 0.01}
    muon = {"p": (3.0, 0.0, 0.0, 3.0), "charge": 1, "is_muon": 1, "d0": -0.08, "d0_err": 0.01, "z0": 0.1}
    muon["z0_err"] = 0.02
    photon = {"p": (0.0, 2.0, 0.0, 2.0), "is_photon": 1}
    x = jet_observables(*_jets([[kaon, pion, muon, photon], [photon]]))
    obs = dict(zip(OBSERVABLES, x[0]))
    assert x.shape == (2, len(OBSERVABLES)) and x.dtype == np.float32
    assert obs["n_charged"] == 3 and obs["n_photons"] == 1 and obs["n_kaons"] == 1 and obs["n_leptons"] == 1
    assert obs["n_displaced"] == 2 and obs["n_displaced_5sigma"] == 1  # kaon 4.5σ, muon 8σ; not the pion (0.1σ)
    assert obs["leading_charge"] == -1 and obs["leading_charged_charge"] == -1
    assert obs["leading_kaon_charge"] == -1 and obs["leading_lepton_charge"] == 1
    assert obs["leading_displaced_charge"] == -1 and obs["displaced_charge_sum"] == 0
    assert obs["kaon_charge_sum"] == -1 and obs["lepton_charge_sum"] == 1
    assert obs["d0_significance_1"] == pytest.approx(8) and obs["d0_significance_2"] == pytest.approx(4.5)
    assert obs["d0_significance_3"] == pytest.approx(0.1) and obs["z0_significance_1"] == pytest.approx(5)
    jet_pt = np.hypot(17.0, 5.0)
    pts = np.array([10.0, 5.0, 3.0])
    for kappa in (0.3, 1.0):
        expected = (np.array([-1, 1, 1]) * pts**kappa).sum() / jet_pt**kappa
        assert obs[f"jet_charge_k{kappa:g}"] == pytest.approx(expected, rel=1e-5)
    assert obs["jet_energy"] == pytest.approx(20) and obs["leading_energy_fraction"] == pytest.approx(0.5)
    assert obs["jet_mass"] == pytest.approx(np.sqrt(20**2 - 17**2 - 5**2), rel=1e-5)
    assert obs["displaced_mass"] == pytest.approx(np.sqrt(13**2 - 13**2), abs=1e-3)  # collinear: massless
    # a jet of one photon: no charged, kaon, lepton or displaced particle -> zeros, not garbage
    other = dict(zip(OBSERVABLES, x[1]))
    assert other["leading_charged_charge"] == 0 and other["jet_charge_k0.5"] == 0 and other["n_displaced"] == 0
    assert np.isfinite(x).all()


# ----------------------------------------------------------------------------------------- training
def small_config(models=("particlenet", "bdt"), **bdt) -> dict:
    options = {"min_child_samples": 5, "early_stopping_rounds": 10, "max_rounds": 300, **bdt}
    return tiny_config(
        models, n_train=[110, 440], seed=[0, 1], jets_per_class=100, training={}, model_options={"bdt": options}
    )


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    classes = small_config()["classes"]
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), classes, {"train": 660, "val": 220, "test": 220}, n_particles=16
    )


def test_a_cell_fits_scores_and_writes_the_network_outputs(splits, tmp_path):
    from jetscale.train import loop

    cfg = small_config()
    record = loop.train_cell(cfg, CELL, splits, tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert all(written[k] is None for k in NULL_KEYS)  # never faked
    assert written["model"] == "bdt" and written["n_train"] == 440 and written["status"] == "ok"
    assert written["stopped_by"] in ("converged", "budget") and written["fit"]["library"] == "lightgbm"
    assert 1 <= written["fit"]["best_round"] <= written["fit"]["rounds"] <= 300
    assert written["settings_hash"] == settings_hash(resolve_settings(cfg, parse_cell_id(cfg, CELL)))
    assert written["hardware"]["engine"] == "lightgbm" and written["inputs"]["observables"] == list(OBSERVABLES)
    # the class-dependent multiplicities of the synthetic jets are learnable: far above chance (1/11)
    assert written["test_accuracy"] > 0.3 and written["val_loss"] < np.log(11)
    pred = pd.read_parquet(tmp_path / "predictions.parquet")
    assert list(pred.columns) == ["jet_id", "label"] + [f"score_{c}" for c in cfg["classes"]]
    assert len(pred) == 220 and np.allclose(pred.filter(like="score_").sum(axis=1), 1, atol=1e-5)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert len(log) == written["fit"]["rounds"] and log["val_loss"].notna().all()
    assert (tmp_path / "model.txt").is_file() and (tmp_path / "history" / written["settings_hash"]).is_dir()


def test_the_fit_is_deterministic_and_seeds_are_replicas(splits, tmp_path):
    from jetscale.train.fitted import train_fitted

    cfg = small_config()
    a = train_fitted(cfg, CELL, splits, tmp_path / "a")
    b = train_fitted(cfg, CELL, splits, tmp_path / "b")
    c = train_fitted(cfg, "model~bdt/n_train~440/seed~1", splits, tmp_path / "c")
    pa, pb, pc = (pd.read_parquet(tmp_path / d / "predictions.parquet") for d in "abc")
    assert pa.equals(pb) and a["test_loss"] == b["test_loss"]
    assert not pa.equals(pc) and c["settings_hash"] != a["settings_hash"]


def test_the_round_cap_is_reported_as_budget(splits, tmp_path):
    from jetscale.train.fitted import train_fitted

    cfg = small_config(max_rounds=3, learning_rate=0.01)
    record = train_fitted(cfg, CELL, splits, tmp_path)
    assert record["fit"]["rounds"] == 3 and record["stopped_by"] == "budget"


def train_command(splits, tmp_path) -> tuple[list[str], Path]:
    """``jetscale train``'s arguments for the bdt cell of a study written to ``tmp_path``, and its metrics.json."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**small_config(), "results": str(tmp_path / "results")}))
    out = tmp_path / "results" / "runs" / CELL / "metrics.json"
    return ["train", "--config", str(config), "--cell", CELL, "--splits", str(splits), "--out", str(out)], out


def test_train_command_fits_a_bdt_cell(splits, tmp_path, capsys):
    from jetscale.cli import main

    args, out = train_command(splits, tmp_path)
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cell_id"] == CELL and summary["samples_seen"] is None and out.is_file()


def test_a_bdt_cells_process_never_imports_torch(splits, tmp_path):
    """A fitted cell's job pays for no torch import (~0.8 s of each): the command's process, start to end."""
    args, out = train_command(splits, tmp_path)
    probe = (
        "import sys; from jetscale.cli import main; rc = main(sys.argv[1:]); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "no torch" and out.is_file()


# ------------------------------------------------------------------------ collect -> fits -> report
def test_baseline_rows_flow_through_collect_fits_and_report(splits, tmp_path):
    from jetscale.cli import main
    from jetscale.evaluate.synthetic import write_synthetic_study
    from jetscale.report.reference import comparison_table
    from jetscale.report.tables import load_tables
    from jetscale.train.fitted import train_fitted

    cfg = small_config(models=("particlenet", "part", "bdt"))
    cfg["results"] = str(tmp_path / "results")
    cfg["grid"]["axes"]["n_train"] = [55, 110, 220, 440]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cfg = load_config(config)
    ours = [i for i in cell_ids(cfg) if i.startswith("model~bdt")]
    write_synthetic_study(cfg, jets_per_class=20, skip=tuple(ours))  # the networks: synthetic predictions
    root = Path(cfg["results"])
    for cid in ours:  # the baseline: really fitted
        train_fitted(cfg, cid, splits, root / "runs" / cid)
    for cid in cell_ids(cfg):
        assert main(["evaluate", "--config", str(config), "--run", str(root / "runs" / cid)]) == 0
    assert main(["collect", "--config", str(config)]) == 0
    runs = pd.read_csv(root / "tables" / "runs.csv", keep_default_na=False, na_values=[""])
    base = runs[runs["model"] == "bdt"]
    assert set(base["cell_id"]) == set(ours)
    assert base[["width", "compute", "n_params", "flops_per_jet", "train_flops"]].isna().all().all()
    text = (root / "tables" / "runs.csv").read_text()  # whole widths print as 8, not 8.0, beside the gaps
    assert "\nmodel~part/width~8/n_train~55/compute~160/seed~0,part,8,55,160,0," in text
    assert "\nmodel~bdt/n_train~55/seed~0,bdt,,55,,0," in text
    assert main(["fit", "--config", str(config)]) == 0
    summary = pd.read_csv(root / "fits" / "fit_summary.csv")
    assert {"bdt", "part"} <= set(summary.loc[summary["kind"] == "scaling", "series"])  # a scaling series
    # never in the architecture fits: L(N, D) (absent here: one width per network, and the reason names no bdt),
    # loss vs parameters, the compute frontier
    chinchilla = json.loads((root / "fits" / "chinchilla.json").read_text())
    assert "bdt" not in chinchilla["fits"]["chinchilla"]["message"]
    frontier = json.loads((root / "fits" / "loss_vs_compute.json").read_text())["points"]["cell_id"]
    assert len(frontier) == 2 * 4 * 2 and not any(c.startswith("model~bdt") for c in frontier)
    assert (root / "fits" / "loss_vs_data__bdt.json").is_file()  # its own loss-vs-data series: fitted
    assert main(["report", "--config", str(config)]) == 0
    page = (root / "report.html").read_text()
    assert "bdt (baseline)" in page and "<h2 id='baseline'>Physics baseline</h2>" in page
    from jetscale.report.baseline import baseline_table

    listed = baseline_table(cfg, load_tables(cfg)["runs"])
    assert list(listed["n_train"]) == [55, 110, 220, 440] and (listed["seconds per cell"] > 0).all()
    assert listed["f_b"].str.match(r"^0\.\d{3} ± 0\.\d{3}$").all()
    table = comparison_table(cfg, load_tables(cfg)["runs"])
    column = next(c for c in table.columns if c.startswith("bdt (baseline)"))
    assert all(v for v in table[column])  # every quantity filled for the baseline


# ------------------------------------------------------------------------------- real Pythia jets
@pytest.fixture(scope="module")
def pythia_observables():
    """Observables of ~1600 Pythia jets (400 H -> bb̄ and 400 H -> uū events, about a second of generation)."""
    from jetscale.data.generate import generate_events
    from jetscale.data.splits import pad
    from jetscale.data.store import JetTable

    modes = ["b", "bbar", "u", "ubar"]  # label order of the generated table: H -> bb̄ and H -> uū only
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JETSCALE_NO_PROGRESS", "1")
        table = JetTable.concat(list(generate_events(400, seed=17, classes=modes, workers=1)))
    dense = pad(table, 64)
    x = jet_observables(dense["features"], dense["mask"], dense["vectors"], table.counts)
    return pd.DataFrame(x, columns=OBSERVABLES).assign(cls=[modes[i] for i in table.jets["label"]])


@pytest.mark.xdist_group("data")
def test_pythia_b_jets_show_the_expected_physics(pythia_observables):
    obs = pythia_observables
    b = obs[obs["cls"].isin(["b", "bbar"])]
    light = obs[obs["cls"].isin(["u", "ubar"])]
    assert len(b) > 700 and len(light) > 700
    # the b quark has charge -1/3: the leading charged particle carries its sign in well over half the jets
    sign = np.where(b["cls"] == "b", -1, 1)
    charged = b["leading_charged_charge"] != 0
    agree = float((np.sign(b["leading_charged_charge"][charged]) == sign[charged]).mean())
    assert agree > 0.55, agree
    # ... and so does the jet charge (u: +2/3)
    assert b.loc[b["cls"] == "b", "jet_charge_k0.5"].mean() < b.loc[b["cls"] == "bbar", "jet_charge_k0.5"].mean()
    assert (
        light.loc[light["cls"] == "u", "jet_charge_k0.5"].mean()
        > 0
        > light.loc[light["cls"] == "ubar", "jet_charge_k0.5"].mean()
    )
    # b hadrons fly: several times more displaced tracks, larger impact parameters, a heavier displaced system
    assert b["n_displaced"].mean() > 3 * light["n_displaced"].mean(), (
        b["n_displaced"].mean(),
        light["n_displaced"].mean(),
    )
    assert b["d0_significance_1"].median() > 3 * light["d0_significance_1"].median()
    assert b["displaced_mass"].mean() > 2 * light["displaced_mass"].mean()

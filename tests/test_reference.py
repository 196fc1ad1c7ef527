"""Published CEPC reference: shipped data, overlays on the figures and the report table only for the JoI classes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from jetscale.cli import main
from jetscale.config import load_config
from jetscale.evaluate.synthetic import write_synthetic_study
from jetscale.reference import joi_reference, overlay_label, reference_for
from tiny_config import default_raw_config

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent.parent / "shared" / "reference" / "joi_cepc_reference.json"


def test_shipped_numbers_are_consistent_and_sourced():
    ref = joi_reference()
    pn = ref["models"]["particlenet"]
    assert (
        "PRL 132 (2024) 221802" in pn["source"] and "CEPC-Jet-Origin-Identification" in ref["models"]["part"]["source"]
    )
    m = np.array(pn["confusion_row_normalised"])
    assert m.shape == (11, 11)
    # the PRL per-flavor numbers follow from its matrix (paper definitions), to the matrix's rounding
    for i, q in enumerate(["b", "c", "s", "u", "d"]):
        block = m[2 * i : 2 * i + 2, 2 * i : 2 * i + 2]
        assert block.sum() / 2 == pytest.approx(pn["flavors"][q]["tag_efficiency"], abs=0.003)
        assert (block[0, 1] + block[1, 0]) / block.sum() == pytest.approx(pn["flavors"][q]["charge_flip"], abs=0.003)
    assert np.diag(m).mean() == pytest.approx(pn["mean_diagonal"], abs=0.001)
    assert overlay_label(pn) == "CEPC full sim, ParticleNet (PRL 2024), ~600k jets/class"
    # each reference is labelled as its source labels it: the repository's ParT figure states no sample
    part = ref["models"]["part"]
    assert "full sim" not in overlay_label(part) and "sample not stated" in overlay_label(part)
    assert part["sample"].startswith("not stated") and "full simulation" in pn["sample"]
    if SHARED.is_file():  # the shared facts this copy was made from
        shared = json.loads(SHARED.read_text())
        assert pn["flavors"] == shared["prl_particlenet"]["flavors"]
        assert ref["models"]["part"]["flavors"] == shared["repo_part"]["flavors"]


def test_reference_only_for_the_joi_classes(default_config_dict):
    cfg = load_config(default_config_dict)
    assert reference_for(cfg) is not None
    shuffled = copy.deepcopy(cfg)
    shuffled["classes"] = list(reversed(cfg["classes"]))
    assert reference_for(shuffled) is not None  # same task, other label order
    fewer = copy.deepcopy(cfg)
    fewer["classes"] = ["b", "bbar", "c", "cbar", "g"]
    fewer["flavor_pairs"] = {"b": ["b", "bbar"], "c": ["c", "cbar"]}
    assert reference_for(fewer) is None
    merged = copy.deepcopy(cfg)
    merged["flavor_pairs"] = {**cfg["flavor_pairs"], "u": ["u", "dbar"]}
    assert reference_for(merged) is None


def synthetic_study(tmp_path: Path, classes=None, pairs=None) -> tuple[Path, dict]:
    raw = default_raw_config(
        tmp_path / "results", per_model={}, model=["particlenet", "part"], n_train=[100, 300], seed=[0], width=[16]
    )
    raw["fits"]["bootstrap"] = 5
    if classes:
        raw["classes"], raw["flavor_pairs"] = classes, pairs
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    root = Path(cfg["results"])
    for cid in write_synthetic_study(cfg, jets_per_class=60):
        assert main(["evaluate", "--config", str(path), "--run", str(root / "runs" / cid)]) == 0
    assert main(["collect", "--config", str(path)]) == 0
    return path, cfg


def drawn_labels(cfg, monkeypatch) -> dict[str, set[str]]:
    """Legend labels of the per-flavor and scaling figures, captured before each figure is saved."""
    from jetscale.report import figures
    from jetscale.report.tables import load_tables

    seen: dict[str, set[str]] = {}

    def capture(self, fig, name):
        labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
        for ax in fig.axes:
            labels |= set(ax.get_legend_handles_labels()[1])
            if ax.get_legend():
                labels |= {t.get_text() for t in ax.get_legend().get_texts()}
        seen[name] = labels
        return []

    monkeypatch.setattr(figures.Figures, "save", capture)
    fig = figures.Figures(cfg, load_tables(cfg), [], Path(cfg["results"]) / "figures")
    fig.flavor_metrics()
    fig.scaling()
    return seen


def test_overlay_and_table_present_for_the_joi_classes(tmp_path, monkeypatch):
    path, cfg = synthetic_study(tmp_path)
    labels = drawn_labels(cfg, monkeypatch)
    want = {
        "CEPC full sim, ParticleNet (PRL 2024), ~600k jets/class",
        "CEPC, ParT (authors' repository figure; sample not stated)",
    }
    for name in ("flavor_metrics", "scaling_tag_efficiency", "scaling_charge_flip"):
        assert want <= labels[name], name
    monkeypatch.undo()
    assert main(["report", "--config", str(path)]) == 0
    page = (Path(cfg["results"]) / "report.html").read_text()
    assert "id='reference'" in page and "PRL 132 (2024) 221802" in page
    assert "particlenet (n_train = 300)" in page and "0.907" in page and "ε_b" in page


def test_no_overlay_when_the_classes_differ(tmp_path, monkeypatch):
    path, cfg = synthetic_study(tmp_path, ["b", "bbar", "c", "cbar", "g"], {"b": ["b", "bbar"], "c": ["c", "cbar"]})
    labels = drawn_labels(cfg, monkeypatch)
    assert labels["flavor_metrics"] and not any("CEPC" in label for v in labels.values() for label in v)
    monkeypatch.undo()
    assert main(["report", "--config", str(path)]) == 0
    assert "id='reference'" not in (Path(cfg["results"]) / "report.html").read_text()

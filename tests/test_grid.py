"""Grid: axes -> cells with stable readable ids; adding an axis keeps existing ids."""

from __future__ import annotations

import copy

import pytest

from jetscale.config import load_config
from jetscale.errors import ConfigError
from jetscale.grid import cell_id, cell_ids, cells, parse_cell_id


def test_default_grid_cells_and_ids(default_config_dict):
    cfg = load_config(default_config_dict)
    ids = cell_ids(cfg)
    # ParticleNet and ParT: 6 sizes x 2 seeds; BBT-Neutron: 6 sizes x 1 seed (grid.per_model);
    # the bdt baseline: 6 sizes x 2 seeds
    assert len(ids) == 6 * 2 + 6 * 2 + 6 + 6 * 2
    assert "model~bbt_neutron/width~32/n_train~30000/compute~auto/seed~0" in ids
    assert "model~part/width~16/n_train~30000/compute~auto/seed~1" in ids
    assert "model~bbt_neutron/width~32/n_train~30000/compute~auto/seed~1" not in ids
    # per-model widths: bbt only at 32, the others only at 16; the bdt baseline has no width or compute
    assert all(("width~32" in i) == i.startswith("model~bbt_neutron") for i in ids)
    assert "model~bdt/n_train~30000/seed~1" in ids
    assert not any(i.startswith("model~bdt") and ("width" in i or "compute" in i) for i in ids)
    for i in ids:
        assert cell_id(cfg, parse_cell_id(cfg, i)) == i


def test_adding_axis_keeps_existing_ids(default_config_dict):
    before = set(cell_ids(load_config(default_config_dict)))
    raw = copy.deepcopy(default_config_dict)
    raw["grid"]["extra_axes"] = {"lr": {"values": [1e-3, 3e-4], "default": 1e-3, "sets": "training.lr"}}
    after = cell_ids(load_config(raw))
    fitted = [i for i in before if i.startswith("model~bdt")]  # no training recipe: the default lr only
    assert fitted and len(after) == 2 * len(before) - len(fitted)
    assert before <= set(after)
    new = set(after) - before
    assert all(i.endswith("/lr~0.0003") for i in new)


def test_new_value_on_existing_axis_adds_only_new_cells(default_config_dict):
    before = set(cell_ids(load_config(default_config_dict)))
    raw = copy.deepcopy(default_config_dict)
    raw["grid"]["axes"]["seed"] = [0, 1, 2]
    after = set(cell_ids(load_config(raw)))
    assert before < after and all(i.endswith("seed~2") for i in after - before)


def test_float_and_bool_values_round_trip(default_config_dict):
    raw = copy.deepcopy(default_config_dict)
    raw["grid"]["extra_axes"] = {
        "lr": {"values": [1e-05, 0.25], "default": 1e-3, "sets": "training.lr"},
        "lm_loss": {"values": [True, False], "default": False, "sets": "training.pretrain"},
    }
    cfg = load_config(raw)
    for c in cells(cfg):
        assert parse_cell_id(cfg, cell_id(cfg, c)) == c


@pytest.mark.parametrize(
    "bad",
    [
        "model~part/width~16",
        "model~part/width~16/n_train~100/compute~auto/seed~0/colour~red",
        "nonsense",
        "width~16/model~part/n_train~100/compute~auto/seed~0",
    ],
)
def test_parse_rejects_foreign_ids(default_config_dict, bad):
    with pytest.raises(ConfigError):
        parse_cell_id(load_config(default_config_dict), bad)

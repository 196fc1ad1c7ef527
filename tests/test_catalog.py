"""The model catalog: a new model is one module plus one ModelSpec; model options are typed and strict."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import pytest

from jetscale.config import load_config
from jetscale.errors import ConfigError
from jetscale.grid import cells
from jetscale.models import catalog
from jetscale.settings import resolve_settings
from tiny_config import tiny_raw_config


# ------------------------------------------------------------------------------ a toy model, one "file"
@dataclass(frozen=True)
class ToyOptions:
    hidden_mult: int = 2


def build_toy(spec, width, n_classes, n_features, options):
    """Mean over real particles -> MLP (width x hidden_mult) -> logits: the smallest model the loop accepts."""
    import torch
    from torch import nn

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(n_features, width * options.hidden_mult)])
            self.head = nn.Linear(width * options.hidden_mult, n_classes)

        def forward(self, x, mask, **_):
            pooled = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)
            return self.head(torch.relu(self.blocks[0](pooled)))

    return Toy()


TOY = catalog.ModelSpec(
    "toy",
    builder=f"{__name__}:build_toy",
    options=ToyOptions,
    default_lr=3e-3,
    reference_width=16,
    input_kind="particles",
    depth=lambda width: 1,
)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(catalog.MODELS, "toy", TOY)
    return TOY


def toy_config(**options) -> dict:
    training = {"batch_size": 16, "eval_every_samples": 48, "early_stopping_patience": None}
    return tiny_raw_config(("toy",), compute=96, model_options={"toy": options}, training=training)


def test_a_registered_toy_model_trains_through_the_cell_path(toy, tmp_path):
    from jetscale.data.testing import write_synthetic_splits
    from jetscale.models.registry import count_params
    from jetscale.train import loop

    cfg = load_config(toy_config(hidden_mult=3))
    (cell,) = cells(cfg)
    settings = resolve_settings(cfg, cell)
    assert settings["training"]["lr"] == 3e-3 and settings["model_options"] == {"hidden_mult": 3}
    splits = write_synthetic_splits(tmp_path / "splits", cfg["classes"], {"train": 66, "val": 33, "test": 33}, 16)
    cid = "model~toy/width~8/n_train~44/compute~96/seed~0"
    record = loop.train_cell(cfg, cid, splits, tmp_path / "run", progress=False)
    assert record["model"] == "toy" and record["samples_seen"] == 96 and record["steps"] == 6
    assert record["n_params"] == count_params(TOY.build(8, 11, 19, {"hidden_mult": 3})) == 19 * 24 + 24 + 24 * 11 + 11
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["settings_hash"] == record["settings_hash"]
    assert (tmp_path / "run" / "predictions.parquet").is_file()


def test_an_unregistered_model_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"grid.axes.model\[0\]: unknown model 'toy'"):
        load_config(toy_config())


def test_the_catalog_is_torch_free():
    import subprocess
    import sys

    code = "import sys, jetscale.config, jetscale.workflow; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"


def test_specs_cover_what_the_pipeline_asks_of_a_model():
    for name in catalog.networks():
        spec = catalog.get(name)
        assert spec.options.__dataclass_params__.frozen, name
        assert spec.inputs.name == spec.input_kind
        assert spec.width_problem(spec.reference_width) is None
        assert callable(catalog.resolve(spec.builder))
        assert callable(catalog.resolve(spec.inputs.prepare))
    assert catalog.get("bbt_neutron").pretrain_heads == ("next_patch",)
    with pytest.raises(ValueError, match="already in the catalog"):
        catalog.register(catalog.get("part"))


# --------------------------------------------------------------------------------- strict options
def _err(raw) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    return str(info.value)


@pytest.mark.parametrize(
    "models, expected",
    [
        ({"part": {"n_layer": 4}}, "models.part.n_layer: unknown option; allowed: ['n_cls_layers', 'n_layers']"),
        ({"part": {"n_layers": "four"}}, "models.part.n_layers: bad value 'four': must be an integer"),
        ({"part": {"n_layers": 0}}, "models.part.n_layers: 0 must be at least 1"),
        ({"particlenet": {"k": True}}, "models.particlenet.k: bad value True: must be an integer"),
        ({"bbt_neutron": {"lm_head": "yes"}}, "models.bbt_neutron.lm_head: bad value 'yes': must be true or false"),
        (
            {"bbt_neutron": {"tokenizer": {"patch": 8}}},
            "models.bbt_neutron.tokenizer.patch: unknown option; allowed: ['dtype', 'max_bytes', 'mode', 'patch_size'",
        ),
        (
            {"bbt_neutron": {"tokenizer": {"mode": "hex"}}},
            "models.bbt_neutron.tokenizer.mode: 'hex' is not allowed; allowed values: ['native', 'text']",
        ),
        ({"bbt_neutron": {"tokenizer": []}}, "models.bbt_neutron.tokenizer: must be a mapping of options"),
    ],
)
def test_model_options_are_strict(default_config_dict, models, expected):
    raw = copy.deepcopy(default_config_dict)
    raw["models"].update(models)
    message = _err(raw)
    assert message.startswith("config: ") and expected in message and "\n" not in message


@pytest.mark.parametrize(
    "axis, per_model, expected",
    [
        (
            {"values": [8, 16], "default": 16, "sets": "model.tokenizer.patch_size"},
            {},
            "grid.extra_axes.a.values[0]: 8 for sets 'model.tokenizer.patch_size': models.particlenet: 'tokenizer' "
            "names no option; allowed there: ['k'] (limit the axis with grid.per_model.particlenet.a: [16])",
        ),
        (
            {"values": ["big", 16], "default": 16, "sets": "model.tokenizer.patch_size"},
            {"particlenet": {"a": [16]}, "part": {"a": [16]}},
            "models.bbt_neutron.tokenizer.patch_size: bad value 'big': must be an integer",
        ),
        (
            {"values": [2000, 16], "default": 16, "sets": "model.tokenizer.patch_size"},
            {"particlenet": {"a": [16]}, "part": {"a": [16]}},
            "values[0]: 2000 for sets 'model.tokenizer.patch_size': models.bbt_neutron.tokenizer.max_bytes: "
            "1024 must be at least patch_size + 2 (2002)",
        ),
        ({"values": [3, 2], "default": 2, "sets": "model.n_cls_layer"}, {}, "'n_cls_layer' names no option"),
    ],
)
def test_model_axes_name_an_option_and_fit_it(default_config_dict, axis, per_model, expected):
    raw = copy.deepcopy(default_config_dict)
    raw["grid"]["extra_axes"] = {"a": axis}
    for model, values in per_model.items():
        raw["grid"]["per_model"][model].update(values)
    assert expected in _err(raw)


def test_a_model_option_axis_limited_to_the_models_that_have_it_is_fine(default_config_dict):
    raw = copy.deepcopy(default_config_dict)
    raw["grid"]["extra_axes"] = {"layers": {"values": [2, 3], "default": 2, "sets": "model.n_cls_layers"}}
    for model in ("particlenet", "bbt_neutron", "bdt"):
        raw["grid"]["per_model"].setdefault(model, {})["layers"] = [2]
    cfg = load_config(raw)
    part3 = [c for c in cells(cfg) if c["layers"] == 3]
    assert part3 and {c["model"] for c in part3} == {"part"}
    assert resolve_settings(cfg, part3[0])["model_options"] == {"n_cls_layers": 3}

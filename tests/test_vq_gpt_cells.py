"""vq_gpt as a catalog model: from-scratch cells fit their tokenizer on their own training features (once, also
across a resume), fine-tuning cells load the backbone's tokenizer + GPT (every key), a grid plans both, and the
config checks vq_gpt options. Tiny widths and jets: a few seconds per test."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import jetscale.models.vq_gpt as vq_model
from jetscale.config import load_config
from jetscale.data.splits import load_split
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import ConfigError
from jetscale.grid import cell_id, cells, parse_cell_id
from jetscale.models.registry import build_model, prepare_inputs
from jetscale.pretrain.finetune import attach
from jetscale.pretrain.loop import pretrain_backbone
from jetscale.settings import resolve_settings, settings_hash
from jetscale.train import loop
from jetscale.train.checkpoint import TrainingInterrupted
from jetscale.workflow import StudyPlan
from tiny_config import TINY_PRETRAINING, TINY_TRAINING, tiny_raw_config

TINY = {"codebook_size": 16, "latent_dim": 4, "vq_hidden": 16, "vq_steps": 20, "vq_batch_jets": 16, "n_layers": 1}
METHOD = {"codebook_size": 24, "vq_steps": 30}  # pretraining.methods.vq_gpt: a different codebook than models'
SCRATCH = "model~vq_gpt/width~16/n_train~22/compute~64/seed~0"
BACKBONE = "method~vq_gpt/model~vq_gpt/width~16/n_pretrain~30"
N_TRAIN = 22


def raw_config(pretrain=("none", "vq_gpt")) -> dict:
    return tiny_raw_config(
        ("vq_gpt",),
        width=16,
        n_train=N_TRAIN,
        compute=64,
        n_particles=8,
        pretrain=list(pretrain),
        n_pretrain=[30],
        finetune=["full", "frozen"],
        model_options={"vq_gpt": TINY},
        training={**TINY_TRAINING, "eval_every_samples": 32, "checkpoint_every_steps": 50},
        pretraining={**TINY_PRETRAINING, "lr": 3e-3, "methods": {"vq_gpt": METHOD}},
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    out = load_config(raw_config())
    out["results"] = str(tmp_path_factory.mktemp("results"))
    return out


@pytest.fixture(scope="module")
def splits(tmp_path_factory, cfg):
    return write_synthetic_splits(
        tmp_path_factory.mktemp("splits"), cfg["classes"], {"train": 66, "val": 33, "test": 33}, n_particles=8
    )


@pytest.fixture(scope="module")
def backbone(cfg, splits):
    torch.set_num_threads(1)
    pretrain_backbone(cfg, BACKBONE, splits, Path(cfg["results"]) / "pretrain" / BACKBONE)
    return torch.load(StudyPlan(cfg).backbone_file(finetune_cell("full")), weights_only=True)["backbone"]


@pytest.fixture
def fits(monkeypatch):
    """Every call of vq_gpt's fit-once step: (jets it was given, their model-input arrays)."""
    calls = []
    real = vq_model.fit_tokenizer

    def spy(model, train, seed):
        calls.append((train.n, train.rows(np.arange(train.n))))
        return real(model, train, seed)

    monkeypatch.setattr(vq_model, "fit_tokenizer", spy)
    return calls


def finetune_cell(mode: str) -> str:
    return f"{SCRATCH}/pretrain~vq_gpt/n_pretrain~30/finetune~{mode}"


def final_weights(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


# ------------------------------------------------------------------------------------------- planning
def test_grid_plans_scratch_and_finetuning_cells_and_one_backbone(cfg):
    ids = sorted(cell_id(cfg, c) for c in cells(cfg))
    assert ids == sorted([SCRATCH, finetune_cell("full"), finetune_cell("frozen")])
    assert all(parse_cell_id(cfg, cid) == c for cid, c in zip(ids, sorted(cells(cfg), key=lambda c: cell_id(cfg, c))))
    plan = StudyPlan(cfg)
    assert list(plan.backbones) == [BACKBONE]
    assert {plan.backbone_of(finetune_cell(m)) for m in ("full", "frozen")} == {BACKBONE}
    # the from-scratch cell is exactly the cell of a grid without pretraining
    plain = load_config(raw_config(pretrain=("none",)))
    (only,) = cells(plain)
    scratch = resolve_settings(cfg, parse_cell_id(cfg, SCRATCH))
    assert cell_id(plain, only) == SCRATCH and settings_hash(resolve_settings(plain, only)) == settings_hash(scratch)
    assert scratch["model_options"] == TINY and "pretrain" not in scratch
    # a fine-tuning classifier is built with the backbone's options: the method's merged over the model's
    tuned = resolve_settings(cfg, parse_cell_id(cfg, finetune_cell("full")))
    assert tuned["model_options"] == {**TINY, **METHOD} and tuned["training"]["lr"] == 1e-3


# ----------------------------------------------------------------------------------- from scratch
def test_scratch_cell_fits_its_tokenizer_on_its_training_features_only(cfg, splits, fits, tmp_path):
    record = loop.train_cell(cfg, SCRATCH, splits, tmp_path, progress=False)
    assert record["model"] == "vq_gpt" and record["steps"] == 4 and np.isfinite(record["test_loss"])
    (n, arrays), *more = fits
    assert not more and n == N_TRAIN == record["input_fit"]["n_jets"]
    assert "labels" not in arrays and set(arrays) == {"x", "points", "mask", "vectors"}
    train = load_split(splits, "train", n=N_TRAIN)
    expected, _ = prepare_inputs("vq_gpt", TINY, train["features"], train["mask"], train["vectors"])
    assert all(np.array_equal(arrays[k], expected[k]) for k in expected)  # the first n_train jets, no val/test
    weights = final_weights(tmp_path)
    assert bool(weights["tokenizer.fitted"]) and weights["tokenizer.codebook"].shape == (16, 4)
    # the tokenizer standardises with the statistics of exactly those jets' particles
    real = np.asarray(train["features"], np.float64)[np.asarray(train["mask"], bool)]
    std = np.where(real.std(0) > 1e-8, real.std(0), 1.0)
    np.testing.assert_allclose(weights["tokenizer.mean"].numpy(), real.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights["tokenizer.std"].numpy(), std, rtol=1e-5, atol=1e-5)
    more_jets = np.asarray(load_split(splits, "train")["features"], np.float64)
    assert not np.allclose(weights["tokenizer.mean"].numpy(), more_jets[load_split(splits, "train")["mask"]].mean(0))
    # a function of the cell's seed (initial weights, fit stream) and its training features only, then frozen:
    # refitting a model built from the same seed gives the tokenizer the cell still has after its last step
    torch.manual_seed(0)
    fresh = build_model("vq_gpt", 16, 11, 19, TINY)
    first = vq_model.fit_tokenizer(fresh, _unlabelled(expected), seed=0)
    own = fresh.state_dict()
    assert [k for k, v in weights.items() if k.startswith("tokenizer.") and not torch.equal(own[k], v)] == []
    assert first["tokenizer"]["final_reco_loss"] == record["input_fit"]["tokenizer"]["final_reco_loss"]


def _unlabelled(arrays):
    from jetscale.train.inputs import Unlabelled

    return Unlabelled(len(arrays["x"]), lambda rows: {k: v[rows] for k, v in arrays.items()})


def test_a_resumed_scratch_cell_does_not_refit(cfg, splits, fits, tmp_path):
    whole = loop.train_cell(cfg, SCRATCH, splits, tmp_path / "whole", progress=False)
    with pytest.raises(TrainingInterrupted):
        loop.train_cell(cfg, SCRATCH, splits, tmp_path / "cut", progress=False, stop_after_steps=2)
    assert len(fits) == 2  # the whole run's fit and the interrupted run's
    resumed = loop.train_cell(cfg, SCRATCH, splits, tmp_path / "cut", progress=False)
    assert len(fits) == 2  # the resumed attempt took its fitted tokenizer from the checkpoint
    timeless = lambda fit: {k: v for k, v in fit.items() if k != "wall_time_s"}  # noqa: E731
    assert timeless(resumed["input_fit"]) == timeless(whole["input_fit"]) and resumed["input_fit"]["n_jets"] == N_TRAIN
    assert resumed["test_loss"] == whole["test_loss"]
    a, b = final_weights(tmp_path / "whole"), final_weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------- fine-tuning
def test_a_finetuning_classifier_loads_exactly_the_backbones_tokenizer_and_gpt(cfg, backbone):
    assert any(k.startswith("tokenizer.") for k in backbone) and any(k.startswith("gpt.") for k in backbone)
    assert not any(k.startswith("lm_head.") for k in backbone) and bool(backbone["tokenizer.fitted"])
    assert backbone["tokenizer.codebook"].shape == (METHOD["codebook_size"], TINY["latent_dim"])
    settings = resolve_settings(cfg, parse_cell_id(cfg, finetune_cell("full")))
    model = build_model("vq_gpt", 16, 11, 19, settings["model_options"])
    ft = attach(model, settings["pretrain"], StudyPlan(cfg).backbone_file(finetune_cell("full")))
    own = model.state_dict()
    assert set(own) == set(backbone) | set(ft.head_keys)  # every backbone key consumed, the rest is the head
    assert ft.head_keys and all(k.startswith("head.") for k in ft.head_keys)
    assert all(torch.equal(own[k], v) for k, v in backbone.items())


def test_frozen_keeps_the_gpt_and_full_trains_it_and_neither_refits(cfg, splits, backbone, fits, tmp_path):
    frozen = loop.train_cell(cfg, finetune_cell("frozen"), splits, tmp_path / "frozen", progress=False)
    full = loop.train_cell(cfg, finetune_cell("full"), splits, tmp_path / "full", progress=False)
    assert not fits and "input_fit" not in frozen and "input_fit" not in full
    weights = final_weights(tmp_path / "frozen")
    for k, v in backbone.items():
        torch.testing.assert_close(weights[k], v, rtol=0, atol=0)
    untrained = build_model("vq_gpt", 16, 11, 19, {**TINY, **METHOD}).state_dict()
    assert not torch.equal(weights["head.out.weight"], untrained["head.out.weight"])
    assert frozen["trainable_params"] == sum(untrained[k].numel() for k in untrained if k.startswith("head."))
    tuned = final_weights(tmp_path / "full")
    assert not torch.equal(tuned["gpt.blocks.0.qkv.weight"], backbone["gpt.blocks.0.qkv.weight"])
    assert all(torch.equal(tuned[k], v) for k, v in backbone.items() if k.startswith("tokenizer."))


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"models": {"codebok_size": 8}},
            "models.vq_gpt.codebok_size: unknown option; allowed: ['codebook_size'",
        ),
        ({"models": {"head": "max"}}, "models.vq_gpt.head: 'max' is not allowed; allowed values: ['sum', 'mean'"),
        ({"models": {"features": "log_pt"}}, "models.vq_gpt.features: bad value 'log_pt': must be a list"),
        ({"models": {"vq_steps": -1}}, "models.vq_gpt.vq_steps: must be an integer >= 0, got -1"),
        (
            {"models": {"n_heads": 3}},
            "models.vq_gpt: grid width 16 for model 'vq_gpt': n_heads: width 16 is not divisible by 3 heads",
        ),
        (
            {"methods": {"codebok_size": 8}},
            "pretraining.methods.vq_gpt over models.vq_gpt.codebok_size: unknown option",
        ),
        (
            {"methods": {"n_heads": 3}},
            "pretraining.methods.vq_gpt over models.vq_gpt: grid width 16 for model 'vq_gpt': n_heads",
        ),
    ],
)
def test_bad_vq_gpt_options_are_refused_with_the_key(change, expected):
    raw = raw_config()
    raw["models"]["vq_gpt"].update(change.get("models", {}))
    raw["pretraining"]["methods"]["vq_gpt"].update(change.get("methods", {}))
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert expected in str(info.value)


def test_vq_gpt_options_and_learning_rate_are_accepted():
    raw = raw_config()
    raw["models"]["vq_gpt"].update(features=["log_pt", "deta", "dphi"], n_heads=2, head="mean")
    raw["training"]["lr"] = {"vq_gpt": 5e-4}
    cfg = load_config(copy.deepcopy(raw))
    settings = resolve_settings(cfg, parse_cell_id(cfg, SCRATCH))
    assert settings["training"]["lr"] == 5e-4 and settings["model_options"]["features"] == ["log_pt", "deta", "dphi"]


def test_a_vq_gpt_backbone_records_what_it_generates_and_the_report_shows_it(cfg, backbone):
    import json

    import pandas as pd

    from jetscale.pretrain.tables import collect_pretraining, pretrain_quality_path
    from jetscale.report.transfer import generative_quality_html

    record = json.loads((Path(cfg["results"]) / "pretrain" / BACKBONE / "pretrain.json").read_text())
    q = record["quality"]
    assert q["n_real"] == 10 and q["n_generated"] == 200  # the 10 held-out validation jets; at least 200 generated
    names = set(q["w1_generated"]["features"])
    assert {"deta", "log_pt", "d0"} <= names and names == set(q["w1_reconstructed"]["features"])
    assert all(v >= 0 for v in q["w1_generated"]["features"].values())
    assert 0 < q["quality"]["usage"]["fraction_used"] <= 1

    collect_pretraining(cfg, [BACKBONE], quiet=True)
    table = pd.read_csv(pretrain_quality_path(Path(cfg["results"])))
    deta = table[(table["kind"] == "feature") & (table["name"] == "deta")].iloc[0]
    assert deta["generated"] == pytest.approx(q["w1_generated"]["features"]["deta"])
    assert deta["reconstructed"] == pytest.approx(q["w1_reconstructed"]["features"]["deta"])
    html = generative_quality_html(cfg)
    assert "Generative backbones" in html and "codebook fraction used" in html and "multiplicity" in html

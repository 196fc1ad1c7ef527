"""Model shapes, symmetries, reference parameter counts, FLOPs, and that each model can fit a tiny batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.testing import synthetic_jets
from jetscale.models import catalog
from jetscale.models.catalog import width_problem
from jetscale.models.registry import batch_tensors, build_model, count_params, measure_flops_per_jet, prepare_inputs

BBT_OPTIONS = {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 16, "max_bytes": 512}}
SMALL = {"particlenet": 8, "part": 8, "bbt_neutron": 16, "vq_gpt": 16}
MODEL_NAMES = catalog.networks()  # the fitted bdt baseline has no nn.Module (tests/test_bdt.py)
# small-model extras: vq_gpt's tokenizer is fitted on the test jets (as a from-scratch cell fits it on its own),
# quickly and with a small codebook
SMALL_OPTIONS = {"vq_gpt": {"codebook_size": 64, "vq_steps": 50, "vq_batch_jets": 16}}


def options_for(name, **extra):
    """Model options refuse unknown keys: the tokenizer goes to BBT-Neutron only."""
    return {**(BBT_OPTIONS if name == "bbt_neutron" else {}), **extra}


# Reference parameter counts, 19 input features and 11 classes (ParT: 4 pair features).
# ParticleNet / ParT: measured 2026-11-25 with weaver-core 0.5.3 (pip-installed into a scratch venv):
#   weaver.nn.model.ParticleNet.ParticleNet(19, 11, [(16,(64,64,64)),(16,(128,128,128)),(16,(256,256,256))],
#       [(256, 0.1)], use_fusion=False, use_fts_bn=True)                              -> 370,801 parameters
#   weaver.nn.model.ParticleTransformer.ParticleTransformer(input_dim=19, num_classes=11, pair_input_dim=4,
#       embed_dims=[128,512,128], pair_embed_dims=[64,64,64], num_heads=8, num_layers=8, num_cls_layers=2,
#       fc_params=[], ...) (the particle_transformer repo's example config)           -> 2,143,879 parameters
# BBT-Neutron: the paper (arXiv:2412.00129) reports ~160M parameters; no exact count is published.
# vq_gpt: no published count either; this is our OmniJet-alpha configuration (codebook 8192, GPT 256 wide with
#   3 blocks and 8 heads, MLP tokenizer 19-128-128-16) counted by hand: tokenizer 42,275 + token embedding
#   8194 x 256 + 3 blocks x 789,760 + final norm 512 + summation head 65,792 + 2,827 = 4,578,350.
REFERENCE_PARAMS = {"particlenet": 370_801, "part": 2_143_879, "bbt_neutron": 160_000_000, "vq_gpt": 4_578_350}


@pytest.fixture(scope="module")
def jets():
    return synthetic_jets(16, 11, n_particles=32, seed=5, mean_particles=12)


def inputs_for(name, jets, options=None):
    arrays, _ = prepare_inputs(
        name, options if options is not None else options_for(name), jets["features"], jets["mask"], jets["vectors"]
    )
    return batch_tensors(arrays, np.arange(len(jets["labels"])))


def small_model(name, jets, seed=0):
    """The model at its small width; a model with a fit-once step (ModelSpec.fit_inputs) gets it on ``jets``."""
    torch.manual_seed(seed)
    options = {**options_for(name), **SMALL_OPTIONS.get(name, {})}
    model = build_model(name, SMALL[name], 11, 19, options)
    spec = catalog.get(name)
    if spec.fit_inputs:
        from jetscale.train.inputs import Unlabelled

        arrays, _ = prepare_inputs(name, options, jets["features"], jets["mask"], jets["vectors"])
        fit = catalog.resolve(spec.fit_inputs)
        fit(model, Unlabelled(len(jets["labels"]), lambda rows: {k: v[rows] for k, v in arrays.items()}), seed)
    return model


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shapes_and_flops(name, jets):
    model = small_model(name, jets)
    batch = inputs_for(name, jets)
    assert model(**batch).shape == (16, 11)
    assert measure_flops_per_jet(model, batch) > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bf16_autocast_forward_and_backward(name, jets):
    """The GPU recipe's mixed precision, run on CPU: every model must accept bf16 activations."""
    model = small_model(name, jets).eval()  # no dropout: compare bf16 with fp32 on equal terms
    batch = inputs_for(name, jets)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**batch)
        full = model(**batch)
    assert low.dtype == torch.bfloat16 and low.shape == (16, 11)
    assert (low.float() - full).abs().max() < 0.05 * full.abs().max() + 0.02  # bf16 rounding, not garbage
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**batch)
    torch.nn.functional.cross_entropy(logits.float(), torch.from_numpy(jets["labels"]).long()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["particlenet", "part"])
def test_particle_models_are_permutation_invariant(name, jets):
    model = small_model(name, jets).eval()
    batch = {k: v.clone() for k, v in inputs_for(name, jets).items()}
    perm = torch.randperm(batch["mask"].shape[-1], generator=torch.Generator().manual_seed(1))
    permuted = {k: v[..., perm] for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), model(**permuted), atol=1e-4, rtol=1e-4)


def test_bbt_neutron_is_order_sensitive(jets):
    model = small_model("bbt_neutron", jets).eval()
    perm = np.random.default_rng(2).permutation(32)
    shuffled = {k: jets[k][:, perm] if k in ("features", "vectors", "mask") else jets[k] for k in jets}
    # the tokenizer writes real particles in the given order; shuffling reorders their bytes
    shuffled["features"] = np.stack(
        [np.concatenate([f[m], f[~m]]) for f, m in zip(shuffled["features"], shuffled["mask"])]
    )
    shuffled["mask"] = np.sort(shuffled["mask"], axis=1)[:, ::-1].copy()
    with torch.no_grad():
        a = model(**inputs_for("bbt_neutron", jets))
        b = model(**inputs_for("bbt_neutron", shuffled))
    assert not torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_reference_parameter_counts(name):
    lm_head = {"lm_head": True} if name == "bbt_neutron" else {}
    model = build_model(name, catalog.get(name).reference_width, 11, 19, options_for(name, **lm_head))
    assert count_params(model) == pytest.approx(REFERENCE_PARAMS[name], rel=0.01)


def test_width_rules_match_the_registry():
    for name in MODEL_NAMES:
        for width in (8, 12, 16, 20, 24, 32):
            ok = width_problem(name, width) is None
            if ok:
                build_model(name, width, 11, 19, options_for(name))
            else:
                with pytest.raises(ValueError):
                    build_model(name, width, 11, 19, options_for(name))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_model_overfits_a_tiny_batch(name, jets):
    model = small_model(name, jets)
    batch = inputs_for(name, jets)
    labels = torch.from_numpy(jets["labels"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300 if name == "part" else 200):
        loss = torch.nn.functional.cross_entropy(model(**batch), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for module in model.modules():  # batch statistics as in training, but no dropout noise
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(model(**batch), labels).item()
    assert final < 0.05, final


def test_models_command_prints_the_width_ladder(tmp_path, capsys):
    from jetscale.cli import main
    from jetscale.config import load_config
    from jetscale.inputs.spec import model_inputs

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    tiny = repo / "tests" / "data" / "tiny_study.yaml"
    out = tmp_path / "ladder.csv"
    assert main(["models", "--config", str(tiny), "--widths", "part=16,32", "--csv", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert list(zip(table["model"], table["width"])) == [
        ("particlenet", 16),
        ("bbt_neutron", 32),
        ("part", 16),
        ("part", 32),
    ]
    cfg = load_config(str(tiny))
    for row in table.itertuples():
        n_features = len(model_inputs(cfg, row.model))  # the declared inputs: 19 Table-1 (+ derived) features
        model = build_model(row.model, row.width, 11, n_features, cfg["models"].get(row.model, {}))
        assert row.n_params == count_params(model)
    part = table[table["model"] == "part"]["fwd_flops_per_jet"].tolist()
    assert 0 < part[0] < part[1]  # measured, and growing with width
    assert "particlenet" in capsys.readouterr().out
    assert main(["models", "--config", str(tiny), "--widths", "part=12"]) == 2
    assert "multiple of 8" in capsys.readouterr().err

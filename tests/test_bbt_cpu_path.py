"""BBT-Neutron's CPU fp32 fast path (oneDNN linear products, the byte embedding's index_add gradient) computes
what plain ``nn.Linear`` / ``nn.Embedding`` do: logits, LM logits and every parameter's gradient; the FLOP counter
counts the same products; the state_dict keys are those of the plain layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jetscale.data.testing import synthetic_jets
from jetscale.models import bbt_neutron, cpu_linear
from jetscale.models.registry import batch_tensors, build_model, measure_flops_per_jet, prepare_inputs

OPTIONS = {"tokenizer": {"mode": "native", "dtype": "float16", "patch_size": 16, "max_bytes": 1024}, "lm_head": True}


@pytest.fixture(scope="module")
def tensors():
    jets = synthetic_jets(24, 11, n_particles=64, seed=5, mean_particles=30)
    arrays, _ = prepare_inputs("bbt_neutron", OPTIONS, jets["features"], jets["mask"], jets["vectors"])
    out = batch_tensors(arrays, np.arange(24))
    assert out["patches"].shape[0] * out["patches"].shape[1] >= bbt_neutron.MIN_ROWS  # the fast path is taken
    assert (out["patches"] == 256).any()  # padding bytes: the PAD row's gradient is exercised
    assert bbt_neutron._row_padding(*out["patches"].shape[:2]) > 0  # PAD patches appended on the fast path
    return out


def model_and_grads(tensors, fast: bool, monkeypatch):
    """Logits, LM logits and parameter gradients of a perturbed w32 model, with or without the fast path."""
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(cpu_linear, "eager_cpu_fp32", lambda *t: False)
        torch.manual_seed(0)
        model = build_model("bbt_neutron", 32, 11, 0, OPTIONS)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        logits, lm = model(**tensors, return_lm=True)
        (logits.square().sum() + lm.square().mean()).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return model, logits.detach(), lm.detach(), grads


def test_fast_path_is_the_plain_maths(tensors, monkeypatch):
    calls, fused = [], []
    real, real_fused = cpu_linear._OneDnnLinear.apply, bbt_neutron._BytePatchEmbed.apply
    monkeypatch.setattr(cpu_linear._OneDnnLinear, "apply", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(bbt_neutron._BytePatchEmbed, "apply", lambda *a: fused.append(1) or real_fused(*a))
    model, logits, lm, grads = model_and_grads(tensors, True, monkeypatch)
    n_fast = len(calls)
    # every decoder product (7 per layer), the patch embedding's second and the LM head's two (the first patch
    # product is the fused byte-table one; the head has B rows only)
    assert n_fast == 7 * len(model.layers) + 3 and len(fused) == 1
    plain, p_logits, p_lm, p_grads = model_and_grads(tensors, False, monkeypatch)
    assert len(calls) == n_fast and len(fused) == 1  # the plain run took no fast path
    assert list(model.state_dict()) == list(plain.state_dict())
    torch.testing.assert_close(logits, p_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lm, p_lm, atol=1e-5, rtol=1e-5)
    assert grads.keys() == p_grads.keys()
    for k in grads:
        torch.testing.assert_close(grads[k], p_grads[k], atol=1e-5, rtol=1e-4, msg=k)
    assert (grads["embed_bytes.weight"][256] == 0).all() and grads["embed_bytes.weight"].abs().sum() > 0


def test_state_dict_keys_are_the_plain_layers():
    model = build_model("bbt_neutron", 32, 11, 0, OPTIONS)
    keys = set(model.state_dict())
    assert {"embed_bytes.weight", "patch_embed.0.weight", "patch_embed.0.bias", "head.weight"} <= keys
    assert {f"layers.0.{p}_proj.weight" for p in ("q", "k", "v", "o", "gate", "up", "down")} <= keys


def test_flops_counted_are_the_plain_products(tensors, monkeypatch):
    model = build_model("bbt_neutron", 32, 11, 0, OPTIONS)
    counted = measure_flops_per_jet(model, tensors)
    monkeypatch.setattr(cpu_linear, "_ONEDNN", False)
    monkeypatch.setattr(cpu_linear, "eager_cpu_fp32", lambda *t: False)
    assert measure_flops_per_jet(model, tensors) == counted > 0


def test_row_padding_fills_the_onednn_row_block_when_cheap():
    assert bbt_neutron._row_padding(32, 63) == 1 and bbt_neutron._row_padding(32, 64) == 0  # 32·64 = 4·512
    assert bbt_neutron._row_padding(128, 30) == 2 and bbt_neutron._row_padding(24, 63) == 1  # 24·64 = 3·512
    assert bbt_neutron._row_padding(33, 63) == 0  # 512 - 63 more patches: not worth it
    assert bbt_neutron._row_padding(32, 17) == 0  # 15 more on 17: not worth it

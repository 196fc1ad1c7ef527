"""Model registry: name + width → architecture, model inputs, parameter count and measured FLOPs.

Width rules (``catalog.width_problem`` checks them without importing torch):

==============  =================  ==============================================================  ==========
model           width means        architecture at width w                                          reference
==============  =================  ==============================================================  ==========
particlenet     first block chans  EdgeConv (w,w,w)/(2w,2w,2w)/(4w,4w,4w), k=16, FC 4w                w = 64
part            embedding dim      embed (w,4w,w), pair (w/2,w/2,w/2), L particle blocks + 2       w = 128
                                   class-attention blocks, 8 heads, MLP 4w;
                                   depth at a fixed aspect ratio: L = clamp(round(8w/128), 2, 8)
bbt_neutron     hidden size        patch MLP (16w→4w→w), L RoPE decoder layers, SwiGLU 4w,           w = 768
                                   heads of 64 (two heads below 128), LM head optional;
                                   depth at a fixed aspect ratio: L = clamp(round(w/64), 2, 12)
==============  =================  ==============================================================  ==========

Model options (config ``models.<name>``): bbt_neutron ``tokenizer`` (see ``jetscale.tokenize.bytes``),
``n_layers`` (default: the depth rule above) and ``lm_head`` (false; forced on when ``training.pretrain``);
particlenet ``k`` (16);
part ``n_layers`` (default: the depth rule above), ``n_cls_layers`` (2).

Depth rules: both transformers keep the reference's width/depth ratio below the reference width (as in
LLM scaling families), so the small widths of the CPU study are shallower as well as narrower; at and
above the reference width they have the reference depth. ParticleNet keeps its 3 EdgeConv blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..inputs.prepare import InputTransform
from ..tokenize.bytes import ByteTokenizer
from ..tokenize.particles import particle_arrays
from .bbt_neutron import BBTNeutron
from .catalog import MODEL_NAMES, REFERENCE_WIDTH, width_problem
from .part import ParticleTransformer
from .particlenet import ParticleNet

__all__ = [
    "MODEL_NAMES",
    "REFERENCE_WIDTH",
    "build_model",
    "prepare_inputs",
    "batch_tensors",
    "count_params",
    "measure_flops_per_jet",
]


def bbt_depth(width: int) -> int:
    """BBT-Neutron depth at constant width/depth = 64 (the reference: 768/12), between 2 and 12 layers."""
    return min(12, max(2, round(width / 64)))


def part_depth(width: int) -> int:
    """ParT particle-attention blocks at constant width/depth = 16 (the reference: 128/8), between 2 and 8."""
    return min(8, max(2, round(8 * width / 128)))


def build_model(name: str, width: int, n_classes: int, n_features: int, options: dict | None = None) -> nn.Module:
    """The model ``name`` at ``width`` (see the table in the module docstring)."""
    options = dict(options or {})
    problem = width_problem(name, width)
    if problem:
        raise ValueError(problem)
    if name == "particlenet":
        return ParticleNet(n_features, n_classes, width=width, k=int(options.get("k", 16)))
    if name == "part":
        return ParticleTransformer(
            n_features,
            n_classes,
            width=width,
            n_layers=int(options.get("n_layers") or part_depth(width)),
            n_cls_layers=int(options.get("n_cls_layers", 2)),
        )
    if name == "bbt_neutron":
        tok = ByteTokenizer.from_options(options.get("tokenizer"))
        return BBTNeutron(
            n_classes,
            width=width,
            n_layers=int(options.get("n_layers") or bbt_depth(width)),
            patch_size=tok.patch_size,
            lm_head=bool(options.get("lm_head", False)),
        )
    raise ValueError(f"unknown model {name!r}; known models: {list(MODEL_NAMES)}")


def prepare_inputs(
    name: str,
    options: dict | None,
    features: np.ndarray,
    mask: np.ndarray,
    vectors: np.ndarray | None = None,
    transform: InputTransform | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split arrays → the model's input arrays (first axis = jets) and facts about them (truncation).

    ``transform`` is the cell's resolved input spec (``jetscale.inputs``); None or a raw one passes the
    Table-1 features through unchanged.
    """
    model_features = None if transform is None or transform.raw else transform.apply(features)
    if name == "bbt_neutron":
        tok = ByteTokenizer.from_options((options or {}).get("tokenizer"))
        tokens, truncated = tok.encode(features if model_features is None else model_features, mask)
        patches, patch_mask = tok.patches(tokens)
        info = {"truncated_jets": int(truncated.sum()), "n_jets": int(len(tokens)), "seq_len": tok.seq_len}
        return {"patches": patches, "patch_mask": patch_mask}, info
    return particle_arrays(features, mask, vectors, model_features), {"n_jets": int(len(mask))}


def batch_tensors(
    arrays: dict[str, np.ndarray], idx: np.ndarray | slice, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Rows ``idx`` as tensors, trimmed to the longest jet in the batch (padding beyond it changes nothing)."""
    if "patch_mask" in arrays:
        pm = np.asarray(arrays["patch_mask"][idx])
        n = max(1, int(pm.sum(axis=1).max()))
        out = {"patches": np.asarray(arrays["patches"][idx])[:, :n], "patch_mask": pm[:, :n]}
    else:
        m = np.asarray(arrays["mask"][idx])
        n = max(1, int(m.sum(axis=-1).max()))
        out = {key: np.asarray(value[idx])[..., :n] for key, value in arrays.items()}
    return {key: torch.from_numpy(np.ascontiguousarray(v)).to(device) for key, v in out.items()}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_flops_per_jet(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Forward FLOPs per jet counted by ``torch.utils.flop_counter`` on ``batch`` (eval mode, no grad)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    n = next(iter(batch.values())).shape[0]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**batch)
    model.train(was_training)
    return counter.get_total_flops() / n

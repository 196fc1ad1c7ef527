"""Model registry (torch side of :mod:`jetscale.models.catalog`): build a catalog model, prepare its inputs,
batch them, count parameters and measure FLOPs.

The three built-in models' width rules (the catalog's ``depth``/``heads``/``width_rule`` of each spec):

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
vq_gpt          GPT hidden size    VQ-VAE tokenizer (fitted, frozen), token embedding, 3 GPT blocks    w = 256
                                   (MLP 4w, w // 32 heads), summation head; depth: option n_layers
==============  =================  ==============================================================  ==========

Model options (config ``models.<name>``) are the spec's options dataclass (``catalog.BBTNeutronOptions``,
``ParticleNetOptions``, ``ParTOptions``): bbt_neutron ``tokenizer`` (``jetscale.tokenize.options``),
``n_layers`` (default: the depth rule above) and ``lm_head`` (false; forced on when ``training.pretrain``);
particlenet ``k`` (16); part ``n_layers`` (default: the depth rule above), ``n_cls_layers`` (2); vq_gpt
``vq_gpt_options.VQGPTOptions`` (tokenizer, codebook, GPT and head; shared with its pretraining method).

Depth rules: both transformers keep the reference's width/depth ratio below the reference width (as in
LLM scaling families), so the small widths of the CPU study are shallower as well as narrower; at and
above the reference width they have the reference depth. ParticleNet keeps its 3 EdgeConv blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..inputs.prepare import InputTransform
from . import catalog
from .catalog import bbt_depth, part_depth, resolve

__all__ = [
    "build_model",
    "prepare_inputs",
    "batch_tensors",
    "batch_length",
    "bucket_length",
    "host_to_device",
    "resident_batch",
    "count_params",
    "measure_flops_per_jet",
    "bbt_depth",
    "part_depth",
]


def build_model(name: str, width: int, n_classes: int, n_features: int, options: Any = None) -> nn.Module:
    """The model ``name`` at ``width`` (``options``: config ``models.<name>``, a mapping or the typed options)."""
    return catalog.get(name).build(width, n_classes, n_features, options)


def prepare_inputs(
    name: str,
    options: Any,
    features: np.ndarray,
    mask: np.ndarray,
    vectors: np.ndarray | None = None,
    transform: InputTransform | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split arrays → the model's input arrays (first axis = jets) and facts about them (truncation).

    ``transform`` is the cell's resolved input spec (``jetscale.inputs``); None or a raw one passes the
    Table-1 features through unchanged.
    """
    spec = catalog.get(name)
    model_features = None if transform is None or transform.raw else transform.apply(features)
    return resolve(spec.inputs.prepare)(spec.parse_options(options), features, mask, vectors, model_features)


def bucket_length(n: int, buckets: Sequence[int] | None, width: int) -> int:
    """The slots a batch whose longest jet fills ``n`` gets: ``n`` itself without ``buckets``, else the smallest
    bucket that holds it, and ``width`` (the arrays' padded width) beyond the largest bucket or where a bucket
    exceeds it (``training.length_buckets``: a few fixed shapes instead of one per batch)."""
    if not buckets:
        return n
    return min(width, next((b for b in sorted(buckets) if b >= n), width))


def batch_length(jet_lengths: np.ndarray, buckets: Sequence[int] | None, width: int) -> int:
    """The slots a batch gets whose jets fill ``jet_lengths`` slots each: its longest jet (at least one slot), or
    the bucket that holds it (:func:`bucket_length`)."""
    return bucket_length(max(1, int(np.max(jet_lengths))), buckets, width)


def batch_tensors(
    arrays: dict[str, np.ndarray],
    idx: np.ndarray | slice,
    device: torch.device | str = "cpu",
    kind: catalog.InputKind | None = None,
    buckets: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Rows ``idx`` as tensors, trimmed to the longest jet in the batch (padding beyond it changes nothing), or
    padded up to the smallest of ``buckets`` that holds it (:func:`bucket_length`). Gathered on the host; to a
    GPU through page-locked memory (:func:`host_to_device`).

    ``kind`` says which array holds the lengths and along which axis; by default the kind whose length array
    is in ``arrays``.
    """
    if kind is None:
        kind = next(k for k in catalog.INPUT_KINDS.values() if k.length_key in arrays)
    lengths = np.asarray(arrays[kind.length_key][idx])
    n = batch_length(lengths.sum(axis=kind.length_axis), buckets, lengths.shape[kind.length_axis])
    out = {}
    for key, value in arrays.items():
        rows = lengths if key == kind.length_key else np.asarray(value[idx])
        trim = [slice(None)] * rows.ndim
        trim[kind.length_axis] = slice(0, n)
        out[key] = rows[tuple(trim)]
    device = torch.device(device)
    return {key: host_to_device(v, device) for key, v in out.items()}


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``. To a GPU it is copied into page-locked memory and sent without
    blocking: a copy from pageable memory waits for the GPU to finish its queued work, so the host could not
    prepare the next batch meanwhile. (Torch's pinned-memory cache keeps the buffer until the copy is done.)"""
    if device.type != "cuda":
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)
    staged = torch.empty(array.shape, dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype, pin_memory=True)
    np.copyto(staged.numpy(), array)
    return staged.to(device, non_blocking=True)


def resident_batch(resident: dict[str, torch.Tensor], rows: np.ndarray, n: int, axis: int) -> dict[str, torch.Tensor]:
    """Rows ``rows`` (non-negative) of input arrays that already live on their device, ``n`` slots along ``axis``:
    gathered there, so only the row indices cross from the host. The caller takes ``n`` from lengths it holds on
    the host (:func:`batch_length`): reading them from the device would wait for it every step."""
    device = next(iter(resident.values())).device
    index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(device, non_blocking=True)
    return {key: value.narrow(axis, 0, n).index_select(0, index) for key, value in resident.items()}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


LAYOUT_FOR_FLOPS = {"ragged": False, "real_rows": True, "real_pairs": True}  # layout switch -> value while counting


def measure_flops_per_jet(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Forward FLOPs per jet counted by ``torch.utils.flop_counter`` on ``batch`` (eval mode, no grad).

    Counted on one layout whatever the device, as the FLOPs of a cell must not depend on it: ParT on the padded
    layout with its real pairs alone (the batch as given; ``real_pairs``, where a GPU's scoring embeds every pair;
    its real-particle path on CPU, ``ragged``, does less work for the same result), ParticleNet on its real
    particles (``real_rows``; its padded path runs on GPUs and compiled), as counted since its first runs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    saved = [(m, attr, getattr(m, attr)) for attr in LAYOUT_FOR_FLOPS for m in model.modules() if hasattr(m, attr)]
    for m, attr, _ in saved:
        setattr(m, attr, LAYOUT_FOR_FLOPS[attr])
    n = next(iter(batch.values())).shape[0]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**batch)
    finally:
        for m, attr, value in saved:
            setattr(m, attr, value)
        model.train(was_training)
    return counter.get_total_flops() / n

"""``vq_gpt`` as a catalog model: OmniJet-alpha's tokenizer + GPT + classification head (Birk, Hallin &
Kasieczka 2024). The module itself is :class:`jetscale.pretrain.vq_gpt.model.VQGPTClassifier`; this file is
its catalog entry point.

* :func:`build`: the classifier at ``width`` (the GPT's hidden size), options :class:`VQGPTOptions`.
* :func:`fit_tokenizer`: the spec's ``fit_inputs`` step. A from-scratch cell (``pretrain~none``) fits its
  VQ-VAE tokenizer on the *features* of its own training subset before the first gradient step, as
  OmniJet-alpha's from-scratch comparison does (tokens are the input representation); the GPT and the head
  start random. Fine-tuning cells skip it: they load tokenizer + GPT from the backbone.
"""

from __future__ import annotations

import time

import numpy as np

from ..pretrain.base import check_unlabelled
from ..pretrain.vq_gpt import particles_of, token_quality
from ..pretrain.vq_gpt.model import VQGPTClassifier
from ..pretrain.vq_gpt.tokenizer import fit_vqvae
from .vq_gpt_options import VQGPTOptions

QUALITY_JETS = 2000  # codebook usage is reported on at most this many of the fit jets


def build(spec, width: int, n_classes: int, n_features: int, options: VQGPTOptions) -> VQGPTClassifier:
    return VQGPTClassifier(width, n_features, n_classes, VQGPTOptions.from_options(options, width))


def fit_jets(n: int, opts: VQGPTOptions, seed: int) -> np.ndarray:
    """Rows the tokenizer is fitted on: all ``n`` training jets, or (when the fit could not draw them all:
    vq_steps × vq_batch_jets < n) a seeded sample of that many, in file order."""
    most = max(1, opts.vq_steps * opts.vq_batch_jets)
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, most, replace=False))


def fit_tokenizer(model: VQGPTClassifier, train, seed: int) -> dict:
    """Fit ``model``'s tokenizer on training jets ``train`` (:class:`jetscale.train.inputs.Unlabelled`: model
    inputs, no labels), deterministic in ``seed``; return the fit's statistics (plain JSON-able values)."""
    t0 = time.perf_counter()
    rows = fit_jets(train.n, model.opts, seed)
    arrays = train.rows(rows)
    check_unlabelled(arrays)
    x, mask = particles_of(arrays, model.columns)
    stats = fit_vqvae(model.tokenizer, x, mask, model.opts, seed)
    quality = token_quality(model, x[:QUALITY_JETS], mask[:QUALITY_JETS])
    return {
        "what": "vq_gpt tokenizer fitted on this cell's training jets (features only)",
        "n_jets": int(len(rows)),
        "tokenizer": stats,
        "usage": quality["usage"],
        "wall_time_s": round(time.perf_counter() - t0, 3),
    }

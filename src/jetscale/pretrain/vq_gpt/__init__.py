"""``vq_gpt`` (OmniJet-alpha, Birk, Hallin & Kasieczka 2024): VQ-VAE particle tokens, then a GPT on them.

1. :func:`prepare` fits the VQ-VAE tokenizer on the unlabelled pool (:mod:`.tokenizer`; 90% of the jets, the
   last 10% held out for the token-quality figures: per-feature reconstruction resolution, codebook usage).
2. :class:`~.model.VQGPTObjective` (from :func:`build`): next-token cross-entropy of a GPT over pT-ordered
   ``START t_1 … t_n STOP`` sequences (:mod:`.gpt`); ``objective.sample(n)`` generates jets.
3. :func:`classifier`: the fine-tuning model, the same tokenizer + GPT with a classification head; it loads
   ``objective.backbone_state_dict()`` (tokenizer + GPT, every key consumed) and takes the particle inputs.
   It is the catalog model ``vq_gpt`` (:mod:`jetscale.models.vq_gpt`), whose from-scratch cells fit their
   own tokenizer on their training jets.
4. :func:`evaluate`: token quality on jets the tokenizer was not fitted on, and Wasserstein-1 distances per
   particle feature and per jet observable between generated and real jets (and, as the tokenization floor,
   between reconstructed and real jets).

Options (``pretraining.methods.vq_gpt`` merged over ``models.vq_gpt``): see
:class:`jetscale.models.vq_gpt_options.VQGPTOptions`; ``width`` is the GPT's hidden size. Labels never enter
any of this.
"""

from __future__ import annotations

import numpy as np
import torch

from ...models.vq_gpt_options import VQGPTOptions
from ...tokenize.particles import particle_arrays
from ..base import check_unlabelled
from .model import VQGPTClassifier, VQGPTObjective
from .quality import codebook_usage, feature_w1, observable_w1, resolution
from .tokenizer import fit_vqvae

__all__ = [
    "VQGPTOptions",
    "VQGPTObjective",
    "VQGPTClassifier",
    "build",
    "prepare",
    "classifier",
    "prepare_inputs",
    "evaluate",
    "token_quality",
]

HOLD_OUT_FRACTION = 0.1
MIN_JETS_FOR_HOLD_OUT = 20
QUALITY_BATCH = 512


def build(
    model_name: str, width: int, n_features: int, n_classes: int, options: dict, seed: int, input_names=None
) -> VQGPTObjective:
    """The pretraining objective (n_classes is not used: pretraining has no labels)."""
    if model_name != "vq_gpt":
        raise ValueError(f"vq_gpt pretrains its own GPT backbone (model vq_gpt), not {model_name!r}")
    opts = VQGPTOptions.from_options(options, width)
    torch.manual_seed(seed)
    return VQGPTObjective(width, n_features, opts)


def classifier(width: int, n_features: int, n_classes: int, options: dict | None) -> VQGPTClassifier:
    """The fine-tuning model: same tokenizer + GPT as :func:`build` with the same options, plus a head."""
    return VQGPTClassifier(width, n_features, n_classes, VQGPTOptions.from_options(options, width))


def prepare_inputs(features: np.ndarray, mask: np.ndarray, vectors: np.ndarray | None = None) -> dict:
    """Model inputs of split arrays ((n, P, F) features, (n, P) mask): ``x`` and ``mask`` (the rest is unused)."""
    arrays = particle_arrays(features, mask)
    return {"x": arrays["x"], "mask": arrays["mask"]}


def particles_of(arrays: dict[str, np.ndarray], columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Model-input arrays (x (n, F, P), mask (n, 1, P)) → tokenized features (n, P, F_tok), mask (n, P) bool."""
    if "x" not in arrays or "mask" not in arrays:
        raise ValueError(f"vq_gpt: expected particle model inputs with 'x' and 'mask', got {sorted(arrays)}")
    x = np.asarray(arrays["x"], dtype=np.float32)[:, columns, :].transpose(0, 2, 1)
    return np.ascontiguousarray(x), np.asarray(arrays["mask"])[:, 0].astype(bool)


def split_pool(n_jets: int) -> tuple[slice, slice]:
    """(fit rows, quality rows): the last 10% are held out when there are enough jets, else quality on all."""
    if n_jets < MIN_JETS_FOR_HOLD_OUT:
        return slice(0, n_jets), slice(0, n_jets)
    cut = n_jets - max(1, int(round(HOLD_OUT_FRACTION * n_jets)))
    return slice(0, cut), slice(cut, n_jets)


@torch.no_grad()
def token_quality(objective, x: np.ndarray, mask: np.ndarray) -> dict:
    """Resolution (reco − true per feature) and codebook usage of ``objective``'s tokenizer on jets (n, P, F_tok)."""
    vq = objective.tokenizer
    device = vq.codebook.device
    recos, codes = [], []
    for start in range(0, len(x), QUALITY_BATCH):
        xb = torch.from_numpy(x[start : start + QUALITY_BATCH]).to(device)
        mb = torch.from_numpy(mask[start : start + QUALITY_BATCH]).to(device)
        reco, c = vq.reconstruct(xb, mb)
        recos.append(reco.cpu().numpy())
        codes.append(c.cpu().numpy())
    reco = np.concatenate(recos) if recos else np.zeros_like(x)
    return {
        "resolution": resolution(x, reco, mask, objective.token_names),
        "usage": codebook_usage(np.concatenate(codes) if codes else np.zeros(0, int), vq.codebook_size),
        "n_jets": int(len(x)),
        "reco": reco,
    }


def prepare(objective: VQGPTObjective, unlabelled_arrays: dict[str, np.ndarray], seed: int) -> dict:
    """Fit the tokenizer on the unlabelled pool (deterministic in ``seed``); return its training and quality stats."""
    check_unlabelled(unlabelled_arrays)
    x, mask = particles_of(unlabelled_arrays, objective.columns)
    fit_rows, quality_rows = split_pool(len(x))
    stats = fit_vqvae(objective.tokenizer, x[fit_rows], mask[fit_rows], objective.opts, seed)
    quality = token_quality(objective, x[quality_rows], mask[quality_rows])
    quality.pop("reco")
    return {
        "tokenizer": stats,
        "quality": quality,
        "quality_jets": "held out (last 10% of the pool)" if fit_rows != quality_rows else "the fit pool",
        "features": list(objective.token_names),
        "codebook_size": objective.tokenizer.codebook_size,
    }


def truncate(x: np.ndarray, mask: np.ndarray, key: np.ndarray, max_particles: int) -> tuple[np.ndarray, np.ndarray]:
    """Each jet's ``max_particles`` hardest particles (by ``key``), hardest first: what a sequence holds."""
    k = np.where(mask, key, -np.inf)
    order = np.argsort(-k, axis=1, kind="stable")[:, :max_particles]
    return np.take_along_axis(x, order[..., None], axis=1), np.take_along_axis(mask, order, axis=1)


def evaluate(objective: VQGPTObjective, arrays: dict[str, np.ndarray], seed: int, n_samples: int = 1000) -> dict:
    """Token quality on ``arrays`` (model inputs of jets the tokenizer was not fitted on, e.g. validation jets)
    and W1 distances: generated vs real jets, and reconstructed vs real jets (what tokenization alone costs)."""
    x, mask = particles_of(arrays, objective.columns)
    key = np.asarray(arrays["x"], np.float32)[:, objective.order_column, :]
    x, mask = truncate(x, mask, key, objective.opts.max_particles)
    quality = token_quality(objective, x, mask)
    reco = quality.pop("reco")
    gen = objective.sample(n_samples, seed=seed)
    names = objective.token_names
    return {
        "quality": quality,
        "w1_generated": {
            "features": feature_w1(gen["features"], gen["mask"], x, mask, names),
            "observables": observable_w1(gen["features"], gen["mask"], x, mask, names),
        },
        "w1_reconstructed": {
            "features": feature_w1(reco, mask, x, mask, names),
            "observables": observable_w1(reco, mask, x, mask, names),
        },
        "mean_multiplicity": {"generated": float(gen["mask"].sum(1).mean()), "real": float(mask.sum(1).mean())},
        "generated_hit_max_particles": float((gen["n_particles"] >= objective.opts.max_particles).mean()),
        "n_generated": int(n_samples),
        "n_real": int(len(x)),
    }

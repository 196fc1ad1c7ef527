"""BBT-Neutron next-PATCH prediction: the pretraining objective of a byte-level jet language model.

Position t of the decoder has seen patches 0..t (the patch embedding mixes the bytes of one patch, the
attention is causal over patches). Its LM head (w → 2w → patch_size × 257) predicts the ``patch_size`` bytes
of patch t + 1: the target is shifted by a whole patch. (Shifting by one byte, with patch_size > 1, asks
position t for bytes it has already seen in its own patch: a leak.) The cross-entropy is averaged over the
non-pad target bytes only; padding-only patches after EOS contribute nothing.

:func:`next_patch_loss` is shared with ``training.pretrain`` (the LM loss trained beside the classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import catalog
from ..models.bbt_neutron import BBTNeutron
from ..models.registry import build_model
from ..tokenize.bytes import PAD, VOCAB_SIZE
from .base import Objective, check_unlabelled

NOT_BACKBONE = ("head.", "lm_head.")  # the classifier head and the LM head stay behind at fine-tuning


def next_patch_targets(patches: torch.Tensor) -> torch.Tensor:
    """(B, N, S) bytes -> (B, N - 1, S): the target of position t is patch t + 1."""
    return patches[:, 1:].long()


def next_patch_loss(lm_logits: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over non-pad bytes; ``lm_logits`` (B, N, S, 257) from positions 0..N-1."""
    pred = lm_logits[:, :-1].reshape(-1, VOCAB_SIZE).float()
    target = next_patch_targets(patches).reshape(-1)
    if not bool((target != PAD).any()):  # one-patch jets only: nothing to predict
        return pred.sum() * 0.0
    return F.cross_entropy(pred, target, ignore_index=PAD)


class NextPatch(Objective):
    name = "next_patch"

    def __init__(self, model: BBTNeutron):
        super().__init__()
        if model.lm_head is None:
            raise ValueError("next_patch needs a BBT-Neutron built with its LM head")
        self.model = model

    def lm_logits(self, patches: torch.Tensor) -> torch.Tensor:
        h = self.model.hidden(patches)
        B, N, _ = h.shape
        return self.model.lm_head(h).view(B, N, self.model.patch_size, VOCAB_SIZE)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        check_unlabelled(batch)
        patches = batch["patches"]
        loss = next_patch_loss(self.lm_logits(patches), patches)
        n_target = int((next_patch_targets(patches) != PAD).sum())
        return loss, {"target_bytes": float(n_target)}

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(NOT_BACKBONE)}


def build(
    model_name: str, width: int, n_features: int, n_classes: int, options: dict, seed: int, input_names=None
) -> NextPatch:
    if model_name != "bbt_neutron":
        raise ValueError(f"next_patch pretrains bbt_neutron, not {model_name!r}")
    torch.manual_seed(seed)
    own = catalog.get(model_name).own_options(options)
    return NextPatch(build_model(model_name, width, n_classes, n_features, {**own, "lm_head": True}))

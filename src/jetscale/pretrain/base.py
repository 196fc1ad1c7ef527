"""The interface every pretraining objective implements, and loading a backbone into a classifier.

An :class:`Objective` wraps a backbone (modules named exactly as in the catalog model it will be loaded into)
plus whatever heads its self-supervised loss needs. Batches hold *model input* tensors only: the same tensors
``jetscale.models.registry.batch_tensors`` gives the classifier. Labels never reach an objective
(:func:`check_unlabelled` enforces it at every step).
"""

from __future__ import annotations

import torch
from torch import nn

LABEL_KEYS = frozenset({"labels", "label", "y", "targets"})


class Objective(nn.Module):
    """A self-supervised loss on unlabelled model inputs, with the backbone it trains."""

    name: str = ""

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss of one batch, and extra scalars to log (floats)."""
        raise NotImplementedError

    def forward(self, **batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss: the training step calls the objective itself, so a data-parallel or DeepSpeed wrapper sees
        the call (and synchronises the gradients)."""
        return self.loss(batch)

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Backbone weights, keyed by the catalog classifier's own parameter/buffer names."""
        raise NotImplementedError


def check_unlabelled(batch: dict[str, torch.Tensor]) -> None:
    leaked = LABEL_KEYS & set(batch)
    if leaked:
        raise ValueError(f"pretraining batch holds label keys {sorted(leaked)}; objectives never see labels")


def load_backbone(model: nn.Module, backbone: dict[str, torch.Tensor], *, source: str = "backbone") -> list[str]:
    """Copy ``backbone`` into ``model``; every backbone tensor must land on a same-shaped model tensor.

    Returns the model keys the backbone did not cover (the classifier's own head, trained from scratch).
    Raises ValueError naming the keys when the backbone does not fit the model (a backbone pretrained for
    another model, width or input).
    """
    own = model.state_dict()
    unknown = sorted(set(backbone) - set(own))
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} backbone keys are not in the model, e.g. {unknown[:3]}")
    wrong = [k for k, v in backbone.items() if tuple(own[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"{source}: {len(wrong)} backbone tensors differ in shape from the model's, e.g. {k}: "
            f"{tuple(backbone[k].shape)} vs {tuple(own[k].shape)}"
        )
    model.load_state_dict(backbone, strict=False)
    return sorted(set(own) - set(backbone))


def backbone_parameters(model: nn.Module, backbone_keys) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split ``model``'s parameters into (backbone, head) by the backbone's state-dict keys."""
    keys = set(backbone_keys)
    backbone, head = [], []
    for name, p in model.named_parameters():
        (backbone if name in keys else head).append(p)
    return backbone, head

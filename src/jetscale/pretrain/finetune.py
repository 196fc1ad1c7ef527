"""Fine-tuning cells: load the backbone a cell names into its classifier, and how its weights then train.

Modes (the grid's ``finetune`` axis):

* ``full``: every weight trains from the start with the cell's learning-rate schedule (as from scratch).
* ``frozen``: backbone parameters never change (``requires_grad`` off, not in the optimizer) and modules made
  only of backbone weights stay in eval mode (dropout off, BatchNorm running statistics kept): a probe of the
  pretrained representation; only the head trains.
* ``catchup`` (MPMv2): the backbone is held (learning rate 0) for the first ``catchup_steps`` optimizer steps
  while the head catches up, then its learning rate ramps linearly over ``catchup_ramp_steps`` up to the
  head's (the same warmup + cosine schedule).

The backbone file must carry the settings hash the cell expects (its ``pretrain.backbone_hash``): a cell
never trains on a backbone pretrained with other settings, for another model/width, or on other data.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import TrainingError
from .base import load_backbone


@dataclass
class FineTune:
    mode: str
    backbone_id: str
    backbone_keys: frozenset[str]
    head_keys: list[str]
    catchup_steps: int = 0
    catchup_ramp_steps: int = 1

    def param_groups(self, model: nn.Module):
        """Optimizer parameters: all of them (full), the head's only (frozen), or [head, backbone] (catchup)."""
        if self.mode == "full":
            return list(model.parameters())
        head = [p for n, p in model.named_parameters() if n not in self.backbone_keys]
        if self.mode == "frozen":
            return head
        backbone = [p for n, p in model.named_parameters() if n in self.backbone_keys]
        return [{"params": head}, {"params": backbone}]

    def lr_lambdas(self, base):
        """Per-group learning-rate factors matching :meth:`param_groups`."""
        if self.mode != "catchup":
            return base
        hold, ramp = self.catchup_steps, max(1, self.catchup_ramp_steps)

        def backbone(step: int) -> float:
            if step < hold:
                return 0.0
            return base(step) * min(1.0, (step - hold + 1) / ramp)

        return [base, backbone]


def default_backbone_path(cfg: dict, cell: dict) -> Path:
    from .. import paths
    from .plan import backbone_id, backbone_key

    return paths.backbone_path(paths.results_root(cfg), backbone_id(backbone_key(cell)))


def read_backbone(path: str | Path, expected_hash: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: backbone not found (run `jetscale pretrain` for it first)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or objects that are not plain data
        raise TrainingError(f"{path}: unreadable backbone ({type(exc).__name__}); rerun `jetscale pretrain`") from None
    needed = ("settings_hash", "backbone_id", "backbone")
    if not isinstance(saved, dict) or any(k not in saved for k in needed):
        found = sorted(saved)[:8] if isinstance(saved, dict) else type(saved).__name__
        raise TrainingError(
            f"{path}: not a backbone file (needs keys {list(needed)}, found {found}); rerun `jetscale pretrain`"
        )
    if not isinstance(saved["backbone"], dict):
        raise TrainingError(f"{path}: 'backbone' must map parameter names to tensors; rerun `jetscale pretrain`")
    if saved.get("settings_hash") != expected_hash:
        raise TrainingError(
            f"{path}: backbone {saved.get('backbone_id')!r} has settings hash {saved.get('settings_hash')!r} but "
            f"this cell names {expected_hash!r} (pretrained with other settings); rerun `jetscale pretrain`"
        )
    return saved


def attach(model: nn.Module, pretrain: dict, path: str | Path, saved: dict | None = None) -> FineTune:
    """Load the backbone at ``path`` into ``model`` (checked against ``pretrain.backbone_hash``) and set up
    ``pretrain["mode"]``. ``pretrain`` is the cell's resolved ``settings["pretrain"]``; ``saved``: the file's
    contents when the caller has already read them with :func:`read_backbone`."""
    if saved is None:
        saved = read_backbone(path, pretrain["backbone_hash"])
    try:
        head = load_backbone(model, saved["backbone"], source=str(path))
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    ft = FineTune(
        mode=pretrain["mode"],
        backbone_id=saved["backbone_id"],
        backbone_keys=frozenset(saved["backbone"]),
        head_keys=head,
        catchup_steps=int(pretrain.get("catchup_steps", 0)),
        catchup_ramp_steps=int(pretrain.get("catchup_ramp_steps", 1)),
    )
    if ft.mode == "frozen":
        freeze(model, ft.backbone_keys)
    return ft


def _stay_in_eval(self, mode: bool = True):
    return nn.Module.train(self, False)


def freeze(model: nn.Module, keys: frozenset[str]) -> list[str]:
    """No gradients for backbone parameters; modules made only of backbone weights stay in eval mode."""
    for name, p in model.named_parameters():
        if name in keys:
            p.requires_grad_(False)
    frozen: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(f + ".") for f in frozen):
            continue
        own = [f"{name}.{k}" for k in module.state_dict()]
        if own and all(k in keys for k in own):
            module.train = types.MethodType(_stay_in_eval, module)
            module.train(False)
            frozen.append(name)
    return frozen

"""The optimisation engine: DeepSpeed (ZeRO) on GPU when it is importable, plain torch otherwise.

``make_engine`` returns an object with ``backward(loss)``, ``step()`` (gradient clipping, optimizer and
scheduler step, zero grad), ``autocast()`` and ``state_dict()/load_state_dict()`` so the training loop does
not care which one it has. Plain torch on GPU uses bf16 autocast; on CPU everything stays float32.
DeepSpeed is used when ``training.deepspeed.enabled`` is true, or 'auto' and both CUDA and the ``deepspeed``
package are available (it is not installed in the CPU environment; that path is import-guarded).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch

from ..errors import TrainingError


def resolve_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainingError("training.device is 'cuda' but CUDA is not available; allowed here: auto, cpu")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))  # one process per GPU
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def deepspeed_available() -> bool:
    try:
        import deepspeed  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


class TorchEngine:
    name = "torch"

    def __init__(self, model, optimizer, scheduler, grad_clip: float | None, device: torch.device):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.grad_clip, self.device = grad_clip, device

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class DeepSpeedEngine(TorchEngine):  # pragma: no cover - needs CUDA + deepspeed
    name = "deepspeed"

    def __init__(self, model, optimizer, scheduler, grad_clip, device, *, batch_size: int, zero_stage: int):
        import deepspeed

        config = {
            "train_micro_batch_size_per_gpu": batch_size,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": grad_clip or 0.0,
            "zero_optimization": {"stage": zero_stage},
            "bf16": {"enabled": True},
        }
        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
        )
        super().__init__(engine, optimizer, scheduler, grad_clip, device)
        self.engine = engine

    def autocast(self):
        return contextlib.nullcontext()  # the engine runs the model in bf16 itself

    def backward(self, loss):
        self.engine.backward(loss)

    def step(self):
        self.engine.step()  # clipping, optimizer, scheduler, zero grad

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}


def make_engine(model, optimizer, scheduler, training: dict, device: torch.device):
    ds = training.get("deepspeed", {}) or {}
    enabled = ds.get("enabled", "auto")
    if enabled is True and not deepspeed_available():
        raise TrainingError("training.deepspeed.enabled is true but deepspeed is not importable or CUDA is not "
                            "available; allowed here: auto, false")
    use_ds = device.type == "cuda" and (enabled is True or (enabled == "auto" and deepspeed_available()))
    if use_ds:
        return DeepSpeedEngine(model, optimizer, scheduler, training.get("grad_clip"), device,
                               batch_size=training["batch_size"], zero_stage=int(ds.get("zero_stage", 1)))
    return TorchEngine(model, optimizer, scheduler, training.get("grad_clip"), device)

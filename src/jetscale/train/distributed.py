"""Processes, devices and the optimisation engine of one training run.

**Ranks.** A run is one process, or ``WORLD_SIZE`` data-parallel processes started by ``torchrun`` (what
``jetscale train --processes N`` does), ``srun`` or submitit (which export the ``env://`` variables ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_ranks` joins the process group
(NCCL on GPU, gloo on CPU). Every rank draws the same global batch from the sampler and trains on its strided
share of it (:meth:`Ranks.shard`), so the stream of jets seen does not depend on the number of processes;
evaluation is sharded the same way and gathered (:meth:`Ranks.gather_rows`), so every rank takes the same
early-stopping decisions. Only rank 0 writes files.

**Engines.** ``make_engine`` returns an object with ``forward_model`` (what the training step calls),
``module`` (the plain model), ``backward(loss)``, ``step()`` (gradient clipping, optimizer and scheduler step,
zero grad), ``autocast()``, ``full_state_dict()`` and checkpoint save/load, so the training loop does not care
which one it has:

* :class:`TorchEngine`: plain torch, wrapped in ``DistributedDataParallel`` when there are several ranks.
* :class:`DeepSpeedEngine`: DeepSpeed with ZeRO stage 0-3 (``training.deepspeed``). Mixed precision goes
  through DeepSpeed's ``torch_autocast`` mode (fp32 master weights, bf16 autocast), the same numerics as the
  torch engine, so the two give the same outputs up to reduction order. Its optimizer state (partitioned
  across ranks from stage 1 on) is checkpointed with DeepSpeed's own per-rank files.

Precision (``training.precision``): 'auto' is bf16 autocast on GPU and fp32 on CPU; 'bf16' forces autocast
(on CPU too, e.g. to exercise the GPU code path in tests); 'fp32' turns it off. ``training.compile`` runs the
training forward through ``torch.compile`` (fused elementwise kernels: the GPU's lever for model FLOP
utilisation; on CPU the first step pays ~30 s of compilation). With ``training.length_buckets`` every training
batch has one of a few shapes, so the forward is compiled for static shapes, once per bucket
(:func:`compile_forward`). Scoring uses the plain module.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .. import paths
from ..config_view import training_view
from ..errors import ConfigError, TrainingError

DS_CHECKPOINT_DIR = "checkpoint_ds"  # DeepSpeed's per-rank checkpoint files, beside checkpoint.pt


# ------------------------------------------------------------------------------------------------ ranks
def resolve_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainingError("training.device is 'cuda' but CUDA is not available; allowed here: auto, cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", 0))  # one process per GPU
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"rank with LOCAL_RANK={local_rank} has no GPU of its own: "
                f"{torch.cuda.device_count()} visible; start at most that many processes per node "
                "(training.processes / --processes) or ask for more GPUs (resources: gpus)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


@dataclass
class Ranks:
    """This process's place among the data-parallel processes of a run (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this run initialised torch.distributed and tears it down
    env_added: tuple = ()  # env:// variables set for DeepSpeed in a single process, removed again on close

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's strided share of a global batch (or of any index array)."""
        return idx[self.rank :: self.world]

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if self.world == 1:
            return [float(v) for v in values]
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def gather_objects(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_rows(self, local: np.ndarray, n: int) -> np.ndarray:
        """Reassemble rows sharded with :meth:`shard` (rank r holds rows r, r + world, ...) on every rank."""
        if self.world == 1:
            return local
        parts = self.gather_objects(local)
        out = np.empty((n,) + parts[0].shape[1:], dtype=parts[0].dtype)
        for r, part in enumerate(parts):
            out[r :: self.world] = part
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and self.distributed:
            dist.destroy_process_group()
            self.owns_group = False
        for var in self.env_added:
            os.environ.pop(var, None)
        self.env_added = ()


def init_ranks(device: torch.device) -> Ranks:
    """Join the process group described by the ``env://`` variables (a single process needs none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(device=device)
    rank = int(os.environ.get("RANK", "0"))
    owns = False
    if not dist.is_initialized():
        missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise TrainingError(
                f"WORLD_SIZE={world} but {', '.join(missing)} not set; start several processes with "
                "`jetscale train --processes N` (torchrun), srun or submitit"
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, timeout=datetime.timedelta(minutes=10), **({"device_id": device} if device.type == "cuda" else {})
        )
        owns = True
    return Ranks(rank=rank, world=world, device=device, owns_group=owns)


def ensure_process_group(ranks: Ranks) -> None:
    """DeepSpeed always needs a process group and LOCAL_RANK, even for one process: give it a private one."""
    added = []
    for var, value in (("LOCAL_RANK", "0"), ("RANK", "0"), ("WORLD_SIZE", "1")):
        if var not in os.environ:
            os.environ[var] = value
            added.append(var)
    ranks.env_added = tuple(ranks.env_added) + tuple(added)
    if not dist.is_initialized():
        # Kept for the life of the process (DeepSpeed caches its groups globally: a second run in the same
        # process, e.g. in tests, must find the same group); a one-process group holds no resources.
        backend = "nccl" if ranks.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


# ------------------------------------------------------------------------------------ engine options
@dataclass(frozen=True)
class EngineOptions:
    """How a run's engine trains, read once from a ``training`` section (:meth:`from_training`)."""

    precision: str = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU | bf16 | fp32
    deepspeed: bool | str = "auto"  # training.deepspeed.enabled: auto (on GPU where importable) | True | False
    zero_stage: int = 1  # training.deepspeed.zero_stage
    compile: bool = False  # torch.compile the training forward
    static_shapes: bool = False  # training batches come in a few fixed shapes (length buckets): compile each once
    find_unused_parameters: bool = False  # DDP: some trainable parameters get no gradient (a pretraining head)

    @classmethod
    def from_training(cls, training: Mapping[str, Any], **fields: Any) -> EngineOptions:
        """The options a ``training`` section sets (absent keys: the schema's defaults, through the typed view),
        then ``fields`` over them. ``EngineOptions()`` equals the options of an empty section."""
        view = training_view(training)
        read = cls(
            precision=view.precision,
            deepspeed=view.deepspeed.enabled,
            zero_stage=int(view.deepspeed.zero_stage),
            compile=bool(view.compile),
            static_shapes=bool(view.length_buckets),
        )
        return replace(read, **fields)

    def bf16(self, device: torch.device) -> bool:
        return self.precision == "bf16" or (self.precision == "auto" and device.type == "cuda")

    def uses_deepspeed(self, device: torch.device) -> bool:
        if self.deepspeed is True:
            if not deepspeed_importable(device):
                raise ConfigError(
                    "training.deepspeed.enabled is true but the deepspeed package is not importable "
                    "(it is pinned in envs/requirements.txt); allowed without it: auto, false"
                )
            return True
        return self.deepspeed == "auto" and device.type == "cuda" and deepspeed_importable(device)


def deepspeed_importable(device: torch.device) -> bool:
    # Name the accelerator: DeepSpeed otherwise probes for one and logs a warning when it falls back to CPU.
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.type == "cuda" else "cpu")
    try:
        import deepspeed  # noqa: F401
    except Exception:
        return False
    return True


def _quiet_deepspeed_on_cpu(device: torch.device) -> None:
    """Keep DeepSpeed on CPU (used to check it against plain torch) from JIT-compiling its shared-memory
    all-reduce: ~45 s and a C++ toolchain per fresh machine for a speed-up that only matters to CPU clusters."""
    import logging
    import warnings

    import deepspeed

    deepspeed.utils.logger.setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore",
        category=FutureWarning,
        message=r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated",
    )
    backend = importlib.import_module("deepspeed.comm.torch")  # the module, not `torch` re-exported by deepspeed.comm
    if device.type == "cpu" and hasattr(backend, "build_shm_op"):
        backend.build_shm_op = lambda: None


# ---------------------------------------------------------------------------------------------- compile
STATIC_RECOMPILE_LIMIT = 32  # shapes one compiled forward may see: buckets x (at most two) per-rank batch sizes


def configure_compiler(static_shapes: bool) -> None:
    """Process-wide compiler settings of a compiled run. Random draws (dropout) come from torch's generator as in
    eager mode, not inductor's own: ``compile`` is a run knob, so a compiled run must train the model the eager
    run trains (to rounding). With ``static_shapes`` (length buckets) the forward may be specialised to every
    bucket shape it meets, and any data-dependent size inside a model (``nonzero``: none in the compiled training
    paths of ParticleNet and ParT, which carry every padded slot, but a user's model may have one) is traced as a
    symbol instead of splitting the graph (which would recompile the part after the split for every count)."""
    import torch._dynamo
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    if not static_shapes:
        return
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, STATIC_RECOMPILE_LIMIT)


def compile_forward(module, static_shapes: bool):
    """``module`` under ``torch.compile``: specialised to each input shape when the batches come in a few fixed
    shapes (``static_shapes``: length buckets), else one graph with symbolic shapes."""
    configure_compiler(static_shapes)
    return torch.compile(module, dynamic=False if static_shapes else True)


# ---------------------------------------------------------------------------------------------- engines
class Engine:
    """What both engines share: the plain module, precision contexts, whole weights. Subclasses set
    ``forward_model`` and implement ``backward``, ``step``, ``save`` and ``load``."""

    name = "base"
    partitioned = False  # module.state_dict() holds the full weights

    def __init__(
        self,
        model,
        optimizer,
        scheduler,
        grad_clip: float | None,
        ranks: Ranks,
        bf16: bool,
        compile_model: bool = False,
        static_shapes: bool = False,
    ):
        self.module, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.compiled, self.static_shapes = compile_model, static_shapes
        self.grad_clip, self.ranks, self.bf16 = grad_clip, ranks, bf16

    def eval_autocast(self):
        """The precision context for scoring with ``module`` (which never autocasts itself)."""
        if self.bf16:
            return torch.autocast(self.ranks.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def autocast(self):
        """The precision context for the training forward through ``forward_model``."""
        return self.eval_autocast()

    def full_state_dict(self, copy: bool = True) -> dict[str, torch.Tensor]:
        """The complete model weights, on every rank; ``copy=False`` for a view that is written out at once."""
        state = self.module.state_dict()
        return {k: v.detach().clone() for k, v in state.items()} if copy else state

    def prune(self, out_dir: Path, keep: str) -> None:
        """Remove checkpoint files older than ``keep`` (nothing beyond checkpoint.pt by default)."""

    def gathered(self):
        """A context in which ``module``'s parameters are whole on every rank (collective under ZeRO-3)."""
        if not self.partitioned:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.module.parameters()))


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, *args, find_unused: bool = False, **kwargs):
        """:class:`Engine`'s arguments; ``find_unused`` for DDP when some trainable parameters get no gradient."""
        super().__init__(*args, **kwargs)
        model, ranks, compile_model = self.module, self.ranks, self.compiled
        self.forward_model = model
        if ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [ranks.device.index] if ranks.device.type == "cuda" else None
            # find_unused: a model whose loss leaves some trainable parameters out (a pretraining objective
            # carries the classifier's head it never uses)
            self.forward_model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)
        if compile_model:
            # compile the DDP wrapper (not the module inside it) so DDP can split graphs at its gradient buckets
            self.forward_model = compile_forward(self.forward_model, self.static_shapes)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def save(self, out_dir: Path, tag: str) -> dict[str, Any]:
        """Optimizer + scheduler state for ``checkpoint.pt`` (replicated on every rank: rank 0's is whole)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load(self, out_dir: Path, checkpoint: dict[str, Any]) -> bool:
        """Restore weights, optimizer and scheduler from a checkpoint; False when it cannot be used."""
        from .checkpoint import report_unusable

        state, weights, current = checkpoint.get("engine") or {}, checkpoint.get("model"), self.module.state_dict()
        if "optimizer" not in state:
            report_unusable(out_dir / paths.CHECKPOINT, "it holds no optimizer state (written by another engine?)")
            return False
        if (
            not isinstance(weights, dict)
            or weights.keys() != current.keys()
            or any(not isinstance(weights[k], torch.Tensor) or weights[k].shape != current[k].shape for k in current)
        ):  # checked before any weight is overwritten
            report_unusable(out_dir / paths.CHECKPOINT, "its weights do not fit this model")
            return False
        self.module.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return True


class DeepSpeedEngine(Engine):
    name = "deepspeed"

    def __init__(self, *args, batch_size: int, zero_stage: int, **kwargs):
        """:class:`Engine`'s arguments, the global batch size and the ZeRO stage."""
        super().__init__(*args, **kwargs)
        import deepspeed

        ranks = self.ranks
        _quiet_deepspeed_on_cpu(ranks.device)
        ensure_process_group(ranks)
        config = {
            "train_micro_batch_size_per_gpu": max(1, -(-batch_size // ranks.world)),
            "gradient_accumulation_steps": 1,
            "gradient_clipping": self.grad_clip or 0.0,
            # memory_efficient_linear would replace torch.nn.functional.linear for the whole process (ZeRO-3)
            "zero_optimization": {"stage": zero_stage, "memory_efficient_linear": False},
            "steps_per_print": 2**62,
        }
        if self.bf16:
            # fp32 master weights and gradients with bf16 autocast: the torch engine's numerics. (Listing no
            # "lower-precision-safe" modules keeps DeepSpeed from reducing Linear gradients in bf16.)
            config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16", "lower_precision_safe_modules": []}
        engine, *_ = deepspeed.initialize(
            model=self.module, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=config
        )
        self.engine = self.forward_model = engine
        if self.compiled:
            configure_compiler(self.static_shapes)
            engine.compile(compile_kwargs={"dynamic": not self.static_shapes})
        self.partitioned = zero_stage == 3

    def autocast(self):
        return contextlib.nullcontext()  # the engine's forward autocasts itself (torch_autocast mode)

    def backward(self, loss):
        self.engine.backward(loss)

    def step(self):
        self.engine.step()  # clipping, optimizer, scheduler, zero grad

    def full_state_dict(self, copy: bool = True):
        if not self.partitioned:
            return super().full_state_dict(copy)
        import deepspeed

        # gathered weights are released when the context ends: always a copy
        with deepspeed.zero.GatheredParameters(list(self.module.parameters())):  # collective: all ranks
            return super().full_state_dict(copy=True)

    def save(self, out_dir: Path, tag: str) -> dict[str, Any]:
        """All ranks write their partition under checkpoint_ds/<tag>/ (collective); checkpoint.pt points to it."""
        self.engine.save_checkpoint(str(out_dir / DS_CHECKPOINT_DIR), tag=tag, save_latest=False)
        self.ranks.barrier()
        return {"deepspeed_tag": tag, "world": self.ranks.world}

    def load(self, out_dir: Path, checkpoint: dict[str, Any]) -> bool:
        from .checkpoint import DEEPSPEED_GLOBALS, report_unusable, unsafe_globals, weights_only_loads

        state = checkpoint.get("engine") or {}
        tag, root = state.get("deepspeed_tag"), out_dir / DS_CHECKPOINT_DIR

        def refuse(reason: str) -> bool:
            report_unusable(out_dir / paths.CHECKPOINT, reason)
            return False

        if tag is None:
            return refuse("it names no DeepSpeed state (written by another engine?)")
        if not isinstance(tag, str) or not re.fullmatch(r"step\d+", tag):  # a tag is a name under root, no path
            return refuse(f"its DeepSpeed tag {tag!r} is not a step directory of {root}")
        if state.get("world") != self.ranks.world:  # partitions are per rank: another process count cannot reuse them
            return refuse(
                f"its DeepSpeed partitions are for {state.get('world')} processes, this run has {self.ranks.world}"
            )
        if not (root / tag).is_dir():
            return refuse(f"{root / tag} is missing")
        for part in sorted((root / tag).iterdir()):  # checked before DeepSpeed touches any weight
            refused = unsafe_globals(part, DEEPSPEED_GLOBALS) if part.is_file() else []
            if refused:
                return refuse(f"{part} holds objects that are not plain data: {', '.join(refused)}")
        try:
            with weights_only_loads(DEEPSPEED_GLOBALS):  # DeepSpeed itself asks for weights_only=False
                path, _ = self.engine.load_checkpoint(
                    str(root), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=True
                )
        except Exception as exc:  # the weights may be half-restored: not safe to start afresh in this process
            raise TrainingError(
                f"{root / tag}: DeepSpeed checkpoint unreadable ({exc}); remove it to start afresh"
            ) from exc
        return path is not None

    def prune(self, out_dir: Path, keep: str) -> None:
        """Remove older tags once checkpoint.pt points to ``keep`` (rank 0)."""
        root = out_dir / DS_CHECKPOINT_DIR
        if self.ranks.is_main and root.is_dir():
            for old in root.iterdir():
                if old.name != keep:
                    shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


def make_engine(
    model, optimizer, scheduler, options: EngineOptions, ranks: Ranks, *, grad_clip: float | None, batch_size: int
):
    """The engine ``options`` ask for on this process's device (``batch_size``: the global batch)."""
    bf16 = options.bf16(ranks.device)
    parts = (model, optimizer, scheduler, grad_clip, ranks, bf16, options.compile, options.static_shapes)
    if options.uses_deepspeed(ranks.device):
        return DeepSpeedEngine(*parts, batch_size=int(batch_size), zero_stage=options.zero_stage)
    return TorchEngine(*parts, find_unused=options.find_unused_parameters)

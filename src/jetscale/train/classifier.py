"""A grid cell's classifier as a task of the runner (:mod:`jetscale.train.runner`): :class:`ClassifierTask`.

The task holds what is particular to a classifier cell: its resolved settings and hash, the cell's splits and
model inputs, the model (and, for a fine-tuning cell, the pretrained backbone loaded into it with its
parameter groups and learning-rate factors), the cross-entropy loss of a batch, the validation score, and the
outputs written at the end (test-set scores of the best weights in ``predictions.parquet``, then
``metrics.json``). How it trains comes from :meth:`ClassifierTask.plan`: AdamW with the config's learning
rate (or the model's default) and weight decay, gradient-norm clipping, a fixed batch; how long, how often it
is validated and the learning-rate schedule are the stopping rule's (:func:`jetscale.train.stopping.plan_for`;
``stopped_by`` in ``metrics.json``); the best weights are restored before the test set is scored.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import io as jio
from .. import paths
from ..config_view import training_view
from ..errors import DataError
from ..grid import parse_cell_id
from ..models import catalog
from ..models.registry import build_model, count_params, measure_flops_per_jet
from ..records import ABSENT
from ..settings import resolve_settings, settings_hash
from .distributed import EngineOptions, Ranks
from .history import archive
from .inputs import SplitInputs, input_transform, load_split_inputs
from .outputs import loss_and_accuracy, write_predictions
from .record import MetricsRecord, run_fields, scored_fields
from .stopping import plan_for
from .task import RunOutcome, RunPlan, TrainState, Validation

EVAL_BATCH = 256


# ----------------------------------------------------------------------------------------------- data
def read_meta(splits_dir) -> dict:
    from ..data.splits import read_meta as read_split_meta  # a broken meta.json: DataError naming it

    return read_split_meta(splits_dir) if paths.split_meta(splits_dir).is_file() else {}


# --------------------------------------------------------------------------------------------- losses
def compute_loss(model, batch: dict[str, torch.Tensor], labels: torch.Tensor, pretrain: bool = False) -> torch.Tensor:
    """Cross-entropy of the class logits (+ next-patch byte LM loss for BBT-Neutron when ``pretrain``).

    ``training.pretrain`` trains the LM head *beside* the classifier on the labelled jets (a multi-task
    auxiliary loss). Pretraining proper, on unlabelled jets before fine-tuning, is the grid's ``pretrain``
    axis (``jetscale.pretrain``); both use the same next-patch loss.
    """
    if pretrain and "patches" in batch:
        from ..pretrain.next_patch import next_patch_loss

        logits, lm = model(**batch, return_lm=True)
        return F.cross_entropy(logits.float(), labels) + next_patch_loss(lm, batch["patches"])
    return F.cross_entropy(model(**batch).float(), labels)


@torch.no_grad()
def predict(model, inputs: SplitInputs, device, autocast, ranks: Ranks | None = None) -> np.ndarray:
    """Softmax probabilities (n, n_classes), float32, in eval mode.

    With several ranks each scores its strided share in the same number of batches (a ZeRO-3 forward is a
    collective) and every rank gets all rows back.
    """
    ranks = ranks or Ranks()
    was_training = model.training
    model.eval()
    n = inputs.n
    if ranks.world == 1:  # batches of similar lengths: less padding, the same probabilities
        order = inputs.length_order()
        chunks = [order[start : start + EVAL_BATCH] for start in range(0, n, EVAL_BATCH)]
    else:
        if n < ranks.world:
            raise DataError(f"{n} jets cannot be shared among {ranks.world} processes")
        n_batches = math.ceil(math.ceil(n / ranks.world) / EVAL_BATCH)
        chunks = np.array_split(ranks.shard(np.arange(n)), n_batches)
    out = []
    for rows in chunks:
        batch = inputs.tensors(rows, device)
        with autocast():
            logits = model(**batch)
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    model.train(was_training)
    probs = np.concatenate(out).astype(np.float32)
    if ranks.world == 1:
        probs[order] = probs.copy()
    return ranks.gather_rows(probs, n)


# ------------------------------------------------------------------------------------------- the task
class ClassifierTask:
    """One grid cell's classifier (see the module docstring); the runner's :class:`~.task.Task`."""

    outputs = (paths.METRICS,)

    def __init__(self, cfg: dict, cell_id: str, splits_dir: Path, out_dir: Path, *, backbone=None):
        self.cfg, self.name, self.splits_dir, self.out_dir = cfg, cell_id, Path(splits_dir), Path(out_dir)
        self.cell = parse_cell_id(cfg, cell_id)
        self.settings = settings = resolve_settings(cfg, self.cell)
        self.settings_hash = settings_hash(settings)
        self.identity = {"cell_id": cell_id}
        self.training = settings["training"]
        self.n_train = int(settings["n_train"])
        self.seed = int(settings["seed"])
        self.backbone_path = backbone
        self.buckets = tuple(sorted(training_view(self.training).length_buckets or ())) or None  # training batches
        self.input_fit: dict | None = None  # stats of the model's fit-once step (ModelSpec.fit_inputs)

    def plan(self) -> RunPlan:
        """The cell's recipe; how long, how often it is validated and its schedule: :func:`.stopping.plan_for`."""
        training, knobs = self.training, training_view(self.cfg["training"])  # knobs: run-level, not hashed
        batch_size = min(int(training["batch_size"]), self.n_train)
        return RunPlan(
            batch_size=batch_size,
            lr=float(training["lr"]),
            weight_decay=float(training["weight_decay"]),
            grad_clip=training.get("grad_clip"),
            stopping=plan_for(self.settings, batch_size),
            keep_best=True,
            checkpoint_every_steps=knobs.checkpoint_every_steps,
            seed=self.seed,
            engine=EngineOptions.from_training(training, compile=knobs.compile),
        )

    # ---- set-up -------------------------------------------------------------------------------------
    def setup(self, device: torch.device, ranks: Ranks) -> None:
        """Read the backbone (fine-tuning cells), the splits' model inputs, and build the model."""
        self.device, self.ranks = device, ranks
        settings, backbone = self.settings, None  # a fine-tuning cell: (path, contents), hash-checked
        if "pretrain" in settings:
            from ..pretrain.finetune import default_backbone_path, read_backbone

            path = Path(self.backbone_path or default_backbone_path(self.cfg, self.cell))
            backbone = (path, read_backbone(path, settings["pretrain"]["backbone_hash"]))
        self._load_data(backbone)
        self.model = self.new_model()
        self.finetune = None
        if backbone is not None:
            from ..pretrain.finetune import attach

            # its weights are in the model afterwards: no second copy is held while training
            self.finetune = attach(self.model, settings["pretrain"], *backbone)
        self.fits_once = self.spec.fit_inputs is not None and self.finetune is None

    def _load_data(self, backbone) -> None:
        settings, splits_dir = self.settings, self.splits_dir
        self.model_name, self.classes = name, classes = settings["model"], settings["classes"]
        self.meta = read_meta(splits_dir)
        if self.meta.get("classes") and list(self.meta["classes"]) != list(classes):
            raise DataError(
                f"{splits_dir}/meta.json: classes {self.meta['classes']} differ from the config's {classes}"
            )
        self.spec = catalog.get(name)
        self.options = copy.deepcopy(settings["model_options"])
        self.pretrain = bool(self.training.get("pretrain")) and "next_patch" in self.spec.pretrain_heads
        if self.pretrain:
            self.options["lm_head"] = True
        self.transform, self.stats_source = input_transform(
            settings.get("inputs"), splits_dir, self.n_train, backbone=backbone
        )
        self.inputs = {
            split: load_split_inputs(
                splits_dir,
                split,
                name,
                self.options,
                self.n_train if split == "train" else None,
                transform=self.transform,
                random_rows=split == "train",  # batches drawn at random; val and test are scored in order
            )
            for split in ("train", "val", "test")
        }
        self.input_info = {split: inp.info for split, inp in self.inputs.items()}
        self.train_labels = torch.from_numpy(self.inputs["train"].labels)

    def new_model(self):
        n_features = self.inputs["train"].n_features
        return build_model(self.model_name, self.settings["width"], len(self.classes), n_features, self.options).to(
            self.device
        )

    def fit_once(self) -> None:
        """The model's fit-once step on this cell's training inputs, never its labels (``ModelSpec.fit_inputs``,
        e.g. vq_gpt's tokenizer); from-scratch cells only: a fine-tuning cell loaded it with the backbone."""
        if self.fits_once:
            fit = catalog.resolve(self.spec.fit_inputs)
            self.input_fit = fit(self.model, self.inputs["train"].unlabelled(), self.seed)

    def checkpoint_problem(self, saved: dict) -> str | None:
        if saved.get("data_fingerprint") != self.meta.get("data_fingerprint"):
            return "trained on other splits (data_fingerprint differs)"
        return None

    def state_extras(self) -> dict:
        # a resume needs the same splits
        return {"input_fit": self.input_fit, "data_fingerprint": self.meta.get("data_fingerprint")}

    def restore_extras(self, saved: dict) -> None:
        self.input_fit = saved.get("input_fit")

    def ready(self) -> None:
        pass

    # ---- training -----------------------------------------------------------------------------------
    def param_groups(self):
        return self.finetune.param_groups(self.model) if self.finetune else self.model.parameters()

    def lr_lambdas(self, schedule):
        return self.finetune.lr_lambdas(schedule) if self.finetune else schedule

    def loss(self, module, rows: np.ndarray, device) -> torch.Tensor:
        batch = self.inputs["train"].tensors(rows, device, self.buckets)
        labels = self.train_labels[rows].to(device, non_blocking=True)  # a blocking copy waits for the GPU
        return compute_loss(module, batch, labels, self.pretrain)

    def prefetch(self, rows: np.ndarray) -> None:
        self.inputs["train"].prefetch(rows, self.buckets)  # the buckets loss() draws the batch with

    def validate(self, module, autocast) -> Validation:
        probs = predict(module, self.inputs["val"], self.device, autocast, self.ranks)
        loss, accuracy = loss_and_accuracy(probs, self.inputs["val"].labels)
        return Validation(loss, {"accuracy": accuracy})

    def row_extras(self, state: TrainState) -> dict:
        return {}

    # ---- the result ---------------------------------------------------------------------------------
    def finish(self, outcome: RunOutcome) -> dict:
        """Restore the best weights, score val and test, write predictions + metrics.json; return the record."""
        state, engine, ranks = outcome.state, outcome.engine, outcome.ranks
        final_model = engine.module
        if engine.partitioned:  # ZeRO-3 holds a slice of each weight per rank: score a plain, whole copy
            final_model = self.new_model()
            final_model.load_state_dict(state.best_state or engine.full_state_dict())
        elif state.best_state is not None:
            final_model.load_state_dict(state.best_state)
        val, test = self.inputs["val"], self.inputs["test"]
        if state.best_state is not None:  # the best evaluation already scored these weights on val
            val_scores = (state.best_val, state.best_extras.get("accuracy"))
        else:
            val_scores = loss_and_accuracy(
                predict(final_model, val, self.device, engine.eval_autocast, ranks), val.labels
            )
        test_probs = predict(final_model, test, self.device, engine.eval_autocast, ranks)
        sample = val.tensors(slice(0, min(64, val.n)), self.device)
        flops_per_jet = measure_flops_per_jet(final_model, sample)
        test_scores = loss_and_accuracy(test_probs, test.labels)
        record = metrics_record(self, final_model, outcome, flops_per_jet, val_scores, test_scores).to_json()
        if ranks.is_main:
            write_predictions(self.out_dir / paths.PREDICTIONS, test.jet_id, test.labels, test_probs, self.classes)
            jio.write_json(self.out_dir / paths.METRICS, record)
            archive(self.out_dir, self.settings_hash)
        ranks.barrier()
        return record


def metrics_record(task: ClassifierTask, model, outcome: RunOutcome, flops_per_jet: float, val, test) -> MetricsRecord:
    """The cell's ``metrics.json`` record (:class:`~.record.MetricsRecord`; losses in nats, accuracy a fraction)."""
    settings, info = task.settings, task.input_info
    inputs = None
    if task.transform is not None:  # the resolved input spec (centres/scales of this subset); None = raw features
        inputs = {"features": task.transform.record(), "statistics": task.stats_source}
    finetune = task.finetune
    return MetricsRecord(
        **scored_fields(task.name, task.cell, settings, task.settings_hash, val, test, task.meta),
        **run_fields(outcome, flops_per_jet, settings["n_train"]),
        width=settings["width"],
        compute=settings["compute"],
        n_params=count_params(model),
        best_step=int(outcome.state.best_step),
        stopped_by=outcome.plan.stopping.verdict(outcome.state),
        wall_time_s=round(outcome.wall_s(), 3),
        n_val=info["val"]["n_jets"],
        n_test=info["test"]["n_jets"],
        truncated_jets={k: v.get("truncated_jets") for k, v in info.items()}
        if catalog.get(settings["model"]).inputs.counts_truncation
        else None,
        inputs=inputs,
        input_fit=task.input_fit if task.input_fit is not None else ABSENT,
        backbone_id=finetune.backbone_id if finetune is not None else ABSENT,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad)
        if finetune is not None
        else ABSENT,
    )

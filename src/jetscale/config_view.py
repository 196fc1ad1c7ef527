"""Typed, frozen views of a validated config's sections: ``training`` (with its ``stopping`` rule), ``fits``,
``data``, ``pretraining`` and ``report``, built by :func:`jetscale.config.study_view` (or one section, e.g. a
cell's resolved ``settings["training"]``, by :func:`training_view` and the like).

The defaults live in one place, the schema (``schemas/config.schema.yaml``): a key absent from the mapping a
view is built from (a settings subset, a hand-built section) takes the schema's default for it, or the default
of the mapping around it (``training.deepspeed``); no view restates a default. A list becomes a tuple; a free
mapping (``training.lr`` per model, ``data.generate.detector``) stays the mapping it was. The raw dict stays what
settings and hashes are made from: a view is read, never hashed.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from .config_schema import _parsed_schema
from .errors import ConfigError


# ----------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class StoppingRule:
    """``training.stopping``: the budget of a ``compute: auto`` cell (see :mod:`jetscale.train.stopping`)."""

    evals_per_epoch: float
    min_eval_samples: int
    max_eval_samples: int
    patience: int
    min_improvement: float
    lr_patience: int | None
    lr_drop: float
    min_lr_factor: float
    warmup_samples: int
    max_epochs: float
    max_samples: int
    cap_decay_fraction: float


@dataclass(frozen=True)
class DeepSpeed:
    """``training.deepspeed``: ``enabled`` auto (on GPU where importable) | true | false; the ZeRO stage."""

    enabled: bool | str
    zero_stage: int


@dataclass(frozen=True)
class TrainingConfig:
    """``training``: the classifier recipe, its two kinds of budget, and the run knobs (never hashed)."""

    batch_size: int
    lr: float | dict | None  # a cell's resolved settings hold its model's rate (a number)
    weight_decay: float
    grad_clip: float | None
    stopping: StoppingRule
    warmup_fraction: float
    early_stopping_patience: int | None
    eval_every_samples: int
    checkpoint_every_steps: int
    threads: int
    device: str
    precision: str
    compile: bool
    length_buckets: list[int] | None  # pad training batches up to these particle counts
    processes: int | str
    pretrain: bool
    deepspeed: DeepSpeed


# --------------------------------------------------------------------------------------------------- fits
@dataclass(frozen=True)
class FitTarget:
    """One ``fits.targets`` entry: the training jets and compute each series needs to reach ``value`` of
    ``metric`` (per ``flavor``), from the form ``form`` (auto: the comparison's verdict)."""

    metric: str
    flavor: str
    value: float
    form: str


@dataclass(frozen=True)
class FitsConfig:
    """``fits``: what the study fits and how (see :mod:`jetscale.fit.study`)."""

    metrics: tuple[str, ...]  # names from the metric catalog (jetscale.metric_catalog)
    exclude_budget_limited: bool  # leave out cells that ended at their sample cap (stopped_by: budget)
    forms: tuple[str, ...]  # names from the form catalog (jetscale.fit.forms)
    bootstrap: int  # bootstrap-over-seeds replicates of every interval
    min_points: int
    loss: str  # the objective: squares | huber_log
    huber_delta: float  # Huber scale on ln residuals
    monotone: bool  # drop sizes whose seed mean is worse than at a smaller size
    targets: tuple[FitTarget, ...]  # forecasts
    backtest_holdout: int  # largest n_train values held out by the backtests


# --------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class GenerateConfig:
    """``data.generate``: the built-in Pythia generator; ``clustering`` and ``detector`` stay mappings (their own
    defaults are filled by :mod:`jetscale.data.jets` and :mod:`jetscale.data.detector`)."""

    jets_per_class: int
    n_shards: int
    seed: int
    sqrt_s: float
    process: str
    clustering: dict
    detector: dict


@dataclass(frozen=True)
class IngestConfig:
    """``data.ingest``: the files converted to shards and the mapping they are read through."""

    paths: tuple[str, ...]
    mapping: str


@dataclass(frozen=True)
class DataConfig:
    """``data``: where the jets come from and how they are split."""

    source: str
    generate: GenerateConfig
    ingest: IngestConfig
    n_particles: int
    val_per_class: int
    test_per_class: int
    split_seed: int


# -------------------------------------------------------------------------------------------- pretraining
@dataclass(frozen=True)
class PretrainCompute:
    """``pretraining.compute``: ``epochs`` passes over the pool, clamped to [min_samples, max_samples]."""

    epochs: float
    min_samples: int
    max_samples: int


@dataclass(frozen=True)
class PretrainingConfig:
    """``pretraining``: the recipe of every backbone (see :mod:`jetscale.pretrain`)."""

    seed: int
    batch_size: int
    lr: float | None
    weight_decay: float
    warmup_fraction: float
    grad_clip: float | None
    compute: PretrainCompute
    eval_every_samples: int
    eval_jets: int
    checkpoint_every_steps: int
    pool: dict | None  # other files as the unlabelled pool; None: the tail of the training split
    methods: dict
    loss_scan: dict
    finetune: dict


# ------------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class ReportConfig:
    """``report``: the n_train of the confusion matrices (or max), the series colour and facet axes, the style."""

    confusion_n_train: int | str
    color_by: str
    facet_by: str | None
    style: str


@dataclass(frozen=True)
class StudyView:
    """The typed sections of one validated config (:func:`jetscale.config.study_view`)."""

    training: TrainingConfig
    fits: FitsConfig
    data: DataConfig
    pretraining: PretrainingConfig
    report: ReportConfig


SECTIONS: dict[str, type] = {
    "training": TrainingConfig,
    "fits": FitsConfig,
    "data": DataConfig,
    "pretraining": PretrainingConfig,
    "report": ReportConfig,
}


# ------------------------------------------------------------------------------------------------ builder
def section_view(cls: type, mapping: dict | None, where: str):
    """The ``cls`` view of ``mapping``, the config section at key path ``where`` (``training``,
    ``training.stopping``, ...): each field from ``mapping``, else from the schema's default (``mapping`` that
    is already a ``cls``: itself)."""
    if isinstance(mapping, cls):
        return mapping
    node = schema_node(where)
    defaults = schema_defaults(node)
    mapping = mapping or {}
    values = {}
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in mapping and not (mapping[f.name] is None and _view_class(hints[f.name]) is not None):
            value = mapping[f.name]
        elif f.name in defaults:
            value = copy.deepcopy(defaults[f.name])
        elif _view_class(hints[f.name]) is not None:
            value = {}
        elif type(None) in typing.get_args(hints[f.name]):
            value = None  # an optional key without a default (pretraining.pool)
        else:
            raise ConfigError(f"{where}.{f.name}: missing, and the schema gives no default")
        values[f.name] = _typed(hints[f.name], value, f"{where}.{f.name}")
    return cls(**values)


def schema_node(where: str) -> dict:
    """The schema of the config key path ``where`` (dotted)."""
    node = _parsed_schema()
    for key in where.split("."):
        node = node["properties"][key]
    return node


def schema_defaults(node: dict) -> dict:
    """Defaults of an object's keys: the mapping's own default, each property's default over it."""
    out = dict(node.get("default") or {})
    out.update({key: sub["default"] for key, sub in node.get("properties", {}).items() if "default" in sub})
    return out


def _typed(hint: Any, value: Any, where: str) -> Any:
    view = _view_class(hint)
    if view is not None:
        return section_view(view, value, where)
    item = _tuple_item(hint)
    if item is not None and isinstance(value, list | tuple):
        item_view = _view_class(item)
        if item_view is not None:
            return tuple(_item_view(item_view, v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    return value


def _item_view(cls: type, value: dict, where: str):
    """A list item's view (``fits.targets[i]``): defaults from the item schema."""
    head, _, _ = where.rpartition("[")
    node = schema_node(head)["items"]
    defaults = {key: sub["default"] for key, sub in node.get("properties", {}).items() if "default" in sub}
    return cls(**{f.name: value.get(f.name, defaults.get(f.name)) for f in dataclasses.fields(cls)})


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _view_class(hint: Any) -> type | None:
    return hint if dataclasses.is_dataclass(hint) else None


def _tuple_item(hint: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0]
    return None


def training_view(training: dict | TrainingConfig | None) -> TrainingConfig:
    """The ``training`` view of a config's section or of a cell's resolved ``settings["training"]`` (which holds
    only the keys its kind of budget reads: the others take the schema's defaults)."""
    return section_view(TrainingConfig, training, "training")


def fits_view(fits: dict | FitsConfig | None) -> FitsConfig:
    """The ``fits`` view of a config's section (or of part of one: the rest takes the schema's defaults)."""
    return section_view(FitsConfig, fits, "fits")


def ingest_view(data: dict | None) -> IngestConfig:
    """``data.ingest`` of a config's ``data`` section (None: no config, the schema's defaults)."""
    return section_view(IngestConfig, (data or {}).get("ingest"), "data.ingest")


def pretraining_view(pretraining: dict | None) -> PretrainingConfig:
    return section_view(PretrainingConfig, pretraining, "pretraining")


def report_view(report: dict | None) -> ReportConfig:
    return section_view(ReportConfig, report, "report")


def generate_view(data: dict | None) -> GenerateConfig:
    """``data.generate`` of a config's ``data`` section."""
    return section_view(GenerateConfig, (data or {}).get("generate"), "data.generate")

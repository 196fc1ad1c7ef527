"""The model catalog: one :class:`ModelSpec` per model, torch-free.

Config validation and the Snakemake DAG import this module, so it must stay cheap (no torch, no numpy). Everything
the pipeline needs to know about a model is in its spec: the name used in the config, the default learning rate,
the reference width, the revision (part of the settings hash), the width rules (which widths are valid, the
default depth and heads at a width), a typed options dataclass (config ``models.<name>``; its defaults live
there and unknown keys are refused), the builder that makes the ``torch.nn.Module``, the kind of input it
eats (:data:`INPUT_KINDS`) and the pretraining heads it can carry.

Two kinds of model (``ModelSpec.kind``):

* ``"network"``: a ``torch.nn.Module`` trained by gradient steps (the Runner): it has a width, a learning rate,
  an optimiser, parameters and FLOPs per jet.
* ``"fitted"``: fitted in one step on the training subset, not trained by gradient steps (the ``bdt`` baseline:
  gradient-boosted trees on jet observables). It has no width, learning rate, optimiser, parameter count or FLOPs
  per jet: its cells take no width or compute value (the grid leaves both out of their ids), ``train_cell`` hands
  them to ``jetscale.train.fitted``, and their ``metrics.json`` holds null for those keys. Its ``builder`` is the
  fit function ``fit(options, train, val, *, n_classes, seed, threads) -> Fitted`` (see ``jetscale.models.bdt``).

Adding a model = one module with the ``nn.Module`` and a ``build`` function, plus one ``register(ModelSpec(...))``
below (and its options dataclass). Nothing else names models: training, evaluation, ``jetscale models``, config
validation and the grid read the spec. ``tests/test_catalog.py`` registers a toy model and trains it through
the normal cell path.

The builder is ``"module:function"`` with the signature
``build(spec, width, n_classes, n_features, options) -> nn.Module`` (``options`` an instance of ``spec.options``,
defaults filled in). Its forward takes the input kind's arrays as keyword tensors and returns class logits
``(B, n_classes)``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..options import parse
from ..tokenize.options import TokenizerOptions
from .vq_gpt_options import REFERENCE_WIDTH as VQ_GPT_REFERENCE_WIDTH
from .vq_gpt_options import VQGPTOptions, default_heads


def resolve(target: str) -> Any:
    """``"package.module:attribute"`` -> the attribute (imported on first use)."""
    module, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"{target!r} is not 'module:function'")
    return getattr(importlib.import_module(module), attr)


# ------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class InputKind:
    """How split arrays (features (n, P, F), mask (n, P), vectors (n, P, 4)) become a model's input arrays.

    ``prepare`` is ``"module:function"``: ``(options, features, mask, vectors, model_features) -> (arrays, info)``
    (``model_features``: the input spec's transformed features, None for the raw ones) where arrays
    are numpy arrays with jets on the first axis, and info holds facts such as ``n_jets`` (and
    ``truncated_jets`` where the preparation can drop particles). A batch is trimmed along ``length_axis`` of
    every array to its longest jet, read from the boolean/0-1 array ``length_key``.
    """

    name: str
    prepare: str
    length_key: str
    length_axis: int
    bytes_per_jet: Callable[[Any, int, int], int]  # (options, n_particles, n_features) -> upper bound
    counts_truncation: bool = False


def _particle_bytes(options, n_particles: int, n_features: int) -> int:
    return n_particles * 4 * (n_features + 2 + 1 + 4)  # float32 x, points (Δη, Δφ), mask, four-vectors


def _byte_bytes(options, n_particles: int, n_features: int) -> int:
    return 2 * options.tokenizer.max_bytes  # byte patches + patch mask (upper bound)


INPUT_KINDS: dict[str, InputKind] = {
    kind.name: kind
    for kind in (
        # x (n, F, P), points (n, 2, P), mask (n, 1, P), vectors (n, 4, P): see jetscale.tokenize.particles
        InputKind("particles", "jetscale.tokenize.particles:model_inputs", "mask", -1, _particle_bytes),
        # patches (n, N, S) bytes, patch_mask (n, N): see jetscale.tokenize.bytes; needs options.tokenizer
        InputKind("bytes", "jetscale.tokenize.bytes:model_inputs", "patch_mask", 1, _byte_bytes, True),
    )
}


# -------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class ExternalSource:
    """The user's file a model comes from: absolute path, content hash (sha256) when the config was loaded."""

    path: str
    sha256: str


def min_width_problem(width: int) -> str | None:
    return f"width {width} is below the minimum of 8" if width < 8 else None


MODEL_KINDS: tuple[str, ...] = ("network", "fitted")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: str  # "module:function", see the module docstring
    options: type  # frozen dataclass of the config's models.<name> options
    # networks only (a fitted model has none of the three; None there):
    default_lr: float | None = None  # used when training.lr is null
    reference_width: int | None = None  # the width at which the model is its published reference configuration
    input_kind: str | None = None  # a key of INPUT_KINDS
    depth: Callable[[int], int] | None = None  # width -> default number of blocks (None: fixed architecture)
    heads: Callable[[int], int] | None = None  # width -> attention heads
    width_rule: Callable[[int], str | None] = min_width_problem  # why a width is invalid (None when valid)
    blocks: str = "blocks"  # attribute (dotted path) of the built model holding the blocks its depth counts
    # Bumped when the model's computation changes, so its finished cells get a new settings hash and retrain
    # (other models' cells keep theirs). Revision 1 adds nothing to the settings.
    revision: int = 1
    pretrain_heads: tuple[str, ...] = ()  # pretraining methods (jetscale.pretrain) whose head it can carry
    # "module:function" (model, train, seed) -> stats: a fit-once step on the training subset's model inputs
    # (``train``: jetscale.train.inputs.Unlabelled, no labels) that a from-scratch cell runs before its first
    # step (e.g. a tokenizer); what it fits must live in the model's state dict (checkpointed, so a resumed cell
    # does not refit; a fine-tuning cell loads it with the backbone instead). None: nothing to fit.
    fit_inputs: str | None = None
    summary: str = ""
    default_preset: str = "raw"  # its input preset when config inputs.<name> is not set (jetscale.inputs.spec)
    # a model from the user's own file (config models.<name>.source; jetscale.models.external); None: built in
    source: ExternalSource | None = None
    kind: str = "network"  # a key of MODEL_KINDS, see the module docstring

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model {self.name!r}: unknown kind {self.kind!r}; kinds: {list(MODEL_KINDS)}")
        network_only = ("default_lr", "reference_width", "input_kind")
        if self.kind == "network" and (missing := [k for k in network_only if getattr(self, k) is None]):
            raise ValueError(f"model {self.name!r}: a network needs {missing}")
        if self.kind == "fitted":
            given = [k for k in network_only if getattr(self, k) is not None]
            given += [k for k in ("depth", "heads", "fit_inputs") if getattr(self, k) is not None]
            given += ["pretrain_heads"] if self.pretrain_heads else []
            if given:
                raise ValueError(f"model {self.name!r}: a fitted model has no {given}")

    @property
    def fitted(self) -> bool:
        """Fitted in one step (no width, optimiser, parameters or FLOPs per jet), not trained by gradient steps."""
        return self.kind == "fitted"

    def parse_options(self, mapping: Any, where: str | None = None):
        """Config ``models.<name>`` -> an ``options`` instance (OptionError names the bad key)."""
        return parse(self.options, mapping, where or f"models.{self.name}")

    def own_options(self, mapping: dict | None) -> dict:
        """The keys of ``mapping`` that are this model's options (a pretraining method's ``build`` gets the
        model's and the method's options in one mapping; the method checks its own)."""
        known = {f.name for f in dataclasses.fields(self.options)}
        return {k: v for k, v in (mapping or {}).items() if k in known}

    def width_problem(self, width: int, options: Any = None) -> str | None:
        """Why ``width`` is invalid (None when valid): the width rule, then the options' own ``width_problem``
        where the options class has one (e.g. attention heads set in the options must divide the width)."""
        if self.fitted:
            return f"{self.name} is a fitted model ({self.summary or 'not a network'}): it has no width"
        problem = self.width_rule(width)
        if problem:
            return problem
        check = getattr(self.parse_options(options), "width_problem", None)
        return check(width) if check else None

    @property
    def inputs(self) -> InputKind:
        if self.fitted:
            raise ValueError(f"{self.name} is a fitted model: it reads jet observables, not a model input kind")
        return INPUT_KINDS[self.input_kind]

    def build(self, width: int, n_classes: int, n_features: int, options: Any = None):
        """The ``nn.Module`` at ``width`` (imports torch and the model's module)."""
        if self.fitted:
            raise ValueError(f"{self.name} is a fitted model: it has no nn.Module (see jetscale.train.fitted)")
        options = self.parse_options(options)
        problem = self.width_problem(width, options)
        if problem:
            raise ValueError(problem)
        return resolve(self.builder)(self, width, n_classes, n_features, options)


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the catalog (``replace=True`` to redefine one, e.g. in a test)."""
    if spec.name in MODELS and not replace:
        raise ValueError(f"model {spec.name!r} is already in the catalog")
    if not spec.fitted and spec.input_kind not in INPUT_KINDS:
        raise ValueError(f"model {spec.name!r}: unknown input kind {spec.input_kind!r}; known: {list(INPUT_KINDS)}")
    MODELS[spec.name] = spec
    return spec


def use_external(specs: list[ModelSpec]) -> None:
    """Make ``specs`` (models from the user's files, one config's) the catalog's external models: those of a
    config loaded before in this process leave, so the catalog is always the built-ins plus one config's."""
    for name in [name for name, spec in MODELS.items() if spec.source is not None]:
        del MODELS[name]
    for spec in specs:
        if spec.name in MODELS:
            raise ValueError(f"model {spec.name!r} is a built-in model; give yours another name")
        register(spec)


def names() -> tuple[str, ...]:
    """Model names in registration order."""
    return tuple(MODELS)


def networks() -> tuple[str, ...]:
    """Names of the models trained by gradient steps (``kind="network"``), in registration order."""
    return tuple(name for name, spec in MODELS.items() if not spec.fitted)


def is_fitted(name: str) -> bool:
    """Whether ``name`` is a catalog model of kind ``"fitted"`` (False for unknown names)."""
    return name in MODELS and MODELS[name].fitted


def get(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {list(MODELS)}") from None


def width_problem(model: str, width: int) -> str | None:
    """Return why ``width`` is not valid for ``model`` (None when it is valid)."""
    if model not in MODELS:
        return f"unknown model {model!r}; known models: {', '.join(MODELS)}"
    return MODELS[model].width_problem(width)


# ------------------------------------------------------------------------------------- the models
@dataclass(frozen=True)
class BBTNeutronOptions:
    tokenizer: TokenizerOptions = field(default_factory=TokenizerOptions)
    n_layers: int | None = None  # None: bbt_depth(width)
    lm_head: bool = False  # the next-patch LM head (forced on when training.pretrain)

    def __post_init__(self):
        if self.n_layers is not None and self.n_layers < 1:
            raise ValueError(f"n_layers: {self.n_layers} must be at least 1")


@dataclass(frozen=True)
class ParticleNetOptions:
    k: int = 16  # nearest neighbours of each EdgeConv

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k: {self.k} must be at least 1")


@dataclass(frozen=True)
class ParTOptions:
    n_layers: int | None = None  # particle-attention blocks; None: part_depth(width)
    n_cls_layers: int = 2  # class-attention blocks

    def __post_init__(self):
        if self.n_layers is not None and self.n_layers < 1:
            raise ValueError(f"n_layers: {self.n_layers} must be at least 1")
        if self.n_cls_layers < 1:
            raise ValueError(f"n_cls_layers: {self.n_cls_layers} must be at least 1")


@dataclass(frozen=True)
class BDTOptions:
    """Gradient-boosted trees (LightGBM, one 11-class model) on ``jetscale.data.observables``; early stopping on
    the validation set's multi-class log-loss."""

    learning_rate: float = 0.05  # shrinkage per boosting round
    num_leaves: int = 15  # leaves per tree (one tree per class and round)
    min_child_samples: int = 20  # fewest training jets in a leaf
    feature_fraction: float = 0.8  # observables drawn per tree (the seed's randomness, with bagging)
    bagging_fraction: float = 0.8  # training jets drawn per round
    l2: float = 1.0  # L2 penalty on leaf values
    max_rounds: int = 3000  # safety cap; the stop is early stopping
    early_stopping_rounds: int = 50  # rounds without a better validation log-loss

    def __post_init__(self):
        for name in ("num_leaves", "min_child_samples", "max_rounds", "early_stopping_rounds"):
            if getattr(self, name) < (2 if name == "num_leaves" else 1):
                raise ValueError(f"{name}: {getattr(self, name)} must be at least {2 if name == 'num_leaves' else 1}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate: {self.learning_rate} must be in (0, 1]")
        for name in ("feature_fraction", "bagging_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}: {getattr(self, name)} must be in (0, 1]")
        if self.l2 < 0:
            raise ValueError(f"l2: {self.l2} must be at least 0")


def bbt_depth(width: int) -> int:
    """BBT-Neutron depth at constant width/depth = 64 (the reference: 768/12), between 2 and 12 layers."""
    return min(12, max(2, round(width / 64)))


def bbt_heads(width: int) -> int:
    """Heads of 64 channels at widths that are multiples of 64 (≥ 128), otherwise two heads."""
    return width // 64 if width >= 128 and width % 64 == 0 else 2


def bbt_width_problem(width: int) -> str | None:
    if width % 4 and not min_width_problem(width):
        return f"width {width} must be a multiple of 4 for bbt_neutron (two heads of even size for RoPE)"
    return min_width_problem(width)


def part_depth(width: int) -> int:
    """ParT particle-attention blocks at constant width/depth = 16 (the reference: 128/8), between 2 and 8."""
    return min(8, max(2, round(8 * width / 128)))


def part_width_problem(width: int) -> str | None:
    if width % 8 and not min_width_problem(width):
        return f"width {width} must be a multiple of 8 for part (8 attention heads)"
    return min_width_problem(width)


register(
    ModelSpec(
        "bbt_neutron",
        builder="jetscale.models.bbt_neutron:build",
        options=BBTNeutronOptions,
        default_lr=1e-4,  # the paper's
        reference_width=768,
        input_kind="bytes",
        depth=bbt_depth,
        heads=bbt_heads,
        width_rule=bbt_width_problem,
        blocks="layers",
        pretrain_heads=("next_patch",),
        summary="binary tokenization + decoder-only transformer (RoPE, SwiGLU)",
    )
)
register(
    ModelSpec(
        "particlenet",
        builder="jetscale.models.particlenet:build",
        options=ParticleNetOptions,
        default_lr=1e-3,
        reference_width=64,
        input_kind="particles",
        default_preset="physics",
        blocks="edge_convs",
        summary="EdgeConv on k-nearest-neighbour graphs of the particles",
    )
)
register(
    ModelSpec(
        "part",
        builder="jetscale.models.part:build",
        options=ParTOptions,
        default_lr=1e-3,
        reference_width=128,
        input_kind="particles",
        default_preset="physics",
        depth=part_depth,
        heads=lambda width: 8,
        width_rule=part_width_problem,
        blocks="blocks",
        # 2: aligned with weaver-core's ParticleTransformer (self-pairs in the pair bias, pair BatchNorm over real
        # pairs only, no GELU on the bias, raw class-token query)
        revision=2,
        summary="Particle Transformer: attention with a pair-feature bias, class-attention blocks",
    )
)
register(
    ModelSpec(
        "vq_gpt",
        builder="jetscale.models.vq_gpt:build",
        options=VQGPTOptions,  # shared with the vq_gpt pretraining method (jetscale.pretrain.vq_gpt)
        default_lr=1e-3,
        reference_width=VQ_GPT_REFERENCE_WIDTH,
        input_kind="particles",  # the same prepared particle inputs as ParT/ParticleNet; it reads x and mask
        depth=lambda width: VQGPTOptions().n_layers,  # fixed depth (option n_layers), as OmniJet-alpha's 3 blocks
        heads=default_heads,
        width_rule=min_width_problem,  # + VQGPTOptions.width_problem: the GPT heads divide the width
        blocks="gpt.blocks",
        fit_inputs="jetscale.models.vq_gpt:fit_tokenizer",  # from scratch: tokens of its own training jets
        summary="OmniJet-alpha: VQ-VAE particle tokens, a GPT over the pT-ordered sequence, a summation head",
    )
)
register(
    ModelSpec(
        "bdt",
        builder="jetscale.models.bdt:fit",  # a fitted model's builder is its fit function
        options=BDTOptions,
        kind="fitted",
        summary="the physics baseline: gradient-boosted trees (LightGBM) on hand-made jet observables",
    )
)

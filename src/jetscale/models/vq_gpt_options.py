"""The options of a VQ-VAE + GPT model (config ``models.vq_gpt``), torch-free: the catalog imports them.

One dataclass serves pretraining (``jetscale.pretrain.vq_gpt.build``: ``models.vq_gpt`` merged with
``pretraining.methods.vq_gpt``), the fine-tuning classifier (the same merge, see
``jetscale.settings.resolve_settings``) and the from-scratch classifier (``models.vq_gpt``), so a classifier
always has the architecture of the backbone it loads. Parsed strictly (:mod:`jetscale.options`): an unknown
key or a value of the wrong type is an error naming the key (a typo would otherwise silently train the default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..data.schema import FEATURE_NAMES
from ..options import parse

TOKENIZER_ARCHS = ("mlp", "transformer")
HEADS = ("sum", "mean", "last")
REFERENCE_WIDTH = 256  # OmniJet-alpha's GPT: 256 wide, 3 blocks, 8 heads


def default_heads(width: int) -> int:
    """GPT heads when ``n_heads`` is not set: width // 32 (OmniJet-alpha: 256 / 8), at least 1."""
    return max(1, width // 32)


@dataclass(frozen=True)
class VQGPTOptions:
    # VQ-VAE tokenizer
    codebook_size: int = 8192  # OmniJet-alpha's reference codebook
    latent_dim: int = 16  # the public OmniJet-alpha tokenizer config
    tokenizer: Literal["mlp", "transformer"] = "mlp"  # mlp: per particle; transformer: attention over the jet
    vq_hidden: int = 128
    vq_layers: int = 2  # hidden layers (mlp) or attention blocks (transformer)
    vq_heads: int = 4  # transformer tokenizer only
    commitment: float = 0.25  # beta of the commitment loss ||z - sg(e)||^2
    ema_decay: float = 0.99  # codebook = EMA of the encoder outputs assigned to each code
    replace_every: int = 20  # steps between dead-code replacements (a code unused over the window is re-seeded)
    vq_steps: int = 2000
    vq_batch_jets: int = 256
    vq_lr: float = 1e-3
    features: tuple[str, ...] | None = None  # tokenized features (names); None = all of the model input
    order_by: str = "log_pt"  # sequences are ordered by this feature, decreasing (pT order)
    max_particles: int = 128  # particles per sequence (the hardest ones); OmniJet-alpha: 128
    # GPT
    n_layers: int = 3  # OmniJet-alpha: 3 GPT blocks
    n_heads: int | None = None  # default: default_heads(width)
    dropout: float = 0.0
    position_embedding: bool = False  # OmniJet-alpha's GPT has none (the causal mask orders the sequence)
    head: Literal["sum", "mean", "last"] = "sum"  # classifier pooling: OmniJet's summation, the mean, the last state

    def __post_init__(self):
        """Range checks; ``ValueError("<field>: <problem>")`` as :func:`jetscale.options.parse` expects."""
        for key in ("codebook_size", "latent_dim", "vq_hidden", "vq_layers", "vq_heads", "replace_every"):
            _at_least(self, key, 1)
        for key in ("vq_batch_jets", "max_particles"):
            _at_least(self, key, 1)
        for key in ("vq_steps", "n_layers"):
            _at_least(self, key, 0)
        if self.n_heads is not None:
            _at_least(self, "n_heads", 1)
        if self.tokenizer not in TOKENIZER_ARCHS:
            raise ValueError(f"tokenizer: unknown tokenizer {self.tokenizer!r}; known: {list(TOKENIZER_ARCHS)}")
        if self.tokenizer == "transformer" and self.vq_hidden % self.vq_heads:
            raise ValueError(f"vq_heads: vq_hidden {self.vq_hidden} is not divisible by {self.vq_heads} heads")
        if self.head not in HEADS:
            raise ValueError(f"head: unknown head {self.head!r}; known: {list(HEADS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.commitment < 0 or self.vq_lr <= 0:
            raise ValueError(f"commitment/vq_lr: must be >= 0 / > 0, got {self.commitment} / {self.vq_lr}")

    @classmethod
    def from_options(cls, options, width: int, where: str = "vq_gpt") -> VQGPTOptions:
        """A mapping (or an instance) -> checked options for a model of ``width`` (OptionError/ValueError name
        the key)."""
        opts = parse(cls, options, where)
        problem = opts.width_problem(width)
        if problem:
            raise ValueError(f"{where}: {problem}")
        return opts

    def width_problem(self, width: int) -> str | None:
        """Why this GPT cannot be ``width`` wide (None when it can): the heads must divide the width."""
        if width % self.gpt_heads(width):
            return f"n_heads: width {width} is not divisible by {self.gpt_heads(width)} heads"
        return None

    def gpt_heads(self, width: int) -> int:
        return int(self.n_heads) if self.n_heads else default_heads(width)

    @property
    def vocab_size(self) -> int:
        """Codes 1..K, START = 0, STOP = K + 1 (OmniJet-alpha's convention)."""
        return self.codebook_size + 2

    @property
    def start(self) -> int:
        return 0

    @property
    def stop(self) -> int:
        return self.codebook_size + 1


def _at_least(opts: VQGPTOptions, key: str, low: int) -> None:
    if int(getattr(opts, key)) < low:
        raise ValueError(f"{key}: must be an integer >= {low}, got {getattr(opts, key)!r}")


def feature_names(n_features: int) -> tuple[str, ...]:
    """Names of the model input's features: Table 1's when the count matches, else f0, f1, ..."""
    if n_features == len(FEATURE_NAMES):
        return FEATURE_NAMES
    return tuple(f"f{i}" for i in range(n_features))


def feature_columns(names: tuple[str, ...], wanted: tuple[str, ...] | None, key: str) -> list[int]:
    if wanted is None:
        return list(range(len(names)))
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"vq_gpt: {key}: unknown feature(s) {missing}; the model input has {list(names)}")
    return [names.index(w) for w in wanted]

"""The settings of one VQ-VAE + GPT backbone, read from ``build``'s ``options`` (torch-free).

Pretraining (``build``) and fine-tuning (``build_classifier``) read the same options, so a classifier always has
the architecture of the backbone it loads. Unknown keys are an error naming the key (a typo would otherwise
silently train the default).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ...data.schema import FEATURE_NAMES

TOKENIZER_ARCHS = ("mlp", "transformer")
HEADS = ("sum", "mean", "last")


@dataclass(frozen=True)
class VQGPTOptions:
    # VQ-VAE tokenizer
    codebook_size: int = 8192  # OmniJet-alpha's reference codebook
    latent_dim: int = 16  # the public OmniJet-alpha tokenizer config
    tokenizer: str = "mlp"  # "mlp": per particle; "transformer": attention over the jet's particles (OmniJet)
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
    n_heads: int | None = None  # default: width // 32 (OmniJet-alpha: 256 / 8), at least 1
    dropout: float = 0.0
    position_embedding: bool = False  # OmniJet-alpha's GPT has none (the causal mask orders the sequence)
    head: str = "sum"  # classifier pooling: OmniJet-alpha's "summation" head, the mean, or the last state

    @classmethod
    def from_options(cls, options: dict | None, width: int) -> VQGPTOptions:
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"vq_gpt: unknown option(s) {unknown}; known options: {sorted(known)}")
        if options.get("features") is not None:
            options["features"] = tuple(str(name) for name in options["features"])
        opts = cls(**options)
        opts.check(width)
        return opts

    def check(self, width: int) -> None:
        def bad(key, problem):
            raise ValueError(f"vq_gpt: {key}: {problem}")

        for key in ("codebook_size", "latent_dim", "vq_hidden", "vq_layers", "vq_heads", "replace_every"):
            if int(getattr(self, key)) < 1:
                bad(key, f"must be a positive integer, got {getattr(self, key)!r}")
        for key in ("vq_steps", "n_layers"):
            if int(getattr(self, key)) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)!r}")
        if self.vq_batch_jets < 1 or self.max_particles < 1:
            bad("vq_batch_jets/max_particles", "must be positive")
        if self.tokenizer not in TOKENIZER_ARCHS:
            bad("tokenizer", f"unknown tokenizer {self.tokenizer!r}; known: {list(TOKENIZER_ARCHS)}")
        if self.tokenizer == "transformer" and self.vq_hidden % self.vq_heads:
            bad("vq_heads", f"vq_hidden {self.vq_hidden} is not divisible by {self.vq_heads} heads")
        if self.head not in HEADS:
            bad("head", f"unknown head {self.head!r}; known: {list(HEADS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            bad("ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", f"must be in [0, 1), got {self.dropout}")
        if width % self.gpt_heads(width):
            bad("n_heads", f"width {width} is not divisible by {self.gpt_heads(width)} heads")

    def gpt_heads(self, width: int) -> int:
        return int(self.n_heads) if self.n_heads else max(1, width // 32)

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

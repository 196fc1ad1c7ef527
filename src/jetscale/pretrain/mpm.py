"""Masked particle modelling (MPMv2: Leigh et al. 2024, "Is tokenization needed for masked particle modelling?").

The backbone is ParT's particle encoder (:meth:`ParticleTransformer.encode`: input BatchNorm, particle
embedding, pair-feature bias, particle-attention blocks); the class-attention blocks and the head are trained
at fine-tuning. Per jet, ``floor(mask_fraction · n_real)`` real particles (default 40%, padding never) are
chosen at random and DROPPED: the visible particles are packed into a shorter sequence (the jet's order kept),
so the masked ones are absent from the encoder's features, its BatchNorm statistics and the pair bias — not
merely hidden by an attention mask. The encoder outputs are put back at their positions, a learned mask token
fills each masked position, and a small decoder (``decoder_layers`` NormFormer blocks of ParT's kind, no pair
bias, MLP 2×, as MPMv2's 128-wide 4-head decoder with ff_mult 2) predicts the masked particles from there.

Which particle a mask token stands for. The decoder, like the encoder, has no positional encoding, so identical
mask tokens would receive identical outputs and every masked particle would get the same prediction. MPMv2's
public code (mattcleigh/jetssl, ``null_token``: one learned vector per sequence index) gives the k-th masked
particle of a jet, counted in the jet's stored order, the k-th token: the decoder learns where in the
momentum ordering each missing particle sits relative to the other missing ones. We do the same with our
splits' stored order (decreasing energy; ``max_particles`` tokens). We do not give the decoder the masked
particle's (Δη, Δφ) instead: those are 3 of the 11 regression targets here (Δη, Δφ, ΔR), so the query would
hand the decoder part of its answer, and the K-means / flow targets would become "given the position".

Targets (``target``), all on the masked particles only:

* ``l1``: linear head regressing the 11 continuous Table-1 features (Δη, Δφ, log pT, log E, their jet-relative
  versions, ΔR, d0, d0_err, z0, z0_err), standardised with means/widths fitted by :func:`prepare`; L1 loss.
* ``kmeans``: the same standardised features assigned to the nearest of ``kmeans_k`` centroids fitted once by
  :func:`prepare` (Lloyd's algorithm on a seeded sample of unlabelled particles; MPMv2 used K = 16384);
  linear head, cross-entropy with label smoothing 0.1 (as MPMv2).
* ``flow_matching``: a conditional flow-matching head (MPMv2's ``VectorDiffuser``): a residual MLP velocity
  field v(x_t, t, c) conditioned on the decoder output c, trained with the rectified-flow loss
  ‖v − (ε − x₀)‖², x_t = (1 − t)·x₀ + t·ε, ε ~ N(0, 1), t = sigmoid(N(0, 1)) (logit-normal, as MPMv2).
  :meth:`FlowHead.sample` integrates it (Euler, t: 1 → 0).

Each adds the particle-ID cross-entropy (label smoothing 0.1, weight ``id_weight``): the class is the Table-1
PID flag (is_electron … is_photon, or "none") combined with the charge sign — 8 × 3 = 24 classes.

The objective holds a whole ParT built by the registry (so its backbone has the classifier's own depth and
parameter names) with the class-attention part removed; :meth:`MaskedParticleModelling.backbone_state_dict` is
that module's state dict, which a fine-tuning ParT loads with every key consumed.

Options (flat dict; keys not listed here, e.g. ParT's own ``n_layers``, go to the registry's ParT builder):
``target`` (``kmeans``), ``mask_fraction`` (0.4), ``decoder_layers`` (2; jetssl's decoder-depth scan: 1–4
layers within 0.5% downstream), ``id_weight`` (1.0), ``max_particles`` (256), ``kmeans_k`` (512),
``kmeans_iters`` (25), ``fit_particles`` (500000: the sample :func:`prepare` fits on), ``flow_hidden``
(2·width, at least 64), ``flow_blocks`` (3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.schema import FEATURE_NAMES
from ..errors import ConfigError
from ..models import catalog
from ..models.part import NEG, Block, ParticleTransformer
from ..models.registry import build_model
from .base import Objective, check_unlabelled

TARGETS = ("l1", "kmeans", "flow_matching")
OPTION_PATH = "pretraining.methods.mpm"  # where a study configures these options
PID_FLAGS: tuple[str, ...] = tuple(name for name in FEATURE_NAMES if name.startswith("is_"))
CONTINUOUS: tuple[str, ...] = tuple(name for name in FEATURE_NAMES if name not in PID_FLAGS and name != "charge")
N_PID = 3 * (len(PID_FLAGS) + 1)  # (flag or none) × charge sign
LABEL_SMOOTHING = 0.1
CLASSIFIER_ONLY = ("cls_blocks", "norm", "fc", "cls_token")  # ParT parts trained at fine-tuning only

DEFAULTS = {
    "target": "kmeans",
    "mask_fraction": 0.4,
    "decoder_layers": 2,
    "id_weight": 1.0,
    "max_particles": 256,
    "kmeans_k": 512,
    "kmeans_iters": 25,
    "fit_particles": 500_000,
    "flow_hidden": None,
    "flow_blocks": 3,
}


@dataclass(frozen=True)
class TargetColumns:
    """Where the targets sit among the model-input columns (by name: an input spec may transform, add or
    reorder features). The regression/K-means targets are the 11 continuous features as the classifier sees
    them (e.g. tanh-compressed d0 under the ``physics`` preset); the PID class needs the flags and the charge."""

    continuous: tuple[int, ...]
    flags: tuple[int, ...]
    charge: int

    @classmethod
    def of(cls, names: Sequence[str] | None) -> TargetColumns:
        names = list(FEATURE_NAMES if names is None else names)
        missing = [n for n in (*CONTINUOUS, *PID_FLAGS, "charge") if n not in names]
        if missing:
            raise ValueError(f"mpm needs the model inputs {missing} (its targets); the input spec drops them")
        return cls(
            tuple(names.index(n) for n in CONTINUOUS), tuple(names.index(n) for n in PID_FLAGS), names.index("charge")
        )


def particle_id(x: torch.Tensor, columns: TargetColumns) -> torch.Tensor:
    """x (B, F, P) model inputs -> (B, P) class in [0, 24): 3 · (PID flag, or 7 = none) + charge sign + 1."""
    flags = x[:, list(columns.flags)]
    flag = torch.where(flags.amax(dim=1) > 0.5, flags.argmax(dim=1), len(PID_FLAGS))
    return 3 * flag + torch.sign(x[:, columns.charge]).long() + 1


def sample_masked(valid: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, P) real-particle mask -> (B, P) masked particles: floor(fraction · n_real) real ones per jet, at random."""
    n_mask = torch.floor(valid.sum(dim=1).double() * fraction + 1e-9).long()
    r = torch.rand(valid.shape, device=valid.device).masked_fill(~valid, 2.0)  # padding sorts last
    rank = r.argsort(dim=1).argsort(dim=1)
    return rank < n_mask[:, None]


def pack_visible(batch: dict[str, torch.Tensor], visible: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Drop all but the ``visible`` particles: the model inputs of the visible ones, packed to the front (order
    kept) and trimmed to the longest; slots beyond a jet's visible count are zero padding. Returns
    (packed x/vectors/mask, source index (B, P_v) of each packed slot, whether the slot is real (B, P_v))."""
    order = (~visible).to(torch.uint8).argsort(dim=1, stable=True)
    n = max(1, int(visible.sum(dim=1).max()))
    idx = order[:, :n]
    keep = torch.gather(visible, 1, idx)

    def take(t: torch.Tensor) -> torch.Tensor:
        g = torch.gather(t, 2, idx[:, None, :].expand(-1, t.shape[1], -1))
        return torch.where(keep[:, None, :], g, torch.zeros((), dtype=t.dtype, device=t.device))

    packed = {"x": take(batch["x"]), "vectors": take(batch["vectors"]), "mask": keep[:, None, :].to(batch["x"].dtype)}
    return packed, idx, keep


class FlowHead(nn.Module):
    """Conditional velocity field v(x_t, t | c) on the standardised continuous features (a residual MLP)."""

    def __init__(self, n_out: int, ctx_dim: int, hidden: int, n_blocks: int, time_dim: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.pi * 2.0 ** torch.arange(time_dim // 2, dtype=torch.float32))
        self.inp = nn.Linear(n_out + time_dim + ctx_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(n_blocks)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, n_out))
        nn.init.zeros_(self.out[1].weight)  # start as v = 0
        nn.init.zeros_(self.out[1].bias)

    def forward(self, xt: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        ft = t * self.freqs
        h = self.inp(torch.cat([xt, ft.cos(), ft.sin(), ctx], dim=-1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)

    def loss(self, x0: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(torch.randn(x0.shape[0], 1, device=x0.device, dtype=x0.dtype))
        eps = torch.randn_like(x0)
        v = self(((1 - t) * x0 + t * eps), t, ctx)
        return (v.float() - (eps - x0).float()).square().mean()

    @torch.no_grad()
    def sample(self, ctx: torch.Tensor, steps: int = 32) -> torch.Tensor:
        """Standardised features drawn given ``ctx`` (M, ctx_dim): Euler steps from noise (t = 1) to t = 0."""
        x = torch.randn(ctx.shape[0], self.out[1].out_features, device=ctx.device, dtype=ctx.dtype)
        for k in range(steps, 0, -1):
            t = torch.full((ctx.shape[0], 1), k / steps, device=ctx.device, dtype=ctx.dtype)
            x = x - self(x, t, ctx) / steps
        return x


class MaskedParticleModelling(Objective):
    name = "mpm"

    def __init__(self, part: ParticleTransformer, width: int, opts: dict, columns: TargetColumns | None = None):
        super().__init__()
        self.columns = columns or TargetColumns.of(None)
        for attr in CLASSIFIER_ONLY:
            delattr(part, attr)
        self.backbone = part
        self.target = opts["target"]
        self.mask_fraction = float(opts["mask_fraction"])
        self.id_weight = float(opts["id_weight"])
        n_cont = len(CONTINUOUS)
        heads = max(1, min(4, width // 8))
        while width % heads:
            heads -= 1
        self.enc_to_dec = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
        self.mask_tokens = nn.Parameter(torch.randn(int(opts["max_particles"]), width) * 0.02)
        self.decoder = nn.ModuleList(
            Block(width, heads, ffn_ratio=2, dropout=0.0) for _ in range(int(opts["decoder_layers"]))
        )
        self.decoder_heads = heads
        self.decoder_norm = nn.LayerNorm(width)
        self.id_head = nn.Linear(width, N_PID)
        if self.target == "l1":
            self.head = nn.Linear(width, n_cont)
        elif self.target == "kmeans":
            self.head = nn.Linear(width, int(opts["kmeans_k"]))
            self.register_buffer("codebook", torch.zeros(int(opts["kmeans_k"]), n_cont))
        else:
            hidden = int(opts["flow_hidden"] or max(64, 2 * width))
            self.head = FlowHead(n_cont, width, hidden, int(opts["flow_blocks"]))
        self.register_buffer("target_mean", torch.zeros(n_cont))
        self.register_buffer("target_std", torch.ones(n_cont))
        self.register_buffer("prepared", torch.zeros((), dtype=torch.bool))
        self.kmeans_iters = int(opts["kmeans_iters"])
        self.fit_particles = int(opts["fit_particles"])

    # -- the pieces (public: tests and diagnostics use them) --------------------------------------------
    def encode_visible(self, batch: dict[str, torch.Tensor], masked: torch.Tensor):
        """Encoder outputs of the visible particles only: (h (B, P_v, d), source index (B, P_v), real (B, P_v))."""
        packed, idx, keep = pack_visible(batch, (batch["mask"][:, 0] > 0) & ~masked)
        h, _ = self.backbone.encode(packed["x"], packed["vectors"], packed["mask"])
        return h, idx, keep

    def decode(self, h: torch.Tensor, idx: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor, masked):
        """Decoder outputs (B, P, d) over the whole jet: encoder outputs at their positions, mask tokens at the
        masked ones (the k-th masked particle of a jet, in stored order, gets token k)."""
        B, P = valid.shape
        z = self.enc_to_dec(h)
        dec = z.new_zeros(B, P, z.shape[-1])
        b, s = keep.nonzero(as_tuple=True)
        dec[b, idx[b, s]] = z[b, s]
        rank = masked.long().cumsum(dim=1) - 1
        if masked.any() and int(rank.max()) >= self.mask_tokens.shape[0]:
            raise ValueError(
                f"mpm: a jet has more than {self.mask_tokens.shape[0]} masked particles; "
                f"raise {OPTION_PATH}.max_particles"
            )
        dec[masked] = self.mask_tokens[rank[masked]].to(dec.dtype)
        attend = valid | (~valid.any(dim=1, keepdim=True) & (torch.arange(P, device=valid.device) == 0))
        bias = torch.zeros(B, 1, 1, P, dtype=dec.dtype, device=dec.device).masked_fill(~attend[:, None, None], NEG)
        bias = bias.expand(-1, self.decoder_heads, P, -1)
        for block in self.decoder:
            dec = block(dec, bias)
        return self.decoder_norm(dec)

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, F, P) -> (B, P, 11) continuous features standardised with the fitted means/widths."""
        return (x[:, list(self.columns.continuous)].transpose(1, 2).float() - self.target_mean) / self.target_std

    def nearest_centroid(self, z: torch.Tensor) -> torch.Tensor:
        return _nearest(z, self.codebook)

    # -- the Objective interface --------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        check_unlabelled(batch)
        missing = {"x", "vectors", "mask"} - set(batch)
        if missing:
            raise ValueError(f"mpm: the batch lacks ParT inputs {sorted(missing)}")
        if not bool(self.prepared):
            raise RuntimeError("mpm: prepare() has not run (it fits the target standardisation and K-means codebook)")
        valid = batch["mask"][:, 0] > 0
        masked = sample_masked(valid, self.mask_fraction)
        h, idx, keep = self.encode_visible(batch, masked)
        out = self.decode(h, idx, keep, valid, masked)[masked]  # (M, d)
        n_masked = int(masked.sum())
        if n_masked == 0:  # only jets too small to mask: nothing to predict, keep the graph
            zero = out.sum() * 0.0 + h.sum() * 0.0
            return zero, {"n_masked": 0.0, "mask_fraction": 0.0}
        pid = particle_id(batch["x"], self.columns)[masked]
        id_logits = self.id_head(out).float()
        id_loss = F.cross_entropy(id_logits, pid, label_smoothing=LABEL_SMOOTHING)
        cont = self.standardised(batch["x"])[masked]
        if self.target == "l1":
            target_loss = (self.head(out).float() - cont).abs().mean()
        elif self.target == "kmeans":
            target_loss = F.cross_entropy(
                self.head(out).float(), self.nearest_centroid(cont), label_smoothing=LABEL_SMOOTHING
            )
        else:
            target_loss = self.head.loss(cont, out.float())
        loss = target_loss + self.id_weight * id_loss
        stats = {
            "target_loss": float(target_loss.detach()),
            "id_loss": float(id_loss.detach()),
            "id_accuracy": float((id_logits.argmax(dim=1) == pid).float().mean()),
            "n_masked": float(n_masked),
            "mask_fraction": n_masked / max(1, int(valid.sum())),
        }
        return loss, stats

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.backbone.state_dict())


def _nearest(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    d = z.square().sum(1, keepdim=True) - 2 * z @ centroids.T + centroids.square().sum(1)[None]
    return d.argmin(dim=1)


def _options(options: dict | None) -> dict:
    """Our keys of the merged options (the rest are ParT's), defaults filled in, validated."""
    opts = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if k in DEFAULTS}}

    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{OPTION_PATH}.{key}: {opts[key]!r} {problem}")

    if opts["target"] not in TARGETS:
        raise bad("target", f"is not one of {list(TARGETS)}")
    if isinstance(opts["mask_fraction"], bool) or not isinstance(opts["mask_fraction"], (int, float)):
        raise bad("mask_fraction", "is not a number")
    if not 0.0 < opts["mask_fraction"] < 1.0:
        raise bad("mask_fraction", "is not in (0, 1)")
    for key in ("decoder_layers", "max_particles", "kmeans_k", "kmeans_iters", "fit_particles", "flow_blocks"):
        if isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < 1:
            raise bad(key, "is not a positive integer")
    if opts["flow_hidden"] is not None and (
        isinstance(opts["flow_hidden"], bool) or not isinstance(opts["flow_hidden"], int) or opts["flow_hidden"] < 1
    ):
        raise bad("flow_hidden", "is not a positive integer (or null: 2 x width, at least 64)")
    if isinstance(opts["id_weight"], bool) or not isinstance(opts["id_weight"], (int, float)) or opts["id_weight"] < 0:
        raise bad("id_weight", "is not a number >= 0")
    return opts


def build(
    model_name: str,
    width: int,
    n_features: int,
    n_classes: int,
    options: dict,
    seed: int,
    input_names: Sequence[str] | None = None,
):
    """The MPM objective on the catalog ParT at ``width`` (see the module docstring for ``options``).
    ``input_names``: the model-input columns (None: the Table-1 features, unchanged)."""
    if model_name != "part":
        raise ValueError(f"mpm pretrains part, not {model_name!r}")
    expected = len(FEATURE_NAMES) if input_names is None else len(input_names)
    if n_features != expected:
        raise ValueError(f"mpm: n_features={n_features} but the inputs have {expected} columns")
    columns = TargetColumns.of(input_names)
    opts = _options(options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        part = build_model("part", width, n_classes, n_features, catalog.get("part").own_options(options))
        return MaskedParticleModelling(part, width, opts, columns)


# -- prepare: the fit-once step on unlabelled jets --------------------------------------------------------------
def _real_particles(
    arrays: dict[str, np.ndarray], limit: int, rng: np.random.Generator, columns: Sequence[int]
) -> np.ndarray:
    """(N, 11) continuous features of up to ``limit`` real particles from randomly chosen jets (seeded)."""
    if "x" in arrays:  # model inputs: x (n, F, P), mask (n, 1, P)
        x, channels_first = arrays["x"], True
    elif "features" in arrays:  # split rows: features (n, P, F), mask (n, P)
        x, channels_first = arrays["features"], False
    else:
        raise ValueError(f"mpm prepare: unlabelled arrays need 'x' or 'features' (and 'mask'), got {sorted(arrays)}")
    if "mask" not in arrays:
        raise ValueError(f"mpm prepare: unlabelled arrays lack 'mask', got {sorted(arrays)}")
    n = len(x)
    order, chunks, total = rng.permutation(n), [], 0
    for start in range(0, n, 4096):
        rows = np.sort(order[start : start + 4096])  # sorted: memory-mapped reads stay sequential
        xi = np.asarray(x[rows], dtype=np.float32)
        mi = np.asarray(arrays["mask"][rows]).reshape(len(rows), -1) > 0
        cols = list(columns)
        xi = xi[:, cols, :].transpose(0, 2, 1) if channels_first else xi[:, :, cols]
        chunks.append(xi[mi])
        total += len(chunks[-1])
        if total >= limit:
            break
    pts = np.concatenate(chunks) if chunks else np.zeros((0, len(CONTINUOUS)), np.float32)
    return pts[:limit]


def kmeans(points: torch.Tensor, k: int, iters: int, seed: int) -> tuple[torch.Tensor, dict]:
    """Lloyd's algorithm: ``k`` centroids of ``points`` (N, D), initialised on distinct random points; an emptied
    cluster is re-seeded on a random point. Assignments on the points' device, centroid sums in float64 on
    the CPU (deterministic given ``seed``). Returns (centroids (k, D), stats)."""
    n = points.shape[0]
    if n < k:
        raise ValueError(f"mpm prepare: kmeans_k={k} exceeds the {n} real particles available to fit it")
    gen = torch.Generator().manual_seed(seed)
    centroids = points[torch.randperm(n, generator=gen)[:k].to(points.device)].clone()
    chunk = max(1024, 2**24 // k)
    host = points.double().cpu()
    for _ in range(iters):
        assign = torch.cat([_nearest(points[s : s + chunk], centroids) for s in range(0, n, chunk)]).cpu()
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros(k, points.shape[1], dtype=torch.float64).index_add_(0, assign, host)
        new = sums / counts.clamp(min=1)[:, None]
        empty = (counts == 0).nonzero(as_tuple=True)[0]
        new[empty] = host[torch.randint(n, (len(empty),), generator=gen)]
        centroids = new.to(points.dtype).to(points.device)
    assign = torch.cat([_nearest(points[s : s + chunk], centroids) for s in range(0, n, chunk)])
    inertia = float((points - centroids[assign]).square().sum(dim=1).mean())
    used = int(torch.bincount(assign.cpu(), minlength=k).gt(0).sum())
    return centroids, {"kmeans_inertia": inertia, "kmeans_used_clusters": used}


def prepare(objective: MaskedParticleModelling, unlabelled_arrays: dict[str, np.ndarray], seed: int) -> dict:
    """Fit the target standardisation (all targets) and the K-means codebook (``kmeans``) on unlabelled jets."""
    rng = np.random.default_rng(seed)
    pts = _real_particles(unlabelled_arrays, objective.fit_particles, rng, objective.columns.continuous)
    if len(pts) == 0:
        raise ValueError("mpm prepare: the unlabelled arrays hold no real particles")
    mean = pts.mean(axis=0, dtype=np.float64)
    std = pts.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-6, std, 1.0)  # a constant feature stays 0 after standardising
    device = objective.target_mean.device
    objective.target_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    objective.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))
    stats: dict = {"fit_particles": int(len(pts))}
    if objective.target == "kmeans":
        z = (torch.as_tensor(pts, device=device) - objective.target_mean) / objective.target_std
        centroids, km = kmeans(z, objective.codebook.shape[0], objective.kmeans_iters, seed)
        objective.codebook.copy_(centroids)
        stats.update({"kmeans_k": int(objective.codebook.shape[0]), **km})
    objective.prepared.fill_(True)
    return stats


__all__ = ["CONTINUOUS", "PID_FLAGS", "TARGETS", "MaskedParticleModelling", "build", "prepare", "kmeans"]

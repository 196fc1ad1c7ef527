"""VQ-VAE particle tokenizer: each particle's features → one of K codebook entries, and back.

Features are standardised with the fitted pool's per-feature mean and std (buffers), encoded to a
``latent_dim`` vector, snapped to the nearest codebook entry, and decoded. Two encoder/decoder shapes:

* ``mlp`` (default): per particle. A token is then a function of the particle alone, a cell of the particle
  feature space, and decoding a generated sequence needs no context. It is also what fits the CPU study: the
  tokenizer runs inside every pretraining and fine-tuning step. This is a simplification of OmniJet-alpha,
  whose tokenizer attends over the jet's particles.
* ``transformer``: pre-norm attention blocks over the jet's real particles (OmniJet-alpha's choice; no
  positions, so tokens do not depend on particle order).

Training (:func:`fit_vqvae`): reconstruction MSE (standardised units) + ``commitment`` · ||z − sg(e)||², the
straight-through gradient to the encoder, and the codebook as an exponential moving average of the encoder
outputs assigned to each code (van den Oord et al. 2017, appendix; Laplace-smoothed counts). The codebook is
seeded from encoder outputs of the first batch (OmniJet-alpha uses k-means; this is its cheap version), and
every ``replace_every`` steps a code that no particle chose during the window is re-seeded at a random
encoder output of the current batch (dead-code handling, as vqtorch's ``replace_freq`` does). EMA updates
happen only in :func:`fit_vqvae`, never in a forward pass, so the frozen tokenizer of a pretraining or
fine-tuning job cannot drift.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...models.vq_gpt_options import VQGPTOptions

SEARCH_CHUNK = 4096  # particles per nearest-code search: keeps the (chunk, K) distance matrix small


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class ParticleAttention(nn.Module):
    """Projection in → pre-norm attention blocks over the jet's real particles → projection out."""

    def __init__(self, d_in: int, d_out: int, hidden: int, n_blocks: int, n_heads: int):
        super().__init__()
        self.project_in = nn.Linear(d_in, hidden)
        layer = nn.TransformerEncoderLayer(
            hidden,
            n_heads,
            dim_feedforward=2 * hidden,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, n_blocks, enable_nested_tensor=False)
        self.project_out = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, d_in), (B, N) bool → (B, N, d_out), zero on padded slots."""
        h = self.blocks(self.project_in(x), src_key_padding_mask=~mask)
        return self.project_out(h) * mask.unsqueeze(-1)


class VQVAE(nn.Module):
    """Tokenizer of ``n_features`` per-particle features (raw units in, raw units out)."""

    def __init__(self, n_features: int, opts: VQGPTOptions):
        super().__init__()
        self.n_features, self.arch = n_features, opts.tokenizer
        self.codebook_size, self.latent_dim = opts.codebook_size, opts.latent_dim
        hidden = [opts.vq_hidden] * opts.vq_layers
        if self.arch == "mlp":
            self.encoder = mlp([n_features, *hidden, opts.latent_dim])
            self.decoder = mlp([opts.latent_dim, *hidden, n_features])
        else:
            self.encoder = ParticleAttention(n_features, opts.latent_dim, opts.vq_hidden, opts.vq_layers, opts.vq_heads)
            self.decoder = ParticleAttention(opts.latent_dim, n_features, opts.vq_hidden, opts.vq_layers, opts.vq_heads)
        # Before fitting, a random codebook (a random-projection quantizer): tokens are still varied.
        self.register_buffer("codebook", torch.randn(opts.codebook_size, opts.latent_dim))
        self.register_buffer("ema_count", torch.ones(opts.codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # --- pieces ------------------------------------------------------------------------------------------------
    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def unstandardise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def real_latents(self, xs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Latents (M, D) of the real particles only (the MLP never sees padded slots)."""
        return self.encoder(xs[mask]) if self.arch == "mlp" else self.encoder(xs, mask)[mask]

    def decode_latent(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Latents (B, N, D) → standardised (B, N, F)."""
        return self.decoder(z) if self.arch == "mlp" else self.decoder(z, mask)

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(M, D) latents → (M,) index of the nearest codebook entry (squared Euclidean)."""
        cb = self.codebook.to(z.dtype)
        cb_sq = cb.square().sum(-1)
        out = torch.empty(len(z), dtype=torch.long, device=z.device)
        for start in range(0, len(z), SEARCH_CHUNK):
            chunk = z[start : start + SEARCH_CHUNK]
            dist = cb_sq.unsqueeze(0) - 2.0 * chunk @ cb.T  # |z|^2 is the same for every code
            out[start : start + SEARCH_CHUNK] = dist.argmin(-1)
        return out

    # --- public API (raw units, padded (B, N, F) + (B, N) bool mask) -------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Code index of every particle, (B, N) long; -1 on padded slots."""
        mask = mask.bool()
        codes = torch.full(mask.shape, -1, dtype=torch.long, device=x.device)
        codes[mask] = self.nearest(self.real_latents(self.standardise(x.float()), mask))
        return codes

    @torch.no_grad()
    def encode_padded(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` without data-dependent shapes (ONNX export): every slot encoded and searched in one
        (B, N, K) distance tensor, padded slots then set to -1; the same codes."""
        mask = mask.bool()
        xs = self.standardise(x.float())
        z = self.encoder(xs) if self.arch == "mlp" else self.encoder(xs, mask)
        cb = self.codebook.to(z.dtype)
        dist = cb.square().sum(-1) - 2.0 * z @ cb.T
        return torch.where(mask, dist.argmin(-1), torch.full((), -1, dtype=torch.long, device=x.device))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) code indices → (B, N, F) features in raw units, zero on padded slots."""
        mask = mask.bool()
        out = torch.zeros(*mask.shape, self.n_features, device=codes.device)
        if self.arch == "mlp":  # per particle: decode the real ones only
            out[mask] = self.unstandardise(self.decoder(self.codebook[codes[mask]]))
            return out
        z = self.codebook[codes.clamp(min=0)] * mask.unsqueeze(-1)
        return self.unstandardise(self.decode_latent(z, mask)) * mask.unsqueeze(-1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x, mask)
        return self.decode(codes, mask), codes

    def loss(self, x: torch.Tensor, mask: torch.Tensor, commitment: float):
        """Training loss of a batch (raw units): reconstruction MSE + commitment; also the latents and codes."""
        mask = mask.bool()
        xs = self.standardise(x.float())
        zr = self.real_latents(xs, mask)
        codes = self.nearest(zr.detach())
        e = self.codebook[codes]
        commit = F.mse_loss(zr, e)
        zq = zr + (e - zr).detach()  # straight-through: the decoder's gradient reaches the encoder
        if self.arch == "mlp":
            reco = self.decoder(zq)
        else:
            padded = torch.zeros(*mask.shape, self.latent_dim, dtype=zq.dtype, device=zq.device)
            padded[mask] = zq
            reco = self.decode_latent(padded, mask)[mask]
        reco_loss = F.mse_loss(reco, xs[mask])
        return reco_loss + commitment * commit, reco_loss, commit, zr.detach(), codes

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, codes: torch.Tensor, decay: float, eps: float = 1e-5) -> None:
        counts = torch.bincount(codes, minlength=self.codebook_size).to(self.ema_count.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, z.to(self.ema_sum.dtype))
        self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + eps) / (n + self.codebook_size * eps) * n
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(-1))

    @torch.no_grad()
    def reseed(self, which: torch.Tensor, z: torch.Tensor, generator: torch.Generator) -> None:
        """Put the codes ``which`` (bool (K,)) at random latents of ``z`` (M, D), with a little noise."""
        idx = which.nonzero().squeeze(-1)
        if len(idx) == 0 or len(z) == 0:
            return
        pick = torch.randint(len(z), (len(idx),), generator=generator, device="cpu").to(z.device)
        noise = 1e-3 * torch.randn(len(idx), z.shape[-1], generator=generator, device="cpu").to(z.device)
        spread = z.std(0, keepdim=True).clamp(min=1e-6) if len(z) > 1 else 1.0
        new = z[pick] + noise * spread
        self.codebook[idx] = new
        self.ema_sum[idx] = new
        self.ema_count[idx] = 1.0


def standardisation(particles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of (M, F) real particles; a constant feature gets std 1."""
    mean = particles.mean(axis=0)
    std = particles.std(axis=0)
    return mean, np.where(std > 1e-8, std, 1.0)


def fit_vqvae(
    vq: VQVAE,
    x: np.ndarray,
    mask: np.ndarray,
    opts: VQGPTOptions,
    seed: int,
    *,
    log_every: int = 50,
) -> dict:
    """Train ``vq`` on padded jets ``x`` (n, N, F) raw units and ``mask`` (n, N) bool; deterministic in ``seed``.

    Returns the loss curve (reconstruction MSE in standardised units, every ``log_every`` steps), the first
    and last reconstruction loss and how many dead codes were re-seeded.
    """
    mask = np.asarray(mask, dtype=bool)
    x = np.asarray(x, dtype=np.float32)
    n_jets = len(x)
    if n_jets == 0 or not mask.any():
        raise ValueError("vq_gpt: cannot fit the tokenizer on an empty pool (no real particles)")
    mean, std = standardisation(x[mask])
    device = vq.codebook.device
    vq.mean.copy_(torch.as_tensor(mean, device=device))
    vq.std.copy_(torch.as_tensor(std, device=device))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    params = list(vq.encoder.parameters()) + list(vq.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=opts.vq_lr)
    batch = min(opts.vq_batch_jets, n_jets)
    used = torch.zeros(vq.codebook_size, dtype=torch.bool, device=device)
    curve, reseeded, first = [], 0, None
    was = vq.training
    vq.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(opts.vq_steps):
            rows = np.sort(rng.choice(n_jets, batch, replace=False))
            m = mask[rows]
            width = max(1, int(m.sum(1).max()))
            xb = torch.from_numpy(x[rows, :width]).to(device)
            mb = torch.from_numpy(m[:, :width]).to(device)
            if step == 0:  # seed the codebook at encoder outputs of real particles
                with torch.no_grad():
                    z0 = vq.real_latents(vq.standardise(xb), mb)
                vq.reseed(torch.ones(vq.codebook_size, dtype=torch.bool, device=device), z0, gen)
            loss, reco, _commit, z, codes = vq.loss(xb, mb, opts.commitment)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            vq.ema_update(z, codes, opts.ema_decay)
            used[codes] = True
            if (step + 1) % opts.replace_every == 0:
                dead = ~used
                reseeded += int(dead.sum())
                vq.reseed(dead, z, gen)
                used.zero_()
            value = float(reco.detach())
            first = value if first is None else first
            if step % log_every == 0 or step == opts.vq_steps - 1:
                curve.append({"step": step + 1, "reco_loss": round(value, 6)})
    vq.train(was)
    for p in params:  # frozen from here on, with no stale gradient an optimizer (or its weight decay) could apply
        p.requires_grad_(False)
        p.grad = None
    vq.fitted.fill_(True)
    return {
        "steps": opts.vq_steps,
        "first_reco_loss": first,
        "final_reco_loss": curve[-1]["reco_loss"] if curve else None,
        "reseeded_codes": reseeded,
        "curve": curve,
    }

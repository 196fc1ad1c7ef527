"""A decoder-only transformer over pT-ordered token sequences, and how a jet becomes one.

Vocabulary (OmniJet-alpha's convention): START = 0, codebook entry c → token c + 1, STOP = K + 1. A jet with n
particles is ``START t_1 … t_n STOP`` with t_1 the hardest particle (largest ``order_by`` feature, pT by
default), truncated to the ``max_particles`` hardest. Next-token cross-entropy: positions 0..n predict
t_1..t_n, STOP (STOP teaches the model the multiplicity); padding after STOP is ignored.

Architecture: token embedding (+ an optional learned position embedding: OmniJet-alpha has none; the causal
mask and the START token let the model count), ``n_layers`` pre-norm blocks (causal self-attention via
``F.scaled_dot_product_attention``, GELU MLP 4w), a final LayerNorm. OmniJet-alpha's blocks are post-norm;
pre-norm is the usual, more stable choice for small learning-rate-untuned runs. Padding sits after STOP, so
under the causal mask no real position ever attends to it: no key-padding mask is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100  # cross-entropy ignore_index for positions after STOP


class Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, C)))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class JetGPT(nn.Module):
    """Token ids (B, T) → hidden states (B, T, width)."""

    def __init__(self, vocab_size: int, width: int, n_layers: int, n_heads: int, dropout: float, max_len: int | None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(max_len, width) if max_len else None
        self.blocks = nn.ModuleList(Block(width, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(width)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        if self.pos is not None:
            h = h + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            h = block(h)
        return self.norm(h)


def pt_order(codes: torch.Tensor, mask: torch.Tensor, key: torch.Tensor, max_particles: int, sort: bool = True):
    """Codes (B, N) of real particles sorted by decreasing ``key`` and cut to ``max_particles``.

    Returns (codes (B, L), n (B,)) with L = min(N, max_particles); padding slots hold -1. ``sort=False``: the
    same stable order from pairwise comparisons (:func:`stable_descending_order`), for ONNX export.
    """
    mask = mask.bool()
    key = torch.where(mask, key.float(), torch.full_like(key, float("-inf"), dtype=torch.float32))
    if sort:
        order = torch.sort(key, dim=1, descending=True, stable=True).indices
    else:
        order = stable_descending_order(key)
    sorted_codes = torch.gather(codes, 1, order)[:, :max_particles]
    n = mask.sum(1).clamp(max=max_particles)
    keep = torch.arange(sorted_codes.shape[1], device=codes.device).unsqueeze(0) < n.unsqueeze(1)
    return torch.where(keep, sorted_codes, torch.full_like(sorted_codes, -1)), n


def stable_descending_order(key: torch.Tensor) -> torch.Tensor:
    """(B, N) -> the indices of a stable descending sort of each row (ties keep their index order), without a
    sort: each element's rank counts the elements that go before it, O(N²) comparisons. ONNX has no stable sort."""
    slots = torch.arange(key.shape[1], device=key.device)
    ahead = (key.unsqueeze(1) > key.unsqueeze(2)) | (
        (key.unsqueeze(1) == key.unsqueeze(2)) & (slots.view(1, 1, -1) < slots.view(1, -1, 1))
    )  # [b, i, j]: j goes before i
    rank = ahead.sum(dim=2)
    return torch.zeros_like(rank).scatter(1, rank, slots.expand_as(rank))


def sequences(codes: torch.Tensor, n: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """pT-ordered codes (B, L) (-1 = padding) → (inputs, targets), both (B, L + 1).

    inputs = START t_1 … t_n (then STOP as filler), targets = t_1 … t_n STOP (then IGNORE).
    """
    B, L = codes.shape
    pos = torch.arange(L + 1, device=codes.device).unsqueeze(0)
    tokens = torch.where(codes >= 0, codes + 1, torch.full_like(codes, stop))
    inputs = torch.cat([torch.full((B, 1), start, dtype=torch.long, device=codes.device), tokens], dim=1)
    targets = torch.cat([tokens, torch.full((B, 1), stop, dtype=torch.long, device=codes.device)], dim=1)
    targets = torch.where(pos < n.unsqueeze(1), targets, torch.full_like(targets, stop))
    targets = torch.where(pos <= n.unsqueeze(1), targets, torch.full_like(targets, IGNORE))
    return inputs, targets


@torch.no_grad()
def generate(
    gpt: JetGPT,
    lm_head: nn.Module,
    n: int,
    *,
    start: int,
    stop: int,
    max_particles: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n`` token sequences from START until STOP (or ``max_particles`` particles).

    START is never sampled (as in OmniJet-alpha) and STOP not as the first token (a jet has a particle).
    Returns (codes (n, L) with -1 after a jet's STOP, n_particles (n,)); codes are codebook indices.
    """
    device = gpt.embed.weight.device
    seq = torch.full((n, 1), start, dtype=torch.long, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    length = torch.zeros(n, dtype=torch.long, device=device)
    for step in range(max_particles):
        logits = lm_head(gpt(seq)[:, -1]).float() / temperature
        logits[:, start] = float("-inf")
        if step == 0:
            logits[:, stop] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
        nxt = torch.where(done, torch.full_like(nxt, stop), nxt)
        done = done | (nxt == stop)
        length = length + (~done).long()
        seq = torch.cat([seq, nxt.unsqueeze(1)], dim=1)
        if bool(done.all()):
            break
    body = seq[:, 1 : 1 + max(1, int(length.max()))]  # drop the trailing STOP column
    keep = torch.arange(body.shape[1], device=device).unsqueeze(0) < length.unsqueeze(1)
    return torch.where(keep, body - 1, torch.full_like(body, -1)), length

"""Particle Transformer (Qu, Li & Qian 2022).

Particle embedding: BatchNorm, then an MLP (LayerNorm → Linear → GELU) with dims (w, 4w, w). Pair embedding:
the four interaction features (ln Δ, ln kT, ln z, ln m², from the four-vectors) of every real pair, self-pairs
included → 1×1 convolutions (BN, GELU) with dims (w/2, w/2, w/2, n_heads), no GELU after the last BN → a
per-head additive attention bias. Then 8 particle-attention blocks and 2
class-attention blocks (NormFormer-style blocks: extra LayerNorms after attention and in the MLP, per-head
and residual scales), a final LayerNorm and a linear head on the class token. Width = embedding dimension;
the reference configuration is width 128 (embed (128, 512, 128), pair (64, 64, 64), 8 heads, MLP 512), whose
layer structure follows weaver-core's ``ParticleTransformer``: with its weights copied in (pair features
reordered), this model computes the same logits (``benchmarks/weaver_compare.py``).

On eager CPU the particle blocks run on the real particles only (:meth:`ParticleTransformer.encode_ragged`).
Elsewhere (CUDA, ``torch.compile``, ``static_shapes`` for ONNX export) the padded layout. Its training step (and
``static_shapes``) embeds every pair of slots and masks them (:meth:`ParticleTransformer.attention_bias`), no shape
depending on the data (no host sync on a GPU, one graph per bucket under ``torch.compile``), the pair BatchNorms
taking their statistics from the real pairs alone: it trains exactly as the real-particle path does. Its eager
scoring on CPU, and the FLOP count, embed the real pairs alone (:meth:`ParticleTransformer.real_pair_bias`): the
same values; on a GPU scoring embeds every pair too, with no host sync.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenize.particles import pair_features_at
from .dropout import uniform_dropout
from .masked_norm import masked_batch_norm
from .ragged import Ragged

NEG = -1e9  # additive bias on padded keys (finite: exp underflows to exactly 0, no NaN-guarding needed)
#: the padded path's attention through ``F.scaled_dot_product_attention``: None = on CUDA only; tests set it
SDPA: bool | None = None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias)·v: q (B, H, Lq, hd), k and v (B, H, Lk, hd), bias (B, H, Lq, Lk) additive.

    On CUDA through SDPA, eager or compiled: the pair bias goes in as a float mask, which SDPA's memory-efficient
    kernel takes (flash takes no mask), a fused kernel that need not write the (B, H, Lq, Lk) probabilities out.
    Elsewhere written out: on CPU it beats SDPA's masked math path for tiny heads."""
    use_sdpa = q.device.type == "cuda" if SDPA is None else SDPA
    if use_sdpa:
        # dropout_p 0: the blocks drop their outputs, never attention weights
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    scores = torch.baddbmm(
        bias.flatten(0, 1), q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), alpha=q.shape[-1] ** -0.5
    )
    out = torch.bmm(scores.softmax(dim=-1), v.flatten(0, 1))
    return out.view(q.shape[0], q.shape[1], q.shape[2], v.shape[-1])


class Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, ffn_ratio: int = 4, dropout: float = 0.1):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.pre_attn_norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.post_attn_norm = nn.LayerNorm(dim)
        self.pre_fc_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_ratio * dim)
        self.post_fc_norm = nn.LayerNorm(ffn_ratio * dim)
        self.fc2 = nn.Linear(ffn_ratio * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.c_attn = nn.Parameter(torch.ones(n_heads))
        self.w_resid = nn.Parameter(torch.ones(dim))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias, x_cls: torch.Tensor | None = None, ragged: Ragged | None = None):
        """x (B, P, d); bias (B, H, Lq, Lk) additive (−inf on padded keys); x_cls (B, 1, d) for class attention.
        With ``ragged``: x (N, d) real particles and ``bias`` a list per attention group (:meth:`forward_ragged`).
        """
        if ragged is not None:
            return self.forward_ragged(x, ragged, bias)
        if x_cls is None:
            residual, u = x, self.pre_attn_norm(x)
            q_in = u
        else:  # class attention: keys/values normalised, the query is the raw class token (as weaver-core)
            residual = x_cls
            u = self.pre_attn_norm(torch.cat([x_cls, x], dim=1))
            q_in = x_cls
        d = u.shape[-1]
        w, b = self.in_proj.weight, self.in_proj.bias
        q = F.linear(q_in, w[:d], b[:d])
        k = F.linear(u, w[d : 2 * d], b[d : 2 * d])
        v = F.linear(u, w[2 * d :], b[2 * d :])
        h = attention(self._heads(q), self._heads(k), self._heads(v), bias)
        B, H, L, hd = h.shape
        h = self.out_proj(h.transpose(1, 2).reshape(B, L, H * hd))
        h = (h.view(B, L, H, hd) * self.c_attn.view(1, 1, H, 1)).reshape(B, L, H * hd)
        p, training = self.dropout.p, self.training
        x = uniform_dropout(self.post_attn_norm(h), p, training) + residual
        residual = x
        h = self.fc2(self.post_fc_norm(uniform_dropout(F.gelu(self.fc1(self.pre_fc_norm(x))), p, training)))
        return uniform_dropout(h, p, training) + self.w_resid * residual

    def forward_ragged(self, x: torch.Tensor, lay: Ragged, biases: list[torch.Tensor]) -> torch.Tensor:
        """The particle-attention block on the real particles only: x (N, d) -> (N, d); ``biases``: per attention
        group (H·size, length, length) (:meth:`ParticleTransformer.ragged_attention_bias`). Same maths as
        :meth:`forward` on the padded batch, the same dropout draws."""
        H, hd = self.n_heads, self.head_dim
        d = x.shape[-1]
        p, training = self.dropout.p, self.training
        residual = x
        qkv = self.in_proj(self.pre_attn_norm(x))  # (N, 3d)
        flat = torch.cat([qkv, qkv.new_zeros(1, 3 * d)]).view(-1)  # one zero row for the groups' padding
        groups = flat.index_select(0, lay.qkv_index(H, hd)).split(lay.qkv_sizes(H, hd))
        outs = [
            GroupAttention.apply(t.view(3, H * s, hd, L), bias, hd**-0.5).view(-1)
            for t, bias, (s, L) in zip(groups, biases, lay.groups)
        ]
        h = self.out_proj(torch.cat(outs).index_select(0, lay.out_index(H, hd)).view(-1, d))
        h = (h.view(-1, H, hd) * self.c_attn.view(1, H, 1)).reshape(-1, d)
        x = lay.dropout(self.post_attn_norm(h), p, training) + residual
        residual = x
        h = self.fc2(self.post_fc_norm(lay.dropout(F.gelu(self.fc1(self.pre_fc_norm(x))), p, training)))
        return lay.dropout(h, p, training) + self.w_resid * residual

    def forward_class(self, h: torch.Tensor, x_cls: torch.Tensor, lay: Ragged) -> torch.Tensor:
        """Class attention on the real particles: h (N, d), x_cls (B, d) -> (B, d). The query is each jet's
        class token, its keys the token and its jet's particles (:meth:`Ragged.class_index`: keys and values
        laid out (B, H, hd, 1 + length)): one query row, so the scores and the weighted sum are elementwise
        products, not batched GEMMs of 1-row matrices. Same maths as :meth:`forward` with ``x_cls``."""
        H, hd = self.n_heads, self.head_dim
        B, d = x_cls.shape
        w, b = self.in_proj.weight, self.in_proj.bias
        q = F.linear(x_cls, w[:d], b[:d]).view(B, H, hd, 1)
        kv = F.linear(self.pre_attn_norm(torch.cat([x_cls, h])), w[d:], b[d:])  # (B + N, 2d)
        index, mask = lay.class_index(H, hd, NEG)
        k, v = torch.cat([kv, kv.new_zeros(1, 2 * d)]).view(-1).index_select(0, index).view(B, 2, H, hd, -1).unbind(1)
        scores = torch.add(mask, (q * k).sum(dim=2), alpha=hd**-0.5)  # (B, H, 1 + L)
        out = (scores.softmax(dim=-1).unsqueeze(2) * v).sum(dim=-1)  # (B, H, hd)
        out = self.out_proj(out.view(B, d)).view(B, H, hd) * self.c_attn.view(1, H, 1)
        p, training = self.dropout.p, self.training
        x = uniform_dropout(self.post_attn_norm(out.view(B, d)), p, training) + x_cls
        residual = x
        out = self.fc2(self.post_fc_norm(uniform_dropout(F.gelu(self.fc1(self.pre_fc_norm(x))), p, training)))
        return uniform_dropout(out, p, training) + self.w_resid * residual


class GroupAttention(torch.autograd.Function):
    """softmax(q·kᵀ·scale + bias)·v for one attention group in the transposed layout: ``qkv`` (3, batch, hd, L)
    (each head's queries, keys and values as columns), ``bias`` (batch, L, L) -> the outputs (batch, hd, L).

    The same maths as :func:`attention`; written with its backward so that every matrix product of these
    few-dimensional heads (hd = 2 at width 16) runs in the orientation CPU GEMMs are fast in (the one with hd
    rows), and the gradient of q, k and v lands in one tensor."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
        q, k, v = qkv
        probs = torch.baddbmm(bias, q.transpose(1, 2), k, alpha=scale).softmax(dim=-1)  # (batch, Lq, Lk)
        ctx.save_for_backward(qkv, probs)
        ctx.scale = scale
        return torch.bmm(v, probs.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        qkv, probs = ctx.saved_tensors
        q, k, v = qkv
        grad = torch.empty_like(qkv)
        torch.bmm(grad_out, probs, out=grad[2])
        grad_scores = torch._softmax_backward_data(torch.bmm(grad_out.transpose(1, 2), v), probs, -1, probs.dtype)
        torch.bmm(k, grad_scores.transpose(1, 2), out=grad[0])
        torch.bmm(q, grad_scores, out=grad[1])
        grad[:2].mul_(ctx.scale)
        return grad, grad_scores, None


class GatherColumns(torch.autograd.Function):
    """``table.index_select(1, index)`` for several indices at once; the backward accumulates every gradient into
    one buffer (one zero fill, not one per index and their sum)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, *indices: torch.Tensor):
        ctx.save_for_backward(*indices)
        ctx.shape = table.shape
        return tuple(table.index_select(1, index) for index in indices)

    @staticmethod
    def backward(ctx, *grads):
        grad = grads[0].new_zeros(ctx.shape)
        for index, g in zip(ctx.saved_tensors, grads):
            if g is not None:
                grad.index_add_(1, index, g)
        return (grad, *(None for _ in grads))


class RowBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of x (C, n) over its n columns (channels first): -> (y, batch mean, biased batch
    variance). The same maths as ``F.batch_norm``; on CPU its statistics and its backward for a few channels of
    many pairs take a handful of vectorised passes instead of the generic kernel's slower ones."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        mean = x.mean(dim=1, keepdim=True)
        xhat = x - mean
        var = xhat.square().mean(dim=1, keepdim=True)
        inv = (var + eps).rsqrt()
        xhat.mul_(inv)
        ctx.save_for_backward(xhat, weight, inv)
        ctx.mark_non_differentiable(mean, var)
        return xhat * weight[:, None] + bias[:, None], mean, var

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, _mean, _var):
        xhat, weight, inv = ctx.saved_tensors
        n = xhat.shape[1]
        grad_bias = grad_y.sum(dim=1)
        grad_weight = (grad_y * xhat).sum(dim=1)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_y - xhat * (grad_weight / n)[:, None] - (grad_bias / n)[:, None]) * (weight[:, None] * inv)
        return grad_x, grad_weight, grad_bias, None


def batch_norm_rows(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """``bn`` applied to x (C, n) channels first, running statistics updated as ``F.batch_norm`` does."""
    if bn.training or not bn.track_running_stats:
        y, mean, var = RowBatchNorm.apply(x, bn.weight, bn.bias, bn.eps)
        if bn.training and bn.track_running_stats:
            n = x.shape[1]
            m = bn.momentum
            with torch.no_grad():
                bn.running_mean.mul_(1 - m).add_(mean.view(-1), alpha=m)
                bn.running_var.mul_(1 - m).add_(var.view(-1) * (n / max(n - 1, 1)), alpha=m)
        return y
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    return (x - bn.running_mean[:, None]) * scale[:, None] + bn.bias[:, None]


def ragged_pair_features(vectors: torch.Tensor, lay: Ragged, eps: float = 1e-8) -> torch.Tensor:
    """ParT's interaction features of the batch's real pairs (``lay.pair_i``, ``lay.pair_j``), channels first:
    (4, n_pairs) ln Δ, ln kT, ln z, ln m², elementwise the values of ``pair_features_at`` at those pairs: the
    per-particle quantities are computed once for the N real particles, then two gathers."""
    B, _, P = vectors.shape
    px, py, pz, e = vectors.permute(1, 0, 2).reshape(4, B * P).index_select(1, lay.rows)  # (N,) each
    pt = torch.sqrt((px * px + py * py).clamp(min=eps))
    rap = 0.5 * torch.log1p(2 * pz / (e - pz).clamp(min=1e-20))
    phi = torch.atan2(py, px)
    table = torch.stack([px, py, pz, e, pt, rap, phi])
    a, b = table.index_select(1, lay.pair_i), table.index_select(1, lay.pair_j)  # (7, n)
    dphi = torch.remainder(a[6] - b[6] + torch.pi, 2 * torch.pi) - torch.pi
    delta = torch.sqrt((a[5] - b[5]).square() + dphi.square())
    pti, ptj = a[4], b[4]
    s = a[:4] + b[:4]
    ptmin = torch.minimum(pti, ptj)
    m2 = s[3].square() - s[0].square() - s[1].square() - s[2].square()
    out = torch.empty(4, s.shape[1], dtype=s.dtype, device=s.device)
    torch.log(delta.clamp(min=eps), out=out[0])
    torch.log((ptmin * delta).clamp(min=eps), out=out[1])
    torch.log((ptmin / (pti + ptj).clamp(min=eps)).clamp(min=eps), out=out[2])
    torch.log(m2.clamp(min=eps), out=out[3])
    return out


def tril_pairs(P: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.tril_indices(P, P)``: the slot pairs (i, j), i ≥ j, i-major (pair (i, j) at k = i(i + 1)/2 + j),
    by arithmetic on one ``arange``, so that a symbolic P stays symbolic under ``torch.export`` (``tril_indices``
    takes concrete sizes). The row from the float square root, then put right where it rounded across."""
    k = torch.arange(P * (P + 1) // 2, device=device)
    i = ((torch.sqrt(8 * k.double() + 1) - 1) / 2).floor().long()
    i = i - (i * (i + 1) // 2 > k).long() + ((i + 1) * (i + 2) // 2 <= k).long()
    return i, k - i * (i + 1) // 2


def attended_slots(mask: torch.Tensor) -> torch.Tensor:
    """mask (B, 1, P) -> (B, P) bool: the real particles, and for a jet without any its first slot (so no
    softmax row is all padding)."""
    valid = mask[:, 0] > 0
    return valid | (~valid.any(dim=1, keepdim=True) & (torch.arange(valid.shape[1], device=mask.device) == 0))


class ParticleTransformer(nn.Module):
    input_kind = "particles"

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        width: int = 128,
        n_heads: int = 8,
        n_layers: int = 8,
        n_cls_layers: int = 2,
        n_pair_features: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        dims = (width, 4 * width, width)
        self.input_bn = nn.BatchNorm1d(n_features)
        layers, d_in = [], n_features
        for d in dims:
            layers += [nn.LayerNorm(d_in), nn.Linear(d_in, d), nn.GELU()]
            d_in = d
        self.embed = nn.Sequential(*layers)
        pair_dims = (width // 2,) * 3 + (n_heads,)
        pair, c_in = [nn.BatchNorm1d(n_pair_features)], n_pair_features
        for c in pair_dims:
            pair += [nn.Conv1d(c_in, c, 1), nn.BatchNorm1d(c), nn.GELU()]
            c_in = c
        self.pair_embed = nn.Sequential(
            *pair[:-1]
        )  # the bias is the last BN's output, no GELU (weaver: pre-activation)
        self.n_heads = n_heads
        self.ragged: bool | None = None  # None: the real-particle path on eager CPU (use_ragged), else padded
        self.static_shapes = False  # True: the padded path whatever the device (ONNX export)
        # padded-path scoring: the real pairs alone (True) or every pair, as in training (False); None: real pairs on
        # CPU (fewer), every pair elsewhere (no ``nonzero``, so no host sync per scoring batch on a GPU)
        self.real_pairs: bool | None = None
        self.blocks = nn.ModuleList(Block(width, n_heads, dropout=dropout) for _ in range(n_layers))
        self.cls_blocks = nn.ModuleList(Block(width, n_heads, dropout=0.0) for _ in range(n_cls_layers))
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, n_classes)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def embed_pairs(self, h: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Pair features (n, 4) -> attention bias values (n, H): ``pair_embed`` channels-last, its BatchNorms'
        training statistics taken over the rows ``keep`` marks (the real pairs; None: every row) alone, in float32
        at least (under autocast the products come in bfloat16); the output keeps the products' dtype."""
        for layer in self.pair_embed:
            if isinstance(layer, nn.BatchNorm1d) and keep is None:
                training = layer.training or not layer.track_running_stats
                h = F.batch_norm(
                    h,
                    layer.running_mean,
                    layer.running_var,
                    layer.weight,
                    layer.bias,
                    training,
                    layer.momentum,
                    layer.eps,
                )
            elif isinstance(layer, nn.BatchNorm1d):
                h = masked_batch_norm(h, keep, layer)
            elif isinstance(layer, nn.Conv1d):
                h = F.linear(h, layer.weight.squeeze(-1), layer.bias)
            else:
                h = layer(h)
        return h

    def real_pair_bias(self, vectors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """:meth:`attention_bias` with only the real pairs embedded, picked by ``nonzero`` (a data-dependent
        shape: a host sync on a GPU). The padded path's eager scoring on CPU uses it (fewer pairs), and so does
        the FLOP count (``measure_flops_per_jet``: the forward FLOPs a cell records count the real pairs alone)."""
        B, _, P = vectors.shape
        H = self.n_heads
        i, j = torch.tril_indices(P, P, device=vectors.device)
        jets, k = (valid[:, i] & valid[:, j]).nonzero(as_tuple=True)
        i, j = i[k], j[k]
        h = self.embed_pairs(pair_features_at(vectors, jets, i, j), None)  # (n_real_pairs, H)
        off = i != j  # mirrored pairs; self-pairs once, so each bias entry comes from exactly one pair
        jets, rows, cols, h = (
            torch.cat([jets, jets[off]]),
            torch.cat([i, j[off]]),
            torch.cat([j, i[off]]),
            torch.cat([h, h[off]]),
        )
        heads = torch.arange(H, device=h.device)
        flat = ((jets[:, None] * H + heads) * P + rows[:, None]) * P + cols[:, None]  # (n, H)
        bias = torch.where(valid, 0.0, NEG).to(h.dtype)[:, None, None, :].expand(B, H, P, P).contiguous()
        bias.view(-1).index_put_((flat.reshape(-1),), h.reshape(-1))
        return bias

    def ragged_attention_bias(self, vectors: torch.Tensor, lay: Ragged) -> list[torch.Tensor]:
        """:meth:`attention_bias` for the real-particle path: per attention group (H·size, length, length), the
        embedded features of the real pairs (channels first, so the 1×1 convolutions are wide matrix products),
        0 on padded queries and NEG on padded keys; one gather from the (H, n_pairs + 2) table."""
        H = self.n_heads
        h = ragged_pair_features(vectors, lay)
        for layer in self.pair_embed:
            if isinstance(layer, nn.BatchNorm1d):
                h = batch_norm_rows(h, layer)
            elif isinstance(layer, nn.Conv1d):
                h = torch.addmm(layer.bias[:, None], layer.weight.squeeze(-1), h)
            else:
                h = layer(h)
        table = torch.cat([h, h.new_zeros(H, 1), h.new_full((H, 1), NEG)], dim=1)
        parts = GatherColumns.apply(table, *(lay.bias_index(g) for g in range(len(lay.sizes))))
        return [t.view(H * s, L, L) for t, (s, L) in zip(parts, lay.groups)]

    def attention_bias(self, vectors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Pair-feature bias (B, H, P, P), contiguous: the embedded pair at the real pairs, 0 on a padded query's
        row, NEG on padded keys. No shape depends on the data (no ``nonzero``): the pairs i ≥ j of all P slots,
        padded ones included, are embedded, the pair BatchNorms taking their statistics from the real pairs alone
        (:func:`masked_batch_norm`: the pairs the real-particle path embeds, each once, self-pairs included), then
        mirrored, so [i, j] and [j, i] both come from the pair (max, min) and its gradient is counted once. Costs
        P(P + 1)/2 pairs per jet instead of its real ones: the price of static shapes."""
        B, _, P = vectors.shape
        device = vectors.device
        i, j = tril_pairs(P, device)
        T = i.shape[0]
        jets = torch.arange(B, device=device).view(B, 1).expand(B, T).reshape(-1)
        real = valid[:, i] & valid[:, j]  # (B, T)
        h = self.embed_pairs(pair_features_at(vectors, jets, i.repeat(B), j.repeat(B)), real.view(-1))
        slots = torch.arange(P, device=device)
        hi, lo = torch.maximum(slots.view(P, 1), slots.view(1, P)), torch.minimum(slots.view(P, 1), slots.view(1, P))
        mirror = (hi * (hi + 1) // 2 + lo).view(-1)  # (P·P,) slot pair -> its (max, min) pair
        bias = h.view(B, T, -1).transpose(1, 2).index_select(2, mirror).view(B, -1, P, P)
        bias = torch.where(valid.view(B, 1, P, 1), bias, torch.zeros((), dtype=bias.dtype, device=device))
        bias = torch.where(valid.view(B, 1, 1, P), bias, torch.full((), NEG, dtype=bias.dtype, device=device))
        return bias.contiguous()

    def encode(self, x: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The particle encoder (embedding, pair bias, particle-attention blocks) without the class attention.

        x (B, F, P), vectors (B, 4, P), mask (B, 1, P) -> (particle embeddings (B, P, d), valid (B, P) bool).
        A jet without real particles attends to its first slot (:func:`attended_slots`). Masked
        particle modelling (``jetscale.pretrain.mpm``) pretrains exactly this part.
        """
        valid = attended_slots(mask)
        if self.use_ragged(x):
            h, lay = self.encode_ragged(x, vectors, valid)
            return lay.pad(h), valid
        m = valid[:, None, :].to(x.dtype)
        # input_bn over every slot of the batch, padding included, as the real-particle path (and weaver-core)
        h = self.embed((self.input_bn(x) * m).transpose(1, 2)) * m.transpose(1, 2)  # (B, P, d)
        bias = (self.real_pair_bias if self.use_real_pairs(x) else self.attention_bias)(vectors * m, valid)
        for block in self.blocks:
            h = block(h, bias)
        return h, valid

    def encode_ragged(self, x: torch.Tensor, vectors: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, Ragged]:
        """:meth:`encode` on the real particles: -> (their embeddings (N, d), the batch's layout)."""
        lay = Ragged.of(valid)
        h = self.embed(lay.flatten(self.input_bn(x).transpose(1, 2)))  # (N, d); padding is never gathered
        biases = self.ragged_attention_bias(vectors, lay)
        for block in self.blocks:
            h = block(h, biases, ragged=lay)
        return h, lay

    def use_real_pairs(self, x: torch.Tensor) -> bool:
        """Whether the padded path embeds the real pairs alone (:meth:`real_pair_bias`, a data-dependent shape):
        in eager scoring on CPU, or where ``self.real_pairs`` says (the FLOP count); never in training, with
        ``static_shapes`` or compiled."""
        if self.training or self.static_shapes or torch.compiler.is_compiling():
            return False
        if self.real_pairs is not None:
            return self.real_pairs
        return x.device.type == "cpu"

    def use_ragged(self, x: torch.Tensor) -> bool:
        """Real particles only (:mod:`jetscale.models.ragged`): eager CPU runs, unless ``self.ragged`` says."""
        if self.static_shapes:
            return False
        if self.ragged is not None:
            return self.ragged
        return x.device.type == "cpu" and not torch.compiler.is_compiling()

    def forward(self, x: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
        """x (B, F, P), vectors (B, 4, P), mask (B, 1, P) -> logits (B, n_classes)."""
        if self.use_ragged(x):
            h, lay = self.encode_ragged(x, vectors, attended_slots(mask))
            cls = self.cls_token.view(1, -1).expand(x.shape[0], -1)
            for block in self.cls_blocks:
                cls = block.forward_class(h, cls, lay)
            return self.fc(self.norm(cls))
        h, valid = self.encode(x, vectors, mask)
        cls = self.cls_token.expand(h.shape[0], -1, -1)
        cls_bias = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)
        cls_bias = torch.zeros(cls_bias.shape, dtype=h.dtype, device=h.device).masked_fill(~cls_bias, NEG)
        cls_bias = cls_bias[:, None, None, :].expand(-1, self.n_heads, 1, -1)
        for block in self.cls_blocks:
            cls = block(h, cls_bias, x_cls=cls)
        return self.fc(self.norm(cls).squeeze(1))


def build(spec, width: int, n_classes: int, n_features: int, options) -> ParticleTransformer:
    """The catalog's builder (``options``: ``catalog.ParTOptions``)."""
    return ParticleTransformer(
        n_features,
        n_classes,
        width=width,
        n_heads=spec.heads(width),
        n_layers=options.n_layers or spec.depth(width),
        n_cls_layers=options.n_cls_layers,
    )

"""BBT-Neutron (Wu et al. 2024, arXiv:2412.00129): a decoder-only transformer on binary-tokenized jets.

Bytes (vocab 257 = 256 byte values + PAD) → per-byte embedding (width) → each patch of ``patch_size`` byte
embeddings is flattened and mapped by Linear → ReLU → Linear (patch_size·w → 4w → w) to one position. Then a
pre-norm decoder: RMSNorm → causal self-attention with rotary position embeddings (RoPE), via
``F.scaled_dot_product_attention`` → RMSNorm → SwiGLU MLP (4w). The classification head reads the final
RMSNorm'd state at the last valid patch (the one holding EOS, which under the causal mask has seen the whole
jet). The optional LM head (Linear → ReLU → Linear, w → 2w → patch_size·257) predicts the next patch's bytes.
Width = hidden size. Reference configuration (width 768): 12 layers, 12 heads of 64, patch 16, LM head on;
≈160M parameters, the size the paper reports.

On CPU in fp32 the linear layers' products (forward and input gradient) run through oneDNN
(:mod:`.cpu_linear`: the same products, about twice MKL's rate on this study's AMD cores), and the byte
embedding and the patch embedding's first product are one fused step on per-slot byte tables
(:class:`_BytePatchEmbed`); the FLOP counter, export, compile, autocast and GPUs see plain ``nn.Linear`` /
``nn.Embedding`` maths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenize.bytes import PAD, VOCAB_SIZE
from . import cpu_linear
from .catalog import bbt_heads as n_heads_for  # the width -> heads rule lives in the catalog
from .cpu_linear import ROW_BLOCK, linear

MIN_ROWS = 512  # (batch · patches) rows from which a product goes through oneDNN (padded to a multiple of 512)


def _row_padding(B: int, N: int) -> int:
    """Patches to append so that B·N rows are a multiple of oneDNN's row block (no padding copy per product):
    at most N/8 more, else none (the products then pad their rows themselves)."""
    extra = -N % (ROW_BLOCK // math.gcd(B, ROW_BLOCK))
    return extra if 8 * extra <= N else 0


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and keys) whose CPU fp32 products go through :func:`.cpu_linear.linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, bias=self.bias, min_rows=MIN_ROWS)


class _BytePatchEmbed(torch.autograd.Function):
    """The patch embedding's first product on byte embeddings, ``embed(idx).flatten(-2) · W1ᵀ + b1``, without
    forming the embedded bytes. W1 (H, S·D) is S slot blocks W1_s (H, D), so the product is Σ_s T_s[idx_s] with
    tables T_s = E·W1_sᵀ (V × H each: V = 257 byte values, far fewer than the rows): one small product and a
    summed gather (``embedding_bag``) instead of an (M, S·D) · (S·D, H) product; the backward adds the output
    gradient into per-slot table gradients G_s (``index_add_``), then dE = Σ_s G_s·W1_s and dW1_s = G_sᵀ·E. The
    same sums, regrouped (float rounding only); the padding row of E gets no gradient, as ``padding_idx``.
    Tables are laid out (V, S, H): row v·S + s is T_s[v]."""

    @staticmethod
    def forward(ctx, idx: torch.Tensor, E: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor, padding_idx: int):
        S = idx.shape[1]
        H, D = W1.shape[0], E.shape[1]
        w_cols = W1.view(H, S, D).permute(2, 1, 0).reshape(D, S * H)  # column s·H + h is W1_s[h]
        flat = idx * S + torch.arange(S, device=idx.device)
        ctx.save_for_backward(flat, E, w_cols)
        ctx.padding_idx = padding_idx
        return F.embedding_bag(flat, (E @ w_cols).view(-1, H), mode="sum") + b1

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        flat, E, w_cols = ctx.saved_tensors
        (V, D), S = E.shape, flat.shape[1]
        H = w_cols.shape[1] // S
        grad = grad.contiguous()
        g_tables = grad.new_zeros(V * S, H)
        for s in range(S):
            g_tables.index_add_(0, flat[:, s], grad)
        g_tables = g_tables.view(V, S * H)
        grad_e = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_e = g_tables @ w_cols.t()
            if ctx.padding_idx is not None:
                grad_e[ctx.padding_idx] = 0
        if ctx.needs_input_grad[2]:
            grad_w = (g_tables.t() @ E).view(S, H, D).transpose(0, 1).reshape(H, S * D)
        if ctx.needs_input_grad[3]:
            grad_b = grad.sum(0)
        return None, grad_e, grad_w, grad_b, None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + self.eps).to(x.dtype))


def rope_tables(n_pos: int, head_dim: int, device, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(n_pos, device=device, dtype=torch.float32), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = t.shape[-1] // 2
    rotated = torch.cat([-t[..., half:], t[..., :half]], dim=-1)
    return t * cos.to(t.dtype) + rotated * sin.to(t.dtype)


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.attn_norm = RMSNorm(dim)
        self.q_proj = Linear(dim, dim, bias=False)
        self.k_proj = Linear(dim, dim, bias=False)
        self.v_proj = Linear(dim, dim, bias=False)
        self.o_proj = Linear(dim, dim, bias=False)
        self.mlp_norm = RMSNorm(dim)
        self.gate_proj = Linear(dim, mlp_ratio * dim, bias=False)
        self.up_proj = Linear(dim, mlp_ratio * dim, bias=False)
        self.down_proj = Linear(mlp_ratio * dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        h = self.attn_norm(x)
        q, k, v = (
            p(h).view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, L, D))
        h = self.mlp_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class BBTNeutron(nn.Module):
    input_kind = "bytes"

    def __init__(
        self,
        n_classes: int,
        width: int = 768,
        n_layers: int = 12,
        patch_size: int = 16,
        lm_head: bool = False,
        n_heads: int | None = None,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.embed_bytes = nn.Embedding(VOCAB_SIZE, width, padding_idx=PAD)
        self.patch_embed = nn.Sequential(Linear(patch_size * width, 4 * width), nn.ReLU(), Linear(4 * width, width))
        heads = n_heads or n_heads_for(width)
        self.layers = nn.ModuleList(DecoderBlock(width, heads) for _ in range(n_layers))
        self.norm = RMSNorm(width)
        self.head = Linear(width, n_classes)
        self.lm_head = (
            nn.Sequential(Linear(width, 2 * width), nn.ReLU(), Linear(2 * width, patch_size * VOCAB_SIZE))
            if lm_head
            else None
        )
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            with torch.no_grad():
                module.weight[PAD].zero_()

    def hidden(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, N, patch_size) int -> final hidden states (B, N, width)."""
        B, N, S = patches.shape
        first, embed = self.patch_embed[0], self.embed_bytes
        if cpu_linear.eager_cpu_fp32(embed.weight) and embed.max_norm is None and not hasattr(embed.weight, "ds_id"):
            # (ds_id: a ZeRO-3 parameter, whole only inside its own module's forward)
            n = N + _row_padding(B, N)  # appended PAD patches: causal attention, so no real position sees them
            idx = F.pad(patches.long(), (0, 0, 0, n - N), value=PAD)
            h = _BytePatchEmbed.apply(idx.reshape(B * n, S), embed.weight, first.weight, first.bias, embed.padding_idx)
            h = self.patch_embed[2](self.patch_embed[1](h.view(B, n, -1)))
        else:
            h = self.patch_embed(self.embed_bytes(patches.long()).reshape(B, N, -1))
        cos, sin = rope_tables(h.shape[1], self.layers[0].head_dim, h.device)
        for layer in self.layers:
            h = layer(h, cos, sin)
        return self.norm(h[:, :N])

    def forward(self, patches: torch.Tensor, patch_mask: torch.Tensor, return_lm: bool = False, **_):
        """patches (B, N, S), patch_mask (B, N) bool -> logits (B, n_classes) [and LM logits (B, N, S, 257)]."""
        h = self.hidden(patches)
        last = (patch_mask.long().sum(dim=1) - 1).clamp(min=0)
        logits = self.head(h[torch.arange(h.shape[0], device=h.device), last])
        if not return_lm:
            return logits
        if self.lm_head is None:
            raise ValueError("this BBT-Neutron was built without an LM head (model option lm_head: true)")
        B, N, _ = h.shape
        return logits, self.lm_head(h).view(B, N, self.patch_size, VOCAB_SIZE)


def build(spec, width: int, n_classes: int, n_features: int, options) -> BBTNeutron:
    """The catalog's builder (``options``: ``catalog.BBTNeutronOptions``)."""
    return BBTNeutron(
        n_classes,
        width=width,
        n_layers=options.n_layers or spec.depth(width),
        patch_size=options.tokenizer.patch_size,
        lm_head=options.lm_head,
        n_heads=spec.heads(width),
    )

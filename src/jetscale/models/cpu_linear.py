"""A linear layer that runs CPU fp32 products through oneDNN's inner product.

On this study's CPUs (AMD EPYC) MKL's sgemm takes its non-Intel path, about half the core's fp32 rate, and
oneDNN's fp32 inner product runs near it, with the same products. :func:`linear` is ``F.linear(x, w, bias)``
with the large CPU fp32 products routed through oneDNN; everywhere else (GPU, autocast, the FLOP counter, export,
torch.compile) it is plain ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ROW_BLOCK = 512  # oneDNN products take a row count rounded up to this: a few cached kernels, not one per batch


def eager_cpu_fp32(*tensors: torch.Tensor) -> bool:
    """Whether a CPU fast path may run: every tensor fp32 on CPU, eager (not traced or compiled), no autocast, no
    dispatch mode (the FLOP counter counts the plain ops)."""
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled("cpu")
        and not is_in_torch_dispatch_mode()
    )


def _onednn_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, post: str = "none") -> torch.Tensor:
    """x (M, K) · Wᵀ (+ b), then the post-op ``post`` ("none" | "relu", fused into the product's output pass),
    with M padded by zero rows to a multiple of ``ROW_BLOCK`` (oneDNN builds a kernel per shape)."""
    m = x.shape[0]
    pad = -m % ROW_BLOCK
    if pad:  # one copy and a zeroed tail (F.pad would also fill the whole buffer first)
        padded = x.new_empty(m + pad, x.shape[1])
        padded[:m] = x
        padded[m:].zero_()
        x = padded
    return torch.ops.mkldnn._linear_pointwise(x, w, b, post, [], "")[:m]


class _OneDnnLinear(torch.autograd.Function):
    """x (M, K) -> x·Wᵀ (+ b) through oneDNN's fp32 inner product (exact fp32, not a reduced-precision mode). On
    this study's CPUs MKL's sgemm runs at about half the core's fp32 rate (its AVX2 path on AMD) and oneDNN near
    it; the forward and the input gradient are oneDNN products, the weight gradient (a long reduction, slower
    through oneDNN once transposed and padded) MKL's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return _onednn_linear(x, w, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = _onednn_linear(grad, w.t().contiguous()) if ctx.needs_input_grad[0] else None
        grad_w = grad.t() @ x if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _takes_onednn(x: torch.Tensor, w: torch.Tensor, min_rows: int) -> bool:
    """Whether x (..., K) · Wᵀ goes through oneDNN: a CPU fp32 eager product of at least ``min_rows`` rows
    (smaller ones, e.g. per particle: MKL, no padding; compile traces plain products and picks its kernels)."""
    return _ONEDNN and x.numel() >= min_rows * x.shape[-1] and eager_cpu_fp32(x, w)


def linear(
    x: torch.Tensor,
    w: torch.Tensor,
    fast: bool = True,
    bias: torch.Tensor | None = None,
    min_rows: int = 8 * ROW_BLOCK,
) -> torch.Tensor:
    """``F.linear(x, w, bias)`` over the last axis; on CPU in fp32 (no autocast) through oneDNN when ``fast``
    (the traceable padded path passes False: export sees plain ``F.linear``) and the product has at least
    ``min_rows`` rows (fewer: MKL, no padding)."""
    if not (fast and _takes_onednn(x, w, min_rows)):
        return F.linear(x, w, bias)
    shape = x.shape
    return _OneDnnLinear.apply(x.reshape(-1, shape[-1]), w, bias).view(*shape[:-1], w.shape[0])


def inference_linear_relu(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, min_rows: int = 8 * ROW_BLOCK):
    """``relu(F.linear(x, w, bias))`` over the last axis, without autograd (scoring): through oneDNN with the ReLU
    fused into the product where :func:`linear` would take oneDNN, else the plain ops."""
    if not _takes_onednn(x, w, min_rows):
        return F.linear(x, w, bias).relu_()
    shape = x.shape
    return _onednn_linear(x.reshape(-1, shape[-1]), w, bias, "relu").view(*shape[:-1], w.shape[0])

"""Dropout whose noise is drawn as uniform numbers on CPU.

``F.dropout`` on CPU draws its mask with ``bernoulli_``, about 4.3 ns an element on this study's cores; a uniform
draw compared with the keep probability is the same Bernoulli(1 - p) mask (to the 2⁻²⁴ resolution of a float32
uniform) at about 2 ns, and ParT's blocks draw ~370k of them a training step. Both of ParT's layouts draw
through :func:`dropout_noise` in the padded (B, P, C) shape, so the real-particle and the padded path see the same
draws. On a GPU ``F.dropout`` (one fused kernel) is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dropout_noise(shape: tuple[int, ...], p: float, ref: torch.Tensor) -> torch.Tensor:
    """The scaled mask of inverted dropout, (u < 1 - p) / (1 - p) with u uniform in [0, 1), in ref's dtype. The
    uniforms are float32 whatever that dtype: bfloat16 ones, rounded to a 2⁻⁸ grid, would keep 0.8985 of the
    elements at p = 0.1."""
    keep = 1.0 - p
    return torch.rand(shape, dtype=torch.float32, device=ref.device).lt_(keep).to(ref.dtype).div_(keep)


def uniform_dropout(t: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(t, p, training)``, its CPU mask drawn by :func:`dropout_noise`."""
    if not training or p == 0 or p == 1 or t.device.type != "cpu":
        return F.dropout(t, p, training)
    return t * dropout_noise(tuple(t.shape), p, t)

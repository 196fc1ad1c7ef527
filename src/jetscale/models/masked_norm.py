"""BatchNorm over the real rows of a padded tensor, with shapes that do not depend on the data.

The CPU paths of ParticleNet and ParT carry only real particles (and real pairs), a list whose length depends on
the batch; on a GPU and under ``torch.compile`` with static buckets that length means a host sync (``nonzero``)
and a new graph per batch. The padded paths carry every slot instead. In training their BatchNorm must still see
the real rows alone: :func:`masked_batch_norm` takes its statistics from the rows a mask keeps, so the padded
path computes what the real-row path computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_batch_norm(x: torch.Tensor, keep: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``bn`` over the last (channel) axis of ``x`` (..., C), its training statistics taken over the rows where
    ``keep`` (...) is true, and its running statistics updated from them as ``F.batch_norm`` would from those rows
    alone (unbiased variance, ``bn.momentum``). In eval mode the running statistics, as ``F.batch_norm``. Rows
    outside ``keep`` are normalised too, with the same statistics; the caller ignores them.

    Computed in float32 at least and returned in ``x``'s dtype, as BatchNorm's own kernels do under bf16 autocast
    (sums in bf16 would lose the statistics' precision); compiled, the casts fuse into the reductions."""
    dtype = x.dtype
    x = x.to(torch.promote_types(dtype, torch.float32))
    shape, c = x.shape, x.shape[-1]
    flat = x.reshape(-1, c)
    if not bn.training and bn.track_running_stats:
        y = F.batch_norm(flat, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return y.view(shape).to(dtype)
    if bn.momentum is None:
        raise ValueError("masked_batch_norm: BatchNorm with momentum=None (cumulative average) is not supported")
    w = keep.reshape(-1, 1).to(x.dtype)
    n = w.sum()
    mean = (flat * w).sum(dim=0) / n
    centred = flat - mean
    var = (centred.square() * w).sum(dim=0) / n
    y = centred * torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        y = y * bn.weight + bn.bias
    if bn.training and bn.track_running_stats:
        with torch.no_grad():  # tensors only: no host sync for n
            m = bn.momentum
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp(min=1), alpha=m)
    return y.view(shape).to(dtype)

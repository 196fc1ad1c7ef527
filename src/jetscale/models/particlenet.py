"""ParticleNet (Qu & Gouskos 2020): EdgeConv blocks on dynamic k-NN graphs.

The first block's graph is built in (Δη, Δφ); later blocks rebuild it in the previous block's feature space.
Each EdgeConv block: edge features (x_i, x_j − x_i) → three 1×1 convolutions (BN, ReLU) → mean over the k
neighbours, plus a shortcut 1×1 convolution of x_i. Then channel-wise global average pooling over real
particles, FC(4·width) + ReLU + dropout, and the class logits. Width = channels of the first block; the
reference configuration is width 64: blocks (64,64,64)/(128,128,128)/(256,256,256), FC 256, k = 16.
Layer structure follows weaver-core's ``ParticleNet`` (use_fusion=False, use_fts_bn=True, use_counts=True), so
parameter counts agree with it exactly. Two implementation choices differ from weaver, for CPU speed: only real
particles are carried through the EdgeConv blocks (a flat (N, C) list; the padded layout is used only to find
neighbours within each jet), so the blocks' BatchNorm statistics are over real particles and edges only; and the
layers run channels-last as plain matrix products on the same weights (the large ones, over edges, through oneDNN
on CPU in fp32: the same products, about twice MKL's rate on AMD cores; see :func:`linear`).

The real-particle list's length depends on the batch (``nonzero``): on a GPU that is a host sync every step, and
under ``torch.compile`` with static length buckets a graph break and a new graph per batch. The padded path
(:meth:`ParticleNet.forward_padded`) carries every slot of the padded batch instead, with padded neighbours' edge
terms and padded particles' coordinates zeroed as the real-particle path has them, so no shape depends on the data;
in training each block's BatchNorms take their statistics from the rows the real-particle path normalises (the
edges of real particles, the real particles: :func:`~jetscale.models.masked_norm.masked_batch_norm`), so both
paths compute the same logits, gradients and running statistics. It runs on CUDA, under ``torch.compile``, with
``static_shapes`` (ONNX export) or where ``real_rows`` is False; eager CPU runs keep the real-particle path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cpu_linear import inference_linear_relu, linear
from .masked_norm import masked_batch_norm


def knn(points: torch.Tensor, k: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """points (B, P, C) -> (R, k) flat positions (in B·P) of each point's k nearest other points of its own jet.

    R = B·P, or the points at the flat positions ``rows`` only (the rest are never ranked). The indices carry no
    gradient: the graph is computed without autograd.
    """
    B, P, _ = points.shape
    with torch.no_grad():
        inner = -2 * torch.matmul(points, points.transpose(1, 2))
        sq = points.square().sum(dim=-1, keepdim=True)
        neg_dist = -sq - inner - sq.transpose(1, 2)
        k_eff = torch.sym_min(k + 1, P)  # sym_min: a traced particle axis stays symbolic
        if rows is None:
            idx = neg_dist.topk(k=k_eff, dim=-1)[1][:, :, 1:]
            return (idx + (torch.arange(B, device=points.device) * P).view(B, 1, 1)).reshape(B * P, -1)
        idx = neg_dist.view(B * P, P).index_select(0, rows).topk(k=k_eff, dim=-1)[1][:, 1:]
        return idx + (torch.div(rows, P, rounding_mode="floor") * P).unsqueeze(1)


def _bn_last(h: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm, relu: bool = False) -> torch.Tensor:
    """Apply a BatchNorm{1,2}d over the last (channel) axis of a channels-last tensor (same statistics), then
    with ``relu`` a ReLU in place (BatchNorm's backward needs its input only; in place on the op's own output,
    not on a view, so autograd copies nothing)."""
    shape = h.shape
    out = F.batch_norm(
        h.reshape(-1, shape[-1]),
        bn.running_mean,
        bn.running_var,
        bn.weight,
        bn.bias,
        bn.training or not bn.track_running_stats,
        bn.momentum,
        bn.eps,
    )
    return (out.relu_() if relu else out).view(shape)


def _folded(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm as y = x·scale + shift (per channel), to fold into the product before it."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    return scale, bn.bias - bn.running_mean * scale


class EdgeConvBlock(nn.Module):
    """EdgeConv with weaver-core's parameters (1×1 Conv2d weights, BatchNorm2d), computed channels-last.

    The first 1×1 convolution acts on (x_i, x_j − x_i); it is linear, so it is evaluated per point as
    (W_a − W_b)·x_i + W_b·x_j before gathering neighbours: the same result with k times fewer products. That
    per-point product and the shortcut's are one matrix product.
    """

    def __init__(self, k: int, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        self.k = k
        dims = [2 * in_channels, *channels]
        self.convs = nn.ModuleList(nn.Conv2d(dims[i], dims[i + 1], 1, bias=False) for i in range(len(channels)))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        if in_channels == channels[-1]:
            self.sc = None
        else:
            self.sc = nn.Conv1d(in_channels, channels[-1], 1, bias=False)
            self.sc_bn = nn.BatchNorm1d(channels[-1])

    def forward(self, x: torch.Tensor, nbr: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C) features of the N real particles of the batch; nbr (N, k) rows of their neighbours
        (value N = a padded neighbour, whose features are zero) -> (N, C_out). With ``real`` (N,) (the padded
        layout: every slot is a row; plain ``F.linear``, traceable): a neighbour's edge term counts only where it
        is real, as if zero, and the BatchNorms take their statistics from real rows only (the edges of real
        particles, k each, and the real particles), the rows the real-particle path normalises."""
        fast = real is None
        if fast and not self.training and not torch.is_grad_enabled():
            return self.score(x, nbr)
        n, c_in = x.shape
        weights = self._first_weights(c_in)
        c0 = weights[0].shape[0]
        proj = linear(x, torch.cat(weights), fast)  # (N, C0 | C0 | C_out): edge term, centre term, shortcut
        if fast:
            edge_proj = torch.cat([proj[:, :c0], proj.new_zeros(1, c0)])  # row N: a padded neighbour, zero
            h = edge_proj.index_select(0, nbr.reshape(-1)).view(n, -1, c0) + proj[:, c0 : 2 * c0].unsqueeze(1)
            h = _bn_last(h, self.bns[0], relu=True)
            for conv, bn in zip(self.convs[1:], self.bns[1:]):
                h = _bn_last(linear(h, conv.weight.flatten(1), fast), bn, relu=True)
            shortcut = x if self.sc is None else _bn_last(proj[:, 2 * c0 :], self.sc_bn)
            return F.relu(h.mean(dim=1) + shortcut)
        edge_proj = proj[:, :c0] * real.to(proj.dtype).unsqueeze(1)  # padded neighbours: zero features
        h = edge_proj.index_select(0, nbr.reshape(-1)).view(n, -1, c0) + proj[:, c0 : 2 * c0].unsqueeze(1)
        edges = real.unsqueeze(1).expand(n, h.shape[1])  # the edges of real particles
        h = masked_batch_norm(h, edges, self.bns[0]).relu()
        for conv, bn in zip(self.convs[1:], self.bns[1:]):
            h = masked_batch_norm(F.linear(h, conv.weight.flatten(1)), edges, bn).relu()
        shortcut = x if self.sc is None else masked_batch_norm(proj[:, 2 * c0 :], real, self.sc_bn)
        return F.relu(h.mean(dim=1) + shortcut)

    def _first_weights(self, c_in: int) -> list[torch.Tensor]:
        """The rows of the per-particle product (see the class docstring): [edge term W_b, centre term W_a − W_b],
        then the shortcut's weight if there is one."""
        w0 = self.convs[0].weight.flatten(1)
        w_centre, w_edge = w0[:, :c_in], w0[:, c_in:]
        return [w_edge, w_centre - w_edge] + ([] if self.sc is None else [self.sc.weight.flatten(1)])

    def score(self, x: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for scoring (eval mode, no autograd): each BatchNorm, now a fixed affine map, is folded
        into the product before it and the ReLU into the product's output pass, so the edges (k per particle)
        are not read and written again by BatchNorm and ReLU. The same function; rounding differs at ~1e-7."""
        n, c_in = x.shape
        edge_term, centre_term, *shortcut_weight = self._first_weights(c_in)
        c0 = edge_term.shape[0]
        scale, shift = _folded(self.bns[0])
        weights = [edge_term * scale[:, None], centre_term * scale[:, None]]
        biases = [torch.zeros_like(shift), shift]
        if self.sc is not None:
            sc_scale, sc_shift = _folded(self.sc_bn)
            weights.append(shortcut_weight[0] * sc_scale[:, None])
            biases.append(sc_shift)
        proj = linear(x, torch.cat(weights), bias=torch.cat(biases))  # (N, C0 | C0 | C_out), BatchNorms applied
        edge_proj = torch.cat([proj[:, :c0], proj.new_zeros(1, c0)])  # a padded neighbour's edge term is zero
        h = edge_proj.index_select(0, nbr.reshape(-1)).view(n, -1, c0).add_(proj[:, c0 : 2 * c0].unsqueeze(1))
        h = h.relu_()
        for conv, bn in zip(self.convs[1:], self.bns[1:]):
            scale, shift = _folded(bn)
            h = inference_linear_relu(h, conv.weight.flatten(1) * scale[:, None], shift)
        shortcut = x if self.sc is None else proj[:, 2 * c0 :]
        return F.relu(h.mean(dim=1) + shortcut)


class ParticleNet(nn.Module):
    input_kind = "particles"

    def __init__(self, n_features: int, n_classes: int, width: int = 64, k: int = 16, dropout: float = 0.1):
        super().__init__()
        self.bn_fts = nn.BatchNorm1d(n_features)
        blocks, c_in = [], n_features
        for mult in (1, 2, 4):
            c = width * mult
            blocks.append(EdgeConvBlock(k, c_in, (c, c, c)))
            c_in = c
        self.edge_convs = nn.ModuleList(blocks)
        self.fc = nn.Sequential(
            nn.Sequential(nn.Linear(c_in, 4 * width), nn.ReLU(), nn.Dropout(dropout)),
            nn.Linear(4 * width, n_classes),
        )
        self.real_rows: bool | None = None  # None: the real-particle path on eager CPU (use_real_rows), else padded
        self.static_shapes = False  # True: the padded path (ONNX export; also in training)

    def forward(self, x: torch.Tensor, points: torch.Tensor, mask: torch.Tensor, **_) -> torch.Tensor:
        """x (B, F, P), points (B, 2, P), mask (B, 1, P) -> logits (B, n_classes).

        On the real-particle path (:meth:`use_real_rows`) only real particles are processed (a flat (N, C) list);
        the padded (B, P, C) layout is used just to find each particle's k nearest neighbours within its own jet.
        """
        x, points, mask = self._at_least_k_plus_one_slots(x, points, mask)
        if not self.use_real_rows(x):
            return self.forward_padded(x, points, mask)
        B, _, P = x.shape
        valid = (mask[:, 0] > 0).reshape(-1)  # (B*P,)
        rows = torch.nonzero(valid).squeeze(1)  # positions in B*P of the N real particles
        n_real = rows.shape[0]
        pos2row = torch.full((B * P,), n_real, dtype=torch.long, device=x.device)
        pos2row[rows] = torch.arange(n_real, device=x.device)
        shift = (~valid).to(x.dtype).view(B, P, 1) * 1e9  # padded particles are nobody's neighbour
        h = self.bn_fts(x * mask).transpose(1, 2).reshape(B * P, -1).index_select(0, rows)
        pts = points.transpose(1, 2)
        for i, block in enumerate(self.edge_convs):
            if i > 0:
                pts = h.detach().new_zeros(B * P, h.shape[1]).index_copy_(0, rows, h.detach()).view(B, P, -1)
            nbr = pos2row[knn(pts + shift, block.k, rows)]  # (N, k)
            h = block(h, nbr)
        counts = mask.sum(dim=(1, 2)).clamp(min=1)
        jet = torch.div(rows, P, rounding_mode="floor")
        pooled = h.new_zeros(B, h.shape[1]).index_add(0, jet, h) / counts[:, None]
        return self.fc(pooled)

    def use_real_rows(self, x: torch.Tensor) -> bool:
        """The real-particle path: eager CPU runs (its fast path), unless ``self.real_rows`` says; the padded path
        with ``static_shapes``, on CUDA and under ``torch.compile`` (no data-dependent shapes, no host sync)."""
        if self.static_shapes:
            return False
        if self.real_rows is not None:
            return self.real_rows
        return x.device.type == "cpu" and not torch.compiler.is_compiling()

    def _at_least_k_plus_one_slots(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Pad the particle axis to at least k + 1 slots. In a narrower batch (e.g. an evaluation batch of short
        jets, sorted by length) the k-NN would find fewer than k neighbours and average over fewer edges than in
        a wider batch, so a jet's score would depend on the batch it is scored in; padded neighbours count as
        zero features, as in any batch with enough slots."""
        short = torch.sym_max(0, self.edge_convs[0].k + 1 - tensors[0].shape[-1])
        return tuple(F.pad(t, (0, short)) for t in tensors)

    def forward_padded(self, x: torch.Tensor, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with every slot of the padded batch as a row, no data-dependent shapes: the same logits,
        gradients and BatchNorm running statistics. Padded rows never reach real ones: they are nobody's neighbour
        unless a jet has fewer than k + 1 real particles, and then count as zero features; they are left out of
        every BatchNorm's statistics after the input's (which, as on the real-particle path, is over the whole
        padded batch, as weaver's) and out of the pooling."""
        B, _, P = x.shape
        valid = (mask[:, 0] > 0).reshape(-1)  # (B*P,)
        keep = valid.to(x.dtype).unsqueeze(1)
        shift = (~valid).to(x.dtype).view(B, P, 1) * 1e9
        h = self.bn_fts(x * mask).transpose(1, 2).reshape(B * P, -1)
        pts = points.transpose(1, 2)
        for i, block in enumerate(self.edge_convs):
            if i > 0:
                pts = (h.detach() * keep).view(B, P, -1)
            h = block(h, knn(pts + shift, block.k), real=valid)
        counts = mask.sum(dim=(1, 2)).clamp(min=1)
        pooled = (h * keep).view(B, P, -1).sum(dim=1) / counts[:, None]
        return self.fc(pooled)


def build(spec, width: int, n_classes: int, n_features: int, options) -> ParticleNet:
    """The catalog's builder (``options``: ``catalog.ParticleNetOptions``)."""
    return ParticleNet(n_features, n_classes, width=width, k=options.k)

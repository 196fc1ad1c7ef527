"""The real particles of a padded (B, P) batch as a flat list, their pairs, and attention groups of jets of similar
length: every index ParT's real-particle path needs, built once per batch on the host.

A batch is padded to its longest jet, but a typical jet has far fewer particles (real CEPC jets: median 22 of a
batch maximum around 52), so most of the padded (B, P, P) attention work is on padding. On CPU, ParT's eager path
therefore runs its per-particle layers on the N real particles only, its pair embedding on the real pairs only,
and its attention on a few groups of jets sorted by length, each group padded to its own longest jet. Which
particle attends to which is unchanged (its own jet's real particles), so the results equal the padded
computation's to float rounding; dropout noise is drawn in the padded (B, P, C) shape and gathered
(:meth:`Ragged.dropout`), so even the random stream is the same.

The layout is a function of the batch's jet lengths alone: one host read of the mask, then integer arithmetic in
numpy (this path is for eager CPU; compiled and GPU runs keep the padded layout with static shapes). Every tensor
the blocks gather with is built here, once per batch: the block's ops are then a handful of large ``index_select``
calls instead of many small indexing kernels.

Attention layout: group g holds ``sizes[g]`` jets padded to ``lengths[g]`` particles; its queries, keys and values
are ``(H·size, head_dim, length)`` (head-major batches, each head's vectors as columns: the matrix products of a
few-dimensional head then run in their fast orientation on CPU), and its pair bias ``(H·size, length, length)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .dropout import dropout_noise

MAX_GROUPS = 4
# Per-group overhead in units of one attention-matrix entry per head (jets × length²): a group costs a few
# extra small kernels per block, about the time of this many score entries at the default widths (measured on
# one CPU core; the grouping is a speed choice only, it does not change the results).
GROUP_OVERHEAD = 3000


@dataclass
class Ragged:
    """Where the N real particles of a padded batch sit and how the attention groups them.

    ``rows`` (N,): their positions b·P + p, jet by jet; ``starts`` (B + 1,): where each jet's particles start in
    that list; group g holds ``sizes[g]`` jets padded to ``lengths[g]``, ``members[g]`` (numpy) the jets in
    slot order. Pairs: every real pair of a jet once, self-pairs included, ordered by jet then (i, j) with
    i ≥ j by rank (``pair_i``/``pair_j``: indices into the particle list).
    """

    B: int
    P: int
    rows: torch.Tensor
    sizes: list[int]
    lengths: list[int]
    members: list[np.ndarray]
    lens: np.ndarray  # (B,) real particles per jet
    starts: np.ndarray  # (B + 1,)
    pair_starts: np.ndarray  # (B + 1,) where each jet's pairs start in the pair list
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, valid: torch.Tensor) -> Ragged:
        B, P = valid.shape
        device = valid.device
        v = valid.detach().to("cpu").numpy().astype(bool, copy=False)
        lens = v.sum(axis=1).astype(np.int64)
        starts = np.zeros(B + 1, dtype=np.int64)
        np.cumsum(lens, out=starts[1:])
        rows = np.flatnonzero(v.reshape(-1))
        order = np.argsort(lens, kind="stable")
        sizes = _group_sizes(lens[order].tolist())
        bounds = np.cumsum([0, *sizes])
        members = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        lengths = [max(1, int(lens[m[-1]])) for m in members]
        counts = lens * (lens + 1) // 2
        pair_starts = np.zeros(B + 1, dtype=np.int64)
        np.cumsum(counts, out=pair_starts[1:])
        ti, tj = np.tril_indices(max(1, int(lens.max(initial=0))))  # i-major: a jet of l particles = the first l(l+1)/2
        jet = np.repeat(np.arange(B), counts)
        local = np.arange(int(pair_starts[-1])) - pair_starts[jet]
        first = starts[jet]

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)

        return cls(B, P, t(rows), sizes, lengths, members, lens, starts, pair_starts, t(first + ti[local]),
                   t(first + tj[local]))  # fmt: skip

    @property
    def n(self) -> int:
        """Real particles."""
        return int(self.starts[-1])

    @property
    def groups(self) -> list[tuple[int, int]]:
        """(size, length) of each attention group."""
        return list(zip(self.sizes, self.lengths))

    @property
    def n_pairs(self) -> int:
        return int(self.pair_starts[-1])

    def _tensor(self, key, build) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(np.ascontiguousarray(build(), dtype=np.int64)).to(self.rows.device)
        return self._cache[key]

    def _slots(self, g: int) -> np.ndarray:
        """(size, length) particle-list index of each slot of group g; ``n`` (one extra zero row) on padding."""
        m, L = self.members[g], self.lengths[g]
        ar = np.arange(L)
        return np.where(ar < self.lens[m][:, None], self.starts[m][:, None] + ar, self.n)

    # -- particles --------------------------------------------------------------------------------------------
    def flatten(self, t: torch.Tensor) -> torch.Tensor:
        """(B, P, C) padded -> (N, C) real particles."""
        return t.reshape(self.B * self.P, -1).index_select(0, self.rows)

    def pad(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C) real particles -> (B, P, C), zero on padding."""
        out = t.new_zeros(self.B * self.P, t.shape[-1]).index_copy(0, self.rows, t)
        return out.view(self.B, self.P, -1)

    def grouped(self, t: torch.Tensor) -> list[torch.Tensor]:
        """(N, C) -> per group (size, length, C), zero rows on padding."""
        padded = torch.cat([t, t.new_zeros(1, t.shape[-1])])
        index = self._tensor("slots", lambda: np.concatenate([self._slots(g).ravel() for g in range(len(self.sizes))]))
        parts = padded.index_select(0, index).split([s * L for s, L in zip(self.sizes, self.lengths)])
        return [p.view(s, L, -1) for p, s, L in zip(parts, self.sizes, self.lengths)]

    def ungrouped(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per group (size, length, C) -> (N, C), the padding rows dropped."""

        def build():
            slots = np.concatenate([self._slots(g).ravel() for g in range(len(self.sizes))])
            pos = np.empty(self.n, dtype=np.int64)
            real = slots < self.n
            pos[slots[real]] = np.flatnonzero(real)
            return pos

        return torch.cat([p.reshape(-1, p.shape[-1]) for p in parts]).index_select(0, self._tensor("pos", build))

    def dropout(self, t: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        """``uniform_dropout`` of the padded (B, P, C) tensor, restricted to the real rows: the noise drawn in the
        padded shape, so the same random stream as the padded path."""
        if not training or p == 0:
            return t
        if p == 1:
            return F.dropout(t, p, training)
        return t * self.flatten(dropout_noise((self.B, self.P, t.shape[-1]), p, t))

    # -- attention --------------------------------------------------------------------------------------------
    def qkv_index(self, heads: int, head_dim: int) -> torch.Tensor:
        """Index into the flattened (N + 1, 3·H·hd) projections (last row zeros) that lays out every group's
        queries, keys and values as (3, H·size, hd, length), the groups one after another."""

        def build():
            d = heads * head_dim
            c, h, e = np.ogrid[0:3, 0:heads, 0:head_dim]
            channel = (c * d + h * head_dim + e)[:, :, None, :, None]  # (3, H, 1, hd, 1)
            return np.concatenate(
                [(channel + (self._slots(g) * 3 * d)[None, None, :, None, :]).ravel() for g in range(len(self.sizes))]
            )

        return self._tensor(("qkv", heads, head_dim), build)

    def qkv_sizes(self, heads: int, head_dim: int) -> list[int]:
        return [3 * heads * s * head_dim * L for s, L in zip(self.sizes, self.lengths)]

    def out_index(self, heads: int, head_dim: int) -> torch.Tensor:
        """Index into the concatenated per-group attention outputs (H·size, hd, length) that gives (N, H·hd)."""

        def build():
            group_of, slot_of = np.empty(self.B, dtype=np.int64), np.empty(self.B, dtype=np.int64)
            for g, m in enumerate(self.members):
                group_of[m], slot_of[m] = g, np.arange(len(m))
            sizes, lengths = np.asarray(self.sizes), np.asarray(self.lengths)
            offsets = np.concatenate([[0], np.cumsum(heads * sizes * head_dim * lengths)])
            jet = np.repeat(np.arange(self.B), self.lens)
            rank = np.arange(self.n) - self.starts[jet]
            g = group_of[jet]
            h, e = np.ogrid[0:heads, 0:head_dim]
            s, L = sizes[g][:, None, None], lengths[g][:, None, None]
            index = offsets[g][:, None, None] + ((h[None] * s + slot_of[jet][:, None, None]) * head_dim + e) * L
            return (index + rank[:, None, None]).ravel()

        return self._tensor(("out", heads, head_dim), build)

    def class_index(self, heads: int, head_dim: int, neg: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Class attention's keys and values per jet: the jet's class token, then its particles, then padding.
        -> the index into the flattened rows [class tokens (B); particles (N); a zero row] × (2·H·hd) channels
        that lays them out (B, 2, H, hd, 1 + Lmax), and the additive mask (B, 1, 1 + Lmax): 0 on real keys,
        ``neg`` on padding."""
        key = ("class", heads, head_dim, neg)
        if key not in self._cache:
            L = int(self.lens.max(initial=0))
            r = np.arange(L)
            real = r < self.lens[:, None]
            rows = np.where(real, self.B + self.starts[:-1, None] + r, self.B + self.n)
            rows = np.concatenate([np.arange(self.B)[:, None], rows], axis=1)  # (B, 1 + L)
            d2 = 2 * heads * head_dim
            c, h, e = np.ogrid[0:2, 0:heads, 0:head_dim]
            channel = (c * heads * head_dim + h * head_dim + e)[None, :, :, :, None]
            index = (rows[:, None, None, None, :] * d2 + channel).ravel()
            mask = np.concatenate([np.ones((self.B, 1), dtype=bool), real], axis=1)[:, None, :]
            device = self.rows.device
            self._cache[key] = (
                torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)).to(device),
                torch.where(torch.from_numpy(mask).to(device), 0.0, neg),
            )
        return self._cache[key]

    def bias_index(self, g: int) -> torch.Tensor:
        """Columns of the (H, n_pairs + 2) pair-bias table (column n_pairs: 0, the last: the padded-key value)
        that give group g's bias (H, size·length·length) = (H·size, length, length): a pair's value at both
        (i, j) and (j, i), 0 where the query is padding, the padded-key value where the key is."""

        def build():
            n, L, m = self.n_pairs, self.lengths[g], self.members[g]
            a, c = np.ogrid[0:L, 0:L]
            hi, lo = np.maximum(a, c), np.minimum(a, c)
            k = self.pair_starts[m][:, None, None] + (hi * (hi + 1) // 2 + lo)[None]  # (size, L, L)
            length = self.lens[m][:, None, None]
            k[np.broadcast_to(a[None] >= length, k.shape)] = n
            k[np.broadcast_to(c[None] >= length, k.shape)] = n + 1
            return k.ravel()

        return self._tensor(("bias", g), build)


def _group_sizes(sorted_lengths: list[int]) -> list[int]:
    """Split jets sorted by length into up to MAX_GROUPS runs of equal count, whichever number of runs costs
    least: Σ size·length² + GROUP_OVERHEAD per run."""
    n = len(sorted_lengths)
    best, best_sizes = None, [n]
    for k in range(1, min(MAX_GROUPS, n) + 1):
        bounds = [round(n * q / k) for q in range(k + 1)]
        sizes = [bounds[q + 1] - bounds[q] for q in range(k)]
        cost = sum(s * max(1, sorted_lengths[bounds[q + 1] - 1]) ** 2 for q, s in enumerate(sizes)) + GROUP_OVERHEAD * k
        if best is None or cost < best:
            best, best_sizes = cost, sizes
    return best_sizes

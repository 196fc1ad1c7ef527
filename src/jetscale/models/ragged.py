"""The real particles of a padded (B, P) batch as a flat list, and attention groups of jets of similar length.

A batch is padded to its longest jet, but a typical jet has far fewer particles (real CEPC jets: median 22 of a
batch maximum around 52), so most of the padded (B, P, P) attention work is on padding. On CPU, ParT's eager path
therefore runs its per-particle layers on the N real particles only, and its attention on a few groups of jets
sorted by length, each group padded to its own longest jet. Which particle attends to which is unchanged (its own
jet's real particles), so the results equal the padded computation's to float rounding; dropout noise is drawn in
the padded (B, P, C) shape and gathered (:meth:`Ragged.dropout`), so even the random stream is the same.

The grouping is a function of the batch's jet lengths alone (the host reads them: this path is for eager CPU;
compiled and GPU runs keep the padded layout with static shapes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_GROUPS = 4
# Per-group overhead in units of one attention-matrix entry per head (jets × length²): a group costs a few dozen
# extra small kernels per block, about the time of this many score entries at the default widths (measured on
# one CPU core; the grouping is a speed choice only, it does not change the results).
GROUP_OVERHEAD = 3000


@dataclass
class Ragged:
    """Where the N real particles of a padded batch sit (``rows``: their positions b·P + p) and how the
    attention groups them: group g holds ``sizes[g]`` jets padded to ``lengths[g]``; ``gather[g]`` (size·length,)
    indexes the flat particle list with one extra zero row (index N) for padding; ``pos`` (N,) is each
    particle's place in the groups' concatenation."""

    B: int
    P: int
    rows: torch.Tensor
    sizes: list[int]
    lengths: list[int]
    gather: list[torch.Tensor]
    pos: torch.Tensor
    group_of: torch.Tensor  # (B,) group of each jet
    slot_of: torch.Tensor  # (B,) its place within the group
    rank: torch.Tensor  # (B, P) index of each particle among its jet's real ones (valid entries)
    jet_len: torch.Tensor  # (B,) real particles per jet

    @classmethod
    def of(cls, valid: torch.Tensor) -> Ragged:
        B, P = valid.shape
        device = valid.device
        flat = valid.reshape(-1)
        rows = flat.nonzero().squeeze(1)
        n = rows.shape[0]
        jet_len = valid.sum(dim=1)
        lens = jet_len.tolist()
        order = sorted(range(B), key=lens.__getitem__)
        sizes = _group_sizes([lens[b] for b in order])
        group_of, slot_of = [0] * B, [0] * B
        lengths, start = [], 0
        for g, size in enumerate(sizes):
            members = order[start : start + size]
            for s, b in enumerate(members):
                group_of[b], slot_of[b] = g, s
            lengths.append(max(1, lens[members[-1]]))
            start += size
        group_t = torch.tensor(group_of, device=device)
        slot_t = torch.tensor(slot_of, device=device)
        rank = valid.long().cumsum(dim=1) - 1
        offsets = torch.tensor([0] + [s * L for s, L in zip(sizes, lengths)], device=device).cumsum(0)
        lengths_t = torch.tensor(lengths, device=device)
        jet = torch.div(rows, P, rounding_mode="floor")
        g = group_t[jet]
        pos = offsets[g] + slot_t[jet] * lengths_t[g] + rank.reshape(-1)[rows]
        everything = torch.full((int(offsets[-1]),), n, dtype=torch.long, device=device)
        everything[pos] = torch.arange(n, device=device)
        gather = list(everything.split([s * L for s, L in zip(sizes, lengths)]))
        return cls(B, P, rows, sizes, lengths, gather, pos, group_t, slot_t, rank, jet_len)

    def flatten(self, t: torch.Tensor) -> torch.Tensor:
        """(B, P, C) padded -> (N, C) real particles."""
        return t.reshape(self.B * self.P, -1)[self.rows]

    def pad(self, t: torch.Tensor) -> torch.Tensor:
        """(N, C) real particles -> (B, P, C), zero on padding."""
        out = t.new_zeros(self.B * self.P, t.shape[-1]).index_copy(0, self.rows, t)
        return out.view(self.B, self.P, -1)

    def grouped(self, t: torch.Tensor) -> list[torch.Tensor]:
        """(N, C) -> per group (size, length, C), zero rows on padding."""
        padded = torch.cat([t, t.new_zeros(1, t.shape[-1])])
        return [padded[idx].view(s, L, -1) for idx, s, L in zip(self.gather, self.sizes, self.lengths)]

    def ungrouped(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per group (size, length, C) -> (N, C), the padding rows dropped."""
        return torch.cat([p.reshape(-1, p.shape[-1]) for p in parts])[self.pos]

    def dropout(self, t: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        """``F.dropout`` of the padded (B, P, C) tensor, restricted to the real rows: the same noise draw (CPU
        dropout multiplies by ``empty_like(x).bernoulli_(1 - p) / (1 - p)``), so the same random stream."""
        if not training or p == 0:
            return t
        if p == 1:
            return F.dropout(t, p, training)
        noise = torch.empty(self.B, self.P, t.shape[-1], dtype=t.dtype, device=t.device).bernoulli_(1 - p)
        noise.div_(1 - p)
        return t * self.flatten(noise)

    def place_pairs(self, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor, values: torch.Tensor, neg: float):
        """Per-group attention bias (size·H, length, length): ``values`` (n, H) at the pairs (b, i, j) of padded
        positions, 0 at other real pairs and on padded queries, ``neg`` on padded keys."""
        H = values.shape[1]
        sizes, lengths = self.sizes, self.lengths
        blocks = []
        for g, (s, L) in enumerate(zip(sizes, lengths)):
            members_len = torch.zeros(s, dtype=torch.long, device=values.device)
            members_len[self.slot_of[self.group_of == g]] = self.jet_len[self.group_of == g]
            key_ok = torch.arange(L, device=values.device) < members_len[:, None]
            blocks.append(torch.where(key_ok, 0.0, neg).to(values.dtype)[:, None, None, :].expand(s, H, L, L))
        flat = torch.cat([blk.reshape(-1) for blk in blocks])
        starts = torch.tensor([0] + [s * H * L * L for s, L in zip(sizes, lengths)], device=values.device).cumsum(0)
        lengths_t = torch.tensor(lengths, device=values.device)
        g = self.group_of[b]
        L = lengths_t[g]
        base = starts[g] + self.slot_of[b] * (H * L * L) + self.rank[b, i] * L + self.rank[b, j]  # head 0
        heads = torch.arange(H, device=values.device)
        index = base[:, None] + heads * (L * L)[:, None]
        flat.index_put_((index.reshape(-1),), values.reshape(-1))
        parts = flat.split([s * H * L * L for s, L in zip(sizes, lengths)])
        return [part.view(s * H, L, L) for part, s, L in zip(parts, sizes, lengths)]


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

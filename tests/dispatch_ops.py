"""Which aten ops a computation runs: for the tests that a static-shape path has no data-dependent op."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ops whose output shape depends on the values (a host sync on a GPU, a graph break under torch.compile)
DATA_DEPENDENT = {
    "nonzero", "nonzero_static", "masked_select", "unique", "_unique2", "unique_consecutive", "_local_scalar_dense"
}  # fmt: skip


class OpNames(TorchDispatchMode):
    """The aten ops run under it, and whether any indexing took a boolean mask."""

    def __init__(self):
        super().__init__()
        self.names, self.bool_index = set(), False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        if func.overloadpacket in (torch.ops.aten.index, torch.ops.aten.index_put, torch.ops.aten.index_put_):
            indices = args[1] if len(args) > 1 else ()
            self.bool_index |= any(t is not None and t.dtype == torch.bool for t in indices)
        return func(*args, **(kwargs or {}))

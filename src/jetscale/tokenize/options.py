"""Options of the BBT byte tokenizer (config ``models.bbt_neutron.tokenizer``): the defaults live here.

Torch- and numpy-free, so config validation can check them; :class:`jetscale.tokenize.bytes.ByteTokenizer`
is this dataclass plus the encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TokenizerOptions:
    mode: Literal["native", "text"] = "native"
    dtype: Literal["float32", "float16"] = "float32"  # native mode: bytes of each value
    patch_size: int = 16  # bytes per patch (one model position)
    max_bytes: int = 1024  # sequence length before rounding up to whole patches
    precision: int = 4  # text mode: digits after the decimal point

    def __post_init__(self):
        if self.mode not in ("native", "text"):
            raise ValueError(f"mode: {self.mode!r} is not allowed; allowed values: ['native', 'text']")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype: {self.dtype!r} is not allowed; allowed values: ['float32', 'float16']")
        if self.patch_size < 1:
            raise ValueError(f"patch_size: {self.patch_size} must be at least 1")
        if self.max_bytes < 2 + self.patch_size:
            raise ValueError(f"max_bytes: {self.max_bytes} must be at least patch_size + 2 ({self.patch_size + 2})")
        if self.precision < 0:
            raise ValueError(f"precision: {self.precision} must be at least 0")

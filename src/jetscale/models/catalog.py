"""Torch-free facts about the models: names, default learning rates, and which widths are valid.

Config validation and the Snakemake DAG import this module, so it must stay cheap (no torch import).
"""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("bbt_neutron", "particlenet", "part")

DEFAULT_LR: dict[str, float] = {"bbt_neutron": 1e-4, "particlenet": 1e-3, "part": 1e-3}


def width_problem(model: str, width: int) -> str | None:
    """Return why ``width`` is not valid for ``model`` (None when it is valid)."""
    if model not in MODEL_NAMES:
        return f"unknown model {model!r}; known models: {', '.join(MODEL_NAMES)}"
    if width < 8:
        return f"width {width} is below the minimum of 8"
    if model in ("bbt_neutron", "part") and width % 8:
        return f"width {width} must be a multiple of 8 for {model} (attention heads)"
    return None

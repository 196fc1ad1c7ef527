"""Torch-free facts about the models: names, default learning rates, and which widths are valid.

Config validation and the Snakemake DAG import this module, so it must stay cheap (no torch import).
Width rules match ``jetscale.models.registry`` (where width → architecture is documented).
"""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = ("bbt_neutron", "particlenet", "part")

DEFAULT_LR: dict[str, float] = {"bbt_neutron": 1e-4, "particlenet": 1e-3, "part": 1e-3}

# Bumped when a model's computation changes, so that its finished cells get a new settings hash and are
# retrained (the other models' cells keep theirs). part 2: aligned with weaver-core's ParticleTransformer
# (self-pairs in the pair bias, pair BatchNorm over real pairs only, no GELU on the bias, raw class-token query).
MODEL_REVISION: dict[str, int] = {"part": 2}

# The width at which each model is its published reference configuration.
REFERENCE_WIDTH: dict[str, int] = {"particlenet": 64, "part": 128, "bbt_neutron": 768}


def width_problem(model: str, width: int) -> str | None:
    """Return why ``width`` is not valid for ``model`` (None when it is valid)."""
    if model not in MODEL_NAMES:
        return f"unknown model {model!r}; known models: {', '.join(MODEL_NAMES)}"
    if width < 8:
        return f"width {width} is below the minimum of 8"
    if model == "part" and width % 8:
        return f"width {width} must be a multiple of 8 for part (8 attention heads)"
    if model == "bbt_neutron" and width % 4:
        return f"width {width} must be a multiple of 4 for bbt_neutron (two heads of even size for RoPE)"
    return None

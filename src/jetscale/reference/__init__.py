"""Published Jet Origin Identification numbers at CEPC, shipped as reference data (``joi_cepc.json``).

ParticleNet: the PRL's 11×11 confusion matrix and per-flavor numbers (Liang et al., PRL 132 (2024) 221802; CEPC
full simulation, ~600k training jets per class, as the paper states); ParT: the authors' repository figure
(ZHUYFgit/CEPC-Jet-Origin-Identification), which does not state its sample. Each entry is labelled as its source
labels it (``overlay``, ``sample``): nothing is called full simulation that its source does not call so.
They are drawn on the per-flavor and scaling figures and tabulated beside the study's
largest training set, but only for a study of the same 11 JoI classes with the same quark/antiquark pairs:
numbers for other classes would compare different tasks.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

JOI_FLAVORS: tuple[str, ...] = ("b", "c", "s", "u", "d")
OVERLAY_MODELS: tuple[str, ...] = ("particlenet", "part")  # the repository's second ParticleNet figure: table only


@functools.lru_cache(maxsize=1)
def _load() -> dict:
    return json.loads(resources.files("jetscale.reference").joinpath("joi_cepc.json").read_text())


def joi_reference() -> dict:
    """The shipped record (a copy): classes, sample, models.<name>.{label, source, flavors, ...}."""
    return json.loads(json.dumps(_load()))


def reference_for(cfg: dict) -> dict | None:
    """The JoI reference when the study's classes and flavor pairs are the 11 JoI ones, else None."""
    ref = _load()
    classes = list(cfg.get("classes", []))
    if sorted(classes) != sorted(ref["classes"]):
        return None
    pairs = {q: sorted(pair) for q, pair in (cfg.get("flavor_pairs") or {}).items()}
    if any(pairs.get(q) != sorted([q, f"{q}bar"]) for q in JOI_FLAVORS):
        return None
    return joi_reference()


def overlay_label(entry: dict) -> str:
    """The legend label of a published model, as its source describes it."""
    return entry["overlay"]

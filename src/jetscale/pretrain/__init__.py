"""Self-supervised pretraining of classifier backbones: the registry of methods.

Torch-free (config validation and the Snakemake DAG import it). A method's code lives in its own module,
imported only when a pretraining or fine-tuning job runs (:meth:`MethodSpec.load`). Each module provides

* ``build(model_name, width, n_features, n_classes, options, seed, input_names=None) -> Objective`` (see
  :mod:`.base`; ``input_names``: the model-input columns under the model's input spec, None = Table-1), and
* optionally ``evaluate(objective, held_out_arrays, seed, n_samples) -> dict``: what a generative backbone's samples are
  worth (recorded as ``quality`` in ``pretrain.json``; vq_gpt: token quality and Wasserstein-1 distances), and
* optionally ``prepare(objective, unlabelled_arrays, seed) -> dict``: a fit-once step on unlabelled data
  (a K-means codebook, a VQ-VAE) that runs before the gradient loop; what it fits lives in the objective's
  state dict, so it is checkpointed with it.

``backbone`` names the catalog model whose from-scratch series a method is compared with: a fine-tuning cell
``model~<backbone>/.../pretrain~<method>`` builds that model and loads the pretrained backbone into it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

NONE = "none"  # the pretrain-axis value of from-scratch cells
FINETUNE_MODES: tuple[str, ...] = ("full", "frozen", "catchup")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    backbone: str  # catalog model the backbone belongs to (and whose from-scratch series it is compared with)
    module: str  # importable module with build() [and prepare()]
    summary: str
    # True: every option of the method is an option of its catalog model (config validation refuses other keys)
    model_options_only: bool = False

    def available(self) -> bool:
        """Whether the method's module is installed (libraries land one by one)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "next_patch",
            "bbt_neutron",
            "jetscale.pretrain.next_patch",
            "BBT-Neutron: predict the bytes of the next patch (a whole-patch shift), loss on non-pad bytes",
        ),
        MethodSpec(
            "mpm",
            "part",
            "jetscale.pretrain.mpm",
            "masked particle modelling (MPMv2) on ParT's particle encoder; masked particles dropped from it",
        ),
        MethodSpec(
            "vq_gpt",
            "vq_gpt",
            "jetscale.pretrain.vq_gpt",
            "OmniJet-alpha: VQ-VAE particle tokens, then a GPT with next-token cross-entropy",
            model_options_only=True,
        ),
    )
}


def method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown pretraining method {name!r}; known methods: {list(METHODS)}") from None

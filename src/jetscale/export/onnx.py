"""`jetscale export --cell ID --format onnx`: a trained cell's network as ONNX plus a JSON sidecar.

The ONNX graph takes the model's input arrays by name (the input kind's arrays its ``forward`` names), with a
dynamic batch axis and a dynamic particle (or patch) axis, and returns ``probabilities`` (batch, classes): the
softmax of the logits, as jetscale's own predictions. The sidecar (``<cell>.onnx.json``) says how to make those
arrays without jetscale: the input spec with its statistics (feature order, transforms, centre and scale), the
array layout, for byte models the tokenization (mode, dtype, patch size, field order, special bytes), the
classes, the cell and its settings hash, and the largest probability difference between onnxruntime and torch
measured on a batch of the study's test jets at export time.

The weights are the cell's chosen ones (its best validation weights, as its predictions were made with), read
from ``checkpoint.pt`` (tensors only) of a finished run whose settings hash matches the config's; the input spec
and statistics are those its ``metrics.json`` recorded (for a fine-tuned cell, its backbone's pool statistics).

Exported through ``torch.export`` (``onnx``, ``onnxscript`` and ``onnxruntime``, pinned in
envs/requirements.txt, are optional at run time: a clear message says what is missing). ParticleNet and ParT
run on the lists of a batch's real particles and pairs in jetscale, and vq_gpt's tokenizer on its real
particles, shapes that depend on the data, which ``torch.export`` cannot follow; they are exported in their
``static_shapes`` mode: the padded computation with padding masked out (vq_gpt: every slot tokenized, a stable
pT order from pairwise comparisons since ONNX has no stable sort), the same logits (tested against the eager
path). BBT-Neutron is exported as it is; a model from the user's files is exported when ``torch.export`` can
trace its forward, and refused in one line naming the first problem when it cannot. The ``bdt`` baseline is not
a network and has no ONNX export here.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import JetscaleError
from ..grid import parse_cell_id
from ..io import atomic_path, write_json
from ..models import catalog
from ..settings import resolve_settings, settings_hash

OPSET = 18
VERIFY_JETS = 64
MISSING = "ONNX export needs the packages onnx, onnxscript and onnxruntime (pinned in envs/requirements.txt)"


def require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise JetscaleError(f"{MISSING}; {exc.name} is not installed") from None
    return onnxruntime


def export_cell(cfg: dict, cell_id: str, out: Path | None = None, splits: Path | None = None) -> dict:
    """Write ``<out>/<name>.onnx`` and its sidecar for the finished cell ``cell_id``; return the sidecar."""
    import torch

    from ..inputs.prepare import InputTransform
    from ..train.inputs import input_transform, load_split_inputs

    ort = require_onnx()
    root = paths.results_root(cfg)
    cell = parse_cell_id(cfg, cell_id)
    run = paths.run_dir(root, cell_id)
    settings = resolve_settings(cfg, cell)
    shash = settings_hash(settings)
    name = settings["model"]
    spec = catalog.get(name)
    metrics, weights = finished_run(run, cell_id, shash)

    splits = Path(splits or paths.splits_dir(root))
    options = dict(settings["model_options"] or {})
    if settings["training"].get("pretrain") and "next_patch" in spec.pretrain_heads:
        options["lm_head"] = True  # trained beside the classifier (its weights are in the state; not in the graph)
    if (
        "inputs" in metrics
    ):  # the input spec the run trained on, with its statistics (a fine-tuned cell: the backbone's)
        transform = InputTransform(tuple(metrics["inputs"]["features"])) if metrics["inputs"] else None
    elif "pretrain" in settings:
        raise JetscaleError(f"export: {run / paths.METRICS} does not record its input statistics; train it again")
    else:
        transform, _ = input_transform(settings.get("inputs"), splits, settings["n_train"])
    from ..data.splits import read_meta

    n_test = min(VERIFY_JETS, int(read_meta(splits)["sizes"]["test"]))
    sample = load_split_inputs(splits, "test", name, options, n=n_test, transform=transform)
    model = spec.build(settings["width"], len(settings["classes"]), sample.n_features, options)
    model.load_state_dict(weights)
    model.eval()
    static_shapes(model)
    batch = sample.tensors(slice(None))
    names = input_names(model, batch)
    wrapper = Probabilities(model, names).eval()
    args = tuple(batch[n] for n in names)

    out = Path(out or run / "export")
    target = out / f"{name}.onnx"
    kind = spec.inputs
    length = "patches" if kind.name == "bytes" else "particles"
    batch_dim = torch.export.Dim("batch", min=1)
    length_dim = torch.export.Dim(length, min=2)
    shapes = tuple({0: batch_dim, kind.length_axis % batch[n].ndim: length_dim} for n in names)
    program = trace(wrapper, args, (shapes,), names, name)
    with atomic_path(target) as tmp:
        program.save(str(tmp))
    # verify: onnxruntime vs torch on the test jets (batch and length other than traced ones included)
    worst = verify(ort, target, wrapper, sample, names)
    sidecar = {
        "format": "onnx",
        "file": target.name,
        "opset": OPSET,
        "cell_id": cell_id,
        "settings_hash": shash,
        "model": name,
        "width": settings["width"],
        "classes": list(settings["classes"]),
        "inputs": [array_doc(n, batch[n], kind.length_axis, length) for n in names],
        "output": {"name": "probabilities", "shape": ["batch", len(settings["classes"])], "dtype": "float32"},
        "input_spec": {**input_spec(transform), "statistics_from": (metrics.get("inputs") or {}).get("statistics")},
        "padding": {"n_particles": settings["n_particles"], "mask": "1 for a real particle, 0 for padding"},
        "verified": {"jets": sample.n, "max_abs_probability_difference": worst, "runtime": "onnxruntime CPU"},
    }
    if kind.name == "bytes":
        sidecar["tokenization"] = tokenization(options)
    if "pretrain" in settings:
        sidecar["fine_tuned_from"] = {"backbone_id": metrics.get("backbone_id"), **settings["pretrain"]}
    if spec.source is not None:
        sidecar["model_source"] = {"path": spec.source.path, "sha256": spec.source.sha256}
    write_json(out / f"{name}.onnx.json", sidecar)
    return sidecar


def finished_run(run: Path, cell_id: str, shash: str) -> tuple[dict, dict]:
    """The metrics record and the best weights of the finished run ``run`` trained with settings hash ``shash``
    (one-line errors)."""
    from ..train.checkpoint import CHECKPOINT_NAME, load_checkpoint

    metrics_path = run / paths.METRICS
    if not metrics_path.is_file():
        raise JetscaleError(f"export: {cell_id} has not finished training (no {metrics_path})")
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("settings_hash") != shash:
        raise JetscaleError(
            f"export: {run} was trained with settings hash {metrics.get('settings_hash')!r}, the config's is "
            f"{shash!r}; train the cell again (snakemake) before exporting it"
        )
    saved = load_checkpoint(run / CHECKPOINT_NAME, shash)
    if saved is None:
        raise JetscaleError(f"export: {run / CHECKPOINT_NAME}: no usable checkpoint of this run")
    return metrics, saved.get("best_state") or saved["model"]


def static_shapes(model) -> None:
    """Switch every module that has one to its traceable padded path (``static_shapes``: ParticleNet, ParT,
    vq_gpt)."""
    for module in model.modules():
        if hasattr(module, "static_shapes"):
            module.static_shapes = True


def trace(wrapper, args: tuple, dynamic_shapes: tuple, names, name: str):
    """The ONNX program of ``wrapper`` (torch.export, dynamic batch and length axes)."""
    import torch

    try:
        return torch.onnx.export(
            wrapper,
            args,
            dynamic_shapes=dynamic_shapes,
            input_names=list(names),
            output_names=["probabilities"],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    except Exception as exc:  # torch.export could not follow the forward (data-dependent shapes, ...)
        cause = exc.__cause__ or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise JetscaleError(f"export: {name} could not be traced for ONNX: {type(cause).__name__}: {first}") from None


def verify(ort, target: Path, wrapper, sample, names) -> float:
    """Largest |onnxruntime - torch| probability on the sample jets (a batch and length other than the traced
    ones included)."""
    import torch

    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for rows in (slice(None), slice(0, 3)):
            b = sample.tensors(rows)
            ref = wrapper(*(b[n] for n in names)).numpy()
            got = session.run(["probabilities"], {n: b[n].numpy() for n in names})[0]
            worst = max(worst, float(np.abs(got - ref).max()))
    return worst


class Probabilities:
    """Built lazily (torch): ``forward(*arrays)`` -> softmax of the model's logits."""

    def __new__(cls, model, names):
        import torch

        class _Probabilities(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model, self.names = model, tuple(names)

            def forward(self, *arrays):
                return torch.softmax(self.model(**dict(zip(self.names, arrays))).float(), dim=-1)

        return _Probabilities()


def input_names(model, batch: dict) -> list[str]:
    """The arrays of ``batch`` the model's forward names (in its signature order)."""
    params = inspect.signature(model.forward).parameters
    names = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n in batch]
    return names or list(batch)


def array_doc(name: str, tensor, length_axis: int, length: str) -> dict:
    shape: list = list(tensor.shape)
    shape[0] = "batch"
    shape[length_axis % tensor.ndim] = length
    return {"name": name, "dtype": str(tensor.dtype).removeprefix("torch."), "shape": shape}


def input_spec(transform) -> dict:
    """How the split's Table-1 features become the model's ``x``: per feature in order, the transform steps and
    the standardisation (centre, scale): x = (f(value) - centre) / scale."""
    from ..data.schema import FEATURE_NAMES

    if transform is None or transform.raw:
        return {"features": [{"name": f, "transform": [], "standardise": "none"} for f in FEATURE_NAMES]}
    return {"features": transform.record()}


def tokenization(options: dict) -> dict:
    """The byte tokenization of a bytes-kind model, enough to reproduce it (see jetscale.tokenize.bytes)."""
    from ..data.schema import FEATURE_NAMES
    from ..tokenize.bytes import BOS, EOS, PAD, SEP, ByteTokenizer

    tok = ByteTokenizer.from_options((options or {}).get("tokenizer"))
    return {
        "mode": tok.mode,
        "dtype": tok.dtype if tok.mode == "native" else None,
        "byte_order": "little-endian IEEE-754" if tok.mode == "native" else None,
        "precision": tok.precision if tok.mode == "text" else None,
        "patch_size": tok.patch_size,
        "max_bytes": tok.max_bytes,
        "seq_len": tok.seq_len,
        "field_order": list(FEATURE_NAMES),
        "layout": "BOS | idx SEP v_0 ... v_18 | ... | EOS | PAD ...; particles in stored (energy) order, idx one "
        "byte; a jet that does not fit keeps its leading particles",
        "special": {"BOS": BOS, "EOS": EOS, "SEP": SEP, "PAD": PAD},
        "patches": "tokens (seq_len,) reshaped to (seq_len / patch_size, patch_size); patch_mask: a patch holding "
        "at least one non-PAD byte",
    }

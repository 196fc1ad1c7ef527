"""`jetscale export --format onnx`: a trained cell's network run by onnxruntime gives jetscale's probabilities.

Each network (ParticleNet, ParT, BBT-Neutron, vq_gpt, a model from the user's file) is trained briefly on
synthetic splits, exported, and run by onnxruntime on the whole test split (fed from the sidecar's description of
the arrays, in batches of other sizes and lengths than the traced one); its probabilities are compared with the
cell's own predictions.parquet, which jetscale's eager (real-particle) path wrote. Tolerance: 1e-5 absolute per
probability (float32 graphs; measured differences ~1e-7).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from jetscale import paths
from jetscale.config import load_config
from jetscale.data.schema import FEATURE_NAMES
from jetscale.errors import JetscaleError
from jetscale.grid import parse_cell_id
from jetscale.settings import resolve_settings

pytest.importorskip("onnxruntime", reason="onnxruntime is in envs/requirements.txt (the test env installs it)")
pytest.importorskip("onnxscript", reason="onnxscript is in envs/requirements.txt")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_external_model import MODEL_FILE, STUDY_FILE  # noqa: E402  (the README's own model)

TOLERANCE = 1e-5
WIDTH = {"bbt_neutron": 32, "my_tagger": 16, "particlenet": 16, "part": 16, "vq_gpt": 16}


def study(tmp_path: Path, model: str) -> dict:
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["results"] = str(tmp_path / "results")
    raw["data"].update({"n_particles": 16, "val_per_class": 3, "test_per_class": 3})
    raw["data"]["generate"]["jets_per_class"] = 40
    raw["grid"]["axes"].update({"model": [model], "width": [WIDTH[model]], "n_train": [44], "compute": [96]})
    raw["grid"]["axes"]["seed"] = [0]
    raw["grid"]["per_model"] = {}
    raw["models"]["bbt_neutron"] = {"tokenizer": {"dtype": "float16", "patch_size": 16, "max_bytes": 256}}
    raw["models"]["vq_gpt"] = {"codebook_size": 32, "vq_steps": 20, "vq_batch_jets": 16, "max_particles": 12}
    if model == "my_tagger":
        (tmp_path / "my_tagger.py").write_text(MODEL_FILE)
        raw["models"]["my_tagger"] = {**yaml.safe_load(STUDY_FILE)["models"]["my_tagger"]}
        raw["models"]["my_tagger"]["source"] = str(tmp_path / "my_tagger.py")
    raw["training"].update({"batch_size": 16, "eval_every_samples": 48, "early_stopping_patience": None})
    return load_config(raw)


def trained_cell(tmp_path: Path, model: str) -> tuple[dict, str, Path]:
    from jetscale.data.testing import write_synthetic_splits
    from jetscale.grid import cell_ids
    from jetscale.train import loop

    cfg = study(tmp_path, model)
    (cid,) = cell_ids(cfg)
    splits = write_synthetic_splits(tmp_path / "splits", cfg["classes"], {"train": 66, "val": 33, "test": 40}, 16)
    loop.train_cell(cfg, cid, splits, paths.run_dir(paths.results_root(cfg), cid), progress=False)
    return cfg, cid, splits


@pytest.mark.parametrize("model", ["particlenet", "part", "bbt_neutron", "vq_gpt", "my_tagger"])
def test_onnxruntime_reproduces_the_cells_predictions(tmp_path, model):
    import onnx
    import onnxruntime as ort

    from jetscale.export.onnx import export_cell
    from jetscale.train.inputs import input_transform, load_split_inputs

    cfg, cid, splits = trained_cell(tmp_path, model)
    out = tmp_path / "export"
    sidecar = export_cell(cfg, cid, out, splits)
    saved = json.loads((out / f"{model}.onnx.json").read_text())
    assert saved == json.loads(json.dumps(sidecar))
    assert saved["classes"] == cfg["classes"] and saved["cell_id"] == cid
    run = paths.run_dir(paths.results_root(cfg), cid)
    assert saved["settings_hash"] == json.loads((run / "metrics.json").read_text())["settings_hash"]
    assert saved["verified"]["max_abs_probability_difference"] < TOLERANCE
    graph = onnx.load(str(out / saved["file"])).graph
    names = [i.name for i in graph.input]
    assert names == [i["name"] for i in saved["inputs"]]
    for declared, array in zip(saved["inputs"], graph.input):  # named, with symbolic batch and length axes
        dims = [d.dim_param or d.dim_value for d in array.type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and sum(isinstance(d, str) for d in dims) == 2, dims
        assert len(dims) == len(declared["shape"])
    if model == "bbt_neutron":
        tok = saved["tokenization"]
        assert (tok["dtype"], tok["patch_size"], tok["mode"]) == ("float16", 16, "native")
        assert tok["field_order"] == list(FEATURE_NAMES) and tok["special"]["PAD"] == 256
    elif model == "vq_gpt":  # raw Table-1 features: its tokenizer's standardisation is inside the graph
        assert [f["name"] for f in saved["input_spec"]["features"]] == list(FEATURE_NAMES)
        assert all(f["standardise"] == "none" for f in saved["input_spec"]["features"])
    else:
        # the physics preset: statistics of the training subset are in the sidecar (centre, scale)
        assert ("model_source" in saved) == (model == "my_tagger")
        assert model != "my_tagger" or saved["model_source"]["sha256"]
        assert any(f["standardise"] == "auto" and f["scale"] > 0 for f in saved["input_spec"]["features"])

    # the test split, prepared as the sidecar says (here with jetscale's code), run by onnxruntime in batches
    # of different sizes and lengths, against the probabilities training wrote
    settings = resolve_settings(cfg, parse_cell_id(cfg, cid))
    transform, _ = input_transform(settings.get("inputs"), splits, settings["n_train"])
    test = load_split_inputs(splits, "test", model, settings["model_options"], transform=transform)
    session = ort.InferenceSession(str(out / saved["file"]), providers=["CPUExecutionProvider"])
    probs = []
    for rows in (slice(0, 7), slice(7, 8), slice(8, test.n)):
        batch = test.tensors(rows)
        probs.append(session.run(["probabilities"], {n: batch[n].numpy() for n in names})[0])
    probs = np.concatenate(probs)
    predictions = pd.read_parquet(run / "predictions.parquet")
    expected = predictions[[f"score_{c}" for c in cfg["classes"]]].to_numpy()
    assert probs.shape == expected.shape
    np.testing.assert_allclose(probs, expected, atol=TOLERANCE, rtol=0)


def test_a_fine_tuned_cell_exports_with_its_backbones_statistics(tmp_path):
    """A ParT fine-tuned from an mpm backbone: its inputs are standardised with the backbone's pool statistics
    (recorded in its metrics.json), not its own subset's; the export uses those and reproduces its predictions."""
    import onnxruntime as ort
    import torch

    from jetscale.data.testing import write_synthetic_splits
    from jetscale.export.onnx import export_cell
    from jetscale.inputs.prepare import InputTransform
    from jetscale.pretrain.loop import pretrain_backbone
    from jetscale.train import loop
    from jetscale.train.inputs import load_split_inputs
    from jetscale.workflow import StudyPlan
    from tiny_config import TINY_PRETRAINING, TINY_TRAINING, tiny_raw_config

    torch.set_num_threads(1)
    raw = tiny_raw_config(
        ("part",),
        width=16,
        n_train=22,
        compute=32,
        n_particles=8,
        pretrain=["mpm"],
        n_pretrain=[30],
        finetune=["full"],
        training={**TINY_TRAINING, "eval_every_samples": 32},
        pretraining={**TINY_PRETRAINING, "methods": {"mpm": {"target": "l1"}}},  # no k-means codebook to fit
    )
    raw["results"] = str(tmp_path / "results")
    cfg = load_config(raw)
    splits = write_synthetic_splits(tmp_path / "splits", cfg["classes"], {"train": 66, "val": 33, "test": 33}, 8)
    plan = StudyPlan(cfg)
    (bid,) = plan.backbones
    pretrain_backbone(cfg, bid, splits, Path(cfg["results"]) / "pretrain" / bid)
    (cid,) = [c for c in plan.cells if "pretrain~mpm" in c]
    run = paths.run_dir(paths.results_root(cfg), cid)
    metrics = loop.train_cell(cfg, cid, splits, run, progress=False)
    assert metrics["inputs"]["statistics"] == str(plan.backbone_file(cid))

    sidecar = export_cell(cfg, cid, tmp_path / "export", splits)
    assert sidecar["fine_tuned_from"]["backbone_id"] == bid
    assert sidecar["input_spec"]["features"] == metrics["inputs"]["features"]  # the backbone's centres and scales
    assert sidecar["input_spec"]["statistics_from"] == metrics["inputs"]["statistics"]
    session = ort.InferenceSession(str(tmp_path / "export" / sidecar["file"]), providers=["CPUExecutionProvider"])
    names = [i["name"] for i in sidecar["inputs"]]
    transform = InputTransform(tuple(sidecar["input_spec"]["features"]))
    test = load_split_inputs(splits, "test", "part", {}, transform=transform)
    probs = session.run(["probabilities"], {n: test.tensors(slice(None))[n].numpy() for n in names})[0]
    expected = pd.read_parquet(run / "predictions.parquet")[[f"score_{c}" for c in cfg["classes"]]].to_numpy()
    np.testing.assert_allclose(probs, expected, atol=TOLERANCE, rtol=0)


def test_an_untraceable_forward_is_one_line():
    """A user's network whose Python control flow depends on the data (here: on the count of real particles)
    cannot be traced: one line naming the model and the cause."""
    import torch

    from jetscale.export.onnx import Probabilities, trace

    class CountsParticles(torch.nn.Module):
        def forward(self, x, mask):
            scores = x.mean(dim=2)[:, :3]
            return scores if mask.sum() > 10 else -scores

    x, mask = torch.randn(4, 5, 6), (torch.rand(4, 1, 6) > 0.3).float()
    wrapper = Probabilities(CountsParticles(), ["x", "mask"]).eval()
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("particles", min=2)
    shapes = ({0: batch, 2: length}, {0: batch, 2: length})
    with pytest.raises(JetscaleError, match=r"^export: my_tagger could not be traced for ONNX: \w+: [^\n]+$"):
        trace(wrapper, (x, mask), (shapes,), ["x", "mask"], "my_tagger")


def test_unfinished_cells_are_one_line(tmp_path):
    from jetscale.export.onnx import export_cell
    from jetscale.grid import cell_ids

    cfg = study(tmp_path, "bbt_neutron")
    (cid,) = cell_ids(cfg)
    with pytest.raises(JetscaleError, match=r"has not finished training \(no .*metrics.json\)"):
        export_cell(cfg, cid)


def test_missing_onnx_packages_are_named(monkeypatch):
    import builtins

    from jetscale.export import onnx as export

    real = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime", name="onnxruntime")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(JetscaleError, match="needs the packages onnx, onnxscript and onnxruntime.*onnxruntime is not"):
        export.require_onnx()


def test_the_cli_lists_export():
    from jetscale.cli import build_parser

    args = build_parser().parse_args(["export", "--cell", "x"])
    assert args.format == "onnx"

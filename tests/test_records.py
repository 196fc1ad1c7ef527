"""The typed records (``metrics.json``, ``pretrain.json``, fit records) declare the keys their readers use.

Each record is a frozen dataclass (:mod:`jetscale.records`); its keys are written in the order declared, a field
left ABSENT is not written, None is written as null. Pinned here: the keys each file had before the records were
typed (same keys, same order), and every key a reader in ``src/jetscale`` takes from such a file (read with
``ast``: ``metrics["k"]`` / ``metrics.get("k")`` and the readers' column constants) is one the record declares.
"""

from __future__ import annotations

import ast
import pickle
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from jetscale.evaluate.collect import RUN_COLUMNS
from jetscale.fit.record import FitRecord
from jetscale.fit.summary import SUMMARY_LEAD
from jetscale.pretrain.record import PretrainRecord
from jetscale.pretrain.tables import QUALITY_KEYS, RECORD_COLUMNS
from jetscale.records import ABSENT
from jetscale.train.fitted import NOT_APPLICABLE
from jetscale.train.record import MetricsRecord

SRC = Path(__file__).resolve().parents[1] / "src" / "jetscale"

# metrics.json of a network cell, in the order written (then, only where they apply: input_fit for a model with a
# fit-once step, backbone_id and trainable_params for a fine-tuned cell)
NETWORK_KEYS = (
    "status cell_id cell model width n_train compute seed val_loss val_accuracy test_loss test_accuracy n_params "
    "flops_per_jet train_flops samples_seen samples_budget epochs_seen steps steps_budget batch_size best_step "
    "stopped_by wall_time_s setup_time_s n_val n_test truncated_jets hardware versions git_revision data inputs "
    "settings settings_hash finished_at"
).split()
NETWORK_ONLY = ("input_fit", "backbone_id", "trainable_params")
PRETRAIN_KEYS = (
    "status backbone_id method model width n_pretrain final_loss final_val_loss n_params n_backbone_params "
    "flops_per_jet train_flops samples_seen samples_budget epochs_seen steps steps_budget batch_size n_held_out "
    "pool prepare inputs quality wall_time_s setup_time_s hardware versions git_revision settings settings_hash "
    "finished_at"
).split()
# fit records by kind, in the order written (_file names the file and is popped before writing)
FIT_KEYS = {
    "scaling": "_file kind metric flavor series label x y points domain fits comparison",
    "loss": "_file kind metric flavor series label x y points fits comparison",
    "joint": "_file kind metric flavor series label x x2 y points fits comparison",
    "mirage": "_file _index kind metric flavor series label x y thresholded_metric points fits comparison auc mirage",
}


def keys_read(module: str, names: tuple[str, ...]) -> set[str]:
    """String keys that ``module`` (a path under src/jetscale) takes from a variable named in ``names``."""
    out = set()
    for node in ast.walk(ast.parse((SRC / module).read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in names:
            key = node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in names
            and node.args
        ):
            key = node.args[0]
        else:
            continue
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            out.add(key.value)
    return out


def test_metrics_record_keys_are_those_written_before():
    keys = MetricsRecord.keys()
    assert [k for k in keys if k not in (*NETWORK_ONLY, "fit")] == NETWORK_KEYS
    assert keys[-3:] == NETWORK_ONLY
    assert keys[keys.index("stopped_by") + 1] == "fit"  # a fitted cell's fit block follows stopped_by
    assert set(NOT_APPLICABLE) <= set(keys)


def test_metrics_readers_use_declared_keys():
    read = set(RUN_COLUMNS) | {"val_loss", "val_accuracy"}
    for module in ("evaluate/collect.py", "status.py", "export/onnx.py"):
        found = keys_read(module, ("metrics",))
        assert found, f"{module}: no metrics keys found (was the variable renamed?)"
        read |= found
    assert read <= set(MetricsRecord.keys()), read - set(MetricsRecord.keys())


def test_pretrain_record_keys_and_readers():
    assert list(PretrainRecord.keys()) == PRETRAIN_KEYS
    read = set(RECORD_COLUMNS) | set(QUALITY_KEYS) | keys_read("pretrain/tables.py", ("rec", "record"))
    assert "quality" in read
    assert read <= set(PRETRAIN_KEYS), read - set(PRETRAIN_KEYS)


def test_fit_record_readers_use_declared_keys():
    declared = set(FitRecord.keys()) | {"mirage"}
    read = {k for k in SUMMARY_LEAD if k not in ("form", "status")}  # form and status are per fit
    for module in (
        "fit/outlook.py",
        "fit/summary.py",
        "report/figures.py",
        "report/loss_figures.py",
        "report/outlook.py",
        "report/scaling_figures.py",
    ):
        found = keys_read(module, ("doc", "d"))
        assert found, module
        read |= found
    assert read <= declared, read - declared


def fit_record(**extra) -> FitRecord:
    base = dict(file="f.json", kind="k", metric="m", flavor="", series={}, label="all", x="n_train", y="m")
    return FitRecord(**base, points={"x": [], "y": []}, fits={}, comparison=None, **extra)


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("scaling", {"domain": [0.0, 1.0]}),
        ("loss", {}),
        ("joint", {"x2": "n_train"}),
        ("mirage", {"index": 0, "thresholded_metric": "t", "auc": None, "mirage": {}}),
    ],
)
def test_fit_record_writes_each_kind_in_order(kind, extra):
    doc = fit_record(**extra).to_json()
    assert list(doc) == FIT_KEYS[kind].split()
    assert doc["comparison"] is None  # None is written (null); ABSENT fields are not
    if kind == "mirage":
        assert doc["auc"] is None


def test_record_is_frozen_and_absent_survives_pickling():
    rec = fit_record()
    with pytest.raises(FrozenInstanceError):
        rec.kind = "other"
    again = pickle.loads(pickle.dumps(rec))  # fit records are built in worker processes
    assert again.x2 is ABSENT and again.to_json() == rec.to_json()

"""The results tree, in one place (every stage and the Snakefile build paths through these helpers).

results/
  study.json                         which study/data this directory belongs to
  data/shards/shard-0000.parquet     generated (or ingested) jets, one row per jet
  data/splits/{train,val,test}/      padded memory-mapped arrays (see jetscale.data.splits)
  data/splits/meta.json              classes, feature names, sizes, truncation counts
  data/summary.{png,pdf}             data-summary figure
  runs/<cell id>/                    metrics.json, predictions.parquet, train_log.csv, checkpoint.pt, eval.json
  pretrain/<backbone id>/            backbone.pt (protected), pretrain.json, pretrain_log.csv, checkpoint.pt
  tables/runs.csv                    tidy table: one row per cell x metric
  fits/                              fit records (JSON) + fit_summary.csv, forecasts.csv, backtests.csv
  logs/train/<cell id>.log           the train rule's log (jetscale status reads its last error)
  figures/                           paper figures (PNG + PDF)
  report.html                        the study report
"""

from __future__ import annotations

from pathlib import Path


def results_root(cfg: dict) -> Path:
    return Path(cfg.get("results", "results"))


def shard_path(root: Path, index: int) -> Path:
    return Path(root) / "data" / "shards" / f"shard-{index:04d}.parquet"


def splits_dir(root: Path) -> Path:
    return Path(root) / "data" / "splits"


def run_dir(root: Path, cell_id: str) -> Path:
    return Path(root) / "runs" / cell_id


def pretrain_dir(root: Path, backbone_id: str) -> Path:
    """A pretrained backbone: ``backbone_id`` = method~M/model~MODEL/width~W/n_pretrain~N."""
    return Path(root) / "pretrain" / backbone_id


def backbone_path(root: Path, backbone_id: str) -> Path:
    return pretrain_dir(root, backbone_id) / "backbone.pt"


def pretrain_record_path(root: Path, backbone_id: str) -> Path:
    return pretrain_dir(root, backbone_id) / "pretrain.json"


def runs_table(root: Path) -> Path:
    return Path(root) / "tables" / "runs.csv"


def fits_dir(root: Path) -> Path:
    return Path(root) / "fits"


def figures_dir(root: Path) -> Path:
    return Path(root) / "figures"


def report_path(root: Path) -> Path:
    return Path(root) / "report.html"


def forecasts_table(root: Path) -> Path:
    return fits_dir(root) / "forecasts.csv"


def backtests_table(root: Path) -> Path:
    return fits_dir(root) / "backtests.csv"


def train_log(root: Path, cell_id: str) -> Path:
    return Path(root) / "logs" / "train" / f"{cell_id}.log"

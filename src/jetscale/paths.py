"""The results tree, in one place: every stage, the rules and the tests build paths through these helpers.

results/
  study.json                         which study/data this directory belongs to (STUDY_STAMP)
  .jetscale/config.yaml              the merged, validated config every job reads
  data/shards/shard-0000.parquet     generated jets, one row per jet (or data/ingested/ for user files)
  data/splits/{train,val,test}/      padded memory-mapped arrays (see jetscale.data.splits)
  data/splits/meta.json              classes, feature names, sizes, truncation counts
  data/pool/                         unlabelled pretraining jets from other files (pretraining.pool), + manifest
  data/summary.{png,pdf}             data-summary figure
  runs/<cell id>/                    metrics.json, predictions.parquet, train_log.csv, checkpoint.pt (or
                                     model.txt: a fitted model), eval.json
                                     (failure.json instead of metrics.json after a failure;
                                     history/<settings hash>/ keeps every finished result)
  pretrain/<backbone id>/            backbone.pt (protected), pretrain.json, pretrain_log.csv, checkpoint.pt
  tables/runs.csv                    tidy table: one row per cell x metric (+ missing.csv, confusion.csv)
  fits/                              fit records (JSON) + fit_summary.csv, forecasts.csv, backtests.csv
  figures/                           paper figures (PNG + PDF)
  report.html                        the study report
  logs/<stage>/...                   one log per job

Functions take the results root (or a run directory) and return a ``Path``; they work with Snakemake wildcards
too (``run_file(root, "{cell}", METRICS)``).
"""

from __future__ import annotations

import os
from pathlib import Path

# ---- one run's files (inside runs/<cell id>/)
METRICS = "metrics.json"  # the train rule's target; written last
PREDICTIONS = "predictions.parquet"
TRAIN_LOG = "train_log.csv"
CHECKPOINT = "checkpoint.pt"
FITTED_MODEL = "model.txt"  # a fitted model's (catalog kind "fitted") saved model, instead of a checkpoint
FAILURE = "failure.json"
EVAL = "eval.json"
HISTORY = "history"

# ---- one pretrained backbone's files (inside pretrain/<backbone id>/)
BACKBONE = "backbone.pt"  # the pretrain rule's target, protected
PRETRAIN_RECORD = "pretrain.json"
PRETRAIN_LOG = "pretrain_log.csv"

# ---- study files
STUDY_STAMP = "study.json"
SPLIT_META = "meta.json"
FIT_SUMMARY = "fit_summary.csv"
PRETRAIN_TABLE = "pretrain.csv"  # in tables/, beside runs.csv
PRETRAIN_CURVES = "pretrain_curves.csv"
PRETRAIN_QUALITY = "pretrain_quality.csv"
# fits/transfer/: the transfer fits of fine-tuned vs from-scratch cells
TRANSFER_TABLE = "transfer.csv"
TRANSFER_LAWS = "laws.json"
PRETRAIN_LOSS_FITS = "pretrain_loss.json"


# letters, digits and _ . / + - only, not starting with '-' (no spaces, quotes, $, `, ; ...); also in the schema
RESULTS_PATTERN = r"^[A-Za-z0-9_./+][A-Za-z0-9_./+-]*$"
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout (an installed package: its site-packages parent)
# the operating system's own directories: a results dir never goes inside one (a dry run would write there)
SYSTEM_DIRS = tuple(
    Path(p)
    for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr")
    + ("/var/lib", "/var/log", "/var/spool", "/var/cache")
)


def location_problem(results: str, cwd: str | os.PathLike | None = None) -> str | None:
    """Why ``results`` may not be a results directory, or None when it may."""
    path = Path(results)
    if ".." in path.parts:
        return f"{results!r} contains '..'; name the directory without going up"
    cwd = Path(cwd or os.getcwd()).resolve()
    resolved = (cwd / path).resolve()
    if resolved == Path(resolved.anchor):
        return f"{results!r} is the file-system root"
    for system in SYSTEM_DIRS:
        if resolved == system or system in resolved.parents:
            return f"{results!r} resolves to {resolved}, inside the system directory {system}; use a directory of yours"
    protected = {"the repository": REPO_ROOT, "the working directory": cwd}
    for what, where in protected.items():
        if resolved == where or resolved in where.parents:
            return f"{results!r} resolves to {resolved}, which is {what} or a parent of it; use a subdirectory"
    return None


def results_root(cfg: dict) -> Path:
    return Path(cfg.get("results", "results"))


def study_stamp(root: Path) -> Path:
    return Path(root) / STUDY_STAMP


def effective_config(root: Path) -> Path:
    return Path(root) / ".jetscale" / "config.yaml"


# ---- data
def shard_name(index: int | str) -> str:
    """``shard-NNNN.parquet`` (``index`` an int, or a wildcard string)."""
    return f"shard-{index:04d}.parquet" if isinstance(index, int) else f"shard-{index}.parquet"


def shard_path(root: Path, index: int | str) -> Path:
    return Path(root) / "data" / "shards" / shard_name(index)


def ingested_dir(root: Path) -> Path:
    return Path(root) / "data" / "ingested"


def pool_dir(root: Path) -> Path:
    """The unlabelled pretraining pool ingested from ``pretraining.pool`` files (features, mask, vectors)."""
    return Path(root) / "data" / "pool"


def splits_dir(root: Path) -> Path:
    return Path(root) / "data" / "splits"


def split_meta(splits: Path) -> Path:
    return Path(splits) / SPLIT_META


def input_stats_path(splits: Path, n_train: int | str) -> Path:
    """The input statistics of the first ``n_train`` training jets, beside the splits (a wildcard string too)."""
    n = n_train if isinstance(n_train, str) else int(n_train)
    return Path(splits).parent / "input_stats" / f"n_train~{n}.json"


def input_counts_dir(splits: Path) -> Path:
    """Where counts over whole streamed splits (BBT-Neutron's truncated jets) are recorded, beside the splits."""
    return Path(splits).parent / "input_counts"


def data_summary(root: Path, suffix: str = ".png") -> Path:
    return Path(root) / "data" / f"summary{suffix}"


# ---- runs
def run_dir(root: Path, cell_id: str) -> Path:
    return Path(root) / "runs" / cell_id


def run_file(root: Path, cell_id: str, name: str) -> Path:
    return run_dir(root, cell_id) / name


def history_dir(run: Path, settings_hash: str) -> Path:
    return Path(run) / HISTORY / settings_hash


# ---- pretrained backbones
def pretrain_dir(root: Path, backbone_id: str) -> Path:
    """A pretrained backbone: ``backbone_id`` = method~M/model~MODEL/width~W/n_pretrain~N."""
    return Path(root) / "pretrain" / backbone_id


def backbone_path(root: Path, backbone_id: str) -> Path:
    return pretrain_dir(root, backbone_id) / BACKBONE


def pretrain_record_path(root: Path, backbone_id: str) -> Path:
    return pretrain_dir(root, backbone_id) / PRETRAIN_RECORD


# ---- tables, fits, figures, report
def tables_dir(root: Path) -> Path:
    return Path(root) / "tables"


def runs_table(root: Path) -> Path:
    return tables_dir(root) / "runs.csv"


def missing_table(tables: Path) -> Path:
    """Cells without a result and why (beside runs.csv in ``tables``)."""
    return Path(tables) / "missing.csv"


def confusion_table(tables: Path) -> Path:
    return Path(tables) / "confusion.csv"


def tuning_table(tables: Path) -> Path:
    """The per-cell choice of the tuning axes, every candidate's validation score (beside runs.csv)."""
    return Path(tables) / "tuning.csv"


def fits_dir(root: Path) -> Path:
    return Path(root) / "fits"


def transfer_dir(root: Path) -> Path:
    """fits/transfer/: TRANSFER_TABLE, TRANSFER_LAWS, PRETRAIN_LOSS_FITS."""
    return fits_dir(root) / "transfer"


def fit_summary(root: Path) -> Path:
    return fits_dir(root) / FIT_SUMMARY


def tuning_trends_table(fits: Path) -> Path:
    """The tuned values' trend with n_train and width (in the fits directory ``fits``)."""
    return Path(fits) / "tuning_trends.csv"


def figures_dir(root: Path) -> Path:
    return Path(root) / "figures"


def report_path(root: Path) -> Path:
    return Path(root) / "report.html"


def forecasts_table(root: Path) -> Path:
    return fits_dir(root) / "forecasts.csv"


def backtests_table(root: Path) -> Path:
    return fits_dir(root) / "backtests.csv"


def logs_dir(root: Path) -> Path:
    return Path(root) / "logs"


def train_log(root: Path, cell_id: str) -> Path:
    return Path(root) / "logs" / "train" / f"{cell_id}.log"


def log_path(root: Path, stage: str, name: str | None = None) -> Path:
    """logs/<stage>.log, or logs/<stage>/<name>.log for per-job logs (name may hold a cell id)."""
    logs = Path(root) / "logs"
    return logs / f"{stage}.log" if name is None else logs / stage / f"{name}.log"

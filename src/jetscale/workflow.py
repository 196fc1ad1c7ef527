"""What the Snakefile needs from a config: paths, cells, per-cell settings hashes and resources.

Kept out of the .smk files so the rules stay thin and this logic is unit-tested. Everything is computed once
per Snakemake invocation and cached, so planning a 50k-cell grid stays fast.
"""

from __future__ import annotations

import functools
import json
import math
import shlex
import sys
from collections.abc import Iterable

import yaml

from . import paths, results_dir
from .config import load_config
from .errors import ConfigError
from .grid import cell_regex, cells_by_id
from .inputs.spec import model_inputs, needs_statistics
from .inputs.stats import stats_path
from .io import write_json, write_text
from .models import catalog
from .resources import stage_resources, train_resources
from .settings import resolve_settings, settings_hash

STUDY_STAMP = results_dir.STUDY_STAMP

# Deployment methods (Snakemake's --sw-env) that give each job an environment of its own, with `jetscale` on PATH.
OWN_ENVIRONMENT = frozenset({"CONDA", "APPTAINER"})


def jetscale_command(deployment: Iterable = ()) -> str | None:
    """The command every rule's `jetscale` stands for; None: the `jetscale` on the job's PATH.

    The one of the interpreter that runs Snakemake (`<python> -m jetscale`), so a study works without the
    environment's bin directory on PATH (`.venv/bin/snakemake`, an IDE, a cron job), on every executor: a Slurm
    job's Snakemake runs through the same interpreter (or, without a shared software deployment, the `python` it
    finds, whose `jetscale` is then the one that job has). Under a per-job environment (`deployment`, Snakemake's
    deployment methods or their names, has CONDA or APPTAINER) the host interpreter is not the job's: None.
    """
    if OWN_ENVIRONMENT & {getattr(method, "name", str(method)).upper() for method in deployment}:
        return None
    return f"{shlex.quote(sys.executable)} -m jetscale"


def shell_prefix(command: str | None, strict_bash: bool) -> str | None:
    """Snakemake's `shell.prefix` that makes `jetscale` in every rule run `command` (a shell function, so the
    rules read `jetscale train ...` as a user types it); None: keep Snakemake's own prefix. `strict_bash` keeps
    Snakemake's default `set -euo pipefail` (which a prefix of ours replaces). Braces doubled: Snakemake formats
    the prefix like a rule's command."""
    if command is None:
        return None
    text = ("set -euo pipefail; " if strict_bash else "") + f'jetscale() {{ {command} "$@"; }}; '
    return text.replace("{", "{{").replace("}", "}}")


# The config sections each analysis stage reads (besides its input files). Their hash is a params entry of the
# stage's rule, so with rerun-triggers [params] a changed setting (flavor_pairs, fits:, report:) reruns the
# stages that read it, and the stages after them through their inputs; training never reads these.
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "evaluate": ("classes", "flavor_pairs"),
    "collect": ("classes", "flavor_pairs", "grid", "pretraining"),
    "fit": ("classes", "flavor_pairs", "grid", "fits"),
    "report": ("study", "classes", "flavor_pairs", "grid", "fits", "report", "pretraining"),
}


class StudyPlan:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.root = paths.results_root(cfg)
        self.cells = cells_by_id(cfg)
        self.check_results_dir()

    @classmethod
    def from_snakemake(cls, config: dict, workflow=None) -> StudyPlan:
        """The plan of Snakemake's merged ``config``; ``workflow`` (Snakemake's) says which config files were
        merged, against which a relative path in them resolves (a model's ``source``)."""
        files = []
        if workflow is not None:  # --configfile files win over the Snakefile's configfile, the last one most
            overlays = [str(f) for f in workflow.overwrite_configfiles or []]
            files = [f for f in map(str, workflow.configfiles) if f not in overlays] + overlays
        try:
            return cls(
                load_config(dict(config), where="config (config.yaml + --configfile/--config)", config_files=files)
            )
        except ConfigError as exc:
            from snakemake.exceptions import WorkflowError

            raise WorkflowError(f"jetscale: invalid study configuration: {exc}") from None

    # ---- data -------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.cfg["data"]["source"]

    @property
    def shard_inputs(self) -> list[str]:
        if self.source == "generate":
            n = self.cfg["data"]["generate"]["n_shards"]
            return [str(paths.shard_path(self.root, i)) for i in range(n)]
        return [str(paths.ingested_dir(self.root))]

    @property
    def ingest_inputs(self) -> list[str]:
        from .data.pool import expand_globs

        return expand_globs(self.cfg["data"]["ingest"]["paths"], "data.ingest.paths")

    # ---- the pretraining pool from other files (pretraining.pool) --------------------------
    @property
    def has_pool(self) -> bool:
        from .data.pool import pool_config

        return pool_config(self.cfg) is not None

    @functools.cached_property
    def pool_files(self) -> list[str]:
        from .data.pool import pool_files

        return pool_files(self.cfg)

    @property
    def pool_input(self) -> list[str]:
        """The ingested pool a pretraining job reads: [its directory], or [] without pretraining.pool."""
        return [str(paths.pool_dir(self.root))] if self.has_pool else []

    @property
    def pool_recipe(self) -> dict:
        """What the ingested pool depends on besides its files (a params entry: a change re-ingests)."""
        return {"mapping": self.cfg["pretraining"]["pool"]["mapping"], "n_particles": self.cfg["data"]["n_particles"]}

    # ---- cells ------------------------------------------------------------------------------
    @property
    def cell_regex(self) -> str:
        return cell_regex(self.cfg)

    @property
    def all_eval_files(self) -> list[str]:
        return [str(paths.run_file(self.root, cid, paths.EVAL)) for cid in self.cells]

    def cell(self, cid: str) -> dict:
        try:
            return self.cells[cid]
        except KeyError:
            raise ConfigError(f"cell {cid!r} is not in this study's grid") from None

    @functools.cache  # noqa: B019 - one plan per Snakemake process; the cache lives as long as it does
    def settings_hash(self, cid: str) -> str:
        return settings_hash(resolve_settings(self.cfg, self.cell(cid)))

    @functools.cache  # noqa: B019 - see settings_hash
    def input_stats(self, cid: str) -> list[str]:
        """The recorded input statistics a cell's training needs (none when its inputs use no 'auto' scaling)."""
        cell = self.cell(cid)
        if not needs_statistics(model_inputs(self.cfg, cell["model"])):
            return []
        return [str(stats_path(paths.splits_dir(self.root), cell["n_train"]))]

    @functools.cache  # noqa: B019 - see settings_hash
    def stage_settings(self, stage: str) -> str:
        """A hash of the config sections ``stage`` reads (``STAGE_SETTINGS``): the rule's ``settings`` param."""
        import hashlib
        import json

        picked = {key: self.cfg.get(key) for key in STAGE_SETTINGS[stage]}
        blob = json.dumps(picked, sort_keys=True, default=str)
        return f"{stage}:" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def resources(self, stage: str) -> dict:
        return stage_resources(self.cfg, stage)

    @functools.cache  # noqa: B019 - see settings_hash
    def train_resources(self, cid: str) -> dict:
        return train_resources(self.cfg, self.cell(cid))

    # Scheduling order (Snakemake ``priority``, higher first among ready jobs): pretraining gates its fine-tuning
    # cells, then the largest training sets, the longest jobs, so that the cores are not left with one long
    # training at the end while the other idles; evaluations and the rest keep 0. Snakemake does not pass a
    # job's priority on to the jobs it waits for, so the input statistics (a second each) that gate the
    # trainings get the pretraining's: without it the largest trainings waited behind evaluations.
    PRETRAIN_PRIORITY = 100
    INPUT_STATS_PRIORITY = PRETRAIN_PRIORITY

    def train_priority(self, cid: str) -> int:
        """1 + 10 log10(n_train): 30k jets before 10k before 3k, ...; a fitted model (seconds a cell) last: 1."""
        cell = self.cell(cid)
        if catalog.is_fitted(cell["model"]):
            return 1
        return 1 + round(10 * math.log10(max(1, cell["n_train"])))

    def train_runtime(self, cid: str, attempt: int) -> int:
        """Minutes for a train job; a retry (e.g. after a time limit) resumes from its checkpoint with more."""
        return self.train_resources(cid)["runtime"] * attempt

    # ---- pretraining ----------------------------------------------------------------------------
    @functools.cached_property
    def backbones(self) -> dict[str, tuple]:
        """backbone id -> (method, model, width, n_pretrain) for every backbone a fine-tuning cell names."""
        from .pretrain.plan import study_backbones

        return study_backbones(self.cfg)

    @property
    def all_backbone_records(self) -> list[str]:
        return [str(paths.pretrain_record_path(self.root, bid)) for bid in self.backbones]

    @property
    def backbone_regex(self) -> str:
        from .pretrain.plan import BACKBONE_ID_REGEX

        return BACKBONE_ID_REGEX

    def backbone_of(self, cid: str) -> str:
        """The backbone id a fine-tuning cell loads."""
        from .pretrain.plan import backbone_id, backbone_key, is_finetune

        cell = self.cell(cid)
        if not is_finetune(cell):
            raise ConfigError(f"cell {cid!r} trains from scratch; it loads no backbone")
        return backbone_id(backbone_key(cell))

    def backbone_file(self, cid: str) -> str:
        return str(paths.backbone_path(self.root, self.backbone_of(cid)))

    @functools.cache  # noqa: B019 - see settings_hash
    def backbone_input(self, cid: str) -> list[str]:
        """The backbone.pt a cell's training loads: [its path] for a fine-tuning cell, [] for one from scratch."""
        from .pretrain.plan import is_finetune

        return [self.backbone_file(cid)] if is_finetune(self.cell(cid)) else []

    @functools.cache  # noqa: B019 - see settings_hash
    def backbone_hash(self, bid: str) -> str:
        from .pretrain.plan import backbone_settings

        if bid not in self.backbones:
            raise ConfigError(f"backbone {bid!r} is not named by any cell of this study")
        return settings_hash(backbone_settings(self.cfg, self.backbones[bid]))

    def pretrain_resources(self, bid: str) -> dict:
        """A pretraining job's resources: default < resources.pretrain.<method> (e.g. more memory for vq_gpt)."""
        res = stage_resources(self.cfg, "default")
        res.update(self.cfg.get("resources", {}).get("pretrain", {}).get(self.backbones[bid][0], {}))
        res.pop("widths", None)
        return res

    def pretrain_runtime(self, bid: str, attempt: int) -> int:
        """Minutes for a pretraining job; a retry resumes from its checkpoint with more."""
        return self.pretrain_resources(bid)["runtime"] * attempt

    # ---- results directory ----------------------------------------------------------------
    def stamp(self) -> dict:
        return results_dir.stamp(self.cfg)

    def check_results_dir(self) -> None:
        """Refuse a results dir written by a different study or data configuration."""
        results_dir.check_owner(self.cfg)
        if self.source == "ingest":
            self.check_ingested_files()

    def check_ingested_files(self) -> None:
        """Refuse when data.ingest.paths now resolve to other files than those the results were built from."""
        from .data.manifest import changes, read_manifest

        ingested = paths.ingested_dir(self.root)
        recorded = read_manifest(ingested)
        if recorded is None:
            return
        found = changes(recorded, self.ingest_inputs)
        if found:
            raise ConfigError(
                f"data.ingest.paths: the input files differ from those ingested into {ingested} ("
                + "; ".join(found[:5])
                + (f"; {len(found) - 5} more" if len(found) > 5 else "")
                + "): the splits and every trained cell belong to the old files. Point `results:` at a new "
                f"directory, or move {self.root / 'data'} and {self.root / 'runs'} away to build this study anew."
            )

    def on_start(self) -> None:
        """Lock the results dir for this Snakemake run (two runs from different working directories would
        otherwise train the same cells at once), then stamp it."""
        from snakemake.exceptions import WorkflowError

        from .errors import JetscaleError

        try:
            self._lock = results_dir.hold_lock(self.root / results_dir.LOCK, "a Snakemake run")  # until exit
        except JetscaleError as exc:
            raise WorkflowError(f"jetscale: {exc}") from None
        if not (self.root / STUDY_STAMP).exists():
            write_json(self.root / STUDY_STAMP, self.stamp())

    @property
    def collect_params(self) -> dict:
        """The collect rule's extra params: the tuning declaration, so a change to it (another ``by``, another
        tuning axis) re-chooses: collect reruns (and after it fit and report), training nothing. None without
        tuning axes, so an untuned study's collect job is what it was."""
        tune = self.cfg["grid"].get("tune") or {}
        return {"tuning": json.dumps(tune, sort_keys=True)} if tune else {}

    def write_effective_config(self) -> str:
        """The merged, validated config every job reads (rewritten only when it changes)."""
        path = paths.effective_config(self.root)
        text = yaml.safe_dump(self.cfg, sort_keys=False)
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
        return str(path)

"""Data subcommands: ``generate``, ``ingest``, ``ingest-pool``, ``split``, ``data-summary``.

Heavy imports (pythia8mc, fastjet, pyarrow, matplotlib) happen inside the command functions.
"""

from __future__ import annotations

import sys

from ..argtypes import SEED, int_in


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate labelled jets with the built-in Pythia8 JoI generator",
        description="Either one config shard (--config --shard --out FILE) or a standalone run "
        "(--events-per-class N --out DIR --seed S).",
    )
    p.add_argument("--config", help="study config: generate shard --shard of data.generate")
    p.add_argument("--shard", type=int, help="shard index in [0, data.generate.n_shards) (with --config)")
    p.add_argument(
        "--events-per-class",
        type=int,
        metavar="N",
        help="standalone: N events per Higgs decay mode (H->qq gives one q and one qbar jet, H->gg two g)",
    )
    p.add_argument("--seed", type=SEED, default=1, help="standalone: base seed (default 1)")
    p.add_argument("--classes", nargs="+", help="standalone: classes (default: b bbar c cbar s sbar u ubar d dbar g)")
    p.add_argument("--jets-per-shard", type=int, default=100_000, help="standalone: jets per output shard")
    p.add_argument("--workers", type=int_in(1, 1024), default=1, help="worker processes (distinct seeds per task)")
    p.add_argument("--out", required=True, help="shard file (with --config) or output directory (standalone)")
    p.set_defaults(func=_generate)

    p = sub.add_parser("ingest", help="convert ROOT/parquet jet files to shards through a mapping YAML")
    p.add_argument("--config", help="study config (classes, data.ingest.paths, data.ingest.mapping)")
    p.add_argument("--input", nargs="+", help="input files or globs (overrides data.ingest.paths)")
    p.add_argument("--mapping", help="shipped mapping name (e.g. jetclass) or path to a mapping YAML")
    p.add_argument("--out", required=True, help="output directory for shard-NNNN.parquet files")
    p.set_defaults(func=_ingest)

    p = sub.add_parser(
        "ingest-pool",
        help="ingest the unlabelled pretraining pool (pretraining.pool) as padded arrays; labels are never read",
    )
    p.add_argument("--config", required=True, help="study config (pretraining.pool, data.n_particles)")
    p.add_argument("--input", nargs="+", help="the pool's files (default: pretraining.pool.paths resolved)")
    p.add_argument("--out", required=True, help="pool directory (e.g. results/data/pool)")
    p.set_defaults(func=_ingest_pool)

    p = sub.add_parser("split", help="class-balanced nested train pool + fixed val/test as padded arrays")
    p.add_argument("--config", required=True)
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--out", required=True, help="splits directory (e.g. results/data/splits)")
    p.set_defaults(func=_split)

    p = sub.add_parser("data-summary", help="per-class physics summary figure of the splits")
    p.add_argument("--splits", required=True, help="splits directory")
    p.add_argument("--out", required=True, help="figure path (.png; a .pdf is written beside it)")
    p.add_argument("--max-jets", type=int, default=20_000, help="jets read per split (default 20000)")
    p.set_defaults(func=_summary)


def _generate(args) -> int:
    from ..errors import ConfigError
    from .detector import detector_settings
    from .store import ShardWriter, write_rolling

    if args.config is not None:
        from ..config import load_config
        from .generate import provenance, shard_tables

        if args.shard is None:
            raise ConfigError("generate --config needs --shard I")
        cfg = load_config(args.config)
        from ..results_dir import check_owner
        from ..settings import data_fingerprint

        check_owner(cfg)  # writes into this study's results dir
        gen = cfg["data"]["generate"]
        fingerprint = data_fingerprint(cfg)
        meta = provenance(
            data_fingerprint=fingerprint,
            source_id=f"generate:{fingerprint}:shard{args.shard}",
            seed=gen["seed"],
            shard=args.shard,
            n_shards=gen["n_shards"],
            sqrt_s=gen["sqrt_s"],
            classes=cfg["classes"],
            detector=detector_settings(gen.get("detector")),
            process=gen["process"],
            clustering=gen["clustering"],
        )
        with ShardWriter(args.out, metadata=meta) as writer:
            for table in shard_tables(cfg, args.shard, workers=args.workers):
                writer.write(table)
        print(f"wrote {writer.n_jets} jets to {args.out}", file=sys.stderr)
        return 0
    if args.events_per_class is None:
        raise ConfigError("generate: give either --config FILE --shard I, or --events-per-class N")
    from .generate import DEFAULT_CLASSES, generate_events, provenance

    classes = tuple(args.classes or DEFAULT_CLASSES)
    meta = provenance(
        seed=args.seed, events_per_mode=args.events_per_class, classes=list(classes), detector=detector_settings(None)
    )
    tables = generate_events(args.events_per_class, args.seed, classes=classes, workers=args.workers)
    paths = write_rolling(tables, args.out, args.jets_per_shard, metadata=meta)
    print(f"wrote {len(paths)} shard(s) to {args.out}", file=sys.stderr)
    return 0


def _ingest(args) -> int:
    from ..config_view import ingest_view
    from .ingest import ingest_files, resolve_inputs

    classes = fingerprint = cfg = None
    if args.config is not None:
        from ..config import load_config
        from ..settings import data_fingerprint

        cfg = load_config(args.config)
        fingerprint = data_fingerprint(cfg)
        from ..results_dir import check_owner

        check_owner(cfg)  # writes into this study's results dir
        classes = list(cfg["classes"])
    ingest = ingest_view(cfg["data"] if cfg is not None else None)  # without a config: the schema's defaults
    paths, mapping = args.input or list(ingest.paths), args.mapping or ingest.mapping
    from ..errors import ConfigError

    if not paths:
        raise ConfigError("ingest: no input files (give --input or data.ingest.paths)")
    written = ingest_files(resolve_inputs(paths), mapping, args.out, classes=classes, data_fingerprint=fingerprint)
    print(f"wrote {len(written)} shard(s) to {args.out}", file=sys.stderr)
    return 0


def _ingest_pool(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..results_dir import check_owner
    from .pool import pool_config, pool_files
    from .pool_store import ingest_pool

    cfg = load_config(args.config)
    check_owner(cfg)  # writes into this study's results dir
    pool = pool_config(cfg)
    if pool is None:
        raise ConfigError(f"{args.config}: pretraining.pool: not configured; there is no pool to ingest")
    record = ingest_pool(
        args.input or pool_files(cfg), pool["mapping"], args.out, n_particles=cfg["data"]["n_particles"]
    )
    print(
        f"pool in {args.out}: {record['n_jets']} jets from {len(record['files'])} file(s), "
        f"{record['truncated_jets']} cut at n_particles={record['n_particles']}",
        file=sys.stderr,
    )
    return 0


def _split(args) -> int:
    from ..config import axis_values, load_config, study_view
    from ..settings import data_fingerprint
    from .splits import build_splits

    cfg = load_config(args.config)
    from ..results_dir import check_owner

    check_owner(cfg)  # writes into this study's results dir
    data = study_view(cfg).data
    largest = max(max(axis_values(cfg, "n_train", m)) for m in cfg["grid"]["axes"]["model"])
    meta = build_splits(
        args.shards,
        args.out,
        classes=cfg["classes"],
        val_per_class=data.val_per_class,
        test_per_class=data.test_per_class,
        n_particles=data.n_particles,
        seed=data.split_seed,
        n_train_max=largest,
        data_fingerprint=_fingerprint(cfg, args.shards),
        study_fingerprint=data_fingerprint(cfg),
    )
    sizes, trunc = meta["sizes"], meta["truncated_jets"]
    print(f"splits in {args.out}: " + ", ".join(f"{s} {sizes[s]} jets" for s in sizes), file=sys.stderr)
    print(
        f"cap n_particles={meta['n_particles']} truncates {sum(trunc.values())} jets "
        f"({100 * meta['truncated_fraction']:.2f}%): " + ", ".join(f"{s} {trunc[s]}" for s in trunc),
        file=sys.stderr,
    )
    return 0


def _fingerprint(cfg: dict, shards) -> str:
    """The config's data fingerprint; for ingested data also the identity of the files read (their manifest)."""
    from pathlib import Path

    from ..errors import DataError
    from ..settings import data_fingerprint
    from .manifest import read_manifest

    fingerprint = data_fingerprint(cfg)
    if cfg["data"]["source"] == "ingest":
        for directory in (Path(s) for s in shards if Path(s).is_dir()):
            recorded = read_manifest(directory)
            if recorded is None:
                raise DataError(f"{directory}: no manifest.json (an incomplete ingest); rerun jetscale ingest")
            fingerprint += "+" + recorded["fingerprint"]
    return fingerprint


def _summary(args) -> int:
    from .summary import data_summary

    paths = data_summary(args.splits, args.out, max_jets=args.max_jets, print_table=True)
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0

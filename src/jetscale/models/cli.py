"""`jetscale models`: the study's width ladder, with parameter counts and measured forward FLOPs per jet."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="width ladder of the study's models: parameters and measured FLOPs/jet")
    p.add_argument("--config", default="config.yaml", help="study config (YAML): the grid's models and widths")
    p.add_argument(
        "--widths",
        default=None,
        help="instead of the grid's: e.g. 'bbt_neutron=64,128,256;part=32,64' (other models: the grid's)",
    )
    p.add_argument(
        "--splits",
        default=None,
        help="measure FLOPs on the first validation jets of a splits directory (default: synthetic jets "
        "with ~24 particles; BBT-Neutron's cost grows with the jets' byte length)",
    )
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.set_defaults(func=run)


def ladder(cfg: dict, widths: str | None = None) -> dict[str, list[int]]:
    """model -> sorted widths: the grid's (per-model overrides included), or ``widths`` where given."""
    from ..errors import ConfigError
    from ..grid import cells
    from .catalog import names, width_problem

    out: dict[str, set[int]] = {}
    for cell in cells(cfg):
        if cell["width"] is not None:  # a fitted model (the bdt baseline) has no width, parameters or FLOPs
            out.setdefault(cell["model"], set()).add(int(cell["width"]))
    for part in (widths or "").split(";"):
        if not part.strip():
            continue
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in names():
            raise ConfigError(f"--widths: unknown model {name!r}; known models: {', '.join(names())}")
        try:
            out[name] = {int(v) for v in values.split(",")}
        except ValueError:
            raise ConfigError(f"--widths: {part!r} is not MODEL=W1,W2,...") from None
        for w in out[name]:
            if problem := width_problem(name, w):
                raise ConfigError(f"--widths: {name}: {problem}")
    return {name: sorted(ws) for name, ws in out.items()}


def measure_ladder(
    cfg: dict, ladder_widths: dict[str, list[int]], splits: str | None = None, n_jets: int = 64
) -> list[dict]:
    """One row per (model, width): depth (blocks of the built model: decoder layers, particle-attention blocks,
    EdgeConv blocks), parameters, forward FLOPs per jet (torch.utils.flop_counter)."""
    import numpy as np
    import torch

    from ..inputs.prepare import InputTransform
    from ..inputs.spec import model_inputs
    from ..inputs.stats import compute_stats
    from .catalog import get
    from .registry import batch_tensors, build_model, count_params, measure_flops_per_jet, prepare_inputs

    if splits:
        from ..data.splits import load_split

        jets = {k: np.array(v) for k, v in load_split(splits, "val", n=n_jets).items()}
    else:
        from ..data.testing import synthetic_jets

        jets = synthetic_jets(n_jets, len(cfg["classes"]), n_particles=cfg["data"]["n_particles"], seed=0)
    rows = []
    torch.manual_seed(0)
    for name, widths in ladder_widths.items():
        options = cfg.get("models", {}).get(name, {})
        # the model's declared inputs; statistics of these jets (the values do not change parameters or FLOPs)
        transform = InputTransform.from_spec(model_inputs(cfg, name), compute_stats(jets, len(jets["labels"])))
        n_features = transform.n_features
        arrays, _ = prepare_inputs(name, options, jets["features"], jets["mask"], jets["vectors"], transform)
        batch = batch_tensors(arrays, np.arange(len(jets["labels"])), kind=get(name).inputs)
        for width in widths:
            model = build_model(name, width, len(cfg["classes"]), n_features, options)
            blocks = model
            for attr in get(name).blocks.split(".") if get(name).blocks else ():  # dotted, e.g. "gpt.blocks"
                blocks = getattr(blocks, attr, None)
            rows.append(
                {
                    "model": name,
                    "width": width,
                    "depth": len(blocks) if blocks is not model and hasattr(blocks, "__len__") else "-",
                    "n_params": count_params(model),
                    "fwd_flops_per_jet": measure_flops_per_jet(model, batch),
                }
            )
            del model
    return rows


def run(args) -> int:
    from ..config import load_config
    from ..io import write_text

    cfg = load_config(args.config)
    rows = measure_ladder(cfg, ladder(cfg, args.widths), args.splits)
    source = f"first validation jets of {args.splits}" if args.splits else "synthetic jets"
    print(f"# forward FLOPs per jet measured on 64 {source}; training costs about 3x forward", file=sys.stderr)
    print(f"{'model':<12} {'width':>6} {'depth':>5} {'parameters':>14} {'fwd MFLOP/jet':>14}")
    for r in rows:
        print(
            f"{r['model']:<12} {r['width']:>6} {r['depth']:>5} {r['n_params']:>14,} "
            f"{r['fwd_flops_per_jet'] / 1e6:>14.3f}"
        )
    if args.csv:
        lines = ["model,width,depth,n_params,fwd_flops_per_jet"]
        lines += [f"{r['model']},{r['width']},{r['depth']},{r['n_params']},{r['fwd_flops_per_jet']:.6g}" for r in rows]
        write_text(args.csv, "\n".join(lines) + "\n")
    return 0

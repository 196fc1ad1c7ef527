"""`jetscale report`: figures + results/report.html from results/tables/ and results/fits/ (never a run dir)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

TRANSFER_FIGURES = ("transfer_dt", "transfer_curves", "pretrain_loss")  # shown in their own report section


def register(sub) -> None:
    p = sub.add_parser("report", help="paper figures + self-contained results/report.html")
    p.add_argument("--config", default="config.yaml")
    p.add_argument(
        "--refit",
        action="store_true",
        help="re-run every fit from results/tables/runs.csv first (regenerate the figures in seconds)",
    )
    p.add_argument("--table", help="the runs table (default: <results>/tables/runs.csv)")
    p.add_argument(
        "--fits",
        help="use this fit_summary.csv (and the fit records beside it) as they are, never refitting: what the "
        "report rule passes, since the fits are the fit rule's outputs (default: <results>/fits/fit_summary.csv, "
        "refitted when absent or older than the table)",
    )
    p.add_argument("--data-summary", help="data-summary figure to embed (default: <results>/data/summary.png)")
    p.add_argument("--out", help="the report (default: <results>/report.html)")
    p.set_defaults(func=_report)


def build_report(
    cfg: dict,
    *,
    refit: bool = False,
    table: Path | None = None,
    fits: Path | None = None,
    data_summary: Path | None = None,
    out: Path | None = None,
) -> dict:
    """Fits (if asked, absent, or older than runs.csv; never when ``fits`` is given) -> figures ->
    report.html; returns paths and timings. Paths default to the study's (``jetscale.paths``)."""
    from .. import paths
    from ..config import tune_axes, uses_pretraining
    from ..errors import DataError
    from ..fit.study import load_fit_docs, run_study_fits
    from ..io import not_a_file, write_text
    from .figures import make_figures
    from .html import build_html
    from .tables import load_tables

    root = paths.results_root(cfg)
    t0 = time.perf_counter()
    table = Path(table) if table else paths.runs_table(root)
    out = Path(out) if out else paths.report_path(root)
    if data_summary is not None and not Path(data_summary).is_file():
        raise DataError("--data-summary " + not_a_file(data_summary, "figure"))
    data_summary = Path(data_summary) if data_summary else paths.data_summary(root)
    if fits is not None:
        summary = Path(fits)
        if refit:
            raise DataError("--refit and --fits exclude each other: --fits uses the given fits as they are")
        if not summary.is_file():
            raise DataError(f"{summary}: fit summary not found; run `jetscale fit --config ...` first")
    else:
        summary = paths.fit_summary(root)
        stale = summary.is_file() and table.is_file() and table.stat().st_mtime > summary.stat().st_mtime
        if stale and not refit:
            print(f"jetscale report: {table} is newer than {summary}; refitting", file=sys.stderr)
        if refit or stale or not summary.is_file():
            run_study_fits(cfg, table=table, summary=summary)
    t_fit = time.perf_counter()
    tables = load_tables(cfg, table, summary)
    figures = make_figures(cfg, tables, load_fit_docs(cfg, summary.parent), paths.figures_dir(root))
    sections = []
    if uses_pretraining(cfg):  # D_T, fine-tuned vs scratch, pretraining loss scaling
        from .transfer import make_transfer_figures, transfer_section

        transfer_figures = make_transfer_figures(cfg, tables)
        figures = figures + transfer_figures
        sections.append(transfer_section(cfg, transfer_figures))
    if tune_axes(cfg):  # the chosen values against n_train (and width), their trend, every candidate's score
        from .tuning import make_tuning_figures, read_tuning, tuning_section

        tuning, trends = read_tuning(cfg, table.parent, summary.parent)
        tuning_figures = make_tuning_figures(cfg, tuning, trends, paths.figures_dir(root))
        figures = figures + tuning_figures
        sections.append(tuning_section(cfg, tuning, trends, tuning_figures))
    t_fig = time.perf_counter()
    extra = [data_summary] if os.path.lexists(data_summary) else []  # a link there is refused, not skipped
    own = [f for f in figures if f.stem not in TRANSFER_FIGURES and not f.stem.startswith("tuning_")]
    write_text(out, build_html(cfg, tables, own, extra, sections))
    t_end = time.perf_counter()
    return {
        "report": out,
        "figures": figures,
        "seconds": {"fit": t_fit - t0, "figures": t_fig - t_fit, "html": t_end - t_fig, "total": t_end - t0},
    }


def _report(args) -> int:
    from ..results_dir import load_study_config

    out = build_report(
        load_study_config(args.config),
        refit=args.refit,
        table=args.table,
        fits=args.fits,
        data_summary=args.data_summary,
        out=args.out,
    )
    s = out["seconds"]
    print(
        f"jetscale report: {len(out['figures'])} figure files; fits {s['fit']:.1f} s, figures {s['figures']:.1f} s, "
        f"html {s['html']:.1f} s",
        file=sys.stderr,
    )
    print(out["report"])
    return 0

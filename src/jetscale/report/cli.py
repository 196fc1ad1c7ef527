"""`jetscale report`: figures + results/report.html from results/tables/ and results/fits/ (never a run dir)."""

from __future__ import annotations

import sys
import time

TRANSFER_FIGURES = ("transfer_dt", "transfer_curves", "pretrain_loss")  # shown in their own report section


def register(sub) -> None:
    p = sub.add_parser("report", help="paper figures + self-contained results/report.html")
    p.add_argument("--config", default="config.yaml")
    p.add_argument(
        "--refit",
        action="store_true",
        help="re-run every fit from results/tables/runs.csv first (regenerate the figures in seconds)",
    )
    p.set_defaults(func=_report)


def build_report(cfg: dict, *, refit: bool = False) -> dict:
    """Fits (if asked, absent, or older than runs.csv) -> figures -> report.html; returns paths and timings."""
    from ..config import uses_pretraining
    from ..fit.study import load_fit_docs, run_study_fits
    from ..io import write_text
    from ..paths import figures_dir, fits_dir, report_path, results_root, runs_table
    from .figures import make_figures
    from .html import build_html
    from .tables import load_tables

    root = results_root(cfg)
    t0 = time.perf_counter()
    summary, table = fits_dir(root) / "fit_summary.csv", runs_table(root)
    stale = summary.is_file() and table.is_file() and table.stat().st_mtime > summary.stat().st_mtime
    if stale and not refit:
        print(f"jetscale report: {table} is newer than {summary}; refitting", file=sys.stderr)
    if refit or stale or not summary.is_file():
        run_study_fits(cfg)
    t_fit = time.perf_counter()
    tables = load_tables(cfg)
    figures = make_figures(cfg, tables, load_fit_docs(cfg), figures_dir(root))
    sections = []
    if uses_pretraining(cfg):  # D_T, fine-tuned vs scratch, pretraining loss scaling
        from .transfer import make_transfer_figures, transfer_section

        transfer_figures = make_transfer_figures(cfg, tables)
        figures = figures + transfer_figures
        sections.append(transfer_section(cfg, transfer_figures))
    t_fig = time.perf_counter()
    data_summary = root / "data" / "summary.png"
    extra = [data_summary] if data_summary.is_file() else []
    write_text(
        report_path(root),
        build_html(cfg, tables, [f for f in figures if f.stem not in TRANSFER_FIGURES], extra, sections),
    )
    t_end = time.perf_counter()
    return {
        "report": report_path(root),
        "figures": figures,
        "seconds": {"fit": t_fit - t0, "figures": t_fig - t_fit, "html": t_end - t_fig, "total": t_end - t0},
    }


def _report(args) -> int:
    from ..results_dir import load_study_config

    out = build_report(load_study_config(args.config), refit=args.refit)
    s = out["seconds"]
    print(
        f"jetscale report: {len(out['figures'])} figure files; fits {s['fit']:.1f} s, figures {s['figures']:.1f} s, "
        f"html {s['html']:.1f} s",
        file=sys.stderr,
    )
    print(out["report"])
    return 0

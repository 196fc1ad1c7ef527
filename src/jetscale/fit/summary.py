"""The rows of ``fits/fit_summary.csv``: one per fit of every record (form, status, exponent, n_c, verdicts)."""

from __future__ import annotations

from . import forms
from .forms import THRESHOLD

#: the columns that name a fit and say whether it holds; every view of the summary starts with them
SUMMARY_LEAD = ["kind", "metric", "flavor", "series", "form", "status"]
SUMMARY_COLUMNS = [
    *SUMMARY_LEAD,
    "converged",
    "n_points",
    "aic",
    "bic",
    "exponent",
    "exponent_err",
    "n_c",
    "n_c_lo",
    "n_c_hi",
    "delta_aic",
    "delta_bic",
    "bootstrap_fraction_scurve",
    "verdict",
    "mirage",
    "params",
    "message",
    "file",
]


def summary_rows(doc: dict, name: str) -> list[dict]:
    rows = []
    comp = doc.get("comparison") or {}
    for form, rec in doc["fits"].items():
        params, err = rec["params"], rec["stderr"] or {}
        spec = forms.FORMS.get(form)
        exponent = spec.exponent if spec is not None else None
        show_nc = form == THRESHOLD and comp.get("verdict") == "threshold"
        nc_ci = comp.get("n_c_ci95") or [None, None]
        rows.append(
            {
                "kind": doc["kind"],
                "metric": doc["metric"],
                "flavor": doc["flavor"],
                "series": doc["label"],
                "form": form,
                "status": rec.get("status", "ok" if rec["converged"] else "failed"),
                "converged": rec["converged"],
                "n_points": rec["n_points"],
                "aic": rec["aic"],
                "bic": rec["bic"],
                "exponent": params.get(exponent) if exponent else None,
                "exponent_err": err.get(exponent) if exponent else None,
                "n_c": comp.get("n_c") if show_nc else None,
                "n_c_lo": nc_ci[0] if show_nc else None,
                "n_c_hi": nc_ci[1] if show_nc else None,
                "delta_aic": comp.get("delta_aic"),
                "delta_bic": comp.get("delta_bic"),
                "bootstrap_fraction_scurve": comp.get("bootstrap_fraction_scurve"),
                "verdict": comp.get("verdict", ""),
                "mirage": (doc.get("mirage") or {}).get("verdict"),
                "params": format_params(params, err),
                "message": "; ".join(m for m in (rec["message"], comp.get("n_c_note") if show_nc else None) if m),
                "file": name,
            }
        )
    return rows


def format_params(params: dict, err: dict) -> str:
    parts = []
    for k, v in params.items():
        e = err.get(k)
        parts.append(f"{k}={v:.4g}" + (f"±{e:.2g}" if e is not None else ""))
    return "; ".join(parts)

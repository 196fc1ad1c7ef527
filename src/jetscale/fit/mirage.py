"""The mirage check (Schaeffer, Miranda & Koyejo 2023): is a threshold in a thresholded metric real?

ε_q, f_q and accuracy count argmax decisions, a discontinuous function of the scores: a model whose scores
improve smoothly can still show a sudden jump in them. For every series where the S-curve wins on such a metric
(verdict "threshold"), the same classes' threshold-free counterpart is fitted with the same forms and the same
comparison (:mod:`jetscale.fit.compare`); the pairs are the ``counterpart`` of each metric's spec
(:mod:`jetscale.metric_catalog`):

    tag_efficiency  ε_q  ->  tag_log_loss     (−ln(p_q + p_q̄); second opinion: 1 − tag_auc)
    charge_flip     f_q  ->  charge_log_loss  (−ln(p_true / (p_q + p_q̄)); second opinion: 1 − charge_auc)
    accuracy             ->  log_loss         (second opinion: 1 − mean_auc)

Verdict, decided on the log-loss counterpart (the proper scoring rule the models are trained on):
- "emergent": the counterpart also has a "threshold" verdict and its n_c interval overlaps the thresholded one's;
- "metric artefact": the power law wins on the counterpart (smooth improvement, the jump comes from the argmax);
- "undetermined": anything else (counterpart inconclusive, no fit, not computed, or a threshold at another n_c);
  the reason says which.
"""

from __future__ import annotations

from .. import metric_catalog

EMERGENT, ARTEFACT, UNDETERMINED = "emergent", "metric artefact", "undetermined"
RULE = (
    "emergent iff the log-loss counterpart also gets a 'threshold' verdict with an overlapping n_c interval; "
    "metric artefact iff the power law wins on it; else undetermined"
)


def counterpart(metric: str) -> tuple[str, str] | None:
    """(log-loss counterpart, AUC counterpart) of a thresholded metric (its MetricSpec), or None if it has none."""
    spec = metric_catalog.find(metric)
    return spec.counterpart if spec else None


def _overlap(a, b) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def classify(thresholded: dict, continuous: dict | None, auc: dict | None = None) -> dict:
    """Mirage verdict from the comparison dicts (:func:`jetscale.fit.compare.decide`) of the two metrics.

    Returns {"verdict", "reason", "continuous_verdict", "auc_verdict"}.
    """
    out = {
        "verdict": UNDETERMINED,
        "reason": "",
        "continuous_verdict": None if continuous is None else continuous.get("verdict"),
        "auc_verdict": None if auc is None else auc.get("verdict"),
    }
    if thresholded.get("verdict") != "threshold":
        out["verdict"] = None
        out["reason"] = "no threshold in the thresholded metric: nothing to check"
        return out
    if continuous is None:
        out["reason"] = "the continuous counterpart is not in runs.csv (re-run jetscale evaluate and collect)"
        return out
    verdict = continuous.get("verdict")
    if verdict == "threshold":
        nc, nc_ci = continuous.get("n_c"), continuous.get("n_c_ci95")
        if _overlap(thresholded.get("n_c_ci95"), nc_ci):
            out["verdict"] = EMERGENT
            out["reason"] = f"the continuous metric has the threshold too (n_c = {nc:.3g})"
        else:
            out["reason"] = f"the continuous metric has a threshold at another n_c ({nc:.3g}, interval {nc_ci})"
    elif verdict == "power law":
        out["verdict"] = ARTEFACT
        out["reason"] = "the continuous metric improves smoothly (power law preferred)"
    elif verdict == "inconclusive":
        out["reason"] = "the continuous metric favours the S-curve, but not clearly"
    else:
        out["reason"] = f"no fit of the continuous metric ({verdict})"
    if auc is not None and out["auc_verdict"] not in (None, "no fit"):
        agrees = (out["auc_verdict"] == "threshold") == (verdict == "threshold")
        out["reason"] += f"; 1 − AUC: {out['auc_verdict']}" + ("" if agrees else " (disagrees)")
    return out

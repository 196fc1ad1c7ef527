"""Test-set metrics of one trained classifier (paper definitions, see design.md "Metrics").

Shapes: ``labels`` (n_jets,) integer class indices into ``classes``; ``scores`` (n_jets, n_classes) softmax
probabilities in the same class order. ``counts`` is the raw (n_classes, n_classes) confusion table, rows =
truth, columns = argmax prediction. ``M`` is ``counts`` row-normalised (each row sums to 1).

Flavor metrics for a quark species q with antiquark q̄ (indices i, j):
    B_q = M[i,i] + M[i,j] + M[j,i] + M[j,j]
    flavor-tag efficiency  ε_q = B_q / 2
    charge-flip rate       f_q = (M[i,j] + M[j,i]) / B_q

Continuous counterparts of ε_q and f_q (threshold-free: they change smoothly when the scores do, so a jump
seen only in ε_q / f_q is an artefact of the argmax; Schaeffer et al. 2023), each the mean of the q and the q̄
truth rows like ε_q, with p_pair = p_q + p_q̄:
    tag_log_loss     −ln p_pair                        (the flavor part of the per-jet log-loss)
    charge_log_loss  −ln (p_true / p_pair)             (the charge part; the two add up to −ln p_true)
    tag_auc          one-vs-rest AUC of p_pair, {q, q̄} jets against all others
    charge_auc       AUC of p_q / p_pair separating q from q̄ jets

Statistical uncertainties come from the test-set counts only (the model is held fixed): each truth row of the
confusion table is a multinomial sample of that row's jets, rows are independent, and the errors are the
first-order (delta-method) propagation of the multinomial covariance Cov(M[r,a], M[r,b]) = (δ_ab M[r,a] −
M[r,a] M[r,b]) / n_r. For ε_q this reduces to the binomial error of the two "predicted within the pair"
fractions. A count of 0 or n_r gives a zero error (no continuity correction).

A class with no test jets has a row of NaN in M (0/0); every quantity that needs that row is NaN, and the
JSON output renders NaN as ``null``. Accuracy and log-loss are per-jet averages and are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LOG_EPS = 1e-15  # probabilities are clipped to [LOG_EPS, 1] before taking the log in the log-loss

JOI_CLASSES: tuple[str, ...] = ("b", "bbar", "c", "cbar", "s", "sbar", "u", "ubar", "d", "dbar", "g")
JOI_FLAVOR_PAIRS: dict[str, list[str]] = {q: [q, f"{q}bar"] for q in ("b", "c", "s", "u", "d")}

UNCERTAINTY_METHOD = (
    "test-set counting only: multinomial covariance per truth row, rows independent, first-order (delta-method) "
    "propagation; accuracy binomial; log-loss = standard error of the per-jet mean"
)


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) integer counts; rows = truth label, columns = predicted label."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    flat = np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def row_normalise(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; a row with no jets becomes NaN."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1), np.nan)


def accuracy(counts: np.ndarray) -> tuple[float, float]:
    """Fraction of jets on the diagonal and its binomial standard error."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    if n == 0:
        return math.nan, math.nan
    acc = float(np.trace(counts) / n)
    return acc, math.sqrt(acc * (1 - acc) / n)


def log_loss(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Mean −ln p(true class) over jets (nats) and the standard error of that mean."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    if labels.size == 0:
        return math.nan, math.nan
    p_true = np.clip(scores[np.arange(labels.size), labels], LOG_EPS, 1.0)
    per_jet = -np.log(p_true)
    err = float(per_jet.std(ddof=1) / math.sqrt(labels.size)) if labels.size > 1 else math.nan
    return float(per_jet.mean()), err


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, tied values sharing their average rank; all NaN if any value is NaN: what
    ``scipy.stats.rankdata`` gives, to the bit, without importing ``scipy.stats`` (0.4 s of every
    ``jetscale evaluate``, one per cell)."""
    values = np.asarray(values, dtype=float).ravel()
    if np.isnan(values).any():
        return np.full(values.shape, np.nan)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where each run of tied values starts
    bounds = np.append(starts, values.size)
    ranks = np.empty(values.shape)
    ranks[order] = np.repeat(0.5 * (bounds[1:] + bounds[:-1] + 1), np.diff(bounds))
    return ranks


def one_vs_rest_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class ROC AUC of score_k separating class k from all others (Mann–Whitney U, ties get half credit).

    NaN for a class with no positive or no negative jets.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    out = np.full(scores.shape[1], np.nan)
    for k in range(scores.shape[1]):
        positive = labels == k
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = average_ranks(scores[:, k])
        u_stat = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
        out[k] = u_stat / (n_pos * n_neg)
    return out


def flavor_continuous(labels: np.ndarray, scores: np.ndarray, i: int, j: int) -> dict[str, float]:
    """tag/charge log-loss (with standard errors) and AUC of the pair (i = q, j = q̄); see the module docstring."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=float)
    nan = math.nan
    out = {k: nan for k in ("tag_log_loss", "tag_log_loss_err", "charge_log_loss", "charge_log_loss_err")}
    out.update(tag_auc=nan, charge_auc=nan)
    rows = [labels == i, labels == j]
    if not (rows[0].any() and rows[1].any()):
        return out
    pair = np.clip(scores[:, i] + scores[:, j], LOG_EPS, None)
    own = np.where(labels == i, scores[:, i], scores[:, j])
    tag = -np.log(np.clip(pair, LOG_EPS, 1.0))
    charge = -np.log(np.clip(own / pair, LOG_EPS, 1.0))
    for name, per_jet in (("tag_log_loss", tag), ("charge_log_loss", charge)):
        means = [per_jet[r].mean() for r in rows]
        var = [per_jet[r].var(ddof=1) / r.sum() if r.sum() > 1 else nan for r in rows]
        out[name], out[f"{name}_err"] = float(0.5 * (means[0] + means[1])), 0.5 * math.sqrt(var[0] + var[1])
    in_pair = rows[0] | rows[1]
    out["tag_auc"] = _binary_auc(pair, in_pair)
    out["charge_auc"] = _binary_auc((scores[:, i] / pair)[in_pair], rows[0][in_pair])
    return out


def _binary_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney U, ties half) of ``score`` for ``positive`` vs the rest; NaN without both."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def flavor_metrics(counts: np.ndarray, i: int, j: int) -> dict[str, float]:
    """ε_q, f_q and their counting errors from the quark (row/column i) and antiquark (j) entries."""
    counts = np.asarray(counts, dtype=float)
    n_i, n_j = counts[i].sum(), counts[j].sum()
    if n_i == 0 or n_j == 0:
        nan = math.nan
        return {"tag_efficiency": nan, "tag_efficiency_err": nan, "charge_flip": nan, "charge_flip_err": nan}
    m = row_normalise(counts)
    x, y, u, v = m[i, i], m[i, j], m[j, i], m[j, j]
    block = x + y + u + v
    eff = block / 2
    p_i, p_j = x + y, u + v  # fraction of each truth row predicted inside the pair (binomial)
    eff_err = 0.5 * math.sqrt(p_i * (1 - p_i) / n_i + p_j * (1 - p_j) / n_j)
    if block == 0:
        return {
            "tag_efficiency": eff,
            "tag_efficiency_err": eff_err,
            "charge_flip": math.nan,
            "charge_flip_err": math.nan,
        }
    flip = (y + u) / block
    # gradient of f wrt (x, y) of row i and (u, v) of row j
    g_i = np.array([-flip, 1 - flip]) / block
    g_j = np.array([1 - flip, -flip]) / block
    var = _multinomial_quadratic(g_i, np.array([x, y]), n_i) + _multinomial_quadratic(g_j, np.array([u, v]), n_j)
    return {
        "tag_efficiency": eff,
        "tag_efficiency_err": eff_err,
        "charge_flip": flip,
        "charge_flip_err": math.sqrt(max(var, 0.0)),
    }


def _multinomial_quadratic(grad: np.ndarray, probs: np.ndarray, n: float) -> float:
    """gᵀ Σ g for Σ = (diag(p) − p pᵀ)/n, the covariance of multinomial cell fractions."""
    cov = (np.diag(probs) - np.outer(probs, probs)) / n
    return float(grad @ cov @ grad)


def metrics_from_counts(
    counts: np.ndarray,
    classes: Sequence[str],
    flavor_pairs: dict[str, Sequence[str]],
    *,
    labels: np.ndarray | None = None,
    scores: np.ndarray | None = None,
) -> dict:
    """The metrics JSON document (see ``jetscale metrics``); log-loss and AUC need per-jet ``labels``/``scores``."""
    counts = np.asarray(counts)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(
            f"confusion table has shape {counts.shape}, expected {(len(classes),) * 2} for classes {list(classes)}"
        )
    index = {name: k for k, name in enumerate(classes)}
    acc, acc_err = accuracy(counts)
    doc: dict = {
        "classes": list(classes),
        "n_jets": int(counts.sum()),
        "accuracy": acc,
        "log_loss": None,
        "confusion": row_normalise(counts).tolist(),
        "flavors": {q: flavor_metrics(counts, index[pair[0]], index[pair[1]]) for q, pair in flavor_pairs.items()},
    }
    uncertainties = {"accuracy": acc_err, "method": UNCERTAINTY_METHOD}
    if labels is not None and scores is not None:
        doc["log_loss"], uncertainties["log_loss"] = log_loss(labels, scores)
        doc["auc"] = dict(zip(classes, one_vs_rest_auc(labels, scores).tolist()))
        for q, pair in flavor_pairs.items():
            doc["flavors"][q].update(flavor_continuous(labels, scores, index[pair[0]], index[pair[1]]))
    doc["n_per_class"] = dict(zip(classes, counts.sum(axis=1).astype(int).tolist()))
    doc["counts"] = counts.astype(int).tolist()
    doc["uncertainties"] = uncertainties
    return doc


def metrics_from_predictions(predictions, classes: Sequence[str], flavor_pairs: dict[str, Sequence[str]]) -> dict:
    """Metrics of a predictions table (columns ``label`` and ``score_<class>`` per class)."""
    missing = [f"score_{c}" for c in classes if f"score_{c}" not in predictions.columns]
    if "label" not in predictions.columns or missing:
        raise ValueError(
            f"predictions lack columns {(['label'] if 'label' not in predictions.columns else []) + missing}"
        )
    if len(predictions) == 0:
        raise ValueError("no predictions (the table has no rows)")
    raw = predictions["label"].to_numpy()
    if raw.dtype.kind not in "iu" and not (
        raw.dtype.kind == "f" and np.isfinite(raw).all() and (raw == np.round(raw)).all()
    ):
        raise ValueError(f"label values must be integers 0..{len(classes) - 1}; found {raw[:3].tolist()} ...")
    if raw.min() < 0 or raw.max() >= len(classes):  # compared before the cast: 1e30 is not wrapped to int64
        raise ValueError(
            f"label values must lie in 0..{len(classes) - 1} (indices into {list(classes)}); "
            f"found {raw.min().item()!r}..{raw.max().item()!r}"
        )
    labels = raw.astype(np.int64)
    scores = predictions[[f"score_{c}" for c in classes]].to_numpy(dtype=float)
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1 + 1e-6)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} score(s) are not probabilities in [0, 1] (row {int(row)}, score_{classes[col]} = "
            f"{float(scores[row, col])!r})"
        )
    sums = scores.sum(axis=1)
    if np.abs(sums - 1).max() > 1e-3:
        row = int(np.abs(sums - 1).argmax())
        raise ValueError(f"the scores of a jet must sum to 1 (row {row} sums to {sums[row]:.6g})")
    predicted = scores.argmax(axis=1) if labels.size else np.zeros(0, dtype=np.int64)
    counts = confusion_counts(labels, predicted, len(classes))
    return metrics_from_counts(counts, classes, flavor_pairs, labels=labels, scores=scores)

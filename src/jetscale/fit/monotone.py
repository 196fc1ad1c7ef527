"""The monotone filter (``fits.monotone``): leave out sizes at which a series is worse than at a smaller size.

An error-type quantity should not rise with more training data. Where the seed mean at some n_train is higher
than the lowest seed mean at any smaller n_train, that size is budget-limited, diverged or noise, and a fit
through it bends the curve. The filter keeps every seed of the sizes whose mean is at or below the running
minimum of the means before it (the smallest size is always kept) and names the sizes it left out.

Off by default: it removes measured points, which flattens the fitted curve's scatter and narrows intervals, so
it is a choice to make knowingly (e.g. where a few cells are known to have stopped at their budget).
"""

from __future__ import annotations

import numpy as np


def monotone_filter(x, y) -> tuple[np.ndarray, list[float]]:
    """(mask of the points kept, sizes left out) for error-type points (x, y) that should fall with x."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.ones(len(x), dtype=bool)
    dropped, best = [], np.inf
    for size in np.unique(x[np.isfinite(x)]):
        at = x == size
        mean = float(np.nanmean(y[at])) if np.isfinite(y[at]).any() else np.nan
        if not np.isfinite(mean):
            continue
        if mean > best:
            keep &= ~at
            dropped.append(float(size))
        else:
            best = mean
    return keep, dropped

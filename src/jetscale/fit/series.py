"""Helpers a study's fits share (the study, its outlook and its transfer fits): a series label's file-name slug
and the compute-optimal frontier of a set of points."""

from __future__ import annotations

import math
import re

import numpy as np


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_") or "all"


def compute_frontier(compute, loss):
    """Indices of the compute-optimal frontier: points whose loss is below every point of smaller compute."""
    order = np.lexsort((loss, compute))
    best, keep = math.inf, []
    for i in order:
        if loss[i] < best:
            best = loss[i]
            keep.append(i)
    return np.array(keep, dtype=int)
